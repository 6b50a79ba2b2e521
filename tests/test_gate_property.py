"""For random plants in canonical terms, the gate never allows a permit any rule says to block.

The oracle below restates each rule of `hub/rules/gate.yaml` on the raw records, independently of
`hub.logic.clearance`; hypothesis draws the plants, with two sites that reuse device numbers.
"""

from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from hub.logic.clearance import SiteEam, build_profiles
from hub.logic.gate import decide
from hub.logic.rules import GateRules
from hub.model import FINISHED_MAINTENANCE_STATUSES, Equipment, MaintenanceRecord, Permit

UTC = timezone.utc
NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
RULES = GateRules(version="prop", max_eam_data_age=timedelta(minutes=15))
SITES = ("NJ01", "HZ02")
DEVICES = ("P-1", "P-2", "P-3")
hours = st.integers(min_value=-72, max_value=72).map(lambda h: NOW + timedelta(hours=h))


@st.composite
def plants(draw):
    equipment = {}
    for site in SITES:
        for device in draw(st.lists(st.sampled_from(DEVICES), unique=True)):
            equipment[(site, device)] = Equipment(
                device_id=device,
                site=site,
                name=device,
                status=draw(st.sampled_from(["operating", "operating", "not_ready", "decommissioned"])),
                next_inspection_due=draw(st.none() | hours),
                data_as_of=draw(st.none() | hours),
            )
    records = [
        MaintenanceRecord(
            record_id=f"WO-{n}",
            site=draw(st.sampled_from(SITES)),
            device_id=draw(st.sampled_from(DEVICES)),
            kind=draw(st.sampled_from(["preventive", "corrective", "inspection", "overhaul"])),
            status=draw(st.sampled_from(["planned", "approved", "in_progress", "completed", "closed", "cancelled"])),
            window_start=draw(st.none() | hours),
            window_end=draw(st.none() | hours),
            isolation=draw(st.sampled_from(["none", "applied", "released"])),
            updated_at=NOW,
        )
        for n in range(draw(st.integers(0, 8)))
    ]
    answered = {key: draw(st.none() | hours.filter(lambda t: t <= NOW)) for key in equipment}
    start = draw(hours)
    permit = Permit(
        permit_id="PTW-1",
        permit_type="work_at_height",
        risk_level="red",
        site=draw(st.sampled_from(SITES)),
        area="A",
        device_ids=tuple(draw(st.lists(st.sampled_from(DEVICES), max_size=3, unique=True))),
        applicant="x",
        planned_start=start,
        planned_end=start + timedelta(hours=draw(st.integers(-2, 24))),
        status="approved",
        submitted_at=NOW,
        updated_at=NOW,
    )
    return equipment, records, answered, permit


def overlaps(a_start, a_end, b_start, b_end) -> bool:
    return (a_start is None or a_start < b_end) and (a_end is None or b_start < a_end)


def oracle_blocks(equipment, records, answered, permit) -> bool:
    if not permit.device_ids or permit.planned_end <= permit.planned_start:
        return True
    for device in permit.device_ids:
        key = (permit.site, device)
        asset = equipment.get(key)
        if asset is None or answered.get(key) is None:
            return True
        if asset.status != "operating":
            return True
        if asset.next_inspection_due is not None and asset.next_inspection_due < permit.planned_end:
            return True
        ages = [t for t in (asset.data_as_of, answered[key]) if t is not None]
        if NOW - min(ages) > RULES.max_eam_data_age:
            return True
        for wo in records:
            if (wo.site, wo.device_id) != key:
                continue
            if wo.isolation == "applied":
                return True
            inverted = wo.window_start and wo.window_end and wo.window_end <= wo.window_start
            if wo.status not in FINISHED_MAINTENANCE_STATUSES and (
                inverted or overlaps(wo.window_start, wo.window_end, permit.planned_start, permit.planned_end)
            ):
                return True
    return False


@settings(max_examples=400, deadline=None)
@given(plants())
def test_the_gate_never_allows_what_a_rule_blocks(plant):
    equipment, records, answered, permit = plant
    site = permit.site
    eam = SiteEam(
        site,
        {d: e for (s, d), e in equipment.items() if s == site},
        records,
        {d: t for (s, d), t in answered.items() if s == site and t is not None},
    )
    profiles = build_profiles(permit.device_ids, eam, RULES, NOW)
    decision = decide(permit, profiles, RULES, NOW)
    assert decision is not None
    if oracle_blocks(equipment, records, answered, permit):
        assert decision.decision == "block", (permit, decision)
    else:
        assert decision.decision == "allow", decision.reasons
