"""Rows of the look-up tables a mapping requests, kept and fetched again once they are old.

A table declared with ``operation:`` is read through the endpoint like any other records; the
caller hands `LookupCache.tables` its connector's ``fetch`` (no I/O happens here), so the
transport only ever sees the table's name as a kind of record, never a canonical field. A
table that has never loaded is absent, and a record needing it is quarantined saying so; so is
a record whose value the table holds twice with different answers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from hub.mappings.dates import parse_iso_duration
from hub.mappings.engine import Mapping as LoadedMapping
from hub.mappings.values import as_text, getter, is_empty

Fetch = Callable[[str], Mapping[str, list[Any]]]  # operation name -> records by kind


class LookupCache:
    """One mapping's requested tables: rows by table, refreshed on each table's ``refresh``."""

    def __init__(self, mapping: LoadedMapping):
        self.mapping = mapping
        self._requested = {name: t for name, t in mapping.spec.tables.items() if t.operation is not None}
        self._rows: dict[str, dict[str, str]] = {}
        self._loaded_at: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def _refresh(self, name: str) -> timedelta:
        return parse_iso_duration(self._requested[name].refresh)

    def stale(self, now: datetime) -> list[str]:
        """Tables never loaded, or loaded longer ago than their refresh interval."""
        return [n for n in self._requested if n not in self._loaded_at or now - self._loaded_at[n] >= self._refresh(n)]

    def tables(self, fetch: Fetch, now: datetime) -> dict[str, dict[str, str]]:
        """The tables' rows, fetching those that are stale; a failed fetch raises and keeps the old rows."""
        with self._lock:
            for name in self.stale(now):
                table = self._requested[name]
                assert table.operation is not None and table.key is not None and table.value is not None
                records = fetch(table.operation).get(name, [])
                get_key, get_value = getter(table.key), getter(table.value)
                rows: dict[str, str] = {}
                ambiguous: set[str] = set()
                for record in records:
                    if not isinstance(record, Mapping):
                        continue
                    key, value = get_key(record), get_value(record)
                    if not is_empty(key) and not is_empty(value):
                        text, found = as_text(key).strip(), as_text(value).strip()
                        if rows.setdefault(text, found) != found:
                            ambiguous.add(text)
                # A key the system gives two values (a label two sites use differently) is no answer.
                self._rows[name] = {k: v for k, v in rows.items() if k not in ambiguous}
                self._loaded_at[name] = now
            return {name: dict(rows) for name, rows in self._rows.items()}
