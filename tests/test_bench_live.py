"""`hub bench --live` end to end at the small scale, briefly: the service is loaded, a stream of
plant events runs with the daemon and sensors, and the report says what happened.

Figures are not judged here (the benchmark at large does that); what is asserted is that every
phase ran, every check was answered, and no permit the pure logic blocks was left allowed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_hub_bench_live_runs_every_phase_and_leaves_no_false_allow(tmp_path):
    hub = Path(sys.executable).with_name("hub")
    json_path = tmp_path / "live.json"
    done = subprocess.run(
        [
            str(hub), "bench", "--live", "--scale", "small", "--rate", "20", "--load-s", "3", "--stream-s", "20",
            "--workdir", str(tmp_path), "--json", str(json_path),
        ],
        capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for label in ("warm-up before the load", "gate checks", "event to hold", "too late", "false allows"):
        assert label in done.stdout
    report = json.loads(json_path.read_text(encoding="utf-8"))
    service, stream = report["service"], report["stream"]
    assert service["requests"] == service["requests_due"] == 60
    assert service["errors"] == 0
    # Over the time the answers took: a service that keeps up answers at about the rate sent (20/s),
    # not the 60 answers spread over the load and its grace (4.6/s).
    assert service["answered_per_s"] >= 10, service
    assert service["warm_up"]["status"] == "fresh", service["warm_up"]  # the load started on fresh data
    assert service["fresh"]["count"] + service["eam_asked"]["count"] == 60
    # One check in UNSEEN_EVERY is a permit submitted on equipment the hub never pulled: it asks the EAM.
    assert service["eam_asked"]["count"] >= 1, service["eam_asked"]
    assert stream["permits_created"] > 0 and sum(stream["events"].values()) >= 10
    assert stream["permits_checked_for_false_allows"] > 0
    assert stream["false_allows"] == 0, stream["false_allow_permits"]
