"""`hub demo --live` end to end: the gate-check service and a real Dagster daemon with its
sensors, against the mock plant. The one test where the daemon, not a test, evaluates the
sensor, whose tick re-gates the change and writes the hold that suspends the work."""

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
    # The daemon's sensor tick re-gated it, and its decision reached Dagster as a materialization.
    from dagster import AssetKey, DagsterInstance

    with DagsterInstance.from_config(str(tmp_path / "dagster_home")) as instance:
        events = instance.fetch_materializations(AssetKey("permit_gate_decisions"), limit=100).records
    by_sensor = [e.asset_materialization.metadata for e in events
                 if e.asset_materialization.metadata.get("re_gated_by") is not None]
    assert any(live["ticket"] in m["blocked_permit_ids"].value.split(", ") for m in by_sensor), by_sensor
