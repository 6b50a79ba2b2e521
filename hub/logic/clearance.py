"""Equipment clearance as hazards with time intervals.

The `equipment_clearance` asset sees equipment and maintenance records but no permits,
while clearance depends on a permit's window. So each device gets a profile of hazards,
each valid over an interval, and a permit window is checked against it later.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone

from hub.logic.rules import GateRules
from hub.model import (
    FINISHED_MAINTENANCE_STATUSES,
    Canonical,
    Equipment,
    MaintenanceRecord,
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


def _hours(age: timedelta) -> str:
    return f"{age.total_seconds() / 3600:g}h"


def reason_sort_key(reason: Reason) -> tuple:
    return (reason.code, reason.device_id or "", tuple(sorted(reason.evidence.items())), reason.message)


def _work_order_hazards(record: MaintenanceRecord, rules: GateRules) -> list[Hazard]:
    device = record.device_id
    ref = {"work_order": record.record_id, "kind": record.kind, "status": record.status}
    hazards = []
    if record.kind in rules.counted_work_order_kinds and record.status not in FINISHED_MAINTENANCE_STATUSES:
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
    if record.status != "cancelled" and record.isolation == "applied":
        hazards.append(
            Hazard(
                code="ISOLATION_NOT_RELEASED",
                device_id=device,
                message=f"isolation on {device} under work order {record.record_id} ({record.status}) is not released",
                evidence={**ref, "isolation": record.isolation},
            )
        )
    return hazards


def _profile(
    device: str,
    equipment: Equipment | None,
    records: list[MaintenanceRecord],
    fetched_at: datetime | None,
    invalid: Sequence[str],
    rules: GateRules,
    now: datetime,
) -> DeviceProfile:
    hazards: list[Hazard] = []
    if fetched_at is None:
        hazards.append(
            Hazard(
                code="EAM_UNAVAILABLE",
                device_id=device,
                message=f"the EAM has not been reached for {device}, so its clearance is unknown",
                evidence={"eam_fetched_at": "never"},
            )
        )
    elif equipment is None:
        hazards.append(
            Hazard(
                code="DEVICE_UNKNOWN",
                device_id=device,
                message=f"device {device} is not known to the EAM",
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
    as_of = [t for t in (equipment.data_as_of if equipment else None, fetched_at) if t is not None]
    data_as_of = min(as_of) if as_of else None
    if data_as_of is not None and now - data_as_of > rules.max_eam_data_age:
        hazards.append(
            Hazard(
                code="EAM_DATA_STALE",
                device_id=device,
                message=f"EAM data for {device} is as of {iso(data_as_of)}, older than {_hours(rules.max_eam_data_age)}",
                evidence={"data_as_of": iso(data_as_of), "max_age": _hours(rules.max_eam_data_age)},
            )
        )
    for problem in sorted(set(invalid)):
        hazards.append(
            Hazard(
                code="EAM_RECORD_INVALID",
                device_id=device,
                message=f"a maintenance record for {device} failed validation and is quarantined: {problem}",
                evidence={"problem": problem},
            )
        )
    for record in records:
        hazards.extend(_work_order_hazards(record, rules))
    return DeviceProfile(device_id=device, known=equipment is not None, hazards=tuple(hazards), data_as_of=data_as_of)


def build_profiles(
    device_ids: Iterable[str],
    equipment: Mapping[str, Equipment],
    records: Iterable[MaintenanceRecord],
    fetched_at: Mapping[str, datetime],
    invalid_records: Mapping[str, Sequence[str]],
    rules: GateRules,
    now: datetime,
) -> dict[str, DeviceProfile]:
    """One profile per device.

    `fetched_at[d]` is when the EAM last answered a request that asked for `d`, whether or
    not it returned the device; a device never asked successfully is EAM_UNAVAILABLE
    rather than DEVICE_UNKNOWN, since the EAM never said it does not exist.
    """
    wanted = list(dict.fromkeys(device_ids))
    by_device: dict[str, list[MaintenanceRecord]] = {d: [] for d in wanted}
    for record in records:
        if record.device_id in by_device:
            by_device[record.device_id].append(record)
    return {
        d: _profile(d, equipment.get(d), by_device[d], fetched_at.get(d), invalid_records.get(d, ()), rules, now)
        for d in wanted
    }


def reasons_for_window(profile: DeviceProfile, start: datetime, end: datetime) -> tuple[Reason, ...]:
    """The profile's hazards that apply to work planned over [start, end), in a stable order."""
    reasons = [h.as_reason() for h in profile.hazards if h.overlaps(start, end)]
    return tuple(sorted(reasons, key=reason_sort_key))
