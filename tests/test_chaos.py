"""Sync through seeded random plant faults, recover, and check every invariant after each run."""

from pathlib import Path

import pytest

from hub.harness.chaos import FAULT_KINDS, draw_schedule, run_chaos
from hub.harness.invariants import INVARIANTS

FIXTURES = Path(__file__).parents[1] / "fixtures"
SEED = 204
RUNS = 5


@pytest.fixture(scope="module")
def outcomes():
    return run_chaos(RUNS, SEED, FIXTURES)


def test_every_invariant_held_after_recovery(outcomes):
    assert len(outcomes) == RUNS
    for outcome in outcomes:
        assert outcome.recovered, outcome.schedule.describe()
        assert [v.invariant for v in outcome.verdicts] == list(INVARIANTS)
        assert all(v.held for v in outcome.verdicts), (outcome.schedule.describe(), outcome.verdicts)


def test_the_schedules_drew_faults_and_the_mocks_injected_them(outcomes):
    kinds = {fault.kind for o in outcomes for fault in o.schedule.faults}
    assert all(1 <= len(o.schedule.faults) <= 4 for o in outcomes)
    assert len(kinds) >= 3 and kinds <= set(FAULT_KINDS)
    assert sum(o.faults_fired for o in outcomes) > 0
    # At least one schedule outlasted the retries, so recovery had real work to do.
    assert any(not o.faulted_run_succeeded for o in outcomes)


def test_the_same_seed_draws_the_same_schedules(outcomes):
    assert [o.schedule for o in outcomes] == [draw_schedule(SEED, i) for i in range(RUNS)]
    assert [draw_schedule(SEED, i) for i in range(100)] == [draw_schedule(SEED, i) for i in range(100)]
    assert [draw_schedule(SEED + 1, i) for i in range(100)] != [draw_schedule(SEED, i) for i in range(100)]


def test_over_many_seeds_every_fault_kind_is_drawn_on_the_systems_it_fits():
    faults = [f for i in range(300) for f in draw_schedule(SEED, i).faults]
    assert {f.kind for f in faults} == set(FAULT_KINDS)
    assert {f.system for f in faults if f.kind == "soap_fault"} == {"eam"}
    assert {f.system for f in faults if f.kind.startswith("commit_then")} == {"erp"}
    assert {f.rule["method"] for f in faults if f.kind == "ptw write-back"} == {"PUT"}
