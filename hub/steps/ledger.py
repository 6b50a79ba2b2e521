"""Reconciling a site's outbox with its company's ledger: in full, or only what is new since the last clean pass.

A full pass lists every document of the company. An incremental pass (a sync's) lists only
documents from the next number after the last clean pass (ERP document numbers only grow), and
checks them against the outbox entries they name and the entries posted since; an entry posted
since under a lower number means the numbering went back, and the pass is a full one. A document naming an entry
that was already posted under an older number is fetched by its reference too, so a second
booking still shows as `posted_twice`. The cursor moves only after a clean pass: a mismatch
stays in view until it is mended, and the health-check schedule runs full passes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone

from hub.logic.ledger import LedgerMismatches, OutboxEntry, reconcile
from hub.model import ErpDocument, SafetyCostEntry
from hub.writers.erp_outbox import documents_of, ledger_documents

CURSOR = "erp.ledger.reconciled"


@dataclass
class LedgerCheck:
    full: bool
    outbox_entries: int
    documents: list[ErpDocument]
    found: LedgerMismatches
    elsewhere: dict[str, str] = field(default_factory=dict)  # entry key -> the site whose entry it is
    from_document: int | None = None

    @property
    def clean(self) -> bool:
        return self.found.clean and not self.elsewhere


def _number(document: str | None) -> int | None:
    try:
        return int(document) if document is not None else None
    except ValueError:
        return None


def _entries(rows) -> list[OutboxEntry]:
    return [
        OutboxEntry(
            entry_key=r["entry_key"],
            message_uuid=r["message_uuid"],
            posted_as=r["accounting_document"] if r["status"] == "posted" else None,
            entry=SafetyCostEntry.model_validate(r["payload"]),
        )
        for r in rows
    ]


def reconcile_site(hub_store, client, mapping, site: str, *, full: bool) -> LedgerCheck:
    """The site's outbox against its company's ledger, read through the ERP flavor `mapping`;
    raises the client's errors."""
    cursor = json.loads(hub_store.get_cursor(f"{CURSOR}.{site}") or "{}")
    started = datetime.now(timezone.utc)
    start = None if full else cursor.get("from_document")
    changed: list[dict] = []
    if start is not None:
        # Only what changed since the last clean pass is read: an entry posted since has a
        # document number from `start` on, unless the numbering went back.
        changed = hub_store.load_outbox(site=site, updated_since=datetime.fromisoformat(cursor["at"]))
        if any((_number(r["accounting_document"]) or start) < start for r in changed if r["status"] == "posted"):
            start = None  # numbers went back: this is not the ledger last reconciled, so read it all
    outbox = hub_store.load_outbox(site=site) if start is None else []
    with client:
        # The site's company only: its entries booked elsewhere show up as missing here, and as
        # booked under another company in that company's site check.
        documents = ledger_documents(client, mapping, company=site, from_document=start)
        if start is None:
            rows = outbox
        else:
            references, uuids = {d.reference for d in documents}, {d.message_uuid for d in documents}
            posted_since = [r for r in changed if r["status"] == "posted" and (_number(r["accounting_document"]) or start) >= start]
            rows = list({r["entry_key"]: r for r in [*hub_store.outbox_named(site, references, uuids), *posted_since]}.values())
            # An entry posted before the window, named again by a new document: fetch its first booking.
            known = {(d.company_code, d.fiscal_year, d.accounting_document) for d in documents}
            for row in rows:
                posted = _number(row["accounting_document"])
                if row["entry_key"] in references and posted is not None and posted < start:
                    documents += [
                        d
                        for d in documents_of(client, mapping, row["entry_key"])
                        if (d.company_code, d.fiscal_year, d.accounting_document) not in known
                    ]
    found = reconcile(_entries(rows), documents)
    own = {r["entry_key"] for r in rows}
    elsewhere = {
        key: owner for key, owner in hub_store.outbox_sites_of({d.reference for d in documents} - own).items() if owner != site
    }
    check = LedgerCheck(start is None, len(rows), documents, found, elsewhere, start)
    numbers = [n for d in documents if (n := _number(d.accounting_document)) is not None]
    if check.clean and len(numbers) == len(documents):
        following = max([*numbers, (start or 1) - 1]) + 1
        hub_store.set_cursor(f"{CURSOR}.{site}", json.dumps({"from_document": following, "at": started.isoformat()}))
    return check
