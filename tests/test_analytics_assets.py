"""The analytics assets through `dagster.materialize` on a temporary instance, after a sync
against the live mocks; the response-rate check below and above its threshold."""

import base64
from datetime import datetime, timedelta, timezone
from pathlib import Path

from conftest import materialize_sites
from dagster import DagsterInstance

from hub.assets.analytics import ANALYTICS_ASSETS, RESPONSE_CHECK, response_check
from hub.analytics.kpis import permits_frame, response_rates
from hub.definitions import ASSETS
from hub.logic.analytics_rules import load_analytics_rules
from hub.model import Permit
from hub.resources import resources_from_settings

PNG = b"\x89PNG\r\n\x1a\n"


def test_a_full_sync_materializes_every_analytics_asset_with_a_preview_and_a_chart(fresh_mocks, sqlite_url, make_settings):
    settings = make_settings(sqlite_url, fresh_mocks.urls)
    with DagsterInstance.ephemeral() as instance:
        result = materialize_sites([*ASSETS, *ANALYTICS_ASSETS], resources=resources_from_settings(settings), instance=instance)
        assert result.success
        by_asset: dict[str, list] = {}
        for event in result.get_asset_materialization_events():
            by_asset.setdefault(event.asset_key.to_user_string(), []).append(event.materialization.metadata)
        for asset in ANALYTICS_ASSETS:
            name = asset.key.to_user_string()
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


def _permit(permit_id: str, submitted: datetime, guardian_after: int) -> Permit:
    return Permit(
        permit_id=permit_id, permit_type="hot_work", risk_level="red", site="S1", area="A", applicant="wang", guardian="li",
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
