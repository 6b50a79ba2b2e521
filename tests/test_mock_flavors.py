"""The second vendor flavors of the EAM (Maximo OSLC) and the MES (SAP OData v2), over real HTTP.

Each flavor is checked against its wire contract ("Second flavors" in docs/protocols.md), and
both are checked to describe the same plant as the first flavors: the same work orders as the
SOAP EAM, the same parameters as the B2MML MES once units are converted.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from conftest import mock_systems_cli
import httpx
import pytest
from lxml import etree

from mock_systems.servers import fault_plans, start_systems

REPO_ROOT = Path(__file__).parents[1]
FIXTURES = REPO_ROOT / "fixtures"
TNS = "urn:plant:eam:maintenance:v1"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"


def fixture(relative: str):
    return json.loads((FIXTURES / relative).read_text(encoding="utf-8"))


ASSETS = fixture("eam/assets.json")
WORKORDERS = fixture("eam/workorders.json")
MATERIALS = fixture("mes/materials.json")
DEVICES = list(dict.fromkeys(a["assetnum"] for a in ASSETS))  # a number two sites share is asked for once
SITES = sorted({a["siteid"] for a in ASSETS})

# B2MML unit -> (SAP unit, value conversion) as docs/protocols.md states it
SAP_UNIT = {
    "Cel": "CEL", "degF": "FAH", "K": "KEL", "MPa": "MPA", "kPa": "KPA", "bar": "BAR", "psi": "PSI",
    "%": "P1", "ppm": "PPM", None: "",
}
CONVERTED = {"Cel": ("FAH", lambda c: c * 9 / 5 + 32), "MPa": ("KPA", lambda mpa: mpa * 1000)}


def oslc(running, structure: str) -> str:
    return f"{running.urls['eam_oslc']}/os/{structure}"


def odata(running) -> str:
    return f"{running.urls['mes_odata']}/MaterialParameterSet"


def where_in(*assetnums: str, changedate: str | None = None, siteid: str | None = None) -> str:
    clauses = [f"assetnum in {json.dumps(list(assetnums))}"]
    if siteid is not None:
        clauses.append(f'siteid="{siteid}"')
    if changedate is not None:
        clauses.append(f'changedate>="{changedate}"')
    return " and ".join(clauses)


def material_filter(*names: str) -> str:
    return " or ".join("Material eq '{}'".format(name.replace("'", "''")) for name in names)


def oslc_pages(http, url: str, params: dict) -> list[dict]:
    """Every page of an OSLC query, following nextPage links; checks the paging bookkeeping."""
    pages = [http.get(url, params=params)]
    while True:
        assert pages[-1].status_code == 200, pages[-1].text
        info = pages[-1].json()["responseInfo"]
        assert info["pagenum"] == len(pages)
        if "nextPage" not in info:
            return [page.json() for page in pages]
        pages.append(http.get(info["nextPage"]["href"]))


def odata_pages(http, url: str, params: dict) -> list[dict]:
    """Every page of an OData query, following __next links."""
    pages = [http.get(url, params=params)]
    while True:
        assert pages[-1].status_code == 200, pages[-1].text
        body = pages[-1].json()["d"]
        if "__next" not in body:
            return [page.json()["d"] for page in pages]
        pages.append(http.get(body["__next"]))


def without_links(member: dict) -> dict:
    return {k: v for k, v in member.items() if k not in {"href", "_rowstamp"}}


def expected_workorders(assetnums: list[str], siteid: str | None = None) -> list[dict]:
    """The fixture's work orders of those assets (at `siteid`, if given), asset by asset in that order, by wonum."""
    return [
        w
        for num in assetnums
        for w in sorted(WORKORDERS, key=lambda w: w["wonum"])
        if w["assetnum"] == num and siteid in (None, w["siteid"])
    ]


def soap_maintenance(http, running, assetnums: list[str]) -> tuple[list[dict], list[dict]]:
    """(assets, work orders) from the SOAP EAM, each record as {element name: text}."""
    items = "".join(f"<eam:assetnum>{num}</eam:assetnum>" for num in assetnums)
    body = (
        f'<soap:Envelope xmlns:soap="{SOAP_ENV}" xmlns:eam="{TNS}"><soap:Body>'
        f"<eam:GetAssetMaintenanceRequest>{items}</eam:GetAssetMaintenanceRequest></soap:Body></soap:Envelope>"
    )
    response = http.post(
        running.urls["eam"],
        content=body.encode(),
        headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{TNS}/GetAssetMaintenance"'},
    )
    assert response.status_code == 200
    root = etree.fromstring(response.content)

    def records(tag: str) -> list[dict]:
        return [{etree.QName(c).localname: c.text for c in e} for e in root.iter(f"{{{TNS}}}{tag}")]

    return records("asset"), records("workorder")


def number_or_text(value: str) -> Decimal | str:
    """A value compared as a number when it is one, so "800" equals "800.0"."""
    try:
        return Decimal(value)
    except ArithmeticError:
        return value


def b2mml_materials(http, running, names: list[str]) -> list[dict]:
    response = http.post(
        f"{running.urls['mes']}/api/v1/material-parameters/query", json={"MaterialDefinitionIDs": names}
    )
    assert response.status_code == 200
    return response.json()["MaterialDefinition"]


# ---------------------------------------------------------------------------- both


def test_start_systems_serves_both_flavors_beside_the_four_systems(mock_systems, http):
    assert set(mock_systems.urls) == {"ptw", "eam", "mes", "erp", "eam_oslc", "mes_odata"}
    assert mock_systems.urls["eam_oslc"] == mock_systems.base_urls["eam_oslc"] + "/maximo/oslc"
    assert mock_systems.urls["mes_odata"] == mock_systems.base_urls["mes_odata"] + "/sap/opu/odata/sap/ZMES_PROCESS_SRV"
    assert len(set(mock_systems.base_urls.values())) == 6, "each system on a port of its own"
    for name in ("eam_oslc", "mes_odata"):
        assert http.get(f"{mock_systems.base_urls[name]}/_admin/state").json() == {}


def test_flavors_share_the_admin_surface_faults_and_received_log(fresh_mocks, http):
    url = oslc(fresh_mocks, "mxasset")
    admin = f"{fresh_mocks.base_urls['eam_oslc']}/_admin"
    plan = {"rules": [{"kind": "status", "status": 503, "times": 1}]}
    http.put(f"{admin}/faults", json=plan).raise_for_status()
    params = {"oslc.where": where_in("NJ-P-101"), "oslc.select": "assetnum"}
    assert [http.get(url, params=params).status_code for _ in range(2)] == [503, 200]
    received = http.get(f"{admin}/received").json()
    assert [(e["path"], e["query"]["oslc.where"], e["status"]) for e in received] == [
        ("/maximo/oslc/os/mxasset", where_in("NJ-P-101"), 503),
        ("/maximo/oslc/os/mxasset", where_in("NJ-P-101"), 200),
    ]
    odata_admin = f"{fresh_mocks.base_urls['mes_odata']}/_admin"
    http.put(f"{odata_admin}/faults", json=plan).raise_for_status()
    assert http.get(odata(fresh_mocks), params={"$filter": material_filter("苯")}).status_code == 503
    assert [e["status"] for e in http.get(f"{odata_admin}/received").json()] == [503]


def test_fault_plans_at_start_reach_the_flavors():
    one_plan = {"latency_ms": 5}
    assert fault_plans(one_plan) == {
        name: one_plan for name in ("ptw", "eam", "mes", "erp", "eam_oslc", "mes_odata")
    }
    keyed = {"eam": {"latency_ms": 1}, "mes_odata": {"rules": []}}
    assert fault_plans(keyed) == keyed
    assert fault_plans(None) == {}


def test_cli_takes_the_flavor_ports():
    with mock_systems_cli("--fixtures", str(FIXTURES)) as lines:
        urls = {}
        while "mes_odata" not in urls or "eam_oslc" not in urls:
            name, _, url = lines.get(timeout=60).strip().partition(": ")
            urls[name] = url
        params = {"oslc.where": where_in("NJ-P-101"), "oslc.select": "status"}
        asset = httpx.get(f"{urls['eam_oslc']}/os/mxasset", params=params, timeout=10).json()["member"]
        assert [m["status"] for m in asset] == ["OPERATING"]
        odata_url = f"{urls['mes_odata']}/MaterialParameterSet"
        rows = httpx.get(odata_url, params={"$filter": material_filter("苯")}, timeout=10).json()["d"]["results"]
        assert {r["Material"] for r in rows} == {"苯"}


# ---------------------------------------------------------------------------- EAM, OSLC


def test_oslc_pages_a_batch_through_next_page_links(mock_systems, http):
    asked = [" nj-c-101", "NJ-E-201", "NO-SUCH-1", "hz-p-101 ", "NJ-C-101", "HZ-E-101", "NJ-R-201"]
    wanted = ["NJ-C-101", "NJ-E-201", "HZ-P-101", "HZ-E-101", "NJ-R-201"]
    expected = expected_workorders(wanted)
    assert len(expected) > 10
    params = {"oslc.where": where_in(*asked), "oslc.select": "*", "oslc.pageSize": 4, "lean": 1}
    pages = oslc_pages(http, oslc(mock_systems, "mxwo"), params)
    assert len(pages) == -(-len(expected) // 4)
    assert all(len(page["member"]) <= 4 for page in pages)
    assert {page["responseInfo"]["totalCount"] for page in pages} == {len(expected)}
    members = [m for page in pages for m in page["member"]]
    assert [without_links(m) for m in members] == expected, "exactly the fixture's work orders, in order"
    by_wonum = {m["wonum"]: m for m in members}
    assert by_wonum["WO-1059"]["status"] == "APPR S1" and by_wonum["WO-1059"]["status_maxvalue"] == "APPR"
    assert "schedfinish" not in by_wonum["WO-5042"], "absent values are omitted, not null"
    assert by_wonum["WO-5045"]["status_maxvalue"] == "BOGUS", "malformed values are served as stored"

    assets = oslc_pages(http, oslc(mock_systems, "mxasset"), {"oslc.where": where_in(*asked), "oslc.select": "*"})
    assert [without_links(m) for page in assets for m in page["member"]] == [
        next(a for a in ASSETS if a["assetnum"] == num) for num in wanted
    ]


def test_oslc_response_info_links_are_absolute_urls_of_this_service(mock_systems, http):
    url = oslc(mock_systems, "mxwo")
    first = http.get(url, params={"oslc.where": where_in("NJ-C-101"), "oslc.select": "wonum", "oslc.pageSize": 1})
    info = first.json()["responseInfo"]
    assert info["href"] == str(first.request.url)
    next_url = urlsplit(info["nextPage"]["href"])
    assert f"{next_url.scheme}://{next_url.netloc}{next_url.path}" == url
    assert parse_qs(next_url.query)["pageno"] == ["2"]
    assert parse_qs(next_url.query)["oslc.where"] == [where_in("NJ-C-101")]
    past_the_end = http.get(url, params={"oslc.where": where_in("NJ-C-101"), "pageno": 999}).json()
    assert past_the_end["member"] == [] and "nextPage" not in past_the_end["responseInfo"]


def test_oslc_select_narrows_the_attributes(mock_systems, http):
    url = oslc(mock_systems, "mxwo")
    params = {"oslc.where": where_in("NJ-C-101", "HZ-P-101"), "oslc.select": "wonum, STATUS_MAXVALUE,schedfinish"}
    members = http.get(url, params=params).json()["member"]
    assert members and {frozenset(m) for m in members} == {
        frozenset({"wonum", "status_maxvalue", "schedfinish", "href", "_rowstamp"}),
        frozenset({"wonum", "status_maxvalue", "href", "_rowstamp"}),  # WO-5042 has no schedfinish
    }
    bare = http.get(url, params={"oslc.where": where_in("NJ-C-101", "HZ-P-101")}).json()["member"]
    assert [set(m) for m in bare] == [{"href", "_rowstamp"}] * len(members), "without oslc.select: links only"
    for member in members:
        resource_id = member["href"].rsplit("/", 1)[1]
        assert member["href"].startswith(url + "/_")
        assert base64.b64decode(resource_id[1:].replace("-", "=")).decode() == member["wonum"]
        assert member["_rowstamp"].isdigit()
    assert [m["_rowstamp"] for m in bare] == [m["_rowstamp"] for m in members], "stable per record"
    assert len({m["_rowstamp"] for m in members}) == len(members)
    asset = http.get(oslc(mock_systems, "mxasset"), params={"oslc.where": where_in("NJ-P-101")}).json()["member"]
    assert asset[0]["href"].endswith("/maximo/oslc/os/mxasset/_TkotUC0xMDE-")


def test_oslc_changedate_keeps_work_orders_changed_at_or_after(mock_systems, http):
    since = "2026-11-26T10:05:00+08:00"  # exactly WO-5042's changedate
    cutoff = datetime.fromisoformat(since)

    def changed(site: str) -> list[str]:
        return [
            w["wonum"] for w in expected_workorders(DEVICES, site) if datetime.fromisoformat(w["changedate"]) >= cutoff
        ]

    expected = {site: changed(site) for site in SITES}
    everywhere = [wonum for site in SITES for wonum in expected[site]]
    assert "WO-5042" in expected["HZ02"] and 0 < len(everywhere) < len(WORKORDERS)

    def wonums(where: str) -> list[str]:
        params = {"oslc.where": where, "oslc.select": "wonum", "oslc.pageSize": 1000}
        return [m["wonum"] for m in http.get(oslc(mock_systems, "mxwo"), params=params).json()["member"]]

    for site in SITES:
        assert wonums(where_in(*DEVICES, siteid=site, changedate=since)) == expected[site], site
        assert wonums(where_in(*DEVICES, siteid=site, changedate="2026-11-26T02:05:00Z")) == expected[site], (
            "the same moment in UTC"
        )
        reversed_clauses = f'changedate>="{since}" and siteid="{site}" and {where_in(*DEVICES)}'
        assert wonums(reversed_clauses) == expected[site], "clauses in any order"
        site_assets = [a["assetnum"] for a in ASSETS if a["siteid"] == site]
        assets = http.get(
            oslc(mock_systems, "mxasset"),
            params={
                "oslc.where": where_in(*DEVICES, siteid=site, changedate=since),
                "oslc.select": "assetnum",
                "oslc.pageSize": 1000,
            },
        ).json()
        assert sorted(m["assetnum"] for m in assets["member"]) == sorted(site_assets), "mxasset ignores the changedate clause"
    # Without a site, every site's work orders of those numbers.
    assert sorted(wonums(where_in(*DEVICES, changedate=since))) == sorted(everywhere)


def test_oslc_siteid_keeps_only_that_sites_assets_and_work_orders(mock_systems, http):
    """An asset is (siteid, assetnum): CT-701 exists at both sites, NJ-F-101 only at NJ01."""
    def members(structure: str, where: str) -> list[tuple[str, str]]:
        key = "assetnum" if structure == "mxasset" else "wonum"
        params = {"oslc.where": where, "oslc.select": f"{key},siteid", "oslc.pageSize": 1000}
        return sorted((m["siteid"], m[key]) for m in http.get(oslc(mock_systems, structure), params=params).json()["member"])

    for site in SITES:
        for spelled in (site, f" {site.lower()}"):  # matched after trimming and upper-casing
            assert members("mxasset", where_in("CT-701", "NJ-F-101", siteid=spelled)) == sorted(
                (a["siteid"], a["assetnum"]) for a in ASSETS if a["siteid"] == site and a["assetnum"] in {"CT-701", "NJ-F-101"}
            )
            assert members("mxwo", where_in("CT-701", "NJ-F-101", siteid=spelled)) == sorted(
                (w["siteid"], w["wonum"]) for w in expected_workorders(["CT-701", "NJ-F-101"], site)
            )
    assert members("mxasset", where_in("NJ-F-101", siteid="HZ02")) == []
    assert members("mxwo", where_in("NJ-F-101", siteid="HZ02")) == []
    assert members("mxasset", where_in("CT-701")) == [("HZ02", "CT-701"), ("NJ01", "CT-701")], "no site: every site"


def test_oslc_unknown_assets_are_simply_absent(mock_systems, http):
    for structure in ("mxasset", "mxwo"):
        body = http.get(oslc(mock_systems, structure), params={"oslc.where": where_in("NJ-P-199", "NOPE")}).json()
        assert body["member"] == [] and body["responseInfo"]["totalCount"] == 0
        assert "nextPage" not in body["responseInfo"]


BAD_OSLC = {
    "no where": {},
    "equals instead of in": {"oslc.where": 'assetnum="NJ-P-101"'},
    "empty list": {"oslc.where": "assetnum in []"},
    "too many": {"oslc.where": where_in(*[f"NJ-P-{i}" for i in range(101)])},
    "not strings": {"oslc.where": "assetnum in [101, 102]"},
    "unclosed list": {"oslc.where": 'assetnum in ["NJ-P-101"'},
    "only changedate": {"oslc.where": 'changedate>="2026-11-20T00:00:00+08:00"'},
    "bad changedate": {"oslc.where": where_in("NJ-P-101", changedate="last tuesday")},
    "plus as space": {"oslc.where": where_in("NJ-P-101", changedate="2026-11-20T00:00:00 08:00")},
    "repeated clause": {"oslc.where": f"{where_in('NJ-P-101')} and {where_in('NJ-P-102')}"},
    "other attribute": {"oslc.where": f'{where_in("NJ-P-101")} and worktype="CM"'},
    "repeated siteid": {"oslc.where": f'{where_in("NJ-P-101", siteid="NJ01")} and siteid="HZ02"'},
    "unknown select": {"oslc.where": where_in("NJ-P-101"), "oslc.select": "wonum,priority"},
    "page size 0": {"oslc.where": where_in("NJ-P-101"), "oslc.pageSize": "0"},
    "page size 1001": {"oslc.where": where_in("NJ-P-101"), "oslc.pageSize": "1001"},
    "page number abc": {"oslc.where": where_in("NJ-P-101"), "pageno": "abc"},
}


@pytest.mark.parametrize("case", sorted(BAD_OSLC))
def test_oslc_bad_queries_answer_400_in_maximo_shape(mock_systems, http, case):
    response = http.get(oslc(mock_systems, "mxwo"), params=BAD_OSLC[case])
    assert response.status_code == 400
    error = response.json()["Error"]
    assert error["statusCode"] == "400" and error["reasonCode"] == "BMXAA7901E"
    assert error["message"].startswith("BMXAA7901E - ") and len(error["message"]) > len("BMXAA7901E - ")


@pytest.mark.parametrize(
    ("auth", "good", "bad"),
    [
        ({"api_key": {"header": "apikey", "value": "k3y"}}, {"apikey": "k3y"}, {"apikey": "wrong"}),
        (
            {"api_key": {"header": "maxauth", "value": base64.b64encode(b"maxadmin:pw").decode()}},
            {"maxauth": base64.b64encode(b"maxadmin:pw").decode()},
            {"maxauth": base64.b64encode(b"maxadmin:nope").decode()},
        ),
    ],
    ids=["apikey", "maxauth"],
)
def test_oslc_demands_the_configured_credentials(http, auth, good, bad):
    with start_systems(FIXTURES, auth={"eam_oslc": auth}) as running:
        url = oslc(running, "mxasset")
        params = {"oslc.where": where_in("NJ-P-101"), "oslc.select": "assetnum"}
        assert http.get(url, params=params).status_code == 401
        assert http.get(url, params=params, headers=bad).status_code == 401
        answer = http.get(url, params=params, headers=good)
        assert answer.status_code == 200 and answer.json()["member"][0]["assetnum"] == "NJ-P-101"
        assert http.get(odata(running), params={"$filter": material_filter("苯")}).status_code == 200


def test_oslc_needs_no_credentials_by_default(mock_systems, http):
    params = {"oslc.where": where_in("NJ-P-101"), "oslc.select": "assetnum"}
    assert http.get(oslc(mock_systems, "mxasset"), params=params).status_code == 200


# ---------------------------------------------------------------------------- MES, OData


def material_position(name: str) -> int:
    return next(i for i, m in enumerate(MATERIALS) if m["ID"] == name)


def test_odata_pages_several_materials_with_top_skip_and_next(mock_systems, http):
    names = ["乙烯", " 氢气", "不存在", "环氧乙烷", "乙烯"]
    expected = [(m, p["ID"]) for m in ("乙烯", "氢气", "环氧乙烷") for p in MATERIALS[material_position(m)]["Parameter"]]
    assert len(expected) > 8
    params = {"$filter": material_filter(*names), "$format": "json", "$top": 4, "$inlinecount": "allpages"}
    pages = odata_pages(http, odata(mock_systems), params)
    assert len(pages) == -(-len(expected) // 4)
    assert all(len(page["results"]) <= 4 for page in pages)
    assert {page["__count"] for page in pages} == {str(len(expected))}
    rows = [row for page in pages for row in page["results"]]
    assert [(r["Material"], r["ParameterId"]) for r in rows] == expected
    for skip, page in zip(range(4, len(expected), 4), pages):
        next_url = urlsplit(page["__next"])
        assert parse_qs(next_url.query)["$skip"] == [str(skip)]
        assert f"{next_url.scheme}://{next_url.netloc}{next_url.path}" == odata(mock_systems)
    root = mock_systems.urls["mes_odata"]
    flash = rows[0]
    assert flash["__metadata"] == {
        "id": f"{root}/MaterialParameterSet(Material='乙烯',ParameterId='FLASH_POINT')",
        "uri": f"{root}/MaterialParameterSet(Material='乙烯',ParameterId='FLASH_POINT')",
        "type": "ZMES_PROCESS_SRV.MaterialParameter",
    }
    skipped = http.get(odata(mock_systems), params={"$filter": material_filter(*names), "$skip": 5}).json()["d"]
    assert [(r["Material"], r["ParameterId"]) for r in skipped["results"]] == expected[5:]
    assert "__count" not in skipped and "__next" not in skipped


def test_odata_top_zero_counts_without_rows_or_next(mock_systems, http):
    params = {"$filter": material_filter("乙烯"), "$top": 0, "$inlinecount": "allpages"}
    body = http.get(odata(mock_systems), params=params).json()["d"]
    assert body["results"] == [] and body["__count"] == str(len(MATERIALS[0]["Parameter"]))
    assert "__next" not in body


def test_odata_unknown_materials_and_quoted_literals_give_no_rows(mock_systems, http):
    body = http.get(odata(mock_systems), params={"$filter": material_filter("O'Brien", "不存在")}).json()["d"]
    assert body == {"results": []}


def test_odata_units_are_sap_codes_with_temperatures_in_fah_and_pressures_in_kpa(mock_systems, http):
    names = [m["ID"] for m in MATERIALS]
    pages = odata_pages(http, odata(mock_systems), {"$filter": material_filter(*names)})
    rows = [r for page in pages for r in page["results"]]
    served = {(r["Material"], r["ParameterId"]): r for r in rows}
    converted = 0
    for material in MATERIALS:
        for parameter in material["Parameter"]:
            value, row = parameter["Value"], served[(material["ID"], parameter["ID"])]
            unit = value.get("UnitOfMeasure")
            if unit in CONVERTED:
                sap_unit, convert = CONVERTED[unit]
                assert row["Unit"] == sap_unit
                assert Decimal(row["ValueString"]) == convert(Decimal(value["ValueString"]))
                assert "E" not in row["ValueString"] and not re.search(r"\.\d*0$", row["ValueString"])
                converted += 1
            else:
                assert (row["Unit"], row["ValueString"]) == (SAP_UNIT[unit], value["ValueString"])
    assert converted > 20
    assert served[("乙烯", "FLASH_POINT")]["ValueString"] == "-212.8"
    assert served[("乙烯", "FLASH_POINT")]["Unit"] == "FAH"
    assert served[("二甲苯", "FLASH_POINT")]["Unit"] == "FAH", "already °F: code only"
    assert served[("氮气", "OPERATING_PRESSURE")]["ValueString"] == "800"
    assert served[("氯气", "TOXICITY_CLASS")]["Unit"] == ""
    assert {r["Unit"] for r in rows} <= {"FAH", "KPA", "P1", ""}


def test_odata_change_stamps_are_sap_dates_and_times(mock_systems, http):
    names = ["乙烯", "氢气", "一氧化碳"]
    rows = http.get(odata(mock_systems), params={"$filter": material_filter(*names)}).json()["d"]["results"]
    for row in rows:
        position = material_position(row["Material"])
        milliseconds = int(re.fullmatch(r"/Date\((\d+)\)/", row["ChangedOn"]).group(1))
        assert milliseconds % 86_400_000 == 0, "midnight UTC"
        day = datetime.fromtimestamp(milliseconds / 1000, timezone.utc).date()
        assert day == date(2026, 11, 1) + timedelta(days=position)
        hours, minutes, seconds = map(int, re.fullmatch(r"PT(\d\d)H(\d\d)M(\d\d)S", row["ChangedAt"]).groups())
        assert (hours, minutes, seconds) == (8 + position % 9, 7 * position % 60, 13 * position % 60)
    hydrogen = next(r for r in rows if r["Material"] == "氢气")
    assert (hydrogen["ChangedOn"], hydrogen["ChangedAt"]) == ("/Date(1793664000000)/", "PT10H14M26S")


def test_odata_keeps_the_malformed_parameter_malformed(mock_systems, http):
    rows = http.get(odata(mock_systems), params={"$filter": material_filter("环氧乙烷")}).json()["d"]["results"]
    pressure = next(r for r in rows if r["ParameterId"] == "OPERATING_PRESSURE")
    assert "DataType" not in pressure
    assert (pressure["ValueString"], pressure["Unit"]) == ("300", "KPA")
    assert all("DataType" in r for r in rows if r is not pressure)


BAD_ODATA = {
    "no filter": ({}, "ZMES/INVALID_FILTER"),
    "unquoted": ({"$filter": "Material eq 乙烯"}, "ZMES/INVALID_FILTER"),
    "unbalanced quote": ({"$filter": "Material eq '乙烯"}, "ZMES/INVALID_FILTER"),
    "lower-case property": ({"$filter": "material eq '乙烯'"}, "ZMES/INVALID_FILTER"),
    "and": ({"$filter": "Material eq '乙烯' and Material eq '氢气'"}, "ZMES/INVALID_FILTER"),
    "parentheses": ({"$filter": "(Material eq '乙烯')"}, "ZMES/INVALID_FILTER"),
    "other property": ({"$filter": "ParameterId eq 'LEL'"}, "ZMES/INVALID_FILTER"),
    "41 materials": ({"$filter": material_filter(*[f"m{i}" for i in range(41)])}, "ZMES/INVALID_FILTER"),
    "top 201": ({"$filter": material_filter("苯"), "$top": "201"}, "ZMES/INVALID_OPTION"),
    "negative top": ({"$filter": material_filter("苯"), "$top": "-1"}, "ZMES/INVALID_OPTION"),
    "skip not a number": ({"$filter": material_filter("苯"), "$skip": "x"}, "ZMES/INVALID_OPTION"),
    "xml": ({"$filter": material_filter("苯"), "$format": "xml"}, "ZMES/INVALID_OPTION"),
    "inlinecount": ({"$filter": material_filter("苯"), "$inlinecount": "some"}, "ZMES/INVALID_OPTION"),
    "orderby": ({"$filter": material_filter("苯"), "$orderby": "Material"}, "ZMES/INVALID_OPTION"),
}


@pytest.mark.parametrize("case", sorted(BAD_ODATA))
def test_odata_bad_queries_answer_400_in_odata_shape(mock_systems, http, case):
    params, code = BAD_ODATA[case]
    response = http.get(odata(mock_systems), params=params)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == code and error["message"]["lang"] == "en" and error["message"]["value"]


def test_odata_accepts_forty_materials_and_ignores_non_system_parameters(mock_systems, http):
    names = [m["ID"] for m in MATERIALS] + [f"m{i}" for i in range(40 - len(MATERIALS))]
    params = {"$filter": material_filter(*names), "$top": 1, "$inlinecount": "allpages", "sap-client": "100"}
    body = http.get(odata(mock_systems), params=params).json()["d"]
    assert body["__count"] == str(sum(len(m["Parameter"]) for m in MATERIALS))


# ---------------------------------------------------------------------------- same plant


def test_every_device_has_the_same_records_over_oslc_as_over_soap(mock_systems, http):
    soap_assets, soap_workorders = soap_maintenance(http, mock_systems, DEVICES + ["NJ-P-199"])
    where = {"oslc.where": where_in(*DEVICES, "NJ-P-199"), "oslc.select": "*", "oslc.pageSize": 25}
    oslc_assets = [m for p in oslc_pages(http, oslc(mock_systems, "mxasset"), where) for m in p["member"]]
    oslc_workorders = [m for p in oslc_pages(http, oslc(mock_systems, "mxwo"), where) for m in p["member"]]
    assert [without_links(m) for m in oslc_assets] == soap_assets
    assert len(soap_workorders) == len(WORKORDERS)
    for device in DEVICES:
        over_soap = [w for w in soap_workorders if w["assetnum"] == device]
        over_oslc = [without_links(m) for m in oslc_workorders if m["assetnum"] == device]
        assert over_oslc == over_soap, device


def test_every_material_has_the_same_parameters_over_odata_as_over_b2mml(mock_systems, http):
    names = [m["ID"] for m in MATERIALS]
    b2mml = b2mml_materials(http, mock_systems, names)
    pages = odata_pages(http, odata(mock_systems), {"$filter": material_filter(*names), "$top": 30})
    rows = [r for page in pages for r in page["results"]]
    assert len(b2mml) == len(names)
    for material in b2mml:
        expected = []
        for parameter in material["Parameter"]:
            value = parameter["Value"]
            unit, number = value.get("UnitOfMeasure"), value["ValueString"]
            if unit in CONVERTED:
                sap_unit, convert = CONVERTED[unit]
                unit_and_value = (sap_unit, convert(Decimal(number)))
            else:
                unit_and_value = (SAP_UNIT[unit], number_or_text(number))
            expected.append((parameter["ID"], value.get("DataType"), *unit_and_value))
        served = [
            (r["ParameterId"], r.get("DataType"), r["Unit"], number_or_text(r["ValueString"]))
            for r in rows
            if r["Material"] == material["ID"]
        ]
        assert served == expected, material["ID"]
