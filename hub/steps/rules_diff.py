"""What a change of gate rules would do to the permits the hub holds now, before it is loaded."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from hub.logic.rules import GateRules
from hub.steps.gate import evaluate_site


@dataclass(frozen=True)
class RulesDiff:
    """Permit IDs (by site) that the new rules would allow although the old ones block them,
    and those they would newly block."""

    lifted: list[tuple[str, str, str]]  # site, permit, the codes the old rules blocked it for
    added: list[tuple[str, str, str]]  # site, permit, the codes the new rules block it for


def diff_rules(hub_store, old: GateRules, new: GateRules, sites: Collection[str], now: datetime) -> RulesDiff:
    lifted, added = [], []
    for site in sites:
        before = {d.permit_id: d for d in evaluate_site(hub_store, site, old, now)}
        after = {d.permit_id: d for d in evaluate_site(hub_store, site, new, now)}
        for permit_id in sorted(set(before) | set(after)):
            was, now_is = before.get(permit_id), after.get(permit_id)
            was_blocked = was is not None and was.decision == "block"
            is_blocked = now_is is not None and now_is.decision == "block"
            if was_blocked and not is_blocked:
                lifted.append((site, permit_id, ", ".join(sorted({r.code for r in was.reasons}))))
            elif is_blocked and not was_blocked:
                added.append((site, permit_id, ", ".join(sorted({r.code for r in now_is.reasons}))))
    return RulesDiff(lifted, added)
