"""`erp_postings`: the ERP outbox writer (`hub.writers.erp_outbox`) run per site, with its checks."""

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

from hub.assets.common import column_schema, preview
from hub.assets.sites import site_of, site_partitions
from hub.assets.systems import ERP
from hub.connectors.retry import TransientError, VendorRejected
from hub.mappings.engine import load_mapping
from hub.resources import ErpResource, HubStoreResource
from hub.steps.ledger import reconcile_site
from hub.store import tables
from hub.store.locks import SiteBusy, site_lock
from hub.writers.erp_outbox import post_outbox

#: The job whose ledger check is incremental; every other run (the health-check schedule, a
#: launch from the UI) checks the whole ledger.
INCREMENTAL_JOB = "full_sync"
# How long the step waits for another run that is posting the same site's entries.
POSTING_LOCK_WAIT_S = 5.0


@asset(
    group_name="erp",
    deps=["safety_cost_entries", ERP],
    description="Outbox entries posted to the ERP, with document numbers.",
    metadata={"dagster/column_schema": column_schema(tables.erp_outbox)},
    partitions_def=site_partitions,
)
def erp_postings(context: AssetExecutionContext, store: HubStoreResource, erp: ErpResource) -> MaterializeResult:
    """One run at a time posts a site's entries, whoever launched it (a schedule, `hub sync`, the
    UI): the outbox is read and posted under the site's posting lock. A run that cannot get it
    within POSTING_LOCK_WAIT_S fails and sends nothing; its entries stay pending for the next run."""
    site = site_of(context)
    try:
        with site_lock(store.database_url, site, wait_s=POSTING_LOCK_WAIT_S, scope="erp-postings"):
            return _post_outbox(store, erp, site)
    except SiteBusy as busy:
        raise Failure(description=str(busy)) from None


def _post_outbox(store: HubStoreResource, erp: ErpResource, site: str) -> MaterializeResult:
    hub_store = store.store()
    client = erp.client()
    outcome = post_outbox(hub_store, client, load_mapping(erp.mapping), site)
    summary = hub_store.outbox_summary(site=site)
    metadata = {
        "dagster/row_count": sum(summary.values()),
        "posted_now": outcome.posted,
        "rejected_now": outcome.rejected,
        "erp_calls": client.calls,
        **{f"outbox_{status}": count for status, count in sorted(summary.items())},
        "preview": preview(
            [
                {"entry_key": r["entry_key"], "document": r["accounting_document"], "status": r["status"]}
                for r in hub_store.load_outbox(site=site, limit=10)
            ]
        ),
    }
    if outcome.failure:
        raise Failure(
            description=f"{len(outcome.unclear)} entries unclear after: {outcome.failure} "
            "(they are asked for by reference before any resend)",
            metadata=metadata,
        )
    return MaterializeResult(metadata=metadata)


@asset_check(
    asset="erp_postings",
    description="Every outbox entry is confirmed by an ERP document number.",
    partitions_def=site_partitions,
)
def erp_entries_confirmed(context: AssetCheckExecutionContext, store: HubStoreResource) -> AssetCheckResult:
    hub_store, site = store.store(), site_of(context)
    unconfirmed = sorted(r["entry_key"] for r in hub_store.load_outbox(site=site, unconfirmed_only=True))
    return AssetCheckResult(
        passed=not unconfirmed,
        metadata={
            "entries": sum(hub_store.outbox_summary(site=site).values()),
            "unconfirmed": ", ".join(unconfirmed[:50]) or "none",
        },
    )


@asset_check(
    asset="erp_postings",
    description="The ERP's ledger holds exactly what the hub recorded as posted: each entry once, as the hub booked it. "
    "A sync checks the documents numbered since its last clean pass; the health checks check the whole ledger.",
    partitions_def=site_partitions,
)
def erp_ledger_reconciled(
    context: AssetCheckExecutionContext, store: HubStoreResource, erp: ErpResource
) -> AssetCheckResult:
    site = site_of(context)
    try:
        check = reconcile_site(
            store.store(), erp.client(), load_mapping(erp.mapping), site, full=context.run.job_name != INCREMENTAL_JOB
        )
    except (TransientError, VendorRejected) as exc:
        return AssetCheckResult(passed=False, severity=AssetCheckSeverity.ERROR, metadata={"erp_error": str(exc)})
    found = check.found
    mismatches = [
        *(
            {"kind": "booked_under_another_company", "entry_key": k, "detail": f"an entry of site {owner} booked under {site}"}
            for k, owner in sorted(check.elsewhere.items())
        ),
        *({"kind": "missing_in_erp", "entry_key": k, "detail": ""} for k in found.missing_in_erp),
        *({"kind": "not_recorded_in_hub", "entry_key": k, "detail": ""} for k in found.not_recorded_in_hub),
        *({"kind": "posted_twice", "entry_key": k, "detail": ""} for k in found.posted_twice),
        *(
            {"kind": "booked_differently", "entry_key": k, "detail": "; ".join(fields)}
            for k, fields in found.booked_differently.items()
        ),
    ]
    keys = list(dict.fromkeys(m["entry_key"] for m in mismatches))
    return AssetCheckResult(
        passed=check.clean,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "pass": "full" if check.full else f"documents from {check.from_document}",
            "outbox_entries": check.outbox_entries,
            "erp_documents": len(check.documents),
            "missing_in_erp": len(found.missing_in_erp),
            "not_recorded_in_hub": len(found.not_recorded_in_hub),
            "posted_twice": len(found.posted_twice),
            "booked_differently": len(found.booked_differently),
            "booked_under_another_company": len(check.elsewhere),
            "entry_keys": ", ".join(keys[:50]) or "none",
            "mismatches": preview(mismatches, limit=50),
        },
    )
