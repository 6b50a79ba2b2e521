"""PTW hold write-back: place or lift each permit's hold once per change of its decision.

Every path that decides permits (the batch gate, later the gate-check service and re-gating
runs) writes holds through `write_holds`, so a hold means the same thing whoever decided it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from hub.connectors.concurrency import bounded_map
from hub.connectors.retry import TransientError, VendorRejected
from hub.failpoints import failpoint
from hub.logic.gate import decision_fingerprint
from hub.model import GateDecision


@dataclass
class WriteBack:
    """What one write-back achieved: (permit_id, fingerprint, decision) written, errors by permit."""

    written: list[tuple[str, str, str]] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def holds_placed(self) -> int:
        return sum(1 for _, _, kind in self.written if kind == "block")


def _write_hold(client, mapping, source: str, decision: GateDecision) -> str | None:
    """Place or lift one permit's hold; what went wrong if the PTW did not take it."""
    try:
        if decision.decision == "block":
            body = mapping.outbound("gate_decision", decision)
            client.call("put_hold", id=decision.permit_id, source=source, body=body)
            failpoint("gate.after_put_before_record")
        else:
            # Lift unconditionally (DELETE is idempotent): a block the PTW applied
            # but whose answer was lost is not in our records, yet must still go.
            client.call("release_hold", id=decision.permit_id, source=source)
    except (TransientError, VendorRejected) as exc:
        return f"{decision.permit_id}: {exc}"
    return None


def write_holds(hub_store, client, mapping, source: str, decisions: Sequence[GateDecision]) -> WriteBack:
    """Write the holds whose decision changed since last written, and record what landed."""
    fingerprints = {d.permit_id: decision_fingerprint(d) for d in decisions}
    failpoint("gate.before_writeback")
    to_write = hub_store.holds_needing_write(fingerprints)
    result = WriteBack()
    with client:
        outcomes = bounded_map(
            lambda decision: _write_hold(client, mapping, source, decision),
            [d for d in decisions if d.permit_id in to_write],
            client.concurrency,
        )
        for decision, error in outcomes:
            if error:
                result.failed.append(error)
            else:
                result.written.append((decision.permit_id, fingerprints[decision.permit_id], decision.decision))
    hub_store.record_holds_written(result.written, datetime.now(timezone.utc))
    return result
