"""The Dagster code location loads, with the lineage graph data engineers see in the UI."""

from pathlib import Path

import yaml
from dagster import AssetKey, Definitions

from hub.definitions import defs

EDGES = {
    ("permits", "equipment"),
    ("permits", "maintenance_records"),
    ("permits", "process_parameters"),
    ("equipment", "equipment_clearance"),
    ("maintenance_records", "equipment_clearance"),
    ("permits", "permit_gate_decisions"),
    ("equipment_clearance", "permit_gate_decisions"),
    ("permits", "safety_cost_entries"),
    ("safety_cost_entries", "erp_postings"),
    # The permit analytics, computed from what the pulls and the gate stored.
    ("permits", "permit_approval_times"),
    ("permits", "guardian_response_rates"),
    ("permits", "overdue_permits"),
    ("permits", "similar_work_alerts"),
    ("equipment", "hazard_closure_cycle"),
    ("maintenance_records", "hazard_closure_cycle"),
    ("permit_gate_decisions", "gate_performance"),
    # The analyses across systems: the MES quality rates and the EAM's work orders beside the permits.
    ("permits", "work_at_height_quality"),
    ("mes_quality_rates", "work_at_height_quality"),
    ("permits", "lifting_failure_intervals"),
    ("maintenance_records", "lifting_failure_intervals"),
    # The plant systems at the edges, as external assets: read from, and written to.
    ("ptw", "permits"),
    ("ptw", "permits_of_other_sites"),
    ("eam", "equipment"),
    ("eam", "maintenance_records"),
    ("mes", "process_parameters"),
    ("mes", "mes_quality_rates"),
    ("erp", "erp_postings"),
    ("permit_gate_decisions", "ptw_holds"),
    ("permits_of_other_sites", "ptw_holds"),
    ("erp_postings", "erp_journal_entries"),
}
SYSTEMS = {"ptw", "eam", "mes", "erp", "ptw_holds", "erp_journal_entries"}


def test_definitions_load():
    Definitions.validate_loadable(defs)


def test_workspace_points_at_the_definitions_module():
    workspace = yaml.safe_load((Path(__file__).parents[1] / "workspace.yaml").read_text())
    assert workspace == {"load_from": [{"python_module": "hub.definitions"}]}


def test_asset_graph_keys_and_edges():
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert keys == {node for edge in EDGES for node in edge}
    edges = {
        (parent.to_user_string(), key.to_user_string())
        for key in graph.get_all_asset_keys()
        for parent in graph.get(key).parent_keys
    }
    assert edges == EDGES


def test_checks_job_and_schedule():
    graph = defs.resolve_asset_graph()
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert checks == {
        ("equipment", "devices_found_in_eam"),
        ("equipment", "eam_data_fresh"),
        ("equipment_clearance", "clearance_covers_every_device"),
        ("permit_gate_decisions", "gate_decisions_written_back"),
        ("erp_postings", "erp_entries_confirmed"),
        ("erp_postings", "erp_ledger_reconciled"),
        ("maintenance_records", "eam_replies_trusted"),
        ("permit_gate_decisions", "gate_switched_on"),
        ("permits_of_other_sites", "every_permit_within_the_gate"),
        ("guardian_response_rates", "guardian_response_rate_met"),
        *(
            (asset, "vendor_fields_mapped")
            for asset in (
                "permits", "equipment", "maintenance_records", "process_parameters", "mes_quality_rates",
                "permits_of_other_sites",
            )
        ),
    }
    # Not blocking: the gate blocks a device without a profile itself, and a blocking check
    # would keep the gate from running at all.
    coverage = graph.get_check_spec(next(k for k in graph.asset_check_keys if k.name == "clearance_covers_every_device"))
    assert not coverage.blocking
    job = defs.resolve_job_def("full_sync")
    assert {AssetKey(k) for k in ("permits", "erp_postings")} <= set(job.asset_layer.selected_asset_keys)
    schedule = defs.resolve_schedule_def("full_sync_schedule")
    assert schedule.job_name == "full_sync"


def test_resources_bound_from_environment(monkeypatch):
    from hub.definitions import build_definitions
    from hub.settings import HubSettings

    monkeypatch.setenv("HUB_ERP__URL", "http://erp.plant.example:8080")
    monkeypatch.setenv("HUB_ERP__PASSWORD", "s3cret-from-env")
    monkeypatch.setenv("HUB_ERP__USERNAME", "hub")
    resources = build_definitions(HubSettings()).resources
    assert resources["erp"].url == "http://erp.plant.example:8080"
    # The secret is bound by variable name, so the Dagster UI never shows its value.
    assert "s3cret-from-env" not in repr(resources["erp"])


def test_health_checks_job_runs_checks_without_assets(fresh_mocks, sqlite_url, make_settings):
    """After a run whose gate failed, the checks-only job still reports the pending write-back."""
    import httpx
    from dagster import DagsterInstance

    from hub.definitions import build_definitions

    settings = make_settings(sqlite_url, fresh_mocks.urls, retry_attempts=1)
    plan = {"rules": [{"kind": "status", "status": 503, "method": "PUT", "path_prefix": "/api/v1/permits/"}]}
    httpx.put(f"{fresh_mocks.base_urls['ptw']}/_admin/faults", json=plan, timeout=10).raise_for_status()
    definitions = build_definitions(settings)
    with DagsterInstance.ephemeral() as instance:
        sync = definitions.resolve_job_def("full_sync").execute_in_process(
            instance=instance, raise_on_error=False, partition_key="NJ01"
        )
        assert not sync.success
        checks = definitions.resolve_job_def("health_checks").execute_in_process(
            instance=instance, raise_on_error=False, tags={"dagster/partition": "NJ01"}
        )
    assert not checks.get_asset_materialization_events()
    results = {e.check_name: e.passed for e in checks.get_asset_check_evaluations()}
    assert results["gate_decisions_written_back"] is False
    assert results["erp_entries_confirmed"] is True


def test_sync_is_partitioned_by_site_and_scheduled_once_per_site(tmp_path):
    import datetime

    from dagster import DagsterInstance, build_schedule_context

    assert defs.resolve_job_def("full_sync").partitions_def.get_partition_keys() == ["NJ01", "HZ02"]
    graph = defs.resolve_asset_graph()
    site_assets = [key for key in graph.get_all_asset_keys() if key.to_user_string() not in {"permits_of_other_sites", *SYSTEMS}]
    assert {graph.get(key).partitions_def for key in site_assets} == {defs.resolve_job_def("full_sync").partitions_def}
    assert graph.get(AssetKey("permits_of_other_sites")).partitions_def is None
    assert set(defs.resolve_job_def("gate_only").asset_layer.selected_asset_keys) == {
        AssetKey("equipment_clearance"), AssetKey("permit_gate_decisions")
    }
    assert defs.resolve_sensor_def("gate_after_failed_sync").job_name == "gate_only"
    regate = defs.resolve_sensor_def("regate_on_change")
    assert regate.job_name == "regate" and regate.minimum_interval_seconds == 5
    assert set(defs.resolve_job_def("regate").asset_layer.selected_asset_keys) == {
        AssetKey(k) for k in ("permits", "equipment", "maintenance_records", "equipment_clearance", "permit_gate_decisions")
    }
    tick = datetime.datetime(2026, 12, 1, tzinfo=datetime.timezone.utc)
    # A persistent instance (a schedule context needs one's reference), in a folder kept for the
    # session: Dagster remembers the last instance's state storage for later loads of definitions.
    with DagsterInstance.local_temp(str(tmp_path)) as instance:
        for name in ("full_sync_schedule", "health_checks_schedule"):
            context = build_schedule_context(instance=instance, scheduled_execution_time=tick, repository_def=defs.get_repository_def())
            requests = defs.resolve_schedule_def(name).evaluate_tick(context).run_requests
            assert sorted(r.tags["dagster/partition"] for r in requests) == ["HZ02", "NJ01"]
            # Analytics never computed are due: the tick runs the whole job.
            assert all(r.asset_selection is None for r in requests)


def test_assets_carry_owners_kinds_code_versions_and_schemas(monkeypatch, tmp_path):
    from dagster import TableSchema

    from hub.definitions import build_definitions
    from hub.settings import HubSettings

    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.owners == ["team:plant-integration"], key
        if key.to_user_string() in SYSTEMS:
            assert not node.is_materializable and node.description and node.metadata["url"].startswith("http"), key
        else:
            assert node.kinds == {"python", "sqlite"}, key
            assert isinstance(node.metadata["dagster/column_schema"], TableSchema), key
            assert node.code_version, key
    assert graph.get(AssetKey("eam")).kinds == {"soap"} and graph.get(AssetKey("mes")).kinds == {"rest"}

    # The alternate flavors, credentials in the URL, PostgreSQL, an edited rule file.
    rules = tmp_path / "gate.yaml"
    rules.write_text((Path(__file__).parents[1] / "hub/rules/gate.yaml").read_text() + "\n# edited\n")
    monkeypatch.setenv("HUB_EAM__MAPPING", "eam-maximo-oslc")
    monkeypatch.setenv("HUB_MES__MAPPING", "mes-sap-odata")
    monkeypatch.setenv("HUB_MES__URL", "https://hub:pa55@sap.example/sap/opu/odata/sap/ZMES_PROCESS_SRV")
    monkeypatch.setenv("HUB_DATABASE_URL", "postgresql+psycopg2://hub:pa55@db.example/hub")
    monkeypatch.setenv("HUB_GATE_RULES_FILE", str(rules))
    other = build_definitions(HubSettings()).resolve_asset_graph()
    assert other.get(AssetKey("eam")).kinds == {"rest"} and other.get(AssetKey("mes")).kinds == {"rest", "odata"}
    assert other.get(AssetKey("mes")).metadata["url"] == "https://sap.example/sap/opu/odata/sap/ZMES_PROCESS_SRV"
    assert other.get(AssetKey("permits")).kinds == {"python", "postgres"}
    for name, changed in (("permits", False), ("equipment", True), ("equipment_clearance", True), ("erp_postings", False)):
        key = AssetKey(name)
        assert (other.get(key).code_version != graph.get(key).code_version) is changed, name


def test_health_checks_can_be_launched_for_one_site():
    for site in ("NJ01", "HZ02"):
        job = defs.resolve_job_def(f"health_checks_{site}")
        assert job.run_tags == {"dagster/partition": site}
        assert not job.asset_layer.selected_asset_keys and job.asset_layer.asset_graph.asset_check_keys
