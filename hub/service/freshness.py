"""Keeping the EAM data of gated permits' devices fresh, so that a gate check need not ask the EAM.

A check answers from the hub's copy when each device's last good EAM answer is younger than the
rules' `decision_data_age`, and asks the EAM while the PTW waits otherwise. Asked one permit at a
time, that costs a round trip and a pull per check; asked ahead, in one pull per site and batch,
it costs a fraction per device. So one thread of the service re-pulls, whole, the devices of the
site's gated permits whose data is older than `REFRESH_AT` of the allowed age.

Only a good answer makes data fresh (the pull's own rules: an empty or suspect reply refreshes
nothing), so an EAM that is down leaves the data to age, and the checks then ask the EAM and
block when it does not answer. One process of a multi-process service does it: the holder of
the store's `eam-fresh` lock.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from hub.store.locks import SiteBusy, site_lock
from hub.steps.gate import EAM_ANSWERED

if TYPE_CHECKING:
    from hub.resources import EamResource
    from hub.service.gate_check import GateCheckService

log = logging.getLogger("hub.service")

#: A device is pulled again once its data is older than this share of `decision_data_age`.
REFRESH_AT = 0.75
#: Devices asked for in one pull. Each reply lands in one write transaction, which every gate
#: check's audit commit waits behind: 200 devices held the store's write lock for about 110 ms.
BATCH = 50
#: How often each site's devices are looked at (seconds); the sites take turns within it.
TICK_S = 5.0
LOCK_SITE, LOCK_SCOPE = "all", "eam-fresh"


def older_than(hub_store, site: str, rules, age) -> tuple[set[str], list[str]]:
    """The devices of the site's gated permits, and those whose last good EAM answer is older
    than `age` (or missing): never answered first, then oldest first."""
    now = datetime.now(timezone.utc)
    devices = hub_store.devices_in_use(site, rules.gated_statuses, permit_types=rules.gated_permit_types)
    answered = hub_store.lookup_times(EAM_ANSWERED, devices, site=site)
    due = [d for d in devices if d not in answered or now - answered[d] > age]
    due.sort(key=lambda d: (d in answered, answered.get(d, now), d))
    return devices, due


class KeepFresh:
    """`pass_once()` refreshes what is due; `start()` looks at each site every `TICK_S`, one site
    at a time, until `stop()`."""

    def __init__(self, service: GateCheckService, eam: EamResource, tick_s: float = TICK_S):
        self.service = service
        self.eam = eam  # with the sync's deadlines: nobody waits on these pulls
        self.tick_s = tick_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def pass_once(self) -> int:
        """Pull the due devices of every configured site; how many were answered."""
        return sum(self.pass_site(site) for site in sorted(self.service.sites))

    def pass_site(self, site: str) -> int:
        """Pull the site's share of its due devices; how many were answered."""
        rules = self.service.rules()
        if rules.disabled:
            return 0
        hub_store = self.service.store()
        devices, due = older_than(hub_store, site, rules, rules.decision_data_age * REFRESH_AT)
        # At most the share of the devices that spreads them over half the allowed age: pulled
        # all at once, they would all come due again at once, a burst that checks wait behind.
        spread = max(1, math.ceil(len(devices) * self.tick_s / (rules.decision_data_age.total_seconds() / 2)))
        answered = 0
        for start in range(0, min(len(due), spread), BATCH):
            if self._stop.is_set():
                break
            batch = due[start : min(start + BATCH, spread)]
            error = self.service.refresh_eam(hub_store, site, batch, eam=self.eam)
            if error is not None:
                log.warning("keeping EAM data fresh at site %s: the EAM did not answer (%s); checks will ask it", site, error)
                break
            answered += len(batch)
        return answered

    def freshness(self) -> dict:
        """How many devices of gated permits a check would have to ask the EAM for now (their data is
        older than `decision_data_age`), of how many: 0 stale is a service that answers from its copy."""
        rules = self.service.rules()
        hub_store = self.service.store()
        gated = stale = 0
        for site in sorted(self.service.sites):
            devices, due = older_than(hub_store, site, rules, rules.decision_data_age)
            gated, stale = gated + len(devices), stale + len(due)
        return {"gated_devices": gated, "stale_devices": stale}

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="eam-keep-fresh", daemon=True)
            self._thread.start()

    def stop(self, wait_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(wait_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with site_lock(self.service.settings.database_url, LOCK_SITE, scope=LOCK_SCOPE, wait_s=0):
                    self._keep_sites_fresh()
            except SiteBusy:
                pass  # another process of the service keeps the data fresh
            except Exception:
                log.exception("keeping EAM data fresh: the lock could not be taken")
            self._stop.wait(self.tick_s)

    def _keep_sites_fresh(self) -> None:
        """Each site once a tick, the sites' pulls spread evenly over it: the pulls of every site
        back to back held the checks' CPU and the store's write lock for a second at a time."""
        while not self._stop.is_set():
            sites = sorted(self.service.sites) or [None]
            for site in sites:
                started = time.monotonic()
                if site is not None:
                    self._pass_logged(site)
                if self._stop.wait(max(0.0, self.tick_s / len(sites) - (time.monotonic() - started))):
                    return

    def _pass_logged(self, site: str) -> None:
        try:
            self.pass_site(site)
        except Exception:
            log.exception("keeping EAM data fresh at site %s: a pass failed; checks ask the EAM for what is not fresh", site)
