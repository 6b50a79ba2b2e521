"""Vendor flavors chosen by configuration alone, and the endpoint descriptions that make it so.

The whole job runs twice against the live mocks, each time on a fresh SQLite store and freshly
reset mocks: once with the standard flavors (EAM over SOAP, MES over B2MML REST) and once with
`HUB_EAM__MAPPING=eam-maximo-oslc` and `HUB_MES__MAPPING=mes-sap-odata` (Maximo OSLC, SAP OData).
Both runs must come to the same gate decisions, the same ERP ledger and the same canonical
records. Then every paging style is run through the operation executor against the mocks, and
a broken endpoint description must be refused at file:line:column.
"""

from __future__ import annotations

import json
import math
import os
import re
import uuid
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from dagster import DagsterInstance
from sqlalchemy import create_engine, select

from hub.connectors.auth import for_scheme
from hub.connectors.eam import EamClient
from hub.connectors.endpoint import EndpointSpec
from hub.connectors.erp import ErpClient
from hub.connectors.operations import SystemClient
from hub.connectors.rest import RestClient
from hub.connectors.retry import RetryPolicy, VendorRejected
from hub.connectors.throttle import TokenBucket
from hub.demo import FLAVORS, Face, run_demo
from hub.mappings import load_mapping, parse_mapping
from hub.resources import EamResource
from hub.settings import HubSettings, SystemEndpoint
from hub.store import tables
from hub.writers.erp_outbox import ledger_documents
from hub.store.repository import HubStore
from hub.sync import run_full_sync
from hub.yamlfile import ConfigError
from mock_systems.servers import start_systems

REPO = Path(__file__).parents[1]
FIXTURES = REPO / "fixtures"
WSDL = REPO / "mock_systems" / "eam.wsdl"
ERP_WSDL = REPO / "mock_systems" / "erp_journal_entry.wsdl"
FAST = RetryPolicy(attempts=3, initial_s=0.01, max_s=0.5)
SCOPE = ("submitted", "approved", "active", "suspended")
ALTERNATE = {"eam": ("eam_oslc", "eam-maximo-oslc"), "mes": ("mes_odata", "mes-sap-odata")}
REAL_APIS = {system: tuple(face) for system, face in FLAVORS["real-apis"].items()}
#: (standard, flavor) file names: a flavor's file named in evidence reads as the standard's.
RENAMED = (("eam", "eam-maximo-oslc"), ("mes", "mes-sap-odata"), ("eam", "eam-maximo"), ("mes", "mes-sap-s4"))
LINEAGE = {"fetched_at", "mapping_file", "mapping_sha256"}


def fixture(relative: str) -> Any:
    return json.loads((FIXTURES / relative).read_text(encoding="utf-8"))


def reset(mocks: Any) -> None:
    for base_url in mocks.base_urls.values():
        httpx.post(f"{base_url}/_admin/reset", timeout=10).raise_for_status()


def received(mocks: Any, system: str) -> list[dict]:
    return httpx.get(f"{mocks.base_urls[system]}/_admin/received", timeout=10).json()


def rest_client(system: str, url: str) -> RestClient:
    return RestClient(system, SystemEndpoint(url=url), connect_timeout_s=5, read_timeout_s=10, retry=FAST)


def executor(flavor: str, url: str, *, sizes: dict[str, int] | None = None, spec: EndpointSpec | None = None):
    """The operations of a packaged flavor (or of `spec`) over REST at `url`."""
    mapping = load_mapping(flavor)
    endpoint = spec or mapping.spec.endpoint
    assert endpoint is not None
    return SystemClient(
        mapping.system.upper(), endpoint, mapping.name, base_url=url, rest=rest_client(mapping.system, url), sizes=sizes
    )


# --------------------------------------------------------------------------- the whole job, twice


def _flavor_environment(mocks: Any, database_url: str, flavor: dict[str, tuple[str, str]]) -> dict[str, str]:
    """HUB_* variables, as an operator would set them: URLs, and for a second flavor its mapping."""
    env = {"HUB_DATABASE_URL": database_url, "HUB_EAM_WSDL": str(WSDL), "HUB_ERP_WSDL": str(ERP_WSDL), "HUB_READ_TIMEOUT_S": "10"}
    for name in ("ptw", "eam", "mes", "erp"):
        face = Face(*flavor.get(name, (name, name)))
        env[f"HUB_{name.upper()}__URL"] = face.url(mocks)
        env[f"HUB_{name.upper()}__MAPPING"] = face.mapping
    return env


def _rows(database_url: str, table: Any, without: set[str]) -> list[dict]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(select(table))]
    finally:
        engine.dispose()
    keys = [c.name for c in table.primary_key.columns]
    return sorted(({k: v for k, v in row.items() if k not in without} for row in rows), key=lambda r: [r[k] for k in keys])


def _decisions(store: HubStore, mapping_names: dict[str, str]) -> dict[str, tuple]:
    """permit -> (decision, reasons as (code, device, evidence)); a flavor's file name in evidence is the standard's."""

    def same_file(text: str) -> str:
        for alternate, standard in mapping_names.items():
            text = text.replace(alternate, standard)
        return text

    return {
        d.permit_id: (
            d.decision,
            sorted((r.code, r.device_id, sorted((k, same_file(v)) for k, v in r.evidence.items())) for r in d.reasons),
        )
        for d in store.latest_gate_decisions()
    }


def _run(mocks: Any, tmp: Path, flavor: dict[str, tuple[str, str]]) -> dict[str, Any]:
    reset(mocks)
    database_url = f"sqlite:///{tmp / 'hub.db'}"
    with pytest.MonkeyPatch.context() as env:
        for key in [k for k in os.environ if k.startswith("HUB_")]:
            env.delenv(key)
        for key, value in _flavor_environment(mocks, database_url, flavor).items():
            env.setenv(key, value)
        settings = HubSettings()
    with DagsterInstance.ephemeral() as instance:
        result = run_full_sync(settings, instance)
    store = HubStore(database_url)
    renamed = {load_mapping(m).name: load_mapping(s).name for s, m in RENAMED}
    return {
        "success": result.success,
        "settings": settings,
        "decisions": _decisions(store, renamed),
        "ledger": {
            d["DocumentReferenceID"]: (Decimal(d["Amount"]), d["CostCenter"], d["GLAccount"])
            for d in httpx.get(f"{mocks.base_urls['erp']}/_admin/state", timeout=10).json()["documents"]
        },
        "equipment": _rows(database_url, tables.equipment, LINEAGE),
        "maintenance_records": _rows(database_url, tables.maintenance_records, LINEAGE),
        "process_parameters": _rows(database_url, tables.process_parameters, LINEAGE),
        "lineage": {r["mapping_file"] for r in _rows(database_url, tables.equipment, set())},
        "devices": sorted({d for p in store.load_permits(statuses=SCOPE) for d in p.device_ids}),
        "by_site": {
            site: (
                sorted({d for p in store.load_permits(statuses=SCOPE, site=site) for d in p.device_ids}),
                sorted({m for p in store.load_permits(statuses=SCOPE, site=site) for m in p.material_names}),
            )
            for site in settings.sites
        },
        "materials": sorted({m for p in store.load_permits(statuses=SCOPE) for m in p.material_names}),
        "received": {name: received(mocks, name) for name in ("eam", "mes", "eam_oslc", "mes_odata", "erp")},
    }


@pytest.fixture(scope="module")
def both_runs(mock_systems: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    standard = _run(mock_systems, tmp_path_factory.mktemp("standard"), {})
    alternate = _run(mock_systems, tmp_path_factory.mktemp("alternate"), ALTERNATE)
    reset(mock_systems)
    return standard, alternate


def test_configuration_alone_selects_the_flavor(both_runs: tuple[dict, dict]) -> None:
    standard, alternate = both_runs
    assert standard["success"] and alternate["success"]
    assert (alternate["settings"].eam.mapping, alternate["settings"].mes.mapping) == ("eam-maximo-oslc", "mes-sap-odata")
    assert alternate["lineage"] == {"eam-maximo-oslc.yaml (extends eam.yaml)"}
    assert standard["lineage"] == {"eam.yaml"}
    # Each run spoke only to its own flavor's systems.
    assert standard["received"]["eam"] and standard["received"]["mes"]
    assert standard["received"]["eam_oslc"] == [] and standard["received"]["mes_odata"] == []
    assert alternate["received"]["eam_oslc"] and alternate["received"]["mes_odata"]
    assert alternate["received"]["eam"] == [] and alternate["received"]["mes"] == []
    assert all(e["status"] == 200 for run in both_runs for log in run["received"].values() for e in log)


def test_both_flavors_gate_every_permit_alike(both_runs: tuple[dict, dict]) -> None:
    standard, alternate = both_runs
    blocked = {p for p, (decision, _) in standard["decisions"].items() if decision == "block"}
    assert len(blocked) == 21 and len(standard["decisions"]) == 29  # PTW-SH-2026-0001 included
    # One of the blocks rests on a work order only the EAM's data marks invalid: both flavors see it.
    assert any(code == "EAM_RECORD_INVALID" for _, reasons in standard["decisions"].values() for code, *_ in reasons)
    assert alternate["decisions"] == standard["decisions"]


def test_both_flavors_post_the_same_ledger(both_runs: tuple[dict, dict]) -> None:
    standard, alternate = both_runs
    assert len(standard["ledger"]) == 83
    assert alternate["ledger"] == standard["ledger"]


def test_both_flavors_store_the_same_equipment_and_work_orders(both_runs: tuple[dict, dict]) -> None:
    standard, alternate = both_runs
    assert len(standard["equipment"]) > 20 and len(standard["maintenance_records"]) > 50
    assert alternate["equipment"] == standard["equipment"]
    assert alternate["maintenance_records"] == standard["maintenance_records"]


def test_both_flavors_store_the_same_process_parameters_in_canonical_units(both_runs: tuple[dict, dict]) -> None:
    standard, alternate = both_runs

    def by_parameter(run: dict) -> dict[tuple[str, str], tuple]:
        return {
            (r["material_name"], r["parameter_id"]): (_number_or_text(r["value"]), r["data_type"], r["unit"])
            for r in run["process_parameters"]
        }

    assert len(standard["process_parameters"]) > 50
    assert by_parameter(alternate) == by_parameter(standard)
    # Served in FAH and KPA by the OData MES, stored as the B2MML flavor's Cel and MPa.
    assert by_parameter(alternate)[("乙烯", "FLASH_POINT")] == (Decimal("-136"), "double", "Cel")
    assert by_parameter(alternate)[("乙烯", "OPERATING_PRESSURE")] == (Decimal("2"), "double", "MPa")
    # Only the OData flavor says when a material's parameters changed: 乙烯 (first in the
    # MES's list) on 2026-11-01 at 08:00:00 plant time.
    assert all(r["updated_at"] is None for r in standard["process_parameters"])
    assert all(r["updated_at"] is not None for r in alternate["process_parameters"])
    ethylene = next(r for r in alternate["process_parameters"] if r["material_name"] == "乙烯")
    assert ethylene["updated_at"].isoformat() == "2026-11-01T00:00:00+00:00"


@pytest.fixture(scope="module")
def real_run(both_runs: tuple[dict, dict], mock_systems: Any, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The whole job with `hub demo --flavor real-apis`'s files: Maximo's REST API and S/4HANA's services."""
    run = _run(mock_systems, tmp_path_factory.mktemp("real_apis"), REAL_APIS)
    reset(mock_systems)
    return run


def _parameters(run: dict) -> dict[tuple[str, str], tuple]:
    return {
        (r["material_name"], r["parameter_id"]): (_number_or_text(r["value"]), r["data_type"], r["unit"])
        for r in run["process_parameters"]
    }


def test_the_real_apis_are_what_the_run_spoke_to(real_run: dict) -> None:
    assert real_run["success"]
    settings = real_run["settings"]
    assert (settings.eam.mapping, settings.mes.mapping, settings.erp.mapping) == ("eam-maximo", "mes-sap-s4", "erp-sap-soap")
    assert real_run["lineage"] == {"eam-maximo.yaml"}
    paths = {system: {e["path"] for e in real_run["received"][system]} for system in ("eam_oslc", "mes_odata")}
    assert paths["eam_oslc"] == {f"/maximo/oslc/os/{s}" for s in ("mxapiasset", "mxapiwodetail", "mxapisynonymdomain")}
    assert paths["mes_odata"] == {
        "/sap/opu/odata/sap/API_BATCH_SRV/A_BatchCharcValue",
        "/sap/opu/odata/sap/API_CLFN_CHARACTERISTIC_SRV/A_ClfnCharacteristicForKeyDate",
        "/sap/opu/odata/sap/C_INSPLOTDEFECTRATEQ_CDS/C_InspLotDefectRateQResults",  # the quality rates
    }
    assert real_run["received"]["eam"] == [] and real_run["received"]["mes"] == []
    # The entries went to SAP's SOAP service; the REST face saw no post.
    posts = {e["path"] for e in real_run["received"]["erp"] if e["method"] == "POST"}
    assert posts == {"/sap/bc/srt/scs_ext/sap/journalentrycreaterequestconfi"}
    assert all(e["status"] == 200 for log in real_run["received"].values() for e in log)
    # The look-up tables are fetched once per run (cached, refreshed hourly / every ten minutes), not per batch.
    synonyms = [e for e in real_run["received"]["eam_oslc"] if e["path"].endswith("mxapisynonymdomain")]
    assert len(synonyms) <= 2


def test_the_real_apis_gate_every_permit_as_the_standard_flavors(both_runs: tuple[dict, dict], real_run: dict) -> None:
    standard, _ = both_runs
    assert len(real_run["decisions"]) == 29
    # The same decisions, reasons and evidence; only an unreadable record's problem quotes this
    # flavor's reason (BOGUS is not in the synonym domain) rather than the SOAP flavor's.
    def without_problem(run: dict) -> dict[str, tuple]:
        return {
            p: (d, [(code, device, [e for e in evidence if e[0] != "problem"]) for code, device, evidence in reasons])
            for p, (d, reasons) in run["decisions"].items()
        }

    assert without_problem(real_run) == without_problem(standard)
    problems = {e[1] for _, reasons in real_run["decisions"].values() for *_, ev in reasons for e in ev if e[0] == "problem"}
    assert problems and all("eam-maximo" not in text for text in problems)  # evidence names the file as the standard's
    assert any("'BOGUS' is not in look-up table wo_status" in text for text in problems)


def test_the_real_apis_post_the_same_ledger_once(both_runs: tuple[dict, dict], real_run: dict) -> None:
    standard, _ = both_runs
    assert len(real_run["ledger"]) == 83 and real_run["ledger"] == standard["ledger"]


def test_the_real_apis_store_the_same_equipment_and_work_orders(both_runs: tuple[dict, dict], real_run: dict) -> None:
    standard, _ = both_runs
    assert real_run["equipment"] == standard["equipment"]
    assert real_run["maintenance_records"] == standard["maintenance_records"]
    # Isolation read from the lock-out rows: applied, released and none, as the SOAP flavor says.
    assert {r["isolation"] for r in real_run["maintenance_records"]} == {"applied", "released", "none"}


def test_the_real_apis_store_the_same_process_parameters_in_canonical_units(both_runs: tuple[dict, dict], real_run: dict) -> None:
    standard, _ = both_runs
    assert _parameters(real_run) == _parameters(standard)
    # Served as ABAP float text in the stored unit's SAP code, stored plainly in the hub's unit.
    ethylene = {r["parameter_id"]: r for r in real_run["process_parameters"] if r["material_name"] == "乙烯"}
    assert (ethylene["FLASH_POINT"]["value"], ethylene["FLASH_POINT"]["unit"]) == ("-136", "Cel")
    assert ethylene["FLASH_POINT"]["updated_at"].isoformat() == "2026-11-01T00:00:00+00:00"
    assert ethylene["TOXICITY_CLASS"]["data_type"] == "string"


def _number_or_text(value: str) -> Decimal | str:
    """Numbers compare as numbers: the B2MML MES writes "2.0" MPa where OData's 2000 KPA becomes "2"."""
    try:
        return Decimal(value)
    except ArithmeticError:
        return value


def _pages(count: int, size: int) -> int:
    return max(1, math.ceil(count / size))


def soap_siteid(entry: dict) -> str | None:
    """The siteid a logged SOAP request named (None if it named none)."""
    found = re.findall(r"<(?:\w+:)?siteid>([^<]*)</(?:\w+:)?siteid>", entry["body"])
    assert len(found) <= 1, entry["body"]
    return found[0] if found else None


def oslc_siteid(entry: dict) -> str | None:
    """The siteid="..." clause of a logged OSLC request's oslc.where (None if it has none)."""
    match = re.search(r'siteid\s*=\s*"([^"]*)"', entry["query"].get("oslc.where", ""), re.IGNORECASE)
    return match.group(1) if match else None


def assets_by_site() -> dict[str, list[str]]:
    """The fixture's asset numbers, site by site: a number may exist at more than one site."""
    sites: dict[str, list[str]] = {}
    for asset in fixture("eam/assets.json"):
        sites.setdefault(asset["siteid"], []).append(asset["assetnum"])
    return sites


def test_requests_follow_the_flavors_batch_and_page_sizes(both_runs: tuple[dict, dict]) -> None:
    standard, alternate = both_runs
    devices, materials = alternate["devices"], alternate["materials"]
    assert devices == standard["devices"] and materials == standard["materials"]

    soap_batch = load_mapping("eam").spec.endpoint.operations["maintenance"].batch.size
    rest_batch = load_mapping("mes").spec.endpoint.operations["parameters"].batch.size
    # Each site's run asks for its own permits' devices and materials: one batch each here.
    by_site = standard["by_site"].values()
    assert len(standard["received"]["eam"]) == sum(math.ceil(len(d) / soap_batch) for d, _ in by_site) == 2
    parameters = [e for e in standard["received"]["mes"] if e["path"] == "/api/v1/material-parameters/query"]
    assert len(parameters) == sum(math.ceil(len(m) / rest_batch) for _, m in by_site) == 2
    # Besides, each site's quality rates in one request naming the site (the REST face does not page).
    quality = [e for e in standard["received"]["mes"] if e["path"] == "/api/v1/quality/defect-rates"]
    assert sorted(e["query"]["siteId"] for e in quality) == sorted(standard["by_site"])
    assert len(standard["received"]["mes"]) == len(parameters) + len(quality) == 4
    # Every EAM request names its site: one SOAP request per site, each with its own siteid.
    assert sorted(soap_siteid(e) for e in standard["received"]["eam"]) == sorted(standard["by_site"])
    assert all(
        oslc_siteid(e) in alternate["by_site"] for e in alternate["received"]["eam_oslc"]
    ), "every OSLC request names a configured site in oslc.where"

    oslc = load_mapping("eam-maximo-oslc").spec.endpoint.operations["maintenance"]
    asset_pages, workorder_pages = (r.pages.size for r in oslc.requests)

    def site_of(record: dict) -> str:
        return str(record["siteid"]).strip().upper()

    expected_oslc = {"/maximo/oslc/os/mxasset": 0, "/maximo/oslc/os/mxwo": 0}
    for site, (site_devices, _) in alternate["by_site"].items():
        # An asset is (site, number): only the site's own assets and work orders are served.
        assets = {a["assetnum"].strip().upper() for a in fixture("eam/assets.json") if site_of(a) == site}
        workorders = [str(w["assetnum"]).strip().upper() for w in fixture("eam/workorders.json") if site_of(w) == site]
        for start in range(0, len(site_devices), oslc.batch.size):
            batch = set(site_devices[start : start + oslc.batch.size]) & assets
            expected_oslc["/maximo/oslc/os/mxasset"] += _pages(len(batch), asset_pages)
            expected_oslc["/maximo/oslc/os/mxwo"] += _pages(sum(1 for w in workorders if w in batch), workorder_pages)
    got_oslc = {path: sum(1 for e in alternate["received"]["eam_oslc"] if e["path"] == path) for path in expected_oslc}
    assert got_oslc == expected_oslc
    assert {oslc_siteid(e) for e in alternate["received"]["eam_oslc"]} == set(alternate["by_site"])
    assert expected_oslc["/maximo/oslc/os/mxwo"] > 1

    odata = load_mapping("mes-sap-odata").spec.endpoint.operations["parameters"]
    rows = {m["ID"].strip(): len(m.get("Parameter") or []) for m in fixture("mes/materials.json")}
    expected_odata = sum(
        _pages(sum(rows.get(name, 0) for name in site_materials[start : start + odata.batch.size]), odata.requests[0].pages.size)
        for _, site_materials in alternate["by_site"].values()
        for start in range(0, len(site_materials), odata.batch.size)
    )
    odata_log = alternate["received"]["mes_odata"]
    material_requests = [e for e in odata_log if e["path"].endswith("/MaterialParameterSet")]
    assert len(material_requests) == expected_odata > 1
    # The quality rates: each site's rows of the entity set in pages of the flavor's size.
    rates = load_mapping("mes-sap-odata").spec.endpoint.operations["quality"].requests[0].pages.size
    quality_rows = Counter(str(q["SiteID"]).strip().upper() for q in fixture("mes/quality.json"))
    rate_requests = [e for e in odata_log if e["path"].endswith("/WorkshopDefectRateSet")]
    assert len(rate_requests) == sum(_pages(quality_rows[site], rates) for site in alternate["by_site"]) == 2
    assert {e["query"]["$top"] for e in rate_requests} == {str(rates)}
    assert sorted(e["query"]["$filter"] for e in rate_requests) == sorted(f"Plant eq '{s}'" for s in alternate["by_site"])
    assert len(odata_log) == len(material_requests) + len(rate_requests)


# --------------------------------------------------------------------------- each paging style


def test_cursor_pages_carry_the_token_back(fresh_mocks: Any) -> None:
    with executor("ptw", fresh_mocks.urls["ptw"], sizes={"permits_changed": 9}) as ptw:
        pages = [page["permit"] for page in ptw.pages("permits_changed")]

    permits = fixture("ptw/permits.json")
    assert sorted(p["ticketNo"] for page in pages for p in page) == sorted(p["ticketNo"] for p in permits)
    log = received(fresh_mocks, "ptw")
    assert len(log) == len(pages) == math.ceil(len(permits) / 9)
    assert "page_token" not in log[0]["query"] and all(e["query"]["page_token"] for e in log[1:])
    assert "updated_since" not in log[0]["query"]  # no cursor value: the filter is left out


def test_next_links_are_followed_as_given(fresh_mocks: Any) -> None:
    """OSLC: two object structures per batch, each paged by responseInfo.nextPage.href."""
    sites = assets_by_site()
    with executor("eam-maximo-oslc", fresh_mocks.urls["eam_oslc"]) as oslc:
        replies = {site: oslc.fetch("maintenance", ids=devices, site=site) for site, devices in sites.items()}
        page_size = oslc.operation("maintenance").requests[1].pages.size

    log = received(fresh_mocks, "eam_oslc")
    assert all(oslc_siteid(e) in sites for e in log), "every request and next link names its site"
    for site, devices in sites.items():
        reply = replies[site]
        workorders = [w for w in fixture("eam/workorders.json") if w["siteid"] == site]
        assert sorted((a["siteid"], a["assetnum"]) for a in reply["equipment"]) == sorted((site, d) for d in devices)
        assert sorted(w["wonum"] for w in reply["maintenance_record"]) == sorted(w["wonum"] for w in workorders)
        pageno = [e["query"].get("pageno", "1") for e in log if e["path"].endswith("/mxwo") and oslc_siteid(e) == site]
        assert pageno == [str(n) for n in range(1, math.ceil(len(workorders) / page_size) + 1)]
    assert any(
        e["query"].get("pageno") == "2" for e in log if e["path"].endswith("/mxwo")
    ), "at least one site's work orders span more than one page"
    assert all(e["query"]["oslc.pageSize"] == str(page_size) for e in log)


def test_next_link_records_equal_the_soap_flavors(fresh_mocks: Any) -> None:
    """What OSLC lists is what SOAP answers, field for field (OSLC adds only href and _rowstamp)."""
    mapping = load_mapping("eam")
    soap = EamClient(SystemEndpoint(url=fresh_mocks.urls["eam"]), str(WSDL), connect_timeout_s=5,
                     operation_timeout_s=10, retry=FAST)
    soap_client = SystemClient("EAM", mapping.spec.endpoint, mapping.name, base_url=fresh_mocks.urls["eam"], soap=soap)

    def comparable(records: list[dict], key: str) -> dict[tuple[str, str], dict]:
        return {
            (r["siteid"], r[key]): {k: str(v) for k, v in r.items() if v is not None and k not in ("href", "_rowstamp")}
            for r in records
        }

    with executor("eam-maximo-oslc", fresh_mocks.urls["eam_oslc"]) as oslc:
        for site, devices in assets_by_site().items():
            soap_reply = soap_client.fetch("maintenance", ids=sorted(devices), site=site)
            oslc_reply = oslc.fetch("maintenance", ids=sorted(devices), site=site)
            for kind, key in (("equipment", "assetnum"), ("maintenance_record", "wonum")):
                assert comparable(oslc_reply[kind], key) == comparable(soap_reply[kind], key), (site, kind)
                assert {r["siteid"] for r in soap_reply[kind]} == {site}, (site, kind)
    assert [soap_siteid(e) for e in received(fresh_mocks, "eam")] == list(assets_by_site())


def test_odata_next_link_and_quoting(fresh_mocks: Any) -> None:
    """$filter terms built from the batch, a quote written twice; __next links followed."""
    names = [m["ID"] for m in fixture("mes/materials.json")]
    with executor("mes-sap-odata", fresh_mocks.urls["mes_odata"]) as odata:
        reply = odata.fetch("parameters", ids=[*names, "O'Brien"])
        page_size = odata.operation("parameters").requests[0].pages.size

    rows = sum(len(m.get("Parameter") or []) for m in fixture("mes/materials.json"))
    assert len(reply["process_parameter"]) == rows
    log = received(fresh_mocks, "mes_odata")
    assert all(e["status"] == 200 for e in log)
    assert "Material eq 'O''Brien'" in log[0]["query"]["$filter"]
    assert len(log) == math.ceil(rows / page_size) > 1
    assert all("$skip" in e["query"] for e in log[1:])  # the server's own next links


def test_offset_paging_counts_what_it_skipped(fresh_mocks: Any) -> None:
    """The same OData entity set, paged by the client itself with $skip/$top."""
    described = load_mapping("mes-sap-odata").spec.endpoint.model_dump()
    request = described["operations"]["parameters"]["requests"][0]
    request["pages"] = {"style": "offset", "size": 20, "size_param": "$top", "offset_param": "$skip"}
    spec = EndpointSpec.model_validate(described)
    names = [m["ID"] for m in fixture("mes/materials.json")]
    with executor("mes-sap-odata", fresh_mocks.urls["mes_odata"], spec=spec) as by_offset:
        offset_rows = by_offset.fetch("parameters", ids=names)["process_parameter"]
    offset_log = received(fresh_mocks, "mes_odata")
    with executor("mes-sap-odata", fresh_mocks.urls["mes_odata"]) as by_link:
        linked_rows = by_link.fetch("parameters", ids=names)["process_parameter"]

    assert offset_rows == linked_rows and len(offset_rows) > 40
    # Pages of 20 until a short one: the last page asked for is the first with fewer than 20 rows.
    assert [(e["query"]["$skip"], e["query"]["$top"]) for e in offset_log] == [
        (str(skip), "20") for skip in range(0, len(offset_rows) + 1, 20)
    ]


def test_page_numbers_stop_at_the_total(fresh_mocks: Any) -> None:
    """The ERP ledger listing: page=1,2,... of size documents, until `total` is reached."""
    erp = ErpClient(executor("erp", fresh_mocks.urls["erp"], sizes={"ledger": 2}))
    company = fixture("erp/company.json")["companyCodes"][0]
    entries = [
        (str(uuid.uuid4()), {"JournalEntry": {
            "CompanyCode": company["CompanyCode"], "DocumentReferenceID": f"PTW-NJ-2026-0007/line{i}",
            "DocumentHeaderText": "safety cost", "PostingDate": "2026-11-20", "TransactionCurrency": "CNY",
            "GLAccount": company["GLAccounts"][0]["GLAccount"], "CostCenter": company["CostCenters"][0]["CostCenter"],
            "Amount": f"{i + 1}.50"}})
        for i in range(5)
    ]
    with erp:
        # The UUID travels in each entry's MessageHeader, as the ERP flavor writes it.
        [confirmations] = list(erp.post_entries([{"MessageHeader": {"UUID": u}, **entry} for u, entry in entries]))
        documents = ledger_documents(erp, load_mapping("erp"))

    confirmed = load_mapping("erp").inbound("erp_confirmation", confirmations).records
    assert sorted(c.message_uuid for c in confirmed if c.posted) == sorted(u for u, _ in entries)
    assert sorted(d.message_uuid for d in documents) == sorted(u for u, _ in entries)
    listing = [e["query"] for e in received(fresh_mocks, "erp") if e["method"] == "GET"]
    assert [(q["page"], q["size"]) for q in listing] == [("1", "2"), ("2", "2"), ("3", "2")]


def test_a_next_link_to_another_server_is_not_followed(fresh_mocks: Any) -> None:
    """Credentials travel only to the configured server, whatever a reply links to."""
    url = fresh_mocks.urls["eam_oslc"]
    mapping = load_mapping("eam-maximo-oslc")
    elsewhere = re.sub(r":(\d+)", lambda m: f":{int(m.group(1)) + 1}", url, count=1)
    client = SystemClient("EAM", mapping.spec.endpoint, mapping.name, base_url=elsewhere, rest=rest_client("EAM", url))
    devices = assets_by_site()["NJ01"]

    with client, pytest.raises(VendorRejected, match="another server"):
        client.fetch("maintenance", ids=devices, site="NJ01")

    # The site's assets fit one page; its work orders' first page links on, and that link is refused.
    log = received(fresh_mocks, "eam_oslc")
    assert [(e["path"], e["query"].get("pageno", "1"), oslc_siteid(e)) for e in log] == [
        ("/maximo/oslc/os/mxasset", "1", "NJ01"), ("/maximo/oslc/os/mxwo", "1", "NJ01"),
    ]


# --------------------------------------------------------------------------- auth and rate


def test_the_flavors_auth_scheme_picks_the_credential_and_header() -> None:
    endpoint = SystemEndpoint(url="http://eam.invalid", username="hub", password="pw", token="t0k", api_key="k3y")

    as_maximo = for_scheme(endpoint, "api_key", "apikey")
    assert (as_maximo.api_key.get_secret_value(), as_maximo.api_key_header) == ("k3y", "apikey")
    assert (as_maximo.username, as_maximo.password, as_maximo.token) == (None, None, None)
    assert for_scheme(endpoint, "bearer").token.get_secret_value() == "t0k"
    assert for_scheme(endpoint, "basic").api_key is None
    assert for_scheme(endpoint, "none").model_dump(exclude={"url", "api_key_header", "mapping"}) == {
        "username": None, "password": None, "token": None, "api_key": None,
    }


def test_maximo_api_key_travels_in_its_own_header() -> None:
    auth = {"eam_oslc": {"api_key": {"header": "apikey", "value": "k3y"}}}
    with start_systems(FIXTURES, auth=auth) as systems:
        url = systems.urls["eam_oslc"]

        def resource(**credentials: Any) -> EamResource:
            return EamResource(url=url, mapping="eam-maximo-oslc", retry_attempts=1, **credentials)

        with resource(api_key="k3y", token="not-for-maximo").client() as allowed:
            reply = allowed.fetch("maintenance", ids=["NJ-P-101"], site="NJ01")
        with resource(token="k3y").client() as refused, pytest.raises(VendorRejected) as unauthorized:
            refused.fetch("maintenance", ids=["NJ-P-101"], site="NJ01")
        log = httpx.get(f"{systems.base_urls['eam_oslc']}/_admin/received", timeout=10).json()

    assert [a["assetnum"] for a in reply["equipment"]] == ["NJ-P-101"]
    assert unauthorized.value.status == 401
    assert [e["status"] for e in log] == [200, 200, 401]
    assert {oslc_siteid(e) for e in log} == {"NJ01"}


def test_token_bucket_spaces_requests_evenly() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    bucket = TokenBucket(4, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        bucket.acquire()
    now[0] += 10  # a quiet spell earns one request at once, never a burst
    bucket.acquire()
    bucket.acquire()

    assert slept == [0.25, 0.25, 0.25, 0.25, 0.25]


# --------------------------------------------------------------------------- invalid descriptions


def _line_col(text: str, needle: str) -> tuple[int, int]:
    index = text.index(needle)
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def test_a_broken_endpoint_description_is_refused_at_file_line_column(tmp_path: Path) -> None:
    text = (REPO / "hub" / "mappings" / "mes-sap-odata.yaml").read_text(encoding="utf-8")
    broken = (
        text.replace("next_at: d.__next}", "next_at: d.__next, token_at: d.__next}")  # a cursor key on next_link paging
        .replace("      batch:\n", "      bacth:\n")
    )
    path = tmp_path / "mes-broken.yaml"
    path.write_text(broken, encoding="utf-8")

    with pytest.raises(ConfigError) as refused:
        load_mapping(path)

    message = str(refused.value)
    line, column = _line_col(broken, "bacth:")
    assert f"{path}:{line}:{column}: endpoint.operations.parameters.bacth: unknown key 'bacth'; did you mean 'batch'?" in message
    line, column = _line_col(broken, "{style: next_link")
    assert f"{path}:{line}:{column}: endpoint.operations.parameters.requests[0].pages:" in message
    assert "token_at: not part of paging style next_link" in message


def test_ids_inside_text_need_a_join() -> None:
    text = (REPO / "hub" / "mappings" / "eam-maximo-oslc.yaml").read_text(encoding="utf-8")
    broken = text.replace('        join: ","', "")

    with pytest.raises(ConfigError) as refused:
        parse_mapping(broken, "eam-nojoin.yaml")

    line, column = _line_col(broken, "batch:\n        size: 100")  # where the operation's own keys start
    assert f"eam-nojoin.yaml:{line}:{column}: endpoint.operations.maintenance:" in str(refused.value)
    assert "query.oslc.where: {ids} inside text needs batch.join" in str(refused.value)


# --------------------------------------------------------------------------- the demo


def test_demo_runs_on_the_alternate_flavors(tmp_path: Path) -> None:
    os.environ.pop("HUB_DATABASE_URL", None)
    report = run_demo(FIXTURES, tmp_path / ".hub", fresh=True, flavor="alternate")

    assert report.success
    assert len(report.blocked) == 21 and len(report.allowed) == 8
    # Per site: mxasset once; mxwo once at HZ02 (36 work orders) and twice at NJ01 (54, pages of 50).
    assert report.eam_calls == 5
    # Per site, the parameters' entity set (one site's rows fill two pages) and the quality rates
    # (44 and 33 rows, pages of 50).
    assert report.mes_calls == 3 + 2
    assert any("eam-maximo-oslc.yaml" in line for line in report.quarantined)
