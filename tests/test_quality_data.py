"""The data the cross-system analyses need: MES defect rates from every flavor, work-order dates
from every EAM flavor, and emergency work that blocks like corrective work."""

import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from conftest import EAM_WSDL
from dagster import DagsterInstance, materialize

from hub.assets.quality import mes_quality_rates
from hub.logic.clearance import SiteEam, build_profiles
from hub.logic.gate import decide
from hub.logic.rules import load_gate_rules
from hub.mappings.engine import load_mapping
from hub.model import Equipment, MaintenanceRecord, Permit
from hub.resources import EamResource, MesResource, resources_from_settings
from hub.steps.records import map_inbound
from hub.store.repository import HubStore

FIXTURES = Path(__file__).parents[1] / "fixtures"
QUALITY = json.loads((FIXTURES / "mes/quality.json").read_text(encoding="utf-8"))
WORKORDERS = json.loads((FIXTURES / "eam/workorders.json").read_text(encoding="utf-8"))
SITES = ("NJ01", "HZ02")
#: The fixture's one malformed quality record: a percentage sent as a share.
MALFORMED = "HZ02/动力车间/2026-05"


def mes_flavors(mocks) -> dict[str, str]:
    """Each MES flavor file and the URL it is configured with."""
    return {
        "mes": mocks.urls["mes"],
        "mes-sap-odata": mocks.urls["mes_odata"],
        "mes-sap-s4": f"{mocks.base_urls['mes_odata']}/sap/opu/odata/sap",
    }


def pulled(mapping_name: str, url: str, kind: str, operation: str, resource, **values):
    """What one flavor's operation returns over HTTP, mapped: (records, rejected)."""
    client = resource(url=url, mapping=mapping_name, retry_attempts=1).client()
    mapping = load_mapping(mapping_name)
    with client:
        vendor = client.fetch(operation, **values).get(kind, [])
        result = map_inbound(mapping, client, kind, vendor)
    return result.records, result.quarantined


def test_every_mes_flavor_serves_the_same_monthly_defect_rates(fresh_mocks):
    rows = {}
    for name, url in mes_flavors(fresh_mocks).items():
        records, rejected = [], []
        for site in SITES:
            got, bad = pulled(name, url, "quality_rate", "quality", MesResource, site=site)
            records += got
            rejected += bad
        rows[name] = {(r.site, r.workshop, r.month): (r.defect_rate, r.units_inspected) for r in records}
        [bad] = rejected
        assert (bad.field, bad.partial["site"], bad.partial["workshop"]) == ("defect_rate", "HZ02", "动力车间"), name
        if name != "mes-sap-s4":  # an analytical query has no change stamp
            assert all(r.updated_at is not None for r in records), name
    assert rows["mes"] == rows["mes-sap-odata"] == rows["mes-sap-s4"]
    assert len(rows["mes"]) == len(QUALITY) - 1
    assert rows["mes"][("NJ01", "裂解车间", date(2026, 1, 1))] == (Decimal("0.0106"), 7040)
    # Every workshop is a permit area of its site, so the analyses can join them.
    permits = json.loads((FIXTURES / "ptw/permits.json").read_text(encoding="utf-8"))
    areas = {(p["siteCode"], p["workshop"]) for p in permits}
    assert {(site, workshop) for site, workshop, _ in rows["mes"]} <= areas


def test_a_site_gets_only_its_own_workshops(fresh_mocks):
    for name, url in mes_flavors(fresh_mocks).items():
        records, _ = pulled(name, url, "quality_rate", "quality", MesResource, site="NJ01")
        assert {r.site for r in records} == {"NJ01"}, name
        assert len(records) == sum(1 for q in QUALITY if q["SiteID"] == "NJ01"), name


def test_the_asset_stores_rates_and_quarantines_the_malformed_record_by_name_and_field(
    fresh_mocks, sqlite_url, make_settings
):
    settings = make_settings(sqlite_url, fresh_mocks.urls)
    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            [mes_quality_rates], partition_key="HZ02", resources=resources_from_settings(settings), instance=instance
        )
    assert result.success
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    hz02 = [q for q in QUALITY if q["SiteID"] == "HZ02"]
    assert metadata["dagster/row_count"].value == len(hz02) - 1
    assert metadata["quarantined_new"].value == 1
    store = HubStore(sqlite_url)
    assert len(store.quality_rates("HZ02")) == len(hz02) - 1 and store.quality_rates("NJ01") == []
    assert all(r.month.day == 1 and 0 <= r.defect_rate <= 1 for r in store.quality_rates("HZ02"))
    [held] = store.list_quarantine(system="mes", record_kinds=["quality_rate"])
    assert held["source_key"] == MALFORMED and held["field"] == "defect_rate"
    assert MALFORMED in held["reason"] and "DefectRate" in held["reason"]
    assert held["payload"]["DefectRate"] == "1.8"


def eam_flavors(mocks) -> dict[str, tuple[str, dict]]:
    return {
        "eam": (mocks.urls["eam"], {"wsdl": str(EAM_WSDL)}),
        "eam-maximo-oslc": (mocks.urls["eam_oslc"], {}),
        "eam-maximo": (mocks.urls["eam_oslc"], {}),
    }


def test_every_eam_flavor_carries_report_and_finish_dates_and_emergency_work(fresh_mocks):
    devices = sorted({w["assetnum"] for w in WORKORDERS if w["siteid"] == "NJ01"})
    found = {}
    for name, (url, extra) in eam_flavors(fresh_mocks).items():
        client = EamResource(url=url, mapping=name, retry_attempts=1, **extra).client()
        mapping = load_mapping(name)
        with client:
            vendor = client.fetch("maintenance", ids=devices, site="NJ01").get("maintenance_record", [])
            records = map_inbound(mapping, client, "maintenance_record", vendor).records
        found[name] = {r.record_id: (r.kind, r.reported_at, r.completed_at) for r in records}
    assert found["eam"] == found["eam-maximo-oslc"] == found["eam-maximo"]
    by_id = found["eam"]
    plant = timezone(timedelta(hours=8))
    # WO-1072: the planted emergency work on NJ-R-202, reported at night, finished 40 minutes early.
    assert by_id["WO-1072"] == (
        "emergency",
        datetime(2026, 10, 21, 3, 30, tzinfo=plant),
        datetime(2026, 10, 21, 11, 50, tzinfo=plant),
    )
    emergency = {w["wonum"] for w in WORKORDERS if w["siteid"] == "NJ01" and w["worktype"] == "EM"}
    assert {k for k, (kind, _, _) in by_id.items() if kind == "emergency"} == emergency
    unfinished = {w["wonum"] for w in WORKORDERS if w["siteid"] == "NJ01" and "actfinish" not in w}
    assert {k for k, (_, _, done) in by_id.items() if done is None} == unfinished
    assert all(reported is not None for _, reported, _ in by_id.values())


NOW = datetime(2026, 12, 3, 2, 0, tzinfo=timezone.utc)


def _height_permit(devices: tuple[str, ...]) -> Permit:
    return Permit(
        permit_id="PTW-NJ-2026-0901", permit_type="work_at_height", risk_level="orange", site="NJ01",
        area="聚合车间", device_ids=devices, applicant="张伟", planned_start=NOW + timedelta(hours=6),
        planned_end=NOW + timedelta(hours=12), status="approved", submitted_at=NOW - timedelta(hours=2),
        updated_at=NOW - timedelta(hours=1),
    )


@pytest.mark.parametrize(("status", "blocks"), [("in_progress", True), ("approved", True), ("completed", False)])
def test_an_open_emergency_work_order_blocks_work_at_height(status, blocks):
    rules = load_gate_rules()  # the packaged rules, which list corrective but not emergency work
    assert "emergency" not in rules.counted_work_order_kinds
    order = MaintenanceRecord(
        record_id="WO-1099", site="NJ01", device_id="NJ-R-202", kind="emergency", status=status,
        window_start=NOW + timedelta(hours=2), window_end=NOW + timedelta(hours=30),
        reported_at=NOW - timedelta(hours=1), updated_at=NOW - timedelta(minutes=50),
    )
    equipment = {"NJ-R-202": Equipment(device_id="NJ-R-202", site="NJ01", name="聚丙烯反应器", status="operating")}
    profiles = build_profiles(
        ["NJ-R-202"], SiteEam("NJ01", equipment, [order], {"NJ-R-202": NOW - timedelta(minutes=1)}), rules, NOW
    )
    decision = decide(_height_permit(("NJ-R-202",)), profiles, rules, NOW)
    assert decision.decision == ("block" if blocks else "allow")
    assert [r.code for r in decision.reasons] == (["OPEN_WORK_ORDER"] if blocks else [])
    if blocks:
        assert decision.reasons[0].evidence["kind"] == "emergency"


def test_a_rule_file_without_corrective_work_does_not_count_emergency_work():
    rules = load_gate_rules().model_copy(update={"counted_work_order_kinds": frozenset({"preventive"})})
    assert not rules.counts("emergency") and not rules.counts("corrective")
    listed = rules.model_copy(update={"counted_work_order_kinds": frozenset({"emergency"})})
    assert listed.counts("emergency") and not listed.counts("corrective")


def test_the_mocks_refuse_a_quality_query_without_its_site(fresh_mocks, http):
    rest = http.get(f"{fresh_mocks.urls['mes']}/api/v1/quality/defect-rates")
    assert rest.status_code == 400 and "siteId" in rest.json()["error"]
    odata = http.get(f"{fresh_mocks.urls['mes_odata']}/WorkshopDefectRateSet", params={"$filter": "Workshop eq '罐区'"})
    assert odata.status_code == 400 and odata.json()["error"]["code"] == "ZMES/INVALID_FILTER"
    s4 = http.get(
        f"{fresh_mocks.base_urls['mes_odata']}/sap/opu/odata/sap/C_INSPLOTDEFECTRATEQ_CDS/C_InspLotDefectRateQResults",
        params={"$filter": "Plant eq 'NJ01'", "$select": "WorkCenterText,DefectRate", "$top": "2"},
    )
    body = s4.json()["d"]
    assert [set(r) - {"__metadata"} for r in body["results"]] == [{"WorkCenterText", "DefectRate"}] * 2
    assert "__next" in body
