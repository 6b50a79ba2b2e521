"""The mock plant a harness drives: started once, reset to the fixtures between cases, faulted on demand.

Starting the mocks costs more than a whole sync, so one set serves every case; `reset`
returns them to the fixture state (no holds, no documents, no faults) in milliseconds.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import TracebackType

import httpx

from hub.harness.invariants import Observed, observe
from mock_systems.servers import RunningSystems, start_systems

SYSTEMS = ("ptw", "eam", "mes", "erp")  # the plant systems the hub is configured with

SETTLE_POLL_S = 0.05


class MockPlant:
    def __init__(self, fixtures: Path, state_dir: Path | None = None):
        self.fixtures = fixtures
        self._state_dir = state_dir
        self._systems: RunningSystems | None = None
        self._admin = httpx.Client(timeout=30)

    def __enter__(self) -> MockPlant:
        self._systems = start_systems(self.fixtures, state_dir=self._state_dir)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._admin.close()
        if self._systems is not None:
            self._systems.stop()

    @property
    def urls(self) -> dict[str, str]:
        """What the hub is configured with."""
        assert self._systems is not None, "use MockPlant as a context manager"
        return self._systems.urls

    @property
    def admin_urls(self) -> dict[str, str]:
        assert self._systems is not None, "use MockPlant as a context manager"
        return self._systems.base_urls

    def reset(self) -> None:
        """Back to the fixtures: no holds, no ERP documents, no faults, an empty request log."""
        for url in self.admin_urls.values():
            self._admin.post(f"{url}/_admin/reset").raise_for_status()

    def set_faults(self, plans: dict[str, dict]) -> None:
        """Each system gets its plan from `plans`; every other system is cleared."""
        for name, url in self.admin_urls.items():
            self._admin.put(f"{url}/_admin/faults", json=plans.get(name, {})).raise_for_status()

    def faults_fired(self) -> int:
        """Requests since the last reset that a fault rule refused, spoilt or delayed."""
        return sum(
            1
            for url in self.admin_urls.values()
            for entry in self._admin.get(f"{url}/_admin/received").raise_for_status().json()
            if entry.get("fault")
        )

    def settle(self, within_s: float) -> bool:
        """Wait until no request is still being handled (a delayed one may yet commit); False if one still is."""
        deadline = time.monotonic() + within_s
        while True:
            pending = [
                entry
                for url in self.admin_urls.values()
                for entry in self._admin.get(f"{url}/_admin/received").raise_for_status().json()
                if entry["status"] is None
            ]
            if not pending or time.monotonic() >= deadline:
                return not pending
            time.sleep(SETTLE_POLL_S)

    def observe(self, database_url: str) -> Observed:
        return observe(self.admin_urls, database_url)
