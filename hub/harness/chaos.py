"""`hub chaos`: fault the plant systems at random, sync through it, recover, check the invariants.

Each run draws a fault schedule from the seed (1 to 4 faults: latency, 5xx, 429, dropped
connections, read timeouts, SOAP faults, garbled or cut replies, failed PTW write-backs, ERP
commits whose answer is lost), runs the full sync in this process against a fresh store and
freshly reset mocks, clears the faults, lets any delayed request land, and recovers with up to
`MAX_RECOVERY_RUNS` clean syncs. Timeouts and retry waits are short so a run takes seconds.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

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
)
ONLY_ON = {"soap_fault": "eam", "ptw write-back": "ptw", "commit_then_drop": "erp", "commit_then_status": "erp"}
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
    rule: dict[str, Any] = field(default_factory=dict)  # a mock fault rule; empty for latency
    latency_ms: int = 0

    def describe(self) -> str:
        if self.kind == "latency":
            return f"{self.system}: latency {self.latency_ms} ms"
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
    if kind == "commit_then_drop":
        return {"kind": kind, **ERP_POSTS}
    if kind == "commit_then_status":
        return {"kind": kind, "status": rng.choice((500, 503)), **ERP_POSTS}
    return {"kind": kind}  # reset, soap_fault, malformed, truncate


def draw_schedule(seed: int, index: int) -> FaultSchedule:
    """Run `index`'s schedule: the same for the same seed, whatever runs came before."""
    rng = random.Random(f"chaos:{seed}:{index}")
    faults = []
    for _ in range(rng.randint(1, 4)):
        kind = rng.choice(FAULT_KINDS)
        system = ONLY_ON.get(kind) or rng.choice(SYSTEMS)
        if kind == "latency":
            faults.append(Fault(kind, system, latency_ms=rng.randint(10, 80)))
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
    recovery_runs, recovered = 0, False
    while not recovered and recovery_runs < MAX_RECOVERY_RUNS:
        recovery_runs += 1
        recovered = run_full_sync(settings, instance, log_level="CRITICAL").success
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
