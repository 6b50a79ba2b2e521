"""The mock plant in an OS process of its own, and the admin calls the bench makes on it.

Served from the measured process, the mocks would share its GIL and every request would
slow the hub down as much as the answer does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

import httpx

PLANT_SYSTEMS = ("ptw", "eam", "mes", "erp")
ALL_SYSTEMS = (*PLANT_SYSTEMS, "eam_oslc", "mes_odata")  # reset them all: none may carry state over
READY_PREFIX = "mock systems running"
STOP_TIMEOUT_S = 30
ADMIN_TIMEOUT_S = 300  # a received log of a large sync is tens of megabytes


class MocksFailed(RuntimeError):
    """The mock process did not come up; the message holds the end of its log."""


def server_root(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class MocksProcess:
    """`mock-systems serve` on free ports, over `fixtures`, keeping PTW holds and ERP documents in `state_dir`."""

    def __init__(self, fixtures: Path, state_dir: Path, log_path: Path):
        self.fixtures = fixtures
        self.state_dir = state_dir
        self.log_path = log_path
        self.urls: dict[str, str] = {}
        self._process: subprocess.Popen[str] | None = None
        self._admin = httpx.Client(timeout=ADMIN_TIMEOUT_S)

    def __enter__(self) -> MocksProcess:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        ports = [arg for name in ALL_SYSTEMS for arg in (f"--{name.replace('_', '-')}-port", "0")]
        command = [
            sys.executable, "-m", "mock_systems", "serve",
            "--fixtures", str(self.fixtures), "--state-dir", str(self.state_dir), *ports,
        ]
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a", encoding="utf-8") as log:
            self._process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)
        assert self._process.stdout is not None
        for line in self._process.stdout:  # the mocks print "name: url" per system, then that they are running
            if line.startswith(READY_PREFIX):
                return
            name, _, url = line.strip().partition(": ")
            if name in ALL_SYSTEMS:
                self.urls[name] = url
        self._process.wait()
        tail = self.log_path.read_text(encoding="utf-8")[-2000:]
        raise MocksFailed(f"mock-systems exited with {self._process.returncode} before serving:\n{tail}")

    def stop(self) -> None:
        self._admin.close()
        if self._process is None or self._process.poll() is not None:
            return
        os.kill(self._process.pid, signal.SIGTERM)
        try:
            self._process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def _admin_url(self, system: str, what: str) -> str:
        return f"{server_root(self.urls[system])}/_admin/{what}"

    def reset(self) -> None:
        """Back to the fixtures: no holds, no ERP documents, an empty request log (the state dir is cleared too)."""
        for system in ALL_SYSTEMS:
            self._admin.post(self._admin_url(system, "reset")).raise_for_status()

    def received(self, system: str) -> list[dict]:
        return self._admin.get(self._admin_url(system, "received")).raise_for_status().json()

    def request_counts(self) -> dict[str, int]:
        """Requests each plant system received since start or reset, however long its log."""
        return {
            system: self._admin.get(self._admin_url(system, "received/count")).raise_for_status().json()["requests"]
            for system in PLANT_SYSTEMS
        }
