"""SIGKILL a real `hub sync` process at its most dangerous points, recover, check the invariants.

The invariant checker is proven to catch what it claims to catch by a negative control:
a hand-made duplicate ERP posting, a lifted hold and a stray block must each be flagged.
"""

import os
import subprocess
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
from dagster import DagsterInstance

from hub.demo import EAM_WSDL
from hub.failpoints import NAMES, parse
from hub.harness.crash import MAX_HITS, KillPoint, draw_kill_points, run_crashtest
from hub.harness.invariants import (
    BLOCKED,
    INVARIANTS,
    LEDGER,
    NO_STRAY_BLOCK,
    OUTBOX,
    check,
    expected_outcome,
)
from hub.harness.plant import SYSTEMS, MockPlant
from hub.settings import HubSettings, SystemEndpoint
from hub.store.migrate import upgrade
from hub.store.repository import HubStore
from hub.sync import run_full_sync

REPO = Path(__file__).parents[1]
FIXTURES = REPO / "fixtures"

KILL_POINTS = [
    KillPoint("permits.before_cursor", hit=2),
    KillPoint("gate.after_put_before_record", hit=3),
    KillPoint("erp.after_post_before_mark", hit=2),
    KillPoint("erp.between_batches", hit=1),
]


@pytest.fixture(scope="module")
def outcomes():
    return {o.point: o for o in run_crashtest(KILL_POINTS, FIXTURES, keep_going=True)}


@pytest.mark.parametrize("point", KILL_POINTS, ids=lambda p: p.label)
def test_sync_dies_by_sigkill_and_recovery_restores_every_invariant(outcomes, point):
    outcome = outcomes[point]
    assert outcome.died, f"exit code {outcome.exit_code}, not SIGKILL:\n{outcome.log_tail}"
    assert outcome.recovered and outcome.recovery_runs == 1, outcome.log_tail
    assert [v.invariant for v in outcome.verdicts] == list(INVARIANTS)
    assert all(v.held for v in outcome.verdicts), [v for v in outcome.verdicts if not v.held]


def test_each_kill_left_the_plant_broken_until_recovery(outcomes):
    """The kills hit where their names say: the state they leave is the one recovery must repair."""
    broken = {point.failpoint: set(outcomes[point].broken_by_kill) for point in KILL_POINTS}
    # Killed while paging permits: nothing gated yet, so the unsafe permits are not blocked.
    assert BLOCKED in broken["permits.before_cursor"]
    # Killed after the third hold: eleven blocks still missing.
    assert BLOCKED in broken["gate.after_put_before_record"]
    # Killed after the ERP booked the second batch, before the outbox recorded it: they disagree.
    assert {OUTBOX, LEDGER} <= broken["erp.after_post_before_mark"]
    # Killed after the first batch was recorded: the rest of the ledger is missing.
    assert LEDGER in broken["erp.between_batches"]
    assert OUTBOX in broken["erp.between_batches"]


def test_failpoint_spec_is_checked():
    assert parse("erp.before_post:3, gate.before_writeback") == {"erp.before_post": 3, "gate.before_writeback": 1}
    assert parse("") == {}
    with pytest.raises(ValueError, match="unknown failpoint"):
        parse("erp.before_pots")
    with pytest.raises(ValueError, match="positive integer"):
        parse("erp.before_post:0")


def test_every_failpoint_is_placed_in_the_hub_and_drawn_by_the_crash_test():
    sources = "".join(p.read_text(encoding="utf-8") for p in (REPO / "hub").rglob("*.py"))
    for name in NAMES:
        assert f'failpoint("{name}")' in sources, name
    drawn = {p.failpoint for p in draw_kill_points(200, seed=3) if p.failpoint}
    assert drawn == set(NAMES)
    assert all(1 <= p.hit <= MAX_HITS[p.failpoint] for p in draw_kill_points(200, seed=3) if p.failpoint)
    assert draw_kill_points(20, seed=3) == draw_kill_points(20, seed=3)


def test_an_unset_failpoint_lets_the_process_live():
    env = {**os.environ, "HUB_FAILPOINTS": ""}
    code = "from hub.failpoints import failpoint\nfor name in ('erp.before_post',) * 3: failpoint(name)\nprint('alive')"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "alive", done.stderr


def test_an_armed_failpoint_kills_on_its_nth_hit():
    env = {**os.environ, "HUB_FAILPOINTS": "erp.before_post:2"}
    code = "from hub.failpoints import failpoint\nfor hit in (1, 2, 3):\n    print(hit, flush=True)\n    failpoint('erp.before_post')"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == -9
    assert done.stdout.split() == ["1", "2"]


@pytest.fixture(scope="module")
def synced_plant(tmp_path_factory):
    """The mock plant after one clean sync, and the store that sync wrote."""
    database_url = f"sqlite:///{tmp_path_factory.mktemp('control') / 'hub.db'}"
    with MockPlant(FIXTURES) as plant:
        plant.reset()
        settings = HubSettings(
            database_url=database_url,
            eam_wsdl=str(EAM_WSDL),
            **{name: SystemEndpoint(url=plant.urls[name]) for name in SYSTEMS},
        )
        with DagsterInstance.ephemeral() as instance:
            assert run_full_sync(settings, instance).success
        yield plant, database_url


def _verdicts(plant: MockPlant, database_url: str) -> dict:
    expected = expected_outcome(FIXTURES, datetime.now(timezone.utc))
    return {v.invariant: v for v in check(expected, plant.observe(database_url))}


def test_checker_holds_on_a_clean_sync_then_flags_tampering(synced_plant):
    plant, database_url = synced_plant
    assert all(v.held for v in _verdicts(plant, database_url).values())

    # A second booking of an entry, under a fresh message UUID, slips past the ERP's de-duplication.
    [document] = [d for d in plant.observe(database_url).documents if d.reference == "PTW-NJ-2026-0014/ppe"]
    duplicate = {
        "MessageHeader": {"UUID": str(uuid.uuid4())},
        "JournalEntry": {
            "CompanyCode": document.company_code,
            "DocumentReferenceID": document.reference,
            "PostingDate": "2026-11-20",
            "TransactionCurrency": document.currency,
            "GLAccount": document.gl_account,
            "CostCenter": document.cost_center,
            "Amount": str(document.amount),
        },
    }
    httpx.post(f"{plant.urls['erp']}/api/v1/journal-entries", json=duplicate, timeout=10).raise_for_status()
    # Someone lifts the hub's block on an unsafe permit, and blocks a permit the gate allows.
    holds = f"{plant.urls['ptw']}/api/v1/permits/{{}}/holds/integration-hub"
    httpx.delete(holds.format("PTW-NJ-2026-0001"), timeout=10).raise_for_status()
    stray = {"action": "BLOCK", "reasons": [{"code": "OPEN_WORK_ORDER", "deviceId": "NJ-P-101", "message": "x"}]}
    httpx.put(holds.format("PTW-NJ-2026-0007"), json=stray, timeout=10).raise_for_status()

    verdicts = _verdicts(plant, database_url)
    assert verdicts[LEDGER].problems == ("reference PTW-NJ-2026-0014/ppe booked twice",)
    assert verdicts[BLOCKED].problems == ("PTW-NJ-2026-0001 has no BLOCK hold from integration-hub",)
    assert verdicts[NO_STRAY_BLOCK].problems == ("PTW-NJ-2026-0007 is blocked though the gate allows it",)
    assert verdicts[OUTBOX].held


KILL_ON_THIRD_CREATE_TABLE = """
import os, signal, sys
from sqlalchemy import event
from sqlalchemy.engine import Engine
from hub.store.migrate import upgrade

created = []


@event.listens_for(Engine, "after_cursor_execute")
def die_midway(conn, cursor, statement, *args):
    if statement.lstrip().upper().startswith("CREATE TABLE"):
        created.append(statement)
        if len(created) == 3:
            os.kill(os.getpid(), signal.SIGKILL)


upgrade(sys.argv[1])
"""


def test_a_store_migration_killed_midway_can_be_completed(tmp_path):
    """A first `hub sync` killed while it creates the store must not leave a store no sync can open."""
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    killed = subprocess.run([sys.executable, "-c", KILL_ON_THIRD_CREATE_TABLE, url], capture_output=True, timeout=120)
    assert killed.returncode == -9, killed.stderr
    upgrade(url)
    with HubStore(url) as store:
        store.check_schema()
