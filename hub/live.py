"""The live gate as a plant runs it: the gate-check service and the Dagster daemon with its sensors,
each a process of its own, and the PTW's pre-approval hook pointed at the service.

`hub demo --live` and `hub bench --live` start them this way; an operator runs the same two
commands (`hub serve`, and `hub dev` or `dagster-daemon run`).
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

from hub.bench.mocks_process import server_root

REPO = Path(__file__).resolve().parents[1]
WORKSPACE = REPO / "workspace.yaml"
#: How long the service may take to answer its first request.
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0


class LiveGateFailed(RuntimeError):
    """The service or the daemon did not start; the message names its log."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LiveGate:
    """`hub serve` and `dagster-daemon run` with `env` (HUB_* settings and DAGSTER_HOME), logs in `folder`.

    On entry the PTW at `ptw_url` is told to ask the service before approve and start, and to
    suspend active work a block lands on; on exit both processes are stopped with SIGTERM.
    """

    def __init__(
        self, env: dict[str, str], folder: Path, ptw_url: str, requests_per_second: float = 500.0, workers: int = 1
    ):
        self.workers = workers
        self.token = secrets.token_urlsafe(24)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/api/v1/gate-checks"
        self.env = {
            **env,
            "HUB_GATE_API__TOKEN": self.token,
            "HUB_GATE_API__REQUESTS_PER_SECOND": str(requests_per_second),
        }
        self.folder = folder
        self.ptw_admin = f"{server_root(ptw_url)}/_admin"
        self._processes: list[tuple[str, subprocess.Popen]] = []

    def __enter__(self) -> LiveGate:
        try:
            self._start("service", [str(Path(sys.executable).with_name("hub")), "serve", "--port", str(self.port), "--workers", str(self.workers)])
            self._await_service()
            self._start("daemon", [str(Path(sys.executable).with_name("dagster-daemon")), "run", "-w", str(WORKSPACE)])
            with httpx.Client(timeout=10) as admin:
                admin.put(f"{self.ptw_admin}/gate-hook", json={"url": self.url, "token": self.token}).raise_for_status()
                admin.put(f"{self.ptw_admin}/suspend-on-block", json={"enabled": True}).raise_for_status()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def log(self, name: str) -> Path:
        return self.folder / f"{name}.log"

    def _start(self, name: str, command: list[str]) -> None:
        with self.log(name).open("a", encoding="utf-8") as log:
            process = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        self._processes.append((name, process))

    def _await_service(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        name, process = self._processes[-1]
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            try:
                httpx.get(self.url.replace("/api/v1/gate-checks", "/openapi.json"), timeout=2).raise_for_status()
                return
            except httpx.HTTPError:
                time.sleep(0.3)
        raise LiveGateFailed(f"the gate-check {name} did not come up within {START_TIMEOUT_S:g} s; see {self.log(name)}")

    def await_fresh(self, timeout_s: float) -> dict:
        """Wait until the service says every gated device's EAM data is fresh (its first keep-fresh
        passes after a start), at most `timeout_s`; the last health answer, with the seconds waited."""
        started = time.monotonic()
        health: dict = {}
        while True:
            try:
                health = httpx.get(self.url.replace("/gate-checks", "/health"), timeout=10).json()
            except (httpx.HTTPError, ValueError):
                health = {"status": "unanswered"}
            waited = time.monotonic() - started
            if health.get("status") == "fresh" or waited >= timeout_s:
                return {**health, "waited_s": round(waited, 1)}
            time.sleep(1.0)

    def stop(self) -> None:
        try:
            httpx.delete(f"{self.ptw_admin}/gate-hook", timeout=5)
        except httpx.HTTPError:
            pass  # the PTW may be gone already
        for _, process in self._processes:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
        for _, process in self._processes:
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._processes.clear()
