"""Start the mocks as real HTTP servers on loopback, each in a background thread.

Tests, demos and the `mock-systems` command all go through `start_systems`, so what the hub
talks to in CI is the same thing a person starts by hand. Each server gets a socket bound
before uvicorn starts, so port 0 yields a free port that is known before the first request.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import uvicorn

from .base import AuthConfigError, MockSystem
from .eam import EamSystem
from .eam_oslc import EamOslcSystem
from .erp import ErpSystem
from .faults import split_by_system
from .mes import MesSystem
from .mes_odata import MesODataSystem
from .ptw import PtwSystem

SYSTEMS: dict[str, type[MockSystem]] = {
    "ptw": PtwSystem,
    "eam": EamSystem,
    "mes": MesSystem,
    "erp": ErpSystem,
    "eam_oslc": EamOslcSystem,
    "mes_odata": MesODataSystem,
}
DEFAULT_PORTS = {"ptw": 8101, "eam": 8102, "mes": 8103, "erp": 8104, "eam_oslc": 8105, "mes_odata": 8106}
STARTUP_TIMEOUT_S = 30.0



@dataclass
class _Served:
    system: MockSystem
    server: uvicorn.Server
    thread: threading.Thread
    sock: socket.socket
    base_url: str


def _serve(system: MockSystem, host: str, port: int) -> _Served:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    config = uvicorn.Config(
        system.app,
        log_config=None,  # leave the host process's logging alone
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=2,  # a sleeping `timeout` fault must not hold up stop()
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"mock-{system.name}", daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(5)
            sock.close()
            raise RuntimeError(f"mock {system.name} did not start on {host}:{port}")
        time.sleep(0.01)
    bound_host, bound_port = sock.getsockname()[:2]
    return _Served(system, server, thread, sock, f"http://{bound_host}:{bound_port}")


class RunningSystems:
    """The running mocks. `urls` are what the hub is configured with; stop() ends them."""

    def __init__(self, served: dict[str, _Served]):
        self._served = served

    @property
    def urls(self) -> dict[str, str]:
        """System URLs: REST roots, the EAM's SOAP endpoint, the OSLC root and the OData service root."""
        return {name: s.base_url + s.system.url_path for name, s in self._served.items()}

    @property
    def base_urls(self) -> dict[str, str]:
        """Server roots, where `/_admin/...` lives."""
        return {name: s.base_url for name, s in self._served.items()}

    @property
    def systems(self) -> dict[str, MockSystem]:
        return {name: s.system for name, s in self._served.items()}

    def stop(self) -> None:
        for served in self._served.values():
            served.system.stopping.set()
            served.server.should_exit = True
        for served in self._served.values():
            served.thread.join(10)
            served.sock.close()

    def __enter__(self) -> RunningSystems:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def fault_plans(faults: dict | None) -> dict[str, dict]:
    """Fault plan per system name, from one plan for all or a plan per system."""
    return split_by_system(faults, tuple(SYSTEMS))


def start_systems(
    fixtures_dir: Path | str,
    *,
    ports: dict[str, int] | None = None,
    faults: dict[str, dict] | None = None,
    state_dir: Path | str | None = None,
    host: str = "127.0.0.1",
    auth: dict[str, dict] | None = None,
    only: Collection[str] | None = None,
) -> RunningSystems:
    """Start PTW, EAM, MES, ERP and the EAM's and MES's second flavors (or the systems `only`
    names); returns once all accept connections.

    `ports` maps system name to port (missing: 0, a free port). `faults` maps system name to a
    fault plan (or is one plan for all). `state_dir` keeps PTW holds and ERP documents
    across processes. `auth` maps system name to the credentials it requires (none if absent).
    """
    ports = dict(ports or {})
    unknown = (set(ports) | set(only or ())) - set(SYSTEMS)
    if unknown:
        raise ValueError(f"unknown systems: {sorted(unknown)} (known: {', '.join(SYSTEMS)})")
    plans = fault_plans(faults)
    auth = auth or {}
    if not isinstance(auth, dict) or not set(auth) <= set(SYSTEMS):
        raise AuthConfigError(f"auth must be an object keyed by system name ({', '.join(SYSTEMS)})")
    # Build every system first: a broken fixture fails before any server is started.
    systems = {
        name: cls(fixtures_dir, faults=plans.get(name), state_dir=state_dir, auth=auth.get(name))
        for name, cls in SYSTEMS.items()
        if only is None or name in only
    }
    served: dict[str, _Served] = {}
    try:
        for name, system in systems.items():
            served[name] = _serve(system, host, ports.get(name, 0))
    except BaseException:
        RunningSystems(served).stop()
        raise
    return RunningSystems(served)
