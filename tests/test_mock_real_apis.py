"""The mocks' real-API shapes over real HTTP: Maximo's REST API (mxapiasset, mxapiwodetail,
mxapisynonymdomain), S/4HANA's standard OData services (API_BATCH_SRV,
API_CLFN_CHARACTERISTIC_SRV) and SAP's Journal Entry - Post SOAP service.

Each is checked against "Real APIs" in docs/protocols.md, and against the older protocols: the
same fixture plant must read the same through both (equipment, work orders, isolation state,
parameter values, ledger documents).
"""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import zeep
from lxml import etree

from mock_systems.servers import start_systems

REPO_ROOT = Path(__file__).parents[1]
FIXTURES = REPO_ROOT / "fixtures"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SFIN = "http://sap.com/xi/SAPSCORE/SFIN"
EAM_TNS = "urn:plant:eam:maintenance:v1"
WORKORDERS = json.loads((FIXTURES / "eam/workorders.json").read_text(encoding="utf-8"))
ASSETS = json.loads((FIXTURES / "eam/assets.json").read_text(encoding="utf-8"))


def maximo(running, structure: str) -> str:
    return f"{running.urls['eam_oslc']}/os/{structure}"


def sap(running, service: str, entity_set: str) -> str:
    return f"{running.base_urls['mes_odata']}/sap/opu/odata/sap/{service}/{entity_set}"


def journal_url(running, service: str = "journalentrycreaterequestconfi") -> str:
    return f"{running.base_urls['erp']}/sap/bc/srt/scs_ext/sap/{service}"


def all_members(http, url: str, params: dict) -> list[dict]:
    """Every member of a Maximo query, following responseInfo.nextPage."""
    page = http.get(url, params={"lean": 1, **params})
    members = []
    while True:
        assert page.status_code == 200, page.text
        body = page.json()
        members += body["member"]
        if "nextPage" not in body["responseInfo"]:
            assert body["responseInfo"]["totalCount"] == len(members)
            return members
        page = http.get(body["responseInfo"]["nextPage"]["href"])


def soap_workorders(http, running, assetnums: list[str], siteid: str) -> list[dict]:
    items = "".join(f"<eam:assetnum>{num}</eam:assetnum>" for num in assetnums)
    body = (
        f'<soap:Envelope xmlns:soap="{SOAP_ENV}" xmlns:eam="{EAM_TNS}"><soap:Body><eam:GetAssetMaintenanceRequest>'
        f"<eam:siteid>{siteid}</eam:siteid>{items}</eam:GetAssetMaintenanceRequest></soap:Body></soap:Envelope>"
    )
    root = etree.fromstring(http.post(running.urls["eam"], content=body.encode()).content)
    return [{etree.QName(c).localname: c.text for c in e} for e in root.iter(f"{{{EAM_TNS}}}workorder")]


# ---------------------------------------------------------------------------- Maximo REST API


def test_maximo_pages_lean_members_keyed_by_site_and_number(mock_systems, http):
    where = 'siteid="NJ01" and assetnum in ["NJ-C-101","NJ-E-201","NJ-R-201","NJ-P-101"]'
    first = http.get(maximo(mock_systems, "mxapiwodetail"), params={"lean": 1, "oslc.where": where, "oslc.pageSize": 3})
    info = first.json()["responseInfo"]
    assert info["pagenum"] == 1 and info["totalCount"] > 3 and "pageno=2" in info["nextPage"]["href"]
    members = all_members(http, maximo(mock_systems, "mxapiwodetail"), {"oslc.where": where, "oslc.select": "*", "oslc.pageSize": 3})
    expected = sorted(
        (w for w in WORKORDERS if w["siteid"] == "NJ01" and w["assetnum"] in {"NJ-C-101", "NJ-E-201", "NJ-R-201", "NJ-P-101"}),
        key=lambda w: w["wonum"],
    )
    assert [m["wonum"] for m in members] == [w["wonum"] for w in expected]
    resource = base64.b64encode(f"NJ01/{members[0]['wonum']}".encode()).decode().replace("=", "-")
    assert members[0]["href"] == f"{maximo(mock_systems, 'mxapiwodetail')}/_{resource}", "keyed by siteid/wonum"
    assert all("isolationstate" not in m and "status_maxvalue" not in m for m in members), "no internal values without internalvalues=1"

    assets = all_members(http, maximo(mock_systems, "mxapiasset"), {"oslc.where": 'assetnum="CT-701"', "oslc.select": "assetnum,siteid"})
    assert [(a["siteid"], a["assetnum"]) for a in assets] == [("HZ02", "CT-701"), ("NJ01", "CT-701")], "one number, two sites"


def test_maximo_where_by_change_date_is_the_site_feed(mock_systems, http):
    since = "2026-11-20T00:00:00+08:00"
    members = all_members(
        http, maximo(mock_systems, "mxapiwodetail"),
        {"oslc.where": f'siteid="HZ02" and changedate>="{since}"', "oslc.select": "wonum,changedate"},
    )
    expected = {w["wonum"] for w in WORKORDERS if w["siteid"] == "HZ02" and w["changedate"] >= since}
    assert {m["wonum"] for m in members} == expected and expected


def test_related_object_named_like_an_attribute_takes_its_place(mock_systems, http):
    members = all_members(
        http, maximo(mock_systems, "mxapiwodetail"),
        {"oslc.where": 'siteid="NJ01" and wonum in ["WO-1058"]', "oslc.select": "wonum,location{location,description},asset{status}"},
    )
    [member] = members
    assert member["$alias_this_attr$location"] == "裂解车间"
    assert {k: v for k, v in member["location"].items() if k != "href"} == {"location": "裂解车间", "description": "裂解车间"}
    assert member["asset"]["status"] == "OPERATING"
    assert "assetnum" not in member, "only what was selected"


def test_internal_values_and_the_synonym_domain(mock_systems, http):
    params = {"oslc.where": 'siteid="HZ02" and status="APPR S1"', "oslc.select": "wonum,status", "internalvalues": 1}
    members = all_members(http, maximo(mock_systems, "mxapiwodetail"), params)
    assert members and all(m["status"] == "APPR S1" and m["status_maxvalue"] == "APPR" for m in members)
    domain = all_members(
        http, maximo(mock_systems, "mxapisynonymdomain"),
        {"oslc.where": 'domainid="WOSTATUS"', "oslc.select": "value,maxvalue,siteid,defaults"},
    )
    synonyms = {(d["value"], d.get("siteid")): (d["maxvalue"], d["defaults"]) for d in domain}
    assert synonyms[("APPR S1", "HZ02")] == ("APPR", False)
    assert synonyms[("APPR", None)] == ("APPR", True)
    assert not any(d["maxvalue"] == "BOGUS" for d in domain), "a malformed internal value is in no domain"
    # every label the plant uses for a known internal value resolves through the domain
    for w in WORKORDERS:
        if w["status_maxvalue"] != "BOGUS":
            assert synonyms.get((w["status"], w["siteid"]), synonyms.get((w["status"], None)))[0] == w["status_maxvalue"]


def test_lockout_tagout_rows_follow_the_isolation_state(mock_systems, http):
    select = "wonum,wosafetylink{*},wotagout{*},wotaglock{*},wolockout{*}"
    members = all_members(
        http, maximo(mock_systems, "mxapiwodetail"),
        {"oslc.where": 'siteid="NJ01" and assetnum in ["NJ-R-201","NJ-F-101","NJ-C-201","NJ-T-305"]', "oslc.select": select},
    )
    by_wonum = {m["wonum"]: m for m in members}
    state = {w["wonum"]: w["isolationstate"] for w in WORKORDERS}
    for wonum, member in by_wonum.items():
        if state[wonum] == "NONE":
            assert not {"wosafetylink", "wotagout", "wotaglock", "wolockout"} & set(member), wonum
            continue
        [lock] = member["wolockout"]
        assert (lock["applied"], lock["removed"]) == ((True, False) if state[wonum] == "APPLIED" else (True, True))
        [tagout], [taglock], [link] = member["wotagout"], member["wotaglock"], member["wosafetylink"]
        assert lock["tagoutid"] == tagout["tagoutid"] == taglock["tagoutid"] == link["tagoutid"]
        assert taglock["lockoutid"] == lock["lockoutid"] and {"applyseq", "removeseq", "requiredstate"} <= set(lock)
    assert by_wonum["WO-1060"]["wolockout"][0]["removed"] is False, "scenario 4: isolation still applied"
    assert by_wonum["WO-1063"]["wolockout"][0]["removed"] is False, "scenario 11b"
    assert by_wonum["WO-1064"]["wolockout"][0]["removed"] is True, "scenario 11d: released"


def test_maximo_and_soap_read_the_same_plant(mock_systems, http):
    for siteid in ("NJ01", "HZ02"):
        assetnums = sorted({a["assetnum"] for a in ASSETS if a["siteid"] == siteid})[:40]
        soap = {w["wonum"]: w for w in soap_workorders(http, mock_systems, assetnums, siteid)}
        rest = all_members(
            http, maximo(mock_systems, "mxapiwodetail"),
            {"oslc.where": f'siteid="{siteid}" and assetnum in {json.dumps(assetnums)}', "internalvalues": 1,
             "oslc.select": "wonum,assetnum,siteid,worktype,status,schedstart,schedfinish,actfinish,changedate,wolockout{applied,removed}"},
        )
        assert {m["wonum"] for m in rest} == set(soap)
        for member in rest:
            record = soap[member["wonum"]]
            for name in ("assetnum", "siteid", "worktype", "status", "status_maxvalue", "schedstart", "schedfinish", "actfinish", "changedate"):
                assert member.get(name) == record.get(name), (member["wonum"], name)
            lock = member.get("wolockout", [{}])[0]
            isolation = {(): "NONE", (True, False): "APPLIED", (True, True): "RELEASED"}[(lock["applied"], lock["removed"]) if lock else ()]
            assert isolation == record["isolationstate"], member["wonum"]


def test_maximo_refusals_and_auth():
    with start_systems(FIXTURES, auth={"eam_oslc": {"api_key": {"header": "apikey", "value": "k"}}}) as running:
        url = maximo(running, "mxapiasset")
        params = {"lean": 1, "oslc.where": 'assetnum="NJ-P-101"'}
        assert httpx.get(url, params=params).status_code == 401
        ok = httpx.get(url, params=params, headers={"apikey": "k"})
        assert ok.status_code == 200 and len(ok.json()["member"]) == 1
        for bad in ({"lean": 1, "oslc.where": 'nosuch="1"'}, {"lean": 1, "oslc.select": "location{nosuch}"}, {"oslc.where": 'assetnum="X"'}):
            refused = httpx.get(url, params=bad, headers={"apikey": "k"})
            assert refused.status_code == 400 and refused.json()["Error"]["reasonCode"] == "BMXAA7901E", bad


# ---------------------------------------------------------------------------- S/4HANA OData


def test_catalogue_and_batch_values_carry_the_b2mml_parameters(mock_systems, http):
    catalogue = http.get(sap(mock_systems, "API_CLFN_CHARACTERISTIC_SRV", "A_ClfnCharacteristicForKeyDate"), params={"$format": "json"}).json()
    types = {c["CharcInternalID"]: c for c in catalogue["d"]["results"]}
    assert {c["Characteristic"]: c["CharcDataType"] for c in types.values()}["TOXICITY_CLASS"] == "CHAR"
    one = http.get(sap(mock_systems, "API_CLFN_CHARACTERISTIC_SRV", f"A_ClfnCharacteristicForKeyDate('{next(iter(types))}')")).json()
    assert "results" not in one["d"] and one["d"]["CharcInternalID"] == next(iter(types))

    names = ["乙烯", "环氧乙烷", "氮气", "苯"]
    b2mml = http.post(f"{mock_systems.urls['mes']}/api/v1/material-parameters/query", json={"MaterialDefinitionIDs": names}).json()
    rows, url = [], sap(mock_systems, "API_BATCH_SRV", "A_BatchCharcValue")
    page = http.get(url, params={"$filter": " or ".join(f"Material eq '{n}'" for n in names), "$top": 5, "$format": "json"}).json()["d"]
    while True:
        rows += page["results"]
        if "__next" not in page:
            break
        page = http.get(page["__next"]).json()["d"]
    served = {(r["Material"], types[r["CharcInternalID"]]["Characteristic"]): r for r in rows}
    units = {"Cel": "CEL", "degF": "FAH", "MPa": "MPA", "kPa": "KPA", "%": "P1"}
    expected = [(m["ID"], p) for m in b2mml["MaterialDefinition"] for p in m["Parameter"]]
    assert len(served) == len(rows) == len(expected)
    for material, parameter in expected:
        row, value = served[(material, parameter["ID"])], parameter["Value"]
        kind = types[row["CharcInternalID"]]["CharcDataType"]
        if kind == "NUM" and value.get("DataType") == "double":
            assert Decimal(row["CharcFromNumericValue"]) == Decimal(value["ValueString"]) and row["CharcValue"] == ""
            assert row["CharcFromNumericValueUnit"] == units[value["UnitOfMeasure"]]
        else:
            assert row["CharcValue"] == value["ValueString"] and row["CharcFromNumericValue"] in {None, "0.0E0"}
        assert row["LastChangeDateTime"].startswith("/Date(") and row["LastChangeDateTime"].endswith("+0000)/")
    assert served[("乙烯", "FLASH_POINT")]["CharcFromNumericValue"] == "-1.36E2"
    assert served[("环氧乙烷", "OPERATING_PRESSURE")]["CharcFromNumericValue"] is None, "malformed stays malformed"


def test_batch_value_stamp_is_the_custom_services_change_stamp(mock_systems, http):
    custom = http.get(f"{mock_systems.urls['mes_odata']}/MaterialParameterSet", params={"$filter": "Material eq '苯'"}).json()["d"]["results"][0]
    batch = http.get(sap(mock_systems, "API_BATCH_SRV", "A_BatchCharcValue"), params={"$filter": "Material eq '苯'", "$select": "LastChangeDateTime"}).json()["d"]["results"][0]
    day_ms = int(custom["ChangedOn"][6:-2])
    hours, minutes, seconds = int(custom["ChangedAt"][2:4]), int(custom["ChangedAt"][5:7]), int(custom["ChangedAt"][8:10])
    plant_local_ms = day_ms + ((hours - 8) * 3600 + minutes * 60 + seconds) * 1000
    assert batch == {"__metadata": batch["__metadata"], "LastChangeDateTime": f"/Date({plant_local_ms}+0000)/"}


def test_odata_refusals(mock_systems, http):
    url = sap(mock_systems, "API_BATCH_SRV", "A_BatchCharcValue")
    for params in ({"$filter": "Plant eq '1'"}, {"$select": "Nope"}, {"$orderby": "Material"}, {"$top": "x"}):
        answer = http.get(url, params=params)
        assert answer.status_code == 400 and set(answer.json()["error"]) == {"code", "message"}, params
    assert http.get(url + "(Material='X')").status_code == 400
    assert http.get(sap(mock_systems, "API_BATCH_SRV", "A_Batch")).status_code == 404


# ---------------------------------------------------------------------------- SAP journal entries over SOAP


def journal_entry(uuid: str, reference: str, debit: str = "520.00", credit: str | None = None, cost_center: str = "CC-NJ-CRK") -> str:
    header = f"<MessageHeader><ID>{uuid}</ID><UUID>{uuid}</UUID><CreationDateTime>2026-12-01T10:00:00Z</CreationDateTime></MessageHeader>"
    return (
        f"<JournalEntryCreateRequest>{header}<JournalEntry><DocumentReferenceID>{reference}</DocumentReferenceID>"
        "<CompanyCode>NJ01</CompanyCode><PostingDate>2026-12-01</PostingDate>"
        f'<Item><GLAccount>66020103</GLAccount><AmountInTransactionCurrency currencyCode="CNY">{debit}</AmountInTransactionCurrency>'
        f"<DebitCreditCode>S</DebitCreditCode><AccountAssignment><CostCenter>{cost_center}</CostCenter></AccountAssignment></Item>"
        f'<Item><GLAccount>21819901</GLAccount><AmountInTransactionCurrency currencyCode="CNY">{credit or "-" + debit}</AmountInTransactionCurrency>'
        "<DebitCreditCode>H</DebitCreditCode></Item></JournalEntry></JournalEntryCreateRequest>"
    )


def bulk(*entries: str) -> bytes:
    return (
        f'<soap:Envelope xmlns:soap="{SOAP_ENV}"><soap:Body><n0:JournalEntryBulkCreateRequest xmlns:n0="{SFIN}">'
        "<MessageHeader><ID>bulk</ID><UUID>bulk-uuid</UUID><CreationDateTime>2026-12-01T10:00:00Z</CreationDateTime></MessageHeader>"
        f"{''.join(entries)}</n0:JournalEntryBulkCreateRequest></soap:Body></soap:Envelope>"
    ).encode()


def confirmations(response: httpx.Response) -> list[dict]:
    assert response.status_code == 200, response.text
    root = etree.fromstring(response.content)
    found = []
    for element in root.iterfind(f".//{{{SFIN}}}JournalEntryBulkCreateConfirmation/JournalEntryCreateConfirmation"):
        found.append({
            "ReferenceUUID": element.findtext("MessageHeader/ReferenceUUID"),
            **{name: element.findtext(f"JournalEntryCreateConfirmation/{name}") for name in ("AccountingDocument", "CompanyCode", "FiscalYear")},
            "Severity": element.findtext("Log/MaximumLogItemSeverityCode"),
            "Notes": [item.findtext("Note") for item in element.iterfind("Log/Item")],
        })
    return found


def test_soap_posts_balanced_entries_refuses_unbalanced_and_drops_repeats(fresh_mocks, http):
    first = confirmations(http.post(journal_url(fresh_mocks), content=bulk(
        journal_entry("u-1", "PTW-NJ-2026-0014/labour"),
        journal_entry("u-2", "PTW-NJ-2026-0015/labour", credit="-500.00"),
        journal_entry("u-3", "PTW-NJ-2026-0016/labour", cost_center="CC-NOPE"),
    )))
    assert [(c["ReferenceUUID"], c["Severity"]) for c in first] == [("u-1", "1"), ("u-2", "3"), ("u-3", "3")]
    assert first[0]["AccountingDocument"] == "5100000001" and first[0]["FiscalYear"] == "2026"
    assert first[1]["AccountingDocument"] == "0000000000" and "Balance" in first[1]["Notes"][0]
    assert "Cost center CC-NOPE" in first[2]["Notes"][0]
    again = confirmations(http.post(journal_url(fresh_mocks), content=bulk(journal_entry("u-1", "PTW-NJ-2026-0014/labour", debit="999.00"))))
    assert again == first[:1], "a repeat within the window returns the first confirmation"
    ledger = http.get(f"{fresh_mocks.urls['erp']}/api/v1/journal-entries", params={"page": 1}).json()
    assert [(d["AccountingDocument"], d["DocumentReferenceID"], d["Amount"]) for d in ledger["results"]] == [
        ("5100000001", "PTW-NJ-2026-0014/labour", "520.00")
    ]


def test_soap_and_rest_post_into_one_ledger_and_answer_by_reference(fresh_mocks, http):
    rest = {"MessageHeader": {"UUID": "r-1"}, "JournalEntry": {
        "CompanyCode": "NJ01", "DocumentReferenceID": "PTW-NJ-2026-0017/labour", "PostingDate": "2026-12-01",
        "TransactionCurrency": "CNY", "GLAccount": "66020103", "CostCenter": "CC-NJ-CRK", "Amount": "80.00"}}
    http.post(f"{fresh_mocks.urls['erp']}/api/v1/journal-entries", json=rest).raise_for_status()
    [soap_repeat] = confirmations(http.post(journal_url(fresh_mocks), content=bulk(journal_entry("r-1", "PTW-NJ-2026-0017/labour", "80.00"))))
    assert soap_repeat["AccountingDocument"] == "5100000001", "the UUID the REST face posted is a repeat on the SOAP face"
    confirmations(http.post(journal_url(fresh_mocks), content=bulk(journal_entry("s-1", "PTW-NJ-2026-0018/labour", "45.50"))))
    by_rest = http.get(f"{fresh_mocks.urls['erp']}/api/v1/journal-entries", params={"DocumentReferenceID": "PTW-NJ-2026-0018/labour"}).json()["results"]
    client = zeep.Client(journal_url(fresh_mocks) + "?wsdl")
    query = client.bind("JournalEntryByReferenceQuery_In", "JournalEntryByReferenceQuery_InPort")
    by_soap = query.JournalEntryByReferenceQuery_In(DocumentReferenceID="PTW-NJ-2026-0018/labour")
    assert [(d["AccountingDocument"], d["CostCenter"], d["Amount"]) for d in by_rest] == [("5100000002", "CC-NJ-CRK", "45.50")]
    assert [(d.AccountingDocument, d.CostCenter, d.AmountInTransactionCurrency._value_1) for d in by_soap] == [
        ("5100000002", "CC-NJ-CRK", Decimal("45.50"))
    ]
    assert query.JournalEntryByReferenceQuery_In(DocumentReferenceID="never-posted") == []


def test_soap_faults_on_the_journal_entry_service(fresh_mocks, http):
    admin = f"{fresh_mocks.base_urls['erp']}/_admin/faults"
    http.put(admin, json={"rules": [
        {"kind": "soap_fault", "times": 1, "path_prefix": "/sap/bc/srt"},
        {"kind": "malformed", "times": 1, "path_prefix": "/sap/bc/srt"},
        {"kind": "commit_then_drop", "times": 1, "path_prefix": "/sap/bc/srt"},
        {"kind": "empty", "times": 1, "path_prefix": "/sap/bc/srt"},
    ]}).raise_for_status()
    fault = http.post(journal_url(fresh_mocks), content=bulk(journal_entry("f-1", "F/1")))
    assert fault.status_code == 500 and etree.fromstring(fault.content).findtext(".//faultcode") == "soap:Server"
    with pytest.raises(etree.XMLSyntaxError):
        etree.fromstring(http.post(journal_url(fresh_mocks), content=bulk(journal_entry("f-1", "F/1"))).content)
    with pytest.raises(httpx.TransportError):
        http.post(journal_url(fresh_mocks), content=bulk(journal_entry("f-1", "F/1")))
    emptied = http.post(journal_url(fresh_mocks), content=bulk(journal_entry("f-1", "F/1")))
    root = etree.fromstring(emptied.content)
    assert confirmations(emptied) == [] and root.find(f".//{{{SFIN}}}JournalEntryBulkCreateConfirmation/MessageHeader") is not None
    assert [c["AccountingDocument"] for c in confirmations(http.post(journal_url(fresh_mocks), content=bulk(journal_entry("f-1", "F/1"))))] == ["5100000001"]
    bad = http.post(journal_url(fresh_mocks), content=b"<not-soap/>")
    assert bad.status_code == 500 and etree.fromstring(bad.content).findtext(".//faultcode") == "soap:Client"


def test_faults_reach_the_new_rest_endpoints(fresh_mocks, http):
    for system, url in (("eam_oslc", maximo(fresh_mocks, "mxapiwodetail")), ("mes_odata", sap(fresh_mocks, "API_BATCH_SRV", "A_BatchCharcValue"))):
        path = httpx.URL(url).path
        http.put(f"{fresh_mocks.base_urls[system]}/_admin/faults", json={"rules": [
            {"kind": "status", "status": 503, "times": 1, "path_prefix": path}, {"kind": "empty", "times": 1, "path_prefix": path}]}).raise_for_status()
        params = {"lean": 1, "oslc.where": 'siteid="NJ01" and assetnum in ["NJ-C-101"]'} if system == "eam_oslc" else {"$filter": "Material eq '苯'"}
        assert http.get(url, params=params).status_code == 503
        emptied = http.get(url, params=params).json()
        assert emptied.get("member", emptied.get("d", {}).get("results")) == []
        assert http.get(url, params=params).status_code == 200
