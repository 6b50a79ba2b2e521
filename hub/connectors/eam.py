"""SOAP connector (the EAM's, the ERP's): zeep for the WSDL contract and the request, lxml for the reply.

Which operation, binding and arguments are sent is the flavor file's description
(`hub.connectors.endpoint.SoapSpec`); batching is `hub.connectors.operations`' job.
zeep parses large replies about ten times slower than lxml, so the reply is taken
raw and flattened here; the WSDL still defines what we send. One zeep client is
built per process and reused, since loading a WSDL is slow. Every call, the WSDL load
included, goes through the system's circuit breaker, with timeouts, a total deadline per request
and a reply size limit.
"""

from __future__ import annotations

from collections import defaultdict
from functools import lru_cache
from typing import Any

import requests
import zeep
from lxml import etree

from hub.connectors.auth import auth_headers, basic_credentials, redact, secret_values
from hub.connectors.bounded import DEFAULT_MAX_RESPONSE_BYTES
from hub.connectors.breaker import SystemBreaker, breaker_for
from hub.connectors.deadline import DEFAULT_REQUEST_DEADLINE_S
from hub.connectors.endpoint import SoapSpec
from hub.connectors.retry import (
    RetryPolicy,
    TransientError,
    UntrustedCertificate,
    VendorRejected,
    parse_retry_after,
)
from hub.connectors.soap import BoundedTransport
from hub.connectors.tls import certificate_problem
from hub.settings import SystemEndpoint

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"


def _safe_parser() -> etree.XMLParser:
    """No entity expansion, no DTDs, no network: a reply is data, never instructions.

    A new parser per reply, since lxml parsers must not be shared between threads.
    """
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


class SoapFault(Exception):
    """The system refused the request with a SOAP Fault; `faultcode` says whose fault."""

    def __init__(self, faultcode: str, faultstring: str, system: str = "EAM"):
        super().__init__(f"{system} SOAP Fault {faultcode}: {faultstring}")
        self.faultcode = faultcode
        self.faultstring = faultstring


@lru_cache(maxsize=8)
def _service(
    system: str,
    wsdl: str,
    binding: str,
    address: str,
    connect_timeout_s: float,
    operation_timeout_s: float,
    headers: tuple[tuple[str, str], ...],
    basic: tuple[str, str] | None,
    ca_bundle: str | None,
    max_response_bytes: int,
    deadline_s: float,
) -> Any:
    session = requests.Session()
    session.headers.update(dict(headers))
    session.auth = basic
    transport = BoundedTransport(
        system,
        session,
        connect_timeout_s=connect_timeout_s,
        read_timeout_s=operation_timeout_s,
        max_response_bytes=max_response_bytes,
        ca_bundle=ca_bundle,
        deadline_s=deadline_s,
    )
    client = zeep.Client(wsdl, transport=transport)
    return client, client.create_service(binding, address)


def _local(tag: str) -> str:
    return etree.QName(tag).localname


def _response(xml: bytes, system: str = "EAM") -> etree._Element:
    """The SOAP Body's response element; a Fault is raised as `SoapFault`."""
    try:
        root = etree.fromstring(xml, _safe_parser())
    except etree.XMLSyntaxError as exc:
        raise TransientError(f"{system} reply is not well-formed XML: {exc}") from None
    if root.getroottree().docinfo.doctype:
        raise TransientError(f"{system} reply carries a DTD; refused")
    body = root.find(f"{{{SOAP_ENV}}}Body")
    if body is None or len(body) == 0:
        raise TransientError(f"{system} reply has no SOAP Body")
    response = body[0]
    if _local(response.tag) == "Fault":
        raise SoapFault(response.findtext("faultcode") or "", response.findtext("faultstring") or "", system)
    return response


def _as_data(element: etree._Element, xsd_type: Any) -> Any:
    """An element as data, shaped by its schema type: a list wherever the schema allows several,
    attributes as "@name", the text of an element with attributes as "#text"."""
    attributes = {f"@{_local(name)}": value for name, value in element.attrib.items()}
    # zeep names the text of an element with simple content `_value_1`: it is no child element.
    children = [(name, child) for name, child in getattr(xsd_type, "elements", ()) if name != "_value_1"]
    if not children:
        text = element.text
        return {"#text": text, **attributes} if attributes else text
    out: dict[str, Any] = attributes
    for name, child in children:
        found = [c for c in element if isinstance(c.tag, str) and _local(c.tag) == name]
        if child.max_occurs != 1:
            out[name] = [_as_data(c, child.type) for c in found]
        elif found:
            out[name] = _as_data(found[0], child.type)
    return out


def parse_tree(xml: bytes, client: Any, system: str) -> dict[str, list[Any]]:
    """The response element's children by name, each nested as the WSDL's schema has it."""
    response = _response(xml, system)
    try:
        shape = client.get_element(response.tag).type
    except (LookupError, ValueError):
        raise TransientError(f"{system} reply {_local(response.tag)} is not in the WSDL") from None
    data = _as_data(response, shape)
    return {name: value if isinstance(value, list) else [value] for name, value in data.items() if not name.startswith("@")}


def _zeep_value(value: Any) -> Any:
    """Data as zeep takes it: "@name" attributes by their name, "#text" as zeep's `_value_1`."""
    if isinstance(value, list):
        return [_zeep_value(v) for v in value]
    if isinstance(value, dict):
        return {("_value_1" if k == "#text" else k.removeprefix("@")): _zeep_value(v) for k, v in value.items()}
    return value


def parse_reply(xml: bytes, count_at: str | None = None) -> dict[str, list[dict[str, str | None]]]:
    """Flatten the response element: each child becomes a dict of its leaf values.

    With `count_at`, the response element's attribute of that name must count exactly the
    records it carries: a reply that lost some on the way is incomplete, and retried.
    """
    response = _response(xml)
    grouped: dict[str, list[dict[str, str | None]]] = defaultdict(list)
    for element in response:
        if isinstance(element.tag, str):
            grouped[_local(element.tag)].append(
                {_local(leaf.tag): leaf.text for leaf in element if isinstance(leaf.tag, str)}
            )
    if count_at is not None:
        carried = sum(len(records) for records in grouped.values())
        declared = response.get(count_at)
        if declared is None or not declared.strip().isdigit() or int(declared) != carried:
            raise TransientError(
                f"EAM reply is incomplete: it carries {carried} records but counts {declared!r} in {count_at}"
            )
    return grouped


class EamClient:
    """Calls the EAM's WSDL operations; `calls` counts every attempt, retries included."""

    def __init__(
        self,
        endpoint: SystemEndpoint,
        wsdl: str,
        *,
        connect_timeout_s: float,
        operation_timeout_s: float,
        retry: RetryPolicy,
        breaker: SystemBreaker | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        ca_bundle: str | None = None,
        deadline_s: float = DEFAULT_REQUEST_DEADLINE_S,
        system: str = "EAM",
    ):
        if deadline_s <= 0:
            raise ValueError("deadline_s must be positive")
        self.system = system
        self.address = endpoint.url
        self.headers = tuple(sorted(auth_headers(endpoint).items()))
        self.basic = basic_credentials(endpoint)
        self.wsdl = wsdl
        self.connect_timeout_s = connect_timeout_s
        self.operation_timeout_s = operation_timeout_s
        self.retry = retry
        self.breaker = breaker or breaker_for(system, endpoint.url)
        self.max_response_bytes = max_response_bytes
        self.ca_bundle = ca_bundle
        self.deadline_s = deadline_s
        self.calls = 0
        self._secrets = secret_values(endpoint)

    def _call(self, soap: SoapSpec, args: dict[str, Any]) -> dict[str, list[dict[str, str | None]]]:
        self.calls += 1
        try:
            client, service = _service(
                self.system,
                self.wsdl,
                soap.binding,
                self.address + (soap.path or ""),
                self.connect_timeout_s,
                self.operation_timeout_s,
                self.headers,
                self.basic,
                self.ca_bundle,
                self.max_response_bytes,
                self.deadline_s,
            )
            with client.settings(raw_response=True):
                response = service[soap.operation](**_zeep_value(args))
        except requests.RequestException as exc:
            problem = certificate_problem(exc)
            if problem:
                raise UntrustedCertificate(self.system, problem) from None
            raise TransientError(f"{self.system} {soap.operation}: {type(exc).__name__}") from None
        if 400 <= response.status_code < 500 and response.status_code != 429:
            raise VendorRejected(self.system, response.status_code, redact(response.text, self._secrets)[:500])
        if response.status_code == 429 or (response.status_code >= 500 and b"Fault" not in response.content[:2048]):
            raise TransientError(
                f"{self.system} {soap.operation}: HTTP {response.status_code}",
                retry_after_s=parse_retry_after(response.headers.get("Retry-After")),
            )
        try:
            if soap.reply == "tree":
                return parse_tree(response.content, client, self.system)
            return parse_reply(response.content, soap.count_at)
        except SoapFault as fault:
            if "Server" in fault.faultcode:
                raise TransientError(str(fault)) from None
            raise

    def call(self, soap: SoapSpec, args: dict[str, Any]) -> dict[str, list[dict[str, str | None]]]:
        """One operation call, through the breaker and the retry policy: the response's children by name."""
        return self.retry.call(lambda: self.breaker.call(self._call, soap, args))
