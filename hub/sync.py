"""The full sync, one Dagster run per site: what the CLI, schedulers' scripts, the demo and harnesses call.

- `in_process`: each site's run in this process, one after another.
- `multiprocess`: one OS process per site, so the sites run side by side, each run's steps
  in processes of their own (Dagster's multiprocess executor).
- `celery`: as `multiprocess`, but the steps run on two Celery workers started for this sync.

A run started from a thread would get no interrupt handling (Dagster only installs it on a
main thread) and would share this process's environment, which is how run and step
processes learn the settings. So side-by-side sites are separate processes, each started
with these settings as `HUB_*` variables and a reference to this Dagster instance.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from celery.exceptions import DuplicateTaskNameWarning
from dagster import DagsterInstance, RunsFilter, build_reconstructable_job, execute_job
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.dagster_run import DagsterRunStatus
from dagster._core.storage.tags import PARTITION_NAME_TAG
from dagster._serdes import deserialize_value, serialize_value

from hub.celery_app import RESULT_BACKEND
from hub.celery_workers import celery_workers
from hub.definitions import build_definitions
from hub.settings import HubSettings, settings_environment
from hub.store.migrate import upgrade

EXECUTORS = ("in_process", "multiprocess", "celery")
CELERY_WORKERS = 2
# Tags the runs of one `run_full_sync` call, to find them again in the instance.
SYNC_TAG = "hub/sync"
INSTANCE_REF_ENV = "HUB_DAGSTER_INSTANCE_REF"


@dataclass(frozen=True)
class SiteRun:
    site: str
    run_id: str | None  # None: the site's run was never created (its process failed first)
    success: bool
    duration_s: float | None


@dataclass(frozen=True)
class SyncOutcome:
    runs: list[SiteRun]

    @property
    def success(self) -> bool:
        return bool(self.runs) and all(run.success for run in self.runs)

    @property
    def run_ids(self) -> list[str]:
        return [run.run_id for run in self.runs if run.run_id]


def run_full_sync(
    settings: HubSettings,
    instance: DagsterInstance,
    executor: str = "in_process",
    sites: Sequence[str] | None = None,
    log_level: str = "WARNING",
) -> SyncOutcome:
    """Migrate the store if needed, then run the full-sync job once for each site (default: all)."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, not {executor!r}")
    chosen = _chosen_sites(settings, sites)
    upgrade(settings.database_url)
    if executor == "in_process":
        return _in_process(settings, instance, chosen, log_level)
    if instance.is_ephemeral:
        raise ValueError(f"the {executor} executor needs a persistent Dagster instance (DAGSTER_HOME or --dagster-yaml)")
    tag = uuid.uuid4().hex
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HUB_")},
        **settings_environment(settings),
        INSTANCE_REF_ENV: serialize_value(instance.get_ref()),
    }
    if executor == "celery":
        with celery_workers(env, settings.celery_broker, count=CELERY_WORKERS) as queue:
            _site_processes(chosen, [executor, tag, log_level, queue], env, settings.parallel_sites)
    else:
        _site_processes(chosen, [executor, tag, log_level], env, settings.parallel_sites)
    return _outcome(instance, tag, chosen)


def _chosen_sites(settings: HubSettings, sites: Sequence[str] | None) -> list[str]:
    chosen = [site.strip().upper() for site in sites] if sites else list(settings.sites)
    unknown = sorted(set(chosen) - set(settings.sites))
    if unknown or not chosen:
        raise ValueError(f"unknown sites {', '.join(unknown)}: the configured sites (HUB_SITES) are {', '.join(settings.sites)}")
    return chosen


def _logging(log_level: str) -> dict:
    return {"loggers": {"console": {"config": {"log_level": log_level}}}}


def _in_process(settings: HubSettings, instance: DagsterInstance, sites: list[str], log_level: str) -> SyncOutcome:
    job = build_definitions(settings).resolve_job_def("full_sync")
    runs = []
    for site in sites:
        result = job.execute_in_process(
            instance=instance, partition_key=site, raise_on_error=False, run_config=_logging(log_level)
        )
        runs.append(_site_run(site, instance.get_run_record_by_id(result.run_id)))
    return SyncOutcome(runs)


def _site_processes(sites: list[str], args: list[str], env: dict[str, str], at_once: int) -> None:
    """One process per site, `at_once` side by side (each brings its own step processes, so a
    group of many sites would otherwise swamp the machine); on Ctrl-C or an error here, each
    running one is interrupted and awaited."""
    waiting, running = list(sites), []
    try:
        while waiting or running:
            while waiting and len(running) < at_once:
                running.append(subprocess.Popen([sys.executable, "-m", "hub.sync", waiting.pop(0), *args], env=env))
            time.sleep(0.2)  # not os.wait(): that would also reap the Celery workers' processes
            running = [process for process in running if process.poll() is None]
    finally:
        for process in running:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)  # Dagster marks the run canceled
        for process in running:
            process.wait()


def _outcome(instance: DagsterInstance, tag: str, sites: list[str]) -> SyncOutcome:
    records = {r.dagster_run.tags[PARTITION_NAME_TAG]: r for r in instance.get_run_records(RunsFilter(tags={SYNC_TAG: tag}))}
    return SyncOutcome([_site_run(site, records.get(site)) for site in sites])


def _site_run(site: str, record) -> SiteRun:
    if record is None:
        return SiteRun(site, None, False, None)
    run = record.dagster_run
    duration = record.end_time - record.start_time if record.start_time and record.end_time else None
    return SiteRun(site, run.run_id, run.status == DagsterRunStatus.SUCCESS, duration)


def _run_config(executor: str, log_level: str, queue: str | None) -> dict:
    if executor == "celery":
        execution = {
            # By variable name: the broker URL may hold a password, and run config is shown in the UI.
            "broker": {"env": "HUB_CELERY_BROKER"},
            "backend": RESULT_BACKEND,
            "config_source": {"task_default_queue": queue},
        }
    else:
        # Step processes fork from a server that has imported the definitions once, instead of
        # each spawning a fresh interpreter that imports Dagster again (seconds per step).
        execution = {"multiprocess": {"start_method": {"forkserver": {"preload_modules": ["hub.definitions"]}}}}
    return {**_logging(log_level), "execution": {"config": execution}}


def _run_site(site: str, executor: str, tag: str, log_level: str, queue: str | None = None) -> int:
    """In a site's own process: one run of its partition, with the job rebuilt from `HUB_*` variables."""
    # dagster-celery registers its step task again for every step it submits; the first one stands.
    warnings.filterwarnings("ignore", category=DuplicateTaskNameWarning)
    job = build_reconstructable_job("hub.definitions", "full_sync_job", reconstructable_args=(executor,))
    instance_ref = deserialize_value(os.environ[INSTANCE_REF_ENV], InstanceRef)
    with DagsterInstance.from_ref(instance_ref) as instance:
        result = execute_job(
            job, instance, run_config=_run_config(executor, log_level, queue), tags={PARTITION_NAME_TAG: site, SYNC_TAG: tag}
        )
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(_run_site(*sys.argv[1:]))
