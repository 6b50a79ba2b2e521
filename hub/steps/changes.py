"""What changed since a sensor last looked, per site: the PTW's permits and the EAM's feed.

A sensor tick asks each system once per site, cheaply: one page of the PTW's changed permits,
and the EAM's change feed of the site (its assets and work orders changed since the last look).
A change counts only when it differs from what the hub stores, or cannot be read (unreadable is
not clear): so a tick repeated before the re-gate run stored a change sees the same changes
again, under the same run key, and a change the run stored is not seen twice.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from hub.steps.gate import devices_in_scope
from hub.steps.records import map_inbound

#: Leeway for clocks: changes are stamped by the systems' clocks, asked for by the hub's.
CLOCK_LEEWAY = timedelta(minutes=1)


@dataclass(frozen=True)
class SiteChanges:
    site: str
    permits: list[str] = field(default_factory=list)  # changed or unreadable permit IDs
    devices: list[str] = field(default_factory=list)  # devices in use whose EAM data changed
    ptw_cursor: str | None = None  # the newest permit change seen (the next tick's `since`)
    eam_since: str = ""  # the next tick asks the EAM for changes since this
    seen_at: str = ""  # when the EAM feed was asked (the latest change could be this old)

    def cursor(self) -> dict:
        return {"ptw": self.ptw_cursor, "eam_since": self.eam_since}

    @property
    def changed(self) -> bool:
        return bool(self.permits or self.devices)

    @property
    def run_key(self) -> str:
        """The same changes give the same key, so a tick repeated before the run is deduplicated."""
        digest = hashlib.sha256(json.dumps([self.permits, self.devices, self.ptw_cursor]).encode()).hexdigest()[:16]
        return f"{self.site}:{digest}"

    def run_config(self) -> dict:
        """The re-gate run's scope: only these permits and devices are pulled, profiled and decided."""
        scope = {"config": {"permits": self.permits, "devices": self.devices}}
        return {"ops": {op: scope for op in ("eam_pull", "equipment_clearance", "permit_gate_decisions")}}


def look(hub_store, ptw_client, ptw_mapping, eam_client, eam_mapping, site: str, cursor: dict, now: datetime) -> SiteChanges:
    """One cheap look at a site's PTW and EAM since `cursor` (a previous `SiteChanges.cursor()`)."""
    since = cursor.get("ptw") or hub_store.get_cursor(f"ptw.permits.updated_since.{site}")
    newest = since
    permits: set[str] = set()
    with ptw_client:
        page = next(ptw_client.pages("permits_changed", since=since, site=site), {})
        mapped = map_inbound(ptw_mapping, ptw_client, "permit", page.get("permit", []))
    for permit in mapped.records:
        stamp = permit.updated_at.isoformat()
        if since is None or stamp > since:
            permits.add(permit.permit_id)
            newest = stamp if newest is None or stamp > newest else newest
    permits.update(item.source_key for item in mapped.quarantined if item.source_key)

    eam_since = cursor.get("eam_since") or (now - CLOCK_LEEWAY).isoformat()
    devices = changed_devices(hub_store, eam_client, eam_mapping, site, eam_since)
    if devices:  # the site's devices in use are read only when something changed
        devices &= devices_in_scope(hub_store, site)
    return SiteChanges(
        site, sorted(permits), sorted(devices), newest, (now - CLOCK_LEEWAY).isoformat(), now.isoformat()
    )


def changed_devices(hub_store, eam_client, eam_mapping, site: str, since: str) -> set[str]:
    """Devices whose equipment or work orders on the site's EAM feed differ from the store."""
    equipment, records, unreadable = [], [], set()
    with eam_client:
        for reply in eam_client.pages("changes", site=site, changed_since=since):
            for kind, into in (("equipment", equipment), ("maintenance_record", records)):
                result = map_inbound(eam_mapping, eam_client, kind, reply.get(kind, []))
                into.extend(r for r in result.records if r.site == site)
                unreadable.update(
                    partial["device_id"]
                    for item in result.quarantined
                    if (partial := item.partial or {}).get("device_id") and partial.get("site", site) == site
                )
    stored_equipment = hub_store.load_equipment(site, [e.device_id for e in equipment])
    stored_records = hub_store.maintenance_records_by_id(site, [r.record_id for r in records])
    changed = {e.device_id for e in equipment if stored_equipment.get(e.device_id) != e}
    for record in records:
        stored = stored_records.get(record.record_id)
        if stored != record:
            # A work order moved to another device changes both.
            changed.update({record.device_id, stored.device_id} if stored else {record.device_id})
    return changed | unreadable
