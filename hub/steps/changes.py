"""What changed since a sensor last looked, per site: the PTW's permits and the EAM's work orders.

A sensor tick asks each system once per site, cheaply (one page of the PTW listing, one
changes-only EAM query for the devices of the site's permits in scope), and re-gates the site
only when something changed. Cursors are the newest change each system showed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from hub.steps.gate import device_ids_of, permits_in_scope

#: Leeway for clocks: changes are stamped by the systems' clocks, asked for by the hub's.
CLOCK_LEEWAY = timedelta(minutes=1)


@dataclass(frozen=True)
class SiteChanges:
    site: str
    permits_changed: bool
    work_orders_changed: int
    ptw_cursor: str | None  # the newest permit change seen (the next tick's `since`)
    eam_since: str  # the next tick asks the EAM for changes since this
    eam_seen: str | None  # the newest work-order change seen: older ones were acted on already

    def cursor(self) -> dict:
        return {"ptw": self.ptw_cursor, "eam_since": self.eam_since, "eam_seen": self.eam_seen}

    @property
    def changed(self) -> bool:
        return self.permits_changed or self.work_orders_changed > 0


def look(hub_store, ptw_client, ptw_mapping, eam_client, eam_mapping, site: str, cursor: dict, now: datetime) -> SiteChanges:
    """One cheap look at a site's PTW and EAM since `cursor` (a previous `SiteChanges.cursor()`)."""
    since = cursor.get("ptw") or hub_store.get_cursor(f"ptw.permits.updated_since.{site}")
    newest = since
    permits_changed = False
    with ptw_client:
        page = next(ptw_client.pages("permits_changed", since=since, site=site), {})
    for permit in ptw_mapping.inbound("permit", page.get("permit", [])).records:
        stamp = permit.updated_at.isoformat()
        if since is None or stamp > since:
            permits_changed = True
            newest = stamp if newest is None or stamp > newest else newest
    devices = sorted(device_ids_of(permits_in_scope(hub_store, site)))
    eam_since = cursor.get("eam_since") or (now - CLOCK_LEEWAY).isoformat()
    seen = cursor.get("eam_seen")
    newest_order, changed_orders = seen, 0
    if devices:
        with eam_client:
            for reply in eam_client.pages("maintenance", ids=devices, site=site, changed_since=eam_since):
                mapped = eam_mapping.inbound("maintenance_record", reply.get("maintenance_record", []))
                # An unreadable work order is a change too: the gate blocks on it.
                stamps = [r.updated_at.isoformat() for r in mapped.records]
                changed_orders += len(mapped.quarantined)
                for stamp in stamps:
                    if seen is None or stamp > seen:
                        changed_orders += 1
                        newest_order = stamp if newest_order is None or stamp > newest_order else newest_order
    return SiteChanges(site, permits_changed, changed_orders, newest, (now - CLOCK_LEEWAY).isoformat(), newest_order)
