"""One run of the full-sync job in this process: what schedulers, the demo and harnesses call."""

from dagster import DagsterInstance, ExecuteInProcessResult

from hub.definitions import build_definitions
from hub.settings import HubSettings
from hub.store.migrate import upgrade


def run_full_sync(
    settings: HubSettings, instance: DagsterInstance, log_level: str = "WARNING"
) -> ExecuteInProcessResult:
    """Migrate the store if needed, then materialize every asset once."""
    upgrade(settings.database_url)
    job = build_definitions(settings).resolve_job_def("full_sync")
    return job.execute_in_process(
        instance=instance,
        raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
    )
