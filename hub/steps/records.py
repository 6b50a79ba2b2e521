"""Handing vendor records to the mapping and mapped records to the store: look-up tables,
lineage stamps and quarantine of the rejects."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

from hub.failpoints import failpoint
from hub.mappings.engine import InboundResult, Mapping, Rejected
from hub.mappings.lookups import LookupCache
from hub.store.repository import HubStore, QuarantineItem

#: One cache per mapping file (name and content hash): an edited file starts with fresh tables.
_CACHES: dict[tuple[str, str], LookupCache] = {}
_CACHES_LOCK = threading.Lock()


def requests_tables(mapping: Mapping) -> bool:
    """Whether the mapping has look-up tables that are fetched from its system (not inline)."""
    return any(table.operation is not None for table in mapping.spec.tables.values())


def lookup_tables(mapping: Mapping, client: Any, now: datetime | None = None) -> dict[str, dict[str, str]]:
    """The rows of the look-up tables the mapping requests, fetched through the system's open
    `client` when stale (the transport sees only the table's operation); {} when it requests none.

    A failed fetch raises, as a failed request for the records themselves would: records are
    never mapped without a table they need.
    """
    if not requests_tables(mapping):
        return {}
    with _CACHES_LOCK:
        cache = _CACHES.setdefault((mapping.name, mapping.sha256), LookupCache(mapping))
    return cache.tables(client.fetch, now or datetime.now(timezone.utc))


def map_inbound(mapping: Mapping, client: Any, kind: str, vendor_records: Iterable[Any]) -> InboundResult:
    """`Mapping.inbound` with the tables the mapping requests: every ingest path maps through here."""
    return mapping.inbound(kind, vendor_records, tables=lookup_tables(mapping, client))


def lineage_of(mapping: Mapping) -> tuple[str, str]:
    return mapping.name, mapping.sha256


def mapping_label(mapping: Mapping) -> str:
    return f"{mapping.name} sha256:{mapping.sha256[:12]}"


def quarantine_rejects(store: HubStore, system: str, mapping: Mapping, rejected: Sequence[Rejected]) -> int:
    failpoint("quarantine.before_write")
    return store.quarantine(
        [
            QuarantineItem(
                system=system,
                record_kind=item.kind,
                source_key=item.source_key,
                payload=item.payload,
                field=item.field,
                reason=item.reason,
                source_file=str(mapping.source_file),
                partial=item.partial,
            )
            for item in rejected
        ]
    )
