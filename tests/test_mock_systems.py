"""The mock systems against their wire contract (docs/protocols.md), over real loopback HTTP.

Also checks the fixtures: their sizes, and that the scenario table in fixtures/README.md is what
the gate rules give on the JSON files (recomputed here, independently of `hub`).
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
import zeep
import zeep.exceptions
from lxml import etree

from conftest import mock_systems_cli
from mock_systems.faults import FaultPlan, FaultPlanError, split_by_system
from mock_systems.servers import start_systems

REPO_ROOT = Path(__file__).parents[1]
FIXTURES = REPO_ROOT / "fixtures"
WSDL = REPO_ROOT / "mock_systems" / "eam.wsdl"
PLANT_TZ = ZoneInfo("Asia/Shanghai")
TNS = "urn:plant:eam:maintenance:v1"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
NS = {"soap": SOAP_ENV, "eam": TNS}
BINDING = f"{{{TNS}}}AssetMaintenanceBinding"


def fixture(relative: str):
    return json.loads((FIXTURES / relative).read_text(encoding="utf-8"))


PERMITS = fixture("ptw/permits.json")
ASSETS = fixture("eam/assets.json")
WORKORDERS = fixture("eam/workorders.json")
MATERIALS = fixture("mes/materials.json")


def local(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=PLANT_TZ)


def listing_key(permit: dict) -> tuple[datetime, str]:
    return local(permit["updateTime"]), permit["ticketNo"]


def admin(running, system: str, what: str) -> str:
    return f"{running.base_urls[system]}/_admin/{what}"


def set_faults(http, running, system: str, plan: dict) -> None:
    http.put(admin(running, system, "faults"), json=plan).raise_for_status()


# ---------------------------------------------------------------------------- fixtures


def test_fixture_sizes_and_coverage():
    assert len(PERMITS) >= 44 and len(ASSETS) >= 32 and len(WORKORDERS) >= 85 and len(MATERIALS) >= 16
    assert {p["ticketType"] for p in PERMITS} >= {"DH", "SX", "GC", "DZ", "LSYD"}
    assert {w["worktype"] for w in WORKORDERS} == {"PM", "CM", "EM", "INSP", "OH"}
    assert {w["isolationstate"] for w in WORKORDERS} == {"NONE", "APPLIED", "RELEASED"}
    assert {"APPR S1", "进行中", "完工"} <= {w["status"] for w in WORKORDERS}
    assert [a["assetnum"] for a in ASSETS if "datasyncdate" in a] == ["HZ-B-501"]
    assert len({p["ticketNo"] for p in PERMITS}) == len(PERMITS)
    assert len({w["wonum"] for w in WORKORDERS}) == len(WORKORDERS)
    closed = [p for p in PERMITS if p["state"] == "CLOSED"]
    assert len(closed) >= 10 and {p["closeResult"] for p in closed} == {"COMPLETED", "ABORTED", "INCIDENT"}
    assert all(p["workHours"] and p["guardianArriveTime"] and p["closeTime"] for p in closed)
    # Live work lies in December and January; the closed work-at-height history of NJ01's tank
    # farm (fixtures/README.md) in June to November.
    history = {f"PTW-NJ-2026-{n:04d}" for n in range(101, 114)}
    assert {p["ticketNo"] for p in PERMITS if p["planStartTime"][:7] < "2026-12"} == history
    for p in PERMITS:
        months = {"2026-06", "2026-07", "2026-08", "2026-09", "2026-10", "2026-11"} if p["ticketNo"] in history else {"2026-12", "2027-01"}
        for field in ("planStartTime", "planEndTime"):
            if p[field] != "2026-13-45 25:00:00":
                assert p[field][:7] in months, (p["ticketNo"], field)
    assert {m["ID"] for m in MATERIALS} >= {
        "乙烯",
        "丙烯",
        "氢气",
        "甲烷",
        "苯",
        "甲苯",
        "二甲苯",
        "硫化氢",
        "氮气",
        "液化石油气",
        "丁二烯",
        "甲醇",
        "氨",
        "氯气",
        "柴油",
        "环氧乙烷",
    }
    units = {p["Value"].get("UnitOfMeasure") for m in MATERIALS for p in m["Parameter"]}
    assert {"Cel", "%", "MPa", "kPa", "degF"} <= units


GATED_STATES = {"SUBMITTED", "APPROVED", "IN_PROGRESS"}
FINISHED = {"COMP", "CLOSE", "CAN"}
MAXVALUES = {"WAPPR", "APPR", "WSCH", "WMATL", "INPRG", "COMP", "CLOSE", "CAN"}
EVALUATED_AT = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)


CONFIGURED_SITES = {"NJ01", "HZ02"}
KNOWN_ASSET_STATUSES = {"OPERATING", "NOT READY", "DECOMMISSIONED"}


def reference_gate(permit: dict) -> tuple[str, list[str]]:
    """The gate rules of the brief, applied to the raw fixture records (independent of hub)."""
    try:
        assert permit["ticketType"] in {"DH", "SX", "GC", "DZ", "LSYD"}
        assert isinstance(permit["equipmentCodes"], list)
        start, end = local(permit["planStartTime"]), local(permit["planEndTime"])
    except (KeyError, ValueError, AssertionError):
        return "quarantined", ["PERMIT_RECORD_INVALID"]
    if permit["ticketType"] != "GC" or permit["state"] not in GATED_STATES:
        return "not gated", []
    site = permit["siteCode"].strip().upper()
    if site not in CONFIGURED_SITES:
        return "BLOCK", ["SITE_NOT_CONFIGURED"]
    devices = list(dict.fromkeys(code.strip().upper() for code in permit["equipmentCodes"]))
    assets = {a["assetnum"]: a for a in ASSETS if a["siteid"] == site}  # a device is (site, number)
    reasons = [] if devices else ["NO_DEVICE_LINKED"]
    for device in devices:
        if device not in assets:
            reasons.append(f"DEVICE_UNKNOWN ({device})")
            continue
        asset = assets[device]
        orders = [w for w in WORKORDERS if w["assetnum"] == device and w["siteid"] == site]
        if asset["status"] not in KNOWN_ASSET_STATUSES or any(w["status_maxvalue"] not in MAXVALUES for w in orders):
            reasons.append(f"EAM_RECORD_INVALID ({device})")
            continue
        for w in orders:
            w_start = datetime.fromisoformat(w["schedstart"]) if "schedstart" in w else None
            w_end = datetime.fromisoformat(w["schedfinish"]) if "schedfinish" in w else None
            if (
                w["status_maxvalue"] not in FINISHED
                and (w_start is None or w_start < end)
                and (w_end is None or start < w_end)
            ):
                reasons.append(f"OPEN_WORK_ORDER ({device})")
                break
        # The lock is the physical fact: whatever the work order's status says.
        if any(w["isolationstate"] == "APPLIED" for w in orders):
            reasons.append(f"ISOLATION_NOT_RELEASED ({device})")
        if asset["status"] != "OPERATING":
            reasons.append(f"EQUIPMENT_NOT_IN_SERVICE ({device})")
        if "nextinspdate" in asset and datetime.fromisoformat(asset["nextinspdate"]) < end:
            reasons.append(f"INSPECTION_OVERDUE ({device})")
        if "datasyncdate" in asset and EVALUATED_AT - datetime.fromisoformat(asset["datasyncdate"]) > timedelta(
            minutes=15
        ):
            reasons.append(f"EAM_DATA_STALE ({device})")
    return ("BLOCK" if reasons else "ALLOW"), reasons


def scenario_table() -> list[list[str]]:
    text = (FIXTURES / "README.md").read_text(encoding="utf-8")
    return [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith("| PTW-")
    ]


def test_scenario_table_matches_the_fixtures():
    rows = scenario_table()
    by_ticket = {p["ticketNo"]: p for p in PERMITS}
    assert sorted(row[0] for row in rows) == sorted(by_ticket), "every permit appears once in the table"
    for ticket, kind, state, devices, result, reasons in rows:
        permit = by_ticket[ticket]
        assert (permit["ticketType"], permit["state"]) == (kind, state), ticket
        if devices == "(key missing)":
            assert "equipmentCodes" not in permit
        else:
            typed = [] if devices == "(none)" else [d.strip("`").replace("␠", " ") for d in devices.split(", ")]
            assert permit["equipmentCodes"] == typed, ticket
        expected = (result, [r.strip() for r in reasons.split(";") if r.strip()])
        assert reference_gate(permit) == expected, ticket
    results = [row[4] for row in rows]
    assert results.count("ALLOW") >= 5 and results.count("quarantined") == 3


# ---------------------------------------------------------------------------- PTW


def list_all(http, url: str, **params) -> list[list[dict]]:
    pages, token = [], None
    while True:
        query = dict(params, **({"page_token": token} if token else {}))
        response = http.get(f"{url}/api/v1/permits", params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["items"])
        token = body["next_page_token"]
        if token is None:
            return pages


def test_ptw_pages_through_every_permit_in_cursor_order(mock_systems, http):
    pages = list_all(http, mock_systems.urls["ptw"], page_size=7)
    assert [len(p) for p in pages[:-1]] == [7] * (len(pages) - 1) and 1 <= len(pages[-1]) <= 7
    items = [item for page in pages for item in page]
    assert items == sorted(PERMITS, key=listing_key), "served exactly as stored, ordered by (updateTime, ticketNo)"
    default = http.get(f"{mock_systems.urls['ptw']}/api/v1/permits").json()
    assert len(default["items"]) == len(PERMITS) and default["next_page_token"] is None


def test_ptw_ties_on_update_time_are_ordered_by_ticket_and_paged_without_loss(mock_systems, http):
    tied = sorted(p["ticketNo"] for p in PERMITS if p["updateTime"] == "2026-11-26 14:05:00")
    assert len(tied) == 3
    since = local("2026-11-26 14:05:00").astimezone(timezone.utc).isoformat()
    pages = list_all(http, mock_systems.urls["ptw"], page_size=1, updated_since=since)
    tickets = [page[0]["ticketNo"] for page in pages]
    assert tickets[:3] == tied
    assert (
        len(tickets)
        == len(set(tickets))
        == sum(local(p["updateTime"]) >= local("2026-11-26 14:05:00") for p in PERMITS)
    )


def test_ptw_updated_since_is_inclusive_and_reads_vendor_times_as_plant_time(mock_systems, http):
    url = f"{mock_systems.urls['ptw']}/api/v1/permits"
    newest = max(PERMITS, key=listing_key)
    at = local(newest["updateTime"])
    as_utc = at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")  # eight hours earlier on the clock
    items = http.get(url, params={"updated_since": as_utc}).json()["items"]
    assert [i["ticketNo"] for i in items] == [newest["ticketNo"]]
    one_second_later = (at + timedelta(seconds=1)).isoformat()
    assert http.get(url, params={"updated_since": one_second_later}).json()["items"] == []
    cutoff = datetime(2026, 11, 27, 0, 0, tzinfo=timezone.utc)  # 08:00 on 27 November in the plant
    items = http.get(url, params={"updated_since": cutoff.isoformat()}).json()["items"]
    assert {i["ticketNo"] for i in items} == {p["ticketNo"] for p in PERMITS if local(p["updateTime"]) >= cutoff}
    assert 0 < len(items) < len(PERMITS)


def test_ptw_lists_one_site_or_every_site_but_some(mock_systems, http):
    url = mock_systems.urls["ptw"]

    def tickets(**params) -> set[str]:
        return {item["ticketNo"] for page in list_all(http, url, page_size=10, **params) for item in page}

    def of_sites(*sites: str) -> set[str]:
        return {p["ticketNo"] for p in PERMITS if str(p.get("siteCode", "")).strip().upper() in sites}

    assert tickets(site="NJ01") == of_sites("NJ01") and tickets(site=" hz02 ") == of_sites("HZ02")
    others = tickets(exclude_sites="NJ01, hz02")
    assert others == {p["ticketNo"] for p in PERMITS} - of_sites("NJ01", "HZ02")
    assert "PTW-SH-2026-0001" in others
    assert tickets(site="NJ01", exclude_sites="NJ01") == set()


@pytest.mark.parametrize(
    "params",
    [
        {"updated_since": "yesterday"},
        {"page_size": "0"},
        {"page_size": "501"},
        {"page_size": "ten"},
        {"page_token": "not-a-token"},
    ],
)
def test_ptw_rejects_bad_listing_parameters(mock_systems, http, params):
    response = http.get(f"{mock_systems.urls['ptw']}/api/v1/permits", params=params)
    assert response.status_code == 400
    assert "error" in response.json()


HOLD = {
    "action": "BLOCK",
    "ruleVersion": "gate-2026.11-1",
    "decidedAt": "2026-11-28T10:00:00Z",
    "reasons": [
        {"code": "OPEN_WORK_ORDER", "deviceId": "NJ-C-101", "message": "WO-1058 open", "evidence": {"wonum": "WO-1058"}}
    ],
}


def test_ptw_holds_are_idempotent_and_count_revisions(fresh_mocks, http):
    url = f"{fresh_mocks.urls['ptw']}/api/v1/permits/PTW-NJ-2026-0001"
    hold_url = f"{url}/holds/integration-hub"
    assert http.put(hold_url, json=HOLD).json() == {"changed": True, "revision": 1}
    assert http.put(hold_url, json=HOLD).json() == {"changed": False, "revision": 1}
    later = {**HOLD, "ruleVersion": "gate-2026.12-1", "decidedAt": "2026-11-29T10:00:00Z"}
    assert http.put(hold_url, json=later).json() == {"changed": False, "revision": 1}, "only action and reasons count"
    reordered_evidence = {**HOLD, "reasons": [{**HOLD["reasons"][0], "evidence": {"wonum": "WO-1058"}}]}
    assert http.put(hold_url, json=reordered_evidence).json()["changed"] is False
    changed = {
        **HOLD,
        "reasons": [*HOLD["reasons"], {"code": "INSPECTION_OVERDUE", "deviceId": "NJ-C-101", "message": "due"}],
    }
    assert http.put(hold_url, json=changed).json() == {"changed": True, "revision": 2}

    permit = http.get(url).json()
    stored = next(p for p in PERMITS if p["ticketNo"] == "PTW-NJ-2026-0001")
    assert {k: v for k, v in permit.items() if k != "holds"} == stored
    [hold] = permit["holds"]
    assert set(hold) == {"source", "action", "reasons", "ruleVersion", "revision", "updatedAt"}
    assert (hold["source"], hold["action"], hold["revision"]) == ("integration-hub", "BLOCK", 2)
    assert [r["code"] for r in hold["reasons"]] == ["OPEN_WORK_ORDER", "INSPECTION_OVERDUE"]
    state = http.get(admin(fresh_mocks, "ptw", "state")).json()
    assert list(state["holds"]) == ["PTW-NJ-2026-0001"] and state["holds"]["PTW-NJ-2026-0001"][0]["revision"] == 2

    other_source = f"{url}/holds/site-safety"
    assert http.put(other_source, json=HOLD).json() == {"changed": True, "revision": 1}
    assert len(http.get(url).json()["holds"]) == 2

    assert http.delete(hold_url).json() == {"changed": True}
    assert http.delete(hold_url).json() == {"changed": False}
    assert [h["source"] for h in http.get(url).json()["holds"]] == ["site-safety"]
    assert http.put(hold_url, json=HOLD).json() == {"changed": True, "revision": 3}, "revisions keep counting"
    # Holds leave the permit's updateTime alone: the write-back must not look like a permit change.
    assert http.get(url).json()["updateTime"] == stored["updateTime"]


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        json.dumps({"action": "BLOCK"}).encode(),
        json.dumps({**HOLD, "action": "MAYBE"}).encode(),
        json.dumps({**HOLD, "reasons": [{"deviceId": "NJ-C-101", "message": "no code"}]}).encode(),
        json.dumps({**HOLD, "reasons": "OPEN_WORK_ORDER"}).encode(),
        json.dumps({**HOLD, "unexpected": 1}).encode(),
    ],
)
def test_ptw_malformed_hold_is_422(mock_systems, http, body):
    url = f"{mock_systems.urls['ptw']}/api/v1/permits/PTW-NJ-2026-0002/holds/integration-hub"
    response = http.put(url, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["error"] == "malformed hold"


def test_ptw_unknown_permit_is_404(mock_systems, http):
    base = f"{mock_systems.urls['ptw']}/api/v1/permits/PTW-XX-2026-9999"
    assert http.get(base).status_code == 404
    assert http.put(f"{base}/holds/integration-hub", json=HOLD).status_code == 404
    assert http.delete(f"{base}/holds/integration-hub").status_code == 404


def test_ptw_serves_malformed_permits_as_stored(mock_systems, http):
    url = mock_systems.urls["ptw"]
    assert "equipmentCodes" not in http.get(f"{url}/api/v1/permits/PTW-NJ-2026-0026").json()
    assert http.get(f"{url}/api/v1/permits/PTW-NJ-2026-0027").json()["planStartTime"] == "2026-13-45 25:00:00"
    assert http.get(f"{url}/api/v1/permits/PTW-HZ-2026-0016").json()["ticketType"] == "XX"


def test_ptw_lists_a_permit_whose_update_time_does_not_parse(tmp_path, http):
    fixtures = tmp_path / "fixtures"
    shutil.copytree(FIXTURES, fixtures)
    broken = {**PERMITS[0], "ticketNo": "PTW-NJ-2026-0999", "updateTime": "2026/11/28 8点"}
    (fixtures / "ptw" / "permits.json").write_text(json.dumps([*PERMITS, broken], ensure_ascii=False), encoding="utf-8")
    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    with start_systems(fixtures) as running:
        url = f"{running.urls['ptw']}/api/v1/permits"
        items = http.get(url, params={"page_size": 500}).json()["items"]
        assert broken in items
        # Listed as if updated when the mock loaded its fixtures: just after `before`.
        recent = http.get(url, params={"updated_since": before.isoformat()}).json()["items"]
        later = {p["ticketNo"] for p in PERMITS if local(p["updateTime"]) >= before}
        assert {i["ticketNo"] for i in recent} == later | {"PTW-NJ-2026-0999"}
        assert recent[0] == broken


# ---------------------------------------------------------------------------- EAM


def envelope(*assetnums: str, changedsince: str | None = None, siteid: str | None = None) -> bytes:
    site = f"<eam:siteid>{siteid}</eam:siteid>" if siteid is not None else ""
    items = "".join(f"<eam:assetnum>{a}</eam:assetnum>" for a in assetnums)
    since = f"<eam:changedsince>{changedsince}</eam:changedsince>" if changedsince else ""
    return (
        f'<soap:Envelope xmlns:soap="{SOAP_ENV}" xmlns:eam="{TNS}"><soap:Body>'
        f"<eam:GetAssetMaintenanceRequest>{site}{items}{since}</eam:GetAssetMaintenanceRequest>"
        "</soap:Body></soap:Envelope>"
    ).encode()


def soap_post(http, url: str, body: bytes) -> httpx.Response:
    return http.post(
        url,
        content=body,
        headers={"content-type": "text/xml; charset=utf-8", "SOAPAction": f'"{TNS}/GetAssetMaintenance"'},
    )


def xsd_order(type_name: str) -> list[str]:
    tree = etree.parse(str(WSDL))
    return tree.xpath(
        "//xs:complexType[@name=$n]/xs:sequence/xs:element/@name",
        namespaces={"xs": "http://www.w3.org/2001/XMLSchema"},
        n=type_name,
    )


def children(element) -> list[str]:
    return [etree.QName(child).localname for child in element]


def test_eam_raw_soap_batch(mock_systems, http):
    response = soap_post(
        http, mock_systems.urls["eam"], envelope(" nj-c-101", "NJ-E-201", "NO-SUCH-1", "hz-p-101 ", "NJ-C-101")
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    root = etree.fromstring(response.content)
    [reply] = root.xpath("/soap:Envelope/soap:Body/eam:GetAssetMaintenanceResponse", namespaces=NS)
    assert children(reply) == ["asset"] * 3 + ["workorder"] * (len(children(reply)) - 3), (
        "assets first, then work orders"
    )
    assets = reply.findall("eam:asset", NS)
    assert [a.findtext("eam:assetnum", namespaces=NS) for a in assets] == ["NJ-C-101", "NJ-E-201", "HZ-P-101"]
    asset_order, wo_order = xsd_order("Asset"), xsd_order("WorkOrder")
    for asset in assets:
        names = children(asset)
        assert names == [n for n in asset_order if n in names]
    orders = reply.findall("eam:workorder", NS)
    expected = {w["wonum"] for w in WORKORDERS if w["assetnum"] in {"NJ-C-101", "NJ-E-201", "HZ-P-101"}}
    assert {w.findtext("eam:wonum", namespaces=NS) for w in orders} == expected
    for order in orders:
        names = children(order)
        assert names == [n for n in wo_order if n in names]
    by_wonum = {w.findtext("eam:wonum", namespaces=NS): w for w in orders}
    assert by_wonum["WO-1059"].findtext("eam:status", namespaces=NS) == "APPR S1"
    assert by_wonum["WO-1059"].findtext("eam:status_maxvalue", namespaces=NS) == "APPR"
    assert by_wonum["WO-5042"].findtext("eam:status", namespaces=NS) == "进行中"
    assert by_wonum["WO-5042"].find("eam:schedfinish", NS) is None, "open-ended: element absent"


def test_eam_through_zeep_with_the_shipped_wsdl(mock_systems):
    client = zeep.Client(str(WSDL))
    service = client.create_service(BINDING, mock_systems.urls["eam"])
    result = service.GetAssetMaintenance(assetnum=["HZ-B-501", "hz-t-303", "NJ-P-199"])
    assert [a.assetnum for a in result.asset] == ["HZ-B-501", "HZ-T-303"]
    stale = result.asset[0]
    assert stale.datasyncdate == datetime(2026, 11, 1, 6, 0, tzinfo=PLANT_TZ)
    assert result.asset[1].datasyncdate is None
    assert result.asset[1].nextinspdate == datetime(2026, 12, 1, tzinfo=PLANT_TZ)
    open_inspection = next(w for w in result.workorder if w.wonum == "WO-5043")
    assert (open_inspection.worktype, open_inspection.status_maxvalue) == ("INSP", "WAPPR")
    assert open_inspection.schedstart == datetime(2026, 12, 9, 8, 0, tzinfo=PLANT_TZ)


def test_eam_serves_the_malformed_work_order(mock_systems):
    client = zeep.Client(str(WSDL))
    result = client.create_service(BINDING, mock_systems.urls["eam"]).GetAssetMaintenance(assetnum=["HZ-E-101"])
    assert "BOGUS" in {w.status_maxvalue for w in result.workorder}


def test_eam_changedsince_keeps_only_work_orders_changed_at_or_after(mock_systems, http):
    devices = sorted({a["assetnum"] for a in ASSETS})
    since = "2026-11-26T10:05:00+08:00"  # exactly WO-5042's changedate
    root = etree.fromstring(soap_post(http, mock_systems.urls["eam"], envelope(*devices, changedsince=since)).content)
    got = {w.findtext("eam:wonum", namespaces=NS) for w in root.iter(f"{{{TNS}}}workorder")}
    cutoff = datetime.fromisoformat(since)
    assert got == {w["wonum"] for w in WORKORDERS if datetime.fromisoformat(w["changedate"]) >= cutoff}
    assert "WO-5042" in got and 0 < len(got) < len(WORKORDERS)
    # Assets are not filtered; without a siteid every site's asset of each number comes back.
    assert len(root.findall(".//eam:asset", NS)) == len(ASSETS) > len(devices), "assets are not filtered"
    in_utc = soap_post(http, mock_systems.urls["eam"], envelope(*devices, changedsince="2026-11-26T02:05:00Z"))
    assert {
        w.findtext("eam:wonum", namespaces=NS) for w in etree.fromstring(in_utc.content).iter(f"{{{TNS}}}workorder")
    } == got


def test_eam_siteid_keeps_only_that_sites_assets_and_work_orders(mock_systems, http):
    """An asset is (siteid, assetnum): CT-701 exists at both sites, NJ-F-101 only at NJ01."""

    def answer(siteid: str | None) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        response = soap_post(http, mock_systems.urls["eam"], envelope("CT-701", "nj-f-101", siteid=siteid))
        assert response.status_code == 200
        root = etree.fromstring(response.content)

        def records(tag: str, key: str) -> list[tuple[str, str]]:
            return sorted(
                (r.findtext("eam:siteid", namespaces=NS), r.findtext(f"eam:{key}", namespaces=NS))
                for r in root.iter(f"{{{TNS}}}{tag}")
            )

        return records("asset", "assetnum"), records("workorder", "wonum")

    asked = {"CT-701", "NJ-F-101"}
    for site in ("NJ01", "HZ02"):
        expected = (
            sorted((a["siteid"], a["assetnum"]) for a in ASSETS if a["siteid"] == site and a["assetnum"] in asked),
            sorted((w["siteid"], w["wonum"]) for w in WORKORDERS if w["siteid"] == site and w["assetnum"] in asked),
        )
        assert expected[0] and expected[1]
        assert answer(site) == expected, site
        assert answer(f" {site.lower()} ") == expected, "the site is matched after trimming and upper-casing"
    assert answer("HZ02")[0] == [("HZ02", "CT-701")], "NJ-F-101 is not an asset of HZ02"
    everywhere = answer(None)
    assert everywhere[0] == [("HZ02", "CT-701"), ("NJ01", "CT-701"), ("NJ01", "NJ-F-101")], "no siteid: every site"
    assert everywhere[1] == sorted(answer("NJ01")[1] + answer("HZ02")[1])
    assert answer("SH03") == ([], []), "a site the EAM does not know has no assets"


BAD_SOAP = {
    "no assetnum": (envelope(), "at least one assetnum"),
    "too many": (envelope(*[f"NJ-P-{i}" for i in range(501)]), "at most 500"),
    "bad changedsince": (envelope("NJ-P-101", changedsince="last tuesday"), "changedsince"),
    "wrong element": (
        envelope("NJ-P-101").replace(b"GetAssetMaintenanceRequest", b"GetWorkOrders"),
        "GetAssetMaintenanceRequest",
    ),
    "not soap": (f'<eam:GetAssetMaintenanceRequest xmlns:eam="{TNS}"/>'.encode(), "Envelope"),
    "not xml": (b"<soap:Envelope><unclosed>", "well-formed"),
    "dtd": (
        (
            '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
            f'<soap:Envelope xmlns:soap="{SOAP_ENV}" xmlns:eam="{TNS}"><soap:Body><eam:GetAssetMaintenanceRequest>'
            "<eam:assetnum>&xxe;</eam:assetnum></eam:GetAssetMaintenanceRequest></soap:Body></soap:Envelope>"
        ).encode(),
        "DTD",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_SOAP))
def test_eam_bad_requests_answer_a_soap_client_fault(mock_systems, http, case):
    body, phrase = BAD_SOAP[case]
    response = soap_post(http, mock_systems.urls["eam"], body)
    assert response.status_code == 500
    root = etree.fromstring(response.content)
    [fault] = root.xpath("/soap:Envelope/soap:Body/soap:Fault", namespaces=NS)
    code = fault.findtext("faultcode")
    prefix, _, local_name = code.partition(":")
    assert fault.nsmap[prefix] == SOAP_ENV and local_name == "Client"
    assert phrase in fault.findtext("faultstring")
    assert b"root:" not in response.content


def test_eam_fault_reaches_zeep_as_a_fault(mock_systems):
    service = zeep.Client(str(WSDL)).create_service(BINDING, mock_systems.urls["eam"])
    with pytest.raises(zeep.exceptions.Fault) as exc:
        service.GetAssetMaintenance(assetnum=["NJ-P-101"], changedsince="last tuesday")
    assert "changedsince" in exc.value.message
    assert exc.value.code.endswith(":Client")


def test_eam_serves_its_wsdl_with_its_own_address(mock_systems, http):
    response = http.get(mock_systems.urls["eam"] + "?wsdl")
    assert response.status_code == 200
    [address] = etree.fromstring(response.content).iter("{http://schemas.xmlsoap.org/wsdl/soap/}address")
    assert address.get("location") == mock_systems.urls["eam"]
    client = zeep.Client(mock_systems.urls["eam"] + "?wsdl")  # the served copy works on its own
    assert [a.assetnum for a in client.service.GetAssetMaintenance(assetnum=["NJ-P-101"]).asset] == ["NJ-P-101"]
    assert http.get(mock_systems.urls["eam"]).status_code == 405


# ---------------------------------------------------------------------------- MES


def test_mes_batch_answers_known_materials_and_lists_unknown_ones(mock_systems, http):
    response = http.post(
        f"{mock_systems.urls['mes']}/api/v1/material-parameters/query",
        json={"MaterialDefinitionIDs": ["乙烯", " 氢气 ", "不存在", "二甲苯", "乙烯"]},
    )
    assert response.status_code == 200
    body = response.json()
    assert [m["ID"] for m in body["MaterialDefinition"]] == ["乙烯", "氢气", "二甲苯"]
    assert body["UnknownIDs"] == ["不存在"]
    ethylene = body["MaterialDefinition"][0]
    assert ethylene["Description"] == "Ethylene"
    flash = next(p for p in ethylene["Parameter"] if p["ID"] == "FLASH_POINT")
    assert flash["Value"] == {"ValueString": "-136", "DataType": "double", "UnitOfMeasure": "Cel"}
    xylene_flash = next(p for p in body["MaterialDefinition"][2]["Parameter"] if p["ID"] == "FLASH_POINT")
    assert xylene_flash["Value"]["UnitOfMeasure"] == "degF"


@pytest.mark.parametrize(
    "body",
    [
        {"MaterialDefinitionIDs": [f"m{i}" for i in range(201)]},
        {"MaterialDefinitionIDs": []},
        {"MaterialDefinitionIDs": "乙烯"},
        {"MaterialDefinitionIDs": [1, 2]},
        {"IDs": ["乙烯"]},
        ["乙烯"],
    ],
)
def test_mes_rejects_bad_queries(mock_systems, http, body):
    response = http.post(f"{mock_systems.urls['mes']}/api/v1/material-parameters/query", json=body)
    assert response.status_code == 400
    assert response.json()["error"]


def test_mes_single_material_and_malformed_parameter(mock_systems, http):
    url = f"{mock_systems.urls['mes']}/api/v1/materials"
    eo = http.get(f"{url}/环氧乙烷/parameters").json()
    pressure = next(p for p in eo["Parameter"] if p["ID"] == "OPERATING_PRESSURE")
    assert "DataType" not in pressure["Value"], "served as stored, for the hub to quarantine"
    assert http.get(f"{url}/不存在/parameters").status_code == 404
    assert eo == next(m for m in MATERIALS if m["ID"] == "环氧乙烷")


# ---------------------------------------------------------------------------- ERP


def create_request(
    uuid: str,
    reference: str,
    *,
    company="NJ01",
    cost_center="CC-NJ-CRK",
    gl="66020103",
    amount="520.00",
    posting_date="2026-12-01",
) -> dict:
    return {
        "MessageHeader": {"UUID": uuid},
        "JournalEntry": {
            "CompanyCode": company,
            "DocumentReferenceID": reference,
            "DocumentHeaderText": f"{reference} 安全费用",
            "PostingDate": posting_date,
            "TransactionCurrency": "CNY",
            "GLAccount": gl,
            "CostCenter": cost_center,
            "Amount": amount,
        },
    }


def bulk(http, running, *requests: dict) -> httpx.Response:
    body = {
        "MessageHeader": {"ID": "batch-1", "CreationDateTime": "2026-11-28T10:00:00Z"},
        "JournalEntryCreateRequest": list(requests),
    }
    return http.post(f"{running.urls['erp']}/api/v1/journal-entries/bulk", json=body)


def documents(http, running) -> list[dict]:
    return http.get(admin(running, "erp", "state")).json()["documents"]


def test_erp_bulk_post_numbers_documents_in_sequence(fresh_mocks, http):
    response = bulk(
        http,
        fresh_mocks,
        create_request("u-1", "PTW-NJ-2026-0014/labour"),
        create_request(
            "u-2",
            "PTW-HZ-2026-0012/ppe",
            company="HZ02",
            cost_center="CC-HZ-ARO",
            amount="100.00",
            posting_date="2027-01-03",
        ),
    )
    assert response.status_code == 200
    confirmations = response.json()["JournalEntryCreateConfirmation"]
    assert confirmations == [
        {
            "MessageHeader": {"UUID": "u-1"},
            "Log": {"MaximumLogItemSeverityCode": "1", "Item": []},
            "JournalEntry": {"AccountingDocument": "5100000001", "CompanyCode": "NJ01", "FiscalYear": "2026"},
            "Duplicate": False,
        },
        {
            "MessageHeader": {"UUID": "u-2"},
            "Log": {"MaximumLogItemSeverityCode": "1", "Item": []},
            "JournalEntry": {"AccountingDocument": "5100000002", "CompanyCode": "HZ02", "FiscalYear": "2027"},
            "Duplicate": False,
        },
    ]
    assert [d["AccountingDocument"] for d in documents(http, fresh_mocks)] == ["5100000001", "5100000002"]


def test_erp_duplicate_uuid_returns_the_original_and_posts_nothing(fresh_mocks, http):
    first = bulk(http, fresh_mocks, create_request("u-dup", "PTW-NJ-2026-0015/labour")).json()
    again = bulk(
        http,
        fresh_mocks,
        create_request("u-dup", "PTW-NJ-2026-0015/labour"),
        create_request("u-new", "PTW-NJ-2026-0015/ppe"),
    ).json()
    original, duplicate, new = first["JournalEntryCreateConfirmation"][0], *again["JournalEntryCreateConfirmation"]
    assert duplicate == {**original, "Duplicate": True}
    assert new["JournalEntry"]["AccountingDocument"] == "5100000002"
    within_one_call = bulk(http, fresh_mocks, create_request("u-twice", "R"), create_request("u-twice", "R")).json()
    assert [c["Duplicate"] for c in within_one_call["JournalEntryCreateConfirmation"]] == [False, True]
    assert [d["MessageUUID"] for d in documents(http, fresh_mocks)] == ["u-dup", "u-new", "u-twice"]


@pytest.mark.parametrize(
    ("overrides", "notes"),
    [
        ({"company": "SH03"}, ["Company code SH03"]),
        ({"cost_center": "CC-HZ-ARO"}, ["Cost center CC-HZ-ARO"]),
        ({"gl": "66029999"}, ["G/L account 66029999"]),
        ({"amount": "0.00"}, ["Amount 0.00"]),
        ({"amount": "-5", "gl": "1"}, ["G/L account 1", "Amount -5"]),
    ],
)
def test_erp_business_rejections_post_nothing(fresh_mocks, http, overrides, notes):
    [confirmation] = bulk(http, fresh_mocks, create_request("u-bad", "PTW-NJ-2026-0016/ppe", **overrides)).json()[
        "JournalEntryCreateConfirmation"
    ]
    assert confirmation["Log"]["MaximumLogItemSeverityCode"] == "3"
    items = confirmation["Log"]["Item"]
    assert len(items) == len(notes) and all(phrase in item["Note"] for phrase, item in zip(notes, items, strict=True))
    assert "AccountingDocument" not in confirmation["JournalEntry"] and confirmation["Duplicate"] is False
    assert documents(http, fresh_mocks) == []
    fixed = bulk(http, fresh_mocks, create_request("u-bad", "PTW-NJ-2026-0016/ppe")).json()
    assert fixed["JournalEntryCreateConfirmation"][0]["JournalEntry"]["AccountingDocument"] == "5100000001", (
        "a rejection is not remembered as a seen UUID"
    )


def test_erp_query_by_reference_resolves_an_unclear_outcome(fresh_mocks, http):
    bulk(
        http,
        fresh_mocks,
        create_request("u-7", "PTW-NJ-2026-0007/labour"),
        create_request("u-8", "PTW-NJ-2026-0007/ppe", amount="80.00"),
    )
    url = f"{fresh_mocks.urls['erp']}/api/v1/journal-entries"
    assert http.get(url, params={"DocumentReferenceID": "PTW-NJ-2026-0007/labour"}).json() == {
        "results": [
            {
                "AccountingDocument": "5100000001",
                "CompanyCode": "NJ01",
                "FiscalYear": "2026",
                "DocumentReferenceID": "PTW-NJ-2026-0007/labour",
                "MessageUUID": "u-7",
                "PostingDate": "2026-12-01",
                "GLAccount": "66020103",
                "CostCenter": "CC-NJ-CRK",
                "Amount": "520.00",
                "TransactionCurrency": "CNY",
            }
        ]
    }
    assert http.get(url, params={"DocumentReferenceID": "PTW-NJ-2026-0007"}).json() == {"results": []}
    assert http.get(url).status_code == 400


def test_erp_single_entry_endpoint(fresh_mocks, http):
    url = f"{fresh_mocks.urls['erp']}/api/v1/journal-entries"
    confirmation = http.post(
        url,
        json=create_request("u-one", "PTW-HZ-2026-0010/labour", company="HZ02", cost_center="CC-HZ-ARO", gl="66020101"),
    ).json()
    assert confirmation["JournalEntry"] == {
        "AccountingDocument": "5100000001",
        "CompanyCode": "HZ02",
        "FiscalYear": "2026",
    }
    assert http.post(url, json={"JournalEntry": {}}).status_code == 400


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        {"JournalEntryCreateRequest": {"not": "a list"}},
        {"JournalEntryCreateRequest": [create_request("u", "R"), {"MessageHeader": {}, "JournalEntry": {}}]},
        {
            "JournalEntryCreateRequest": [
                {
                    **create_request("u", "R"),
                    "JournalEntry": {**create_request("u", "R")["JournalEntry"], "Amount": "abc"},
                }
            ]
        },
        {
            "JournalEntryCreateRequest": [
                {
                    **create_request("u", "R"),
                    "JournalEntry": {**create_request("u", "R")["JournalEntry"], "PostingDate": "01.12.2026"},
                }
            ]
        },
        {"JournalEntryCreateRequest": [create_request(f"u-{i}", "R") for i in range(201)]},
    ],
)
def test_erp_malformed_body_is_400_and_posts_nothing(fresh_mocks, http, body):
    url = f"{fresh_mocks.urls['erp']}/api/v1/journal-entries/bulk"
    response = http.post(url, content=body) if isinstance(body, str) else http.post(url, json=body)
    assert response.status_code == 400
    assert response.json()["error"]
    assert documents(http, fresh_mocks) == []


def test_state_dir_keeps_holds_and_documents_across_a_restart(tmp_path, http):
    state = tmp_path / "state"
    with start_systems(FIXTURES, state_dir=state) as first:
        bulk(http, first, create_request("u-keep", "PTW-NJ-2026-0017/labour"))
        hold_url = f"{first.urls['ptw']}/api/v1/permits/PTW-NJ-2026-0002/holds/integration-hub"
        assert http.put(hold_url, json=HOLD).json() == {"changed": True, "revision": 1}
    assert {p.name for p in state.iterdir()} == {"ptw.jsonl", "erp.jsonl"}
    with start_systems(FIXTURES, state_dir=state) as second:
        url = f"{second.urls['erp']}/api/v1/journal-entries"
        [doc] = http.get(url, params={"DocumentReferenceID": "PTW-NJ-2026-0017/labour"}).json()["results"]
        assert doc["AccountingDocument"] == "5100000001"
        again = bulk(http, second, create_request("u-keep", "PTW-NJ-2026-0017/labour"), create_request("u-next", "X"))
        assert [
            (c["Duplicate"], c["JournalEntry"]["AccountingDocument"])
            for c in again.json()["JournalEntryCreateConfirmation"]
        ] == [
            (True, "5100000001"),
            (False, "5100000002"),
        ]
        hold_url = f"{second.urls['ptw']}/api/v1/permits/PTW-NJ-2026-0002/holds/integration-hub"
        assert http.put(hold_url, json=HOLD).json() == {"changed": False, "revision": 1}
        http.post(admin(second, "erp", "reset")).raise_for_status()
        http.post(admin(second, "ptw", "reset")).raise_for_status()
    with start_systems(FIXTURES, state_dir=state) as third:
        assert documents(http, third) == []
        assert http.get(admin(third, "ptw", "state")).json() == {"holds": {}}


def test_state_journal_replays_a_lifted_hold_and_ignores_a_torn_last_line(tmp_path, http):
    state = tmp_path / "state"
    with start_systems(FIXTURES, state_dir=state) as first:
        for ticket in ("PTW-NJ-2026-0001", "PTW-NJ-2026-0002"):
            url = f"{first.urls['ptw']}/api/v1/permits/{ticket}/holds/integration-hub"
            assert http.put(url, json=HOLD).json()["changed"] is True
        http.delete(f"{first.urls['ptw']}/api/v1/permits/PTW-NJ-2026-0001/holds/integration-hub").raise_for_status()
    journal = state / "ptw.jsonl"
    assert len(journal.read_text(encoding="utf-8").splitlines()) == 3
    with journal.open("a", encoding="utf-8") as handle:
        handle.write('{"ticketNo": "PTW-NJ-2026-0003", "source": "integ')  # killed mid-write
    with start_systems(FIXTURES, state_dir=state) as second:
        holds = http.get(admin(second, "ptw", "state")).json()["holds"]
        assert set(holds) == {"PTW-NJ-2026-0002"}
        again = f"{second.urls['ptw']}/api/v1/permits/PTW-NJ-2026-0001/holds/integration-hub"
        assert http.put(again, json=HOLD).json() == {"changed": True, "revision": 2}
    with start_systems(FIXTURES, state_dir=state) as third:
        assert set(http.get(admin(third, "ptw", "state")).json()["holds"]) == {"PTW-NJ-2026-0001", "PTW-NJ-2026-0002"}


# ---------------------------------------------------------------------------- faults and admin


def test_status_fault_fires_once_then_the_request_succeeds(fresh_mocks, http):
    set_faults(
        http,
        fresh_mocks,
        "ptw",
        {"rules": [{"kind": "status", "status": 503, "times": 1, "path_prefix": "/api/v1/permits"}]},
    )
    url = f"{fresh_mocks.urls['ptw']}/api/v1/permits"
    first = http.get(url)
    assert first.status_code == 503 and first.json()["error"]
    assert http.get(url).status_code == 200
    assert http.get(url).status_code == 200
    assert [e["status"] for e in http.get(admin(fresh_mocks, "ptw", "received")).json()] == [503, 200, 200]


def test_rules_fire_in_order_and_respect_path_and_method(fresh_mocks, http):
    set_faults(
        http,
        fresh_mocks,
        "erp",
        {
            "rules": [
                {"kind": "status", "status": 500, "times": 1, "method": "POST"},
                {"kind": "status", "status": 502, "times": 1, "path_prefix": "/api/v1/journal-entries/bulk"},
            ]
        },
    )
    url = f"{fresh_mocks.urls['erp']}/api/v1/journal-entries"
    assert http.get(url, params={"DocumentReferenceID": "x"}).status_code == 200, "GET matches neither rule"
    assert bulk(http, fresh_mocks, create_request("u-f", "R")).status_code == 500
    assert bulk(http, fresh_mocks, create_request("u-f", "R")).status_code == 502
    assert bulk(http, fresh_mocks, create_request("u-f", "R")).status_code == 200
    assert len(documents(http, fresh_mocks)) == 1, "a faulted request never reaches the system"


def test_rate_limit_answers_429_with_retry_after(fresh_mocks, http):
    set_faults(http, fresh_mocks, "mes", {"rules": [{"kind": "rate_limit", "retry_after_s": 2, "times": 1}]})
    url = f"{fresh_mocks.urls['mes']}/api/v1/materials/乙烯/parameters"
    limited = http.get(url)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "2"
    assert http.get(url).status_code == 200


def test_timeout_fault_delays_the_answer(fresh_mocks, http):
    set_faults(http, fresh_mocks, "eam", {"rules": [{"kind": "timeout", "delay_s": 1, "times": 1}]})
    with httpx.Client(timeout=0.3) as impatient, pytest.raises(httpx.TimeoutException):
        soap_post(impatient, fresh_mocks.urls["eam"], envelope("NJ-P-101"))
    assert soap_post(http, fresh_mocks.urls["eam"], envelope("NJ-P-101")).status_code == 200


def test_latency_delays_every_request(fresh_mocks, http):
    set_faults(http, fresh_mocks, "mes", {"latency_ms": 400})
    started = time.monotonic()
    assert http.get(f"{fresh_mocks.urls['mes']}/api/v1/materials/苯/parameters").status_code == 200
    assert time.monotonic() - started >= 0.35


def test_probability_rules_are_seeded(fresh_mocks, http):
    plan = {"rules": [{"kind": "status", "status": 503, "probability": 0.5, "seed": 7}]}
    url = f"{fresh_mocks.urls['mes']}/api/v1/materials/氨/parameters"

    def pattern():
        set_faults(http, fresh_mocks, "mes", plan)
        return [http.get(url).status_code for _ in range(20)]

    first = pattern()
    assert first == pattern()
    assert set(first) == {200, 503}


def test_admin_is_never_faulted_nor_logged_and_reset_clears_faults(fresh_mocks, http):
    set_faults(http, fresh_mocks, "ptw", {"latency_ms": 0, "rules": [{"kind": "status", "status": 503}]})
    assert http.get(f"{fresh_mocks.urls['ptw']}/api/v1/permits").status_code == 503
    assert http.get(admin(fresh_mocks, "ptw", "state")).status_code == 200
    received = http.get(admin(fresh_mocks, "ptw", "received")).json()
    assert [(e["path"], e["status"]) for e in received] == [("/api/v1/permits", 503)]
    http.post(admin(fresh_mocks, "ptw", "reset")).raise_for_status()
    assert http.get(admin(fresh_mocks, "ptw", "received")).json() == []
    assert http.get(f"{fresh_mocks.urls['ptw']}/api/v1/permits").status_code == 200


@pytest.mark.parametrize(
    "plan",
    [
        {"rules": [{"kind": "explode"}]},
        {"rules": [{"kind": "status", "status": 99}]},
        {"rules": [{"kind": "status", "times": -1}]},
        {"rules": [{"kind": "timeout", "probability": 2}]},
        {"rules": [{"kind": "status", "delay_s": 3}]},
        {"rules": [{"kind": "status", "path-prefix": "/x"}]},
        {"latency": 5},
        {"rules": {}},
    ],
)
def test_invalid_fault_plan_is_refused(mock_systems, http, plan):
    response = http.put(admin(mock_systems, "mes", "faults"), json=plan)
    assert response.status_code == 400 and response.json()["error"]
    with pytest.raises(FaultPlanError):
        FaultPlan.parse(plan)


def test_faults_given_at_start(http):
    plan = {"mes": {"rules": [{"kind": "status", "status": 503, "times": 1}]}}
    with start_systems(FIXTURES, faults=plan) as running:
        url = f"{running.urls['mes']}/api/v1/materials/苯/parameters"
        assert [http.get(url).status_code for _ in range(2)] == [503, 200]
        assert http.get(f"{running.urls['ptw']}/api/v1/permits").status_code == 200


def test_one_plan_applies_to_every_system():
    plan = {"latency_ms": 10}
    assert split_by_system(plan, ("ptw", "eam", "mes", "erp")) == {name: plan for name in ("ptw", "eam", "mes", "erp")}
    with pytest.raises(FaultPlanError):
        split_by_system({"crm": {}}, ("ptw", "eam", "mes", "erp"))


def test_received_log_records_every_request_with_parsed_bodies(fresh_mocks, http):
    http.get(f"{fresh_mocks.urls['ptw']}/api/v1/permits", params={"page_size": "2"})
    http.put(f"{fresh_mocks.urls['ptw']}/api/v1/permits/PTW-NJ-2026-0001/holds/integration-hub", json=HOLD)
    http.get(admin(fresh_mocks, "ptw", "state"))
    assert http.get(admin(fresh_mocks, "ptw", "received")).json() == [
        {
            "method": "GET",
            "path": "/api/v1/permits",
            "query": {"page_size": "2"},
            "body": None,
            "headers": {},
            "status": 200,
        },
        {
            "method": "PUT",
            "path": "/api/v1/permits/PTW-NJ-2026-0001/holds/integration-hub",
            "query": {},
            "body": HOLD,
            "headers": {"content-type": "application/json"},
            "status": 200,
        },
    ]
    assert http.get(admin(fresh_mocks, "ptw", "received/count")).json() == {"requests": 2, "kept": 2}
    soap_post(http, fresh_mocks.urls["eam"], envelope("NJ-P-101"))
    [entry] = http.get(admin(fresh_mocks, "eam", "received")).json()
    assert entry["method"] == "POST" and entry["path"] == "/eam/soap" and entry["status"] == 200
    assert isinstance(entry["body"], str) and "<eam:assetnum>NJ-P-101</eam:assetnum>" in entry["body"]
    assert entry["headers"] == {"content-type": "text/xml; charset=utf-8", "soapaction": f'"{TNS}/GetAssetMaintenance"'}


def test_admin_state_of_eam_and_mes_is_empty(mock_systems, http):
    assert http.get(admin(mock_systems, "eam", "state")).json() == {}
    assert http.get(admin(mock_systems, "mes", "state")).json() == {}


# ---------------------------------------------------------------------------- packaging


def test_cli_serves_until_sigterm():
    with mock_systems_cli("--fixtures", str(FIXTURES)) as lines:
        urls = {}
        while len(urls) < 4:
            line = lines.get(timeout=60)
            name, _, url = line.strip().partition(": ")
            if name in {"ptw", "eam", "mes", "erp"}:
                urls[name] = url
        assert urls["eam"].endswith("/eam/soap")
        assert httpx.get(f"{urls['ptw']}/api/v1/permits", params={"page_size": 1}, timeout=10).status_code == 200


def test_cli_serves_only_the_systems_named_and_refuses_an_unknown_one():
    with mock_systems_cli("--fixtures", str(FIXTURES), "--only", "ptw,erp") as lines:
        named = []
        while not (line := lines.get(timeout=60)).startswith("mock systems running"):
            named.append(line.strip().partition(": ")[0])
        assert named == ["ptw", "erp"]
    refused = subprocess.run(
        [sys.executable, "-m", "mock_systems", "serve", "--only", "ptw,sap"], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT
    )
    assert refused.returncode == 2 and "--only 'ptw,sap'" in refused.stderr and "eam_oslc" in refused.stderr


def test_mock_systems_never_import_hub():
    for path in (REPO_ROOT / "mock_systems").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] if node.level == 0 else []
            else:
                continue
            assert not any(re.match(r"hub(\.|$)", name) for name in names), f"{path.name} imports {names}"
