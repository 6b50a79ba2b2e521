"""`permits_of_other_sites`: permits of sites outside HUB_SITES, so none falls outside the gate unseen."""


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

from hub.assets.common import column_schema, drift_result, drift_spec, mapping_label, preview
from hub.assets.systems import PTW
from hub.mappings.engine import load_mapping
from hub.resources import HubStoreResource, PtwResource, RulesResource, SitesResource
from hub.steps.gate import evaluate_unconfigured, quarantined_permits_outside, record_decisions
from hub.steps.ptw import ingest_permits
from hub.steps.sites import OTHER_SITES_CURSOR, other_site_permits, site_coverage
from hub.store import tables
from hub.writers.ptw_holds import write_holds


@asset(
    group_name="ptw",
    deps=[PTW],
    metadata={"dagster/column_schema": column_schema(tables.permits)},
    description="Permits of sites the hub is not configured for: each gated one is blocked as "
    "SITE_NOT_CONFIGURED, unless its site is left to another hub.",
    check_specs=[drift_spec("permits_of_other_sites")],
)
def permits_of_other_sites(
    context: AssetExecutionContext, store: HubStoreResource, rules: RulesResource, ptw: PtwResource, sites: SitesResource
) -> MaterializeResult:
    hub_store = store.store()
    gate_rules = rules.gate()
    mapping = load_mapping(ptw.mapping)
    client = ptw.client()
    pulled = ingest_permits(hub_store, client, mapping, OTHER_SITES_CURSOR, exclude_sites=",".join(sites.configured))
    now = datetime.now(timezone.utc)
    other = other_site_permits(hub_store, sites.configured, gate_rules)
    decisions = evaluate_unconfigured(
        [p for p in other if p.site not in sites.left_to_others],
        gate_rules,
        now,
        quarantined_permits_outside(hub_store, [*sites.configured, *sites.left_to_others]),
    )
    record_decisions(hub_store, decisions, now)
    written_back = write_holds(hub_store, ptw.client(), mapping, ptw.hold_source, decisions)
    coverage = site_coverage(hub_store, sites.configured, sites.left_to_others, gate_rules)
    for problem in coverage.problems:
        context.log.error(problem)
    metadata = {
        "fetched": pulled.fetched,
        "dagster/row_count": pulled.accepted,
        "quarantined_new": pulled.quarantined,
        "cursor": pulled.cursor,
        "mapping": mapping_label(mapping),
        "blocked_site_not_configured": len(decisions),
        "left_to_other_hubs": sum(coverage.left_to_others.values()),
        "holds_written": written_back.holds_placed,
        "write_back_failures": len(written_back.failed),
        "preview": preview([{"permit_id": d.permit_id, "site": d.reasons[0].evidence.get("site", "")} for d in decisions if d.reasons]),
    }
    if written_back.failed:
        raise Failure(description="PTW write-back failed for: " + "; ".join(written_back.failed[:20]), metadata=metadata)
    return MaterializeResult(metadata=metadata, check_results=[drift_result("permits_of_other_sites", pulled.unmapped)])


@asset_check(
    asset="permits_of_other_sites",
    description="Every gated permit the PTW has is at a configured site (or one left to another hub), "
    "and every configured site is known to the PTW or the EAM.",
)
def every_permit_within_the_gate(
    context: AssetCheckExecutionContext, store: HubStoreResource, rules: RulesResource, sites: SitesResource
) -> AssetCheckResult:
    coverage = site_coverage(store.store(), sites.configured, sites.left_to_others, rules.gate())
    return AssetCheckResult(
        passed=not coverage.problems,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "problems": "\n".join(coverage.problems) or "none",
            "permits_at_unconfigured_sites": sum(len(ids) for ids in coverage.ungated.values()),
            "permits_left_to_other_hubs": sum(coverage.left_to_others.values()),
            "configured_sites_unknown": ", ".join(coverage.unknown_sites) or "none",
        },
    )
