"""Where Dagster keeps runs and events when no one has said otherwise."""

import os
from pathlib import Path

from dagster import DagsterInstance
from dagster._core.instance.ref import InstanceRef

from hub import dagster_sqlite

dagster_sqlite.install()  # the CLI's instance keeps its SQLite engines (hub.dagster_sqlite)


#: A new Dagster home's config: telemetry off; runs the sensors ask for launched at once, not
#: queued for the next dequeue (a re-gate run is awaited by people at height, and the sensor
#: keeps to one run per site in flight itself); a failed run retried by the daemon where its
#: job asks for it (a re-gate run must not lose its change).
DAGSTER_YAML = """telemetry:
  enabled: false
run_coordinator:
  module: dagster.core.run_coordinator
  class: DefaultRunCoordinator
run_retries:
  enabled: true
  max_retries: 0
"""


def ensure_dagster_home(default: Path) -> Path:
    """DAGSTER_HOME defaults to a local folder with SQLite storage and telemetry off."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(default.resolve())))
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML, encoding="utf-8")
    return home


def open_instance(dagster_yaml: Path | None = None) -> DagsterInstance:
    """The instance in DAGSTER_HOME, or one configured by `dagster_yaml` (e.g. `deploy/dagster.yaml`).

    With a config file, runs still keep local artifacts in DAGSTER_HOME; the file only says
    where run, event-log and schedule storage live (PostgreSQL for concurrent site runs).
    """
    home = ensure_dagster_home(Path(".hub/dagster_home"))
    if dagster_yaml is None:
        return DagsterInstance.get()
    dagster_yaml = dagster_yaml.resolve()
    return DagsterInstance.from_ref(
        InstanceRef.from_dir(str(home), config_dir=str(dagster_yaml.parent), config_filename=dagster_yaml.name)
    )
