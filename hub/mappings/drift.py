"""Schema drift: vendor fields that arrive but that no field spec reads.

A vendor that adds or renames a field does not break a mapping; the field is silently unused.
Counting such fields per run makes the change visible (an asset check can watch the count).
Fields a mapping deliberately leaves out are listed under the kind's ``ignore``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from collections.abc import Mapping as AnyMapping
from typing import Any

from hub.mappings.spec import FieldSpec, InboundSpec, key_paths

ELEMENT = "[*]"  # one element of a list, in reported paths: "reasons[*].code"
_NESTED = (dict, list, tuple)  # vendor records are parsed JSON or XML: plain containers


def read_paths(fields: dict[str, FieldSpec]) -> set[str]:
    """Every vendor path the field specs read; a path read whole covers everything under it."""
    paths: set[str] = set()
    for spec in fields.values():
        if spec.from_ is not None:
            paths.add(spec.from_)
            if spec.each_fields is not None:
                paths.discard(spec.from_)
                paths |= {f"{spec.from_}{ELEMENT}.{sub}" for sub in read_paths(spec.each_fields)}
        paths.update(spec.concat or ())
        paths.update(c if isinstance(c, str) else c.from_ for c in spec.first or ())
        if spec.reduce is not None:
            paths.add(spec.reduce.over)  # the child list is read whole: its rows' fields are the filter's
        if spec.time_of_day is not None:
            paths.add(spec.time_of_day.from_)
        if spec.convert is not None:
            paths.add(spec.convert.unit)
    return paths


def _covered(path: str, by: set[str]) -> bool:
    """Read itself, inside something read whole, or a list whose elements are read (even when empty)."""
    return any(path == p or path.startswith((p + ".", p + ELEMENT)) or p.startswith(path + ELEMENT) for p in by)


def _leaves(value: Any, prefix: str) -> Iterator[str]:
    """Leaf paths of a vendor object; objects inside lists are walked as "list[*].field"."""
    if isinstance(value, AnyMapping) and value:
        for key, inner in value.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(inner, _NESTED):
                yield from _leaves(inner, path)
            else:
                yield path
    elif isinstance(value, (list, tuple)) and any(isinstance(item, AnyMapping) for item in value):
        for item in value:
            yield from _leaves(item, prefix + ELEMENT)
    else:
        yield prefix


class _Uncovered:
    """Whether a path is read, remembered per path: a batch repeats the same few paths in
    every record, so each is judged once rather than once per record."""

    def __init__(self, read: set[str]):
        self.read = read
        self.known: dict[str, bool] = {}

    def __call__(self, path: str) -> bool:
        answer = self.known.get(path)
        if answer is None:
            answer = self.known[path] = not _covered(path, self.read)
        return answer


def unmapped_fields(spec: InboundSpec, vendor_records: Iterable[Any]) -> dict[str, int]:
    """Vendor field path -> in how many records it appeared unread (per element for records_at kinds)."""
    ignored = set(spec.ignore)
    counts: Counter[str] = Counter()
    if spec.records_at is None:
        unread = _Uncovered(read_paths(spec.fields) | set(key_paths(spec.key)) | ignored)
        flat_shapes: Counter[tuple[str, ...]] = Counter()
        for record in vendor_records:
            if not isinstance(record, AnyMapping):
                continue
            if any(isinstance(value, _NESTED) for value in record.values()):
                counts.update({p for p in _leaves(record, "") if unread(p)})
            else:  # a flat record's leaves are its keys: judged once per distinct key set
                flat_shapes[tuple(record)] += 1
        for keys, records in flat_shapes.items():
            for path in {str(k) for k in keys if unread(str(k))}:
                counts[path] += records
        return dict(sorted(counts.items()))
    outer_unread = _Uncovered({spec.records_at} | read_paths(spec.parent_fields) | set(key_paths(spec.parent_key)) | ignored)
    inner_unread = _Uncovered(read_paths(spec.fields) | set(key_paths(spec.key)))
    not_ignored = _Uncovered(ignored)
    children_prefix = spec.records_at + ELEMENT + "."
    for record in vendor_records:
        if not isinstance(record, AnyMapping):
            continue
        counts.update({p for p in _leaves(record, "") if outer_unread(p)})
        children = _child_list(record, spec.records_at)
        for child in children:
            if isinstance(child, AnyMapping):
                found = {children_prefix + p for p in _leaves(child, "") if inner_unread(p)}
                counts.update({p for p in found if not_ignored(p)})
    return dict(sorted(counts.items()))


def _child_list(record: AnyMapping[str, Any], path: str) -> list[Any]:
    current: Any = record
    for part in path.split("."):
        current = current.get(part) if isinstance(current, AnyMapping) else None
    return list(current) if isinstance(current, (list, tuple)) else []
