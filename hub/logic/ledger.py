"""Reconciliation: does the ERP's ledger hold exactly what the hub's outbox says it posted?

A document is the hub's when its reference is an outbox entry key, or its message UUID is
one the hub issued (an outbox UUID, or the UUID the hub derives from the document's
reference, which still recognises the hub's postings if the outbox lost rows). Documents
booked by anyone else are not the hub's business and are left out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from hub.logic.costs import message_uuid
from hub.model import ErpDocument, SafetyCostEntry


@dataclass(frozen=True)
class OutboxEntry:
    """An outbox row as reconciliation sees it; `posted_as` is the recorded document number."""

    entry_key: str
    message_uuid: str
    posted_as: str | None
    entry: SafetyCostEntry


@dataclass
class LedgerMismatches:
    """Entry keys per kind of mismatch; `booked_differently` also says which fields differ."""

    missing_in_erp: list[str] = field(default_factory=list)
    not_recorded_in_hub: list[str] = field(default_factory=list)
    posted_twice: list[str] = field(default_factory=list)
    booked_differently: dict[str, list[str]] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not (self.missing_in_erp or self.not_recorded_in_hub or self.posted_twice or self.booked_differently)


def _differences(entry: OutboxEntry, doc: ErpDocument) -> list[str]:
    booked = {
        "accounting_document": (entry.posted_as, doc.accounting_document),
        "reference": (entry.entry_key, doc.reference),
        "amount": (entry.entry.amount, doc.amount),
        "cost_center": (entry.entry.cost_center, doc.cost_center),
        "gl_account": (entry.entry.gl_account, doc.gl_account),
    }
    return [f"{name} hub={ours} erp={theirs}" for name, (ours, theirs) in booked.items() if ours != theirs]


def reconcile(outbox: Sequence[OutboxEntry], documents: Sequence[ErpDocument]) -> LedgerMismatches:
    by_key = {e.entry_key: e for e in outbox}
    by_uuid = {e.message_uuid: e for e in outbox}

    def owner(doc: ErpDocument) -> str | None:
        """The entry key a document belongs to, or None when the hub did not post it."""
        if doc.message_uuid in by_uuid:
            return by_uuid[doc.message_uuid].entry_key
        if doc.reference in by_key or doc.message_uuid == str(message_uuid(doc.reference)):
            return doc.reference
        return None

    docs_of: dict[str, list[ErpDocument]] = defaultdict(list)
    for doc in documents:
        key = owner(doc)
        if key is not None:
            docs_of[key].append(doc)

    result = LedgerMismatches()
    for key in sorted(set(docs_of) | {e.entry_key for e in outbox if e.posted_as}):
        entry, docs = by_key.get(key), docs_of.get(key, [])
        if len(docs) > 1:
            result.posted_twice.append(key)
        if entry is None or entry.posted_as is None:
            result.not_recorded_in_hub.append(key)
        elif not docs:
            result.missing_in_erp.append(key)
        else:
            # The document the hub's own UUID booked is the one to compare; another is a twin.
            doc = next((d for d in docs if d.message_uuid == entry.message_uuid), docs[0])
            differences = _differences(entry, doc)
            if differences:
                result.booked_differently[key] = differences
    return result
