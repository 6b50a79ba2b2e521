"""Handing mapped records to the store: lineage stamps and quarantine of the rejects."""

from __future__ import annotations

from collections.abc import Sequence

from hub.failpoints import failpoint
from hub.mappings.engine import Mapping, Rejected
from hub.store.repository import HubStore, QuarantineItem


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
