"""The mock plant in OS processes of its own (one per system), and the admin calls the bench makes on it.

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
    """`mock-systems serve` on free ports, over `fixtures`, keeping PTW holds and ERP documents in
    `state_dir`: one OS process per system, as a plant's systems are servers of their own (served
    together, the EAM's large SOAP replies held the PTW's hold writes up behind one GIL)."""

    def __init__(self, fixtures: Path, state_dir: Path, log_path: Path):
        self.fixtures = fixtures
        self.state_dir = state_dir
        self.log_path = log_path
        self.urls: dict[str, str] = {}
        self._processes: list[subprocess.Popen[str]] = []
        self._admin = httpx.Client(timeout=ADMIN_TIMEOUT_S)

    def __enter__(self) -> MocksProcess:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a", encoding="utf-8") as log:
            for name in ALL_SYSTEMS:  # all started before any is awaited: they load their fixtures side by side
                command = [
                    sys.executable, "-m", "mock_systems", "serve", "--only", name,
                    "--fixtures", str(self.fixtures), "--state-dir", str(self.state_dir),
                    *(arg for other in ALL_SYSTEMS for arg in (f"--{other.replace('_', '-')}-port", "0")),
                ]
                self._processes.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True))
        try:
            for process in self._processes:
                self._await_ready(process)
        except BaseException:
            self.stop()
            raise

    def _await_ready(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:  # a mock prints "name: url", then that it is running
            if line.startswith(READY_PREFIX):
                return
            name, _, url = line.strip().partition(": ")
            if name in ALL_SYSTEMS:
                self.urls[name] = url
        process.wait()
        tail = self.log_path.read_text(encoding="utf-8")[-2000:]
        raise MocksFailed(f"mock-systems exited with {process.returncode} before serving:\n{tail}")

    def stop(self) -> None:
        self._admin.close()
        running = [p for p in self._processes if p.poll() is None]
        for process in running:
            os.kill(process.pid, signal.SIGTERM)
        for process in running:
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._processes = []

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
