"""Sync through seeded random plant faults, recover, and check every invariant after each run."""

from datetime import datetime, timezone
from pathlib import Path

import pytest
from dagster import DagsterInstance

from hub.harness.chaos import FAULT_KINDS, READ_TIMEOUT_S, Fault, FaultSchedule, draw_schedule, run_chaos, run_schedule
from hub.harness.invariants import INVARIANTS, NO_STRAY_BLOCK, expected_outcome
from hub.harness.plant import MockPlant

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


@pytest.mark.parametrize("lost_answer", [{"kind": "truncate"}, {"kind": "timeout", "delay_s": READ_TIMEOUT_S + 0.3}])
def test_a_block_whose_answer_was_lost_is_lifted_once_the_permit_is_safe(lost_answer, tmp_path):
    """EAM down: every gated permit is blocked as EAM_UNAVAILABLE. The PTW applies the block on
    PTW-HZ-2026-0005 but its answer never arrives. Once the EAM is back the permit is safe, so
    its block must go."""
    lost_put = {**lost_answer, "times": 99, "method": "PUT", "path_prefix": "/api/v1/permits/PTW-HZ-2026-0005/holds"}
    schedule = FaultSchedule(
        seed=0,
        index=0,
        faults=(
            Fault("soap_fault", "eam", {"kind": "soap_fault", "times": 99}),
            Fault("ptw write-back", "ptw", lost_put),
        ),
    )
    expected = expected_outcome(FIXTURES, datetime.now(timezone.utc))
    with MockPlant(FIXTURES) as plant, DagsterInstance.ephemeral() as instance:
        outcome = run_schedule(plant, instance, expected, schedule, tmp_path)
    assert outcome.faults_fired > 0 and not outcome.faulted_run_succeeded
    assert outcome.recovered
    verdicts = {v.invariant: v for v in outcome.verdicts}
    assert verdicts[NO_STRAY_BLOCK].held, verdicts[NO_STRAY_BLOCK].problems
