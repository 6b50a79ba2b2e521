"""ERP journal-entry API: bulk posting with per-entry message UUIDs, lookup by reference.

The ERP drops a repeated message UUID, so re-sending an entry under its own stable
UUID can never post it twice; asking by reference settles an unclear outcome.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from uuid import uuid4

from hub.connectors.rest import RestClient


@dataclass(frozen=True)
class Confirmation:
    message_uuid: str
    accounting_document: str | None
    fiscal_year: str | None
    duplicate: bool
    error: str | None  # the ERP's own words when it refused the entry


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
    def __init__(self, rest: RestClient, batch_size: int):
        self.rest = rest
        self.batch_size = batch_size

    def post_entries(self, entries: Sequence[tuple[str, dict[str, Any]]]) -> Iterator[list[Confirmation]]:
        """Post (message UUID, vendor journal entry) pairs in bulk, yielding each batch's confirmations.

        Yielding per batch lets the caller record what landed before a later batch fails.
        """
        for start in range(0, len(entries), self.batch_size):
            chunk = entries[start : start + self.batch_size]
            body = {
                "MessageHeader": {
                    "ID": f"hub-{uuid4()}",
                    "CreationDateTime": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
                },
                "JournalEntryCreateRequest": [
                    {"MessageHeader": {"UUID": message_uuid}, **vendor_entry} for message_uuid, vendor_entry in chunk
                ],
            }
            reply = self.rest.request("POST", "/api/v1/journal-entries/bulk", json=body)
            yield [_confirmation(raw) for raw in reply["JournalEntryCreateConfirmation"]]

    def find_by_reference(self, reference: str) -> list[dict[str, Any]]:
        reply = self.rest.request("GET", "/api/v1/journal-entries", params={"DocumentReferenceID": reference})
        return reply["results"]
