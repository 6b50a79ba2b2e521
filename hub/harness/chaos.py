"""`hub chaos`: fault the plant systems at random, sync through it, recover, check the invariants.

Each run draws a fault schedule from the seed (1 to 4 faults: latency, 5xx, 429, dropped
connections, read timeouts, SOAP faults, garbled or cut replies, failed PTW write-backs, ERP
commits whose answer is lost, holds lifted or edited at the PTW, EAM replies that come back
empty or with only a share of their records), runs the full sync in this
process against a fresh store and freshly reset mocks, clears the faults, lets any delayed
request land, and recovers with up to `MAX_RECOVERY_RUNS` clean syncs. Timeouts and retry waits
are short so a run takes seconds.

Hold drift is not a fault of the wire but of the PTW's state: between two syncs, someone at the
PTW lifts some of the hub's holds, edits their reasons, turns them into ALLOW, or places the
hub's BLOCK on a permit the gate allows, through the PTW's own hold API. It is applied after
the first sync that succeeds (the faulted one, or else a recovery sync, which then needs one
more), so the next sync has holds the hub believes written to put right.
"""

from __future__ import annotations

import random
import tempfile
import urllib.parse
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
from dagster import DagsterInstance

from hub.connectors.breaker import close_all_breakers
from hub.demo import EAM_WSDL
from hub.harness.invariants import Expected, Verdict, check, expected_outcome
from hub.harness.plant import SYSTEMS, MockPlant
from hub.settings import HubSettings, SystemEndpoint
from hub.sync import run_full_sync

FAULT_KINDS = (
    "latency",
    "5xx",
    "429",
    "reset",
    "read timeout",
    "soap_fault",
    "malformed",
    "truncate",
    "ptw write-back",
    "commit_then_drop",
    "commit_then_status",
    "hold drift",
    "empty",
    "shrink",
)
# Empty and shrunken replies go to the EAM, where the hub can tell them from the truth (the
# assets it asked for are missing, open work orders vanish). A PTW listing page carries no count,
# so a page that silently lost permits cannot be told from a short one.
ONLY_ON = {
    "empty": "eam",
    "shrink": "eam",
    "soap_fault": "eam",
    "ptw write-back": "ptw",
    "commit_then_drop": "erp",
    "commit_then_status": "erp",
    "hold drift": "ptw",
}
HOLD_SOURCE = "integration-hub"  # the source the hub writes its holds under (HubSettings.hold_source)
# What someone at the PTW does to holds: lift one of the hub's, edit its reasons, turn it into
# ALLOW, or place the hub's BLOCK on a permit the gate allows.
DRIFT_ACTIONS = ("lift", "alter", "allow", "stray")
EDITED_REASONS = [{"code": "EDITED_AT_PTW", "message": "reasons replaced at the PTW", "evidence": {}}]
READ_TIMEOUT_S = 1.0
RETRY_ATTEMPTS = 3
MAX_RECOVERY_RUNS = 3
# A Dagster instance is cheap to share and slow to create; renewing it now and then bounds its in-memory event log.
RUNS_PER_INSTANCE = 100
ERP_POSTS = {"method": "POST", "path_prefix": "/api/v1/journal-entries"}
HOLD_WRITES = {"method": "PUT", "path_prefix": "/api/v1/permits/"}


@dataclass(frozen=True)
class Fault:
    kind: str  # one of FAULT_KINDS
    system: str
    rule: dict[str, Any] = field(default_factory=dict)  # a mock fault rule; empty for latency and hold drift
    latency_ms: int = 0
    drift: tuple[str, ...] = ()  # hold drift: one of DRIFT_ACTIONS per hold changed at the PTW

    def describe(self) -> str:
        if self.kind == "latency":
            return f"{self.system}: latency {self.latency_ms} ms"
        if self.kind == "hold drift":
            return f"{self.system}: hold drift " + ", ".join(self.drift)
        firing = f"×{self.rule['times']}" if "probability" not in self.rule else f"p={self.rule['probability']}"
        detail = [self.rule["kind"]] if self.kind == "ptw write-back" else []
        detail += [str(self.rule["status"])] if "status" in self.rule else []
        return f"{self.system}: {' '.join([self.kind, *detail])} {firing}"


@dataclass(frozen=True)
class FaultSchedule:
    seed: int
    index: int
    faults: tuple[Fault, ...]

    def plans(self) -> dict[str, dict[str, Any]]:
        """The mocks' fault plan per system."""
        plans: dict[str, dict[str, Any]] = {}
        for fault in self.faults:
            plan = plans.setdefault(fault.system, {"latency_ms": 0, "rules": []})
            plan["latency_ms"] = max(plan["latency_ms"], fault.latency_ms)
            if fault.rule:
                plan["rules"].append(fault.rule)
        return plans

    def describe(self) -> str:
        return "; ".join(f.describe() for f in self.faults)

    @property
    def drift(self) -> tuple[str, ...]:
        """Every hold change the schedule makes at the PTW between syncs."""
        return tuple(action for fault in self.faults for action in fault.drift)


def _firing(rng: random.Random) -> dict[str, Any]:
    """How often a rule fires: a count (RETRY_ATTEMPTS or more outlasts a request's retries), or at random."""
    if rng.random() < 0.7:
        return {"times": rng.randint(1, 4)}
    return {"probability": rng.choice((0.2, 0.5)), "seed": rng.randrange(2**31), "times": rng.randint(1, 6)}


def _rule(kind: str, rng: random.Random) -> dict[str, Any]:
    if kind == "5xx":
        return {"kind": "status", "status": rng.choice((500, 502, 503, 504))}
    if kind == "429":
        return {"kind": "rate_limit", "retry_after_s": 1}
    if kind == "read timeout":
        return {"kind": "timeout", "delay_s": READ_TIMEOUT_S + 0.3}
    if kind == "ptw write-back":
        # Refused before the PTW sees it, or applied by the PTW with the answer lost on the way back.
        failure = rng.choice(
            (
                {"kind": "status", "status": 503},
                {"kind": "reset"},
                {"kind": "truncate"},
                {"kind": "timeout", "delay_s": READ_TIMEOUT_S + 0.3},
            )
        )
        return {**failure, **HOLD_WRITES}
    if kind == "shrink":
        return {"kind": kind, "keep": rng.choice((0.2, 0.5, 0.8)), "seed": rng.randrange(2**31)}
    if kind == "commit_then_drop":
        return {"kind": kind, **ERP_POSTS}
    if kind == "commit_then_status":
        return {"kind": kind, "status": rng.choice((500, 503)), **ERP_POSTS}
    return {"kind": kind}  # reset, soap_fault, malformed, truncate, empty


def draw_schedule(seed: int, index: int) -> FaultSchedule:
    """Run `index`'s schedule: the same for the same seed, whatever runs came before."""
    rng = random.Random(f"chaos:{seed}:{index}")
    faults = []
    for _ in range(rng.randint(1, 4)):
        kind = rng.choice(FAULT_KINDS)
        system = ONLY_ON.get(kind) or rng.choice(SYSTEMS)
        if kind == "latency":
            faults.append(Fault(kind, system, latency_ms=rng.randint(10, 80)))
        elif kind == "hold drift":
            faults.append(Fault(kind, system, drift=tuple(rng.choice(DRIFT_ACTIONS) for _ in range(rng.randint(1, 4)))))
        else:
            faults.append(Fault(kind, system, {**_rule(kind, rng), **_firing(rng)}))
    return FaultSchedule(seed, index, tuple(faults))


@dataclass
class ChaosOutcome:
    schedule: FaultSchedule
    faulted_run_succeeded: bool
    faults_fired: int  # requests the mocks refused, spoilt or delayed during the faulted sync
    recovery_runs: int
    recovered: bool
    settled: bool  # every delayed request had landed before recovery
    verdicts: list[Verdict]
    seconds: float
    holds_drifted: tuple[str, ...] = ()  # the hold changes made at the PTW between syncs ("lift PTW-...")

    @property
    def ok(self) -> bool:
        return self.recovered and all(v.held for v in self.verdicts)


def _settings(plant: MockPlant, database_url: str) -> HubSettings:
    return HubSettings(
        database_url=database_url,
        eam_wsdl=str(EAM_WSDL),
        connect_timeout_s=READ_TIMEOUT_S,
        read_timeout_s=READ_TIMEOUT_S,
        retry_attempts=RETRY_ATTEMPTS,
        retry_initial_s=0.02,
        retry_max_s=0.2,
        ptw_page_size=20,
        erp_batch_size=10,
        **{name: SystemEndpoint(url=plant.urls[name]) for name in SYSTEMS},
    )


def drift_holds(plant: MockPlant, expected: Expected, schedule: FaultSchedule) -> tuple[str, ...]:
    """Change holds at the PTW as someone there might, through its own hold API; what was changed.

    Targets are drawn from the seed among the hub's BLOCK holds the PTW shows now (lift, alter,
    allow) and the permits the gate allows that carry none (stray); each permit is changed once.
    An action without a target left is skipped.
    """
    rng = random.Random(f"chaos-drift:{schedule.seed}:{schedule.index}")
    with httpx.Client(timeout=30) as http:
        state = http.get(f"{plant.admin_urls['ptw']}/_admin/state").raise_for_status().json()["holds"]
        ours = {
            ticket: hold
            for ticket, holds in state.items()
            for hold in holds
            if hold["source"] == HOLD_SOURCE and hold["action"] == "BLOCK"
        }
        blocked, allowed = sorted(ours), sorted(expected.allowed - state.keys())
        changes = []
        for action in schedule.drift:
            candidates = allowed if action == "stray" else blocked
            if not candidates:
                continue
            ticket = candidates.pop(rng.randrange(len(candidates)))
            url = f"{plant.urls['ptw']}/api/v1/permits/{urllib.parse.quote(ticket, safe='')}/holds/{HOLD_SOURCE}"
            if action == "lift":
                http.delete(url).raise_for_status()
            elif action == "allow":
                hold = ours[ticket]
                body = {"action": "ALLOW", "ruleVersion": hold["ruleVersion"], "reasons": hold["reasons"]}
                http.put(url, json=body).raise_for_status()
            else:  # alter, stray
                body = {"action": "BLOCK", "ruleVersion": "edited", "reasons": EDITED_REASONS}
                http.put(url, json=body).raise_for_status()
            changes.append(f"{action} {ticket}")
    return tuple(changes)


def run_schedule(
    plant: MockPlant, instance: DagsterInstance, expected: Expected, schedule: FaultSchedule, workdir: Path
) -> ChaosOutcome:
    started = time.monotonic()
    settings = _settings(plant, f"sqlite:///{workdir / f'run-{schedule.index}.db'}")
    close_all_breakers()  # each run starts as a fresh process would
    plant.reset()
    plant.set_faults(schedule.plans())
    faulted = run_full_sync(settings, instance, log_level="CRITICAL")
    plant.set_faults({})
    fired = plant.faults_fired()
    settled = plant.settle(within_s=READ_TIMEOUT_S + 2)
    close_all_breakers()  # recovery comes after the outage and its circuits' cool-down
    # Hold drift comes between syncs, once one has written the holds it is about.
    drift_pending, drifted = bool(schedule.drift), ()
    if drift_pending and faulted.success:
        drift_pending, drifted = False, drift_holds(plant, expected, schedule)
    recovery_runs, recovered, limit = 0, False, MAX_RECOVERY_RUNS
    while not recovered and recovery_runs < limit:
        recovery_runs += 1
        recovered = run_full_sync(settings, instance, log_level="CRITICAL").success
        if recovered and drift_pending:
            drift_pending, drifted = False, drift_holds(plant, expected, schedule)
            recovered, limit = False, limit + 1  # the drift needs a sync of its own to be put right
    verdicts = check(expected, plant.observe(settings.database_url))
    return ChaosOutcome(
        schedule=schedule,
        faulted_run_succeeded=faulted.success,
        faults_fired=fired,
        recovery_runs=recovery_runs,
        recovered=recovered,
        settled=settled,
        verdicts=verdicts,
        seconds=time.monotonic() - started,
        holds_drifted=drifted,
    )


def run_chaos(
    runs: int, seed: int, fixtures: Path, progress: Callable[[ChaosOutcome], None] = lambda outcome: None
) -> list[ChaosOutcome]:
    """All `runs` schedules of `seed`, each against a fresh store and reset mocks."""
    expected = expected_outcome(fixtures, datetime.now(timezone.utc))
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="hub-chaos-") as tmp, MockPlant(fixtures) as plant:
        for first in range(0, runs, RUNS_PER_INSTANCE):
            with DagsterInstance.ephemeral() as instance:
                for index in range(first, min(first + RUNS_PER_INSTANCE, runs)):
                    outcome = run_schedule(plant, instance, expected, draw_schedule(seed, index), Path(tmp))
                    outcomes.append(outcome)
                    progress(outcome)
                    for leftover in Path(tmp).glob(f"run-{index}.db*"):
                        leftover.unlink()
    return outcomes
