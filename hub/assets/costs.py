"""`safety_cost_entries`: closed permits become cost lines, queued once each in the ERP outbox.

Only permits stored since the last run are costed: a closed permit's lines never change, and
the outbox already holds those of earlier runs. Within that window, a permit the outbox already
holds entries of is not costed again: the window reaches a few seconds back (`SYNC_LEEWAY`), over
the permits the previous run itself had just stored, and re-costing them all made every
incremental sync cost as many permits as a full one. New cost rules start a window of their
own, in which every closed permit is costed again.
"""


from datetime import datetime, timedelta, timezone
from decimal import Decimal

from dagster import AssetExecutionContext, MaterializeResult, asset

from hub.assets.common import column_schema, preview
from hub.assets.sites import site_of, site_partitions
from hub.failpoints import failpoint
from hub.logic.costs import CostError, cost_entries, message_uuid
from hub.model import Permit
from hub.resources import HubStoreResource, RulesResource
from hub.store import tables
from hub.store.repository import QuarantineItem


def cost_problem(permit: Permit, exc: CostError, cost_rules_file: str | None) -> QuarantineItem:
    """A permit the cost rules cannot cost, kept with the rule file that refused it."""
    return QuarantineItem(
        system="hub",
        record_kind="safety_cost_entry",
        source_key=permit.permit_id,
        payload=permit.model_dump(mode="json"),
        field=exc.field,
        reason=str(exc),
        source_file=str(cost_rules_file or "hub/rules/costs.yaml"),
    )


#: A permit a quarantine replay was storing while the previous run read is costed again, not missed.
SYNC_LEEWAY = timedelta(seconds=5)


@asset(
    group_name="erp",
    deps=["permits"],
    description="Safety-cost ledger lines of closed permits, by the cost rules.",
    metadata={"dagster/column_schema": column_schema(tables.erp_outbox)},
    partitions_def=site_partitions,
)
def safety_cost_entries(
    context: AssetExecutionContext, store: HubStoreResource, rules: RulesResource
) -> MaterializeResult:
    hub_store = store.store()
    cost_rules = rules.costs()
    site = site_of(context)
    # Per site and rule version: new rules cost every closed permit again (the outbox keeps each entry once).
    cursor = f"costs.permits_synced_since.{site}.{cost_rules.version}"
    since = hub_store.get_cursor(cursor)
    started = datetime.now(timezone.utc)
    entries, problems = [], []
    closed = hub_store.load_permits(
        statuses=("closed",),
        site=site,
        synced_since=datetime.fromisoformat(since) if since else None,
        without_outbox_entries=since is not None,
    )
    for permit in closed:
        try:
            entries.extend(cost_entries(permit, cost_rules))
        except CostError as exc:
            problems.append(cost_problem(permit, exc, rules.cost_rules_file))
    new = hub_store.enqueue_entries(entries, {e.entry_key: str(message_uuid(e.entry_key)) for e in entries})
    failpoint("costs.after_enqueue")
    quarantined = hub_store.quarantine(problems)
    hub_store.set_cursor(cursor, (started - SYNC_LEEWAY).isoformat())
    return MaterializeResult(
        metadata={
            "permits_costed": len(closed),
            "dagster/row_count": len(entries),
            "new_in_outbox": new,
            "quarantined_new": quarantined,
            "total_amount": float(sum((e.amount for e in entries), Decimal(0))),
            "rule_version": cost_rules.version,
            "preview": preview(
                [{"entry_key": e.entry_key, "amount": str(e.amount), "cost_center": e.cost_center} for e in entries]
            ),
        }
    )
