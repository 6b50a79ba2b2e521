"""Resilience against live mocks and real servers on loopback: circuit breakers, bounded retries
and timeouts, reply size limits, TLS trust, credentials, and the checks that prove the ERP's
ledger and the PTW's holds match what the hub recorded.

Timing assertions are one-sided and generous: they prove "bounded", not "fast".
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pydantic
import pytest
from conftest import loopback_server, materialize_sites, reply_json
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from dagster import AssetSelection, DagsterInstance
from lxml import etree
from sqlalchemy import create_engine, text

from hub.assets.erp import erp_ledger_reconciled
from hub.assets.gate import gate_decisions_written_back
from hub.connectors.breaker import breaker_for
from hub.connectors.eam import EamClient, SoapFault
from hub.connectors.endpoint import SoapSpec
from hub.connectors.erp import ErpClient
from hub.connectors.operations import SystemClient
from hub.connectors.rest import RestClient
from hub.connectors.retry import (
    ReplyTooLarge,
    RetryPolicy,
    SystemUnavailable,
    TransientError,
    UntrustedCertificate,
    VendorRejected,
)
from hub.definitions import ASSETS, CHECKS
from hub.logic.costs import message_uuid
from hub.logic.ledger import OutboxEntry, reconcile
from hub.mappings.engine import load_mapping
from hub.model import ErpDocument, SafetyCostEntry
from hub.resources import resources_from_settings
from hub.settings import HubSettings, SystemEndpoint
from hub.store.repository import HubStore
from hub.writers.erp_outbox import ledger_documents
from mock_systems.servers import start_systems
from test_connectors import ASSETS as EAM_ASSETS
from test_connectors import FIXTURES, SOAP_ENV, TNS, WSDL, admin_state, journal_entry, received, set_faults

QUICK = RetryPolicy(attempts=4, initial_s=0.01, max_s=0.05)
MANY = RetryPolicy(attempts=50, initial_s=0.01, max_s=0.05)
MES_QUERY = "/api/v1/material-parameters/query"
MAINTENANCE = SoapSpec(
    operation="GetAssetMaintenance",
    binding="{urn:plant:eam:maintenance:v1}AssetMaintenanceBinding",
    batch_param="assetnum",
)
SOAP_OK = (
    f'<soap:Envelope xmlns:soap="{SOAP_ENV}"><soap:Body><GetAssetMaintenanceResponse xmlns="{TNS}" rsCount="1">'
    "<asset><assetnum>NJ-P-101</assetnum></asset></GetAssetMaintenanceResponse></soap:Body></soap:Envelope>"
).encode()


def rest_client(url: str, system: str, *, retry: RetryPolicy = QUICK, read_timeout_s: float = 10.0, **kwargs: Any):
    return RestClient(
        system, SystemEndpoint(url=url), connect_timeout_s=5.0, read_timeout_s=read_timeout_s, retry=retry, **kwargs
    )


def eam_client(address: str, *, wsdl: str = str(WSDL), timeout_s: float = 10.0, retry: RetryPolicy = QUICK, **kwargs: Any):
    return EamClient(
        SystemEndpoint(url=address), wsdl, connect_timeout_s=5.0, operation_timeout_s=timeout_s, retry=retry, **kwargs
    )


def maintenance(client: EamClient, assetnums: list[str]) -> dict[str, list[dict]]:
    return client.call(MAINTENANCE, {"assetnum": assetnums})


def permits_page(client: RestClient) -> list[dict]:
    return client.request("GET", "/api/v1/permits", params={"page_size": 500})["items"]


def with_uuids(pairs: list[tuple[str, dict]]) -> list[dict]:
    """(message UUID, journal entry) pairs as the ERP flavor writes them: the UUID in the entry's MessageHeader."""
    return [{"MessageHeader": {"UUID": message_uuid}, **entry} for message_uuid, entry in pairs]


def erp_client(url: str, *, ledger_page_size: int | None = None) -> ErpClient:
    return ErpClient(
        SystemClient(
            "ERP",
            load_mapping("erp").spec.endpoint,
            "erp",
            base_url=url,
            rest=rest_client(url, "ERP"),
            sizes={"ledger": ledger_page_size},
        )
    )


def mes_query(client: RestClient, body: dict | None = None) -> Any:
    return client.request("POST", MES_QUERY, json=body if body is not None else {"MaterialDefinitionIDs": ["乙烯"]})


def wait_for_reset(until: dt.datetime) -> None:
    while dt.datetime.now(dt.timezone.utc) <= until:
        time.sleep(0.05)


# -- circuit breaker -------------------------------------------------------------------------


def test_breaker_opens_after_consecutive_failures_and_then_fails_fast(fresh_mocks: Any) -> None:
    set_faults(fresh_mocks, "mes", {"kind": "status", "status": 503})
    url = fresh_mocks.urls["mes"]
    client = rest_client(url, "MES", retry=MANY, breaker=breaker_for("MES", url, failures=3, reset_s=60))

    # The retry policy would allow 50 attempts; the open circuit stops it after the third.
    with pytest.raises(SystemUnavailable, match=r"^MES circuit open until \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"):
        mes_query(client)
    assert client.calls == 3 and len(received(fresh_mocks, "mes")) == 3

    with pytest.raises(SystemUnavailable):
        mes_query(client)
    assert client.calls == 3 and len(received(fresh_mocks, "mes")) == 3  # nothing reached the network


def test_calls_through_one_breaker_reach_the_system_side_by_side() -> None:
    """A flavor's concurrency and the service's concurrent checks are real: the breaker's lock
    guards its state, never a call, so one slow reply does not hold the others back."""
    import threading

    lock, in_flight, most = threading.Lock(), [0], [0]

    class Slow(BaseHTTPRequestHandler):
        def do_GET(self):
            with lock:
                in_flight[0] += 1
                most[0] = max(most[0], in_flight[0])
            time.sleep(0.4)
            with lock:
                in_flight[0] -= 1
            reply_json(self, b'{"ok": true}')

        def log_message(self, *args):
            pass

    with loopback_server(Slow) as url:
        breaker = breaker_for("MES", url, failures=3, reset_s=60)
        clients = [rest_client(url, "MES", breaker=breaker) for _ in range(4)]
        threads = [threading.Thread(target=client.request, args=("GET", "/x")) for client in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert most[0] >= 2, f"at most {most[0]} request(s) in flight: the calls took turns"
    assert breaker.state == "closed"


def test_a_half_open_circuit_lets_exactly_one_trial_through_while_others_fail_fast() -> None:
    import threading

    breaker = breaker_for("MES", "http://127.0.0.1:9", failures=1, reset_s=0.2)

    def down():
        raise TransientError("503")

    with pytest.raises(TransientError):
        breaker.call(down)  # the failure that trips the circuit is reported as itself
    with pytest.raises(SystemUnavailable):
        breaker.call(lambda: "not called")
    wait_for_reset(breaker.open_until())
    trial_started, release = threading.Event(), threading.Event()

    def trial():
        trial_started.set()
        release.wait(10)
        return "up"

    results = []
    thread = threading.Thread(target=lambda: results.append(breaker.call(trial)))
    thread.start()
    assert trial_started.wait(10)
    with pytest.raises(SystemUnavailable):
        breaker.call(lambda: "a second trial")  # only one call tries the system
    release.set()
    thread.join(10)
    assert results == ["up"] and breaker.state == "closed"
    assert breaker.call(lambda: "through") == "through"


def test_open_circuit_lets_one_trial_call_through_after_the_reset(fresh_mocks: Any) -> None:
    set_faults(fresh_mocks, "mes", {"kind": "status", "status": 503})
    url = fresh_mocks.urls["mes"]
    breaker = breaker_for("MES", url, failures=2, reset_s=0.3)
    client = rest_client(url, "MES", retry=MANY, breaker=breaker)
    with pytest.raises(SystemUnavailable):
        mes_query(client)
    assert len(received(fresh_mocks, "mes")) == 2

    wait_for_reset(breaker.open_until())
    with pytest.raises(SystemUnavailable):
        mes_query(client)  # the trial call fails, so the circuit opens again at once
    assert len(received(fresh_mocks, "mes")) == 3

    set_faults(fresh_mocks, "mes")
    wait_for_reset(breaker.open_until())
    assert mes_query(client)["MaterialDefinition"]
    assert breaker.state == "closed"
    assert mes_query(client)["MaterialDefinition"]
    assert len(received(fresh_mocks, "mes")) == 5


def test_refusals_do_not_open_the_circuit(fresh_mocks: Any, tmp_path: Path) -> None:
    mes_url = fresh_mocks.urls["mes"]
    mes = rest_client(mes_url, "MES", breaker=breaker_for("MES", mes_url, failures=1, reset_s=60))
    for _ in range(3):
        with pytest.raises(VendorRejected, match="HTTP 400"):
            mes_query(mes, {"wrong": "shape"})
    assert len(received(fresh_mocks, "mes")) == 3

    # A soap:Client fault (a request over the EAM's 500-asset limit, sent from a drifted WSDL).
    drifted = tmp_path / "eam-drifted.wsdl"
    drifted.write_text(WSDL.read_text(encoding="utf-8").replace('maxOccurs="500"', 'maxOccurs="unbounded"'))
    eam_url = fresh_mocks.urls["eam"]
    eam = eam_client(eam_url, wsdl=str(drifted), breaker=breaker_for("EAM", eam_url, failures=1, reset_s=60))
    for _ in range(2):
        with pytest.raises(SoapFault):
            maintenance(eam, [f"NJ-X-{i:04d}" for i in range(501)])

    assert len(received(fresh_mocks, "eam")) == 2
    assert maintenance(eam, ["NJ-P-101"])["asset"]
    assert mes_query(mes)["MaterialDefinition"]


def test_rest_and_soap_clients_of_one_system_share_its_breaker(fresh_mocks: Any) -> None:
    set_faults(fresh_mocks, "eam", {"kind": "status", "status": 503})
    soap_url = fresh_mocks.urls["eam"]
    soap = eam_client(soap_url, retry=MANY, breaker=breaker_for("EAM", soap_url, failures=2, reset_s=60))
    # A REST client for the same system on the same server, at another path.
    rest = rest_client(fresh_mocks.base_urls["eam"] + "/oslc", "EAM", retry=MANY)
    assert rest.breaker is soap.breaker

    with pytest.raises(SystemUnavailable, match="^EAM circuit open"):
        maintenance(soap, ["NJ-P-101"])
    with pytest.raises(SystemUnavailable, match="^EAM circuit open"):
        rest.request("GET", "/os/assets")

    assert rest.calls == 0
    assert len(received(fresh_mocks, "eam")) == 2


def test_each_system_has_its_own_breaker(fresh_mocks: Any) -> None:
    set_faults(fresh_mocks, "mes", {"kind": "status", "status": 503})
    mes_url, erp_url = fresh_mocks.urls["mes"], fresh_mocks.urls["erp"]
    mes = rest_client(mes_url, "MES", retry=MANY, breaker=breaker_for("MES", mes_url, failures=2, reset_s=60))
    erp = rest_client(erp_url, "ERP", breaker=breaker_for("ERP", erp_url, failures=2, reset_s=60))

    with pytest.raises(SystemUnavailable):
        mes_query(mes)

    assert erp.request("GET", "/api/v1/journal-entries", params={"page": 1})["results"] == []


# -- bounded retries and timeouts ---------------------------------------------------------------


def test_retry_budget_bounds_the_whole_retry_loop(fresh_mocks: Any) -> None:
    set_faults(fresh_mocks, "ptw", {"kind": "status", "status": 503})
    url = fresh_mocks.urls["ptw"]
    policy = RetryPolicy(attempts=1000, initial_s=0.2, max_s=0.2, budget_s=1.0)
    client = rest_client(url, "PTW", retry=policy, breaker=breaker_for("PTW", url, failures=1000))

    started = time.monotonic()
    with pytest.raises(TransientError, match="HTTP 503"):
        client.request("GET", "/api/v1/permits")
    elapsed = time.monotonic() - started

    # Waits are 0.2 s each, so a 1 s budget leaves room for a handful of attempts, not 1000.
    assert 2 <= client.calls <= 10
    assert elapsed < 30


def test_hung_rest_server_fails_within_the_timeout_budget(fresh_mocks: Any) -> None:
    set_faults(fresh_mocks, "ptw", {"kind": "timeout", "delay_s": 30})
    client = rest_client(fresh_mocks.urls["ptw"], "PTW", read_timeout_s=0.5, retry=RetryPolicy(2, 0.01, 0.05))

    started = time.monotonic()
    with pytest.raises(TransientError, match="ReadTimeout"):
        client.request("GET", "/api/v1/permits")

    assert time.monotonic() - started < 20  # the server would have answered after 30 s
    assert client.calls == 2


def test_hung_soap_server_fails_within_the_timeout_budget(fresh_mocks: Any) -> None:
    set_faults(fresh_mocks, "eam", {"kind": "timeout", "delay_s": 30, "method": "POST"})
    client = eam_client(fresh_mocks.urls["eam"], timeout_s=0.5, retry=RetryPolicy(2, 0.01, 0.05))

    started = time.monotonic()
    with pytest.raises(TransientError, match="Timeout"):
        maintenance(client, ["NJ-P-101"])

    assert time.monotonic() - started < 20
    assert client.calls == 2


def test_hung_wsdl_download_fails_within_the_timeout_budget(fresh_mocks: Any) -> None:
    set_faults(fresh_mocks, "eam", {"kind": "timeout", "delay_s": 30, "method": "GET"})
    url = fresh_mocks.urls["eam"]
    client = eam_client(url, wsdl=f"{url}?wsdl", timeout_s=0.5, retry=RetryPolicy(2, 0.01, 0.05))

    started = time.monotonic()
    with pytest.raises(TransientError, match="Timeout"):
        maintenance(client, ["NJ-P-101"])

    assert time.monotonic() - started < 20
    assert [e["method"] for e in received(fresh_mocks, "eam")] == ["GET", "GET"]


@pytest.mark.parametrize("kind", ["reset", "malformed", "truncate", "rate_limit"])
def test_one_bad_rest_answer_is_retried(fresh_mocks: Any, kind: str) -> None:
    rule: dict[str, Any] = {"kind": kind, "times": 1}
    if kind == "rate_limit":
        rule["retry_after_s"] = 0
    set_faults(fresh_mocks, "ptw", rule)
    client = rest_client(fresh_mocks.urls["ptw"], "PTW")

    assert permits_page(client)
    assert client.calls == 2


@pytest.mark.parametrize("kind", ["reset", "malformed", "truncate", "soap_fault"])
def test_one_bad_soap_answer_is_retried(fresh_mocks: Any, kind: str) -> None:
    set_faults(fresh_mocks, "eam", {"kind": kind, "times": 1, "method": "POST"})
    client = eam_client(fresh_mocks.urls["eam"])

    reply = maintenance(client, ["NJ-P-101"])

    assert [a["assetnum"] for a in reply["asset"]] == ["NJ-P-101"]
    assert client.calls == 2


# -- reply size limits --------------------------------------------------------------------------


def test_oversize_rest_reply_is_refused_and_not_retried(fresh_mocks: Any) -> None:
    client = rest_client(fresh_mocks.urls["ptw"], "PTW", max_response_bytes=1000)

    with pytest.raises(ReplyTooLarge, match="^PTW reply exceeds the 1000-byte limit"):
        permits_page(client)

    assert client.calls == 1
    assert client.breaker.state == "closed"


@pytest.fixture
def endless_server() -> Iterator[tuple[str, dict]]:
    """Answers every GET with a body that has no length and would go on for 256 MiB."""
    sent = {"bytes": 0}
    chunk = b"x" * 65536

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # the body ends when the connection closes

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            try:
                while sent["bytes"] < 256 * 1024 * 1024:
                    self.wfile.write(chunk)
                    sent["bytes"] += len(chunk)
            except OSError:
                pass  # the client stopped reading and hung up

        def log_message(self, *args: Any) -> None:
            pass

    with loopback_server(Handler) as url:
        yield url, sent


def test_reply_without_length_is_cut_off_at_the_limit(endless_server: tuple[str, dict]) -> None:
    url, sent = endless_server
    client = rest_client(url, "MES", max_response_bytes=1024 * 1024)

    with pytest.raises(ReplyTooLarge, match="^MES reply exceeds the 1048576-byte limit"):
        client.request("GET", "/api/v1/materials/all")

    assert client.calls == 1
    assert sent["bytes"] < 256 * 1024 * 1024  # the hub hung up long before the end


def test_oversize_soap_reply_is_refused_and_not_retried(fresh_mocks: Any) -> None:
    client = eam_client(fresh_mocks.urls["eam"], max_response_bytes=2000)

    with pytest.raises(ReplyTooLarge, match="^EAM reply exceeds the 2000-byte limit"):
        maintenance(client, [a["assetnum"] for a in EAM_ASSETS])

    assert client.calls == 1 and len(received(fresh_mocks, "eam")) == 1


def test_oversize_wsdl_is_refused(fresh_mocks: Any) -> None:
    url = fresh_mocks.urls["eam"]
    client = eam_client(url, wsdl=f"{url}?wsdl", max_response_bytes=len(WSDL.read_bytes()) // 2)

    with pytest.raises(ReplyTooLarge, match="^EAM reply exceeds"):
        maintenance(client, ["NJ-P-101"])

    assert [e["method"] for e in received(fresh_mocks, "eam")] == ["GET"]


# -- TLS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """An HTTPS server with a self-signed certificate for 127.0.0.1; yields its URL and the CA file.

    GET answers an empty permit page, POST a one-asset SOAP reply.
    """
    directory = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "plant test CA")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "ca.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, body: bytes, content_type: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._answer(b'{"items": [], "next_page_token": null}', "application/json")

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._answer(SOAP_OK, "text/xml; charset=utf-8")

        def log_message(self, *args: Any) -> None:
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    with loopback_server(Handler, lambda sock: context.wrap_socket(sock, server_side=True)) as url:
        yield url, cert_file


def test_rest_tls_is_verified_and_a_private_ca_is_trusted_only_when_given(tls_server: tuple[str, Path]) -> None:
    url, ca_file = tls_server
    untrusting = rest_client(url, "PTW")

    with pytest.raises(UntrustedCertificate, match="^PTW TLS certificate not trusted .*self-signed.*HUB_CA_BUNDLE"):
        untrusting.request("GET", "/api/v1/permits")
    assert untrusting.calls == 1  # never retried
    assert untrusting.breaker.state == "closed"

    trusting = rest_client(url, "PTW", ca_bundle=str(ca_file))
    assert permits_page(trusting) == []


def test_soap_tls_is_verified_and_a_private_ca_is_trusted_only_when_given(tls_server: tuple[str, Path]) -> None:
    url, ca_file = tls_server

    untrusting = eam_client(f"{url}/eam/soap")
    with pytest.raises(UntrustedCertificate, match="^EAM TLS certificate not trusted"):
        maintenance(untrusting, ["NJ-P-101"])
    assert untrusting.calls == 1

    trusting = eam_client(f"{url}/eam/soap", ca_bundle=str(ca_file))
    assert maintenance(trusting, ["NJ-P-101"])["asset"] == [{"assetnum": "NJ-P-101"}]


def test_ca_bundle_setting_reaches_every_client(tls_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    url, ca_file = tls_server
    monkeypatch.setenv("HUB_CA_BUNDLE", str(ca_file))
    monkeypatch.setenv("HUB_PTW__URL", url)
    monkeypatch.setenv("HUB_EAM__URL", f"{url}/eam/soap")

    resources = resources_from_settings(HubSettings(eam_wsdl=str(WSDL)))

    assert {name: resources[name].ca_bundle for name in ("ptw", "eam", "mes", "erp")} == dict.fromkeys(
        ("ptw", "eam", "mes", "erp"), str(ca_file)
    )
    assert resources["ptw"].client().fetch("permits_changed", since=None) == {"permit": []}
    assert resources["eam"].client().fetch("maintenance", ids=["NJ-P-101"])["equipment"]


def test_ca_bundle_must_exist(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HUB_CA_BUNDLE", str(tmp_path / "missing.pem"))
    with pytest.raises(pydantic.ValidationError, match="ca_bundle"):
        HubSettings()


# -- credentials, end to end ---------------------------------------------------------------------

PTW_TOKEN, EAM_PASSWORD, MES_KEY, ERP_PASSWORD = "ptw-t0k", "eam-pa55", "mes-k3y", "erp-pa55"


@pytest.fixture(scope="module")
def authed_mocks() -> Iterator[Any]:
    auth = {
        "ptw": {"bearer": PTW_TOKEN},
        "eam": {"basic": ["hub", EAM_PASSWORD]},
        "mes": {"api_key": {"header": "X-API-Key", "value": MES_KEY}},
        "erp": {"basic": ["hub", ERP_PASSWORD]},
    }
    with start_systems(FIXTURES, auth=auth) as running:
        yield running


def test_missing_credentials_are_refused_without_retry(authed_mocks: Any) -> None:
    urls = authed_mocks.urls
    for system in ("ptw", "mes", "erp"):
        client = rest_client(urls[system], system.upper())
        with pytest.raises(VendorRejected, match="HTTP 401"):
            client.request("GET", "/api/v1/permits")
        assert client.calls == 1 and client.breaker.state == "closed"
    eam = eam_client(urls["eam"])
    with pytest.raises(VendorRejected, match="HTTP 401"):
        maintenance(eam, ["NJ-P-101"])
    assert eam.calls == 1


def test_credentials_from_settings_pass_every_system(
    authed_mocks: Any, sqlite_url: str, make_settings: Any
) -> None:
    for base_url in authed_mocks.base_urls.values():
        httpx.post(f"{base_url}/_admin/reset", timeout=10).raise_for_status()
    urls = authed_mocks.urls
    settings = make_settings(
        sqlite_url,
        urls,
        ptw=SystemEndpoint(url=urls["ptw"], token=PTW_TOKEN),
        eam=SystemEndpoint(url=urls["eam"], username="hub", password=EAM_PASSWORD),
        mes=SystemEndpoint(url=urls["mes"], api_key=MES_KEY),
        erp=SystemEndpoint(url=urls["erp"], username="hub", password=ERP_PASSWORD),
    )

    with DagsterInstance.ephemeral() as instance:
        result = run_all(settings, instance)

    assert result.success
    assert len(admin_state(authed_mocks, "ptw")["holds"]) == 20
    assert len(admin_state(authed_mocks, "erp")["documents"]) == 83
    systems = ("ptw", "eam", "mes", "erp")
    statuses = {system: {e["status"] for e in received(authed_mocks, system)} for system in systems}
    assert statuses == dict.fromkeys(systems, {200})
    # Each site's EAM request names its site.
    requests = received(authed_mocks, "eam")
    assert sorted(etree.fromstring(e["body"].encode()).findtext(f".//{{{TNS}}}siteid") for e in requests) == sorted(
        settings.sites
    )


# -- ERP ledger reconciliation -------------------------------------------------------------------


def run_all(settings: HubSettings, instance: DagsterInstance, selection: Any = None):
    return materialize_sites(
        [*ASSETS, *CHECKS],
        resources=resources_from_settings(settings),
        instance=instance,
        raise_on_error=False,
        selection=selection,
    )


def check_evaluation(result: Any, name: str) -> tuple[bool, dict]:
    """A check over the sites' runs: passed in every one; counts add up, named items are listed together."""
    evaluations = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    assert len(evaluations) == len(result.results)
    values: dict[str, list] = {}
    for evaluation in evaluations:
        for key, entry in evaluation.metadata.items():
            value = entry.value
            if hasattr(value, "records"):  # a table (the mismatches preview): its rows as text
                value = "; ".join(str(row.data) for row in value.records) or "none"
            values.setdefault(key, []).append(value)
    metadata = {
        key: sum(found) if all(isinstance(v, int) for v in found) else ", ".join(v for v in found if v != "none") or "none"
        for key, found in values.items()
    }
    return all(e.passed for e in evaluations), metadata


def test_list_documents_pages_through_the_whole_ledger(fresh_mocks: Any) -> None:
    client = erp_client(fresh_mocks.urls["erp"], ledger_page_size=2)
    entries = [(str(uuid.uuid4()), journal_entry(f"PTW-NJ-2026-0007/line{i}", amount=f"{i + 1}.50")) for i in range(5)]
    list(client.post_entries(with_uuids(entries)))

    documents = ledger_documents(client, load_mapping("erp"))

    assert sorted(d.message_uuid for d in documents) == sorted(u for u, _ in entries)
    assert {d.reference: d.amount for d in documents} == {
        f"PTW-NJ-2026-0007/line{i}": Decimal(f"{i + 1}.50") for i in range(5)
    }
    listing = [e for e in received(fresh_mocks, "erp") if e["method"] == "GET"]
    assert [(e["query"]["page"], e["query"]["size"]) for e in listing] == [("1", "2"), ("2", "2"), ("3", "2")]


def test_list_documents_of_one_company_asks_the_erp_for_that_company_only(fresh_mocks: Any) -> None:
    client = erp_client(fresh_mocks.urls["erp"], ledger_page_size=2)
    nj = [(str(uuid.uuid4()), journal_entry(f"PTW-NJ-2026-0007/line{i}")) for i in range(3)]
    hz = journal_entry("PTW-HZ-2026-0005/labour")
    hz["JournalEntry"].update(CompanyCode="HZ02", CostCenter="CC-HZ-ARO")
    list(client.post_entries(with_uuids([*nj, (str(uuid.uuid4()), hz)])))

    assert [d.reference for d in ledger_documents(client, load_mapping("erp"), company="HZ02")] == ["PTW-HZ-2026-0005/labour"]
    assert sorted(d.message_uuid for d in ledger_documents(client, load_mapping("erp"), company="NJ01")) == sorted(u for u, _ in nj)
    listing = [e["query"] for e in received(fresh_mocks, "erp") if e["method"] == "GET"]
    assert [q["CompanyCode"] for q in listing] == ["HZ02", "NJ01", "NJ01"]


def _entry(key: str, amount: str = "100.00") -> SafetyCostEntry:
    return SafetyCostEntry(
        entry_key=key,
        permit_id=key.split("/")[0],
        site="NJ01",
        cost_center="CC-NJ-CRK",
        gl_account="66020103",
        amount=Decimal(amount),
        currency="CNY",
        posting_date=dt.date(2026, 11, 20),
        description=key,
    )


def _document(number: str, key: str, uuid_: str | None, amount: str = "100.00") -> ErpDocument:
    return ErpDocument(
        accounting_document=number,
        company_code="NJ01",
        fiscal_year="2026",
        reference=key,
        message_uuid=uuid_,
        gl_account="66020103",
        cost_center="CC-NJ-CRK",
        amount=Decimal(amount),
        currency="CNY",
    )


def test_reconcile_names_every_kind_of_mismatch() -> None:
    def uid(key: str) -> str:
        return str(message_uuid(key))

    outbox = [
        OutboxEntry("P1/labour", uid("P1/labour"), "5100000001", _entry("P1/labour")),  # matches
        OutboxEntry("P2/labour", uid("P2/labour"), "5100000002", _entry("P2/labour")),  # ERP lost it
        OutboxEntry("P3/labour", uid("P3/labour"), None, _entry("P3/labour")),  # unclear, yet booked
        OutboxEntry("P4/labour", uid("P4/labour"), "5100000004", _entry("P4/labour")),  # booked twice
        OutboxEntry("P5/labour", uid("P5/labour"), "5100000005", _entry("P5/labour")),  # other amount
        OutboxEntry("P6/labour", uid("P6/labour"), "5199999999", _entry("P6/labour")),  # other number
    ]
    documents = [
        _document("5100000001", "P1/labour", uid("P1/labour")),
        _document("5100000003", "P3/labour", uid("P3/labour")),
        _document("5100000004", "P4/labour", uid("P4/labour")),
        _document("5100000009", "P4/labour", str(uuid.uuid4())),
        _document("5100000005", "P5/labour", uid("P5/labour"), amount="150.00"),
        _document("5100000006", "P6/labour", uid("P6/labour")),
        _document("5100000007", "P7/labour", uid("P7/labour")),  # the hub's UUID, but no outbox row
        _document("5100000008", "MANUAL-0042", str(uuid.uuid4())),  # not the hub's: ignored
    ]

    found = reconcile(outbox, documents)

    assert found.missing_in_erp == ["P2/labour"]
    assert found.not_recorded_in_hub == ["P3/labour", "P7/labour"]
    assert found.posted_twice == ["P4/labour"]
    assert found.booked_differently == {
        "P5/labour": ["amount hub=100.00 erp=150.00"],
        "P6/labour": ["accounting_document hub=5199999999 erp=5100000006"],
    }
    assert not found.clean
    assert reconcile(outbox[:1], documents[:1]).clean


def test_ledger_check_passes_when_clean_and_names_every_mismatch(
    fresh_mocks: Any, sqlite_url: str, make_settings: Any
) -> None:
    settings = make_settings(sqlite_url, fresh_mocks.urls)
    only_check = AssetSelection.checks(erp_ledger_reconciled)
    with DagsterInstance.ephemeral() as instance:
        passed, metadata = check_evaluation(run_all(settings, instance), "erp_ledger_reconciled")
        assert passed
        assert metadata["erp_documents"] == metadata["outbox_entries"] == 83
        assert metadata["entry_keys"] == "none"

        engine = create_engine(sqlite_url)
        with engine.begin() as conn:
            keys = [r[0] for r in conn.execute(text("SELECT entry_key FROM erp_outbox ORDER BY entry_key"))]
            twin, renumbered, unrecorded = keys[:3]
            conn.execute(
                text("UPDATE erp_outbox SET accounting_document = '5199999999' WHERE entry_key = :k"), {"k": renumbered}
            )
            conn.execute(
                text("UPDATE erp_outbox SET status = 'unclear', accounting_document = NULL WHERE entry_key = :k"),
                {"k": unrecorded},
            )
        engine.dispose()
        # Someone books one of the hub's entries again by hand, under a new message UUID, once
        # under its own company and once under another one.
        erp = erp_client(fresh_mocks.urls["erp"])
        twin_entry = next(row for row in HubStore(sqlite_url).load_outbox() if row["entry_key"] == twin)["payload"]
        same_company = journal_entry(twin)
        same_company["JournalEntry"].update(CompanyCode=twin_entry["site"], CostCenter=twin_entry["cost_center"])
        other = "NJ01" if twin_entry["site"] != "NJ01" else "HZ02"
        other_company = journal_entry(twin)
        other_company["JournalEntry"].update(CompanyCode=other, CostCenter={"NJ01": "CC-NJ-CRK", "HZ02": "CC-HZ-ARO"}[other])
        list(erp.post_entries(with_uuids([(str(uuid.uuid4()), same_company), (str(uuid.uuid4()), other_company)])))

        passed, metadata = check_evaluation(run_all(settings, instance, only_check), "erp_ledger_reconciled")
        assert not passed
        assert (metadata["posted_twice"], metadata["booked_differently"], metadata["not_recorded_in_hub"]) == (1, 1, 1)
        assert metadata["booked_under_another_company"] == 1
        assert metadata["missing_in_erp"] == 0
        assert set(metadata["entry_keys"].split(", ")) == {twin, renumbered, unrecorded}
        assert "accounting_document hub=5199999999" in metadata["mismatches"]

        httpx.post(f"{fresh_mocks.base_urls['erp']}/_admin/reset", timeout=10).raise_for_status()
        passed, metadata = check_evaluation(run_all(settings, instance, only_check), "erp_ledger_reconciled")
        assert not passed
        assert metadata["missing_in_erp"] == 82  # every entry still recorded as posted
        # At most 50 keys listed a site: HZ02's 16 and the first 50 of NJ01's 66.
        assert len(metadata["entry_keys"].split(", ")) == 16 + 50


def test_a_sync_reconciles_only_new_documents_yet_sees_a_second_booking(
    fresh_mocks: Any, sqlite_url: str, make_settings: Any
) -> None:
    """The full-sync job's ledger check reads the documents numbered since its last clean pass;
    an entry of the hub booked again by hand after that is still `posted_twice`; any other run
    reads the whole ledger."""
    from hub.definitions import build_definitions

    settings = make_settings(sqlite_url, fresh_mocks.urls)
    job = build_definitions(settings).resolve_job_def("full_sync")

    def ledger_check(site: str) -> dict:
        result = job.execute_in_process(instance=instance, partition_key=site, raise_on_error=False)
        [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == "erp_ledger_reconciled"]
        return {"passed": evaluation.passed, **{k: v.value for k, v in evaluation.metadata.items()}}

    with DagsterInstance.ephemeral() as instance:
        first = ledger_check("NJ01")
        assert first["passed"] and first["pass"] == "full" and first["erp_documents"] > 0
        quiet = ledger_check("NJ01")
        assert quiet["passed"] and quiet["pass"].startswith("documents from ") and quiet["erp_documents"] == 0

        row = next(r for r in HubStore(sqlite_url).load_outbox(site="NJ01") if r["status"] == "posted")
        twin = journal_entry(row["entry_key"])
        twin["JournalEntry"].update(CompanyCode="NJ01", CostCenter=row["payload"]["cost_center"])
        list(erp_client(fresh_mocks.urls["erp"]).post_entries(with_uuids([(str(uuid.uuid4()), twin)])))
        caught = ledger_check("NJ01")
        assert not caught["passed"] and caught["posted_twice"] == 1 and caught["entry_keys"] == row["entry_key"]
        assert caught["erp_documents"] == 2  # the new document, and the first booking fetched by reference
        # Not clean: the next sync looks at the same window again.
        assert ledger_check("NJ01")["pass"] == caught["pass"]
        whole = check_evaluation(run_all(settings, instance, AssetSelection.checks(erp_ledger_reconciled)), "erp_ledger_reconciled")
        assert not whole[0] and set(whole[1]["pass"].split(", ")) == {"full"} and whole[1]["posted_twice"] == 1


def test_erp_5xx_after_commit_is_surfaced_by_the_check_then_settled(
    fresh_mocks: Any, sqlite_url: str, make_settings: Any
) -> None:
    set_faults(fresh_mocks, "erp", {"kind": "commit_then_status", "status": 503, "method": "POST"})
    settings = make_settings(sqlite_url, fresh_mocks.urls)
    with DagsterInstance.ephemeral() as instance:
        failed = run_all(settings, instance)
        assert not failed.success
        assert len(admin_state(fresh_mocks, "erp")["documents"]) == 83  # the ERP booked them all

        passed, metadata = check_evaluation(
            run_all(settings, instance, AssetSelection.checks(erp_ledger_reconciled)), "erp_ledger_reconciled"
        )
        assert not passed
        assert metadata["not_recorded_in_hub"] == 83 and metadata["posted_twice"] == 0

        set_faults(fresh_mocks, "erp")
        settled = run_all(settings, instance)
    assert settled.success
    assert check_evaluation(settled, "erp_ledger_reconciled")[0]
    assert len(admin_state(fresh_mocks, "erp")["documents"]) == 83  # never booked twice


def test_ledger_check_fails_when_the_erp_cannot_be_read(fresh_mocks: Any, sqlite_url: str, make_settings: Any) -> None:
    set_faults(fresh_mocks, "erp", {"kind": "status", "status": 503, "method": "GET"})
    settings = make_settings(sqlite_url, fresh_mocks.urls)
    with DagsterInstance.ephemeral() as instance:
        result = run_all(settings, instance, AssetSelection.checks(erp_ledger_reconciled))

    passed, metadata = check_evaluation(result, "erp_ledger_reconciled")
    assert not passed
    assert "HTTP 503" in metadata["erp_error"]


# -- PTW write-back ------------------------------------------------------------------------------


def test_write_back_check_shows_holds_not_yet_written(fresh_mocks: Any, sqlite_url: str, make_settings: Any) -> None:
    # Every hold write fails (PUT for blocks, DELETE for allows); the permit listing still works.
    set_faults(fresh_mocks, "ptw", {"kind": "status", "status": 503, "path_prefix": "/api/v1/permits/"})
    settings = make_settings(sqlite_url, fresh_mocks.urls, retry_attempts=2)
    only_check = AssetSelection.checks(gate_decisions_written_back)
    with DagsterInstance.ephemeral() as instance:
        assert not run_all(settings, instance).success

        passed, metadata = check_evaluation(run_all(settings, instance, only_check), "gate_decisions_written_back")
        assert not passed
        assert metadata["not_written_back"] == 28  # 20 blocks and 8 allows
        assert "PTW-NJ-2026-0004" in metadata["permit_ids"].split(", ")

        set_faults(fresh_mocks, "ptw")
        again = run_all(settings, instance)
    assert again.success
    passed, metadata = check_evaluation(again, "gate_decisions_written_back")
    assert passed and metadata["not_written_back"] == 0 and metadata["permit_ids"] == "none"
