"""The similar-work advice of a gate-check answer, from a short-lived index of each area's history.

The advice is what the `similar_work_alerts` asset computes (`kpis.SimilarWorkIndex`); only the
reading differs. An area's permits of one type over six months are a few hundred rows, and
reading them into permits cost more than the rest of a check together, for every check. So one
read, indexed, serves the checks of that (site, area, type) for `TTL_S` seconds: advice for
whoever approves, never part of the decision, so at worst a permit stored in those seconds is
missing from it (the hub's permits are as old as its last sync or re-gate anyway).
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

from hub.analytics.kpis import SimilarWorkIndex
from hub.logic.analytics_rules import AnalyticsRules
from hub.model import Permit
from hub.store.repository import HubStore

log = logging.getLogger("hub.service")

#: How long one read of an area's history serves the checks of that area, about: each kind of
#: work keeps its read between 0.75 and 1.25 times this (by a hash of the kind), so the reads a
#: busy service made at start do not all fall due in the same second. At 30 s, reading again
#: took about a tenth of a busy service's CPU under load.
TTL_S = 120.0
#: History entries an answer lists, newest first (`history_count`, the results and the incidents
#: cover the whole history): what a prompt before approval shows, not six months of rows.
HISTORY_SHOWN = 20
#: Kinds of work (site, area, type) kept at most; the oldest reads go first.
MAX_KINDS = 2_000


def ttl_s(kind: tuple[str, str, str]) -> float:
    """The kind's own time to keep a read, within 25 % of `TTL_S`, the same in every process."""
    spread = zlib.crc32("\x1f".join(kind).encode("utf-8")) % 1000 / 1000
    return TTL_S * (0.75 + 0.5 * spread)


@dataclass(frozen=True)
class _Read:
    at: float
    planned_from: datetime
    index: SimilarWorkIndex


class SimilarWorkAdvice:
    """`advice(store, permit, now)`; safe from several threads."""

    def __init__(self, rules: Callable[[], AnalyticsRules], clock: Callable[[], float] = time.monotonic):
        self._rules = rules
        self._clock = clock
        self._lock = threading.Lock()
        self._read: dict[tuple[str, str, str], _Read] = {}  # (site, area, type) -> its last read
        self._reading: set[tuple[str, str, str]] = set()  # kinds a check is reading again now

    def advice(self, hub_store: HubStore, permit: Permit, now: datetime) -> dict[str, Any] | None:
        """The area's history of the permit's type when similar work is planned within the
        rules' gap; None when there is none, or when it could not be read (logged: the answer
        stands without it)."""
        try:
            found = self._index(hub_store, permit, now).find(permit)
        except Exception:
            log.exception("gate check of %s: the history of similar work could not be read", permit.permit_id)
            return None
        return found.as_dict(history_limit=HISTORY_SHOWN) if found else None

    def _index(self, hub_store: HubStore, permit: Permit, now: datetime) -> SimilarWorkIndex:
        rules = self._rules()
        history_from = now - timedelta(days=31 * rules.similar_work_history_months)
        needed_from = min(permit.planned_start - rules.similar_work_gap, history_from)
        kind = (permit.site, permit.area, permit.permit_type)
        at = self._clock()
        with self._lock:
            kept = self._read.get(kind)
            if kept is not None and kept.planned_from <= needed_from and kept.index.rules is rules:
                # Within its time, or past it while another check reads the area again: that
                # check waits for the read, the others answer from this one meanwhile.
                if at - kept.at <= ttl_s(kind) or kind in self._reading:
                    return kept.index
            self._reading.add(kind)
        try:
            # A little further back than this permit needs, so that its neighbours' checks fit too.
            planned_from = min(needed_from, history_from - 2 * rules.similar_work_gap)
            index = SimilarWorkIndex(hub_store.permits_like(*kind, planned_from), now, rules)
        finally:
            with self._lock:
                self._reading.discard(kind)
        with self._lock:
            if len(self._read) >= MAX_KINDS:
                for stale in sorted(self._read, key=lambda k: self._read[k].at)[: MAX_KINDS // 10]:
                    del self._read[stale]
            self._read[kind] = _Read(at, planned_from, index)
        return index
