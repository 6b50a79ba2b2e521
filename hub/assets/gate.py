"""`permit_gate_decisions`: decide every gated permit, audit it, write changed holds to the PTW."""


from datetime import datetime, timezone

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Failure,
    MaterializeResult,
    asset,
    asset_check,
)

from hub.assets.common import ChangeScopeConfig, column_schema, preview
from hub.assets.sites import site_of, site_partitions, sites_of
from hub.connectors.retry import TransientError, VendorRejected
from hub.logic.gate import decision_fingerprint, unblocked_by
from hub.mappings.engine import load_mapping
from hub.resources import HubStoreResource, PtwResource, RulesResource
from hub.steps.gate import evaluate_site, permits_of_site, quarantined_permits, record_decisions
from hub.store import tables
from hub.writers.ptw_holds import hold_drift, read_ptw_holds, write_holds

GATE_ON_CHECK = "gate_switched_on"


@asset(
    group_name="gate",
    deps=["permits", "equipment_clearance"],
    description="Allow or block each gated permit with reasons and evidence; blocks are written back to the PTW.",
    metadata={"dagster/column_schema": column_schema(tables.gate_decisions)},
    check_specs=[
        AssetCheckSpec(
            GATE_ON_CHECK,
            asset="permit_gate_decisions",
            description="The gate rules do not switch the gate off (gate_disabled_reason).",
            partitions_def=site_partitions,
        )
    ],
    partitions_def=site_partitions,
)
def permit_gate_decisions(
    context: AssetExecutionContext, config: ChangeScopeConfig, store: HubStoreResource, rules: RulesResource, ptw: PtwResource
) -> MaterializeResult:
    hub_store = store.store()
    gate_rules = rules.gate()
    now = datetime.now(timezone.utc)
    decisions = []
    scope = config.scope()
    for site in sites_of(context):
        # A re-gate after a change decides only the permits it affects.
        decisions += evaluate_site(hub_store, site, gate_rules, now, stored=True, scope=scope)
    previous = hub_store.latest_gate_decisions([d.permit_id for d in decisions])
    recorded = record_decisions(hub_store, decisions, now)
    written_back = write_holds(
        hub_store, ptw.client(), load_mapping(ptw.mapping), ptw.hold_source, decisions, reconcile=scope is None,
        site=site_of(context),
    )
    failed = written_back.failed
    lifted = unblocked_by(previous, decisions)
    if lifted:
        context.log.warning(f"rule version {gate_rules.version} allows {len(lifted)} permit(s) blocked before: {', '.join(lifted[:20])}")

    blocked = [d for d in decisions if d.decision == "block"]
    metadata = {
        "dagster/row_count": len(decisions),
        "decisions_changed": recorded,
        "blocked": len(blocked),
        "allowed": len(decisions) - len(blocked),
        "holds_written": written_back.holds_placed,
        "hold_drift_repaired": written_back.drift,
        "holds_listing_error": written_back.reconcile_error or "none",
        "write_back_failures": len(failed),
        "rule_version": gate_rules.version,
        "allowed_by_rule_change": ", ".join(lifted[:50]) or "none",
        "preview": preview(
            [{"permit_id": d.permit_id, "reasons": ", ".join(sorted({r.code for r in d.reasons}))} for d in blocked]
        ),
    }
    switched_on = AssetCheckResult(
        check_name=GATE_ON_CHECK,
        passed=not gate_rules.disabled,
        severity=AssetCheckSeverity.ERROR,
        metadata={"gate_disabled_reason": gate_rules.gate_disabled_reason or "none", "rule_version": gate_rules.version},
    )
    if failed:
        # The decisions are audited; the holds that did not reach the PTW are retried next run.
        raise Failure(description="PTW write-back failed for: " + "; ".join(failed[:20]), metadata=metadata)
    return MaterializeResult(metadata=metadata, check_results=[switched_on])


@asset_check(
    asset="permit_gate_decisions",
    description=(
        "Every permit's latest decision has reached the PTW and is still there: a failed write-back, "
        "or a hold lifted or edited at the PTW since, stays visible until the hub's hold is back."
    ),
    partitions_def=site_partitions,
)
def gate_decisions_written_back(
    context: AssetCheckExecutionContext, store: HubStoreResource, ptw: PtwResource
) -> AssetCheckResult:
    hub_store = store.store()
    site = site_of(context)
    if site:
        # The site's permits, and its unreadable ones, which its gate run blocked.
        ours = hub_store.permit_ids(site) | {row["source_key"] for row in quarantined_permits(hub_store, site)}
        latest = hub_store.latest_gate_decisions(ours)
    else:
        latest = hub_store.latest_gate_decisions()
    fingerprints = {d.permit_id: decision_fingerprint(d) for d in latest}
    pending = sorted(hub_store.holds_needing_write(fingerprints))
    # Written, by our records: does the PTW still show it? One paged listing of our holds.
    ptw_error, drifted = None, []
    try:
        with ptw.client() as client:
            ptw_holds = read_ptw_holds(client, ptw.hold_source, site)
    except (TransientError, VendorRejected) as exc:
        ptw_error = str(exc)  # unverifiable is not verified: the check fails
    else:
        # Narrowed to the site, the listing shows only the holds on permits the PTW files there.
        listed = None if site is None else permits_of_site(hub_store, site)
        written = [d for d in latest if d.permit_id not in set(pending) and (listed is None or d.permit_id in listed)]
        drifted = hold_drift(load_mapping(ptw.mapping), written, ptw_holds)
    return AssetCheckResult(
        passed=not pending and not drifted and ptw_error is None,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "decisions": len(fingerprints),
            "not_written_back": len(pending),
            "permit_ids": ", ".join(pending[:50]) or "none",
            "hold_drift": len(drifted),
            "drifted_permit_ids": ", ".join(drifted[:50]) or "none",
            "ptw_error": ptw_error or "none",
        },
    )
