"""What the four mocks share: the admin surface, the received log, faults and persistence.

Each system subclasses `MockSystem` and only adds its vendor routes and its own state, so the
admin and fault behaviour documented at the end of docs/protocols.md is written once.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from .faults import FaultPlan, FaultPlanError
from .fixtures import StateFile

ADMIN_PREFIX = "/_admin"
RECEIVED_LIMIT = 50_000  # a long demo must not grow without bound
PLANT_TZ = ZoneInfo("Asia/Shanghai")  # vendor local times are plant time


def error(status: int, message: str, **extra: Any) -> JSONResponse:
    """The REST mocks' error body: `{"error": "..."}`."""
    return JSONResponse({"error": message, **extra}, status_code=status)


async def _sleep(seconds: float, stopping: threading.Event) -> None:
    """Sleep, but wake early when the server is stopping so shutdown never waits on a fault."""
    deadline = time.monotonic() + seconds
    while not stopping.is_set():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        await asyncio.sleep(min(remaining, 0.05))


def _is_admin(path: str) -> bool:
    return path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/")


def _recorded_body(raw: bytes) -> Any:
    if not raw:
        return None
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


class ReceivedLog:
    """Every non-admin request, oldest first; `status` is filled in when the answer starts."""

    def __init__(self) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=RECEIVED_LIMIT)
        self._lock = threading.Lock()

    def add(self, method: str, path: str, query: dict[str, str], body: Any) -> dict[str, Any]:
        entry = {"method": method, "path": path, "query": query, "body": body, "status": None}
        with self._lock:
            self._entries.append(entry)
        return entry

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(e) for e in self._entries]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class FaultAndRecordMiddleware:
    """ASGI middleware: log the request, apply the fault plan, record the answer's status.

    Plain ASGI rather than BaseHTTPMiddleware so the body can be read once and replayed to the
    route, and so a `timeout` fault sleeps without holding any thread.
    """

    def __init__(self, app: Any, system: MockSystem):
        self.app = app
        self.system = system

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or _is_admin(scope["path"]):
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # client went away before sending the body
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        entry = self.system.received.add(scope["method"], scope["path"], query, _recorded_body(body))

        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        async def recording_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                entry["status"] = message["status"]
            await send(message)

        decision = self.system.faults.decide(scope["method"], scope["path"])
        if decision.latency_s > 0:
            await _sleep(decision.latency_s, self.system.stopping)
        rule = decision.rule
        if rule is not None and rule.kind == "status":
            response = error(rule.status, f"injected fault: HTTP {rule.status}")
            await response(scope, replay, recording_send)
            return
        if rule is not None and rule.kind == "rate_limit":
            response = error(429, "rate limit exceeded")
            response.headers["Retry-After"] = rule.retry_after_header
            await response(scope, replay, recording_send)
            return
        if rule is not None and rule.kind == "timeout":
            await _sleep(rule.delay_s, self.system.stopping)
        await self.app(scope, replay, recording_send)


class MockSystem:
    """One vendor system: fixtures, mutable state, admin surface and vendor routes.

    Subclasses set `name`, implement `add_routes` and, if they keep state, `clear_state`,
    `admin_state` and (with `persistent = True`) `dump_state` / `restore_state`. They call
    `state_changed()` after every change so a `state_dir` stays current.
    """

    name: ClassVar[str] = ""
    url_path: ClassVar[str] = ""  # appended to the server root to form the system's URL
    persistent: ClassVar[bool] = False

    def __init__(self, fixtures_dir: Path | str, *, faults: dict | None = None, state_dir: Path | str | None = None):
        self.fixtures_dir = Path(fixtures_dir)
        self.faults = FaultPlan.parse(faults)
        self.received = ReceivedLog()
        self.stopping = threading.Event()  # set by the server runner; cuts fault sleeps short
        self._state_file = StateFile(Path(state_dir), self.name) if state_dir is not None and self.persistent else None
        self.load_fixtures()
        self.clear_state()
        if self._state_file is not None:
            saved = self._state_file.load()
            if saved is not None:
                self.restore_state(saved)
        self.app = self._build_app()

    # -- hooks for subclasses -------------------------------------------------------------
    def load_fixtures(self) -> None:
        """Read this system's fixture files (read-only plant data)."""

    def clear_state(self) -> None:
        """Drop everything clients changed: back to the fixture state."""

    def admin_state(self) -> dict:
        return {}

    def dump_state(self) -> dict:
        return {}

    def restore_state(self, data: dict) -> None:
        """Take over state written by `dump_state` in an earlier process."""

    def add_routes(self, app: FastAPI) -> None:
        raise NotImplementedError

    # -- shared behaviour -----------------------------------------------------------------
    def state_changed(self) -> None:
        if self._state_file is not None:
            self._state_file.save(self.dump_state())

    def reset(self) -> None:
        self.clear_state()
        self.received.clear()
        self.faults = FaultPlan()
        if self._state_file is not None:
            self._state_file.clear()

    def set_faults(self, raw: Any) -> None:
        self.faults = FaultPlan.parse(raw)

    def _build_app(self) -> FastAPI:
        app = FastAPI(title=f"mock {self.name}", docs_url=None, redoc_url=None, openapi_url=None)
        self._add_admin_routes(app)
        self.add_routes(app)
        app.add_middleware(FaultAndRecordMiddleware, system=self)
        return app

    def _add_admin_routes(self, app: FastAPI) -> None:
        @app.get(f"{ADMIN_PREFIX}/received")
        async def received() -> JSONResponse:
            return JSONResponse(self.received.snapshot())

        @app.post(f"{ADMIN_PREFIX}/reset")
        async def reset() -> JSONResponse:
            self.reset()
            return JSONResponse({"reset": True})

        @app.put(f"{ADMIN_PREFIX}/faults")
        async def faults(request: Request) -> JSONResponse:
            try:
                self.set_faults(json.loads(await request.body()))
            except ValueError as exc:  # JSONDecodeError and FaultPlanError
                message = str(exc) if isinstance(exc, FaultPlanError) else f"body is not JSON: {exc}"
                return error(400, message)
            return JSONResponse({"rules": len(self.faults.rules), "latency_ms": self.faults.latency_ms})

        @app.get(f"{ADMIN_PREFIX}/state")
        async def state() -> JSONResponse:
            return JSONResponse(self.admin_state())
