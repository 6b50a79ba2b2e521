"""The analytics assets through `dagster.materialize` on a temporary instance, after a sync
against the live mocks; the response-rate check below and above its threshold, by the packaged
rule file and by the one the settings name."""

import base64
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import materialize_sites
from dagster import DagsterInstance, materialize

from hub.assets.analytics import CROSS_SYSTEM_KEYS, KPI_KEYS, OUTPUTS, RESPONSE_CHECK, permit_analytics, response_check
from hub.analytics.kpis import permits_frame, response_rates
from hub.definitions import ASSETS, build_definitions, hub_resources
from hub.logic.analytics_rules import load_analytics_rules
from hub.model import Permit
from hub.settings import HubSettings
from hub.store.repository import HubStore

PNG = b"\x89PNG\r\n\x1a\n"
PACKAGED = Path(__file__).parents[1] / "hub/rules/analytics.yaml"
NOWHERE = {name: "http://127.0.0.1:9" for name in ("ptw", "eam", "mes", "erp")}  # no system is asked


def test_a_full_sync_materializes_every_analytics_asset_with_a_preview_and_a_chart(fresh_mocks, sqlite_url, make_settings):
    settings = make_settings(sqlite_url, fresh_mocks.urls)
    with DagsterInstance.ephemeral() as instance:
        result = materialize_sites([*ASSETS, permit_analytics], resources=hub_resources(settings), instance=instance)
        assert result.success
        by_asset: dict[str, list] = {}
        for event in result.get_asset_materialization_events():
            by_asset.setdefault(event.asset_key.to_user_string(), []).append(event.materialization.metadata)
        for name in OUTPUTS:
            assert len(by_asset[name]) == 2, name  # one per site
            for metadata in by_asset[name]:
                assert metadata["preview"].value.schema is not None
                chart = Path(metadata["chart_file"].value)
                assert chart.read_bytes().startswith(PNG), name
                embedded = metadata["chart"].value.split("base64,", 1)[1].rstrip(")")
                assert base64.b64decode(embedded) == chart.read_bytes()
    # The fixture plant's gate blocks 20 permits; 18 of them have a canonical record (the other
    # two are unreadable permits held in quarantine), and each of those shows under its reasons.
    blocked = sum(m["blocked_permits"].value for m in by_asset["gate_performance"])
    assert blocked == 18
    # A first sync meets EAM changes made before the hub ran: five permits were approved after the
    # change that blocks them and before any hold could land, which is what "too late" is there to show.
    assert sum(m["too_late"].value for m in by_asset["gate_performance"]) == 5
    approvals = {record.data["site"] for m in by_asset["permit_approval_times"] for record in m["preview"].value.records}
    assert approvals == {"NJ01", "HZ02"}
    checks = [e for e in result.get_asset_check_evaluations() if e.check_name == RESPONSE_CHECK]
    assert {e.partition for e in checks} == {"NJ01", "HZ02"}


FIXTURE_PERMITS = Path(__file__).parents[1] / "fixtures" / "ptw" / "permits.json"
TYPES = {"DH": "hot_work", "SX": "confined_space", "GC": "work_at_height", "DZ": "lifting", "LSYD": "temporary_power"}
RISKS = {"1": "red", "2": "orange", "3": "yellow"}
#: NJ01's permits the PTW mapping quarantines (fixtures/README.md, scenario 16).
UNREADABLE = {"PTW-NJ-2026-0026", "PTW-NJ-2026-0027"}


def _p90(values: list[float]) -> float:
    """Linear 90th percentile, computed by hand."""
    ordered, at = sorted(values), 0.9 * (len(values) - 1)
    low = int(at)
    return ordered[low] + (ordered[min(low + 1, len(ordered) - 1)] - ordered[low]) * (at - low)


def test_the_fixture_plants_approval_times_and_response_rates_match_a_hand_count(fresh_mocks, sqlite_url, make_settings):
    """NJ01's KPIs as the assets compute them, against the same figures counted from the PTW's
    own records with the standard library."""
    import json
    import statistics

    settings = make_settings(sqlite_url, fresh_mocks.urls)
    with DagsterInstance.ephemeral() as instance:
        result = materialize_sites([*ASSETS, permit_analytics], sites=("NJ01",), resources=hub_resources(settings), instance=instance)
    assert result.success
    previews = {
        m.asset_key.to_user_string(): [r.data for r in m.materialization.metadata["preview"].value.records]
        for m in result.get_asset_materialization_events()
        if m.asset_key.to_user_string() in KPI_KEYS
    }
    stamp = lambda text: datetime.strptime(text, "%Y-%m-%d %H:%M:%S")  # noqa: E731 - one plant zone: differences only
    records = [
        p for p in json.loads(FIXTURE_PERMITS.read_text(encoding="utf-8"))
        if p["siteCode"] == "NJ01" and p["ticketNo"] not in UNREADABLE
    ]
    approvals: dict[tuple, list[float]] = {}
    for p in records:
        if p["submitTime"] and p["approveTime"]:
            key = ("NJ01", p["workshop"], TYPES[p["ticketType"]], RISKS[p["riskLevel"]])
            approvals.setdefault(key, []).append((stamp(p["approveTime"]) - stamp(p["submitTime"])).total_seconds() / 60)
    by_hand = {
        key: (len(v), round(statistics.median(v), 1), round(_p90(v), 1), round(max(v), 1)) for key, v in approvals.items()
    }
    shown = {
        (r["site"], r["area"], r["permit_type"], r["risk_level"]): (r["count"], r["median"], r["p90"], r["max"])
        for r in previews["permit_approval_times"]
    }
    assert shown == by_hand
    # The tank farm's climbs: 13 of the history approved in 40 minutes, and PTW-NJ-2026-0006 in 430.
    assert shown[("NJ01", "罐区", "work_at_height", "orange")] == (14, 40.0, 40.0, 430.0)

    # Every submission's window has passed: each counts, effective when the guardian came within 15 min.
    days: dict[str, list[bool]] = {}
    for p in records:
        if p["submitTime"]:
            arrived = p["guardianArriveTime"]
            effective = bool(arrived) and (stamp(arrived) - stamp(p["submitTime"])).total_seconds() <= 15 * 60
            days.setdefault(p["submitTime"][:10], []).append(effective)
    rates = {
        r["day"]: (r["permits"], r["effective"], r["rate"], r["below_threshold"]) for r in previews["guardian_response_rates"]
    }
    assert rates == {
        day: (len(v), sum(v), round(sum(v) / len(v), 4), sum(v) / len(v) < 0.92) for day, v in days.items()
    }
    assert rates["2026-11-24"] == (4, 1, 0.25, True)


def _permit(permit_id: str, submitted: datetime, guardian_after: int, site: str = "S1") -> Permit:
    return Permit(
        permit_id=permit_id, permit_type="hot_work", risk_level="red", site=site, area="A", applicant="wang", guardian="li",
        planned_start=submitted, planned_end=submitted + timedelta(hours=4), status="active", submitted_at=submitted,
        approved_at=submitted + timedelta(minutes=5), guardian_arrived_at=submitted + timedelta(minutes=guardian_after),
        updated_at=submitted,
    )


def test_the_response_check_fails_below_the_threshold_with_its_root_causes_and_passes_above():
    rules = load_analytics_rules()
    now = datetime(2026, 12, 2, 12, tzinfo=timezone.utc)
    # The day before: one late in two; the latest day: 12 of 13 on time (92.3 %).
    earlier = [_permit("E1", now - timedelta(days=1), 5), _permit("E2", now - timedelta(days=1, minutes=5), 50)]
    latest_ok = [_permit(f"L{i}", now - timedelta(hours=1, minutes=i), 20 if i == 0 else 10) for i in range(13)]
    frame = permits_frame(earlier + latest_ok, rules)
    passed = response_check(response_rates(frame, rules, now), frame, rules, now)
    assert passed.passed and passed.metadata["root_causes"].value == []

    # 11 of 12 on time (91.7 %): below 92 %, and the breakdown names the stages and the guardian.
    frame = permits_frame(earlier + latest_ok[:12], rules)
    failed = response_check(response_rates(frame, rules, now), frame, rules, now)
    assert not failed.passed
    (cause,) = failed.metadata["root_causes"].value
    assert cause["day"] == "2026-12-02" and cause["rate"] == 0.9167
    assert cause["stages"]["submit_to_approve_min"] == 5.0 and cause["slowest_guardians"][0]["guardian"] == "li"
    assert cause["same_type_before"]["hot_work"]["permits"] == 2 and cause["same_type_before"]["hot_work"]["rate"] == 0.5


def test_the_response_check_passes_a_site_without_permits():
    """A configured site the PTW has nothing of yet: nothing below the threshold, and no error."""
    rules = load_analytics_rules()
    now = datetime(2026, 12, 2, 12, tzinfo=timezone.utc)
    frame = permits_frame([], rules)
    empty = response_check(response_rates(frame, rules, now), frame, rules, now)
    assert empty.passed and empty.metadata["root_causes"].value == [] and empty.metadata["latest_days"].value == []


def _response_check(settings, raise_on_error: bool = True):
    with DagsterInstance.ephemeral() as instance:
        result = materialize([permit_analytics], selection=["guardian_response_rates"], partition_key="NJ01", resources=hub_resources(settings),
                             instance=instance, raise_on_error=raise_on_error)
        checks = result.get_asset_check_evaluations() if result.success else []
        failures = [e.step_failure_data.error.to_string() for e in result.all_events if e.is_step_failure]
    return checks, failures


def test_the_response_check_judges_by_the_rule_file_the_settings_name(sqlite_url, make_settings, tmp_path: Path):
    settings = make_settings(sqlite_url, NOWHERE)
    now = datetime.now(timezone.utc)
    # Half an hour ago, every guardian's arrival past: 11 of 12 on time, 91.7 %.
    start = now - timedelta(minutes=30)
    HubStore(sqlite_url).upsert_permits(
        [_permit(f"R{i}", start - timedelta(seconds=i), 20 if i == 0 else 5, site="NJ01") for i in range(12)], now
    )
    (packaged,), _ = _response_check(settings)
    assert not packaged.passed and packaged.metadata["threshold"].value == 0.92

    edited = tmp_path / "analytics.yaml"
    edited.write_text(PACKAGED.read_text(encoding="utf-8").replace("response_rate_threshold: 0.92", "response_rate_threshold: 0.9"))
    (lowered,), _ = _response_check(settings.model_copy(update={"analytics_rules_file": edited}))
    assert lowered.passed and lowered.metadata["threshold"].value == 0.9


@pytest.mark.parametrize("content", [None, "version: x\nresponse_rate_threshold: 1.5\n"])
def test_a_missing_or_invalid_analytics_rule_file_fails_the_asset_naming_it(sqlite_url, make_settings, tmp_path: Path, content):
    rules = tmp_path / "analytics.yaml"
    if content is not None:
        rules.write_text(content, encoding="utf-8")
    checks, (failure,) = _response_check(make_settings(sqlite_url, NOWHERE, analytics_rules_file=rules), raise_on_error=False)
    assert checks == [] and str(rules) in failure
    assert ("cannot read" if content is None else "response_rate_threshold") in failure


def test_an_edited_rule_file_named_by_the_settings_gives_its_assets_a_new_code_version(tmp_path: Path):
    def versions(settings: HubSettings) -> dict[str, str]:
        graph = build_definitions(settings).resolve_asset_graph()
        return {key.to_user_string(): graph.get(key).code_version for key in graph.materializable_asset_keys}

    packaged = versions(HubSettings())
    edited = {}
    for name in ("analytics", "cross_system"):
        copy = tmp_path / f"{name}.yaml"
        copy.write_text((PACKAGED.parent / f"{name}.yaml").read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
        edited[name] = versions(HubSettings(**{f"{name}_rules_file": copy}))
    kpis, cross = set(KPI_KEYS), set(CROSS_SYSTEM_KEYS)
    assert cross == {"work_at_height_quality", "lifting_failure_intervals"}
    assert {k for k in packaged if packaged[k] != edited["analytics"][k]} == kpis
    assert {k for k in packaged if packaged[k] != edited["cross_system"][k]} == cross


def test_a_bad_cross_system_rule_file_fails_only_the_analyses_that_read_it(sqlite_url, make_settings, tmp_path: Path):
    """The charts are drawn beside the step and awaited at its end; an output that fails still
    leaves the outputs before it materialized, each with its chart."""
    bad = tmp_path / "cross_system.yaml"
    bad.write_text("version: x\nheight_quality: {min_months: 0}\n", encoding="utf-8")
    settings = make_settings(sqlite_url, NOWHERE, cross_system_rules_file=bad)
    now = datetime.now(timezone.utc)
    HubStore(sqlite_url).upsert_permits([_permit(f"B{i}", now - timedelta(hours=i), 5, site="NJ01") for i in range(5)], now)
    with DagsterInstance.ephemeral() as instance:
        result = materialize([permit_analytics], partition_key="NJ01", resources=hub_resources(settings), instance=instance,
                             raise_on_error=False)
        done = {e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()}
        (failure,) = [e.step_failure_data.error.to_string() for e in result.all_events if e.is_step_failure]
        assert all(Path(m["chart_file"].value).read_bytes().startswith(PNG) for m in done.values())
    assert set(done) == set(KPI_KEYS)
    assert str(bad) in failure


def _analytics_materialized(instance, run_ids) -> set[tuple[str, str]]:
    """(asset, site) pairs of the analytics assets the runs materialized."""
    from dagster import DagsterEventType

    names = {*KPI_KEYS, *CROSS_SYSTEM_KEYS}
    found = set()
    for run_id in run_ids:
        for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
            materialization = entry.asset_materialization
            if materialization.asset_key.to_user_string() in names:
                found.add((materialization.asset_key.to_user_string(), materialization.partition))
    return found


def test_a_sync_computes_the_analytics_when_due_or_asked_and_after_a_rule_edit(fresh_mocks, sqlite_url, make_settings, tmp_path):
    from hub.definitions import analytics_due
    from hub.sync import run_full_sync

    settings = make_settings(sqlite_url, fresh_mocks.urls)
    every_pair = {(name, site) for name in (*KPI_KEYS, *CROSS_SYSTEM_KEYS) for site in settings.sites}
    with DagsterInstance.ephemeral() as instance:
        first = run_full_sync(settings, instance)
        assert first.success and all(run.analytics for run in first.runs)
        assert _analytics_materialized(instance, [run.run_id for run in first.runs]) == every_pair

        # Minutes later: the pulls, the gate and the costs run; the analytics are not due.
        again = run_full_sync(settings, instance)
        assert again.success and not any(run.analytics for run in again.runs)
        assert _analytics_materialized(instance, [run.run_id for run in again.runs]) == set()
        assert not analytics_due(instance, settings, "NJ01")
        assert analytics_due(instance, settings, "NJ01", now=datetime.now(timezone.utc) + timedelta(minutes=61))
        assert analytics_due(instance, settings.model_copy(update={"analytics_every_min": 0}), "NJ01")

        asked = run_full_sync(settings, instance, sites=["NJ01"], analytics=True)
        assert asked.success and _analytics_materialized(instance, asked.run_ids) == {p for p in every_pair if p[1] == "NJ01"}

        # An edited rule file gives the analytics another code version: the next sync computes them.
        edited = tmp_path / "analytics.yaml"
        edited.write_text(PACKAGED.read_text(encoding="utf-8") + "\n# reviewed\n", encoding="utf-8")
        after_edit = settings.model_copy(update={"analytics_rules_file": edited})
        assert analytics_due(instance, after_edit, "HZ02")
        edited_sync = run_full_sync(after_edit, instance, sites=["HZ02"])
        assert edited_sync.success and edited_sync.runs[0].analytics
        assert not analytics_due(instance, after_edit, "HZ02")
