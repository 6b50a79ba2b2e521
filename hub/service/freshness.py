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
#: Devices asked for in one pull.
BATCH = 200
#: How often the devices are looked at (seconds).
TICK_S = 5.0
LOCK_SITE, LOCK_SCOPE = "all", "eam-fresh"


class KeepFresh:
    """`pass_once()` refreshes what is due; `start()` runs passes every `TICK_S` until `stop()`."""

    def __init__(self, service: GateCheckService, eam: EamResource, tick_s: float = TICK_S):
        self.service = service
        self.eam = eam  # with the sync's deadlines: nobody waits on these pulls
        self.tick_s = tick_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def pass_once(self) -> int:
        """Pull the due devices of every configured site; how many were answered."""
        rules = self.service.rules()
        if rules.disabled:
            return 0
        hub_store = self.service.store()
        limit = rules.decision_data_age * REFRESH_AT
        answered_now = 0
        for site in sorted(self.service.sites):
            now = datetime.now(timezone.utc)
            devices = hub_store.devices_in_use(site, rules.gated_statuses, permit_types=rules.gated_permit_types)
            answered = hub_store.lookup_times(EAM_ANSWERED, devices, site=site)
            due = [d for d in devices if d not in answered or now - answered[d] > limit]
            due.sort(key=lambda d: (d in answered, answered.get(d, now), d))  # never answered, then oldest
            # At most the share of the devices that spreads them over half the allowed age: pulled
            # all at once, they would all come due again at once, a burst that checks wait behind.
            spread = max(1, math.ceil(len(devices) * self.tick_s / (rules.decision_data_age.total_seconds() / 2)))
            due = due[:spread]
            for start in range(0, len(due), BATCH):
                if self._stop.is_set():
                    return answered_now
                batch = due[start : start + BATCH]
                error = self.service.refresh_eam(hub_store, site, batch, eam=self.eam)
                if error is not None:
                    log.warning("keeping EAM data fresh at site %s: the EAM did not answer (%s); checks will ask it", site, error)
                    break
                answered_now += len(batch)
        return answered_now

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
                    while not self._stop.is_set():
                        self._pass_logged()
                        self._stop.wait(self.tick_s)
            except SiteBusy:
                pass  # another process of the service keeps the data fresh
            except Exception:
                log.exception("keeping EAM data fresh: the lock could not be taken")
            self._stop.wait(self.tick_s)

    def _pass_logged(self) -> None:
        try:
            self.pass_once()
        except Exception:
            log.exception("keeping EAM data fresh: a pass failed; checks ask the EAM for what is not fresh")
