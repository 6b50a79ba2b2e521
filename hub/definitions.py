"""The Dagster code location: assets, checks, the full-sync and health-check jobs and their schedules."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta, timezone

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    AssetSelection,
    AssetSpec,
    DefaultSensorStatus,
    RunFailureSensorContext,
    DefaultScheduleStatus,
    DagsterInstance,
    Definitions,
    JobDefinition,
    RunRequest,
    ScheduleDefinition,
    define_asset_job,
    in_process_executor,
    map_asset_specs,
    run_failure_sensor,
    schedule,
)
from dagster._core.storage.tags import PARTITION_NAME_TAG
from dagster_celery import celery_executor
from sqlalchemy.engine import make_url

from hub import dagster_sqlite
from hub.assets.analytics import CROSS_SYSTEM_KEYS, KPI_KEYS, AnalyticsRulesResource, permit_analytics
from hub.assets.quality import mes_quality_rates
from hub.assets.clearance import clearance_covers_every_device, equipment_clearance
from hub.assets.costs import safety_cost_entries
from hub.assets.equipment import devices_found_in_eam, eam_data_fresh, eam_pull
from hub.assets.erp import erp_entries_confirmed, erp_ledger_reconciled, erp_postings
from hub.assets.gate import gate_decisions_written_back, permit_gate_decisions
from hub.assets.other_sites import every_permit_within_the_gate, permits_of_other_sites
from hub.assets.permits import permits
from hub.assets.process import process_parameters
from hub.assets.sites import site_partitions
from hub.assets.systems import flavor_of, system_specs
from hub.logic.rules import RULES_DIR
from hub.resources import resources_from_settings
from hub.sensors import regate_sensor
from hub.settings import HubSettings

# Every process that loads the code location (code servers, runs, steps, `hub sync`) writes
# Dagster's SQLite storage with its engines kept.
dagster_sqlite.install()

# What one site's run materializes and checks; the permits of other sites have a job of their own.
ASSETS = [permits, eam_pull, process_parameters, mes_quality_rates, equipment_clearance, permit_gate_decisions, safety_cost_entries, erp_postings]
# The KPIs, then the analyses across systems (hub/rules/cross_system.yaml).
ANALYTICS = [permit_analytics]
CHECKS = [
    devices_found_in_eam,
    eam_data_fresh,
    clearance_covers_every_device,
    gate_decisions_written_back,
    erp_entries_confirmed,
    erp_ledger_reconciled,
]
OTHER_SITES = [permits_of_other_sites, every_permit_within_the_gate]
# What a site's sync materializes when its analytics are not due (`analytics_due`).
SYNC_KEYS = [key for assets in ASSETS for key in assets.keys]
ANALYTICS_KEYS = [key for assets in ANALYTICS for key in assets.keys]

# The analytics are computed from the store after the pulls and the gate, so a full sync ends with current KPIs.
full_sync = define_asset_job(
    "full_sync",
    selection=AssetSelection.assets(*ASSETS, *ANALYTICS),
    description="Pull permits, equipment, process and quality data, gate permits, post safety costs, "
    "compute the permit KPIs and the analyses across systems.",
)

# The gate again, on what the store knows, for a site whose sync failed: Dagster skips the steps
# after a failed one, and a site must never be left ungated by that.
gate_only = define_asset_job(
    "gate_only",
    selection=AssetSelection.assets(equipment_clearance, permit_gate_decisions),
    description="Recompute clearance and gate every permit of a site from stored data (after a failed sync).",
)

# What a change calls for: the site's changed permits, its devices' changed work orders, the gate,
# for the permits and devices the change touched (run config from the sensor). Its steps run in
# the run's own process: a process per step would cost seconds each, and a hold is awaited.
regate = define_asset_job(
    "regate",
    selection=AssetSelection.assets(permits, eam_pull, equipment_clearance, permit_gate_decisions),
    description="Re-gate the permits and devices of one site that changed (started by the regate_on_change sensor).",
    executor_def=in_process_executor,
)

other_sites_sync = define_asset_job(
    "other_sites_sync",
    selection=AssetSelection.assets(permits_of_other_sites),
    description="Block gated permits of sites outside HUB_SITES; check every configured site is known.",
)

# Checks only: Dagster skips an asset's checks when the asset fails, so a failed write-back
# or ledger mismatch is re-examined on its own, after the sync and on every schedule tick.
health_checks = define_asset_job(
    "health_checks",
    # The standalone checks; drift checks are computed while pulling, from the vendor's reply.
    selection=AssetSelection.checks(*CHECKS),
    description="Re-run every asset check (write-back pending, ledger reconciliation, ...) without syncing.",
)

# Dagster gives a checks-only job no partitions definition (it takes one from assets only), so
# the Launchpad offers no site for `health_checks`: each site has a checks job of its own, whose
# runs carry the site as their partition, and so each result joins that site's history.
site_health_checks = [
    define_asset_job(
        "health_checks_" + re.sub(r"\W", "_", site),
        selection=AssetSelection.checks(*CHECKS),
        description=f"Re-run every asset check of site {site} without syncing.",
        run_tags={PARTITION_NAME_TAG: site},
    )
    for site in site_partitions.get_partition_keys()
]


def every_site(job, cron_schedule: str, select=lambda instance, site: None) -> ScheduleDefinition:
    """A schedule that starts one run per site on each tick, of the assets `select` picks (None: the job's).

    The site goes in the run's partition tag rather than as a partition key: Dagster gives a
    checks-only job no partitions definition, so `health_checks` cannot take a key, yet its
    (partitioned) checks read their site from that tag just as the assets do.
    """

    @schedule(
        name=f"{job.name}_schedule",
        job=job,
        cron_schedule=cron_schedule,
        execution_timezone="Asia/Shanghai",
        default_status=DefaultScheduleStatus.STOPPED,
    )
    def _each_site(context):
        tick = context.scheduled_execution_time.isoformat()
        return [
            RunRequest(run_key=f"{tick}/{site}", tags={PARTITION_NAME_TAG: site}, asset_selection=select(context.instance, site))
            for site in site_partitions.get_partition_keys()
        ]

    return _each_site


health_checks_schedule = every_site(health_checks, "5-59/15 * * * *")
full_sync_schedule = every_site(
    full_sync, "*/15 * * * *", lambda instance, site: sync_selection(instance, HubSettings(), site)
)
other_sites_schedule = ScheduleDefinition(
    name="other_sites_sync_schedule",
    job=other_sites_sync,
    cron_schedule="*/15 * * * *",
    execution_timezone="Asia/Shanghai",
    default_status=DefaultScheduleStatus.STOPPED,
)


@run_failure_sensor(
    name="gate_after_failed_sync",
    monitored_jobs=[full_sync],
    request_job=gate_only,
    default_status=DefaultSensorStatus.RUNNING,
    description="When a site's sync fails, gate that site again on what the store knows.",
)
def gate_after_failed_sync(context: RunFailureSensorContext):
    site = context.dagster_run.tags.get(PARTITION_NAME_TAG)
    if site:
        return RunRequest(run_key=f"gate-after/{context.dagster_run.run_id}", tags={PARTITION_NAME_TAG: site})


# The flavor and rule files each asset's output follows besides its code: an edit to one of
# them gives the asset a new code version, so the UI shows what it changed as stale.
FILES_READ = {
    "permits": ("ptw",),
    "permits_of_other_sites": ("ptw", "gate"),
    "equipment": ("eam",),
    "maintenance_records": ("eam",),
    "process_parameters": ("mes",),
    "equipment_clearance": ("gate",),
    "permit_gate_decisions": ("gate", "ptw"),
    "safety_cost_entries": ("costs",),
    "erp_postings": ("erp",),
    "mes_quality_rates": ("mes",),
    **{name: ("analytics",) for name in KPI_KEYS},
    **{name: ("cross_system",) for name in CROSS_SYSTEM_KEYS},
}


def rule_versions(settings: HubSettings) -> dict[str, str]:
    """A short content hash of each configured rule file."""
    return {
        rules: hashlib.sha256((path or RULES_DIR / f"{rules}.yaml").read_bytes()).hexdigest()[:12]
        for rules, path in (
            ("gate", settings.gate_rules_file),
            ("costs", settings.cost_rules_file),
            ("analytics", settings.analytics_rules_file),
            ("cross_system", settings.cross_system_rules_file),
        )
    }


def file_versions(settings: HubSettings) -> dict[str, str]:
    """A short content hash of each configured flavor file (its base files included) and rule file."""
    flavors = {system: flavor_of(settings, system).sha256[:12] for system in ("ptw", "eam", "mes", "erp")}
    return {**flavors, **rule_versions(settings)}


def code_version(name: str, versions: dict[str, str]) -> str:
    """An asset's code version: the hashes of the files it follows (`FILES_READ`)."""
    return "+".join(f"{file}:{versions[file]}" for file in FILES_READ[name])


def analytics_due(instance: DagsterInstance, settings: HubSettings, site: str, now: datetime | None = None) -> bool:
    """Whether a sync of `site` should compute its analytics again: they are month-scale figures
    over the whole store, so a sync refreshes them once `analytics_every_min` has passed since
    they were last computed (every sync with 0), or when they never were, or were computed under
    other rule files, whose edit must show in the next sync."""
    every = timedelta(minutes=settings.analytics_every_min)
    if not every:
        return True
    now = now or datetime.now(timezone.utc)
    versions = rule_versions(settings)  # the analytics follow rule files only: no flavor file is read for each site
    for key in ANALYTICS_KEYS:
        latest = instance.fetch_materializations(AssetRecordsFilter(asset_key=key, asset_partitions=[site]), limit=1).records
        if not latest:
            return True
        computed = latest[0]
        if now - datetime.fromtimestamp(computed.timestamp, timezone.utc) >= every:
            return True
        if computed.asset_materialization.tags.get("dagster/code_version") != code_version(key.to_user_string(), versions):
            return True
    return False


def sync_selection(instance: DagsterInstance, settings: HubSettings, site: str, analytics: bool = False) -> list[AssetKey] | None:
    """The assets a site's sync materializes: all of the full sync's (None), or all but the
    analytics when they are not due and not asked for."""
    return None if analytics or analytics_due(instance, settings, site) else SYNC_KEYS


def described(settings: HubSettings):
    """Owners, kinds and code versions of the hub's assets: settings decide them, and the asset
    modules are imported once while `build_definitions` may be given other settings."""
    versions = file_versions(settings)
    backend = make_url(settings.database_url).get_backend_name()
    kinds = {"python", {"postgresql": "postgres"}.get(backend, backend)}

    def describe(spec: AssetSpec) -> AssetSpec:
        return spec.replace_attributes(
            owners=[settings.asset_owner],
            kinds=kinds,
            code_version=code_version(spec.key.to_user_string(), versions),
        )

    return describe


def build_definitions(settings: HubSettings | None = None) -> Definitions:
    settings = settings or HubSettings()
    hub_assets = map_asset_specs(described(settings), [*ASSETS, *ANALYTICS, permits_of_other_sites])
    edges = system_specs(settings, holds_from=[permit_gate_decisions, permits_of_other_sites], entries_from=[erp_postings])
    return Definitions(
        assets=[*hub_assets, *edges],
        asset_checks=[*CHECKS, every_permit_within_the_gate],
        jobs=[full_sync, gate_only, regate, other_sites_sync, health_checks, *site_health_checks],
        schedules=[full_sync_schedule, health_checks_schedule, other_sites_schedule],
        sensors=[gate_after_failed_sync, regate_sensor(regate, settings.regate_interval_s, settings.regate_in_tick_max)],
        resources=hub_resources(settings),
    )


def hub_resources(settings: HubSettings) -> dict:
    """The assets' resources: systems, store and gate and cost rules, and the analytics' rule files."""
    return {**resources_from_settings(settings), "analytics_rules": AnalyticsRulesResource.from_settings(settings)}


defs = build_definitions()


def full_sync_job(executor: str = "multiprocess") -> JobDefinition:
    """The full-sync job as another process rebuilds it from its own `HUB_*` environment.

    Run processes and Celery workers find the job through this function
    (`dagster.build_reconstructable_job`); `executor` picks how the run's steps are executed.
    """
    job = defs.resolve_job_def("full_sync")
    return job.with_executor_def(celery_executor) if executor == "celery" else job
