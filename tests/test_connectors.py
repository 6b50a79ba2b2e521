"""Connector contract tests: the hub's PTW, MES, ERP and EAM operations against the live mocks.

Each system is spoken to as its packaged flavor file's `endpoint:` section describes it
(`SystemClient` over `RestClient`, and over `EamClient` for SOAP).

Everything except the auth-header test talks over real loopback HTTP to the mock systems of
`mock_systems/` (session fixture `mock_systems`, reset per test by `fresh_mocks`). Faults are set
through each mock's admin surface (`PUT /_admin/faults`) and what reached a mock is read back from
`GET /_admin/received`, so the assertions are about what went over the wire, not about mocks of
our own code.

Timing assertions are one-sided and generous: the suite runs on small, noisy machines.
"""

from __future__ import annotations

import base64
import json
import math
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import respx
from conftest import loopback_server
from lxml import etree

from hub.connectors.eam import EamClient, SoapFault, parse_reply
from hub.connectors.erp import ErpClient
from hub.connectors.operations import SystemClient
from hub.connectors.rest import RestClient
from hub.connectors.retry import RetryPolicy, TransientError, VendorRejected
from hub.mappings import Mapping, load_mapping, parse_mapping
from hub.settings import SystemEndpoint

REPO_ROOT = Path(__file__).parents[1]
FIXTURES = REPO_ROOT / "fixtures"
WSDL = REPO_ROOT / "mock_systems" / "eam.wsdl"
PLANT_TZ = ZoneInfo("Asia/Shanghai")
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
TNS = "urn:plant:eam:maintenance:v1"

# Tiny waits so retries are quick; max_s leaves room for a Retry-After of 1 s.
FAST = RetryPolicy(attempts=4, initial_s=0.01, max_s=2)
SLACK_S = 0.05  # clock granularity only; lower bounds never depend on the machine being fast


def fixture(relative: str) -> Any:
    return json.loads((FIXTURES / relative).read_text(encoding="utf-8"))


PERMITS = fixture("ptw/permits.json")
ASSETS = fixture("eam/assets.json")
WORKORDERS = fixture("eam/workorders.json")
MATERIALS = fixture("mes/materials.json")
COMPANY = fixture("erp/company.json")["companyCodes"][0]
COMPANY_CODE = COMPANY["CompanyCode"]
COST_CENTER = COMPANY["CostCenters"][0]["CostCenter"]
GL_ACCOUNT = COMPANY["GLAccounts"][0]["GLAccount"]


# -- admin surface helpers ------------------------------------------------------------------


def set_faults(mocks: Any, system: str, *rules: dict, latency_ms: float = 0) -> None:
    plan = {"latency_ms": latency_ms, "rules": list(rules)}
    httpx.put(f"{mocks.base_urls[system]}/_admin/faults", json=plan, timeout=10).raise_for_status()


def received(mocks: Any, system: str) -> list[dict]:
    response = httpx.get(f"{mocks.base_urls[system]}/_admin/received", timeout=10)
    response.raise_for_status()
    return response.json()


def admin_state(mocks: Any, system: str) -> dict:
    response = httpx.get(f"{mocks.base_urls[system]}/_admin/state", timeout=10)
    response.raise_for_status()
    return response.json()


def wait_until(predicate: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


@pytest.fixture
def rest(fresh_mocks: Any) -> Iterator[Callable[..., RestClient]]:
    """Factory for RestClients against the fresh mocks; all are closed after the test."""
    made: list[RestClient] = []

    def make(system: str, *, read_timeout_s: float = 10.0, retry: RetryPolicy = FAST, **auth: Any) -> RestClient:
        client = RestClient(
            system.upper(),
            SystemEndpoint(url=fresh_mocks.urls[system], **auth),
            connect_timeout_s=5.0,
            read_timeout_s=read_timeout_s,
            retry=retry,
        )
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def operations(
    flavor: str | Mapping, url: str, *, rest: RestClient | None = None, soap: EamClient | None = None, size: int | None = None
) -> SystemClient:
    """The operations a flavor file describes, at `url`; `size` lowers the size of its tuned operation."""
    mapping = flavor if isinstance(flavor, Mapping) else load_mapping(flavor)
    assert mapping.spec.endpoint is not None
    tuned = {"ptw": "permits_changed", "eam": "maintenance", "mes": "parameters", "erp": "post_entries"}[mapping.system]
    return SystemClient(
        mapping.system.upper(), mapping.spec.endpoint, mapping.name, base_url=url, rest=rest, soap=soap,
        sizes={tuned: size},
    )


def flavor_edited(name: str, old: str, new: str) -> Mapping:
    """A packaged flavor with one piece of text replaced: a vendor limit the hub's copy drifted from."""
    text = (REPO_ROOT / "hub" / "mappings" / f"{name}.yaml").read_text(encoding="utf-8")
    assert old in text
    return parse_mapping(text.replace(old, new), f"{name}-edited.yaml")


def ptw(http: RestClient, mocks: Any, page_size: int | None = None) -> SystemClient:
    return operations("ptw", mocks.urls["ptw"], rest=http, size=page_size)


def mes(http: RestClient, mocks: Any, batch_size: int | None = None) -> SystemClient:
    return operations("mes", mocks.urls["mes"], rest=http, size=batch_size)


def erp(http: RestClient, mocks: Any, batch_size: int | None = None) -> ErpClient:
    return ErpClient(operations("erp", mocks.urls["erp"], rest=http, size=batch_size))


@dataclass(frozen=True)
class Answer:
    """One entry's confirmation, read through erp.yaml, with the REST face's own `Duplicate` flag."""

    message_uuid: str
    accounting_document: str | None
    fiscal_year: str | None
    duplicate: bool
    error: str | None


def post(client: ErpClient, entries: list[tuple[str, dict]]) -> Iterator[list[Answer]]:
    """Post (message UUID, journal entry) pairs, the UUID in each entry's MessageHeader, as erp.yaml writes it."""
    mapping = load_mapping("erp")
    for raw in client.post_entries([{"MessageHeader": {"UUID": u}, **entry} for u, entry in entries]):
        confirmations = mapping.inbound("erp_confirmation", raw).records
        assert len(confirmations) == len(raw)
        yield [
            Answer(c.message_uuid, c.accounting_document if c.posted else None, c.fiscal_year if c.posted else None,
                   bool(r.get("Duplicate")), None if c.posted else c.refusal)
            for c, r in zip(confirmations, raw)
        ]


def eam_client(
    mocks: Any,
    *,
    batch_size: int | None = None,
    wsdl: Path = WSDL,
    timeout_s: float = 10.0,
    address: str | None = None,
    flavor: str | Mapping = "eam",
) -> SystemClient:
    """The EAM's operations over SOAP at the mock EAM (or `address`), with the local WSDL and the fast policy."""
    url = address or mocks.urls["eam"]
    soap = EamClient(SystemEndpoint(url=url), str(wsdl), connect_timeout_s=5.0, operation_timeout_s=timeout_s, retry=FAST)
    return operations(flavor, url, soap=soap, size=batch_size)


def material_ids(reply: dict) -> list[str]:
    return sorted(m["ID"] for m in reply.get("process_parameter", []))


def permit_pages(client: SystemClient, since: str | None = None) -> list[list[dict]]:
    return [page["permit"] for page in client.pages("permits_changed", since=since)]


# -- PTW ------------------------------------------------------------------------------------


def hold_body(code: str = "OPEN_WORK_ORDER", device: str = "P-101") -> dict:
    return {
        "action": "BLOCK",
        "ruleVersion": "gate-2026.11-1",
        "decidedAt": "2026-11-28T10:00:00Z",
        "reasons": [{"code": code, "deviceId": device, "message": "open work order", "evidence": {"wonum": "WO-1001"}}],
    }


def test_ptw_pages_cover_every_permit_exactly_once(fresh_mocks: Any, rest: Callable[..., RestClient]) -> None:
    page_size = 5
    client = ptw(rest("ptw"), fresh_mocks, page_size=page_size)

    pages = permit_pages(client)

    tickets = [permit["ticketNo"] for page in pages for permit in page]
    assert len(tickets) == len(PERMITS)
    assert sorted(tickets) == sorted(p["ticketNo"] for p in PERMITS)
    assert all(0 < len(page) <= page_size for page in pages)
    assert len(pages) == math.ceil(len(PERMITS) / page_size)
    # One GET per page, each asking for the small page size; only the first has no token.
    log = received(fresh_mocks, "ptw")
    assert len(log) == len(pages)
    assert all(entry["method"] == "GET" and entry["path"] == "/api/v1/permits" for entry in log)
    assert all(entry["query"]["page_size"] == str(page_size) for entry in log)
    assert "page_token" not in log[0]["query"] and all("page_token" in e["query"] for e in log[1:])
    # Permits come back exactly as stored.
    by_ticket = {p["ticketNo"]: p for p in PERMITS}
    assert all(permit == by_ticket[permit["ticketNo"]] for page in pages for permit in page)


def test_ptw_updated_since_narrows_the_listing(fresh_mocks: Any, rest: Callable[..., RestClient]) -> None:
    cursor = datetime(2026, 12, 1, tzinfo=PLANT_TZ)
    client = ptw(rest("ptw"), fresh_mocks, page_size=7)

    # 2026-11-30T16:00:00Z is midnight 1 December in plant time: the offset must be honoured.
    got = [p["ticketNo"] for page in permit_pages(client, "2026-11-30T16:00:00Z") for p in page]

    def updated(permit: dict) -> datetime:
        try:
            return datetime.strptime(permit["updateTime"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=PLANT_TZ)
        except (TypeError, ValueError):
            return datetime.now(timezone.utc)  # the mock lists unparsable times as "just updated"

    expected = {p["ticketNo"] for p in PERMITS if updated(p) >= cursor}
    assert 0 < len(expected) < len(PERMITS)  # the cursor really narrows
    assert sorted(got) == sorted(expected)
    assert all(e["query"]["updated_since"] == "2026-11-30T16:00:00Z" for e in received(fresh_mocks, "ptw"))


def test_ptw_hold_put_is_idempotent_and_release_lifts_it(fresh_mocks: Any, rest: Callable[..., RestClient]) -> None:
    ticket = PERMITS[0]["ticketNo"]
    client = ptw(rest("ptw"), fresh_mocks)

    def put_hold(body: dict) -> dict:
        return client.call("put_hold", id=ticket, source="integration-hub", body=body)

    first = put_hold(hold_body())
    again = put_hold(hold_body())
    changed = put_hold(hold_body(code="EAM_UNAVAILABLE"))

    assert first == {"changed": True, "revision": 1}
    assert again == {"changed": False, "revision": 1}
    assert changed == {"changed": True, "revision": 2}

    permit = client.call("get_permit", id=ticket)
    assert permit["ticketNo"] == ticket
    [hold] = permit["holds"]
    assert hold["source"] == "integration-hub"
    assert hold["action"] == "BLOCK"
    assert hold["revision"] == 2
    assert [r["code"] for r in hold["reasons"]] == ["EAM_UNAVAILABLE"]
    assert admin_state(fresh_mocks, "ptw")["holds"][ticket][0]["revision"] == 2

    assert client.call("release_hold", id=ticket, source="integration-hub") == {"changed": True}
    assert client.call("release_hold", id=ticket, source="integration-hub") == {"changed": False}
    assert client.call("get_permit", id=ticket)["holds"] == []
    assert admin_state(fresh_mocks, "ptw")["holds"] == {}

    # Ticket and source travel as path segments, quoted.
    paths = [(e["method"], e["path"]) for e in received(fresh_mocks, "ptw")]
    assert ("PUT", f"/api/v1/permits/{ticket}/holds/integration-hub") in paths
    assert ("DELETE", f"/api/v1/permits/{ticket}/holds/integration-hub") in paths


def test_ptw_unknown_permit_and_malformed_hold_are_refused_without_retry(
    fresh_mocks: Any, rest: Callable[..., RestClient]
) -> None:
    http = rest("ptw")
    client = ptw(http, fresh_mocks)

    with pytest.raises(VendorRejected) as unknown:
        client.call("put_hold", id="PTW-NOPE-0000", source="integration-hub", body=hold_body())
    assert unknown.value.status == 404
    with pytest.raises(VendorRejected) as malformed:
        client.call("put_hold", id=PERMITS[0]["ticketNo"], source="integration-hub", body={"action": "MAYBE", "reasons": []})
    assert malformed.value.status == 422

    assert http.calls == 2
    assert [e["status"] for e in received(fresh_mocks, "ptw")] == [404, 422]


# -- transient faults and the retry policy ----------------------------------------------------


def test_ptw_503_once_is_retried(fresh_mocks: Any, rest: Callable[..., RestClient]) -> None:
    set_faults(fresh_mocks, "ptw", {"kind": "status", "status": 503, "times": 1, "path_prefix": "/api/v1/permits"})
    http = rest("ptw")
    ticket = PERMITS[0]["ticketNo"]

    permit = ptw(http, fresh_mocks).call("get_permit", id=ticket)

    assert permit["ticketNo"] == ticket
    log = received(fresh_mocks, "ptw")
    assert [e["status"] for e in log] == [503, 200]
    assert http.calls == 2


def test_mes_503_once_is_retried(fresh_mocks: Any, rest: Callable[..., RestClient]) -> None:
    set_faults(fresh_mocks, "mes", {"kind": "status", "status": 503, "times": 1})
    http = rest("mes")

    reply = mes(http, fresh_mocks).fetch("parameters", ids=["乙烯", "氢气", "不存在", "乙烯"])

    assert material_ids(reply) == ["乙烯", "氢气"]  # an unknown name is simply not answered
    by_id = {m["ID"]: m for m in MATERIALS}
    assert all(m == by_id[m["ID"]] for m in reply["process_parameter"])
    log = received(fresh_mocks, "mes")
    assert [e["status"] for e in log] == [503, 200]
    assert log[0]["body"] == log[1]["body"]  # the retry sends the same batch
    assert http.calls == 2


def test_erp_503_once_is_retried_and_posts_once(fresh_mocks: Any, rest: Callable[..., RestClient]) -> None:
    set_faults(fresh_mocks, "erp", {"kind": "status", "status": 503, "times": 1, "method": "POST"})
    http = rest("erp")
    message_uuid = str(uuid.uuid4())

    [[confirmation]] = list(post(erp(http, fresh_mocks), [(message_uuid, journal_entry("R-503"))]))

    assert confirmation.accounting_document and not confirmation.duplicate and confirmation.error is None
    assert [e["status"] for e in received(fresh_mocks, "erp")] == [503, 200]
    assert len(admin_state(fresh_mocks, "erp")["documents"]) == 1


def test_429_retry_after_is_honoured(fresh_mocks: Any, rest: Callable[..., RestClient]) -> None:
    retry_after = 1
    set_faults(fresh_mocks, "ptw", {"kind": "rate_limit", "retry_after_s": retry_after, "times": 1})
    http = rest("ptw")

    started = time.monotonic()
    permit = ptw(http, fresh_mocks).call("get_permit", id=PERMITS[0]["ticketNo"])
    elapsed = time.monotonic() - started

    assert permit["ticketNo"] == PERMITS[0]["ticketNo"]
    assert [e["status"] for e in received(fresh_mocks, "ptw")] == [429, 200]
    assert http.calls == 2
    # Our own backoff is ~0.01 s, so only the header can explain a wait this long.
    assert elapsed >= retry_after - SLACK_S


def test_retry_after_is_capped_by_the_policy(fresh_mocks: Any, rest: Callable[..., RestClient]) -> None:
    set_faults(fresh_mocks, "mes", {"kind": "rate_limit", "retry_after_s": 30, "times": 1})
    http = rest("mes", retry=RetryPolicy(attempts=3, initial_s=0.01, max_s=0.2))

    started = time.monotonic()
    mes(http, fresh_mocks).fetch("parameters", ids=["乙烯"])
    elapsed = time.monotonic() - started

    assert [e["status"] for e in received(fresh_mocks, "mes")] == [429, 200]
    assert elapsed < 10  # far below the 30 s the header asked for: max_s wins


def test_read_timeout_is_retried(fresh_mocks: Any, rest: Callable[..., RestClient]) -> None:
    set_faults(fresh_mocks, "ptw", {"kind": "timeout", "delay_s": 1.5, "times": 1})
    http = rest("ptw", read_timeout_s=0.3)

    permit = ptw(http, fresh_mocks).call("get_permit", id=PERMITS[0]["ticketNo"])

    assert permit["ticketNo"] == PERMITS[0]["ticketNo"]
    assert http.calls >= 2
    assert len(received(fresh_mocks, "ptw")) == http.calls


def test_erp_timeout_after_commit_never_posts_twice(fresh_mocks: Any, rest: Callable[..., RestClient]) -> None:
    """The timed-out request is still processed by the ERP later; its stable UUID makes that a no-op."""
    set_faults(fresh_mocks, "erp", {"kind": "timeout", "delay_s": 1.5, "times": 1})
    http = rest("erp", read_timeout_s=0.3)
    message_uuid = str(uuid.uuid4())

    [[confirmation]] = list(post(erp(http, fresh_mocks), [(message_uuid, journal_entry("R-TMO"))]))

    assert confirmation.accounting_document is not None and confirmation.error is None
    # Let the first, delayed request reach the ERP too.
    wait_until(lambda: all(e["status"] is not None for e in received(fresh_mocks, "erp")))
    log = received(fresh_mocks, "erp")
    assert len(log) == http.calls >= 2
    assert {e["body"]["JournalEntryCreateRequest"][0]["MessageHeader"]["UUID"] for e in log} == {message_uuid}
    documents = admin_state(fresh_mocks, "erp")["documents"]
    assert [d["MessageUUID"] for d in documents] == [message_uuid]
    assert documents[0]["AccountingDocument"] == confirmation.accounting_document


def test_mes_validation_error_is_not_retried(fresh_mocks: Any, rest: Callable[..., RestClient]) -> None:
    http = rest("mes")
    names = [f"material-{i:03d}" for i in range(201)]

    # A flavor file whose batch size drifted past the MES's limit of 200 names per query.
    drifted = flavor_edited("mes", "batch: {size: 200}", "batch: {size: 201}")

    with pytest.raises(VendorRejected) as refused:
        operations(drifted, fresh_mocks.urls["mes"], rest=http).fetch("parameters", ids=names)

    assert refused.value.status == 400
    assert refused.value.system == "MES"
    assert "200" in refused.value.detail
    assert http.calls == 1
    [entry] = received(fresh_mocks, "mes")
    assert entry["status"] == 400 and len(entry["body"]["MaterialDefinitionIDs"]) == 201


def test_persistent_503_exhausts_the_retries(fresh_mocks: Any, rest: Callable[..., RestClient]) -> None:
    set_faults(fresh_mocks, "ptw", {"kind": "status", "status": 503})
    http = rest("ptw")

    with pytest.raises(TransientError) as failed:
        ptw(http, fresh_mocks).call("get_permit", id=PERMITS[0]["ticketNo"])

    assert "503" in str(failed.value)
    assert http.calls == FAST.attempts
    assert [e["status"] for e in received(fresh_mocks, "ptw")] == [503] * FAST.attempts


def test_mes_batches_by_distinct_names(fresh_mocks: Any, rest: Callable[..., RestClient]) -> None:
    names = [m["ID"] for m in MATERIALS]
    http = rest("mes")

    reply = mes(http, fresh_mocks, batch_size=5).fetch("parameters", ids=names + names[:4] + ["不存在"])

    distinct = len(set(names)) + 1
    log = received(fresh_mocks, "mes")
    assert len(log) == math.ceil(distinct / 5)
    sent = [name for e in log for name in e["body"]["MaterialDefinitionIDs"]]
    assert len(sent) == len(set(sent)) == distinct
    assert material_ids(reply) == sorted(set(names))


# -- ERP ------------------------------------------------------------------------------------


def journal_entry(reference: str, *, cost_center: str = COST_CENTER, amount: str = "520.00") -> dict:
    return {
        "JournalEntry": {
            "CompanyCode": COMPANY_CODE,
            "DocumentReferenceID": reference,
            "DocumentHeaderText": f"safety cost {reference}",
            "PostingDate": "2026-11-20",
            "TransactionCurrency": "CNY",
            "GLAccount": GL_ACCOUNT,
            "CostCenter": cost_center,
            "Amount": amount,
        }
    }


def test_erp_post_entries_is_exactly_once(fresh_mocks: Any, rest: Callable[..., RestClient]) -> None:
    client = erp(rest("erp"), fresh_mocks)
    entries = [
        (str(uuid.uuid4()), journal_entry("PTW-NJ-2026-0007/labour")),
        (str(uuid.uuid4()), journal_entry("PTW-NJ-2026-0007/material", amount="80.50")),
    ]

    [first] = list(post(client, entries))

    assert [c.message_uuid for c in first] == [u for u, _ in entries]
    assert all(isinstance(c, Answer) for c in first)
    assert all(c.accounting_document and c.fiscal_year == "2026" for c in first)
    assert all(not c.duplicate and c.error is None for c in first)
    assert len({c.accounting_document for c in first}) == 2

    [again] = list(post(client, entries))

    assert all(c.duplicate for c in again)
    assert [c.accounting_document for c in again] == [c.accounting_document for c in first]
    assert [c.message_uuid for c in again] == [u for u, _ in entries]
    documents = admin_state(fresh_mocks, "erp")["documents"]
    assert sorted(d["MessageUUID"] for d in documents) == sorted(u for u, _ in entries)
    assert sorted(d["AccountingDocument"] for d in documents) == sorted(c.accounting_document for c in first)
    # Each call is one bulk request carrying the vendor's journal entries untouched.
    log = received(fresh_mocks, "erp")
    assert [(e["method"], e["path"]) for e in log] == [("POST", "/api/v1/journal-entries/bulk")] * 2
    sent = log[0]["body"]["JournalEntryCreateRequest"]
    assert sent == [{"MessageHeader": {"UUID": u}, **entry} for u, entry in entries]
    assert log[0]["body"]["MessageHeader"]["ID"]


def test_erp_business_rejection_gives_error_and_no_document(
    fresh_mocks: Any, rest: Callable[..., RestClient]
) -> None:
    client = erp(rest("erp"), fresh_mocks)
    good = (str(uuid.uuid4()), journal_entry("R-GOOD"))
    bad = (str(uuid.uuid4()), journal_entry("R-BAD", cost_center="CC-NJ-NOPE"))

    [[ok, refused]] = list(post(client, [good, bad]))

    assert ok.accounting_document is not None and ok.error is None
    assert refused.message_uuid == bad[0]
    assert refused.accounting_document is None and refused.fiscal_year is None
    assert not refused.duplicate
    assert refused.error and "CC-NJ-NOPE" in refused.error
    assert [d["MessageUUID"] for d in admin_state(fresh_mocks, "erp")["documents"]] == [good[0]]
    assert client.find_by_reference("R-BAD") == []


def test_erp_find_by_reference_returns_the_posted_document(
    fresh_mocks: Any, rest: Callable[..., RestClient]
) -> None:
    client = erp(rest("erp"), fresh_mocks)
    reference = "PTW-NJ-2026-0011/scaffold"
    message_uuid = str(uuid.uuid4())
    [[confirmation]] = list(post(client, [(message_uuid, journal_entry(reference, amount="1200.00"))]))

    [document] = client.find_by_reference(reference)

    assert document["AccountingDocument"] == confirmation.accounting_document
    assert document["MessageUUID"] == message_uuid
    assert document["DocumentReferenceID"] == reference
    assert document["CompanyCode"] == COMPANY_CODE
    assert document["CostCenter"] == COST_CENTER and document["GLAccount"] == GL_ACCOUNT
    assert document["FiscalYear"] == confirmation.fiscal_year
    assert float(document["Amount"]) == 1200.0
    assert client.find_by_reference("no-such-reference") == []
    assert received(fresh_mocks, "erp")[-1]["query"] == {"DocumentReferenceID": "no-such-reference"}


def test_erp_batches_and_yields_per_batch(fresh_mocks: Any, rest: Callable[..., RestClient]) -> None:
    client = erp(rest("erp"), fresh_mocks, batch_size=2)
    entries = [(str(uuid.uuid4()), journal_entry(f"R-{i}")) for i in range(9)]
    width = client.operations.concurrency
    assert width == 3

    batches = post(client, entries)
    first = next(batches)
    # No more than the flavor's window is in flight: the caller records as it goes.
    assert len(received(fresh_mocks, "erp")) <= width
    rest_of_them = list(batches)

    assert [len(b) for b in [first, *rest_of_them]] == [2, 2, 2, 2, 1]
    assert [c.message_uuid for b in [first, *rest_of_them] for c in b] == [u for u, _ in entries]
    assert len(received(fresh_mocks, "erp")) == 5
    assert len(admin_state(fresh_mocks, "erp")["documents"]) == 9


# -- EAM ------------------------------------------------------------------------------------


def soap_assetnums(entry: dict) -> list[str]:
    root = etree.fromstring(entry["body"].encode("utf-8"))
    return [el.text for el in root.iter(f"{{{TNS}}}assetnum")]


def soap_siteids(entry: dict) -> list[str]:
    root = etree.fromstring(entry["body"].encode("utf-8"))
    return [el.text for el in root.iter(f"{{{TNS}}}siteid")]


def as_text(record: dict) -> dict:
    return {key: None if value is None else str(value) for key, value in record.items()}


def test_eam_batches_by_distinct_device_ids(fresh_mocks: Any) -> None:
    known = [a["assetnum"] for a in ASSETS]
    unknown = ["NJ-X-998", "NJ-X-999"]
    batch_size = 10
    client = eam_client(fresh_mocks, batch_size=batch_size)

    reply = client.fetch("maintenance", ids=known + known[:15] + unknown + unknown)

    distinct = len(set(known)) + len(unknown)
    log = received(fresh_mocks, "eam")
    assert len(log) == client.calls == math.ceil(distinct / batch_size)
    assert all(e["method"] == "POST" and e["path"] == "/eam/soap" and e["status"] == 200 for e in log)
    sent = [num for e in log for num in soap_assetnums(e)]
    assert all(len(soap_assetnums(e)) <= batch_size for e in log)
    assert len(sent) == len(set(sent)) == distinct
    # Every known asset once, the unknown ones simply absent.
    assert sorted(a["assetnum"] for a in reply["equipment"]) == sorted(known)
    assert not {a["assetnum"] for a in reply["equipment"]} & set(unknown)
    assert len(reply["maintenance_record"]) == len(WORKORDERS)


def test_eam_reply_has_maximo_fields(fresh_mocks: Any) -> None:
    asset = next(a for a in ASSETS if a["assetnum"] == "NJ-P-101")
    workorders = [w for w in WORKORDERS if w["assetnum"] == asset["assetnum"]]
    client = eam_client(fresh_mocks)

    reply = client.fetch("maintenance", ids=[asset["assetnum"], "NJ-NOPE-000"], site=asset["siteid"])

    [entry] = received(fresh_mocks, "eam")
    assert soap_siteids(entry) == [asset["siteid"]]
    [got] = reply["equipment"]
    assert got == as_text(asset)
    assert {"assetnum", "siteid", "description", "location", "status"} <= set(got)
    assert sorted(reply["maintenance_record"], key=lambda w: w["wonum"]) == sorted(
        (as_text(w) for w in workorders), key=lambda w: w["wonum"]
    )
    assert all(
        {"wonum", "assetnum", "siteid", "worktype", "status", "status_maxvalue", "isolationstate", "changedate"}
        <= set(w)
        for w in reply["maintenance_record"]
    )
    assert client.calls == 1


def test_eam_request_names_the_site_and_gets_only_its_records(fresh_mocks: Any) -> None:
    """An asset is (site, number): CT-701 exists at NJ01 and at HZ02, NJ-F-101 only at NJ01."""
    client = eam_client(fresh_mocks)
    asked = ["CT-701", "NJ-F-101"]

    replies = {site: client.fetch("maintenance", ids=asked, site=site) for site in ("NJ01", "HZ02")}

    assert [soap_siteids(e) for e in received(fresh_mocks, "eam")] == [["NJ01"], ["HZ02"]]
    for site, reply in replies.items():
        assert sorted((a["siteid"], a["assetnum"]) for a in reply["equipment"]) == sorted(
            (a["siteid"], a["assetnum"]) for a in ASSETS if a["siteid"] == site and a["assetnum"] in asked
        )
        expected = sorted(w["wonum"] for w in WORKORDERS if w["siteid"] == site and w["assetnum"] in asked)
        assert expected and sorted(w["wonum"] for w in reply["maintenance_record"]) == expected
    assert [a["assetnum"] for a in replies["HZ02"]["equipment"]] == ["CT-701"]


def test_eam_unknown_asset_only_is_an_empty_reply(fresh_mocks: Any) -> None:
    reply = eam_client(fresh_mocks).fetch("maintenance", ids=["NJ-NOPE-000"])

    assert reply.get("equipment", []) == [] and reply.get("maintenance_record", []) == []
    assert len(received(fresh_mocks, "eam")) == 1


def test_eam_no_devices_means_no_call(fresh_mocks: Any) -> None:
    client = eam_client(fresh_mocks)

    reply = client.fetch("maintenance", ids=[])

    assert reply == {}
    assert client.calls == 0 and received(fresh_mocks, "eam") == []


def test_eam_changed_since_filters_work_orders(fresh_mocks: Any) -> None:
    since = datetime(2026, 11, 20, tzinfo=timezone(timedelta(hours=8)))
    assets = [a["assetnum"] for a in ASSETS]

    def changed(workorder: dict) -> bool:
        try:
            return datetime.fromisoformat(str(workorder["changedate"])) >= since
        except (KeyError, ValueError):
            return True  # the mock serves unreadable dates so the hub can quarantine them

    expected = sorted(w["wonum"] for w in WORKORDERS if changed(w))
    assert 0 < len(expected) < len(WORKORDERS)

    reply = eam_client(fresh_mocks).fetch("maintenance", ids=assets, changed_since=since)

    assert sorted(w["wonum"] for w in reply["maintenance_record"]) == expected
    assert len(reply["equipment"]) == len(ASSETS)  # assets are not filtered
    [entry] = received(fresh_mocks, "eam")
    root = etree.fromstring(entry["body"].encode("utf-8"))
    [sent_since] = [el.text for el in root.iter(f"{{{TNS}}}changedsince")]
    assert datetime.fromisoformat(sent_since) == since


def test_eam_batch_size_cannot_exceed_the_flavors(fresh_mocks: Any) -> None:
    with pytest.raises(ValueError, match=r"1\.\.200 \(eam\.yaml\)"):
        eam_client(fresh_mocks, batch_size=201)


def test_eam_client_fault_raises_soap_fault_without_retry(fresh_mocks: Any, tmp_path: Path) -> None:
    # A flavor file and WSDL copy that drifted past what the EAM accepts (500): the EAM
    # answers a soap:Client Fault, which the same request would get every time.
    drifted = tmp_path / "eam-drifted.wsdl"
    text = WSDL.read_text(encoding="utf-8")
    assert 'maxOccurs="500"' in text
    drifted.write_text(text.replace('maxOccurs="500"', 'maxOccurs="unbounded"'), encoding="utf-8")
    flavor = flavor_edited("eam", "batch: {size: 200}", "batch: {size: 1000}")
    client = eam_client(fresh_mocks, wsdl=drifted, flavor=flavor)

    with pytest.raises(SoapFault) as fault:
        client.fetch("maintenance", ids=[f"NJ-X-{i:04d}" for i in range(501)])

    assert "Client" in fault.value.faultcode
    assert "500" in fault.value.faultstring
    assert client.calls == 1
    [entry] = received(fresh_mocks, "eam")
    assert entry["status"] == 500


def test_eam_503_is_retried(fresh_mocks: Any) -> None:
    set_faults(fresh_mocks, "eam", {"kind": "status", "status": 503, "times": 1, "path_prefix": "/eam/soap"})
    client = eam_client(fresh_mocks)

    reply = client.fetch("maintenance", ids=["NJ-P-101"])

    assert [a["assetnum"] for a in reply["equipment"]] == ["NJ-P-101"]
    assert client.calls == 2
    assert [e["status"] for e in received(fresh_mocks, "eam")] == [503, 200]


def test_eam_timeout_is_retried(fresh_mocks: Any) -> None:
    set_faults(fresh_mocks, "eam", {"kind": "timeout", "delay_s": 1.5, "times": 1})
    client = eam_client(fresh_mocks, timeout_s=0.3)

    reply = client.fetch("maintenance", ids=["NJ-P-101"])

    assert [a["assetnum"] for a in reply["equipment"]] == ["NJ-P-101"]
    assert client.calls >= 2
    assert len(received(fresh_mocks, "eam")) == client.calls


def test_eam_persistent_503_exhausts_the_retries(fresh_mocks: Any) -> None:
    set_faults(fresh_mocks, "eam", {"kind": "status", "status": 503})
    client = eam_client(fresh_mocks)

    with pytest.raises(TransientError):
        client.fetch("maintenance", ids=["NJ-P-101"])

    assert client.calls == FAST.attempts
    assert len(received(fresh_mocks, "eam")) == FAST.attempts


# -- EAM replies the mock does not produce: a tiny stub SOAP server on loopback ---------------


class _Stub:
    def __init__(self) -> None:
        self.replies: list[tuple[int, bytes]] = []
        self.requests: list[str] = []
        self.headers: list[dict[str, str]] = []


@pytest.fixture
def stub_server() -> Iterator[tuple[str, _Stub]]:
    """A loopback HTTP server answering queued (status, body) replies and recording every path."""
    stub = _Stub()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            stub.requests.append(f"{self.command} {self.path}")
            stub.headers.append(dict(self.headers))
            status, body = stub.replies.pop(0) if len(stub.replies) > 1 else stub.replies[0]
            self.send_response(status)
            self.send_header("Content-Type", "text/xml; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args: Any) -> None:
            pass

    with loopback_server(Handler) as url:
        yield url, stub


def fault_envelope(code: str, message: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{SOAP_ENV}"><soap:Body>'
        f"<soap:Fault><faultcode>{code}</faultcode><faultstring>{message}</faultstring></soap:Fault>"
        "</soap:Body></soap:Envelope>"
    ).encode()


def test_eam_server_fault_is_transient_and_retried(stub_server: tuple[str, _Stub]) -> None:
    url, stub = stub_server
    ok = (
        f'<soap:Envelope xmlns:soap="{SOAP_ENV}"><soap:Body><GetAssetMaintenanceResponse xmlns="{TNS}" rsCount="1">'
        "<asset><assetnum>NJ-P-101</assetnum></asset></GetAssetMaintenanceResponse></soap:Body></soap:Envelope>"
    ).encode()
    stub.replies = [(500, fault_envelope("soap:Server", "database busy")), (200, b"<not-xml"), (200, ok)]
    client = eam_client(None, address=f"{url}/eam/soap")

    reply = client.fetch("maintenance", ids=["NJ-P-101"])

    assert reply["equipment"] == [{"assetnum": "NJ-P-101"}]
    assert client.calls == 3 and len(stub.requests) == 3


def test_eam_parse_reply_reports_faults() -> None:
    with pytest.raises(SoapFault) as fault:
        parse_reply(fault_envelope("soap:Client", "at most 500 assetnum per request"))
    assert fault.value.faultcode == "soap:Client"
    assert fault.value.faultstring == "at most 500 assetnum per request"
    with pytest.raises(TransientError):
        parse_reply(f'<soap:Envelope xmlns:soap="{SOAP_ENV}"><soap:Body/></soap:Envelope>'.encode())


def _flatten(reply: dict) -> str:
    return json.dumps(reply, ensure_ascii=False)


def test_eam_parser_refuses_external_entities(stub_server: tuple[str, _Stub]) -> None:
    passwd = Path("/etc/passwd")
    secret_marker = "root:" if passwd.exists() and "root:" in passwd.read_text(errors="replace") else None
    url, stub = stub_server
    stub.replies = [(200, b'<!ENTITY remote "REMOTE-ENTITY-EXPANDED">')]
    payload = f"""<?xml version="1.0"?>
<!DOCTYPE soap:Envelope SYSTEM "{url}/evil.dtd" [
  <!ENTITY xxe SYSTEM "file:///etc/passwd">
  <!ENTITY net SYSTEM "{url}/entity.txt">
]>
<soap:Envelope xmlns:soap="{SOAP_ENV}"><soap:Body><GetAssetMaintenanceResponse xmlns="{TNS}">
<asset><assetnum>&xxe;</assetnum><description>before&xxe;after</description><location>&net;</location></asset>
</GetAssetMaintenanceResponse></soap:Body></soap:Envelope>""".encode()

    with pytest.raises(TransientError, match="DTD") as refused:
        parse_reply(payload)

    if secret_marker:
        assert secret_marker not in str(refused.value)
    assert stub.requests == []  # neither the external DTD nor the entity was fetched


def test_eam_parser_does_not_expand_entity_bombs() -> None:
    levels = "".join(
        f'<!ENTITY l{i} "{"".join(f"&l{i - 1};" for _ in range(10))}">' for i in range(1, 9)
    )
    payload = f"""<?xml version="1.0"?>
<!DOCTYPE soap:Envelope [<!ENTITY l0 "lol">{levels}]>
<soap:Envelope xmlns:soap="{SOAP_ENV}"><soap:Body><GetAssetMaintenanceResponse xmlns="{TNS}">
<asset><assetnum>&l8;</assetnum></asset></GetAssetMaintenanceResponse></soap:Body></soap:Envelope>""".encode()

    with pytest.raises(TransientError, match="DTD|amplification"):
        parse_reply(payload)


# -- auth headers (respx: the mocks do not log headers) ----------------------------------------


def _client_for(endpoint: SystemEndpoint, retry: RetryPolicy = FAST) -> RestClient:
    return RestClient("PTW", endpoint, connect_timeout_s=1.0, read_timeout_s=1.0, retry=retry)


@respx.mock(base_url="http://ptw.invalid", assert_all_called=True)
def test_auth_headers(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.get("/api/v1/permits/X").mock(return_value=httpx.Response(200, json={"ok": True}))

    cases = [
        (SystemEndpoint(url="http://ptw.invalid", token="t0k3n"), {"authorization": "Bearer t0k3n"}),
        (
            SystemEndpoint(url="http://ptw.invalid", username="hub", password="s3cret"),
            {"authorization": "Basic " + base64.b64encode(b"hub:s3cret").decode()},
        ),
        (SystemEndpoint(url="http://ptw.invalid", api_key="k3y"), {"x-api-key": "k3y"}),
        (
            SystemEndpoint(url="http://ptw.invalid", api_key="k3y", api_key_header="X-Plant-Key"),
            {"x-plant-key": "k3y"},
        ),
    ]
    for endpoint, expected in cases:
        with _client_for(endpoint) as client:
            assert client.request("GET", "/api/v1/permits/X") == {"ok": True}
        headers = route.calls.last.request.headers
        for name, value in expected.items():
            assert headers[name] == value
        assert ("authorization" in headers) == ("authorization" in expected)
        assert ("x-api-key" in headers) == ("x-api-key" in expected)

    with _client_for(SystemEndpoint(url="http://ptw.invalid")) as anonymous:
        anonymous.request("GET", "/api/v1/permits/X")
    assert "authorization" not in route.calls.last.request.headers


@respx.mock(base_url="http://ptw.invalid")
def test_errors_never_carry_credentials(respx_mock: respx.MockRouter) -> None:
    respx_mock.get("/down").mock(return_value=httpx.Response(503, text="down"))
    respx_mock.get("/refused").mock(return_value=httpx.Response(403, text="forbidden"))
    endpoint = SystemEndpoint(url="http://ptw.invalid", token="t0k3n-secret", username="hub", password="pw-secret")

    with _client_for(endpoint, RetryPolicy(attempts=2, initial_s=0.01, max_s=0.05)) as client:
        with pytest.raises(TransientError) as transient:
            client.request("GET", "/down")
        with pytest.raises(VendorRejected) as refused:
            client.request("GET", "/refused")

    for exc in (transient.value, refused.value):
        assert "t0k3n-secret" not in str(exc) and "pw-secret" not in str(exc)
    assert "t0k3n-secret" not in repr(endpoint)


def test_eam_credentials_reach_the_server(stub_server: tuple[str, _Stub]) -> None:
    """Basic auth and API key from settings travel on the SOAP request too."""
    url, stub = stub_server
    ok = (
        f'<soap:Envelope xmlns:soap="{SOAP_ENV}"><soap:Body><GetAssetMaintenanceResponse xmlns="{TNS}" rsCount="0"/>'
        "</soap:Body></soap:Envelope>"
    ).encode()
    stub.replies = [(200, ok)]
    endpoint = SystemEndpoint(url=f"{url}/eam/soap", username="hub", password="pa55", api_key="k3y")
    soap = EamClient(endpoint, str(WSDL), connect_timeout_s=5.0, operation_timeout_s=5.0, retry=FAST)

    operations("eam", endpoint.url, soap=soap).fetch("maintenance", ids=["NJ-P-101"])

    [headers] = stub.headers
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"hub:pa55").decode()
    assert headers["X-API-Key"] == "k3y"


def test_eam_refusal_is_not_retried(stub_server: tuple[str, _Stub]) -> None:
    url, stub = stub_server
    stub.replies = [(401, b"<html>login required</html>")] * 3
    client = eam_client(None, address=f"{url}/eam/soap")

    with pytest.raises(VendorRejected, match="401"):
        client.fetch("maintenance", ids=["NJ-P-101"])
    assert client.calls == 1


@pytest.mark.parametrize(("declared", "complete"), [('rsCount="2"', True), ('rsCount="3"', False), ("", False)])
def test_an_eam_reply_must_carry_as_many_records_as_it_counts(declared, complete) -> None:
    """A reply that lost records on the way is incomplete, never the whole answer."""
    reply = (
        f'<soap:Envelope xmlns:soap="{SOAP_ENV}"><soap:Body><GetAssetMaintenanceResponse xmlns="{TNS}" {declared}>'
        "<asset><assetnum>P-1</assetnum></asset><workorder><wonum>WO-1</wonum></workorder>"
        "</GetAssetMaintenanceResponse></soap:Body></soap:Envelope>"
    ).encode()
    if complete:
        assert len(parse_reply(reply, "rsCount")["workorder"]) == 1
    else:
        with pytest.raises(TransientError, match="incomplete"):
            parse_reply(reply, "rsCount")
    assert len(parse_reply(reply)["asset"]) == 1  # a flavor that declares no count is not checked
