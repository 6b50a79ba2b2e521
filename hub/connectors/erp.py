"""ERP transport: bulk posts, asking by reference, and the paged ledger listing, as vendor records.

Paths, protocols (REST or SOAP), batch and page sizes are the flavor file's (operations
`post_entries`, `find_by_reference` and `ledger`, whose replies hold records of kinds
`confirmation` and `document`); what each record means is the flavor's inbound mapping, read
by the writer (`hub.writers.erp_outbox`). What stays here is the message around a batch: its
own ID, UUID and creation time, and a few batches in flight at once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from typing import Any
from uuid import uuid4

from hub.connectors.concurrency import bounded_map
from hub.connectors.operations import SystemClient

VendorRecord = dict[str, Any]


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

    def post_entries(self, entries: Sequence[VendorRecord]) -> Iterator[list[VendorRecord]]:
        """Post vendor entry bodies in bulk, yielding each batch's confirmations as the ERP wrote them.

        Yielding per batch lets the caller record what landed before a later batch fails; a
        few batches are in flight at once (the flavor's `concurrency`).
        """
        size = self.operations.size("post_entries")
        chunks = [entries[start : start + size] for start in range(0, len(entries), size)]
        for _, reply in bounded_map(self._post_chunk, chunks, self.operations.concurrency):
            yield reply.get("confirmation", [])

    def _post_chunk(self, chunk: Sequence[VendorRecord]) -> dict[str, list[Any]]:
        return self.operations.fetch(
            "post_entries",
            message_id=f"hub-{uuid4()}",
            message_uuid=str(uuid4()),
            created_at=datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
            entries=list(chunk),
        )

    def find_by_reference(self, reference: str) -> list[VendorRecord]:
        """What the ERP booked under one reference."""
        return self.operations.fetch("find_by_reference", reference=reference).get("document", [])

    def ledger_pages(self, company: str | None = None, from_document: int | None = None) -> Iterator[list[VendorRecord]]:
        """The ERP's ledger (of one company code, if given; numbered from `from_document` on,
        if given), one page of documents at a time."""
        values: dict[str, str] = {} if company is None else {"company": company}
        if from_document is not None:
            values["from_document"] = str(from_document)
        for page in self.operations.pages("ledger", **values):
            yield page.get("document", [])
