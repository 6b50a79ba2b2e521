"""EAM mock: Maximo-style asset maintenance over SOAP 1.1 document/literal, written with lxml.

No SOAP framework on the server side on purpose: the mock should answer exactly what
`eam.wsdl` declares, byte for byte in the order its XSD sequences give, and fail the way a
real SOAP stack does (HTTP 500 with a SOAP 1.1 Fault). The element order of `asset` and
`workorder` is read from the WSDL itself, so the two cannot drift apart.

Incoming XML is parsed with a hardened parser: no entity resolution, no network, no DTDs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from lxml import etree

from .base import PLANT_TZ, MockSystem
from .fixtures import FixtureError, load_fixture
from .xmlsafe import hardened_parser

WSDL_PATH = Path(__file__).with_name("eam.wsdl")
TNS = "urn:plant:eam:maintenance:v1"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
XSD = "http://www.w3.org/2001/XMLSchema"
WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
WSDL_SOAP = "http://schemas.xmlsoap.org/wsdl/soap/"
SOAP_ACTION = f"{TNS}/GetAssetMaintenance"
MAX_ASSETS = 500
XML_CONTENT_TYPE = "text/xml; charset=utf-8"
# The `malformed` fault's body: the Body is never closed, so no XML parser accepts it.
MALFORMED_XML = (
    f'<?xml version="1.0" encoding="utf-8"?>\n<soap:Envelope xmlns:soap="{SOAP_ENV}"><soap:Body></soap:Envelope>'
).encode()


@cache
def xsd_sequence(type_name: str) -> tuple[str, ...]:
    """Element names of a complexType's sequence in eam.wsdl, in declared order."""
    tree = etree.parse(str(WSDL_PATH), hardened_parser())
    found = tree.xpath(
        "//xs:complexType[@name=$name]/xs:sequence/xs:element/@name", namespaces={"xs": XSD}, name=type_name
    )
    if not found:
        raise RuntimeError(f"eam.wsdl declares no complexType {type_name}")
    return tuple(str(name) for name in found)


class SoapClientError(ValueError):
    """A request the EAM refuses with a soap:Client Fault."""


def soap_fault(message: str, code: str = "soap:Client") -> Response:
    envelope = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"soap": SOAP_ENV})
    body = etree.SubElement(envelope, f"{{{SOAP_ENV}}}Body")
    fault = etree.SubElement(body, f"{{{SOAP_ENV}}}Fault")
    etree.SubElement(fault, "faultcode").text = code
    etree.SubElement(fault, "faultstring").text = message
    return Response(etree.tostring(envelope, xml_declaration=True, encoding="utf-8"), 500, media_type=XML_CONTENT_TYPE)


def normalise_assetnum(assetnum: Any) -> str:
    return str(assetnum).strip().upper()


def parse_datetime(text: str) -> datetime:
    """xs:dateTime; without an offset it is read as plant local time."""
    text = text.strip()
    if "T" not in text:
        raise ValueError(text)
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=PLANT_TZ)


@dataclass(frozen=True)
class AssetQuery:
    """What a request asks for: asset numbers (normalised, first occurrence order), an optional
    site (normalised; None is every site) and an optional change cutoff for work orders."""

    assetnums: list[str]
    siteid: str | None = None
    changedsince: datetime | None = None


def parse_request(body: bytes) -> AssetQuery:
    """The asset numbers, `siteid` and `changedsince` of a request."""
    try:
        root = etree.fromstring(body, hardened_parser())
    except etree.XMLSyntaxError as exc:
        raise SoapClientError(f"request is not well-formed XML: {exc}") from None
    if root.getroottree().docinfo.doctype:
        raise SoapClientError("DTDs are not allowed in requests")
    if root.tag != f"{{{SOAP_ENV}}}Envelope":
        raise SoapClientError(f"expected a SOAP 1.1 Envelope, got {root.tag}")
    soap_body = root.find(f"{{{SOAP_ENV}}}Body")
    if soap_body is None:
        raise SoapClientError("the Envelope has no Body")
    payload = [child for child in soap_body if isinstance(child.tag, str)]
    if len(payload) != 1 or payload[0].tag != f"{{{TNS}}}GetAssetMaintenanceRequest":
        got = ", ".join(str(child.tag) for child in payload) or "nothing"
        raise SoapClientError(f"expected {{{TNS}}}GetAssetMaintenanceRequest in the Body, got {got}")
    assetnums: list[str] = []
    changedsince = siteid = None
    for element in payload[0]:
        if not isinstance(element.tag, str):
            continue
        if element.tag == f"{{{TNS}}}assetnum":
            assetnums.append(normalise_assetnum(element.text or ""))
        elif element.tag == f"{{{TNS}}}siteid":
            siteid = normalise_assetnum(element.text or "") or None
        elif element.tag == f"{{{TNS}}}changedsince":
            try:
                changedsince = parse_datetime(element.text or "")
            except ValueError:
                raise SoapClientError(f"changedsince is not an xs:dateTime: {element.text!r}") from None
        else:
            raise SoapClientError(f"unexpected element {element.tag} in GetAssetMaintenanceRequest")
    if not assetnums:
        raise SoapClientError("GetAssetMaintenanceRequest needs at least one assetnum")
    if len(assetnums) > MAX_ASSETS:
        raise SoapClientError(f"at most {MAX_ASSETS} assetnum per request, got {len(assetnums)}")
    return AssetQuery(list(dict.fromkeys(assetnums)), siteid, changedsince)


def _append_record(parent: etree._Element, tag: str, record: dict, fields: tuple[str, ...]) -> None:
    element = etree.SubElement(parent, f"{{{TNS}}}{tag}")
    for name in fields:
        value = record.get(name)
        if value is not None:
            etree.SubElement(element, f"{{{TNS}}}{name}").text = str(value)


def _changed_since(workorder: dict, since: datetime) -> bool:
    try:
        return parse_datetime(str(workorder.get("changedate", ""))) >= since
    except ValueError:
        return True  # an unreadable changedate is served, so the client can quarantine it


class EamRecords:
    """The fixture plant's assets and work orders, looked up by (site, normalised asset number).

    Two sites may reuse an asset number, as in Maximo (an asset is siteid + assetnum). Both faces
    of the EAM (SOAP here, OSLC in `eam_oslc.py`) answer from this one lookup, so they always
    serve the same plant.
    """

    def __init__(self, fixtures_dir: Path):
        self._assets: dict[tuple[str, str], dict] = {}
        for asset in load_fixture(fixtures_dir, "eam/assets.json"):
            if not asset.get("assetnum"):
                raise FixtureError(f"eam/assets.json: asset without assetnum: {asset}")
            self._assets[_asset_key(asset)] = asset
        self._workorders: dict[tuple[str, str], list[dict]] = {}
        for workorder in load_fixture(fixtures_dir, "eam/workorders.json"):
            self._workorders.setdefault(_asset_key(workorder), []).append(workorder)
        for records in self._workorders.values():
            records.sort(key=lambda wo: str(wo.get("wonum", "")))

    def _keys(self, query: AssetQuery) -> list[tuple[str, str]]:
        """The requested assets that exist, in request order, site by site."""
        sites = sorted({site for site, _ in self._assets}) if query.siteid is None else [query.siteid]
        return [(site, num) for num in query.assetnums for site in sites if (site, num) in self._assets]

    def assets(self, query: AssetQuery) -> list[dict]:
        return [self._assets[key] for key in self._keys(query)]

    def workorders(self, query: AssetQuery) -> list[dict]:
        """Work orders of the requested assets that exist, asset by asset, each by `wonum`.

        With `changedsince`, only those changed at or after it.
        """
        return [
            workorder
            for key in self._keys(query)
            for workorder in self._workorders.get(key, [])
            if query.changedsince is None or _changed_since(workorder, query.changedsince)
        ]


def _asset_key(record: dict) -> tuple[str, str]:
    return normalise_assetnum(record.get("siteid", "")), normalise_assetnum(record.get("assetnum", ""))


class EamSystem(MockSystem):
    name = "eam"
    url_path = "/eam/soap"

    def load_fixtures(self) -> None:
        self.records = EamRecords(self.fixtures_dir)

    def malformed_response(self) -> Response:
        return Response(MALFORMED_XML, 200, media_type=XML_CONTENT_TYPE)

    def server_fault_response(self, message: str) -> Response:
        return soap_fault(message, "soap:Server")

    def answer(self, query: AssetQuery) -> bytes:
        envelope = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"soap": SOAP_ENV})
        body = etree.SubElement(envelope, f"{{{SOAP_ENV}}}Body")
        response = etree.SubElement(body, f"{{{TNS}}}GetAssetMaintenanceResponse", nsmap={None: TNS})
        for asset in self.records.assets(query):
            _append_record(response, "asset", asset, xsd_sequence("Asset"))
        for workorder in self.records.workorders(query):
            _append_record(response, "workorder", workorder, xsd_sequence("WorkOrder"))
        response.set("rsCount", str(len(response)))  # as Maximo's query services count their records
        return etree.tostring(envelope, xml_declaration=True, encoding="utf-8")

    def add_routes(self, app: FastAPI) -> None:
        @app.post("/eam/soap")
        async def soap(request: Request) -> Response:
            try:
                query = parse_request(await request.body())
            except SoapClientError as exc:
                return soap_fault(str(exc))
            return Response(self.answer(query), media_type=XML_CONTENT_TYPE)

        @app.get("/eam/soap")
        async def wsdl(request: Request) -> Response:
            if "wsdl" not in {key.lower() for key in request.query_params}:
                return Response("POST SOAP 1.1 requests here; the WSDL is at ?wsdl\n", 405, media_type="text/plain")
            return Response(self.wsdl_for(str(request.url.replace(query=""))), media_type=XML_CONTENT_TYPE)

    def wsdl_for(self, address: str) -> bytes:
        """eam.wsdl with the service address pointing at this server."""
        tree = etree.parse(str(WSDL_PATH), hardened_parser())
        for element in tree.iter(f"{{{WSDL_SOAP}}}address"):
            element.set("location", address)
        return etree.tostring(tree, xml_declaration=True, encoding="utf-8")
