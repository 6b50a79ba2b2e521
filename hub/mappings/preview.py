"""What a mapping makes of sample vendor records, and what changes between two mappings.

Used by ``hub mappings preview`` and ``hub mappings diff`` before a mapping file goes live: an
IT team sees each vendor record next to the canonical record it becomes (or why it is
quarantined) and the vendor fields nothing reads. The records may come from any source: a
sample file, a fixture, a live system.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from collections.abc import Mapping as AnyMapping
from dataclasses import dataclass
from typing import Any

from hub.mappings.engine import Mapping, Rejected

@dataclass(frozen=True)
class PreviewRow:
    """One vendor record and what it became: canonical fields, or the rejection."""

    key: str  # the record's key, or "#n" (its position) when it has none
    vendor: dict[str, Any]  # leaf path -> value of the record's own fields (a records_at element's, not its parent's)
    canonical: dict[str, Any] | None  # field -> JSON-ready value; None when quarantined
    rejected: Rejected | None


@dataclass(frozen=True)
class PreviewResult:
    mapping: str  # the mapping's name, e.g. "mes.yaml"
    kind: str
    rows: list[PreviewRow]
    unmapped: dict[str, int]  # vendor field path -> how many records carried it unread

    @property
    def mapped(self) -> list[PreviewRow]:
        return [row for row in self.rows if row.canonical is not None]

    @property
    def quarantined(self) -> list[PreviewRow]:
        return [row for row in self.rows if row.rejected is not None]


def preview(mapping: Mapping, kind: str, records: Iterable[Any]) -> PreviewResult:
    """Map each vendor record on its own, so every row pairs one vendor record with its outcome."""
    records = list(records)
    rows = []
    seen: Counter[str] = Counter()
    for position, unit in enumerate(mapping.vendor_records(kind, records), start=1):
        key = unit.key or f"#{position}"
        seen[key] += 1
        if seen[key] > 1:
            key = f"{key} ({seen[key]})"
        result = mapping.inbound(kind, [unit.payload])
        canonical = result.records[0].model_dump(mode="json") if result.records else None
        rejected = result.quarantined[0] if result.quarantined else None
        rows.append(PreviewRow(key, dict(_vendor_leaves(unit.own)), canonical, rejected))
    return PreviewResult(mapping.name, kind, rows, mapping.unmapped_fields(kind, records))


def _vendor_leaves(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, AnyMapping) and value:
        for key, inner in value.items():
            yield from _vendor_leaves(inner, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, (list, tuple)) and any(isinstance(item, AnyMapping) for item in value):
        for index, item in enumerate(value):
            yield from _vendor_leaves(item, f"{prefix}[{index}]")
    else:
        yield prefix or "(record)", value


# --------------------------------------------------------------------------- diff


@dataclass(frozen=True)
class FieldChange:
    field: str
    old: Any
    new: Any


@dataclass(frozen=True)
class RecordChange:
    """How one record's outcome differs between two mappings."""

    key: str
    change: str  # "changed", "now quarantined", "no longer quarantined", "reason changed", "only old", "only new"
    fields: list[FieldChange]  # "changed": what differs; "no longer quarantined": what it maps to
    reason: str | None  # the new quarantine reason ("now quarantined", "reason changed")


@dataclass(frozen=True)
class MappingDiff:
    old: PreviewResult
    new: PreviewResult
    changes: list[RecordChange]
    unchanged: int


def diff(old: PreviewResult, new: PreviewResult) -> MappingDiff:
    """Per record key: changed canonical fields, and records that became or stopped being quarantined."""
    old_rows, new_rows = {r.key: r for r in old.rows}, {r.key: r for r in new.rows}
    changes, unchanged = [], 0
    for key in [*old_rows, *(k for k in new_rows if k not in old_rows)]:
        before, after = old_rows.get(key), new_rows.get(key)
        if before is None or after is None:
            changes.append(RecordChange(key, "only new" if before is None else "only old", [], None))
        elif before.canonical is not None and after.canonical is None:
            assert after.rejected is not None
            changes.append(RecordChange(key, "now quarantined", [], after.rejected.reason))
        elif before.canonical is None and after.canonical is not None:
            changes.append(RecordChange(key, "no longer quarantined", _field_changes({}, after.canonical), None))
        elif before.canonical is not None and after.canonical is not None:
            fields = _field_changes(before.canonical, after.canonical)
            if fields:
                changes.append(RecordChange(key, "changed", fields, None))
            else:
                unchanged += 1
        elif before.rejected is not None and after.rejected is not None and _why(before) != _why(after):
            changes.append(RecordChange(key, "reason changed", [], after.rejected.reason))
        else:
            unchanged += 1
    return MappingDiff(old, new, changes, unchanged)


def _why(row: PreviewRow) -> str:
    """A rejection's reason without the mapping's name, which differs between the two files."""
    assert row.rejected is not None
    return row.rejected.reason.split(": ", 1)[-1]


def _field_changes(before: dict[str, Any], after: dict[str, Any]) -> list[FieldChange]:
    names = [*before, *(n for n in after if n not in before)]
    return [FieldChange(n, before.get(n), after.get(n)) for n in names if before.get(n) != after.get(n)]
