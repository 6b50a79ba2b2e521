"""PTW hold write-back: place or lift each permit's hold once per change of its decision.

Every path that decides permits (the batch gate, later the gate-check service and re-gating
runs) writes holds through `write_holds`, so a hold means the same thing whoever decided it.

Our records of what was written are not the PTW's state: someone at the PTW may lift or edit
a hold the hub placed. So every write-back first reads back, in one paged listing, the holds
the hub's source keeps at the PTW, and rewrites every hold that differs from what the hub
would write, whatever our records say. If that listing cannot be read, the write-back goes on
from our records alone (blocks are still written) and says why it could not reconcile.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from hub.connectors.concurrency import bounded_map
from hub.connectors.retry import TransientError, VendorRejected
from hub.failpoints import failpoint
from hub.logic.gate import decision_fingerprint
from hub.model import GateDecision
from hub.steps.gate import permits_of_site

#: The PTW's holds of one source, by the permit ID the PTW gave.
PtwHolds = dict[str, dict[str, Any]]


@dataclass
class WriteBack:
    """What one write-back achieved: (permit_id, fingerprint, decision) written, errors by permit.

    `drift` counts the permits whose hold at the PTW differed from the hub's decision although
    our records said it had been written (`drifted` names them); each was rewritten.
    `reconcile_error` says why the PTW's holds could not be read back (None when they were);
    the write-back then relied on our records alone.
    """

    written: list[tuple[str, str, str]] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    drift: int = 0
    drifted: list[str] = field(default_factory=list)
    reconcile_error: str | None = None

    @property
    def holds_placed(self) -> int:
        return sum(1 for _, _, kind in self.written if kind == "block")


def read_ptw_holds(client, source: str, site: str | None = None) -> PtwHolds:
    """Every hold `source` keeps at the PTW (on permits of `site`, if given), by ticket number,
    read in pages (never per permit).

    Raises TransientError or VendorRejected when the PTW cannot be read.
    """
    holds: PtwHolds = {}
    for page in client.pages("list_holds", source=source, **({"site": site} if site else {})):
        for hold in page.get("hold", []):
            if not isinstance(hold, Mapping) or not isinstance(hold.get("ticketNo"), str):
                raise TransientError(f"{client.system} list_holds: a listed hold has no ticketNo")
            if hold.get("source", source) == source:
                holds[hold["ticketNo"]] = dict(hold)
    return holds


def _reason_text(reason: Any) -> str:
    """One reason as comparable text: absent, null and empty optional members mean the same."""
    if isinstance(reason, Mapping):
        reason = {k: v for k, v in reason.items() if v is not None and not (k == "evidence" and v == {})}
    return json.dumps(reason, sort_keys=True, ensure_ascii=False, default=str)


def _same_hold(found: Mapping[str, Any], body: Mapping[str, Any]) -> bool:
    """Whether the PTW's hold carries the action and reasons the hub would write (in any order)."""
    found_reasons, wanted_reasons = found.get("reasons"), body.get("reasons") or []
    if not isinstance(found_reasons, list):
        return False
    return found.get("action") == body.get("action") and sorted(map(_reason_text, found_reasons)) == sorted(
        map(_reason_text, wanted_reasons)
    )


def hold_drift(mapping, decisions: Iterable[GateDecision], ptw_holds: PtwHolds) -> list[str]:
    """Permits whose hold at the PTW is not what their decision would write, by permit ID.

    A block whose hold is missing or carries another action or other reasons, and an allow
    where the PTW still shows our hold.
    """
    drifted = []
    for decision in decisions:
        found = ptw_holds.get(decision.permit_id)
        if decision.decision == "block":
            if found is None or not _same_hold(found, mapping.outbound("gate_decision", decision)):
                drifted.append(decision.permit_id)
        elif found is not None:
            drifted.append(decision.permit_id)
    return sorted(drifted)


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


def write_holds(
    hub_store,
    client,
    mapping,
    source: str,
    decisions: Sequence[GateDecision],
    *,
    reconcile: bool = True,
    site: str | None = None,
) -> WriteBack:
    """Write the holds whose decision changed since last written, or (with `reconcile`) whose
    hold at the PTW drifted from it, and record what landed.

    Reconciling reads every hold the hub has at the PTW: a sync does it; a gate check or a
    re-gate after a change, which must land its hold in seconds, writes what changed only and
    leaves drift to the next sync and the write-back check. `site` narrows the reading to the
    holds on that site's permits, when all the decisions are that site's."""
    fingerprints = {d.permit_id: decision_fingerprint(d) for d in decisions}
    failpoint("gate.before_writeback")
    to_write = hub_store.holds_needing_write(fingerprints)
    result = WriteBack()
    with client:
        if reconcile:
            try:
                ptw_holds = read_ptw_holds(client, source, site)
            except (TransientError, VendorRejected) as exc:
                # Fall back to our records: what changed is still written, blocks included.
                result.reconcile_error = f"PTW holds not read back: {exc}"
            else:
                # Narrowed to a site, the listing shows only the holds on permits the PTW files there.
                listed = None if site is None else permits_of_site(hub_store, site)
                recorded = [d for d in decisions if d.permit_id not in to_write and (listed is None or d.permit_id in listed)]
                result.drifted = hold_drift(mapping, recorded, ptw_holds)
                result.drift = len(result.drifted)
                to_write = to_write | set(result.drifted)
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
