"""What every mock shares: the admin surface, the received log, faults, auth and persistence.

Each system subclasses `MockSystem` and only adds its vendor routes and its own state, so the
admin, fault and auth behaviour documented at the end of docs/protocols.md is written once.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from .faults import KINDS, FaultPlan, FaultPlanError, FaultRule, empty_reply, shrink_reply
from .fixtures import StateJournal

ADMIN_PREFIX = "/_admin"
RECEIVED_LIMIT = 50_000  # a long demo must not grow without bound
# Request headers a replay needs to send the same request again; the rest is transport detail.
RECORDED_HEADERS = ("content-type", "soapaction")
PLANT_TZ = ZoneInfo("Asia/Shanghai")  # vendor local times are plant time
MALFORMED_JSON = b"{'status': 'OK', 'results': [None, ...]}"  # what a broken serialiser sends


def error(status: int, message: str, **extra: Any) -> JSONResponse:
    """The REST mocks' error body: `{"error": "..."}`."""
    return JSONResponse({"error": message, **extra}, status_code=status)


def _injected_status(status: int) -> JSONResponse:
    return error(status, f"injected fault: HTTP {status}")


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


def _recorded_headers(scope: dict) -> dict[str, str]:
    wanted = {name.encode("latin-1"): name for name in RECORDED_HEADERS}
    return {wanted[key]: value.decode("latin-1") for key, value in scope["headers"] if key in wanted}


class ReceivedLog:
    """Every non-admin request, oldest first (the newest RECEIVED_LIMIT of them).

    `status` is filled in when the answer starts, or set to "reset" when the connection is
    dropped instead; a request a fault rule fired on also carries `fault`, the rule's kind.
    `total` counts every request since start or reset, including those the limit let go, so
    request counts stay exact however long the log grows.
    """

    def __init__(self) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=RECEIVED_LIMIT)
        self._lock = threading.Lock()
        self.total = 0

    def add(
        self, method: str, path: str, query: dict[str, str], body: Any, headers: dict[str, str]
    ) -> dict[str, Any]:
        entry = {"method": method, "path": path, "query": query, "body": body, "headers": headers, "status": None}
        with self._lock:
            self._entries.append(entry)
            self.total += 1
        return entry

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(e) for e in self._entries]

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {"requests": self.total, "kept": len(self._entries)}

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.total = 0


class AuthConfigError(ValueError):
    """An `auth` setting that does not follow the documented shape."""


@dataclass(frozen=True)
class Credentials:
    """What a client must present when a system is started with `auth` (docs/protocols.md).

    `scheme` is the Authorization scheme (`basic`, `bearer`), or None for an API key sent
    as-is in `header`. For basic auth `secret` is the decoded `user:password`.
    """

    header: str
    scheme: str | None
    secret: bytes

    @classmethod
    def parse(cls, raw: Any) -> Credentials | None:
        if raw is None:
            return None
        if not isinstance(raw, dict) or len(raw) != 1:
            raise AuthConfigError("auth must be an object with exactly one of basic, bearer or api_key")
        [(kind, value)] = raw.items()
        if kind == "basic":
            if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) and v for v in value)):
                raise AuthConfigError("basic auth must be [user, password]")
            return cls("authorization", "basic", f"{value[0]}:{value[1]}".encode())
        if kind == "bearer":
            if not isinstance(value, str) or not value:
                raise AuthConfigError("bearer auth must be a token string")
            return cls("authorization", "bearer", value.encode())
        if kind == "api_key":
            if not isinstance(value, dict) or set(value) != {"header", "value"}:
                raise AuthConfigError('api_key auth must be {"header": NAME, "value": KEY}')
            if not all(isinstance(v, str) and v for v in value.values()):
                raise AuthConfigError("api_key header and value must be non-empty strings")
            return cls(value["header"].lower(), None, value["value"].encode())
        raise AuthConfigError(f"auth must be one of basic, bearer or api_key, got {kind!r}")

    def accepts(self, scope: dict) -> bool:
        presented = dict(scope["headers"]).get(self.header.encode("latin-1"), b"").strip()
        if self.scheme is not None:
            scheme, _, token = presented.partition(b" ")
            if scheme.lower() != self.scheme.encode():
                return False
            presented = token.strip()
            if self.scheme == "basic":
                try:
                    presented = base64.b64decode(presented, validate=True)
                except binascii.Error:
                    return False
        return hmac.compare_digest(presented, self.secret)

    def refusal(self) -> JSONResponse:
        response = error(401, "unauthorized")
        if self.scheme is not None:
            response.headers["WWW-Authenticate"] = f'{self.scheme.title()} realm="mock-systems"'
        return response


class CredentialsMiddleware:
    """Refuse vendor routes without the configured credentials; the admin surface stays open."""

    def __init__(self, app: Any, credentials: Credentials):
        self.app = app
        self.credentials = credentials

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not _is_admin(scope["path"]) and not self.credentials.accepts(scope):
            await self.credentials.refusal()(scope, receive, send)
            return
        await self.app(scope, receive, send)


class Exchange:
    """One vendor request on its way through the fault plan, and what its client is sent.

    `send` must be the server's own: dropping a connection needs the transport behind it,
    because ASGI has no message for "abort". With uvicorn that is the request cycle's bound
    `send`, which is why the fault middleware wraps the whole app.
    """

    def __init__(self, app: Any, system: MockSystem, scope: dict, body: bytes, receive: Any, send: Any, entry: dict):
        self.app = app
        self.system = system
        self.scope = scope
        self.entry = entry
        self._body = body
        self._replayed = False
        self._receive = receive
        self._send = send

    async def replay(self) -> dict:
        """The route's `receive`: the body already read, once, then the server's messages."""
        if not self._replayed:
            self._replayed = True
            return {"type": "http.request", "body": self._body, "more_body": False}
        return await self._receive()

    async def send(self, message: dict) -> None:
        if message["type"] == "http.response.start":
            self.entry["status"] = message["status"]
        await self._send(message)

    async def answer(self, response: Response) -> None:
        """Send a response the fault plan made up, instead of the system's."""
        await response(self.scope, self.replay, self.send)

    async def handle(self) -> None:
        """Let the system handle the request and answer it."""
        await self.app(self.scope, self.replay, self.send)

    async def handle_unsent(self) -> tuple[dict, bytes]:
        """Let the system handle the request (its changes commit), but keep the answer back."""
        start: dict = {}
        chunks: list[bytes] = []

        async def keep(message: dict) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(self.scope, self.replay, keep)
        return start, b"".join(chunks)

    async def drop(self) -> None:
        """Reset the TCP connection without sending a byte of an answer."""
        transport = getattr(getattr(self._send, "__self__", None), "transport", None)
        if transport is None:
            raise RuntimeError("dropping a connection needs the server's own send (run the mocks under uvicorn)")
        sock = transport.get_extra_info("socket")
        if sock is not None:  # linger 0: close with RST rather than an orderly FIN
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
        self.entry["status"] = "reset"
        while (await self._receive())["type"] != "http.disconnect":
            pass  # wait until the server knows, so it does not try to answer for us


async def _status(exchange: Exchange, rule: FaultRule) -> None:
    await exchange.answer(_injected_status(rule.status))


async def _rate_limit(exchange: Exchange, rule: FaultRule) -> None:
    response = error(429, "rate limit exceeded")
    response.headers["Retry-After"] = rule.retry_after_header
    await exchange.answer(response)


async def _reset(exchange: Exchange, rule: FaultRule) -> None:
    await exchange.drop()


async def _malformed(exchange: Exchange, rule: FaultRule) -> None:
    await exchange.answer(exchange.system.malformed_response(exchange.scope["path"]))


async def _soap_fault(exchange: Exchange, rule: FaultRule) -> None:
    await exchange.answer(exchange.system.server_fault_response(rule.message, exchange.scope["path"]))


async def _timeout(exchange: Exchange, rule: FaultRule) -> None:
    await _sleep(rule.delay_s, exchange.system.stopping)
    await exchange.handle()


async def _truncate(exchange: Exchange, rule: FaultRule) -> None:
    """Half the real body, under a Content-Length that matches: well framed, but cut."""
    start, body = await exchange.handle_unsent()
    cut = body[: len(body) // 2]
    headers = [(name, value) for name, value in start.get("headers", []) if name.lower() != b"content-length"]
    await exchange.send({**start, "headers": [*headers, (b"content-length", str(len(cut)).encode())]})
    await exchange.send({"type": "http.response.body", "body": cut, "more_body": False})


async def _rewritten(exchange: Exchange, rewrite: Callable[[bytes, str], bytes]) -> None:
    """The real answer with its body rewritten (a 2xx only), under its own content type."""
    start, body = await exchange.handle_unsent()
    headers = start.get("headers", [])
    if 200 <= start.get("status", 500) < 300:
        content_type = next((v.decode("latin-1") for n, v in headers if n.lower() == b"content-type"), "")
        body = rewrite(body, content_type)
    headers = [(name, value) for name, value in headers if name.lower() != b"content-length"]
    await exchange.send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await exchange.send({"type": "http.response.body", "body": body, "more_body": False})


async def _empty(exchange: Exchange, rule: FaultRule) -> None:
    await _rewritten(exchange, empty_reply)


async def _shrink(exchange: Exchange, rule: FaultRule) -> None:
    await _rewritten(exchange, lambda body, content_type: shrink_reply(body, content_type, rule))


async def _commit_then_drop(exchange: Exchange, rule: FaultRule) -> None:
    await exchange.handle_unsent()
    await exchange.drop()


async def _commit_then_status(exchange: Exchange, rule: FaultRule) -> None:
    await exchange.handle_unsent()
    await exchange.answer(_injected_status(rule.status))


FAULTS: dict[str, Callable[[Exchange, FaultRule], Awaitable[None]]] = {
    "status": _status,
    "rate_limit": _rate_limit,
    "reset": _reset,
    "malformed": _malformed,
    "soap_fault": _soap_fault,
    "timeout": _timeout,
    "truncate": _truncate,
    "commit_then_drop": _commit_then_drop,
    "commit_then_status": _commit_then_status,
    "empty": _empty,
    "shrink": _shrink,
}
assert set(FAULTS) == set(KINDS)


async def _read_body(receive: Any) -> bytes | None:
    """The whole request body, or None when the client went away before sending it."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


class FaultAndRecordMiddleware:
    """ASGI middleware: log the request, apply the fault plan, record what the client got.

    Plain ASGI rather than BaseHTTPMiddleware so the body can be read once and replayed to the
    route, so a `timeout` fault sleeps without holding any thread, and so a handled answer can
    be held back, cut or dropped.
    """

    def __init__(self, app: Any, system: MockSystem):
        self.app = app
        self.system = system

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or _is_admin(scope["path"]):
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:
            return
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        entry = self.system.received.add(
            scope["method"], scope["path"], query, _recorded_body(body), _recorded_headers(scope)
        )
        exchange = Exchange(self.app, self.system, scope, body, receive, send, entry)
        decision = self.system.faults.decide(scope["method"], scope["path"])
        if decision.latency_s > 0:
            await _sleep(decision.latency_s, self.system.stopping)
        if decision.rule is None:
            await exchange.handle()
            return
        entry["fault"] = decision.rule.kind
        await FAULTS[decision.rule.kind](exchange, decision.rule)


class MockSystem:
    """One vendor system: fixtures, mutable state, admin surface and vendor routes.

    Subclasses set `name`, implement `add_routes` and, if they keep state, `clear_state`,
    `admin_state` and (with `persistent = True`) `apply_change`. Every client-made change is
    one JSON-able dict passed to `state_changed(...)`, which applies nothing itself but
    journals it, so that a `state_dir` replays it through `apply_change` on the next start. A system that does
    does not speak JSON (on some paths) overrides `malformed_response` and `server_fault_response`.

    `app` is the ASGI application to serve: the system's FastAPI app, behind the auth check
    (when `auth` is given) and the fault middleware.
    """

    name: ClassVar[str] = ""
    url_path: ClassVar[str] = ""  # appended to the server root to form the system's URL
    persistent: ClassVar[bool] = False

    def __init__(
        self,
        fixtures_dir: Path | str,
        *,
        faults: dict | None = None,
        state_dir: Path | str | None = None,
        auth: dict | None = None,
    ):
        self.fixtures_dir = Path(fixtures_dir)
        self.faults = FaultPlan.parse(faults)
        self.credentials = Credentials.parse(auth)
        self.received = ReceivedLog()
        self.stopping = threading.Event()  # set by the server runner; cuts fault sleeps short
        self._journal = StateJournal(Path(state_dir), self.name) if state_dir is not None and self.persistent else None
        self.load_fixtures()
        self.clear_state()
        for change in self._journal.replay() if self._journal is not None else ():
            self.apply_change(change)
        self.app = self._build_app()

    # -- hooks for subclasses -------------------------------------------------------------
    def load_fixtures(self) -> None:
        """Read this system's fixture files (read-only plant data)."""

    def clear_state(self) -> None:
        """Drop everything clients changed: back to the fixture state."""

    def admin_state(self) -> dict:
        return {}

    def apply_change(self, change: dict) -> None:
        """Redo one change journalled by `state_changed` in an earlier process."""

    def add_routes(self, app: FastAPI) -> None:
        raise NotImplementedError

    def malformed_response(self, path: str) -> Response:
        """A 200 whose body does not parse, under the content type the system answers `path` with."""
        return Response(MALFORMED_JSON, 200, media_type="application/json")

    def server_fault_response(self, message: str, path: str) -> Response:
        """The `soap_fault` kind on `path`; a system without SOAP answers a plain 500."""
        return error(500, message)

    # -- shared behaviour -----------------------------------------------------------------
    def state_changed(self, *changes: dict) -> None:
        if self._journal is not None and changes:
            self._journal.append(list(changes))

    def reset(self) -> None:
        self.clear_state()
        self.received.clear()
        self.faults = FaultPlan()
        if self._journal is not None:
            self._journal.clear()

    def set_faults(self, raw: Any) -> None:
        self.faults = FaultPlan.parse(raw)

    def _build_app(self) -> FaultAndRecordMiddleware:
        app = FastAPI(title=f"mock {self.name}", docs_url=None, redoc_url=None, openapi_url=None)
        self._add_admin_routes(app)
        self.add_routes(app)
        routes = app if self.credentials is None else CredentialsMiddleware(app, self.credentials)
        return FaultAndRecordMiddleware(routes, self)

    def _add_admin_routes(self, app: FastAPI) -> None:
        @app.get(f"{ADMIN_PREFIX}/received")
        async def received() -> JSONResponse:
            return JSONResponse(self.received.snapshot())

        @app.get(f"{ADMIN_PREFIX}/received/count")
        async def received_count() -> JSONResponse:
            return JSONResponse(self.received.counts())

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
