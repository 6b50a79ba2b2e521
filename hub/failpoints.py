"""Named crash points: a real SIGKILL at a chosen spot, to prove the hub recovers from any death.

`HUB_FAILPOINTS="erp.after_post_before_mark:2,gate.before_writeback"` arms points: `name` dies
on the first hit in this process, `name:N` on the N-th. The process then kills itself with
SIGKILL, so no `finally`, no commit and no flush runs, exactly as when the machine loses power
or the OOM killer strikes. The variable is read once at import; unset, a failpoint is one
empty-dict test.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV_VAR = "HUB_FAILPOINTS"

# Every failpoint placed in the hub, so a misspelt name fails loudly instead of never firing.
NAMES = (
    "permits.before_cursor",
    "quarantine.before_write",
    "eam.before_lookups",
    "gate.before_writeback",
    "gate.after_put_before_record",
    "costs.after_enqueue",
    "erp.before_post",
    "erp.after_post_before_mark",
    "erp.between_batches",
)


def parse(spec: str) -> dict[str, int]:
    """`name[:N],...` -> {name: N}; N defaults to 1."""
    armed: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, hit = item.partition(":")
        if name not in NAMES:
            raise ValueError(f"{ENV_VAR}: unknown failpoint {name!r}; known: {', '.join(NAMES)}")
        if hit and (not hit.isdigit() or int(hit) < 1):
            raise ValueError(f"{ENV_VAR}: hit count of {name!r} must be a positive integer, got {hit!r}")
        armed[name] = int(hit or 1)
    return armed


_ARMED = parse(os.environ.get(ENV_VAR, ""))
_hits: Counter[str] = Counter()


def failpoint(name: str) -> None:
    """Die by SIGKILL here if `name` is armed and this is its chosen hit."""
    if not _ARMED or name not in _ARMED:
        return
    _hits[name] += 1
    if _hits[name] == _ARMED[name]:
        os.kill(os.getpid(), signal.SIGKILL)
