"""ERP outbox write-back: every safety-cost entry reaches the ERP's ledger exactly once.

Each outbox row keeps a stable idempotency key (its message UUID), sent as the entry's message
UUID: the ERP drops a repeat within its window, so sending again never books twice. An entry
whose last send had no clear answer (a timeout after the ERP may have committed, a reply that
did not answer it) is first asked for by reference, and marked posted when the ERP holds it
under that key; only otherwise is it sent again. A refusal, the ERP's or the flavor's own (items
that do not balance), is recorded with its words, audited and quarantined, never dropped.

The flavor file builds every body and reads every answer (`erp_confirmation`, `erp_document`),
so nothing here names a vendor field; the transport (`hub.connectors.erp`) only carries them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from hub.connectors.erp import ErpClient
from hub.connectors.retry import TransientError, VendorRejected
from hub.failpoints import failpoint
from hub.mappings.engine import Mapping, OutboundError
from hub.model import ErpConfirmation, ErpDocument
from hub.store.repository import AuditBatch, OutboxRow, QuarantineItem

ENTRY_KIND = "safety_cost_entry"


@dataclass
class Posting:
    """What one pass over a site's outbox achieved; `unclear` entries are asked for by reference next time."""

    posted: int = 0
    rejected: int = 0
    unclear: list[str] = field(default_factory=list)
    failure: str | None = None


def _mapped(mapping: Mapping, kind: str, raw: Iterable[Any], what: str) -> list[Any]:
    """The ERP's records of one kind as canonical records; one that does not map makes the answer unreadable."""
    result = mapping.inbound(kind, raw)
    if result.quarantined:
        raise TransientError(f"ERP {what} is not the shape {mapping.name} reads: {result.quarantined[0].reason}")
    return result.records


def documents_of(client: ErpClient, mapping: Mapping, reference: str) -> list[ErpDocument]:
    """The documents the ERP booked under one reference."""
    return _mapped(mapping, "erp_document", client.find_by_reference(reference), f"documents of {reference}")


def ledger_documents(
    client: ErpClient, mapping: Mapping, company: str | None = None, from_document: int | None = None
) -> list[ErpDocument]:
    """Every document in the ERP's ledger (of one company, from one number on), each once.

    Documents are keyed by company, year and number, so a document seen on two pages (the
    ledger grew while it was listed) is not mistaken for a double booking.
    """
    documents: dict[tuple[str, str, str], ErpDocument] = {}
    for number, page in enumerate(client.ledger_pages(company, from_document), start=1):
        for doc in _mapped(mapping, "erp_document", page, f"ledger page {number}"):
            documents.setdefault((doc.company_code, doc.fiscal_year, doc.accounting_document), doc)
    return list(documents.values())


def _audit_body(row: OutboxRow, **answer: Any) -> dict[str, Any]:
    """What the audit log keeps of a settled entry: which entry, what money, and the answer."""
    entry = row.entry
    return {
        "entry_key": row.entry_key,
        "message_uuid": row.message_uuid,
        "amount": entry.amount,
        "currency": entry.currency,
        "cost_center": entry.cost_center,
        "gl_account": entry.gl_account,
        **answer,
    }


def _mark_posted(hub_store, posted: Sequence[tuple[OutboxRow, str, str | None]]) -> None:
    """(row, accounting document, fiscal year): the confirmation and its audit row together."""
    audited = [
        (row.entry_key, _audit_body(row, accounting_document=document, fiscal_year=year)) for row, document, year in posted
    ]
    hub_store.mark_posted(
        [(row.entry_key, document, year) for row, document, year in posted],
        audit=AuditBatch("erp_posting", audited, datetime.now(timezone.utc)),
    )


def _mark_rejected(hub_store, refused: Sequence[tuple[OutboxRow, str]]) -> None:
    """(row, why): the refusal, its audit row and its quarantine item, so it can be replayed."""
    if not refused:
        return
    audited = [(row.entry_key, _audit_body(row, rejection_message=message)) for row, message in refused]
    hub_store.mark_rejected(
        [(row.entry_key, message) for row, message in refused],
        audit=AuditBatch("erp_rejection", audited, datetime.now(timezone.utc)),
    )
    hub_store.quarantine(
        [
            QuarantineItem(
                system="erp",
                record_kind=ENTRY_KIND,
                source_key=row.entry_key,
                payload=row.entry.model_dump(mode="json"),
                field=None,
                reason=f"ERP refused entry {row.entry_key}: {message}",
                source_file=None,
            )
            for row, message in refused
        ]
    )


def _settle_unclear(client: ErpClient, mapping: Mapping, hub_store, rows: Sequence[OutboxRow]) -> list[OutboxRow]:
    """An entry whose last send had no clear answer may have landed: ask before sending again."""
    still_to_send, found = [], []
    for row in rows:
        if row.status != "unclear":
            still_to_send.append(row)
            continue
        booked = [d for d in documents_of(client, mapping, row.entry_key) if d.message_uuid == row.message_uuid]
        if booked:
            found.append((row, booked[0].accounting_document, booked[0].fiscal_year))
        else:
            still_to_send.append(row)
    _mark_posted(hub_store, found)
    return still_to_send


def _bodies(mapping: Mapping, rows: Sequence[OutboxRow]) -> tuple[list[tuple[OutboxRow, dict]], list[tuple[OutboxRow, str]]]:
    """(row, vendor body) for each row the flavor can build, and (row, why) for each it refuses."""
    sent_at = datetime.now(timezone.utc)
    built, refused = [], []
    for row in rows:
        message = {"idempotency_key": row.message_uuid, "sent_at": sent_at}
        try:
            built.append((row, mapping.outbound(ENTRY_KIND, row.entry, message)))
        except OutboundError as exc:
            refused.append((row, f"not sent: {exc.reason}"))
    return built, refused


def post_outbox(hub_store, client: ErpClient, mapping: Mapping, site: str) -> Posting:
    """Post a site's open outbox entries; the caller holds the site's posting lock."""
    outcome = Posting()
    with client:
        rows = _settle_unclear(client, mapping, hub_store, hub_store.outbox_to_send(site=site))
        built, unbuildable = _bodies(mapping, rows)
        _mark_rejected(hub_store, unbuildable)
        outcome.rejected += len(unbuildable)
        by_uuid = {row.message_uuid: row for row, _ in built}
        answered: set[str] = set()
        failpoint("erp.before_post")
        try:
            for raw in client.post_entries([body for _, body in built]):
                failpoint("erp.after_post_before_mark")
                confirmations: list[ErpConfirmation] = [
                    c for c in mapping.inbound("erp_confirmation", raw).records if c.message_uuid in by_uuid
                ]
                ok = [c for c in confirmations if c.posted]
                refused = [c for c in confirmations if not c.posted]
                _mark_posted(hub_store, [(by_uuid[c.message_uuid], c.accounting_document, c.fiscal_year) for c in ok])
                _mark_rejected(hub_store, [(by_uuid[c.message_uuid], c.refusal) for c in refused])
                answered.update(c.message_uuid for c in confirmations)
                outcome.posted += len(ok)
                outcome.rejected += len(refused)
                failpoint("erp.between_batches")
        except (TransientError, VendorRejected) as exc:
            outcome.failure = str(exc)
        # Sent, but no readable answer names it: it may have landed, so it is asked for first next time.
        outcome.unclear = [row.entry_key for row, _ in built if row.message_uuid not in answered]
        if outcome.unclear:
            hub_store.mark_unclear(outcome.unclear, outcome.failure or "the ERP's reply did not confirm it")
    return outcome
