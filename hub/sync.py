"""The full sync, one Dagster run per site: what the CLI, schedulers' scripts, the demo and harnesses call.

- `in_process`: each site's run in this process, one after another.
- `multiprocess`: one OS process per site, so the sites run side by side, each run's steps
  in processes of their own (Dagster's multiprocess executor).
- `celery`: as `multiprocess`, but the steps run on two Celery workers started for this sync.

A run started from a thread would get no interrupt handling (Dagster only installs it on a
main thread) and would share this process's environment, which is how run and step
processes learn the settings. So side-by-side sites are separate processes, each started
with these settings as `HUB_*` variables and a reference to this Dagster instance.

One sync of a site at a time: each site's run is made under the site's lock
(`hub.store.locks.site_lock`), taken by whichever process makes the run. A site whose lock is
still held after `lock_wait_s` is reported as not run, with the holder's pid.

Stopping: `stop_on_signals` (around the CLI commands and each site process) takes SIGTERM the
way Dagster takes Ctrl-C: the run in progress is interrupted and marked failed or canceled,
no further site is started, and `SyncInterrupted` is raised. A stop that has not finished
after the grace period (requests already in flight are let finish, up to their timeouts) ends
the process at once, as a kill would; a second signal does so straight away.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from celery.exceptions import DuplicateTaskNameWarning
from dagster import DagsterInstance, RunsFilter, build_reconstructable_job, execute_job
from dagster._core.instance.ref import InstanceRef
from dagster._core.events import RunFailureReason
from dagster._core.storage.dagster_run import DagsterRunStatus
from dagster._core.storage.tags import PARTITION_NAME_TAG, RUN_FAILURE_REASON_TAG
from dagster._serdes import deserialize_value, serialize_value

from hub.analytics.charts import allow_drawing_aside
from hub.celery_app import RESULT_BACKEND
from hub.celery_workers import STOP_TIMEOUT_S as CELERY_STOP_TIMEOUT_S
from hub.celery_workers import celery_workers
from hub.definitions import ANALYTICS_KEYS, build_definitions, sync_selection
from hub.settings import HubSettings, child_environment
from hub.logic.rules import load_gate_rules
from hub.steps.sites import site_coverage
from hub.store.locks import SiteBusy, site_lock
from hub.store.repository import HubStore
from hub.store.migrate import upgrade

EXECUTORS = ("in_process", "multiprocess", "celery")
CELERY_WORKERS = 2
# Tags the runs of one `run_full_sync` call, to find them again in the instance.
SYNC_TAG = "hub/sync"
INSTANCE_REF_ENV = "HUB_DAGSTER_INSTANCE_REF"
# How long a sync waits for a site that another process is syncing before reporting it busy.
LOCK_WAIT_S = 5.0
# After SIGTERM or Ctrl-C: how long a site's run may take to stop before its process ends at once.
STOP_GRACE_S = 20.0
# A second signal within this long of the first is the same stop (a terminal's Ctrl-C reaches a
# site process directly and again through `hub sync`), not a demand to end at once.
REPEAT_S = 1.0
# Exit code of a site process that did not get its site's lock.
BUSY_EXIT = 75

# Told (label, state) as each run starts and ends: the label is a site, or "(other sites)";
# the state is "started", "succeeded", "failed" or "not run".
Progress = Callable[[str, str], None]


def _quiet(label: str, state: str) -> None:
    """The progress of a caller that shows none."""


@dataclass(frozen=True)
class SiteRun:
    site: str
    run_id: str | None  # None: the site's run was never created (busy, or its process failed first)
    success: bool
    duration_s: float | None
    message: str | None = None  # why the site was not run (e.g. another process is syncing it)
    analytics: bool = False  # whether the run computed the site's analytics (`analytics_due`)


@dataclass(frozen=True)
class SyncOutcome:
    runs: list[SiteRun]
    # The gate run again, on what the store knows, for each site whose sync failed.
    gate_reruns: list[SiteRun] = field(default_factory=list)
    # The run that blocks gated permits of sites outside HUB_SITES (a whole-plant sync only).
    other_sites: SiteRun | None = None
    # What leaves a permit or a configured site outside the gate (hub.steps.sites).
    unconfigured_sites: list[str] = field(default_factory=list)
    unknown_sites: list[str] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return (
            bool(self.runs)
            and all(run.success for run in [*self.runs, *self.gate_reruns])
            and (self.other_sites is None or self.other_sites.success)
            and not self.unknown_sites
        )

    @property
    def run_ids(self) -> list[str]:
        extra = [self.other_sites] if self.other_sites else []
        return [run.run_id for run in [*self.runs, *self.gate_reruns, *extra] if run.run_id]

    @property
    def failed_sites(self) -> list[str]:
        return [run.site for run in self.runs if not run.success]


class SyncInterrupted(KeyboardInterrupt):
    """The sync was stopped by Ctrl-C or SIGTERM; `outcome` holds the sites' runs as they ended
    (an interrupted or never started site counts as failed)."""

    def __init__(self, outcome: SyncOutcome) -> None:
        super().__init__()
        self.outcome = outcome


def run_full_sync(
    settings: HubSettings,
    instance: DagsterInstance,
    executor: str = "in_process",
    sites: Sequence[str] | None = None,
    log_level: str = "WARNING",
    lock_wait_s: float = LOCK_WAIT_S,
    progress: Progress | None = None,
    analytics: bool = False,
) -> SyncOutcome:
    """Migrate the store if needed, then run the full-sync job once for each site (default: all),
    then make sure no permit is left outside the gate (`_close_the_gate`).

    A site's run computes its analytics when they are due (`hub.definitions.analytics_due`), or
    always with `analytics`.

    Each site's run holds the site's lock; a site another process holds for longer than
    `lock_wait_s` is not run (its `SiteRun.message` says who holds it). Raises SyncInterrupted
    on Ctrl-C or SIGTERM, once the run in progress has stopped. `progress`, if given, is told as
    each run starts and ends (see `Progress`), so a terminal can show the sites as they go.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, not {executor!r}")
    if lock_wait_s < 0:
        raise ValueError(f"lock_wait_s must be >= 0, got {lock_wait_s}")
    chosen = _chosen_sites(settings, sites)
    upgrade(settings.database_url)
    progress = progress or _quiet
    outcome = _site_runs(settings, instance, executor, chosen, log_level, lock_wait_s, progress, analytics)
    return _close_the_gate(
        settings, instance, outcome, whole_plant=sites is None, log_level=log_level, lock_wait_s=lock_wait_s, progress=progress
    )


def _site_runs(
    settings: HubSettings,
    instance: DagsterInstance,
    executor: str,
    chosen: list[str],
    log_level: str,
    lock_wait_s: float,
    progress: Progress,
    analytics: bool,
) -> SyncOutcome:
    if executor == "in_process":
        return _in_process(settings, instance, chosen, log_level, lock_wait_s, progress, analytics)
    if instance.is_ephemeral:
        raise ValueError(f"the {executor} executor needs a persistent Dagster instance (DAGSTER_HOME or --dagster-yaml)")
    tag = uuid.uuid4().hex
    env = child_environment(settings, **{INSTANCE_REF_ENV: serialize_value(instance.get_ref())})
    notes = Path(tempfile.mkdtemp(prefix="hub-sync-"))  # where a site process says why it did not run
    try:
        common = [executor, tag, log_level, str(lock_wait_s), str(notes), "always" if analytics else "due"]
        try:
            if executor == "celery":
                with celery_workers(env, settings.celery_broker, count=CELERY_WORKERS) as queue:
                    _site_processes(chosen, [*common, queue], env, settings.parallel_sites, progress)
            else:
                _site_processes(chosen, common, env, settings.parallel_sites, progress)
        except KeyboardInterrupt as exc:
            raise SyncInterrupted(_outcome(instance, tag, chosen, notes)) from exc
        return _outcome(instance, tag, chosen, notes)
    finally:
        shutil.rmtree(notes, ignore_errors=True)


def _close_the_gate(
    settings: HubSettings,
    instance: DagsterInstance,
    outcome: SyncOutcome,
    *,
    whole_plant: bool,
    log_level: str,
    lock_wait_s: float,
    progress: Progress,
) -> SyncOutcome:
    """No permit left outside the gate by the site runs: a site whose run failed is gated again
    on what the store knows (Dagster skips the steps after a failed one); a whole-plant sync
    also blocks the permits of sites outside HUB_SITES and names configured sites nobody knows."""
    definitions = build_definitions(settings)
    reruns = []
    for run in outcome.runs:
        if run.run_id is None or run.success:
            continue  # never started (busy or interrupted): its last decisions and holds stand
        progress(run.site, "started")
        with site_lock(settings.database_url, run.site, wait_s=lock_wait_s):
            result = definitions.resolve_job_def("gate_only").execute_in_process(
                instance=instance, partition_key=run.site, raise_on_error=False, run_config=_logging(log_level)
            )
        reruns.append(_site_run(run.site, instance.get_run_record_by_id(result.run_id)))
        progress(run.site, _state(reruns[-1]))
    other = None
    if whole_plant:
        progress("(other sites)", "started")
        result = definitions.resolve_job_def("other_sites_sync").execute_in_process(
            instance=instance, raise_on_error=False, run_config=_logging(log_level)
        )
        other = _site_run("(other sites)", instance.get_run_record_by_id(result.run_id))
        progress(other.site, _state(other))
    with HubStore(settings.database_url) as store:
        coverage = site_coverage(
            store,
            settings.sites,
            settings.sites_left_to_others,
            load_gate_rules(settings.gate_rules_file),
            synced=[run.site for run in outcome.runs if run.success],
        )
    unconfigured = [p for p in coverage.problems if "is not configured" in p]
    unknown = [p for p in coverage.problems if p not in unconfigured]
    return replace(outcome, gate_reruns=reruns, other_sites=other, unconfigured_sites=unconfigured, unknown_sites=unknown)


def _chosen_sites(settings: HubSettings, sites: Sequence[str] | None) -> list[str]:
    chosen = [site.strip().upper() for site in sites] if sites else list(settings.sites)
    unknown = sorted(set(chosen) - set(settings.sites))
    if unknown or not chosen:
        raise ValueError(f"unknown sites {', '.join(unknown)}: the configured sites (HUB_SITES) are {', '.join(settings.sites)}")
    return chosen


def _logging(log_level: str) -> dict:
    return {"loggers": {"console": {"config": {"log_level": log_level}}}}


def _state(run: SiteRun) -> str:
    return "succeeded" if run.success else "failed" if run.run_id else "not run"


def _in_process(
    settings: HubSettings,
    instance: DagsterInstance,
    sites: list[str],
    log_level: str,
    lock_wait_s: float,
    progress: Progress,
    analytics: bool,
) -> SyncOutcome:
    job = build_definitions(settings).resolve_job_def("full_sync")
    allow_drawing_aside()  # every site's analytics step runs here: one chart worker serves them all
    runs: list[SiteRun] = []
    for site in sites:
        progress(site, "started")
        try:
            with site_lock(settings.database_url, site, wait_s=lock_wait_s):
                result = job.execute_in_process(
                    instance=instance,
                    partition_key=site,
                    asset_selection=sync_selection(instance, settings, site, analytics),
                    raise_on_error=False,
                    run_config=_logging(log_level),
                )
        except SiteBusy as busy:
            runs.append(SiteRun(site, None, False, None, str(busy)))
            progress(site, "not run")
            continue
        except KeyboardInterrupt as exc:  # outside the run (waiting for the lock): nothing started
            runs.append(SiteRun(site, None, False, None, "interrupted"))
            raise SyncInterrupted(_with_not_started(runs, sites)) from exc
        record = instance.get_run_record_by_id(result.run_id)
        runs.append(_site_run(site, record))
        progress(site, _state(runs[-1]))
        # Dagster takes the interrupt inside the run and returns; the remaining sites must not start.
        if _interrupted(record) or stop_requested():
            raise SyncInterrupted(_with_not_started(runs, sites))
    return SyncOutcome(runs)


def _with_not_started(runs: list[SiteRun], sites: list[str]) -> SyncOutcome:
    done = {run.site for run in runs}
    return SyncOutcome([*runs, *(SiteRun(s, None, False, None, "the sync was interrupted before this site started") for s in sites if s not in done)])


def _interrupted(record) -> bool:
    """Whether a run ended because its process was interrupted (Ctrl-C, or SIGTERM taken as one)."""
    if record is None:
        return False
    run = record.dagster_run
    return run.status in (DagsterRunStatus.CANCELED, DagsterRunStatus.CANCELING) or (
        run.tags.get(RUN_FAILURE_REASON_TAG) == RunFailureReason.UNEXPECTED_TERMINATION.value
    )


def _site_processes(sites: list[str], args: list[str], env: dict[str, str], at_once: int, progress: Progress) -> None:
    """One process per site, `at_once` side by side (each brings its own step processes, so a
    group of many sites would otherwise swamp the machine); on Ctrl-C or an error here, each
    running one is interrupted and awaited."""
    waiting, running = list(sites), []
    try:
        while waiting or running:
            while waiting and len(running) < at_once:
                site = waiting.pop(0)
                progress(site, "started")
                running.append(subprocess.Popen([sys.executable, "-m", "hub.sync", site, *args], env=env))
            time.sleep(0.2)  # not os.wait(): that would also reap the Celery workers' processes
            for process in [process for process in running if process.poll() is not None]:
                code = process.returncode
                progress(process.args[3], "succeeded" if code == 0 else "not run" if code == BUSY_EXIT else "failed")
            running = [process for process in running if process.poll() is None]
    finally:
        for process in running:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)  # Dagster marks the run canceled
        # Each site process ends itself within its grace period; one that does not is killed.
        deadline = time.monotonic() + STOP_GRACE_S + 10
        for process in running:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _outcome(instance: DagsterInstance, tag: str, sites: list[str], notes: Path) -> SyncOutcome:
    records = {r.dagster_run.tags[PARTITION_NAME_TAG]: r for r in instance.get_run_records(RunsFilter(tags={SYNC_TAG: tag}))}
    return SyncOutcome([_site_run(site, records.get(site), _note(notes, site)) for site in sites])


def _note(notes: Path, site: str) -> str | None:
    try:
        return (notes / f"{site}.txt").read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def _site_run(site: str, record, message: str | None = None) -> SiteRun:
    if record is None:
        return SiteRun(site, None, False, None, message)
    run = record.dagster_run
    duration = record.end_time - record.start_time if record.start_time and record.end_time else None
    # A run of the whole job has no selection (None, or empty as Dagster stores it).
    analytics = not run.asset_selection or not run.asset_selection.isdisjoint(ANALYTICS_KEYS)
    return SiteRun(site, run.run_id, run.status == DagsterRunStatus.SUCCESS, duration, analytics=analytics)


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


def _run_site(
    site: str, executor: str, tag: str, log_level: str, lock_wait_s: str, notes: str, analytics: str, queue: str | None = None
) -> int:
    """In a site's own process: one run of its partition, with the job rebuilt from `HUB_*` variables,
    under the site's lock. A busy site leaves its message in `notes` and exits BUSY_EXIT."""
    # dagster-celery registers its step task again for every step it submits; the first one stands.
    warnings.filterwarnings("ignore", category=DuplicateTaskNameWarning)
    job = build_reconstructable_job("hub.definitions", "full_sync_job", reconstructable_args=(executor,))
    instance_ref = deserialize_value(os.environ[INSTANCE_REF_ENV], InstanceRef)
    try:
        with site_lock(HubSettings().database_url, site, wait_s=float(lock_wait_s)):
            with DagsterInstance.from_ref(instance_ref) as instance:
                result = execute_job(
                    job,
                    instance,
                    run_config=_run_config(executor, log_level, queue),
                    tags={PARTITION_NAME_TAG: site, SYNC_TAG: tag},
                    asset_selection=sync_selection(instance, HubSettings(), site, analytics == "always"),
                )
    except SiteBusy as busy:
        (Path(notes) / f"{site}.txt").write_text(str(busy), encoding="utf-8")
        print(f"full_sync {site}: not run: {busy}", file=sys.stderr)
        return BUSY_EXIT
    return 0 if result.success else 1


# ------------------------------------------------------------------ stopping on SIGTERM and Ctrl-C

_stop = threading.Event()
_stop_signal: list[int] = []


def stop_grace_s(executor: str) -> float:
    """The grace period of a `hub sync` with `executor`: long enough for its site processes
    to use their own (and, with Celery, for the workers' warm shutdown)."""
    return STOP_GRACE_S + {"in_process": 0.0, "multiprocess": 15.0, "celery": 20.0 + CELERY_STOP_TIMEOUT_S}[executor]


def stop_requested() -> bool:
    """Whether a SIGTERM or SIGINT has arrived inside `stop_on_signals`."""
    return _stop.is_set()


def received_signal(wait_s: float = 0.0) -> int | None:
    """The first stop signal received inside `stop_on_signals` (waiting up to `wait_s` for the
    watcher to see it), or None."""
    _stop.wait(wait_s)
    return _stop_signal[0] if _stop_signal else None


@contextmanager
def stop_on_signals(grace_s: float = STOP_GRACE_S) -> Iterator[None]:
    """SIGTERM takes Ctrl-C's path (KeyboardInterrupt, or Dagster's run interruption inside a run),
    and a stop that takes longer than `grace_s`, or a second signal, ends the process at once
    with exit code 128 + the signal, as a kill would (every step is safe to repeat).

    The signals are watched through Python's wakeup fd, which sees each signal whichever handler
    is installed at the time: Dagster replaces the handlers for the length of each run. Only on
    the main thread; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _stop.clear()
    _stop_signal.clear()
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    previous_term = signal.signal(signal.SIGTERM, signal.getsignal(signal.SIGINT))
    watcher = threading.Thread(target=_watch, args=(reader, grace_s), name="hub-stop-watcher", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        signal.set_wakeup_fd(previous_fd)
        writer.close()  # the watcher sees the end of the stream and returns
        watcher.join(5)
        reader.close()
        _stop.clear()
        _stop_signal.clear()


def _watch(reader: socket.socket, grace_s: float) -> None:
    deadline = first_at = None
    while True:
        reader.settimeout(None if deadline is None else max(0.0, deadline - time.monotonic()))
        try:
            received = reader.recv(16)
        except TimeoutError:
            _end_now(f"still stopping {grace_s:.0f} s after the signal")
            return
        except OSError:
            return
        if not received:
            return
        for signum in received:
            if signum not in (signal.SIGINT, signal.SIGTERM):
                continue
            if first_at is not None:
                if time.monotonic() - first_at < REPEAT_S:
                    continue
                _end_now("a second signal arrived")
                return
            _stop_signal.append(signum)
            _stop.set()
            first_at = time.monotonic()
            deadline = first_at + grace_s
            print(
                f"hub: {signal.Signals(signum).name} received, stopping (the run in progress is interrupted; "
                f"no further site starts; a second signal ends it at once)",
                file=sys.stderr,
                flush=True,
            )


def _end_now(why: str) -> None:
    signum = _stop_signal[0] if _stop_signal else signal.SIGTERM
    print(f"hub: {why}; exiting now, as a kill would (the next sync completes the work)", file=sys.stderr, flush=True)
    os._exit(128 + int(signum))


if __name__ == "__main__":
    with stop_on_signals():
        sys.exit(_run_site(*sys.argv[1:]))
