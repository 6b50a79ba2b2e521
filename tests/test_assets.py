"""The assets through `dagster.materialize` on a temporary instance, against the live mocks."""

import shutil
from pathlib import Path

import httpx
import pytest
from conftest import materialize_sites
from dagster import DagsterInstance

from hub.definitions import ASSETS, CHECKS
from hub.resources import resources_from_settings
from hub.store.repository import HubStore


REPO = Path(__file__).parents[1]


def run_all(settings, instance):
    return materialize_sites(
        [*ASSETS, *CHECKS], resources=resources_from_settings(settings), instance=instance, raise_on_error=False
    )


def metadata_of(result, asset_key: str) -> dict:
    """An asset's metadata over the sites' runs: numbers add up, text is joined."""
    materializations = [
        m for m in result.get_asset_materialization_events() if m.asset_key.to_user_string() == asset_key
    ]
    assert len(materializations) == len(result.results)  # one per site
    combined: dict = {}
    for materialization in materializations:
        for key, entry in materialization.materialization.metadata.items():
            value = entry.value
            if key in combined:
                value = combined[key] + value if isinstance(value, (int, float)) else f"{combined[key]}\n{value}"
            combined[key] = value
    return combined


def check_results(result) -> dict[str, bool]:
    """Per check, whether it passed in every site's run."""
    passed: dict[str, bool] = {}
    for e in result.get_asset_check_evaluations():
        key = f"{e.asset_key.to_user_string()}:{e.check_name}"
        passed[key] = passed.get(key, True) and e.passed
    return passed


def test_every_asset_materializes_with_metadata(fresh_mocks, sqlite_url, make_settings):
    settings = make_settings(sqlite_url, fresh_mocks.urls)
    with DagsterInstance.ephemeral() as instance:
        result = run_all(settings, instance)
    assert result.success
    materialized = {m.asset_key.to_user_string() for m in result.get_asset_materialization_events()}
    assert materialized == {
        "permits", "equipment", "maintenance_records", "process_parameters", "mes_quality_rates",
        "equipment_clearance", "permit_gate_decisions", "safety_cost_entries", "erp_postings",
    }
    permits = metadata_of(result, "permits")
    assert permits["dagster/row_count"] == 65 and permits["quarantined_new"] == 3  # PTW-SH-2026-0001 is at no configured site
    gate = metadata_of(result, "permit_gate_decisions")
    assert gate["blocked"] == 20 and gate["allowed"] == 8 and gate["holds_written"] == 20
    previews = [
        m.materialization.metadata["preview"]
        for m in result.get_asset_materialization_events()
        if m.asset_key.to_user_string() == "permit_gate_decisions"
    ]
    assert "PTW-NJ-2026-0004" in {record.data["permit_id"] for preview in previews for record in preview.records}
    # One EAM and one MES call per site's run; and one MES call per site for its quality rates.
    assert metadata_of(result, "equipment")["eam_calls"] == 2
    assert metadata_of(result, "process_parameters")["mes_calls"] == 2
    quality = metadata_of(result, "mes_quality_rates")
    assert quality["mes_calls"] == 2 and quality["dagster/row_count"] == 76  # HZ02/动力车间/2026-05 is quarantined
    erp = metadata_of(result, "erp_postings")
    assert erp["posted_now"] == 83 and erp["outbox_posted"] == 83 and erp["outbox_pending"] == 0

    checks = check_results(result)
    # NJ-P-199 is not in the EAM: the check says so (as a warning); the gate blocks it.
    assert checks == {
        "permits:vendor_fields_mapped": True,
        "equipment:vendor_fields_mapped": True,
        "maintenance_records:vendor_fields_mapped": True,
        "process_parameters:vendor_fields_mapped": True,
        "mes_quality_rates:vendor_fields_mapped": True,
        "equipment:devices_found_in_eam": False,
        "equipment_clearance:clearance_covers_every_device": True,
        "permit_gate_decisions:gate_decisions_written_back": True,
        "erp_postings:erp_entries_confirmed": True,
        "erp_postings:erp_ledger_reconciled": True,
        "maintenance_records:eam_replies_trusted": True,
        "permit_gate_decisions:gate_switched_on": True,
        "equipment:eam_data_fresh": True,
    }
    # Each site's check results are recorded under its partition, so their history is per site.
    assert {e.partition for e in result.get_asset_check_evaluations()} == {"NJ01", "HZ02"}


def test_eam_unreachable_blocks_every_gated_permit(fresh_mocks, sqlite_url, make_settings):
    """Fail closed: with no EAM answer, no work-at-height permit may be allowed."""
    dead = {**fresh_mocks.urls, "eam": "http://127.0.0.1:9/eam/soap"}
    settings = make_settings(sqlite_url, dead, retry_attempts=2, connect_timeout_s=0.5)
    with DagsterInstance.ephemeral() as instance:
        result = run_all(settings, instance)
    assert result.success
    assert metadata_of(result, "equipment")["eam_error"] != "none"
    assert check_results(result)["equipment:eam_data_fresh"] is False
    decisions = HubStore(sqlite_url).latest_gate_decisions()
    assert decisions and all(d.decision == "block" for d in decisions)
    with_devices = [d for d in decisions if any(r.device_id for r in d.reasons)]
    assert with_devices
    for decision in with_devices:
        assert {r.code for r in decision.reasons if r.device_id} == {"EAM_UNAVAILABLE"}


def test_failed_write_back_fails_the_asset_and_is_retried_next_run(fresh_mocks, sqlite_url, make_settings):
    ptw_admin = fresh_mocks.base_urls["ptw"]
    plan = {"rules": [{"kind": "status", "status": 503, "method": "PUT", "path_prefix": "/api/v1/permits/"}]}
    httpx.put(f"{ptw_admin}/_admin/faults", json=plan, timeout=10).raise_for_status()
    settings = make_settings(sqlite_url, fresh_mocks.urls, retry_attempts=2)
    with DagsterInstance.ephemeral() as instance:
        failed = run_all(settings, instance)
        assert not failed.success
        failures = [e for e in failed.all_events if e.event_type_value == "STEP_FAILURE"]
        assert {failure.step_key for failure in failures} == {"permit_gate_decisions"}
        # Nothing unwritten is remembered as written, so the next run tries again.
        assert [d for _, d in HubStore(sqlite_url).load_holds().values() if d == "block"] == []

        httpx.put(f"{ptw_admin}/_admin/faults", json={"rules": []}, timeout=10).raise_for_status()
        again = run_all(settings, instance)
    assert again.success
    holds = httpx.get(f"{ptw_admin}/_admin/state", timeout=10).json()["holds"]
    assert len(holds) == 20
    recorded_blocks = {p for p, (_, d) in HubStore(sqlite_url).load_holds().items() if d == "block"}
    assert recorded_blocks == set(holds)


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_assets_on_both_stores(fresh_mocks, sqlite_url, pg_url, database, make_settings):
    url = sqlite_url if database == "sqlite" else pg_url
    with DagsterInstance.ephemeral() as instance:
        result = run_all(make_settings(url, fresh_mocks.urls), instance)
    assert result.success
    store = HubStore(url)
    assert len([d for d in store.latest_gate_decisions() if d.decision == "block"]) == 20
    assert store.outbox_summary()["posted"] == 83


def test_new_vendor_field_is_reported_by_the_drift_check(tmp_path, fresh_mocks, sqlite_url, make_settings):
    """A vendor adds a field no mapping reads: the run goes on and a warning names the field."""
    import json

    from mock_systems.servers import start_systems

    permits = json.loads((REPO / "fixtures/ptw/permits.json").read_text(encoding="utf-8"))
    for permit in permits:
        permit["gasTestRequired"] = permit["ticketType"] in ("DH", "SX")
    drifted = tmp_path / "fixtures"
    shutil.copytree(REPO / "fixtures", drifted)
    (drifted / "ptw/permits.json").write_text(json.dumps(permits, ensure_ascii=False), encoding="utf-8")
    with start_systems(drifted) as systems, DagsterInstance.ephemeral() as instance:
        result = run_all(make_settings(sqlite_url, {**fresh_mocks.urls, "ptw": systems.urls["ptw"]}), instance)
    assert result.success
    drifts = [
        e for e in result.get_asset_check_evaluations()
        if e.asset_key.to_user_string() == "permits" and e.check_name == "vendor_fields_mapped"
    ]
    assert len(drifts) == 2  # each site's permits carry the new field
    for drift in drifts:
        assert not drift.passed and drift.severity.value == "WARN"
        assert drift.metadata["unmapped_fields"].value == "gasTestRequired"
    assert metadata_of(result, "permits")["dagster/row_count"] == 65


def _materials_asked(mes_base_url: str) -> list[str]:
    """The material names of every parameter query the MES received, in order."""
    received = httpx.get(f"{mes_base_url}/_admin/received", timeout=10).json()
    return [
        name
        for entry in received
        if entry["path"] == "/api/v1/material-parameters/query"
        for name in (entry.get("body") or {}).get("MaterialDefinitionIDs", [])
    ]


def _quality_asked(mes_base_url: str) -> list[str]:
    """The site of every quality-rate query the MES received, in order."""
    received = httpx.get(f"{mes_base_url}/_admin/received", timeout=10).json()
    return [entry["query"].get("siteId") for entry in received if entry["path"] == "/api/v1/quality/defect-rates"]


def test_a_sync_asks_the_mes_only_for_materials_due(fresh_mocks, sqlite_url, make_settings):
    """Parameters and quality rates change rarely: a second sync within HUB_MES_REFRESH_EVERY_MIN
    asks for none of the materials answered before nor for the sites' rates, a name the MES said
    nothing of is asked again, a material of a newly stored permit is asked at once, and once the
    interval has passed every one is due."""
    from datetime import datetime, timedelta, timezone

    from hub.steps.mes import MES_ANSWERED, materials_due

    mes = fresh_mocks.base_urls["mes"]
    settings = make_settings(sqlite_url, fresh_mocks.urls)
    with DagsterInstance.ephemeral() as instance:
        assert run_all(settings, instance).success
        first = _materials_asked(mes)
        store = HubStore(sqlite_url)
        answered = store.lookup_times(MES_ANSWERED, first)
        unknown = sorted(set(first) - set(answered))
        assert answered and unknown, (first, answered)  # the fixtures name materials the MES does not know
        assert {p.material_name for p in store.load_process_parameters(None)} <= set(answered)

        quality_asks = _quality_asked(mes)
        assert sorted(quality_asks) == ["HZ02", "NJ01"]

        second = run_all(settings, instance)
        assert second.success
        asked_again = _materials_asked(mes)[len(first):]
        assert sorted(set(asked_again)) == unknown
        assert metadata_of(second, "process_parameters")["materials_requested"] == len(asked_again)
        assert metadata_of(second, "process_parameters")["materials_in_scope"] > len(asked_again)
        # The sites' quality rates were answered: not asked again within the interval.
        assert _quality_asked(mes) == quality_asks
        assert metadata_of(second, "mes_quality_rates")["sites_asked"] == "none (not due)\nnone (not due)"

    now = datetime.now(timezone.utc)
    names = set(first)
    assert materials_due(store, names | {"新物料"}, timedelta(minutes=60), now) == sorted({*unknown, "新物料"})
    assert materials_due(store, names, timedelta(minutes=60), now + timedelta(minutes=61)) == sorted(names)
    assert materials_due(store, names, timedelta(0), now) == sorted(names)


@pytest.mark.parametrize("fault", [{"kind": "status", "status": 503}, {"kind": "empty"}])
def test_a_failed_or_empty_mes_reply_marks_nothing_answered(fresh_mocks, sqlite_url, make_settings, fault):
    """An MES that fails the query, or answers it with nothing, leaves every material due: the
    next sync asks for all of them."""
    from hub.steps.mes import MES_ANSWERED

    mes = fresh_mocks.base_urls["mes"]
    settings = make_settings(sqlite_url, fresh_mocks.urls, retry_attempts=1)
    plan = {"rules": [{**fault, "path_prefix": "/api/v1/material-parameters"}]}
    httpx.put(f"{mes}/_admin/faults", json=plan, timeout=10).raise_for_status()
    with DagsterInstance.ephemeral() as instance:
        run_all(settings, instance)
        names = _materials_asked(mes)
        assert names
        assert HubStore(sqlite_url).lookup_times(MES_ANSWERED, names) == {}
        httpx.put(f"{mes}/_admin/faults", json={}, timeout=10).raise_for_status()
        assert run_all(settings, instance).success
    assert set(_materials_asked(mes)[len(names):]) == set(names)
    # The quality rates came back, so they are not asked for again.
    assert sorted(_quality_asked(mes)) == ["HZ02", "NJ01"]
