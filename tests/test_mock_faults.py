"""Fault kinds, the ERP ledger listing and auth of the mock systems, seen by a real client.

Every fault is set through `PUT /_admin/faults` on servers listening on loopback, and what it did
is read back from the client's side (a transport error, a body that does not parse, a status)
and from the mock's own state, so a crash-safety harness can rely on each kind meaning exactly
what docs/protocols.md says.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from conftest import mock_systems_cli
import httpx
import pytest
import zeep
import zeep.exceptions
from lxml import etree

from mock_systems.base import AuthConfigError, Credentials
from mock_systems.faults import FaultPlan, FaultPlanError
from mock_systems.servers import RunningSystems, start_systems

REPO_ROOT = Path(__file__).parents[1]
FIXTURES = REPO_ROOT / "fixtures"
WSDL = REPO_ROOT / "mock_systems" / "eam.wsdl"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
TNS = "urn:plant:eam:maintenance:v1"
SOAP_REQUEST = (
    f'<soap:Envelope xmlns:soap="{SOAP_ENV}" xmlns:eam="{TNS}"><soap:Body><eam:GetAssetMaintenanceRequest>'
    "<eam:assetnum>NJ-P-101</eam:assetnum><eam:assetnum>NJ-E-202</eam:assetnum>"
    "</eam:GetAssetMaintenanceRequest></soap:Body></soap:Envelope>"
).encode()
SOAP_HEADERS = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{TNS}/GetAssetMaintenance"'}
HOLD = {"action": "BLOCK", "ruleVersion": "gate-test", "reasons": [{"code": "OPEN_WORK_ORDER", "message": "WO open"}]}
HOLD_PATH = "/api/v1/permits/PTW-NJ-2026-0001/holds/integration-hub"
DROPPED = (httpx.RemoteProtocolError, httpx.ReadError)  # what a reset connection looks like to httpx


def set_faults(http: httpx.Client, running: RunningSystems, system: str, *rules: dict) -> None:
    http.put(f"{running.base_urls[system]}/_admin/faults", json={"rules": list(rules)}).raise_for_status()


def admin_get(http: httpx.Client, running: RunningSystems, system: str, what: str):
    return http.get(f"{running.base_urls[system]}/_admin/{what}").json()


def reset(http: httpx.Client, running: RunningSystems, system: str) -> None:
    http.post(f"{running.base_urls[system]}/_admin/reset").raise_for_status()


# One ordinary request per system, each answered 200 when nothing is faulted.
def ptw_listing(http: httpx.Client, running: RunningSystems) -> httpx.Response:
    return http.get(f"{running.urls['ptw']}/api/v1/permits", params={"page_size": 3})


def eam_batch(http: httpx.Client, running: RunningSystems) -> httpx.Response:
    return http.post(running.urls["eam"], content=SOAP_REQUEST, headers=SOAP_HEADERS)


def mes_query(http: httpx.Client, running: RunningSystems) -> httpx.Response:
    body = {"MaterialDefinitionIDs": ["乙烯", "氢气"]}
    return http.post(f"{running.urls['mes']}/api/v1/material-parameters/query", json=body)


def erp_ledger(http: httpx.Client, running: RunningSystems) -> httpx.Response:
    return http.get(f"{running.urls['erp']}/api/v1/journal-entries", params={"page": 1})


PROBES: dict[str, Callable[[httpx.Client, RunningSystems], httpx.Response]] = {
    "ptw": ptw_listing,
    "eam": eam_batch,
    "mes": mes_query,
    "erp": erp_ledger,
}


def journal_entry(uuid: str, reference: str, cost_center: str = "CC-NJ-CRK") -> dict:
    return {
        "MessageHeader": {"UUID": uuid},
        "JournalEntry": {
            "CompanyCode": "NJ01",
            "DocumentReferenceID": reference,
            "PostingDate": "2026-12-01",
            "TransactionCurrency": "CNY",
            "GLAccount": "66020103",
            "CostCenter": cost_center,
            "Amount": "520.00",
        },
    }


def post_bulk(http: httpx.Client, running: RunningSystems, *entries: dict) -> httpx.Response:
    body = {"MessageHeader": {"ID": "batch-t"}, "JournalEntryCreateRequest": list(entries)}
    return http.post(f"{running.urls['erp']}/api/v1/journal-entries/bulk", json=body)


def confirmations(response: httpx.Response) -> list[dict]:
    return response.json()["JournalEntryCreateConfirmation"]


def outcomes(http: httpx.Client, running: RunningSystems, system: str) -> list[tuple]:
    """(status, fault kind or None) of every request the system received, oldest first."""
    return [(e["status"], e.get("fault")) for e in admin_get(http, running, system, "received")]


def parses(response: httpx.Response, system: str) -> bool:
    try:
        if system == "eam":
            etree.fromstring(response.content)
        else:
            json.loads(response.content)
    except (ValueError, etree.XMLSyntaxError):
        return False
    return True


# ---------------------------------------------------------------------------- faults answering in place of the system


@pytest.mark.parametrize("system", PROBES)
def test_reset_closes_the_connection_without_an_answer(fresh_mocks, http, system):
    set_faults(http, fresh_mocks, system, {"kind": "reset", "times": 1})
    with pytest.raises(DROPPED):
        PROBES[system](http, fresh_mocks)
    assert PROBES[system](http, fresh_mocks).status_code == 200, "the same client carries on after a reset"
    assert outcomes(http, fresh_mocks, system) == [("reset", "reset"), (200, None)]


@pytest.mark.parametrize("system", PROBES)
def test_malformed_answers_200_with_a_body_that_does_not_parse(fresh_mocks, http, system):
    usual = PROBES[system](http, fresh_mocks)
    assert parses(usual, system)
    set_faults(http, fresh_mocks, system, {"kind": "malformed", "times": 1})
    garbled = PROBES[system](http, fresh_mocks)
    assert garbled.status_code == 200
    assert garbled.headers["content-type"] == usual.headers["content-type"]
    assert not parses(garbled, system)
    assert outcomes(http, fresh_mocks, system)[-1] == (200, "malformed")


def test_malformed_answers_before_the_system_posts_anything(fresh_mocks, http):
    set_faults(http, fresh_mocks, "erp", {"kind": "malformed", "times": 1})
    assert post_bulk(http, fresh_mocks, journal_entry("u-garbled", "PTW-NJ-2026-0007/labour")).status_code == 200
    assert admin_get(http, fresh_mocks, "erp", "state")["documents"] == []


@pytest.mark.parametrize("system", PROBES)
def test_truncate_sends_the_first_half_of_the_real_body_well_framed(fresh_mocks, http, system):
    whole = PROBES[system](http, fresh_mocks)
    set_faults(http, fresh_mocks, system, {"kind": "truncate", "times": 1})
    cut = PROBES[system](http, fresh_mocks)
    assert cut.status_code == whole.status_code == 200
    assert int(cut.headers["content-length"]) == len(cut.content) == len(whole.content) // 2
    assert whole.content.startswith(cut.content)
    assert not parses(cut, system)
    assert outcomes(http, fresh_mocks, system)[-1] == (200, "truncate")


def test_truncated_bulk_post_has_committed(fresh_mocks, http):
    set_faults(http, fresh_mocks, "erp", {"kind": "truncate", "times": 1})
    response = post_bulk(http, fresh_mocks, journal_entry("u-cut", "PTW-NJ-2026-0008/labour"))
    assert not parses(response, "erp")
    assert [d["MessageUUID"] for d in admin_get(http, fresh_mocks, "erp", "state")["documents"]] == ["u-cut"]


def soap_fault_of(response: httpx.Response) -> tuple[str, str]:
    """(faultcode resolved to {namespace}local, faultstring) of a SOAP 1.1 Fault answer."""
    [fault] = etree.fromstring(response.content).xpath("/s:Envelope/s:Body/s:Fault", namespaces={"s": SOAP_ENV})
    prefix, _, local_name = fault.findtext("faultcode").partition(":")
    return f"{{{fault.nsmap[prefix]}}}{local_name}", fault.findtext("faultstring")


def test_soap_fault_answers_500_with_a_server_fault_on_the_eam(fresh_mocks, http):
    set_faults(
        http,
        fresh_mocks,
        "eam",
        {"kind": "soap_fault", "times": 1},
        {"kind": "soap_fault", "times": 1, "message": "Maximo database is down"},
    )
    first, second = eam_batch(http, fresh_mocks), eam_batch(http, fresh_mocks)
    assert first.status_code == second.status_code == 500
    assert first.headers["content-type"].startswith("text/xml")
    assert soap_fault_of(first) == (f"{{{SOAP_ENV}}}Server", "EAM backend unavailable")
    assert soap_fault_of(second) == (f"{{{SOAP_ENV}}}Server", "Maximo database is down")
    assert outcomes(http, fresh_mocks, "eam") == [(500, "soap_fault"), (500, "soap_fault")]


def test_soap_fault_reaches_zeep_as_a_server_fault(fresh_mocks, http):
    set_faults(http, fresh_mocks, "eam", {"kind": "soap_fault", "times": 1})
    client = zeep.Client(str(WSDL))
    service = client.create_service(f"{{{TNS}}}AssetMaintenanceBinding", fresh_mocks.urls["eam"])
    with pytest.raises(zeep.exceptions.Fault) as raised:
        service.GetAssetMaintenance(assetnum=["NJ-P-101"])
    assert raised.value.message == "EAM backend unavailable" and raised.value.code.endswith("Server")


def test_soap_fault_is_a_plain_500_on_a_system_without_soap(fresh_mocks, http):
    set_faults(http, fresh_mocks, "ptw", {"kind": "soap_fault", "times": 1, "message": "backend down"})
    response = ptw_listing(http, fresh_mocks)
    assert response.status_code == 500 and response.json() == {"error": "backend down"}


# ---------------------------------------------------------------------------- faults after the system committed


def test_commit_then_drop_on_a_bulk_post_commits_and_a_resend_is_a_duplicate(fresh_mocks, http):
    set_faults(
        http,
        fresh_mocks,
        "erp",
        {"kind": "commit_then_drop", "times": 1, "method": "POST", "path_prefix": "/api/v1/journal-entries/bulk"},
    )
    entries = (journal_entry("u-lost-1", "PTW-NJ-2026-0007/labour"), journal_entry("u-lost-2", "PTW-NJ-2026-0007/ppe"))
    with pytest.raises(DROPPED):
        post_bulk(http, fresh_mocks, *entries)
    posted = admin_get(http, fresh_mocks, "erp", "state")["documents"]
    assert [(d["MessageUUID"], d["AccountingDocument"]) for d in posted] == [
        ("u-lost-1", "5100000001"),
        ("u-lost-2", "5100000002"),
    ]
    resent = confirmations(post_bulk(http, fresh_mocks, *entries))
    assert [(c["Duplicate"], c["JournalEntry"]["AccountingDocument"]) for c in resent] == [
        (True, "5100000001"),
        (True, "5100000002"),
    ]
    assert len(admin_get(http, fresh_mocks, "erp", "state")["documents"]) == 2
    assert outcomes(http, fresh_mocks, "erp") == [("reset", "commit_then_drop"), (200, None)]


def test_commit_then_status_answers_503_although_the_document_was_posted(fresh_mocks, http):
    set_faults(http, fresh_mocks, "erp", {"kind": "commit_then_status", "times": 1})
    entry = journal_entry("u-unclear", "PTW-NJ-2026-0009/labour")
    response = post_bulk(http, fresh_mocks, entry)
    assert response.status_code == 503 and response.json()["error"]
    url = f"{fresh_mocks.urls['erp']}/api/v1/journal-entries"
    [document] = http.get(url, params={"DocumentReferenceID": "PTW-NJ-2026-0009/labour"}).json()["results"]
    assert document["MessageUUID"] == "u-unclear"
    [again] = confirmations(post_bulk(http, fresh_mocks, entry))
    assert again["Duplicate"] is True and again["JournalEntry"]["AccountingDocument"] == document["AccountingDocument"]


def test_commit_then_status_takes_the_status_of_the_rule(fresh_mocks, http):
    set_faults(http, fresh_mocks, "ptw", {"kind": "commit_then_status", "status": 502, "times": 1})
    assert http.put(f"{fresh_mocks.urls['ptw']}{HOLD_PATH}", json=HOLD).status_code == 502
    assert outcomes(http, fresh_mocks, "ptw") == [(502, "commit_then_status")]
    assert list(admin_get(http, fresh_mocks, "ptw", "state")["holds"]) == ["PTW-NJ-2026-0001"]


def test_commit_then_drop_on_a_hold_writes_the_hold(fresh_mocks, http):
    set_faults(http, fresh_mocks, "ptw", {"kind": "commit_then_drop", "times": 1, "method": "PUT"})
    url = f"{fresh_mocks.urls['ptw']}{HOLD_PATH}"
    with pytest.raises(DROPPED):
        http.put(url, json=HOLD)
    [hold] = admin_get(http, fresh_mocks, "ptw", "state")["holds"]["PTW-NJ-2026-0001"]
    assert hold["action"] == "BLOCK" and hold["revision"] == 1
    assert http.put(url, json=HOLD).json() == {"changed": False, "revision": 1}


# ---------------------------------------------------------------------------- the plan itself


def test_the_same_seed_fires_on_the_same_requests_after_each_reset(fresh_mocks, http):
    rule = {"kind": "reset", "probability": 0.5, "seed": 11}

    def fired_pattern() -> list[object]:
        reset(http, fresh_mocks, "mes")
        set_faults(http, fresh_mocks, "mes", rule)
        seen: list[object] = []
        for _ in range(16):
            try:
                seen.append(mes_query(http, fresh_mocks).status_code)
            except DROPPED:
                seen.append("reset")
        assert [status for status, _ in outcomes(http, fresh_mocks, "mes")] == seen
        return seen

    first = fired_pattern()
    assert first == fired_pattern()
    assert set(first) == {200, "reset"}


@pytest.mark.parametrize(
    "rule",
    [
        {"kind": "commit_then_status", "status": 502},
        {"kind": "soap_fault", "message": "down"},
        {"kind": "truncate", "path_prefix": "/api", "method": "get", "times": 2},
        {"kind": "reset", "probability": 0.3, "seed": 1},
    ],
)
def test_new_kinds_take_their_fields(rule):
    [parsed] = FaultPlan.parse({"rules": [rule]}).rules
    assert all(getattr(parsed, key) == (value.upper() if key == "method" else value) for key, value in rule.items())


@pytest.mark.parametrize(
    "rule",
    [
        {"kind": "reset", "status": 500},
        {"kind": "soap_fault", "status": 500},
        {"kind": "malformed", "message": "x"},
        {"kind": "commit_then_drop", "delay_s": 1},
        {"kind": "soap_fault", "message": 5},
        {"kind": "commit_then_status", "status": 42},
    ],
)
def test_fields_of_another_kind_are_refused(mock_systems, http, rule):
    with pytest.raises(FaultPlanError):
        FaultPlan.parse({"rules": [rule]})
    assert http.put(f"{mock_systems.base_urls['erp']}/_admin/faults", json={"rules": [rule]}).status_code == 400


# ---------------------------------------------------------------------------- ERP ledger listing


def test_ledger_lists_every_document_in_posting_order_by_page(fresh_mocks, http):
    references = [f"PTW-NJ-2026-00{n:02d}/labour" for n in range(10, 15)]
    post_bulk(http, fresh_mocks, *(journal_entry(f"u-{ref}", ref) for ref in references[:3]))
    post_bulk(http, fresh_mocks, *(journal_entry(f"u-{ref}", ref) for ref in references[3:]))
    url = f"{fresh_mocks.urls['erp']}/api/v1/journal-entries"
    pages = [http.get(url, params={"page": page, "size": 2}).json() for page in (1, 2, 3, 4)]
    assert [(p["page"], p["size"], p["total"], len(p["results"])) for p in pages] == [
        (1, 2, 5, 2),
        (2, 2, 5, 2),
        (3, 2, 5, 1),
        (4, 2, 5, 0),
    ]
    listed = [document for page in pages for document in page["results"]]
    assert [d["DocumentReferenceID"] for d in listed] == references
    assert [d["AccountingDocument"] for d in listed] == [f"510000000{n}" for n in range(1, 6)]
    by_reference = http.get(url, params={"DocumentReferenceID": references[2]}).json()
    assert by_reference == {"results": [listed[2]]}, "a listed document has the by-reference fields"
    assert http.get(url, params={"page": 1}).json() == {"results": listed, "page": 1, "size": 200, "total": 5}


def test_ledger_of_an_empty_erp(fresh_mocks, http):
    url = f"{fresh_mocks.urls['erp']}/api/v1/journal-entries"
    assert http.get(url, params={"page": 1, "size": 1000}).json() == {
        "results": [],
        "page": 1,
        "size": 1000,
        "total": 0,
    }


@pytest.mark.parametrize(
    "params",
    [{}, {"size": "10"}, {"page": "0"}, {"page": "x"}, {"page": "1", "size": "0"}, {"page": "1", "size": "1001"}],
)
def test_ledger_refuses_bad_paging(mock_systems, http, params):
    response = http.get(f"{mock_systems.urls['erp']}/api/v1/journal-entries", params=params)
    assert response.status_code == 400 and response.json()["error"]


# ---------------------------------------------------------------------------- ERP business rejection


def test_rejection_posts_nothing_is_not_remembered_and_spares_the_rest_of_the_call(fresh_mocks, http):
    bad = journal_entry("u-cc", "PTW-NJ-2026-0016/ppe", cost_center="CC-NOWHERE")
    good = journal_entry("u-ok", "PTW-NJ-2026-0016/labour")
    rejected, posted = confirmations(post_bulk(http, fresh_mocks, bad, good))
    assert rejected["Duplicate"] is False and rejected["Log"]["MaximumLogItemSeverityCode"] == "3"
    assert "AccountingDocument" not in rejected["JournalEntry"]
    assert posted["JournalEntry"]["AccountingDocument"] == "5100000001"
    [again] = confirmations(post_bulk(http, fresh_mocks, bad))
    assert again["Duplicate"] is False and again["Log"]["MaximumLogItemSeverityCode"] == "3"
    [fixed] = confirmations(post_bulk(http, fresh_mocks, journal_entry("u-cc", "PTW-NJ-2026-0016/ppe")))
    assert fixed["Duplicate"] is False and fixed["JournalEntry"]["AccountingDocument"] == "5100000002"
    assert [d["MessageUUID"] for d in admin_get(http, fresh_mocks, "erp", "state")["documents"]] == ["u-ok", "u-cc"]


# ---------------------------------------------------------------------------- auth

AUTH = {
    "ptw": {"basic": ["hub", "s3cret"]},
    "erp": {"bearer": "erp-token"},
    "mes": {"api_key": {"header": "X-API-Key", "value": "mes-key"}},
    "eam": {"basic": ["maximo", "pw"]},
}
GOOD = {
    "ptw": {"auth": ("hub", "s3cret")},
    "erp": {"headers": {"Authorization": "Bearer erp-token"}},
    "mes": {"headers": {"X-API-Key": "mes-key"}},
    "eam": {"auth": ("maximo", "pw")},
}
WRONG = {
    "ptw": {"auth": ("hub", "guess")},
    "erp": {"headers": {"Authorization": "Bearer other-token"}},
    "mes": {"headers": {"X-API-Key": "other-key"}},
    "eam": {"headers": {"Authorization": "Basic not-base64!"}},
}


@pytest.fixture(scope="module")
def guarded():
    with start_systems(FIXTURES, auth=AUTH) as running:
        yield running


@pytest.mark.parametrize("system", AUTH)
def test_auth_refuses_missing_or_wrong_credentials_and_accepts_the_right_ones(guarded, system):
    with httpx.Client(timeout=10) as anonymous:
        reset(anonymous, guarded, system)
        refused = PROBES[system](anonymous, guarded)
        assert refused.status_code == 401 and refused.json() == {"error": "unauthorized"}
        with httpx.Client(timeout=10, **WRONG[system]) as wrong:
            assert PROBES[system](wrong, guarded).status_code == 401
        with httpx.Client(timeout=10, **GOOD[system]) as good:
            assert PROBES[system](good, guarded).status_code == 200
        assert anonymous.get(f"{guarded.base_urls[system]}/_admin/state").status_code == 200, "admin is open"
        assert [status for status, _ in outcomes(anonymous, guarded, system)] == [401, 401, 200]


def test_auth_challenge_names_the_scheme(guarded, http):
    assert ptw_listing(http, guarded).headers["WWW-Authenticate"] == 'Basic realm="mock-systems"'
    assert erp_ledger(http, guarded).headers["WWW-Authenticate"] == 'Bearer realm="mock-systems"'
    assert "WWW-Authenticate" not in mes_query(http, guarded).headers


def test_a_refused_write_changes_nothing(guarded, http):
    reset(http, guarded, "ptw")
    assert http.put(f"{guarded.urls['ptw']}{HOLD_PATH}", json=HOLD).status_code == 401
    assert admin_get(http, guarded, "ptw", "state") == {"holds": {}}
    assert http.put(f"{guarded.urls['ptw']}{HOLD_PATH}", json=HOLD, auth=("hub", "s3cret")).status_code == 200


@pytest.mark.parametrize(
    "setting",
    [
        {"basic": "hub:s3cret"},
        {"basic": ["hub"]},
        {"bearer": ""},
        {"api_key": {"header": "X-API-Key"}},
        {"bearer": "a", "basic": ["b", "c"]},
        {"oauth": "x"},
        "token",
    ],
)
def test_malformed_auth_settings_are_refused(setting):
    with pytest.raises(AuthConfigError):
        Credentials.parse(setting)


def test_auth_for_an_unknown_system_fails_before_anything_starts():
    with pytest.raises(AuthConfigError):
        start_systems(FIXTURES, auth={"crm": {"bearer": "x"}})


def test_cli_takes_auth_from_a_file(tmp_path):
    auth_file = tmp_path / "auth.json"
    auth_file.write_text(json.dumps({"erp": {"bearer": "cli-token"}}), encoding="utf-8")
    with mock_systems_cli("--fixtures", str(FIXTURES), "--auth", str(auth_file)) as lines:
        urls: dict[str, str] = {}
        while "erp" not in urls:
            name, _, url = lines.get(timeout=60).strip().partition(": ")
            urls[name] = url
        ledger = f"{urls['erp']}/api/v1/journal-entries"
        assert httpx.get(ledger, params={"page": 1}, timeout=10).status_code == 401
        authorised = httpx.get(ledger, params={"page": 1}, headers={"Authorization": "Bearer cli-token"}, timeout=10)
        assert authorised.status_code == 200


# ---------------------------------------------------------------------------- empty and shrunken answers


def oslc_workorders(http: httpx.Client, running: RunningSystems) -> httpx.Response:
    params = {
        "oslc.where": 'assetnum in ["NJ-C-101","NJ-P-101","NJ-E-202","NJ-T-301","NJ-R-201"]',
        "oslc.select": "wonum,assetnum,status_maxvalue",
        "oslc.pageSize": 2,
        "lean": 1,
    }
    return http.get(f"{running.urls['eam_oslc']}/os/mxwo", params=params)


def odata_parameters(http: httpx.Client, running: RunningSystems) -> httpx.Response:
    params = {"$filter": "Material eq '乙烯' or Material eq '氢气'", "$top": 5, "$inlinecount": "allpages"}
    return http.get(f"{running.urls['mes_odata']}/MaterialParameterSet", params=params)


def ptw_first_page(http: httpx.Client, running: RunningSystems) -> httpx.Response:
    return http.get(f"{running.urls['ptw']}/api/v1/permits", params={"page_size": 10})


def eam_many(http: httpx.Client, running: RunningSystems) -> httpx.Response:
    assets = "".join(
        f"<eam:assetnum>{num}</eam:assetnum>"
        for num in ("NJ-C-101", "NJ-P-101", "NJ-E-202", "NJ-T-301", "NJ-R-201", "NJ-E-201", "NJ-F-101")
    )
    body = (
        f'<soap:Envelope xmlns:soap="{SOAP_ENV}" xmlns:eam="{TNS}"><soap:Body><eam:GetAssetMaintenanceRequest>'
        f"{assets}</eam:GetAssetMaintenanceRequest></soap:Body></soap:Envelope>"
    ).encode()
    return http.post(running.urls["eam"], content=body, headers=SOAP_HEADERS)


def erp_bulk_two(http: httpx.Client, running: RunningSystems) -> httpx.Response:
    return post_bulk(
        http, running, journal_entry("u-e1", "PTW-NJ-2026-0011/labour"), journal_entry("u-e2", "PTW-NJ-2026-0012/labour")
    )


def soap_answer(response: httpx.Response) -> etree._Element:
    root = etree.fromstring(response.content)
    assert root.tag == f"{{{SOAP_ENV}}}Envelope"
    (answer,) = root.find(f"{{{SOAP_ENV}}}Body")
    assert answer.tag == f"{{{TNS}}}GetAssetMaintenanceResponse"
    return answer


def soap_records(response: httpx.Response) -> list[tuple[str, str]]:
    """(element name, its first child's text) of every record in a GetAssetMaintenanceResponse."""
    return [(etree.QName(child).localname, child[0].text) for child in soap_answer(response)]


# What each probe's records are, read from a parsed answer.
RECORDS: dict[str, tuple[Callable, Callable]] = {
    "ptw": (ptw_first_page, lambda r: r.json()["items"]),
    "eam": (eam_many, soap_records),
    "mes": (mes_query, lambda r: r.json()["MaterialDefinition"]),
    "erp": (erp_ledger, lambda r: r.json()["results"]),
    "eam_oslc": (oslc_workorders, lambda r: r.json()["member"]),
    "mes_odata": (odata_parameters, lambda r: r.json()["d"]["results"]),
}


def same_order_subset(part: list, whole: list) -> bool:
    it = iter(whole)
    return all(any(item == other for other in it) for item in part)


def ledger_with_documents(http: httpx.Client, running: RunningSystems) -> None:
    for n in range(4):
        post_bulk(http, running, journal_entry(f"u-l{n}", f"PTW-NJ-2026-000{n + 1}/labour")).raise_for_status()


@pytest.mark.parametrize("system", RECORDS)
def test_empty_answers_200_in_the_system_format_with_no_records(fresh_mocks, http, system):
    probe, records_of = RECORDS[system]
    if system == "erp":
        ledger_with_documents(http, fresh_mocks)
    whole = probe(http, fresh_mocks)
    assert whole.status_code == 200 and records_of(whole), "the probe must list records when unfaulted"
    set_faults(http, fresh_mocks, system, {"kind": "empty", "times": 1})
    empty = probe(http, fresh_mocks)
    assert empty.status_code == 200
    assert empty.headers["content-type"] == whole.headers["content-type"]
    assert int(empty.headers["content-length"]) == len(empty.content)
    assert records_of(empty) == []
    assert outcomes(http, fresh_mocks, system)[-1] == (200, "empty")
    assert records_of(probe(http, fresh_mocks)) == records_of(whole), "the rule fired once"


def test_empty_says_no_more_pages_and_counts_nothing(fresh_mocks, http):
    set_faults(http, fresh_mocks, "ptw", {"kind": "empty", "times": 1})
    assert ptw_listing(http, fresh_mocks).json() == {"items": [], "next_page_token": None}
    set_faults(http, fresh_mocks, "eam_oslc", {"kind": "empty", "times": 1})
    info = oslc_workorders(http, fresh_mocks).json()["responseInfo"]
    assert info["totalCount"] == 0 and "nextPage" not in info
    set_faults(http, fresh_mocks, "mes_odata", {"kind": "empty", "times": 1})
    d = odata_parameters(http, fresh_mocks).json()["d"]
    assert d == {"results": [], "__count": "0"}
    set_faults(http, fresh_mocks, "mes", {"kind": "empty", "times": 1})
    body = http.post(
        f"{fresh_mocks.urls['mes']}/api/v1/material-parameters/query", json={"MaterialDefinitionIDs": ["乙烯", "不存在"]}
    ).json()
    assert body == {"MaterialDefinition": [], "UnknownIDs": ["不存在"]}


def test_empty_soap_answer_reaches_zeep_as_a_response_without_records(fresh_mocks, http):
    set_faults(http, fresh_mocks, "eam", {"kind": "empty", "times": 1})
    client = zeep.Client(str(WSDL))
    service = client.create_service(f"{{{TNS}}}AssetMaintenanceBinding", fresh_mocks.urls["eam"])
    answer = service.GetAssetMaintenance(assetnum=["NJ-P-101", "NJ-E-202"])
    assert not answer["asset"] and not answer["workorder"]
    assert len(answer_assets := service.GetAssetMaintenance(assetnum=["NJ-P-101"])["asset"]) == 1
    assert answer_assets[0]["assetnum"] == "NJ-P-101"


def test_empty_bulk_post_has_committed_but_confirms_nothing(fresh_mocks, http):
    set_faults(http, fresh_mocks, "erp", {"kind": "empty", "times": 1})
    response = erp_bulk_two(http, fresh_mocks)
    assert response.status_code == 200 and confirmations(response) == []
    assert len(admin_get(http, fresh_mocks, "erp", "state")["documents"]) == 2


def test_empty_leaves_an_error_answer_and_the_wsdl_alone(fresh_mocks, http):
    set_faults(http, fresh_mocks, "ptw", {"kind": "empty"})
    refused = http.get(f"{fresh_mocks.urls['ptw']}/api/v1/permits", params={"page_size": 0})
    assert refused.status_code == 400 and "page_size" in refused.json()["error"]
    set_faults(http, fresh_mocks, "eam", {"kind": "empty"})
    wsdl = http.get(fresh_mocks.urls["eam"], params={"wsdl": ""})
    assert wsdl.status_code == 200 and b"GetAssetMaintenance" in wsdl.content


@pytest.mark.parametrize("system", RECORDS)
@pytest.mark.parametrize("keep", [0.5, 0.0, 1.0])
def test_shrink_keeps_that_share_of_the_records_in_order(fresh_mocks, http, system, keep):
    probe, records_of = RECORDS[system]
    if system == "erp":
        ledger_with_documents(http, fresh_mocks)
    whole = records_of(probe(http, fresh_mocks))
    set_faults(http, fresh_mocks, system, {"kind": "shrink", "keep": keep, "seed": 11, "times": 1})
    response = probe(http, fresh_mocks)
    assert response.status_code == 200 and int(response.headers["content-length"]) == len(response.content)
    assert parses(response, "eam" if system == "eam" else "json")
    shrunk = records_of(response)
    if system == "eam":  # per element name: assets and work orders each keep their share
        for tag in ("asset", "workorder"):
            of_tag = [r for r in whole if r[0] == tag]
            assert len([r for r in shrunk if r[0] == tag]) == int(len(of_tag) * keep)
    else:
        assert len(shrunk) == int(len(whole) * keep)
    assert same_order_subset(shrunk, whole)
    assert outcomes(http, fresh_mocks, system)[-1] == (200, "shrink")


def test_shrink_keeps_paging_and_counts_as_the_system_gave_them(fresh_mocks, http):
    whole = oslc_workorders(http, fresh_mocks).json()
    set_faults(http, fresh_mocks, "eam_oslc", {"kind": "shrink", "keep": 0.5, "seed": 1, "times": 1})
    shrunk = oslc_workorders(http, fresh_mocks).json()
    assert len(shrunk["member"]) == 1 and shrunk["responseInfo"] == whole["responseInfo"]
    set_faults(http, fresh_mocks, "ptw", {"kind": "shrink", "keep": 0.5, "seed": 1, "times": 1})
    page = ptw_listing(http, fresh_mocks).json()
    assert len(page["items"]) == 1 and page["next_page_token"]


def test_shrink_drops_the_same_records_for_the_same_seed(fresh_mocks, http):
    def shrunk_ids(seed: int) -> list:
        reset(http, fresh_mocks, "ptw")
        set_faults(http, fresh_mocks, "ptw", {"kind": "shrink", "keep": 0.3, "seed": seed})
        return [[p["ticketNo"] for p in ptw_first_page(http, fresh_mocks).json()["items"]] for _ in range(3)]

    first = shrunk_ids(5)
    assert first == shrunk_ids(5)
    assert all(len(page) == 3 for page in first)
    assert len({tuple(page) for page in first + shrunk_ids(6)}) > 1, "the choice follows the generator"


def test_shrunken_bulk_post_has_committed_every_document(fresh_mocks, http):
    set_faults(http, fresh_mocks, "erp", {"kind": "shrink", "keep": 0.5, "times": 1})
    response = erp_bulk_two(http, fresh_mocks)
    assert len(confirmations(response)) == 1
    assert len(admin_get(http, fresh_mocks, "erp", "state")["documents"]) == 2


@pytest.mark.parametrize(
    "rule",
    [
        {"kind": "shrink", "keep": 1.5},
        {"kind": "shrink", "keep": -0.1},
        {"kind": "shrink", "keep": "half"},
        {"kind": "empty", "keep": 0.5},
        {"kind": "truncate", "keep": 0.5},
    ],
)
def test_keep_is_a_share_and_belongs_to_shrink_only(mock_systems, http, rule):
    with pytest.raises(FaultPlanError):
        FaultPlan.parse({"rules": [rule]})
    assert http.put(f"{mock_systems.base_urls['ptw']}/_admin/faults", json={"rules": [rule]}).status_code == 400


def test_shrink_takes_its_fields():
    [parsed] = FaultPlan.parse({"rules": [{"kind": "shrink", "keep": 0.25, "seed": 4, "times": 2}]}).rules
    assert (parsed.kind, parsed.keep, parsed.seed, parsed.times) == ("shrink", 0.25, 4, 2)
    [default] = FaultPlan.parse({"rules": [{"kind": "shrink"}]}).rules
    assert default.keep == 0.5
