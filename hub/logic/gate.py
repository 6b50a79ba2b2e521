"""The PTW gate: allow or block a permit from its devices' clearance profiles.

It fails closed: whatever cannot be shown safe (no devices, a device without a
profile, an unreadable permit record, a site the hub does not cover) blocks, with a reason
saying why. `decide` is the one decision function: every path that gates a permit calls it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import datetime

from hub.logic.clearance import DeviceProfile, Hazard, iso, reason_sort_key, reasons_at
from hub.logic.rules import GateRules
from hub.model import GateDecision, Permit, Reason


def _ordered(reasons: Iterable[Reason]) -> tuple[Reason, ...]:
    """Each reason once, in a stable order: the same findings always make the same decision."""
    unique = {reason_sort_key(r): r for r in reasons}
    return tuple(unique[k] for k in sorted(unique))


def with_reasons(decision: GateDecision, extra: Iterable[Reason]) -> GateDecision:
    """The decision with more blocking reasons found after it was made: it blocks, whatever it said."""
    return decision.model_copy(update={"decision": "block", "reasons": _ordered([*decision.reasons, *extra])})


def _blocked_or_allowed(
    permit_id: str, reasons: Iterable[Reason], rules: GateRules, now: datetime, as_of: datetime | None = None
) -> GateDecision:
    ordered = _ordered(reasons)
    return GateDecision(
        permit_id=permit_id,
        decision="block" if ordered else "allow",
        reasons=ordered,
        rule_version=rules.version,
        evaluated_at=now,
        eam_data_as_of=as_of,
    )


def _missing_profile(device: str) -> DeviceProfile:
    hazard = Hazard(
        code="DEVICE_UNKNOWN",
        device_id=device,
        message=f"device {device} has no clearance profile from the EAM",
    )
    return DeviceProfile(device_id=device, known=False, hazards=(hazard,))


def is_gated(permit_type: str | None, status: str | None, rules: GateRules) -> bool:
    """Whether the rules gate a permit; an unknown (None) type or status counts as gated."""
    return (permit_type is None or permit_type in rules.gated_permit_types) and (
        status is None or status in rules.gated_statuses
    )


def _gate_off(permit_id: str, rules: GateRules, now: datetime) -> GateDecision:
    reason = Reason(
        code="GATE_DISABLED",
        message=f"the gate is switched off by its rule file: {rules.gate_disabled_reason}",
        evidence={"gate_disabled_reason": str(rules.gate_disabled_reason)},
    )
    return GateDecision(permit_id=permit_id, decision="allow", reasons=(reason,), rule_version=rules.version, evaluated_at=now)


def decide(
    permit: Permit,
    profiles: Mapping[str, DeviceProfile],
    rules: GateRules,
    now: datetime,
    *,
    site_configured: bool = True,
) -> GateDecision | None:
    """The gate decision for a permit, or None when the rules do not gate it.

    `profiles` are the devices' profiles at the permit's own site. A permit of a site the hub
    is not configured for has no profiles it could trust, and blocks for that alone.
    """
    if not is_gated(permit.permit_type, permit.status, rules):
        return None
    if rules.disabled:
        return _gate_off(permit.permit_id, rules, now)
    if not site_configured:
        reason = Reason(
            code="SITE_NOT_CONFIGURED",
            message=f"permit {permit.permit_id} is at site {permit.site}, which the hub is not configured to gate (HUB_SITES)",
            evidence={"site": permit.site},
        )
        return _blocked_or_allowed(permit.permit_id, [reason], rules, now)
    reasons: list[Reason] = []
    if not permit.device_ids:
        reasons.append(
            Reason(
                code="NO_DEVICE_LINKED",
                message=f"permit {permit.permit_id} names no equipment, so its clearance cannot be checked",
            )
        )
    start, end = permit.planned_start, permit.planned_end
    if end <= start:
        # An empty window overlaps nothing, so it would hide every hazard.
        reasons.append(
            Reason(
                code="PERMIT_RECORD_INVALID",
                message=f"permit {permit.permit_id} planned end {iso(end)} is not after its planned start {iso(start)}",
                evidence={"planned_start": iso(start), "planned_end": iso(end)},
            )
        )
    devices = [profiles.get(d) or _missing_profile(d) for d in permit.device_ids]
    for profile in devices:
        reasons.extend(reasons_at(profile, start, end, rules, now))
    as_of = [p.data_as_of for p in devices if p.data_as_of is not None]
    return _blocked_or_allowed(permit.permit_id, reasons, rules, now, min(as_of) if as_of else None)


def decide_all(
    permits: Iterable[Permit], profiles: Mapping[str, DeviceProfile], rules: GateRules, now: datetime
) -> list[GateDecision]:
    """Decisions for the gated permits of one site, in input order."""
    return [d for p in permits if (d := decide(p, profiles, rules, now)) is not None]


def invalid_permit_decision(permit_id: str, problem: str, rules: GateRules, now: datetime) -> GateDecision:
    """Block a permit whose record failed validation: nothing about it can be shown safe."""
    if rules.disabled:
        return _gate_off(permit_id, rules, now)
    reason = Reason(
        code="PERMIT_RECORD_INVALID",
        message=f"permit {permit_id} record failed validation: {problem}",
        evidence={"problem": problem},
    )
    return _blocked_or_allowed(permit_id, [reason], rules, now)


def invalid_permit_decisions(quarantined: Iterable[Mapping], rules: GateRules, now: datetime) -> list[GateDecision]:
    """Block quarantined permit records unless what could be read of them shows they are not gated.

    Each item: `source_key` (the PTW's ticket number), `reason`, and `partial` (the fields that
    could be read). A newer record that failed validation overrides the last good copy.
    """
    decisions: dict[str, GateDecision] = {}
    for row in quarantined:
        partial = row.get("partial") or {}
        if not is_gated(partial.get("permit_type"), partial.get("status"), rules):
            continue
        decisions[row["source_key"]] = invalid_permit_decision(row["source_key"], row["reason"], rules, now)
    return list(decisions.values())


def unblocked_by(previous: Iterable[GateDecision], current: Iterable[GateDecision]) -> list[str]:
    """Permits that were blocked under another rule version and are allowed now: what a rule change lifted."""
    before = {d.permit_id: d for d in previous}
    return sorted(
        d.permit_id
        for d in current
        if d.decision == "allow"
        and (old := before.get(d.permit_id)) is not None
        and old.decision == "block"
        and old.rule_version != d.rule_version
    )


def decision_fingerprint(decision: GateDecision) -> str:
    """Changes only when what would be written back changes, so holds are written once per change.

    evaluated_at and eam_data_as_of move on every run and are left out; the rule
    version is in, so a rules change re-stamps the hold once.
    """
    content = {
        "permit_id": decision.permit_id,
        "decision": decision.decision,
        "rule_version": decision.rule_version,
        "reasons": [
            {"code": r.code, "device_id": r.device_id, "message": r.message, "evidence": r.evidence}
            for r in sorted(decision.reasons, key=reason_sort_key)
        ],
    }
    text = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
