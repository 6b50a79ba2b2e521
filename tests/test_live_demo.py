"""`hub demo --live` end to end: the gate-check service and a real Dagster daemon with its
sensors, against the mock plant. The one test where the daemon, not a test, evaluates the
sensor and launches the re-gate run whose hold suspends the work."""

import json
import os
import subprocess
import sys
from pathlib import Path


def test_a_work_order_opened_under_running_work_suspends_it_through_the_daemon(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "DAGSTER_"))}
    env["DAGSTER_HOME"] = str(tmp_path / "dagster_home")
    done = subprocess.run(
        [str(Path(sys.executable).with_name("hub")), "demo", "--live", "--json", "--workdir", str(tmp_path / "hub")],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    live = json.loads(done.stdout)["live"]
    steps = [what for what, _ in live["steps"]]
    # Approved and started through the PTW's hook, which asked the service.
    assert any(s.startswith("approve: the gate-check service allowed it") for s in steps), steps
    assert live["suspended"] and live["problem"] is None
    assert "OPEN_WORK_ORDER" in live["reasons"]
    assert 0 < live["latency_s"] < 90
    # The re-gate run was a Dagster run of the regate job, launched by the daemon.
    from dagster import DagsterInstance, RunsFilter

    with DagsterInstance.from_config(str(tmp_path / "dagster_home")) as instance:
        runs = instance.get_run_records(RunsFilter(job_name="regate"))
    assert runs and any(r.dagster_run.status.value == "SUCCESS" for r in runs)
