"""ERP journal-entry API: bulk posting with per-entry message UUIDs, lookup by reference,
and the paged ledger listing.

The ERP drops a repeated message UUID, so re-sending an entry under its own stable
UUID can never post it twice; asking by reference settles an unclear outcome; the
ledger listing lets the hub prove its records match what the ERP booked.

Paths, batch and page sizes are the flavor file's (operations `post_entries`,
`find_by_reference` and `ledger`, whose replies hold records of kinds `confirmation` and
`document`); what stays here is the posting's meaning: one message UUID per entry, and
reading the ERP's confirmations and documents.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any
from uuid import uuid4

from hub.connectors.concurrency import bounded_map
from hub.connectors.operations import SystemClient
from hub.connectors.retry import TransientError


@dataclass(frozen=True)
class Confirmation:
    message_uuid: str
    accounting_document: str | None
    fiscal_year: str | None
    duplicate: bool
    error: str | None  # the ERP's own words when it refused the entry


@dataclass(frozen=True)
class LedgerDocument:
    """One document as the ERP booked it."""

    accounting_document: str
    company_code: str
    fiscal_year: str
    reference: str
    message_uuid: str | None
    gl_account: str
    cost_center: str
    amount: Decimal
    currency: str


def _ledger_document(raw: dict[str, Any]) -> LedgerDocument:
    return LedgerDocument(
        accounting_document=str(raw["AccountingDocument"]),
        company_code=raw["CompanyCode"],
        fiscal_year=str(raw["FiscalYear"]),
        reference=raw["DocumentReferenceID"],
        message_uuid=raw.get("MessageUUID"),
        gl_account=raw["GLAccount"],
        cost_center=raw["CostCenter"],
        amount=Decimal(str(raw["Amount"])),
        currency=raw["TransactionCurrency"],
    )


def _confirmation(raw: dict[str, Any]) -> Confirmation:
    log = raw.get("Log") or {}
    doc = raw.get("JournalEntry") or {}
    refused = int(log.get("MaximumLogItemSeverityCode") or 1) >= 3 or not doc.get("AccountingDocument")
    notes = "; ".join(item.get("Note", "") for item in log.get("Item", []) if item.get("Note"))
    return Confirmation(
        message_uuid=raw["MessageHeader"]["UUID"],
        accounting_document=None if refused else doc["AccountingDocument"],
        fiscal_year=None if refused else doc.get("FiscalYear"),
        duplicate=bool(raw.get("Duplicate")),
        error=(notes or "refused without a message") if refused else None,
    )


class ErpClient:
    def __init__(self, operations: SystemClient):
        self.operations = operations

    def __enter__(self) -> ErpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.operations.close()

    @property
    def calls(self) -> int:
        return self.operations.calls

    def post_entries(self, entries: Sequence[tuple[str, dict[str, Any]]]) -> Iterator[list[Confirmation]]:
        """Post (message UUID, vendor journal entry) pairs in bulk, yielding each batch's confirmations.

        Yielding per batch lets the caller record what landed before a later batch fails; a
        few batches are in flight at once (the flavor's `concurrency`).
        """
        size = self.operations.size("post_entries")
        chunks = [entries[start : start + size] for start in range(0, len(entries), size)]
        for _, reply in bounded_map(self._post_chunk, chunks, self.operations.concurrency):
            yield [_confirmation(raw) for raw in reply.get("confirmation", [])]

    def _post_chunk(self, chunk: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
        return self.operations.fetch(
            "post_entries",
            message_id=f"hub-{uuid4()}",
            created_at=datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
            entries=[{"MessageHeader": {"UUID": message_uuid}, **vendor_entry} for message_uuid, vendor_entry in chunk],
        )

    def find_by_reference(self, reference: str) -> list[dict[str, Any]]:
        return self.operations.fetch("find_by_reference", reference=reference).get("document", [])

    def documents_of(self, reference: str) -> list[LedgerDocument]:
        """The documents booked under one reference, as the ledger listing shows them."""
        try:
            return [_ledger_document(raw) for raw in self.find_by_reference(reference)]
        except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
            raise TransientError(f"ERP documents of {reference} are not the documented shape: {exc!r}") from None

    def list_documents(self, company: str | None = None, from_document: int | None = None) -> list[LedgerDocument]:
        """Every document in the ERP's ledger (of one company code, if given; numbered from
        `from_document` on, if given), page by page, each once.

        Documents are keyed by company, year and number, so a document seen on two pages
        (the ledger grew while it was listed) is not mistaken for a double booking.
        """
        documents: dict[tuple[str, str, str], LedgerDocument] = {}
        values: dict[str, str] = {} if company is None else {"company": company}
        if from_document is not None:
            values["from_document"] = str(from_document)
        for number, page in enumerate(self.operations.pages("ledger", **values), start=1):
            try:
                batch = [_ledger_document(raw) for raw in page.get("document", [])]
            except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
                raise TransientError(f"ERP ledger page {number} is not the documented shape: {exc!r}") from None
            for doc in batch:
                documents.setdefault((doc.company_code, doc.fiscal_year, doc.accounting_document), doc)
        return list(documents.values())
