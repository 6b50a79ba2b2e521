"""`permit_gate_decisions`: decide every gated permit, audit it, write changed holds to the PTW."""


from datetime import datetime, timezone

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    Failure,
    MaterializeResult,
    asset,
    asset_check,
)

from hub.assets.common import preview
from hub.assets.sites import site_of, site_partitions
from hub.logic.clearance import DeviceProfile
from hub.logic.gate import decide_all, decision_fingerprint, invalid_permit_decision
from hub.logic.rules import GateRules
from hub.mappings.engine import load_mapping
from hub.model import GateDecision
from hub.resources import HubStoreResource, PtwResource, RulesResource
from hub.store.records import AuditBatch
from hub.writers.ptw_holds import write_holds


def quarantined_permits(hub_store, site: str | None) -> list[dict]:
    """Quarantined PTW permit records of `site` (every site if None); one whose site could not
    be read counts for every site, so that each site's gate blocks it."""
    return [
        row
        for row in hub_store.list_quarantine()
        if row["system"] == "ptw"
        and row["record_kind"] == "permit"
        and row["source_key"]
        and (not site or (row.get("partial") or {}).get("site", site) == site)
    ]


def invalid_permit_decisions(hub_store, rules: GateRules, now: datetime, site: str | None) -> list[GateDecision]:
    """Block quarantined permits unless what could be read shows they are not gated."""
    decisions = {}
    for row in quarantined_permits(hub_store, site):
        partial = row.get("partial") or {}
        if "status" in partial and partial["status"] not in rules.gated_statuses:
            continue
        if "permit_type" in partial and partial["permit_type"] not in rules.gated_permit_types:
            continue
        decisions[row["source_key"]] = invalid_permit_decision(row["source_key"], row["reason"], rules, now)
    return list(decisions.values())


@asset(
    group_name="gate",
    deps=["permits", "equipment_clearance"],
    description="Allow or block each gated permit with reasons and evidence; blocks are written back to the PTW.",
    partitions_def=site_partitions,
)
def permit_gate_decisions(
    context: AssetExecutionContext, store: HubStoreResource, rules: RulesResource, ptw: PtwResource
) -> MaterializeResult:
    hub_store = store.store()
    gate_rules = rules.gate()
    now = datetime.now(timezone.utc)
    site = site_of(context)
    permits = hub_store.load_permits(statuses=gate_rules.gated_statuses, site=site)
    device_ids = {d for p in permits for d in p.device_ids}
    profiles = {
        device: DeviceProfile.model_validate({k: row[k] for k in ("device_id", "known", "hazards", "data_as_of")})
        for device, row in hub_store.load_device_clearance(device_ids).items()
    }
    by_id = {d.permit_id: d for d in decide_all(permits, profiles, gate_rules, now)}
    # A newer record that failed validation overrides the last good copy: fail closed.
    for decision in invalid_permit_decisions(hub_store, gate_rules, now, site):
        by_id[decision.permit_id] = decision
    decisions = [by_id[k] for k in sorted(by_id)]
    fingerprints = {d.permit_id: decision_fingerprint(d) for d in decisions}
    audited = [(d.permit_id, {**d.model_dump(mode="json"), "fingerprint": fingerprints[d.permit_id]}) for d in decisions]
    hub_store.append_gate_decisions(
        decisions, [fingerprints[d.permit_id] for d in decisions], audit=AuditBatch("gate_decision", audited, now)
    )

    written_back = write_holds(hub_store, ptw.client(), load_mapping(ptw.mapping), ptw.hold_source, decisions)
    failed = written_back.failed

    blocked = [d for d in decisions if d.decision == "block"]
    metadata = {
        "row_count": len(decisions),
        "blocked": len(blocked),
        "allowed": len(decisions) - len(blocked),
        "holds_written": written_back.holds_placed,
        "write_back_failures": len(failed),
        "rule_version": gate_rules.version,
        "preview": preview(
            [{"permit_id": d.permit_id, "reasons": ", ".join(sorted({r.code for r in d.reasons}))} for d in blocked]
        ),
    }
    if failed:
        # The decisions are audited; the holds that did not reach the PTW are retried next run.
        raise Failure(description="PTW write-back failed for: " + "; ".join(failed[:20]), metadata=metadata)
    return MaterializeResult(metadata=metadata)


@asset_check(
    asset="permit_gate_decisions",
    description="Every permit's latest decision has reached the PTW; a failed write-back stays visible until it lands.",
    partitions_def=site_partitions,
)
def gate_decisions_written_back(context: AssetCheckExecutionContext, store: HubStoreResource) -> AssetCheckResult:
    hub_store = store.store()
    site = site_of(context)
    latest = hub_store.latest_gate_decisions()
    if site:
        # The site's permits, and its unreadable ones, which its gate run blocked.
        ours = hub_store.permit_ids(site) | {row["source_key"] for row in quarantined_permits(hub_store, site)}
        latest = [d for d in latest if d.permit_id in ours]
    fingerprints = {d.permit_id: decision_fingerprint(d) for d in latest}
    pending = sorted(hub_store.holds_needing_write(fingerprints))
    return AssetCheckResult(
        passed=not pending,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "decisions": len(fingerprints),
            "not_written_back": len(pending),
            "permit_ids": ", ".join(pending[:50]) or "none",
        },
    )
