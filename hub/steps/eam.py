"""The EAM pull of one site: the devices of its permits in scope, batch by batch, at that site.

A device is pulled whole when it is new to the hub or its last whole pull is older than
`full_pull_every_h`; otherwise the EAM is asked only for its work orders changed since its
last answer. Each batch is mapped and stored as it arrives, while the next are on their way.

Absence of evidence is not clearance. Only a device whose equipment record came back is
positively covered by a reply: only its data age advances, and only its work orders that a
whole pull no longer returns are deleted. A reply that leaves out equipment the hub knows at
the site, or drops more than `suspect_drop_share` of the open work orders of the devices pulled
whole, is held as suspect: nothing is deleted and the devices block until a good reply.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from hub.connectors.eam import SoapFault
from hub.connectors.retry import TransientError, VendorRejected
from hub.failpoints import failpoint
from hub.steps.gate import EAM_ANSWERED, EAM_SUSPECT, EAM_WHOLE
from hub.steps.records import lineage_of, map_inbound, quarantine_rejects

#: Leeway for clocks: the EAM stamps changes by its clock, the hub asks by its own.
CLOCK_LEEWAY = timedelta(minutes=10)
#: What a failed EAM request raises: the reply is then missing, whole.
EAM_ERRORS = (TransientError, VendorRejected, SoapFault, ValueError)
#: Fewer dropped open work orders than this are never suspect: one closed-and-deleted order is normal.
SUSPECT_MIN_DROPPED = 2


def pull_plan(
    hub_store, site: str, device_ids: set[str], now: datetime, full_pull_every_h: float
) -> tuple[list[str], list[str], str]:
    """Devices to pull whole (new, or not pulled whole lately), devices to ask only for changes,
    and since when: their earliest last answer less the clock leeway, so no change is missed."""
    pulled_whole = hub_store.lookup_times(EAM_WHOLE, device_ids, site=site)
    recent = now - timedelta(hours=full_pull_every_h)
    changes_only = sorted(device for device, at in pulled_whole.items() if at > recent)
    answered = hub_store.lookup_times(EAM_ANSWERED, changes_only, site=site)
    since = min(answered.values(), default=now) - CLOCK_LEEWAY
    return sorted(device_ids - set(changes_only)), changes_only, since.isoformat()


@dataclass
class EamPull:
    """What one pull took in, batch by batch."""

    site: str
    equipment: int = 0
    records: int = 0
    quarantined: int = 0
    found: set[str] = field(default_factory=set)
    record_keys: set[str] = field(default_factory=set)
    wrong_site: int = 0
    unmapped: dict[str, Counter] = field(default_factory=lambda: {"equipment": Counter(), "maintenance_record": Counter()})
    equipment_sample: list[dict] = field(default_factory=list)
    record_sample: list[dict] = field(default_factory=list)

    def take(self, hub_store, client, mapping, page: dict, fetched_at: datetime) -> None:
        vendor_equipment = page.get("equipment", [])
        vendor_records = page.get("maintenance_record", [])
        equipment = map_inbound(mapping, client, "equipment", vendor_equipment)
        records = map_inbound(mapping, client, "maintenance_record", vendor_records)
        # The request named the site; a record of another site answers a question not asked.
        own_equipment = [e for e in equipment.records if e.site == self.site]
        own_records = [r for r in records.records if r.site == self.site]
        self.wrong_site += len(equipment.records) - len(own_equipment) + len(records.records) - len(own_records)
        with hub_store.transaction(write=True):  # the page lands whole, in one commit
            hub_store.upsert_equipment(own_equipment, fetched_at, lineage_of(mapping))
            hub_store.upsert_maintenance_records(own_records, fetched_at, lineage_of(mapping))
            self.quarantined += quarantine_rejects(hub_store, "eam", mapping, equipment.quarantined + records.quarantined)
        self.unmapped["equipment"].update(mapping.unmapped_fields("equipment", vendor_equipment))
        self.unmapped["maintenance_record"].update(mapping.unmapped_fields("maintenance_record", vendor_records))
        self.equipment += len(own_equipment)
        self.records += len(own_records)
        self.found.update(e.device_id for e in own_equipment)
        # An equipment record that was quarantined still shows the EAM answered for the device.
        self.found.update(
            r.partial["device_id"]
            for r in equipment.quarantined
            if (r.partial or {}).get("device_id") and (r.partial or {}).get("site", self.site) == self.site
        )
        self.record_keys.update(r.record_id for r in own_records)
        self.equipment_sample.extend(
            {"device_id": e.device_id, "name": e.name, "site": e.site} for e in own_equipment[: 10 - len(self.equipment_sample)]
        )
        self.record_sample.extend(
            {"record_id": r.record_id, "device_id": r.device_id, "status": r.status}
            for r in own_records[: 10 - len(self.record_sample)]
        )


@dataclass(frozen=True)
class Coverage:
    """What a complete pull positively answered, and what it held as suspect."""

    answered: list[str]
    unknown: list[str]
    suspect: list[str]
    reasons: list[str]
    dropped: int


def judge(hub_store, pull: EamPull, device_ids: set[str], whole: list[str], suspect_drop_share: float) -> Coverage:
    """Which devices the reply covers, which it leaves in doubt, and why."""
    known = set(hub_store.load_equipment(pull.site, device_ids))
    missing_known = sorted((device_ids - pull.found) & known)
    unknown = sorted(device_ids - pull.found - known)
    reasons = []
    if missing_known:
        reasons.append(f"{len(missing_known)} device(s) the EAM returned before are missing from its reply")
    whole_found = [d for d in whole if d in pull.found]
    stored_open = hub_store.load_maintenance_records(pull.site, whole_found, unfinished_or_isolated=True)
    dropped = [r for r in stored_open if r.record_id not in pull.record_keys]
    suspect = set(missing_known)
    if len(dropped) >= SUSPECT_MIN_DROPPED and len(dropped) > suspect_drop_share * len(stored_open):
        reasons.append(
            f"the reply dropped {len(dropped)} of {len(stored_open)} open work orders at once "
            f"(more than {suspect_drop_share:.0%})"
        )
        suspect.update(r.device_id for r in dropped)
    answered = sorted(pull.found - suspect)
    return Coverage(answered, unknown, sorted(suspect), reasons, len(dropped))


def settle(hub_store, pull: EamPull, coverage: Coverage, whole: list[str], fetched_at: datetime) -> int:
    """Apply a complete pull: delete what the EAM positively no longer has, advance the data age
    of what it covered, mark the suspect. Returns how many work orders were deleted."""
    site = pull.site
    suspect = set(coverage.suspect)
    settled_whole = [d for d in whole if d in coverage.answered] if not coverage.reasons else []
    # One commit: the deletions and the data ages they justify land together or not at all.
    with hub_store.transaction(write=True):
        # A suspect reply deletes nothing, not even on devices it did return.
        dropped = hub_store.drop_maintenance_records_not_refetched(site, settled_whole, fetched_at)
        failpoint("eam.before_lookups")
        hub_store.record_lookups(EAM_ANSWERED, [*coverage.answered, *coverage.unknown], fetched_at, site=site)
        hub_store.record_lookups(EAM_WHOLE, settled_whole, fetched_at, site=site)
        hub_store.record_lookups(EAM_SUSPECT, sorted(suspect), fetched_at, site=site)
    return dropped


@dataclass
class SitePull:
    """One site's pull, whole: what was asked, what came in, and how it was judged. `error` says
    why the reply is missing (nothing was settled then: the devices keep their old answer time)."""

    pull: EamPull
    requested: int
    whole: list[str]
    changes_only: list[str]
    error: str | None = None
    coverage: Coverage | None = None
    deleted: int = 0


def pull_site(
    hub_store, client, mapping, site: str, device_ids: set[str], full_pull_every_h: float, suspect_drop_share: float
) -> SitePull:
    """Pull, judge and settle the site's devices `device_ids` through an open EAM `client`."""
    fetched_at = datetime.now(timezone.utc)
    whole, changes_only, since = pull_plan(hub_store, site, device_ids, fetched_at, full_pull_every_h)
    out = SitePull(EamPull(site), len(device_ids), whole, changes_only)
    try:
        for ids, values in ((whole, {}), (changes_only, {"changed_since": since})):
            for page in client.pages("maintenance", ids=ids, site=site, **values) if ids else ():
                out.pull.take(hub_store, client, mapping, page, fetched_at)
    except EAM_ERRORS as exc:  # ValueError: a request the SOAP stack refuses to build
        out.error = f"{type(exc).__name__}: {exc}"
        return out
    out.coverage = judge(hub_store, out.pull, device_ids, whole, suspect_drop_share)
    out.deleted = settle(hub_store, out.pull, out.coverage, whole, fetched_at)
    return out
