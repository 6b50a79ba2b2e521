"""`hub crashtest`: SIGKILL a real `hub sync` process at chosen points, recover, check the invariants.

Each kill point gets a fresh store and freshly reset mocks. The hub runs as its own process
(the `hub` console script), so a kill takes everything with it: open transactions, HTTP
connections, Dagster's run bookkeeping. A kill point is either a named failpoint with a hit
count (the process kills itself there) or a blind delay after start (the harness kills it).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from hub.demo import EAM_WSDL
from hub.failpoints import ENV_VAR, NAMES
from hub.harness.invariants import Expected, Verdict, check, expected_outcome
from hub.harness.plant import SYSTEMS, MockPlant

# Small pages and batches, so kills land between pages and batches, not only around one call.
TUNING = {"HUB_PTW_PAGE_SIZE": "10", "HUB_ERP_BATCH_SIZE": "10"}
# How often each failpoint is hit in one sync of the fixture plant under TUNING, one run per
# site: 30 + 19 permits in 3 + 2 pages, one quarantine hand-off per page plus EAM and MES per
# site, 14 blocks to write, 27 + 17 entries in 3 + 2 batches.
MAX_HITS = {
    "permits.before_cursor": 5,
    "quarantine.before_write": 9,
    "eam.before_lookups": 2,
    "gate.before_writeback": 2,
    "gate.after_put_before_record": 14,
    "costs.after_enqueue": 2,
    "erp.before_post": 2,
    "erp.after_post_before_mark": 5,
    "erp.between_batches": 5,
}
assert set(MAX_HITS) == set(NAMES), "every failpoint needs its hit range here"
BLIND_SHARE = 0.25
BLIND_DELAY_S = (4.0, 10.0)  # after start: past the ~4 s of imports, within a ~8 s sync
MAX_RECOVERY_RUNS = 2
SYNC_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class KillPoint:
    """Die at the `hit`-th pass of `failpoint`, or, with `delay_s`, that long after start."""

    failpoint: str | None = None
    hit: int = 1
    delay_s: float | None = None

    def __post_init__(self) -> None:
        if (self.failpoint is None) == (self.delay_s is None):
            raise ValueError("a kill point is a failpoint or a delay, not both or neither")

    @property
    def label(self) -> str:
        return f"{self.failpoint}:{self.hit}" if self.failpoint else f"blind SIGKILL at {self.delay_s:.1f} s"


@dataclass
class KillOutcome:
    point: KillPoint
    died: bool  # by SIGKILL, before the sync finished
    exit_code: int
    recovery_runs: int
    recovered: bool  # a recovery sync succeeded
    broken_by_kill: list[str] = field(default_factory=list)  # invariants the kill left violated
    verdicts: list[Verdict] = field(default_factory=list)  # after recovery
    seconds: float = 0.0
    log_tail: str = ""  # the last sync's output, kept when something went wrong

    @property
    def invariants_held(self) -> bool:
        return all(v.held for v in self.verdicts)

    @property
    def ok(self) -> bool:
        return self.recovered and self.invariants_held


def draw_kill_points(count: int, seed: int) -> list[KillPoint]:
    """`count` kill points, the same for the same seed: mostly failpoints, some blind kills."""
    rng = random.Random(f"crashtest:{seed}")
    points = []
    for _ in range(count):
        if rng.random() < BLIND_SHARE:
            points.append(KillPoint(delay_s=round(rng.uniform(*BLIND_DELAY_S), 1)))
        else:
            name = rng.choice(NAMES)
            points.append(KillPoint(failpoint=name, hit=rng.randint(1, MAX_HITS[name])))
    return points


def _sync_env(plant: MockPlant, workdir: Path) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("HUB_") and k != "DAGSTER_HOME"}
    return {
        **inherited,
        **TUNING,
        **{f"HUB_{name.upper()}__URL": plant.urls[name] for name in SYSTEMS},
        "HUB_EAM_WSDL": str(EAM_WSDL),
        "HUB_DATABASE_URL": f"sqlite:///{workdir / 'hub.db'}",
        "DAGSTER_HOME": str(workdir / "dagster_home"),
    }


def _run_sync(env: dict[str, str], workdir: Path, kill_after_s: float | None = None) -> tuple[int, str]:
    """Run `hub sync` to its end, or SIGKILL it after `kill_after_s`; (exit code, output tail)."""
    hub = Path(sys.executable).with_name("hub")
    log = workdir / "sync.log"
    with log.open("ab") as out:
        process = subprocess.Popen([str(hub), "sync"], env=env, cwd=workdir, stdout=out, stderr=subprocess.STDOUT)
        try:
            process.wait(timeout=kill_after_s if kill_after_s is not None else SYNC_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()  # SIGKILL: a blind kill, or a hung sync
            process.wait()
    return process.returncode, log.read_text(encoding="utf-8", errors="replace")[-2000:]


def run_kill_point(plant: MockPlant, expected: Expected, point: KillPoint, root: Path) -> KillOutcome:
    started = time.monotonic()
    plant.reset()
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        workdir = Path(tmp)
        env = _sync_env(plant, workdir)
        armed = {**env, ENV_VAR: f"{point.failpoint}:{point.hit}"} if point.failpoint else env
        exit_code, tail = _run_sync(armed, workdir, point.delay_s)
        database_url = env["HUB_DATABASE_URL"]
        broken = [v.invariant for v in check(expected, plant.observe(database_url)) if not v.held]
        recovery_runs, recovered = 0, False
        while not recovered and recovery_runs < MAX_RECOVERY_RUNS:
            recovery_runs += 1
            code, tail = _run_sync(env, workdir)
            recovered = code == 0
        verdicts = check(expected, plant.observe(database_url))
    outcome = KillOutcome(
        point=point,
        died=exit_code == -signal.SIGKILL,
        exit_code=exit_code,
        recovery_runs=recovery_runs,
        recovered=recovered,
        broken_by_kill=broken,
        verdicts=verdicts,
        seconds=time.monotonic() - started,
    )
    if not outcome.ok:
        outcome.log_tail = tail
    return outcome


def run_crashtest(
    points: Sequence[KillPoint],
    fixtures: Path,
    keep_going: bool = False,
    progress: Callable[[KillOutcome], None] = lambda outcome: None,
) -> list[KillOutcome]:
    """Run the kill points in order; stop at the first violation unless `keep_going`."""
    outcomes: list[KillOutcome] = []
    expected = expected_outcome(fixtures, datetime.now(timezone.utc))
    with tempfile.TemporaryDirectory(prefix="hub-crashtest-") as tmp:
        root = Path(tmp)
        state_dir = root / "mock_state"
        state_dir.mkdir()
        with MockPlant(fixtures, state_dir=state_dir) as plant:
            for point in points:
                outcome = run_kill_point(plant, expected, point, root)
                outcomes.append(outcome)
                progress(outcome)
                if not outcome.ok and not keep_going:
                    break
    return outcomes
