"""The gate-check HTTP API: `POST /api/v1/gate-checks`, behind a Bearer token and limits.

The contract is in docs/gate-api.md. Whatever happens inside the hub, an authorised, well-formed
request is answered 200 with a decision, and a decision the hub could not make is a block.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
from contextlib import asynccontextmanager
from typing import Any, Literal

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hub.service.gate_check import NOT_GATED, GateCheckService
from hub.settings import HubSettings

log = logging.getLogger("hub.service")

GATE_CHECKS_PATH = "/api/v1/gate-checks"
HEALTH_PATH = "/api/v1/health"
HEALTH_READ_EVERY_S = 1.0
TICKET_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"


class GateApiNotConfigured(RuntimeError):
    """The service cannot start as configured."""


class GateCheckRequest(BaseModel):
    """Exactly one of `permit` (the PTW's own permit record) or `ticket_no`."""

    model_config = ConfigDict(extra="forbid")

    permit: dict[str, Any] | None = Field(
        default=None, description="The PTW's permit record, with the PTW's own field names (ticketNo, ticketType, ...)."
    )
    ticket_no: str | None = Field(
        default=None, pattern=TICKET_PATTERN, description="The permit's ticket number; the hub reads the permit from the PTW."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> "GateCheckRequest":
        if (self.permit is None) == (self.ticket_no is None):
            raise ValueError("give exactly one of permit or ticket_no")
        return self


class ReasonOut(BaseModel):
    code: str
    device_id: str | None = None
    message: str
    evidence: dict[str, str] = {}


class DeviceOut(BaseModel):
    device_id: str
    data_as_of: str | None = Field(description="When the hub's EAM data for the device is from (UTC), or null if it has none.")
    data_age_s: float | None = Field(description="How old that data was at decision time, in seconds.")


class SimilarWorkOut(BaseModel):
    permit_id: str
    site: str
    area: str
    permit_type: str
    nearby: list[str] = Field(description="Permits of the type in the area planned within the gap of this one.")
    history: list[dict[str, str | None]] = Field(description="The area's permits of the type, newest first: id, planned start, status, result.")
    results: dict[str, int] = Field(description="How those permits ended (\"open\": not yet).")
    incidents: list[str]


class GateCheckAnswer(BaseModel):
    permit_id: str
    decision: Literal["allow", "block", "not_gated"]
    reasons: list[ReasonOut]
    rule_version: str
    devices: list[DeviceOut]
    decision_id: str | None = Field(description="Recorded in the audit trail with the decision; null when not gated.")
    evaluated_at: str
    eam_refreshed: list[str] = Field(
        default=[], description="Devices whose data was older than decision_data_age, so the EAM was asked for them now."
    )
    similar_work: SimilarWorkOut | None = Field(
        default=None,
        description="Work of the same type in the same area planned within 72 h of this permit: the area's history of "
        "that type (six months) with results and incidents, for whoever approves. Advice only; null when there is none.",
    )


class Health(BaseModel):
    status: Literal["fresh", "warming"] = Field(
        description="fresh: every device of a gated permit has EAM data younger than decision_data_age, so checks answer "
        "from the hub's copy; warming: some do not (just started, or the EAM is not answering), and checks on them ask the EAM."
    )
    gated_devices: int
    stale_devices: int
    keep_fresh: bool = Field(description="Whether this service keeps the EAM data fresh ahead of the checks (HUB_GATE_API__KEEP_FRESH).")


class Problem(BaseModel):
    error: str
    detail: list[dict[str, str]] = []


def _problem(status: int, error: str, detail: list[dict[str, str]] | None = None, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail or []}, status_code=status, headers=headers)


class RateLimit:
    """A token bucket that refuses instead of waiting: a gate check late is worse than a 429."""

    def __init__(self, per_second: float):
        self.rate = per_second
        self.capacity = max(1.0, per_second)
        self.tokens = self.capacity
        self.at = time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
            self.at = now
            if self.tokens >= 1:
                self.tokens -= 1
                return True
            return False


def _field_errors(exc: ValidationError) -> list[dict[str, str]]:
    out = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(part) for part in error["loc"]) or "permit|ticket_no"
        out.append({"field": loc, "message": error["msg"]})
    return out


async def _read_limited(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it is longer than `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def create_app(settings: HubSettings, service: GateCheckService | None = None) -> FastAPI:
    """The gate-check API for these settings; refuses to build without a token."""
    api = settings.gate_api
    token = api.token.get_secret_value() if api.token is not None else ""
    if not token.strip():
        raise GateApiNotConfigured(
            "the gate-check service needs a Bearer token: set HUB_GATE_API__TOKEN (or gate_api.token in the settings file)"
        )
    expected = f"Bearer {token}".encode()
    limit = RateLimit(api.requests_per_second)
    checking = CapacityLimiter(api.concurrent_checks)
    service = service or GateCheckService(settings)
    health_read: list = [float("-inf"), None]  # when the store was last read for /health, and what it said

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if api.keep_fresh:
            service.keep_fresh.start()
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(service.keep_fresh.stop)
            # The last answers reach Dagster before the process ends (the audit log has them all).
            if not await anyio.to_thread.run_sync(service.flush_reports):
                log.warning("stopping: some gate-check answers were not reported to Dagster (they are in the audit log)")

    app = FastAPI(
        lifespan=lifespan,
        title="Permit integration hub: gate check",
        version="1",
        description="The synchronous gate check the PTW calls before it approves a permit. See docs/gate-api.md.",
    )
    app.state.service = service

    @app.post(
        GATE_CHECKS_PATH,
        response_model=GateCheckAnswer,
        summary="Decide one permit now: allow or block, with reasons",
        responses={
            401: {"model": Problem, "description": "No or wrong Bearer token"},
            413: {"model": Problem, "description": "Body larger than the limit"},
            422: {"model": Problem, "description": "Malformed request; `detail` names each field"},
            429: {"model": Problem, "description": "Too many requests; retry after a second"},
        },
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": GateCheckRequest.model_json_schema()}}}
        },
    )
    async def gate_check(request: Request):
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return _problem(401, "a valid Bearer token is required", headers={"WWW-Authenticate": "Bearer"})
        if not limit.take():
            return _problem(429, "too many gate checks; retry shortly", headers={"Retry-After": "1"})
        body = await _read_limited(request, api.max_body_bytes)
        if body is None:
            return _problem(413, f"the request body is larger than {api.max_body_bytes} bytes")
        try:
            raw = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return _problem(422, "the request body is not JSON", [{"field": "body", "message": "not valid JSON"}])
        if not isinstance(raw, dict):
            return _problem(422, "the request body must be a JSON object", [{"field": "body", "message": "not an object"}])
        try:
            parsed = GateCheckRequest.model_validate(raw)
        except ValidationError as exc:
            return _problem(422, "malformed gate check", _field_errors(exc))
        answer = await anyio.to_thread.run_sync(
            lambda: service.check(permit=parsed.permit, ticket_no=parsed.ticket_no), limiter=checking
        )
        return JSONResponse(answer.as_json())

    @app.get(HEALTH_PATH, response_model=Health, summary="Whether checks can answer from fresh data (no token; counts only)")
    async def health():
        # Without a token anyone may ask: the store is read at most once a second, however often.
        if time.monotonic() - health_read[0] >= HEALTH_READ_EVERY_S:
            health_read[:] = [time.monotonic(), await anyio.to_thread.run_sync(service.keep_fresh.freshness, limiter=checking)]
        counts = health_read[1]
        status = "fresh" if counts["stale_devices"] == 0 else "warming"
        return Health(status=status, keep_fresh=api.keep_fresh, **counts)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):  # pragma: no cover - the route catches its own
        log.exception("unexpected error in the gate-check API")
        return _problem(500, "internal error")

    return app


__all__ = ["GATE_CHECKS_PATH", "HEALTH_PATH", "NOT_GATED", "GateApiNotConfigured", "create_app"]
