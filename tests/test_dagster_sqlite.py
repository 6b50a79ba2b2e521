"""Dagster's SQLite storages with engines kept open read and write Dagster's own files."""

import os
import subprocess
import sys
import threading
from pathlib import Path

from dagster import AssetKey, AssetMaterialization, DagsterInstance, asset, materialize

from hub import dagster_sqlite

PLAIN = """
import sys
from dagster import AssetKey, DagsterInstance
with DagsterInstance.get() as instance:
    runs = len(instance.get_run_records())
    latest = instance.get_latest_materialization_event(AssetKey("counted")).asset_materialization.metadata["n"].value
    ticks = len(instance.all_logs(sys.argv[1]))
print(runs, latest, ticks)
"""


@asset
def counted():
    return 1


def _home(path: Path) -> Path:
    path.mkdir()
    (path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    os.environ["DAGSTER_HOME"] = str(path)
    return path


def test_hub_processes_keep_the_engines():
    """What runs, steps and code servers import, and what the CLI opens its instance with."""
    for module in ("hub.definitions", "hub.instance"):
        code = f"import {module}; from hub import dagster_sqlite; print(dagster_sqlite.installed())"
        seen = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert seen.stdout.split() == ["True"], (module, seen.stderr)


def test_runs_and_events_written_with_engines_kept_are_read_by_plain_dagster(tmp_path):
    home = _home(tmp_path / "home")
    dagster_sqlite.install()
    with DagsterInstance.get() as instance:
        for _ in range(dagster_sqlite.KEPT + 2):  # more run shards than engines kept: the oldest are closed
            assert materialize([counted], instance=instance).success
        instance.report_runless_asset_event(AssetMaterialization("counted", metadata={"n": 7}))
        first = instance.get_run_records()[-1].dagster_run.run_id
        assert len(instance.all_logs(first)) > 5  # its engine was closed and is made again
        kept = instance.event_log_storage.__dict__["_hub_engines"]
        assert 0 < len(kept._engines) <= dagster_sqlite.KEPT
    # A process that never imports the hub reads the same files (Dagster's own storage, unchanged).
    plain = subprocess.run(
        [sys.executable, "-c", PLAIN, first], env={**os.environ, "DAGSTER_HOME": str(home)}, capture_output=True, text=True, timeout=120
    )
    assert plain.returncode == 0, plain.stderr
    runs, latest, events = plain.stdout.split()
    assert (int(runs), int(latest)) == (dagster_sqlite.KEPT + 2, 7) and int(events) > 5


def test_events_from_several_threads_all_land(tmp_path):
    """The service reports from its own threads while runs write: every event is stored."""
    _home(tmp_path / "home")
    dagster_sqlite.install()
    with DagsterInstance.get() as instance:

        def report(n: int) -> None:
            for i in range(20):
                instance.report_runless_asset_event(AssetMaterialization("counted", metadata={"thread": n, "i": i}))

        threads = [threading.Thread(target=report, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        records = instance.fetch_materializations(AssetKey("counted"), limit=1000).records
    stored = sorted((r.asset_materialization.metadata["thread"].value, r.asset_materialization.metadata["i"].value) for r in records)
    assert stored == [(n, i) for n in range(4) for i in range(20)]


def test_wiping_the_event_log_closes_the_run_shards_first(tmp_path):
    _home(tmp_path / "home")
    dagster_sqlite.install()
    with DagsterInstance.get() as instance:
        run_id = materialize([counted], instance=instance).run_id
        instance.event_log_storage.wipe()
        assert instance.all_logs(run_id) == []
        assert materialize([counted], instance=instance).success


def test_a_forked_child_makes_its_own_connections(tmp_path):
    _home(tmp_path / "home")
    dagster_sqlite.install()
    with DagsterInstance.get() as instance:
        assert materialize([counted], instance=instance).success
        pid = os.fork()
        if pid == 0:  # the child writes through engines of its own, never the parent's connections
            code = 0
            try:
                instance.report_runless_asset_event(AssetMaterialization("counted", metadata={"n": 1}))
            except BaseException:
                code = 1
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        instance.report_runless_asset_event(AssetMaterialization("counted", metadata={"n": 2}))
        values = [r.asset_materialization.metadata["n"].value for r in instance.fetch_materializations(AssetKey("counted"), limit=10).records if "n" in r.asset_materialization.metadata]
    assert sorted(values) == [1, 2]
