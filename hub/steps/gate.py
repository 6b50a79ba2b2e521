"""Deciding a site's permits from what the store knows: clearance profiles, then decisions.

The batch gate, the fallback gate run after a failed sync and `hub rules diff` all decide
through `evaluate_site`, which calls the one pure decision function in `hub.logic.gate`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

from hub.logic.clearance import DeviceProfile, SiteEam, build_profiles
from hub.logic.gate import decide, decision_fingerprint, invalid_permit_decisions
from hub.logic.rules import GateRules
from hub.model import GateDecision, Permit
from hub.store.records import AuditBatch

# Permits whose equipment and materials the hub keeps current: anything that may still be worked.
SYNC_SCOPE_STATUSES = ("submitted", "approved", "active", "suspended")
#: Lookup tables: when the EAM last answered positively for a device, when it last pulled a
#: device's whole work-order list, and when a reply about a device was held as suspect.
EAM_ANSWERED, EAM_WHOLE, EAM_SUSPECT = "eam", "eam_whole", "eam_suspect"


def permits_in_scope(hub_store, site: str) -> list[Permit]:
    return hub_store.load_permits(statuses=SYNC_SCOPE_STATUSES, site=site)


def device_ids_of(permits: Iterable[Permit]) -> set[str]:
    return {device for permit in permits for device in permit.device_ids}


def devices_in_scope(hub_store, site: str) -> set[str]:
    """The devices of the site's permits in scope (what the EAM pull and clearance cover)."""
    return hub_store.devices_in_use(site, SYNC_SCOPE_STATUSES)


@dataclass(frozen=True)
class ChangeScope:
    """What a re-gate after a change covers: the changed permits and devices. The devices
    touched are the changed ones and those of the changed permits; they are pulled and profiled
    again, and every permit that changed or uses a touched device is decided again. `None` for
    a scope means the whole site (a sync)."""

    permits: frozenset[str]
    devices: frozenset[str]

    def devices_touched(self, hub_store, site: str) -> set[str]:
        """The changed devices, and every device of the changed permits still in scope."""
        changed = hub_store.load_permits(statuses=SYNC_SCOPE_STATUSES, site=site, permit_ids=self.permits) if self.permits else []
        return set(self.devices) | device_ids_of(changed)



def quarantined_permits(hub_store, site: str | None) -> list[dict]:
    """Quarantined PTW permit records of `site` (every site if None); one whose site could not
    be read counts for every site, so that each site's gate blocks it."""
    return [
        row
        for row in hub_store.list_quarantine(system="ptw", record_kinds=("permit",), with_payload=False)
        if row["source_key"]
        and (not site or (row.get("partial") or {}).get("site", site) == site)
    ]


def permits_of_site(hub_store, site: str) -> set[str]:
    """The permit IDs the PTW files under the site: its stored permits and its unreadable ones
    whose site could be read (one whose site could not be read may be filed anywhere)."""
    quarantined = quarantined_permits(hub_store, site)
    return hub_store.permit_ids(site) | {r["source_key"] for r in quarantined if (r.get("partial") or {}).get("site") == site}


def invalid_eam_records(hub_store, site: str, device_ids: Collection[str] | None = None) -> dict[str, list[str]]:
    """Quarantined equipment and work orders of the site's devices (of `device_ids`, if given):
    unreadable is not clear.

    A record whose site could not be read counts at every site, like an unreadable permit."""
    invalid: dict[str, list[str]] = defaultdict(list)
    rows = hub_store.list_quarantine(
        system="eam", record_kinds=("maintenance_record", "equipment"), device_ids=device_ids, with_payload=False
    )
    for row in rows:
        partial = row.get("partial") or {}
        device = partial.get("device_id")
        if device and partial.get("site", site) == site:
            invalid[device].append(row["reason"])
    return invalid


def suspect_devices(
    hub_store, site: str, device_ids: Collection[str], answered: Mapping[str, datetime] | None = None
) -> dict[str, list[str]]:
    """Devices whose latest EAM reply was held as suspect and not answered well since; `answered`,
    the devices' EAM data ages if the caller has read them in the same transaction."""
    suspect = hub_store.lookup_times(EAM_SUSPECT, device_ids, site=site)
    if answered is None:
        answered = hub_store.lookup_times(EAM_ANSWERED, list(suspect), site=site) if suspect else {}
    return {
        device: [f"reply of {at.isoformat()} was empty or dropped open work orders"]
        for device, at in suspect.items()
        if device not in answered or answered[device] <= at
    }


def clearance_profiles(
    hub_store, site: str, device_ids: Collection[str], rules: GateRules, now: datetime,
    answered: Mapping[str, datetime] | None = None,
) -> dict[str, DeviceProfile]:
    """Each device's profile at the site, from the hub's copy of the EAM; `answered`, the EAM
    data ages of the devices if the caller has just read them in the same transaction."""
    answered = dict(answered) if answered is not None else hub_store.lookup_times(EAM_ANSWERED, device_ids, site=site)
    eam = SiteEam(
        site=site,
        equipment=hub_store.load_equipment(site, device_ids),
        # Finished work without an isolation holds no hazard: its history is not read back.
        records=hub_store.load_maintenance_records(site, device_ids, unfinished_or_isolated=True),
        answered_at=answered,
        invalid=invalid_eam_records(hub_store, site, device_ids),
        suspect=suspect_devices(hub_store, site, device_ids, answered),
    )
    return build_profiles(sorted(device_ids), eam, rules, now)


def refresh_clearance(
    hub_store, site: str, device_ids: Collection[str], rules: GateRules, now: datetime, *, scoped: bool
) -> dict[str, DeviceProfile]:
    """Compute and store the profiles of the site's devices: all of them, or (`scoped`, a re-gate
    after a change) only those of `device_ids`, leaving the others' stored profiles as they are.

    A profile is stamped with the moment before the store was read for it: of two refreshes of
    a device at once (a sync and a re-gate), the store keeps the one that read later, which saw
    every change the other saw."""
    computed_at = datetime.now(timezone.utc)
    profiles = clearance_profiles(hub_store, site, device_ids, rules, now)
    hub_store.replace_device_clearance(
        site,
        [
            {
                "device_id": p.device_id,
                "known": p.known,
                "hazards": [h.model_dump(mode="json") for h in p.hazards],
                "data_as_of": p.data_as_of,
                "computed_at": computed_at,
            }
            for p in profiles.values()
        ],
        devices=sorted(device_ids) if scoped else None,
    )
    return profiles


def stored_profiles(hub_store, site: str, device_ids: Collection[str]) -> dict[str, DeviceProfile]:
    """The profiles the clearance step last stored for the site's devices."""
    return {
        device: DeviceProfile.model_validate({k: row[k] for k in ("device_id", "known", "hazards", "data_as_of")})
        for device, row in hub_store.load_device_clearance(site, device_ids).items()
    }


def evaluate_site(
    hub_store,
    site: str,
    rules: GateRules,
    now: datetime,
    *,
    stored: bool = False,
    scope: ChangeScope | None = None,
) -> list[GateDecision]:
    """Decisions for every gated permit of the site (only those `scope` affects, if given), by
    permit ID: its stored permits against their devices' profiles (as the clearance step stored
    them if `stored`, else recomputed from the store), and its quarantined permit records,
    which override the last good copy."""
    permits = hub_store.load_permits(statuses=rules.gated_statuses, site=site)
    if scope is not None:
        # Every device the run refreshed, not only those the sensor saw change: a changed permit's
        # device may bring news (a lock, a status) that the other permits on it must hear too.
        touched = scope.devices_touched(hub_store, site)
        permits = [p for p in permits if p.permit_id in scope.permits or not touched.isdisjoint(p.device_ids)]
    devices = device_ids_of(permits)
    if stored:
        profiles = stored_profiles(hub_store, site, devices)
    else:
        profiles = clearance_profiles(hub_store, site, devices, rules, now)
    by_id = {d.permit_id: d for p in permits if (d := decide(p, profiles, rules, now)) is not None}
    for decision in invalid_permit_decisions(quarantined_permits(hub_store, site), rules, now):
        by_id[decision.permit_id] = decision
    return [by_id[k] for k in sorted(by_id)]


def evaluate_unconfigured(
    permits: Iterable[Permit], rules: GateRules, now: datetime, quarantined: Iterable[Mapping] = ()
) -> list[GateDecision]:
    """Decisions for permits of sites the hub is not configured for: every gated one blocks, and
    so does an unreadable one of such a site (no configured site's gate would take it)."""
    by_id = {d.permit_id: d for p in permits if (d := decide(p, {}, rules, now, site_configured=False)) is not None}
    for decision in invalid_permit_decisions(quarantined, rules, now):
        by_id[decision.permit_id] = decision
    return [by_id[k] for k in sorted(by_id)]


def quarantined_permits_outside(hub_store, sites: Collection[str]) -> list[dict]:
    """Quarantined permit records whose readable site is none of `sites`."""
    return [
        row
        for row in quarantined_permits(hub_store, None)
        if (site := (row.get("partial") or {}).get("site")) is not None and site not in sites
    ]


def record_decisions(hub_store, decisions: list[GateDecision], now: datetime, *, only_changed: bool = True) -> int:
    """Append the decisions to the trail, each with its audit row; how many were appended.

    The trail records a decision when it changes (its fingerprint: outcome, reasons, rule
    version), so unchanged syncs add nothing; `only_changed=False` records every one (a
    decision someone asked for)."""
    chosen = [(d, decision_fingerprint(d)) for d in decisions]
    if only_changed:
        # In order: a permit decided twice in one batch is compared with its decision before.
        latest = hub_store.latest_fingerprints({d.permit_id for d in decisions})
        changed = []
        for decision, fingerprint in chosen:
            if latest.get(decision.permit_id) != fingerprint:
                changed.append((decision, fingerprint))
                latest[decision.permit_id] = fingerprint
        chosen = changed
    if not chosen:
        return 0  # no write lock taken for nothing: gate checks and runs share the store
    audited = [(d.permit_id, {**d.model_dump(mode="json"), "fingerprint": fp}) for d, fp in chosen]
    hub_store.append_gate_decisions(
        [d for d, _ in chosen], [fp for _, fp in chosen], audit=AuditBatch("gate_decision", audited, now)
    )
    return len(chosen)
