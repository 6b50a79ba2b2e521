"""The mock PTW and EAM as living systems: permit lifecycle, the pre-approval hook, suspension by
a BLOCK hold, EAM changes seen by both faces' changes-since queries, and persistence."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import httpx
import pytest
from lxml import etree

from mock_systems.base import PLANT_TZ
from mock_systems.servers import start_systems
from conftest import loopback_server

FIXTURES = Path(__file__).parents[1] / "fixtures"
TNS = "urn:plant:eam:maintenance:v1"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
BLOCK = {"action": "BLOCK", "reasons": [{"code": "OPEN_WORK_ORDER", "deviceId": "NJ-C-201", "message": "open work"}]}
NEW_PERMIT = {
    "ticketType": "GC",
    "riskLevel": "2",
    "siteCode": "NJ01",
    "workshop": "裂解车间",
    "equipmentCodes": ["NJ-P-101"],
    "materials": ["乙烯"],
    "applicant": "王芳",
    "guardian": "李强",
    "planStartTime": "2026-12-20 08:00:00",
    "planEndTime": "2026-12-20 17:00:00",
}


@pytest.fixture
def live(fresh_mocks, http):
    """The session's mocks, reset before and after: these tests change permits and work orders."""
    yield fresh_mocks
    for base_url in fresh_mocks.base_urls.values():
        http.post(f"{base_url}/_admin/reset").raise_for_status()


def ptw(running) -> str:
    return running.urls["ptw"]


def act(http, running, ticket: str, action: str, **body) -> httpx.Response:
    return http.post(f"{ptw(running)}/api/v1/permits/{ticket}/{action}", json=body or None)


def permit(http, running, ticket: str) -> dict:
    response = http.get(f"{ptw(running)}/api/v1/permits/{ticket}")
    response.raise_for_status()
    return response.json()


def listing(http, running, **params) -> list[dict]:
    items, token = [], None
    while True:
        page = http.get(
            f"{ptw(running)}/api/v1/permits", params={**params, "page_size": 7, **({"page_token": token} if token else {})}
        ).json()
        items.extend(page["items"])
        token = page["next_page_token"]
        if token is None:
            return items


def key(item: dict) -> tuple[datetime, str]:
    return datetime.strptime(item["updateTime"], TIME_FORMAT).replace(tzinfo=PLANT_TZ), item["ticketNo"]


def local(text: str) -> datetime:
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=PLANT_TZ)


def newest_listed(http, running) -> datetime:
    return max(key(item)[0] for item in listing(http, running))


# ------------------------------------------------------------------------------- lifecycle


def test_lifecycle_stamps_vendor_times_and_moves_the_permit_in_the_listing(live, http):
    before = newest_listed(http, live)
    created = http.post(f"{ptw(live)}/api/v1/permits", json=NEW_PERMIT)
    assert created.status_code == 201, created.text
    record = created.json()
    ticket = record["ticketNo"]
    assert ticket.startswith("PTW-NJ-") and ticket not in {"PTW-NJ-2026-0001"}
    assert record["state"] == "SUBMITTED"
    assert record["submitTime"] == record["updateTime"]
    assert local(record["updateTime"]) >= before  # never sorts before what a client has read
    assert [record[f] for f in ("approveTime", "guardianArriveTime", "closeTime", "closeResult", "workHours")] == [None] * 5
    assert record["holds"] == []
    stamps = [record["updateTime"]]
    for action, state, stamped in (
        ("approve", "APPROVED", "approveTime"),
        ("start", "IN_PROGRESS", "guardianArriveTime"),
        ("suspend", "SUSPENDED", None),
        ("resume", "IN_PROGRESS", None),
    ):
        response = act(http, live, ticket, action)
        assert response.status_code == 200, response.text
        moved = response.json()
        assert moved["state"] == state
        if stamped:
            assert moved[stamped] == moved["updateTime"]
        stamps.append(moved["updateTime"])
    closed = act(http, live, ticket, "close", closeResult="ABORTED", workHours=2.5).json()
    assert closed["state"] == "CLOSED" and closed["closeTime"] == closed["updateTime"]
    assert (closed["closeResult"], closed["workHours"]) == ("ABORTED", 2.5)
    stamps.append(closed["updateTime"])
    assert stamps == sorted(stamps)
    assert permit(http, live, ticket)["state"] == "CLOSED"

    # The listing still holds every permit once, in (updateTime, ticketNo) order, the changed one newest.
    everything = listing(http, live)
    assert [key(item) for item in everything] == sorted(key(item) for item in everything)
    assert [item["ticketNo"] for item in everything].count(ticket) == 1
    assert len(everything) == len(json.loads((FIXTURES / "ptw/permits.json").read_text(encoding="utf-8"))) + 1
    since = local(closed["updateTime"]).isoformat()
    changed = listing(http, live, updated_since=since)
    assert ticket in [item["ticketNo"] for item in changed]
    assert changed[-1]["updateTime"] == closed["updateTime"]


def test_a_fixture_permit_changed_is_listed_again_after_the_newest_fixture(live, http):
    newest = newest_listed(http, live)
    before = permit(http, live, "PTW-NJ-2026-0002")
    approved = act(http, live, "PTW-NJ-2026-0002", "approve").json()
    assert approved["state"] == "APPROVED"
    assert approved["submitTime"] == before["submitTime"]  # only the new step's time is stamped
    assert approved["approveTime"] == approved["updateTime"]
    assert local(approved["updateTime"]) >= newest
    changed = listing(http, live, updated_since=newest.isoformat())
    assert "PTW-NJ-2026-0002" in [item["ticketNo"] for item in changed]
    everything = listing(http, live)
    assert [key(item) for item in everything] == sorted(key(item) for item in everything)
    assert len({item["ticketNo"] for item in everything}) == len(everything)


def test_close_without_work_hours_counts_them_from_the_guardians_arrival(live, http):
    closed = act(http, live, "PTW-NJ-2026-0009", "close").json()
    assert closed["closeResult"] == "COMPLETED"
    hours = (local(closed["closeTime"]) - local(closed["guardianArriveTime"])).total_seconds() / 3600
    assert abs(closed["workHours"] - hours) <= 0.25


def test_a_new_permit_is_numbered_one_past_the_highest_ticket_of_its_prefix(live, http):
    prefix = f"PTW-NJ-{datetime.now(PLANT_TZ).year}-"
    given = http.post(f"{ptw(live)}/api/v1/permits", json={**NEW_PERMIT, "ticketNo": f"{prefix}0500"})
    assert given.status_code == 201, given.text
    numbered = [http.post(f"{ptw(live)}/api/v1/permits", json=NEW_PERMIT).json()["ticketNo"] for _ in range(2)]
    assert numbered == [f"{prefix}0501", f"{prefix}0502"]
    other_site = http.post(f"{ptw(live)}/api/v1/permits", json={**NEW_PERMIT, "siteCode": "HZ02"}).json()["ticketNo"]
    assert other_site.startswith(f"PTW-HZ-{datetime.now(PLANT_TZ).year}-") and not other_site.endswith("0503")


def test_the_listing_pages_by_site_and_time_as_a_filter_of_the_whole_listing_would(live, http):
    for site in ("NJ01", "HZ02", "NJ01"):
        assert http.post(f"{ptw(live)}/api/v1/permits", json={**NEW_PERMIT, "siteCode": site}).status_code == 201
    everything = listing(http, live)
    middle = key(everything[len(everything) // 2])[0]

    def site_of(item: dict) -> str:
        return str(item.get("siteCode", "")).strip().upper()

    for params, wanted in [
        ({"site": "NJ01"}, lambda item: site_of(item) == "NJ01"),
        ({"updated_since": middle.isoformat()}, lambda item: key(item)[0] >= middle),
        ({"site": "HZ02", "updated_since": middle.isoformat()}, lambda item: site_of(item) == "HZ02" and key(item)[0] >= middle),
        ({"exclude_sites": "NJ01,HZ02"}, lambda item: site_of(item) not in {"NJ01", "HZ02"}),
    ]:
        expected = [item["ticketNo"] for item in everything if wanted(item)]
        assert expected, params
        assert [item["ticketNo"] for item in listing(http, live, **params)] == expected, params


def test_draft_is_not_listed_until_submitted(live, http):
    count = len(listing(http, live))
    created = http.post(f"{ptw(live)}/api/v1/permits", json={**NEW_PERMIT, "ticketNo": "PTW-NJ-2026-9001", "draft": True})
    assert created.status_code == 201
    assert (created.json()["state"], created.json()["submitTime"]) == ("DRAFT", None)
    assert len(listing(http, live)) == count
    assert act(http, live, "PTW-NJ-2026-9001", "approve").status_code == 409
    submitted = act(http, live, "PTW-NJ-2026-9001", "submit").json()
    assert submitted["state"] == "SUBMITTED" and submitted["submitTime"] == submitted["updateTime"]
    assert [p["ticketNo"] for p in listing(http, live)].count("PTW-NJ-2026-9001") == 1
    assert len(listing(http, live)) == count + 1
    # The number is taken now; a submitted permit cannot be submitted again.
    assert http.post(f"{ptw(live)}/api/v1/permits", json={**NEW_PERMIT, "ticketNo": "PTW-NJ-2026-9001"}).status_code == 409
    assert act(http, live, "PTW-NJ-2026-9001", "submit").status_code == 409


@pytest.mark.parametrize(
    "ticket, action, state",
    [
        ("PTW-NJ-2026-0002", "close", "SUBMITTED"),  # SUBMITTED cannot close
        ("PTW-NJ-2026-0002", "start", "SUBMITTED"),
        ("PTW-NJ-2026-0001", "resume", "APPROVED"),
        ("PTW-NJ-2026-0009", "cancel", "IN_PROGRESS"),  # cancel only before work or while suspended
        ("PTW-NJ-2026-0014", "approve", "CLOSED"),
        ("PTW-NJ-2026-0021", "resume", "CANCELLED"),
    ],
)
def test_illegal_transition_is_409_naming_the_states(live, http, ticket, action, state):
    before = permit(http, live, ticket)
    response = act(http, live, ticket, action)
    assert response.status_code == 409
    body = response.json()
    assert state in body["error"] and body["state"] == state
    assert all(allowed in body["error"] for allowed in body["allowed_from"])
    assert permit(http, live, ticket) == before


def test_cancel_from_suspended_and_unknown_permit_or_action(live, http):
    assert act(http, live, "PTW-NJ-2026-0022", "cancel").json()["state"] == "CANCELLED"
    assert act(http, live, "PTW-NJ-2026-9999", "approve").status_code == 404
    assert act(http, live, "PTW-NJ-2026-0002", "teleport").status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {**NEW_PERMIT, "state": "APPROVED"},  # the PTW sets the state
        {**NEW_PERMIT, "updateTime": "2026-12-01 00:00:00"},
        {key: value for key, value in NEW_PERMIT.items() if key != "siteCode"},
        [NEW_PERMIT],
    ],
)
def test_create_refuses_a_bad_permit(live, http, body):
    count = len(listing(http, live))
    assert http.post(f"{ptw(live)}/api/v1/permits", json=body).status_code == 400
    assert len(listing(http, live)) == count


# ------------------------------------------------------------------------------- gate hook


class Hook:
    """What the loopback hook answers, and what it was asked."""

    def __init__(self) -> None:
        self.answer: dict | bytes = {"decision": "allow"}
        self.status = 200
        self.sleep_s = 0.0
        self.calls: list[dict] = []

    def handler(self) -> type[BaseHTTPRequestHandler]:
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.calls.append({"authorization": self.headers.get("Authorization"), "body": json.loads(body)})
                time.sleep(hook.sleep_s)
                raw = hook.answer if isinstance(hook.answer, bytes) else json.dumps(hook.answer).encode()
                try:
                    self.send_response(hook.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                except OSError:
                    pass  # the mock gave up waiting

            def log_message(self, *args) -> None:
                pass

        return Handler


@pytest.fixture
def hook(live, http):
    state = Hook()
    with loopback_server(state.handler()) as url:
        state.url = url

        def install(**settings) -> None:
            config = {"url": f"{url}/gate", "token": "s3cret", "deadline_s": 2, "warn_only": False, **settings}
            response = http.put(f"{live.base_urls['ptw']}/_admin/gate-hook", json=config)
            assert response.status_code == 200, response.text
            assert "token" not in response.json()

        state.install = install
        yield state
        http.delete(f"{live.base_urls['ptw']}/_admin/gate-hook")


def test_hook_allow_lets_approve_and_start_through(live, http, hook):
    hook.install()
    assert act(http, live, "PTW-NJ-2026-0002", "approve").json()["state"] == "APPROVED"
    started = act(http, live, "PTW-NJ-2026-0002", "start").json()
    assert started["state"] == "IN_PROGRESS"
    assert "gateRefusals" not in started
    assert [call["authorization"] for call in hook.calls] == ["Bearer s3cret"] * 2
    first = hook.calls[0]["body"]
    assert set(first) == {"permit"}  # the gate-check service takes exactly one of permit or ticket_no
    assert first["permit"]["ticketNo"] == "PTW-NJ-2026-0002" and first["permit"]["state"] == "SUBMITTED"
    assert hook.calls[1]["body"]["permit"]["state"] == "APPROVED"
    act(http, live, "PTW-NJ-2026-0002", "suspend").raise_for_status()  # not asked: only approve and start
    assert len(hook.calls) == 2


def test_hook_block_refuses_approve_and_records_why(live, http, hook):
    hook.install()
    hook.answer = {"decision": "block", "reasons": [{"code": "OPEN_WORK_ORDER", "deviceId": "NJ-E-201"}]}
    before = permit(http, live, "PTW-NJ-2026-0002")
    response = act(http, live, "PTW-NJ-2026-0002", "approve")
    assert response.status_code == 409
    assert "blocked" in response.json()["error"]
    after = permit(http, live, "PTW-NJ-2026-0002")
    assert after["state"] == "SUBMITTED" and after["updateTime"] == before["updateTime"]
    [refusal] = after["gateRefusals"]
    assert (refusal["action"], refusal["outcome"], refusal["decision"]) == ("approve", "refused", "block")
    assert refusal["answer"]["reasons"][0]["code"] == "OPEN_WORK_ORDER"
    state = http.get(f"{live.base_urls['ptw']}/_admin/state").json()
    assert state["gateRefusals"]["PTW-NJ-2026-0002"] == [refusal]
    assert "token" not in state["gateHook"]
    # The listing serves the permit as stored, without the refusals.
    [listed] = [p for p in listing(http, live) if p["ticketNo"] == "PTW-NJ-2026-0002"]
    assert "gateRefusals" not in listed and listed["state"] == "SUBMITTED"


def test_hook_that_does_not_answer_in_time_refuses(live, http, hook):
    hook.install(deadline_s=0.5)
    hook.sleep_s = 2.0
    started = time.monotonic()
    response = act(http, live, "PTW-NJ-2026-0001", "start")
    elapsed = time.monotonic() - started
    assert response.status_code == 409
    assert 0.4 <= elapsed < 1.8
    [refusal] = permit(http, live, "PTW-NJ-2026-0001")["gateRefusals"]
    assert refusal["decision"] is None and "0.5 s" in refusal["reason"] and refusal["action"] == "start"
    assert permit(http, live, "PTW-NJ-2026-0001")["state"] == "APPROVED"


@pytest.mark.parametrize(
    "status, answer, why",
    [
        (503, {"decision": "allow"}, "HTTP 503"),
        (200, b"<html>not json</html>", "not JSON"),
        (200, {"decision": "maybe"}, "no decision"),
        (200, ["allow"], "no decision"),
    ],
)
def test_hook_unusable_answer_refuses(live, http, hook, status, answer, why):
    hook.install()
    hook.status, hook.answer = status, answer
    response = act(http, live, "PTW-NJ-2026-0002", "approve")
    assert response.status_code == 409
    assert why in permit(http, live, "PTW-NJ-2026-0002")["gateRefusals"][0]["reason"]


def test_unreachable_hook_refuses(live, http):
    config = {"url": "http://127.0.0.1:9/gate", "deadline_s": 1}
    http.put(f"{live.base_urls['ptw']}/_admin/gate-hook", json=config).raise_for_status()
    assert act(http, live, "PTW-NJ-2026-0002", "approve").status_code == 409
    assert "unreachable" in permit(http, live, "PTW-NJ-2026-0002")["gateRefusals"][0]["reason"]


def test_warn_only_hook_lets_the_transition_through_and_records_the_warning(live, http, hook):
    hook.install(warn_only=True)
    hook.answer = {"decision": "block"}
    response = act(http, live, "PTW-NJ-2026-0002", "approve")
    assert response.status_code == 200
    moved = response.json()
    assert moved["state"] == "APPROVED"
    [warning] = moved["gateRefusals"]
    assert (warning["outcome"], warning["decision"]) == ("warned", "block")


def test_removed_hook_is_not_asked_and_a_bad_hook_setting_is_422(live, http, hook):
    hook.install()
    assert http.delete(f"{live.base_urls['ptw']}/_admin/gate-hook").json() == {"removed": True}
    assert act(http, live, "PTW-NJ-2026-0002", "approve").status_code == 200
    assert hook.calls == []
    bad = http.put(f"{live.base_urls['ptw']}/_admin/gate-hook", json={"url": "ftp://x", "deadline_s": 0})
    assert bad.status_code == 422


def test_reset_removes_the_hook(live, http, hook):
    hook.install()
    http.post(f"{live.base_urls['ptw']}/_admin/reset").raise_for_status()
    assert act(http, live, "PTW-NJ-2026-0002", "approve").status_code == 200
    assert hook.calls == []


# ------------------------------------------------------------------------------- suspension by a hold


def test_block_hold_suspends_an_active_permit(live, http):
    ticket = "PTW-NJ-2026-0009"
    # Off by default: a BLOCK leaves the state alone until the PTW is told to suspend.
    http.put(f"{ptw(live)}/api/v1/permits/PTW-NJ-2026-0013/holds/integration-hub", json=BLOCK).raise_for_status()
    assert permit(http, live, "PTW-NJ-2026-0013")["state"] == "IN_PROGRESS"
    http.put(f"{live.base_urls['ptw']}/_admin/suspend-on-block", json={"enabled": True}).raise_for_status()
    before = permit(http, live, ticket)
    assert before["state"] == "IN_PROGRESS"
    newest = newest_listed(http, live)
    placed = http.put(f"{ptw(live)}/api/v1/permits/{ticket}/holds/integration-hub", json=BLOCK)
    assert placed.json() == {"changed": True, "revision": 1}
    after = permit(http, live, ticket)
    assert after["state"] == "SUSPENDED"
    assert local(after["updateTime"]) >= newest and after["updateTime"] != before["updateTime"]
    assert ticket in [p["ticketNo"] for p in listing(http, live, updated_since=newest.isoformat())]
    # Resumed while the hold is still in force, the same hold written again suspends it again.
    assert act(http, live, ticket, "resume").json()["state"] == "IN_PROGRESS"
    again = http.put(f"{ptw(live)}/api/v1/permits/{ticket}/holds/integration-hub", json=BLOCK)
    assert again.json() == {"changed": False, "revision": 1}
    assert permit(http, live, ticket)["state"] == "SUSPENDED"


def test_allow_hold_or_a_block_on_a_permit_not_in_progress_changes_no_state(live, http):
    allow = {"action": "ALLOW", "reasons": []}
    before = permit(http, live, "PTW-NJ-2026-0013")
    http.put(f"{ptw(live)}/api/v1/permits/PTW-NJ-2026-0013/holds/integration-hub", json=allow).raise_for_status()
    after = permit(http, live, "PTW-NJ-2026-0013")
    assert (after["state"], after["updateTime"]) == (before["state"], before["updateTime"])
    before = permit(http, live, "PTW-NJ-2026-0001")
    http.put(f"{ptw(live)}/api/v1/permits/PTW-NJ-2026-0001/holds/integration-hub", json=BLOCK).raise_for_status()
    after = permit(http, live, "PTW-NJ-2026-0001")
    assert (after["state"], after["updateTime"]) == (before["state"], before["updateTime"]) == ("APPROVED", before["updateTime"])


# ------------------------------------------------------------------------------- EAM changes


def soap_query(http, running, *assetnums: str, siteid: str, changedsince: str) -> etree._Element:
    items = "".join(f"<eam:assetnum>{num}</eam:assetnum>" for num in assetnums)
    body = (
        f'<soap:Envelope xmlns:soap="{SOAP_ENV}" xmlns:eam="{TNS}"><soap:Body><eam:GetAssetMaintenanceRequest>'
        f"<eam:siteid>{siteid}</eam:siteid>{items}<eam:changedsince>{changedsince}</eam:changedsince>"
        "</eam:GetAssetMaintenanceRequest></soap:Body></soap:Envelope>"
    ).encode()
    response = http.post(
        running.urls["eam"], content=body, headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f"{TNS}/GetAssetMaintenance"}
    )
    response.raise_for_status()
    return etree.fromstring(response.content)


def soap_workorders(root: etree._Element) -> list[dict]:
    return [
        {etree.QName(child).localname: child.text for child in element}
        for element in root.iter(f"{{{TNS}}}workorder")
    ]


def oslc(http, running, structure: str, where: str) -> list[dict]:
    response = http.get(f"{running.urls['eam_oslc']}/os/{structure}", params={"oslc.where": where, "oslc.select": "*"})
    response.raise_for_status()
    return response.json()["member"]


NEW_WO = {
    "wonum": "WO-1999",
    "assetnum": "NJ-P-101",
    "siteid": "NJ01",
    "worktype": "CM",
    "status": "INPRG",
    "status_maxvalue": "INPRG",
    "schedstart": "2026-12-05T09:00:00+08:00",
    "isolationstate": "APPLIED",
}


def test_work_order_opened_through_admin_shows_in_both_faces_changes_since(live, http):
    cutoff = (datetime.now(PLANT_TZ) - timedelta(seconds=2)).replace(microsecond=0).isoformat()
    # Nothing of the fixtures changed so recently.
    assert soap_workorders(soap_query(http, live, "NJ-P-101", siteid="NJ01", changedsince=cutoff)) == []
    opened = http.post(f"{live.base_urls['eam']}/_admin/workorders", json=NEW_WO)
    assert opened.status_code == 201, opened.text
    record = opened.json()
    assert datetime.fromisoformat(record["changedate"]) >= datetime.fromisoformat(cutoff)
    assert record["changedate"].endswith("+08:00")

    [soap_wo] = soap_workorders(soap_query(http, live, "NJ-P-101", siteid="NJ01", changedsince=cutoff))
    assert soap_wo == record
    where = f'assetnum in ["NJ-P-101"] and siteid="NJ01" and changedate>="{cutoff}"'
    [member] = oslc(http, live, "mxwo", where)
    assert {name: member[name] for name in record} == record

    # A change to a fixture work order moves its changedate, so it is seen too.
    changed = http.patch(
        f"{live.base_urls['eam']}/_admin/workorders/NJ01/WO-1058",
        json={"status": "COMP", "status_maxvalue": "COMP", "schedfinish": None, "isolationstate": "RELEASED"},
    )
    assert changed.status_code == 200, changed.text
    assert "schedfinish" not in changed.json()
    [soap_changed] = soap_workorders(soap_query(http, live, "NJ-C-101", siteid="NJ01", changedsince=cutoff))
    assert (soap_changed["wonum"], soap_changed["status_maxvalue"], soap_changed["isolationstate"]) == ("WO-1058", "COMP", "RELEASED")
    [oslc_changed] = oslc(http, live, "mxwo", f'assetnum in ["NJ-C-101"] and siteid="NJ01" and changedate>="{cutoff}"')
    assert oslc_changed["status"] == "COMP" and "schedfinish" not in oslc_changed

    # Reset goes back to the fixtures, on both faces.
    http.post(f"{live.base_urls['eam']}/_admin/reset").raise_for_status()
    assert soap_workorders(soap_query(http, live, "NJ-P-101", "NJ-C-101", siteid="NJ01", changedsince=cutoff)) == []
    assert oslc(http, live, "mxwo", where) == []


def test_asset_change_is_served_by_both_faces(live, http):
    [twin_before] = oslc(http, live, "mxasset", 'assetnum in ["CT-701"] and siteid="HZ02"')
    changed = http.patch(
        f"{live.base_urls['eam']}/_admin/assets/NJ01/nj-p-101",
        json={"status": "NOT READY", "nextinspdate": "2026-12-01T00:00:00+08:00"},
    )
    assert changed.status_code == 200, changed.text
    root = soap_query(http, live, "NJ-P-101", siteid="NJ01", changedsince="2026-01-01T00:00:00+08:00")
    [asset] = root.iter(f"{{{TNS}}}asset")
    assert asset.findtext(f"{{{TNS}}}status") == "NOT READY"
    assert asset.findtext(f"{{{TNS}}}nextinspdate") == "2026-12-01T00:00:00+08:00"
    [member] = oslc(http, live, "mxasset", 'assetnum in ["NJ-P-101"] and siteid="NJ01"')
    assert member["status"] == "NOT READY"
    # An asset is site + number: changing one site's CT-701 leaves the other site's alone.
    http.patch(f"{live.base_urls['eam']}/_admin/assets/NJ01/CT-701", json={"status": "DECOMMISSIONED"}).raise_for_status()
    [twin_after] = oslc(http, live, "mxasset", 'assetnum in ["CT-701"] and siteid="HZ02"')
    assert twin_after == twin_before
    [changed_twin] = oslc(http, live, "mxasset", 'assetnum in ["CT-701"] and siteid="NJ01"')
    assert changed_twin["status"] == "DECOMMISSIONED" and changed_twin["_rowstamp"] != twin_before["_rowstamp"]


@pytest.mark.parametrize(
    "method, path, body, status",
    [
        ("post", "/_admin/workorders", {**NEW_WO, "assetnum": "NJ-P-199"}, 404),  # no such asset
        ("post", "/_admin/workorders", {**NEW_WO, "wonum": "WO-1058"}, 409),  # exists at the site
        ("post", "/_admin/workorders", {**NEW_WO, "changedate": "2026-12-01T00:00:00+08:00"}, 400),
        ("post", "/_admin/workorders", {k: v for k, v in NEW_WO.items() if k != "worktype"}, 400),
        ("post", "/_admin/workorders", {**NEW_WO, "schedstart": "2026-12-05 09:00"}, 400),
        ("patch", "/_admin/workorders/NJ01/WO-9999", {"status": "COMP"}, 404),
        ("patch", "/_admin/workorders/HZ02/WO-1058", {"status": "COMP"}, 404),  # another site's number
        ("patch", "/_admin/workorders/NJ01/WO-1058", {"wonum": "WO-2"}, 400),
        ("patch", "/_admin/workorders/NJ01/WO-1058", {"status": None}, 400),
        ("patch", "/_admin/assets/NJ01/NJ-P-101", {"location": "x"}, 400),
        ("patch", "/_admin/assets/NJ01/NJ-P-199", {"status": "OPERATING"}, 404),
    ],
)
def test_eam_refuses_bad_changes(live, http, method, path, body, status):
    response = getattr(http, method)(f"{live.base_urls['eam']}{path}", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]


# ------------------------------------------------------------------------------- persistence


def test_state_dir_keeps_permit_changes_across_a_restart(tmp_path, http):
    state = tmp_path / "state"
    with start_systems(FIXTURES, state_dir=state) as first:
        created = http.post(f"{ptw(first)}/api/v1/permits", json=NEW_PERMIT).json()
        act(http, first, created["ticketNo"], "approve").raise_for_status()
        closed = act(http, first, "PTW-NJ-2026-0009", "close", closeResult="COMPLETED", workHours=7).json()
        http.put(f"{first.base_urls['ptw']}/_admin/suspend-on-block", json={"enabled": True}).raise_for_status()
        http.put(f"{ptw(first)}/api/v1/permits/PTW-HZ-2026-0004/holds/integration-hub", json=BLOCK).raise_for_status()
        config = {"url": "http://127.0.0.1:9/gate", "deadline_s": 0.5}
        http.put(f"{first.base_urls['ptw']}/_admin/gate-hook", json=config).raise_for_status()
        assert act(http, first, "PTW-NJ-2026-0002", "approve").status_code == 409
        seen = {p: permit(http, first, p) for p in (created["ticketNo"], "PTW-NJ-2026-0009", "PTW-HZ-2026-0004", "PTW-NJ-2026-0002")}
        listed = listing(http, first)
    with start_systems(FIXTURES, state_dir=state) as second:
        for ticket, record in seen.items():
            assert permit(http, second, ticket) == record
        assert seen[created["ticketNo"]]["state"] == "APPROVED"
        assert seen["PTW-NJ-2026-0009"]["updateTime"] == closed["updateTime"]
        assert seen["PTW-HZ-2026-0004"]["state"] == "SUSPENDED"
        assert seen["PTW-NJ-2026-0002"]["gateRefusals"][0]["outcome"] == "refused"
        assert listing(http, second) == listed
        # The hook is admin configuration, like faults: not kept.
        assert act(http, second, "PTW-NJ-2026-0002", "approve").status_code == 200
        http.post(f"{second.base_urls['ptw']}/_admin/reset").raise_for_status()
    with start_systems(FIXTURES, state_dir=state) as third:
        assert permit(http, third, "PTW-NJ-2026-0009")["state"] == "IN_PROGRESS"
        assert http.get(f"{ptw(third)}/api/v1/permits/{created['ticketNo']}").status_code == 404
        assert http.get(f"{third.base_urls['ptw']}/_admin/state").json() == {"holds": {}}


def test_concurrent_transitions_only_one_wins(live, http, hook):
    """Two approvals at once while the hook thinks: the second to finish finds the permit moved."""
    hook.install()
    hook.sleep_s = 0.3
    results: list[int] = []

    def approve() -> None:
        with httpx.Client(timeout=10) as client:
            results.append(client.post(f"{ptw(live)}/api/v1/permits/PTW-NJ-2026-0002/approve").status_code)

    threads = [threading.Thread(target=approve) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(results) == [200, 409]
    assert permit(http, live, "PTW-NJ-2026-0002")["state"] == "APPROVED"
