"""`erp_postings`: push the outbox to the ERP exactly once per entry and record document numbers."""

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

from hub.assets.common import column_schema, preview
from hub.assets.sites import site_of, site_partitions
from hub.assets.systems import ERP
from hub.connectors.retry import TransientError, VendorRejected
from hub.failpoints import failpoint
from hub.mappings.engine import load_mapping
from hub.resources import ErpResource, HubStoreResource
from hub.steps.ledger import reconcile_site
from hub.store import tables
from hub.store.locks import SiteBusy, site_lock
from hub.store.repository import AuditBatch, OutboxRow, QuarantineItem

#: The job whose ledger check is incremental; every other run (the health-check schedule, a
#: launch from the UI) checks the whole ledger.
INCREMENTAL_JOB = "full_sync"
# How long the step waits for another run that is posting the same site's entries.
POSTING_LOCK_WAIT_S = 5.0


def _audit_body(row: OutboxRow, **erp_answer) -> dict:
    """What the audit log keeps of a settled entry: which entry, what money, and the ERP's answer."""
    entry = row.entry
    return {
        "entry_key": row.entry_key,
        "message_uuid": row.message_uuid,
        "amount": entry.amount,
        "currency": entry.currency,
        "cost_center": entry.cost_center,
        "gl_account": entry.gl_account,
        **erp_answer,
    }


def _mark_posted(hub_store, posted: list[tuple[OutboxRow, str, str | None]]) -> None:
    """(row, accounting document, fiscal year): record the ERP's confirmation and its audit row together."""
    audited = [
        (row.entry_key, _audit_body(row, accounting_document=document, fiscal_year=year))
        for row, document, year in posted
    ]
    hub_store.mark_posted(
        [(row.entry_key, document, year) for row, document, year in posted],
        audit=AuditBatch("erp_posting", audited, datetime.now(timezone.utc)),
    )


def _mark_rejected(hub_store, refused: list[tuple[OutboxRow, str]]) -> None:
    """(row, the ERP's message): record the refusal and its audit row together."""
    audited = [(row.entry_key, _audit_body(row, rejection_message=message)) for row, message in refused]
    hub_store.mark_rejected(
        [(row.entry_key, message) for row, message in refused],
        audit=AuditBatch("erp_rejection", audited, datetime.now(timezone.utc)),
    )


def _settle_unclear(client, hub_store, rows) -> list:
    """An entry whose last send had no clear answer may have landed: ask before sending again."""
    still_to_send, found = [], []
    for row in rows:
        if row.status != "unclear":
            still_to_send.append(row)
            continue
        matches = [m for m in client.find_by_reference(row.entry_key) if m.get("MessageUUID") == row.message_uuid]
        if matches:
            found.append((row, matches[0]["AccountingDocument"], matches[0].get("FiscalYear")))
        else:
            still_to_send.append(row)
    _mark_posted(hub_store, found)
    return still_to_send


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
    mapping = load_mapping(erp.mapping)
    client = erp.client()
    posted = rejected = 0
    failure = ""
    with client:
        rows = _settle_unclear(client, hub_store, hub_store.outbox_to_send(site=site))
        by_uuid = {row.message_uuid: row for row in rows}
        pending = [(row.message_uuid, mapping.outbound("safety_cost_entry", row.entry)) for row in rows]
        sent: set[str] = set()
        failpoint("erp.before_post")
        try:
            for confirmations in client.post_entries(pending):
                failpoint("erp.after_post_before_mark")
                ok = [c for c in confirmations if c.accounting_document]
                refused = [c for c in confirmations if not c.accounting_document]
                _mark_posted(hub_store, [(by_uuid[c.message_uuid], c.accounting_document, c.fiscal_year) for c in ok])
                _mark_rejected(hub_store, [(by_uuid[c.message_uuid], c.error) for c in refused])
                hub_store.quarantine(
                    [
                        QuarantineItem(
                            system="erp",
                            record_kind="safety_cost_entry",
                            source_key=by_uuid[c.message_uuid].entry_key,
                            payload=by_uuid[c.message_uuid].entry.model_dump(mode="json"),
                            field=None,
                            reason=f"ERP refused entry {by_uuid[c.message_uuid].entry_key}: {c.error}",
                            source_file=None,
                        )
                        for c in refused
                    ]
                )
                sent.update(c.message_uuid for c in confirmations)
                posted += len(ok)
                rejected += len(refused)
                failpoint("erp.between_batches")
        except (TransientError, VendorRejected) as exc:
            unsent = [row.entry_key for row in rows if row.message_uuid not in sent]
            hub_store.mark_unclear(unsent, str(exc))
            failure = f"{len(unsent)} entries unclear after: {exc}"
    summary = hub_store.outbox_summary(site=site)
    metadata = {
        "dagster/row_count": sum(summary.values()),
        "posted_now": posted,
        "rejected_now": rejected,
        "erp_calls": client.calls,
        **{f"outbox_{status}": count for status, count in sorted(summary.items())},
        "preview": preview(
            [
                {"entry_key": r["entry_key"], "document": r["accounting_document"], "status": r["status"]}
                for r in hub_store.load_outbox(site=site, limit=10)
            ]
        ),
    }
    if failure:
        raise Failure(description=failure + " (they are asked for by reference before any resend)", metadata=metadata)
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
        check = reconcile_site(store.store(), erp.client(), site, full=context.run.job_name != INCREMENTAL_JOB)
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
