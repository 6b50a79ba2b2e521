"""The audit log's hash chain: canonical entry bodies, row hashes and verification.

Each row's hash is ``sha256(prev_hash \\n kind \\n ref \\n recorded_at \\n body)``,
where ``prev_hash`` is the previous row's hash (``GENESIS_HASH`` for the first row)
and ``recorded_at`` is ISO 8601 UTC with microseconds. Ids are given by the
appender, contiguous from 1, so a gap means a removed row.

Altering, removing or inserting a row, or swapping two, breaks the chain at
that row. What the chain alone cannot show: rows removed from its end, or a
chain rewritten from some row on by someone who can also write the table.
Both change the head, so compare the head id and hash with a copy kept
outside the database: ``verify(rows, expect_head=...)`` does, and fails when
the kept hash is no longer in the chain.

Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, Literal

GENESIS_HASH = "0" * 64
"""The ``prev_hash`` of the first row: there is no row before it."""

Fault = Literal["altered", "missing", "unlinked", "truncated"]


@dataclass(frozen=True)
class AuditRow:
    """One stored audit row, as the store reads it back."""

    id: int
    kind: str
    ref: str
    body: str
    recorded_at: datetime
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class AuditVerdict:
    """The outcome of walking the chain.

    ``head_id``/``head_hash`` name the last row found intact (``None``/genesis if
    none), ``rows_checked`` how many rows up to it were intact. ``bad_row_id`` is
    the first row at which the chain breaks, ``fault`` how, ``problem`` in words.
    """

    rows_checked: int
    head_id: int | None
    head_hash: str
    bad_row_id: int | None = None
    fault: Fault | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.bad_row_id is None


def _render(value: Any) -> str:
    """Values JSON has no type for, as text that always reads the same."""
    if isinstance(value, datetime):
        return utc_text(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} cannot go into an audit body")


def canonical_body(body: Mapping[str, Any]) -> str:
    """Deterministic JSON: sorted keys, no spaces, non-ASCII kept as such (hashed as UTF-8)."""
    return json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_render
    )


def utc_text(moment: datetime) -> str:
    """A timestamp as the chain renders it: ISO 8601, UTC, always with microseconds."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("naive datetime refused in the audit log: the hub keeps UTC")
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


def chain_hash(prev_hash: str, kind: str, ref: str, recorded_at: datetime, body: str) -> str:
    """The hash of a row whose predecessor's hash is ``prev_hash``."""
    text = "\n".join((prev_hash, kind, ref, utc_text(recorded_at), body))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def extend_chain(
    head_id: int, head_hash: str, kind: str, entries: Sequence[tuple[str, Mapping[str, Any]]], recorded_at: datetime
) -> list[AuditRow]:
    """The rows that append ``entries`` (ref, body) after the head (``0``, ``GENESIS_HASH`` if empty)."""
    rows: list[AuditRow] = []
    for ref, body in entries:
        if "\n" in kind or "\n" in ref:
            # The hashed text separates fields by newlines; one inside a field would make it ambiguous.
            raise ValueError(f"newline refused in an audit kind or ref: {kind!r}, {ref!r}")
        text = canonical_body(body)
        head_id, prev_hash = head_id + 1, head_hash
        head_hash = chain_hash(prev_hash, kind, ref, recorded_at, text)
        rows.append(AuditRow(head_id, kind, ref, text, recorded_at, prev_hash, head_hash))
    return rows


def verify(rows: Iterable[AuditRow], expect_head: str | None = None) -> AuditVerdict:
    """Walk ``rows`` in id order (once, streaming) and report the first break, if any.

    ``expect_head``: a head hash kept elsewhere earlier. The log may have grown since, but
    that row must still be in the chain; if not, rows were removed from the end (or the
    chain was rewritten), which the chain alone cannot show.
    """
    head_id: int | None = None
    head_hash = GENESIS_HASH
    checked = 0
    expected_seen = expect_head in (None, GENESIS_HASH)

    def broken(row_id: int, fault: Fault, problem: str) -> AuditVerdict:
        return AuditVerdict(checked, head_id, head_hash, row_id, fault, problem)

    for row in rows:
        expected_id = 1 if head_id is None else head_id + 1
        if row.id != expected_id:
            after = "the start" if head_id is None else f"row {head_id}"
            return broken(expected_id, "missing", f"row {expected_id} missing: row {row.id} follows {after}")
        if chain_hash(row.prev_hash, row.kind, row.ref, row.recorded_at, row.body) != row.hash:
            return broken(row.id, "altered", f"row {row.id} altered: its hash does not match its content")
        if row.prev_hash != head_hash:
            before = "the genesis value" if head_id is None else f"row {head_id}'s hash"
            return broken(
                row.id,
                "unlinked",
                f"row {row.id} out of place: its prev_hash is not {before} (row inserted, replaced or moved)",
            )
        head_id, head_hash, checked = row.id, row.hash, checked + 1
        expected_seen = expected_seen or row.hash == expect_head
    if not expected_seen:
        return broken(
            (head_id or 0) + 1,
            "truncated",
            f"the expected head {expect_head} is not in the log: rows removed from its end, or the chain rewritten",
        )
    return AuditVerdict(checked, head_id, head_hash)
