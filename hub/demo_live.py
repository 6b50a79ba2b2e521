"""`hub demo --live`: after the demo's sync, the live gate at work on the mock plant.

The gate-check service and the Dagster daemon start (`hub.live.LiveGate`); a work-at-height
permit is created on equipment that is clear, approved and started through the PTW, whose
pre-approval hook asks the service; then a corrective work order is opened on that equipment
in the EAM, and the demo waits for the hub to suspend the work, printing how long it took.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx

from hub.live import LiveGate
from hub.settings import HubSettings, child_environment

PLANT_TZ = ZoneInfo("Asia/Shanghai")
#: A device of the fixture plant that is clear: in service, no work order ever left open (one
#: scheduled on it would block the demo's permit on the days it covers), inspected until 2027-05.
SITE, DEVICE, WORKSHOP = "NJ01", "NJ-P-201", "聚合车间"
#: How long the demo waits for the hub to suspend the work.
WAIT_S = 90.0


@dataclass
class LiveDemo:
    ticket: str = ""
    steps: list[tuple[str, str]] = field(default_factory=list)  # (what happened, when, UTC)
    work_order: str = ""
    suspended: bool = False
    latency_s: float | None = None
    reasons: list[str] = field(default_factory=list)
    problem: str | None = None


def live_scenario(report: LiveDemo, folder: Path, progress):
    """The `live` step of `run_demo`: fills `report` while the mocks run."""

    def scenario(systems, settings: HubSettings) -> None:
        env = child_environment(settings)
        ptw, eam = systems.base_urls["ptw"], systems.base_urls[settings_eam_system(systems, settings)]
        progress("starting the gate-check service and the Dagster daemon")
        with LiveGate(env, folder, systems.urls["ptw"]), httpx.Client(timeout=30) as http:
            _run(report, http, ptw, eam, progress)

    return scenario


def settings_eam_system(systems, settings: HubSettings) -> str:
    """Which mock face the settings reach the EAM through."""
    return next(name for name, url in systems.urls.items() if url == settings.eam.url)


def _stamp(report: LiveDemo, what: str) -> float:
    now = time.time()
    report.steps.append((what, datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="milliseconds")))
    return now


def _run(report: LiveDemo, http: httpx.Client, ptw: str, eam: str, progress) -> None:
    start = datetime.now(PLANT_TZ)
    created = http.post(f"{ptw}/api/v1/permits", json={
        "ticketType": "GC", "siteCode": SITE, "workshop": WORKSHOP, "equipmentCodes": [DEVICE],
        "applicant": "demo", "guardian": "demo",
        "planStartTime": f"{start:%Y-%m-%d %H:%M:%S}", "planEndTime": f"{start + timedelta(hours=4):%Y-%m-%d %H:%M:%S}",
    })
    created.raise_for_status()
    report.ticket = created.json()["ticketNo"]
    _stamp(report, f"permit {report.ticket} submitted on {SITE}/{DEVICE}")
    for action in ("approve", "start"):
        reply = http.post(f"{ptw}/api/v1/permits/{report.ticket}/{action}")
        if reply.status_code != 200:
            answer = (reply.json().get("refusal") or {}).get("answer") or {}
            why = "; ".join(f"{r.get('code')}: {r.get('message')}" for r in answer.get("reasons", []))
            report.problem = f"{action} refused by the gate: {reply.json().get('error')} ({why or 'no reasons'})"
            return
        _stamp(report, f"{action}: the gate-check service allowed it")
    progress(f"{report.ticket} is in progress; opening a work order on {DEVICE}")
    report.work_order = f"WO-DEMO-{int(time.time())}"
    now = datetime.now(PLANT_TZ).replace(microsecond=0)
    http.post(f"{eam}/_admin/workorders", json={
        "wonum": report.work_order, "assetnum": DEVICE, "siteid": SITE, "worktype": "CM", "status": "INPRG",
        "status_maxvalue": "INPRG", "schedstart": (now - timedelta(minutes=5)).isoformat(),
    }).raise_for_status()
    opened = _stamp(report, f"corrective work order {report.work_order} opened on {DEVICE} in the EAM")
    deadline = opened + WAIT_S
    while time.time() < deadline:
        permit = http.get(f"{ptw}/api/v1/permits/{report.ticket}").json()
        if permit.get("state") == "SUSPENDED":
            suspended = _stamp(report, "the hub's hold suspended the work")
            report.suspended, report.latency_s = True, round(suspended - opened, 1)
            report.reasons = sorted({r["code"] for h in permit.get("holds", []) for r in h.get("reasons", [])})
            return
        time.sleep(0.25)
    report.problem = f"the work was not suspended within {WAIT_S:g} s"
