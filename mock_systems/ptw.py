"""PTW mock: permit listing with a cursor, single permits, and holds written by integrations.

Holds can be read back one permit at a time (`GET /api/v1/permits/{ticketNo}`) or in bulk
(`GET /api/v1/holds`, paged by ticket number), so an integration can check that the holds it
wrote are still there.

Permits are served exactly as stored in `fixtures/ptw/permits.json`, malformed ones included:
they are what a buggy site system sends, and the hub must see them to quarantine them. Only
`ticketNo` and `updateTime` are read here; a permit whose `updateTime` does not parse is listed
as if updated when the fixtures were loaded.

Holds do not change a permit's `updateTime`: the hub's own write-back must not make every
permit it holds look changed to its next incremental sync.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime, timezone
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .base import PLANT_TZ, MockSystem, error
from .fixtures import FixtureError, load_fixture

VENDOR_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500

SortKey = tuple[datetime, str]


def parse_vendor_time(value: Any) -> datetime | None:
    """A naive plant-local `YYYY-MM-DD HH:MM:SS` as an aware datetime, or None."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value, VENDOR_TIME_FORMAT).replace(tzinfo=PLANT_TZ)
    except ValueError:
        return None


def parse_query_time(value: str) -> datetime:
    """ISO 8601 from a query; without an offset it is read as plant local time."""
    parsed = datetime.fromisoformat(value.strip())
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=PLANT_TZ)


def encode_token(key: SortKey) -> str:
    raw = json.dumps({"after": [key[0].isoformat(), key[1]]}, ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str) -> SortKey:
    """The position after which the next page starts (keyset, so it survives new permits)."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        when, ticket = json.loads(raw)["after"]
        parsed = datetime.fromisoformat(when)
        if parsed.tzinfo is None or not isinstance(ticket, str):
            raise ValueError("bad token content")
        return parsed, ticket
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"page_token is not a token this server issued ({exc})") from None


def encode_hold_token(key: tuple[str, str]) -> str:
    raw = json.dumps({"holds_after": list(key)}, ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_hold_token(token: str) -> tuple[str, str]:
    """The (ticketNo, source) after which the next page of holds starts."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        ticket, source = json.loads(raw)["holds_after"]
        if not isinstance(ticket, str) or not isinstance(source, str):
            raise ValueError("bad token content")
        return ticket, source
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"page_token is not a token this server issued ({exc})") from None


def _page_size(raw: str | None) -> int | JSONResponse:
    try:
        page_size = int(raw) if raw is not None else DEFAULT_PAGE_SIZE
    except ValueError:
        return error(400, "page_size must be an integer")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        return error(400, f"page_size must be between 1 and {MAX_PAGE_SIZE}")
    return page_size


class HoldReason(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1)
    deviceId: str | None = None
    message: str
    evidence: dict[str, Any] = Field(default_factory=dict)


class HoldRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["BLOCK", "ALLOW"]
    ruleVersion: str | None = None
    decidedAt: str | None = None
    reasons: list[HoldReason]


def _utc_now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class PtwSystem(MockSystem):
    name = "ptw"
    persistent = True

    def load_fixtures(self) -> None:
        permits = load_fixture(self.fixtures_dir, "ptw/permits.json")
        loaded_at = datetime.now(timezone.utc).replace(microsecond=0)
        self._permits: dict[str, dict] = {}
        keyed: list[tuple[SortKey, dict]] = []
        for index, permit in enumerate(permits):
            ticket = permit.get("ticketNo")
            if not isinstance(ticket, str) or not ticket:
                raise FixtureError(f"ptw/permits.json: item {index} has no ticketNo")
            if ticket in self._permits:
                raise FixtureError(f"ptw/permits.json: ticketNo {ticket} appears twice")
            self._permits[ticket] = permit
            updated = parse_vendor_time(permit.get("updateTime")) or loaded_at
            keyed.append(((updated, ticket), permit))
        keyed.sort(key=lambda pair: pair[0])
        self._listing = keyed

    def clear_state(self) -> None:
        self._holds: dict[str, dict[str, dict]] = {}  # ticketNo -> source -> hold
        self._revisions: dict[str, dict[str, int]] = {}  # last revision, kept after a DELETE

    def apply_change(self, change: dict) -> None:
        ticket, source = change["ticketNo"], change["source"]
        if change["hold"] is None:
            self._drop_hold(ticket, source)
        elif ticket in self._permits:
            self._holds.setdefault(ticket, {})[source] = change["hold"]
            self._revisions.setdefault(ticket, {})[source] = change["hold"]["revision"]

    def _drop_hold(self, ticket: str, source: str) -> bool:
        holds = self._holds.get(ticket, {})
        dropped = holds.pop(source, None) is not None
        if not holds:
            self._holds.pop(ticket, None)
        return dropped

    def admin_state(self) -> dict:
        return {"holds": {ticket: list(holds.values()) for ticket, holds in self._holds.items() if holds}}

    def add_routes(self, app: FastAPI) -> None:
        @app.get("/api/v1/permits")
        async def list_permits(request: Request) -> JSONResponse:
            params = request.query_params
            try:
                since = parse_query_time(params["updated_since"]) if params.get("updated_since") else None
            except ValueError:
                return error(400, f"updated_since is not ISO 8601: {params.get('updated_since')!r}")
            page_size = _page_size(params.get("page_size"))
            if isinstance(page_size, JSONResponse):
                return page_size
            try:
                after = decode_token(params["page_token"]) if params.get("page_token") else None
            except ValueError as exc:
                return error(400, str(exc))
            site = params.get("site", "").strip().upper() or None
            # Every site but these: how a hub finds permits of sites it is not configured for.
            excluded = {code.strip().upper() for code in params.get("exclude_sites", "").split(",") if code.strip()}
            rows = [
                (key, permit)
                for key, permit in self._listing
                if (since is None or key[0] >= since)
                and (after is None or key > after)
                and (site is None or _site_code(permit) == site)
                and _site_code(permit) not in excluded
            ]
            page = rows[:page_size]
            next_token = encode_token(page[-1][0]) if len(rows) > page_size else None
            return JSONResponse({"items": [permit for _, permit in page], "next_page_token": next_token})

        @app.get("/api/v1/holds")
        async def list_holds(request: Request) -> JSONResponse:
            """Every hold (of one source, if given), ordered by (ticketNo, source), page by page."""
            params = request.query_params
            page_size = _page_size(params.get("page_size"))
            if isinstance(page_size, JSONResponse):
                return page_size
            try:
                after = decode_hold_token(params["page_token"]) if params.get("page_token") else None
            except ValueError as exc:
                return error(400, str(exc))
            source = params.get("source") or None
            rows = sorted(
                (
                    ((ticket, held), hold)
                    for ticket, holds in self._holds.items()
                    for held, hold in holds.items()
                    if (source is None or held == source) and (after is None or (ticket, held) > after)
                ),
                key=lambda row: row[0],
            )
            page = rows[:page_size]
            next_token = encode_hold_token(page[-1][0]) if len(rows) > page_size else None
            items = [{"ticketNo": ticket, **hold} for (ticket, _), hold in page]
            return JSONResponse({"items": items, "next_page_token": next_token})

        @app.get("/api/v1/permits/{ticket_no}")
        async def get_permit(ticket_no: str) -> JSONResponse:
            permit = self._permits.get(ticket_no)
            if permit is None:
                return error(404, f"permit {ticket_no} not found")
            return JSONResponse({**permit, "holds": list(self._holds.get(ticket_no, {}).values())})

        @app.put("/api/v1/permits/{ticket_no}/holds/{source}")
        async def put_hold(ticket_no: str, source: str, request: Request) -> JSONResponse:
            if ticket_no not in self._permits:
                return error(404, f"permit {ticket_no} not found")
            try:
                hold = HoldRequest.model_validate_json(await request.body())
            except ValidationError as exc:
                problems = [
                    {"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors(include_url=False, include_input=False)
                ]
                return error(422, "malformed hold", detail=problems)
            return JSONResponse(self.place_hold(ticket_no, source, hold))

        @app.delete("/api/v1/permits/{ticket_no}/holds/{source}")
        async def delete_hold(ticket_no: str, source: str) -> JSONResponse:
            if ticket_no not in self._permits:
                return error(404, f"permit {ticket_no} not found")
            changed = self._drop_hold(ticket_no, source)
            if changed:
                self.state_changed({"ticketNo": ticket_no, "source": source, "hold": None})
            return JSONResponse({"changed": changed})

    def place_hold(self, ticket_no: str, source: str, hold: HoldRequest) -> dict:
        """Idempotent: the same action and reasons again change nothing and add no revision."""
        reasons = [reason.model_dump() for reason in hold.reasons]
        current = self._holds.get(ticket_no, {}).get(source)
        if current is not None and _same_content(current, hold.action, reasons):
            return {"changed": False, "revision": current["revision"]}
        revision = self._revisions.get(ticket_no, {}).get(source, 0) + 1
        self._revisions.setdefault(ticket_no, {})[source] = revision
        placed = {
            "source": source,
            "action": hold.action,
            "reasons": reasons,
            "ruleVersion": hold.ruleVersion,
            "revision": revision,
            "updatedAt": _utc_now(),
        }
        self._holds.setdefault(ticket_no, {})[source] = placed
        self.state_changed({"ticketNo": ticket_no, "source": source, "hold": placed})
        return {"changed": True, "revision": revision}


def _site_code(permit: dict) -> str:
    return str(permit.get("siteCode", "")).strip().upper()


def _same_content(hold: dict, action: str, reasons: list[dict]) -> bool:
    def canonical(value: Any) -> str:
        return json.dumps(value, sort_keys=True, ensure_ascii=False)

    return hold["action"] == action and canonical(hold["reasons"]) == canonical(reasons)
