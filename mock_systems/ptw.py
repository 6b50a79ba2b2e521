"""PTW mock: permit listing with a cursor, single permits, and holds written by integrations.

Holds can be read back one permit at a time (`GET /api/v1/permits/{ticketNo}`) or in bulk
(`GET /api/v1/holds`, paged by ticket number), so an integration can check that the holds it
wrote are still there.

Permits are served exactly as stored in `fixtures/ptw/permits.json`, malformed ones included:
they are what a buggy site system sends, and the hub must see them to quarantine them. Listing
reads only `ticketNo` and `updateTime`; a permit whose `updateTime` does not parse is listed
as if updated when the fixtures were loaded. Transitions read `state` as well.

Holds do not change a permit's `updateTime`: the hub's own write-back must not make every
permit it holds look changed to its next incremental sync. The one exception is a BLOCK hold on
a permit IN_PROGRESS: the work is suspended, as Maximo's Permit to Work does, and that is a change.

Permits also live: `POST /api/v1/permits` opens one, `POST /api/v1/permits/{ticketNo}/{action}`
moves it through its lifecycle (see `TRANSITIONS`), stamping the vendor time fields and
`updateTime`. An optional pre-approval hook (`PUT /_admin/gate-hook`) is asked before `approve`
and `start`, and its refusals are kept on the permit as `gateRefusals`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import bisect
import copy
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .base import ADMIN_PREFIX, PLANT_TZ, MockSystem, error
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


PERMIT_FIELDS = (
    "ticketNo", "ticketType", "riskLevel", "siteCode", "workshop", "equipmentCodes", "materials",
    "applicant", "guardian", "planStartTime", "planEndTime", "state", "submitTime", "approveTime",
    "guardianArriveTime", "closeTime", "closeResult", "workHours", "updateTime",
)  # the fixture order, kept for created permits
# What a client may give when it opens a permit; the rest is the PTW's to set.
CREATE_FIELDS = frozenset(
    {"ticketNo", "ticketType", "riskLevel", "siteCode", "workshop", "equipmentCodes", "materials",
     "applicant", "guardian", "planStartTime", "planEndTime"}
)
CREATE_REQUIRED = ("ticketType", "siteCode", "planStartTime", "planEndTime")
DRAFT = "DRAFT"  # a permit opened as a draft: not listed until it is submitted
#: A ticket number the PTW gives: its prefix (`PTW-NJ-2026-`) and its number.
TICKET_NUMBER = re.compile(r"(PTW-.{2}-\d{4}-)(\d+)")


@dataclass(frozen=True)
class Transition:
    sources: tuple[str, ...]
    target: str
    stamps: tuple[str, ...] = ()  # vendor time fields set to the change time
    gated: bool = False  # the pre-approval hook is asked first


TRANSITIONS: dict[str, Transition] = {
    "submit": Transition((DRAFT,), "SUBMITTED", ("submitTime",)),
    "approve": Transition(("SUBMITTED",), "APPROVED", ("approveTime",), gated=True),
    "start": Transition(("APPROVED",), "IN_PROGRESS", gated=True),  # guardianArriveTime if not yet set
    "suspend": Transition(("IN_PROGRESS",), "SUSPENDED"),
    "resume": Transition(("SUSPENDED",), "IN_PROGRESS"),
    "close": Transition(("IN_PROGRESS", "SUSPENDED"), "CLOSED", ("closeTime",)),
    "cancel": Transition(("SUBMITTED", "APPROVED", "SUSPENDED"), "CANCELLED"),
}


class GateHookConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(pattern=r"^https?://")
    token: str = ""
    deadline_s: float = Field(default=2.0, gt=0, le=60)
    warn_only: bool = False


class CloseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    closeResult: Literal["COMPLETED", "ABORTED", "INCIDENT"] = "COMPLETED"
    workHours: float | None = Field(default=None, ge=0)


def _validation_problems(exc: ValidationError) -> list[dict]:
    return [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors(include_url=False, include_input=False)]


async def ask_gate_hook(hook: GateHookConfig, ticket_no: str, permit: dict) -> tuple[str | None, str, Any]:
    """The hook's decision (`allow`, `block`, or None when it gave none), why, and its answer."""
    headers = {"Authorization": f"Bearer {hook.token}"} if hook.token else {}
    try:
        async with httpx.AsyncClient(timeout=hook.deadline_s) as client:
            reply = await asyncio.wait_for(
                client.post(hook.url, json={"permit": permit}, headers=headers),
                hook.deadline_s,
            )
    except (asyncio.TimeoutError, httpx.TimeoutException):
        return None, f"no answer from the gate hook within {hook.deadline_s:g} s", None
    except httpx.HTTPError as exc:
        return None, f"gate hook unreachable: {type(exc).__name__}", None
    if reply.status_code != 200:
        return None, f"gate hook answered HTTP {reply.status_code}", None
    try:
        answer = reply.json()
    except ValueError:
        return None, "gate hook answer is not JSON", None
    decision = answer.get("decision") if isinstance(answer, dict) else None
    if decision not in ("allow", "block"):
        return None, f"gate hook answer has no decision allow/block: {str(answer)[:200]}", answer
    if decision == "block":
        return "block", "gate hook blocked", answer
    return "allow", "gate hook allowed", answer


def _plant_now() -> datetime:
    return datetime.now(PLANT_TZ).replace(microsecond=0)


class PtwSystem(MockSystem):
    name = "ptw"
    persistent = True

    def load_fixtures(self) -> None:
        permits = load_fixture(self.fixtures_dir, "ptw/permits.json")
        self._loaded_at = datetime.now(timezone.utc).replace(microsecond=0)
        seen: set[str] = set()
        for index, permit in enumerate(permits):
            ticket = permit.get("ticketNo")
            if not isinstance(ticket, str) or not ticket:
                raise FixtureError(f"ptw/permits.json: item {index} has no ticketNo")
            if ticket in seen:
                raise FixtureError(f"ptw/permits.json: ticketNo {ticket} appears twice")
            seen.add(ticket)
        self._fixture_permits = permits

    def clear_state(self) -> None:
        self._permits: dict[str, dict] = {p["ticketNo"]: copy.deepcopy(p) for p in self._fixture_permits}
        # (updateTime, ticketNo) -> permit, kept sorted; `_listed` is each listed permit's key.
        self._listing: list[tuple[SortKey, dict]] = []
        self._listed: dict[str, SortKey] = {}
        for ticket, permit in self._permits.items():
            key = self._sort_key(permit)
            self._listing.append((key, permit))
            self._listed[ticket] = key
        self._listing.sort(key=lambda pair: pair[0])
        # The highest number in use per ticket prefix (`_next_ticket_no`): a scan of every permit
        # per new permit cost a large plant's PTW a tenth of a second each.
        self._highest: dict[str, int] = {}
        for ticket in self._permits:
            self._note_number(ticket)
        self._holds: dict[str, dict[str, dict]] = {}  # ticketNo -> source -> hold
        self._revisions: dict[str, dict[str, int]] = {}  # last revision, kept after a DELETE
        self._gate_refusals: dict[str, list[dict]] = {}  # ticketNo -> what the gate hook refused or warned
        self.gate_hook: GateHookConfig | None = None
        # Off by default, so the fixture plant keeps its states under a batch sync; a live PTW
        # (PUT /_admin/suspend-on-block) suspends work that a BLOCK hold lands on.
        self.suspend_on_block = False

    def _sort_key(self, permit: dict) -> SortKey:
        return parse_vendor_time(permit.get("updateTime")) or self._loaded_at, permit["ticketNo"]

    def _store_permit(self, permit: dict) -> None:
        """Keep a new or changed permit and move it to its place in the listing."""
        ticket = permit["ticketNo"]
        self._permits[ticket] = permit
        self._note_number(ticket)
        old = self._listed.pop(ticket, None)
        if old is not None:
            index = bisect.bisect_left(self._listing, old, key=lambda pair: pair[0])
            del self._listing[index]
        if permit.get("state") != DRAFT:
            key = self._sort_key(permit)
            bisect.insort(self._listing, (key, permit), key=lambda pair: pair[0])
            self._listed[ticket] = key

    def _note_number(self, ticket: str) -> None:
        if (numbered := TICKET_NUMBER.fullmatch(ticket)) is not None:
            prefix, number = numbered.group(1), int(numbered.group(2))
            self._highest[prefix] = max(self._highest.get(prefix, 0), number)

    def _change_time(self) -> str:
        """Plant local now, but never before the newest listed `updateTime`: a change always
        sorts after everything a client may already have read (fixture times can lie ahead)."""
        now = _plant_now()
        if self._listing:
            now = max(now, self._listing[-1][0][0].astimezone(PLANT_TZ))
        return now.strftime(VENDOR_TIME_FORMAT)

    def apply_change(self, change: dict) -> None:
        kind = change.get("kind", "hold")  # holds were journalled before kinds existed
        if kind == "permit":
            self._store_permit(change["permit"])
        elif kind == "gate_refusal":
            if change["ticketNo"] in self._permits:
                self._gate_refusals.setdefault(change["ticketNo"], []).append(change["refusal"])
        else:
            self._apply_hold(change)

    def _apply_hold(self, change: dict) -> None:
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
        state: dict[str, Any] = {
            "holds": {ticket: list(holds.values()) for ticket, holds in self._holds.items() if holds}
        }
        if self._gate_refusals:
            state["gateRefusals"] = {ticket: list(found) for ticket, found in self._gate_refusals.items()}
        if self.gate_hook is not None:
            state["gateHook"] = self.gate_hook.model_dump(exclude={"token"})
        return state

    def _permit_view(self, ticket_no: str) -> dict:
        view = {**self._permits[ticket_no], "holds": list(self._holds.get(ticket_no, {}).values())}
        if ticket_no in self._gate_refusals:
            view["gateRefusals"] = list(self._gate_refusals[ticket_no])
        return view

    def create_permit(self, body: Any) -> dict | JSONResponse:
        if not isinstance(body, dict):
            return error(400, "a permit is a JSON object")
        body = dict(body)
        draft = body.pop("draft", False)
        if not isinstance(draft, bool):
            return error(400, "draft must be true or false")
        unknown = sorted(set(body) - CREATE_FIELDS)
        if unknown:
            return error(400, f"fields the PTW sets itself or does not know: {unknown}")
        missing = [name for name in CREATE_REQUIRED if not body.get(name)]
        if missing:
            return error(400, f"a permit needs {missing}")
        ticket = body.get("ticketNo") or self._next_ticket_no(str(body["siteCode"]))
        if not isinstance(ticket, str):
            return error(400, "ticketNo must be a string")
        if ticket in self._permits:
            return error(409, f"permit {ticket} already exists")
        now = self._change_time()
        values = {
            "riskLevel": "3", "workshop": None, "equipmentCodes": [], "materials": [], "applicant": None,
            "guardian": None, **body, "ticketNo": ticket, "state": DRAFT if draft else "SUBMITTED",
            "submitTime": None if draft else now,
            "approveTime": None, "guardianArriveTime": None, "closeTime": None, "closeResult": None,
            "workHours": None, "updateTime": now,
        }
        permit = {name: values[name] for name in PERMIT_FIELDS}
        self._store_permit(permit)
        self.state_changed({"kind": "permit", "permit": permit})
        return permit

    def _next_ticket_no(self, site: str) -> str:
        """`PTW-<first two letters of the site>-<year>-<NNNN>`, one past the highest in use."""
        prefix = f"PTW-{site.strip().upper()[:2]}-{_plant_now().year}-"
        return f"{prefix}{self._highest.get(prefix, 0) + 1:04d}"

    def _moved(self, permit: dict, transition: Transition, extra: dict | None = None) -> dict:
        now = self._change_time()
        moved = {**permit, "state": transition.target, "updateTime": now}
        for field_name in transition.stamps:
            moved[field_name] = now
        if transition.target == "IN_PROGRESS" and not moved.get("guardianArriveTime"):
            moved["guardianArriveTime"] = now  # work starts once the guardian is there
        moved.update(extra or {})
        return moved

    async def transition(self, ticket_no: str, action: str, body: bytes) -> JSONResponse:
        transition = TRANSITIONS.get(action)
        if transition is None:
            return error(404, f"no permit action {action!r}; actions are {', '.join(TRANSITIONS)}")
        if ticket_no not in self._permits:
            return error(404, f"permit {ticket_no} not found")
        extra: dict[str, Any] = {}
        if action == "close":
            try:
                close = CloseRequest.model_validate_json(body or b"{}")
            except ValidationError as exc:
                return error(422, "malformed close request", detail=_validation_problems(exc))
            extra = {"closeResult": close.closeResult, "workHours": close.workHours}
        refused = self._illegal(ticket_no, action, transition)
        if refused is not None:
            return refused
        if transition.gated and self.gate_hook is not None:
            hook = self.gate_hook
            decision, why, answer = await ask_gate_hook(hook, ticket_no, self._permits[ticket_no])
            if decision != "allow":
                outcome = "warned" if hook.warn_only else "refused"
                refusal = {
                    "action": action, "outcome": outcome, "decision": decision, "reason": why,
                    "answer": answer, "at": _utc_now(),
                }
                self._gate_refusals.setdefault(ticket_no, []).append(refusal)
                self.state_changed({"kind": "gate_refusal", "ticketNo": ticket_no, "refusal": refusal})
                if not hook.warn_only:
                    return error(409, f"{action} of {ticket_no} refused: {why}", refusal=refusal)
            refused = self._illegal(ticket_no, action, transition)  # it may have moved meanwhile
            if refused is not None:
                return refused
        permit = self._permits[ticket_no]
        if action == "close" and extra["workHours"] is None:
            extra["workHours"] = _work_hours(permit.get("guardianArriveTime"), self._change_time())
        moved = self._moved(permit, transition, extra)
        self._store_permit(moved)
        self.state_changed({"kind": "permit", "permit": moved})
        return JSONResponse(self._permit_view(ticket_no))

    def _illegal(self, ticket_no: str, action: str, transition: Transition) -> JSONResponse | None:
        state = self._permits[ticket_no].get("state")
        if state in transition.sources:
            return None
        return error(
            409,
            f"cannot {action} permit {ticket_no} in state {state}: {action} needs "
            f"{' or '.join(transition.sources)} (it leads to {transition.target})",
            state=state,
            allowed_from=list(transition.sources),
        )

    def add_routes(self, app: FastAPI) -> None:
        @app.put(f"{ADMIN_PREFIX}/gate-hook")
        async def set_gate_hook(request: Request) -> JSONResponse:
            try:
                self.gate_hook = GateHookConfig.model_validate_json(await request.body())
            except ValidationError as exc:
                return error(422, "malformed gate hook", detail=_validation_problems(exc))
            return JSONResponse(self.gate_hook.model_dump(exclude={"token"}))

        @app.put(f"{ADMIN_PREFIX}/suspend-on-block")
        async def set_suspend_on_block(request: Request) -> JSONResponse:
            try:
                enabled = json.loads(await request.body())["enabled"]
            except (ValueError, KeyError, TypeError):
                return error(422, 'body must be {"enabled": true|false}')
            self.suspend_on_block = bool(enabled)
            return JSONResponse({"enabled": self.suspend_on_block})

        @app.delete(f"{ADMIN_PREFIX}/gate-hook")
        async def delete_gate_hook() -> JSONResponse:
            removed, self.gate_hook = self.gate_hook is not None, None
            return JSONResponse({"removed": removed})

        @app.post("/api/v1/permits")
        async def create_permit(request: Request) -> Response:
            try:
                body = json.loads(await request.body())
            except ValueError as exc:
                return error(400, f"body is not JSON: {exc}")
            created = self.create_permit(body)
            if isinstance(created, JSONResponse):
                return created
            return JSONResponse(self._permit_view(created["ticketNo"]), status_code=201)

        @app.post("/api/v1/permits/{ticket_no}/{action}")
        async def permit_action(ticket_no: str, action: str, request: Request) -> JSONResponse:
            return await self.transition(ticket_no, action, await request.body())

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
            # The listing is sorted by key: start where `since` and the token allow, and read one
            # past the page (a scan of every permit per request was a large plant's PTW's main cost).
            start = 0
            if since is not None:
                start = bisect.bisect_left(self._listing, (since,), key=lambda pair: pair[0])
            if after is not None:
                start = max(start, bisect.bisect_right(self._listing, after, key=lambda pair: pair[0]))
            rows = []
            for index in range(start, len(self._listing)):
                key, permit = self._listing[index]
                if (site is None or _site_code(permit) == site) and _site_code(permit) not in excluded:
                    rows.append((key, permit))
                    if len(rows) > page_size:
                        break
            page = rows[:page_size]
            next_token = encode_token(page[-1][0]) if len(rows) > page_size else None
            return JSONResponse({"items": [permit for _, permit in page], "next_page_token": next_token})

        @app.get("/api/v1/holds")
        async def list_holds(request: Request) -> JSONResponse:
            """Every hold (of one source, and on permits of one site, if given), ordered by (ticketNo, source), page by page."""
            params = request.query_params
            page_size = _page_size(params.get("page_size"))
            if isinstance(page_size, JSONResponse):
                return page_size
            try:
                after = decode_hold_token(params["page_token"]) if params.get("page_token") else None
            except ValueError as exc:
                return error(400, str(exc))
            source = params.get("source") or None
            site = (params.get("siteCode") or "").strip().upper() or None
            rows = sorted(
                (
                    ((ticket, held), hold)
                    for ticket, holds in self._holds.items()
                    if site is None or _site_code(self._permits.get(ticket, {})) == site
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
            return JSONResponse(self._permit_view(ticket_no))

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
            self.state_changed(*self._suspend_if_blocked(ticket_no))  # a resumed permit is held again
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
        self.state_changed({"ticketNo": ticket_no, "source": source, "hold": placed}, *self._suspend_if_blocked(ticket_no))
        return {"changed": True, "revision": revision}

    def _suspend_if_blocked(self, ticket_no: str) -> list[dict]:
        """A BLOCK hold on a permit IN_PROGRESS suspends the work; the change to journal, if any."""
        permit = self._permits[ticket_no]
        held = self._holds.get(ticket_no, {}).values()
        if not self.suspend_on_block or permit.get("state") != "IN_PROGRESS" or not any(
            hold["action"] == "BLOCK" for hold in held
        ):
            return []
        moved = self._moved(permit, TRANSITIONS["suspend"])
        self._store_permit(moved)
        return [{"kind": "permit", "permit": moved}]


def _work_hours(arrived: Any, closed: str) -> float | None:
    """Hours from the guardian's arrival to the close, to the half hour; None if unknown."""
    start, end = parse_vendor_time(arrived), parse_vendor_time(closed)
    if start is None or end is None or end < start:
        return None
    return round((end - start).total_seconds() / 1800) / 2


def _site_code(permit: dict) -> str:
    return str(permit.get("siteCode", "")).strip().upper()


def _same_content(hold: dict, action: str, reasons: list[dict]) -> bool:
    def canonical(value: Any) -> str:
        return json.dumps(value, sort_keys=True, ensure_ascii=False)

    return hold["action"] == action and canonical(hold["reasons"]) == canonical(reasons)
