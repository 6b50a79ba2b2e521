"""Equipment clearance as hazards with time intervals.

The `equipment_clearance` asset sees equipment and maintenance records but no permits,
while clearance depends on a permit's window. So each device gets a profile of hazards,
each valid over an interval, and a permit window is checked against it later.

Profiles are built for one site at a time: a device is (site, device ID), and a permit's
devices are looked up at the permit's own site only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from hub.logic.rules import GateRules
from hub.model import (
    FINISHED_MAINTENANCE_STATUSES,
    Canonical,
    Equipment,
    MaintenanceRecord,
    UNKNOWN,
    Reason,
    ReasonCode,
    UtcDateTime,
)


class Hazard(Canonical):
    """Something that blocks work on a device during [start, end); None is unbounded."""

    code: ReasonCode
    device_id: str
    message: str
    evidence: dict[str, str] = {}
    start: UtcDateTime | None = None
    end: UtcDateTime | None = None

    def overlaps(self, start: datetime, end: datetime) -> bool:
        """Half-open overlap: an interval ending exactly where the other starts does not."""
        lo = start if self.start is None else max(start, self.start)
        hi = end if self.end is None else min(end, self.end)
        return lo < hi

    def as_reason(self) -> Reason:
        return Reason(code=self.code, device_id=self.device_id, message=self.message, evidence=self.evidence)


class DeviceProfile(Canonical):
    device_id: str
    known: bool
    hazards: tuple[Hazard, ...] = ()
    data_as_of: UtcDateTime | None = None


def iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _age(age: timedelta) -> str:
    minutes = age.total_seconds() / 60
    return f"{minutes / 60:g}h" if minutes >= 60 else f"{minutes:g}min"


def stale_hazard(device: str, data_as_of: datetime | None, rules: GateRules, now: datetime) -> Hazard | None:
    """EAM_DATA_STALE when the device's data is older than `max_eam_data_age` at `now`."""
    if data_as_of is None or now - data_as_of <= rules.max_eam_data_age:
        return None
    return Hazard(
        code="EAM_DATA_STALE",
        device_id=device,
        message=f"EAM data for {device} is as of {iso(data_as_of)}, older than {_age(rules.max_eam_data_age)}",
        evidence={"data_as_of": iso(data_as_of), "max_age": _age(rules.max_eam_data_age)},
    )


def overran(hazard: Hazard, now: datetime) -> Hazard:
    """An open work order whose planned end has passed by `now` stands with no end: the plan is
    paperwork, and an order the EAM does not show finished may still be under way (maintenance
    overruns its schedule); it blocks until the EAM shows it finished or it is rescheduled."""
    if hazard.code != "OPEN_WORK_ORDER" or hazard.end is None or hazard.end > now:
        return hazard
    planned_end = iso(hazard.end)
    return hazard.model_copy(
        update={
            "end": None,
            "message": f"{hazard.message}; that end has passed and the EAM does not show the order finished, "
            "so it stands until it is finished or rescheduled",
            "evidence": {**hazard.evidence, "planned_end_passed": planned_end},
        }
    )


def reasons_at(profile: DeviceProfile, start: datetime, end: datetime, rules: GateRules, now: datetime) -> tuple[Reason, ...]:
    """The profile's reasons against work over [start, end), decided at `now`: a profile is
    computed before it is used (a stored one, minutes before), and what holds then may not hold
    now: data fresh then may be stale, and an open order's planned end may have passed (`overran`),
    so both are judged again here."""
    hazards = tuple(overran(h, now) for h in profile.hazards)
    if any(now_ is not then for now_, then in zip(hazards, profile.hazards)):
        profile = profile.model_copy(update={"hazards": hazards})
    reasons = list(reasons_for_window(profile, start, end))
    if not any(h.code == "EAM_DATA_STALE" for h in profile.hazards):
        if (stale := stale_hazard(profile.device_id, profile.data_as_of, rules, now)) is not None:
            reasons.append(stale.as_reason())
    return tuple(sorted(reasons, key=reason_sort_key))


def reason_sort_key(reason: Reason) -> tuple:
    return (reason.code, reason.device_id or "", tuple(sorted(reason.evidence.items())), reason.message)


#: Work-order inputs a flavor may declare unavailable, and what their unknown value may hide:
#: unknown is never "none" (the order may be open, a lock may be on the equipment).
UNKNOWN_WORK_ORDER_INPUTS = (
    ("status", "WORK_ORDER_STATUS_UNKNOWN", "the status", "it may be open at any time"),
    ("isolation", "ISOLATION_UNKNOWN", "the isolation", "a lock may be applied"),
)


def _work_order_hazards(record: MaintenanceRecord, rules: GateRules) -> list[Hazard]:
    device = record.device_id
    ref = {"work_order": record.record_id, "kind": record.kind, "status": record.status}
    hazards = []
    if rules.counts(record.kind) and record.status not in FINISHED_MAINTENANCE_STATUSES:
        start, end = record.window_start, record.window_end
        evidence = dict(ref)
        if start is not None:
            evidence["window_start"] = iso(start)
        if end is not None:
            evidence["window_end"] = iso(end)
        window = f"from {iso(start) if start else 'an open start'} to {iso(end) if end else 'an open end'}"
        if start is not None and end is not None and end <= start:
            # An empty or inverted window cannot place the work in time; fail closed.
            window = f"with an empty or inverted window ({iso(start)} to {iso(end)}), so at any time"
            start = end = None
        hazards.append(
            Hazard(
                code="OPEN_WORK_ORDER",
                device_id=device,
                message=f"{record.kind} work order {record.record_id} on {device} is {record.status} {window}",
                evidence=evidence,
                start=start,
                end=end,
            )
        )
    for attribute, code, what, risk in UNKNOWN_WORK_ORDER_INPUTS:
        if getattr(record, attribute) == UNKNOWN:
            hazards.append(
                Hazard(
                    code=code,
                    device_id=device,
                    message=f"{what} of work order {record.record_id} on {device} is unknown (the EAM mapping "
                    f"cannot provide it), so {risk}",
                    evidence={**ref, attribute: UNKNOWN},
                )
            )
    if record.isolation == "applied":
        # The lock on the equipment is the physical fact; the work order's status is paperwork.
        # A finished or cancelled order that still holds a lock is contradictory, and blocks.
        state = f"{record.status}, isolation still applied" if record.status in FINISHED_MAINTENANCE_STATUSES else record.status
        hazards.append(
            Hazard(
                code="ISOLATION_NOT_RELEASED",
                device_id=device,
                message=f"isolation on {device} under work order {record.record_id} ({state}) is not released",
                evidence={**ref, "isolation": record.isolation},
            )
        )
    return hazards


def _profile(
    site: str,
    device: str,
    equipment: Equipment | None,
    records: list[MaintenanceRecord],
    answered_at: datetime | None,
    invalid: Sequence[str],
    suspect: Sequence[str],
    rules: GateRules,
    now: datetime,
) -> DeviceProfile:
    hazards: list[Hazard] = []
    where = {"site": site}
    if answered_at is None:
        hazards.append(
            Hazard(
                code="EAM_UNAVAILABLE",
                device_id=device,
                message=f"the EAM has not answered for {device} at site {site}, so its clearance is unknown",
                evidence={**where, "eam_answered_at": "never"},
            )
        )
    elif equipment is None and not invalid:
        # An equipment record that came back unreadable is EAM_RECORD_INVALID below, not unknown.
        hazards.append(
            Hazard(
                code="DEVICE_UNKNOWN",
                device_id=device,
                message=f"device {device} is not known to the EAM at site {site}",
                evidence=where,
            )
        )
    if equipment is not None and equipment.status == UNKNOWN:
        hazards.append(
            Hazard(
                code="EQUIPMENT_STATUS_UNKNOWN",
                device_id=device,
                message=f"the status of {device} at site {site} is unknown (the EAM mapping cannot provide it), "
                "so it cannot be shown in service",
                evidence={**where, "equipment_status": equipment.status},
            )
        )
    elif equipment is not None and equipment.status not in rules.equipment_statuses_in_service:
        hazards.append(
            Hazard(
                code="EQUIPMENT_NOT_IN_SERVICE",
                device_id=device,
                message=f"{device} at site {site} is {equipment.status.replace('_', ' ')} in the EAM, not in service",
                evidence={**where, "equipment_status": equipment.status},
            )
        )
    if equipment is not None and equipment.next_inspection_due is not None:
        due = equipment.next_inspection_due
        hazards.append(
            Hazard(
                code="INSPECTION_OVERDUE",
                device_id=device,
                message=f"inspection of {device} is due {iso(due)}, before the work ends",
                evidence={"next_inspection_due": iso(due)},
                start=due,
            )
        )
    as_of = [t for t in (equipment.data_as_of if equipment else None, answered_at) if t is not None]
    data_as_of = min(as_of) if as_of else None
    if (stale := stale_hazard(device, data_as_of, rules, now)) is not None:
        hazards.append(stale)
    for problem in sorted(set(invalid)):
        hazards.append(
            Hazard(
                code="EAM_RECORD_INVALID",
                device_id=device,
                message=f"an EAM record for {device} failed validation and is quarantined: {problem}",
                evidence={"problem": problem},
            )
        )
    for problem in sorted(set(suspect)):
        hazards.append(
            Hazard(
                code="EAM_REPLY_SUSPECT",
                device_id=device,
                message=f"the EAM's last reply for {device} is held as suspect, so its last known state stands: {problem}",
                evidence={**where, "problem": problem},
            )
        )
    for record in records:
        hazards.extend(_work_order_hazards(record, rules))
    return DeviceProfile(device_id=device, known=equipment is not None, hazards=tuple(hazards), data_as_of=data_as_of)


@dataclass(frozen=True)
class SiteEam:
    """What the hub knows of one site's EAM: its equipment and work orders by device, when the
    EAM last positively answered for each device, and what holds a device's data in doubt
    (quarantined records, suspect replies), each by device ID at that site."""

    site: str
    equipment: Mapping[str, Equipment]
    records: Iterable[MaintenanceRecord]
    answered_at: Mapping[str, datetime]
    invalid: Mapping[str, Sequence[str]] = field(default_factory=dict)
    suspect: Mapping[str, Sequence[str]] = field(default_factory=dict)


def build_profiles(device_ids: Iterable[str], eam: SiteEam, rules: GateRules, now: datetime) -> dict[str, DeviceProfile]:
    """One profile per device of the site.

    `eam.answered_at[d]` is when the EAM last answered for `d` in a reply the hub trusts; a
    device never answered for is EAM_UNAVAILABLE rather than DEVICE_UNKNOWN, since the EAM
    never said it does not exist.
    """
    wanted = list(dict.fromkeys(device_ids))
    by_device: dict[str, list[MaintenanceRecord]] = {d: [] for d in wanted}
    for record in eam.records:
        if record.site == eam.site and record.device_id in by_device:
            by_device[record.device_id].append(record)
    return {
        d: _profile(
            eam.site,
            d,
            eam.equipment.get(d),
            by_device[d],
            eam.answered_at.get(d),
            eam.invalid.get(d, ()),
            eam.suspect.get(d, ()),
            rules,
            now,
        )
        for d in wanted
    }


def reasons_for_window(profile: DeviceProfile, start: datetime, end: datetime) -> tuple[Reason, ...]:
    """The profile's hazards that apply to work planned over [start, end), in a stable order."""
    reasons = [h.as_reason() for h in profile.hazards if h.overlaps(start, end)]
    return tuple(sorted(reasons, key=reason_sort_key))
