"""Gate-check answers into the decision trail and the audit log, in group commits.

SQLite takes one writer at a time, and an answer a second per transaction spends most of its
time waiting for the lock. Here one thread appends whatever answers are waiting in one
transaction; each caller waits until its answer is committed (an answer is never given before
its audit row is stored), so what a commit costs is shared by every answer in it.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from hub.model import GateDecision
from hub.steps.gate import record_decisions
from hub.store.repository import HubStore

log = logging.getLogger("hub.service")

#: At most this many answers in one commit.
MAX_GROUP = 500
#: How long a caller waits for its commit before it gives up on the audit (the answer stands).
COMMIT_WAIT_S = 10.0


class NotAudited(RuntimeError):
    """The answer's audit row could not be committed."""


@dataclass
class _Answer:
    decision: GateDecision
    body: dict[str, Any]
    trail: bool
    done: threading.Event = field(default_factory=threading.Event)
    error: str | None = None


class TrailWriter:
    """One writer thread per store; `append` is safe from any thread and returns once committed."""

    def __init__(self, store: Callable[[], HubStore]):
        self._store = store
        self._waiting: queue.Queue[_Answer] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="gate-check-trail", daemon=True)
        self._thread.start()

    def append(self, decision: GateDecision, body: dict[str, Any], *, trail: bool) -> None:
        """Audit the answer (and, with `trail`, add the decision to the trail if it changed)."""
        answer = _Answer(decision, body, trail)
        self._waiting.put(answer)
        if not answer.done.wait(COMMIT_WAIT_S):
            raise NotAudited(f"the audit log was not written within {COMMIT_WAIT_S:g} s")
        if answer.error is not None:
            raise NotAudited(answer.error)

    def _loop(self) -> None:
        while True:
            group = [self._waiting.get()]
            while len(group) < MAX_GROUP:
                try:
                    group.append(self._waiting.get_nowait())
                except queue.Empty:
                    break
            try:
                self._commit(group)
            except Exception as exc:
                log.exception("gate checks: %d answers could not be audited", len(group))
                for answer in group:
                    answer.error = f"{type(exc).__name__}: {exc}"
            for answer in group:
                answer.done.set()

    def _commit(self, group: list[_Answer]) -> None:
        hub_store = self._store()
        now = datetime.now(timezone.utc)
        with hub_store.transaction(write=True):
            record_decisions(hub_store, [a.decision for a in group if a.trail], now)
            hub_store.append_audit("gate_check", [(a.decision.permit_id, a.body) for a in group], now)
