"""Every endpoint, credential and tuning knob, from `HUB_*` variables or one settings file.

Secrets are `SecretStr`, so printing settings (or an exception that carries them)
shows `**********` rather than the value; a password inside a URL is starred in the
settings' repr, and a settings error names variables and problems, never the values given.
"""

from __future__ import annotations

import os

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, FilePath, SecretStr, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REDACTED = "**********"


def without_password(url: str) -> str:
    """The URL as it may be shown anywhere: a password in it becomes stars."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    return parts._replace(netloc=f"{userinfo.partition(':')[0]}:{REDACTED}@{host}").geturl()


def variable_for(loc: tuple[int | str, ...]) -> str:
    """The `HUB_*` variable that sets the field at `loc` (`("erp", "url")` is `HUB_ERP__URL`)."""
    return "HUB_" + "__".join(str(part) for part in loc if isinstance(part, str)).upper()


class SettingsError(ValidationError):
    """Invalid settings, told by variable and problem only.

    Pydantic's own message repeats what was given (`input_value={'token': ...}`), and a settings
    error is shown in the Dagster UI, its logs and the CLI; so the inputs are dropped from the
    error's data as well as its text. Still a `ValidationError`, for callers that catch one.
    """

    @classmethod
    def scrubbed(cls, exc: ValidationError) -> "SettingsError":
        return cls.from_exception_data(
            exc.title,
            [
                {"type": PydanticCustomError(e["type"], e["msg"]), "loc": e["loc"], "input": REDACTED}
                for e in exc.errors(include_url=False, include_context=False, include_input=False)
            ],
            hide_input=True,
        )

    def __str__(self) -> str:
        problems = [
            f"  {variable_for(e['loc'])} ({'.'.join(map(str, e['loc']))}): {e['msg']}" if e["loc"] else f"  {e['msg']}"
            for e in self.errors(include_url=False)
        ]
        return "\n".join(["HUB_* settings are not valid (from the environment or hub.env):", *problems])


class SystemEndpoint(BaseModel):
    """How to reach one plant system; the same shape for all four keeps config uniform."""

    model_config = {"extra": "forbid", "hide_input_in_errors": True}

    url: str
    username: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    api_key: SecretStr | None = None
    api_key_header: str = "X-API-Key"
    # The mapping (vendor flavor) to speak: a packaged name such as "eam" or a file path.
    mapping: str | None = None


class GateApiSettings(BaseModel):
    """The gate-check service (`hub serve`): who may call it and how much it takes."""

    model_config = {"extra": "forbid", "hide_input_in_errors": True}

    # The Bearer token the PTW presents (HUB_GATE_API__TOKEN); without one the service will not start.
    token: SecretStr | None = None
    # A request body larger than this is refused (413) before it is read whole.
    max_body_bytes: int = Field(default=65536, ge=1)
    # Gate checks taken per second across all callers; more are refused (429).
    requests_per_second: float = Field(default=200, gt=0)
    # The most a gate check waits for the EAM when it must ask again, all of it.
    eam_deadline_s: float = Field(default=2.0, gt=0)
    # Gate checks one server process works on at once; the rest wait their turn. A check spends
    # most of its time waiting for its audit commit, which it shares with the checks in flight:
    # at 4, answers queued for seconds at 200 checks/s; at 16, up to 16 share one commit.
    concurrent_checks: int = Field(default=16, ge=1, le=64)
    # Re-pull, ahead of the checks, the devices of gated permits whose EAM data nears
    # decision_data_age, so that a check answers without asking the EAM while the PTW waits.
    keep_fresh: bool = True


class HubSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="HUB_",
        env_nested_delimiter="__",
        env_file=("hub.env",),
        extra="ignore",
        hide_input_in_errors=True,
    )

    def __init__(self, **values: Any) -> None:
        """Every way settings are built (CLI, code location, run process) raises the scrubbed error."""
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise SettingsError.scrubbed(exc) from None

    database_url: str = "sqlite:///.hub/hub.db"
    dagster_home: Path = Path(".hub/dagster_home")
    # The plant's sites (PTW `siteCode`): the sync's partitions, one run per site.
    sites: Annotated[tuple[str, ...], NoDecode] = ("NJ01", "HZ02")
    # Sites whose runs go side by side (multiprocess and Celery syncs); the rest wait their turn.
    parallel_sites: int = Field(default=2, ge=1)
    # Where `hub sync --executor celery` queues the steps for the workers it starts.
    celery_broker: str = "amqp://guest:guest@127.0.0.1:5672//"

    ptw: SystemEndpoint = SystemEndpoint(url="http://127.0.0.1:8101")
    eam: SystemEndpoint = SystemEndpoint(url="http://127.0.0.1:8102/eam/soap")
    mes: SystemEndpoint = SystemEndpoint(url="http://127.0.0.1:8103")
    erp: SystemEndpoint = SystemEndpoint(url="http://127.0.0.1:8104")
    # A local file is preferred: a WSDL fetched at start-up is one more thing that can hang.
    eam_wsdl: str | None = None
    erp_wsdl: str | None = None  # the SOAP ERP flavor's WSDL (erp-sap-soap)

    connect_timeout_s: float = Field(default=5.0, gt=0)
    read_timeout_s: float = Field(default=30.0, gt=0)
    # The most one request may take, all of it: connect, send, every byte and the whole reply.
    request_deadline_s: float = Field(default=60.0, gt=0)
    retry_attempts: int = Field(default=5, ge=1)
    retry_initial_s: float = Field(default=0.5, ge=0)
    retry_max_s: float = Field(default=30.0, ge=0)
    # No new attempt of one request starts once waiting for it would pass this budget.
    retry_budget_s: float = Field(default=120.0, gt=0)
    # Consecutive transient failures that open a system's circuit, and how long it stays open.
    breaker_failures: int = Field(default=5, ge=1)
    breaker_reset_s: float = Field(default=30.0, gt=0)
    # A reply larger than this is refused before it is read whole.
    max_response_bytes: int = Field(default=50 * 1024 * 1024, ge=1)
    # PEM bundle of the CA(s) to trust instead of the public ones; TLS is always verified.
    ca_bundle: FilePath | None = None

    # Fewer items per request than the flavor file's size (None: the flavor's); never more.
    ptw_page_size: int | None = Field(default=None, ge=1)
    eam_batch_size: int | None = Field(default=None, ge=1)
    mes_batch_size: int | None = Field(default=None, ge=1)
    erp_batch_size: int | None = Field(default=None, ge=1)

    # How often a device's whole work-order list is pulled again; in between only changes are.
    eam_full_pull_every_h: float = Field(default=24.0, ge=0)
    # A whole EAM pull that drops more than this share of a site's open work orders at once is
    # held as suspect: nothing is deleted and the devices block until a reply the hub trusts.
    eam_suspect_drop_share: float = Field(default=0.5, gt=0, le=1)

    gate_rules_file: Path | None = None
    cost_rules_file: Path | None = None
    # The KPIs' thresholds (hub/rules/analytics.yaml) and the cross-system analyses' (cross_system.yaml).
    analytics_rules_file: Path | None = None
    cross_system_rules_file: Path | None = None
    # How often a sync computes the analytics again (minutes; 0: every sync). They are figures
    # over months of permits: a 15-minute sync that recomputed them would spend most of its time there.
    analytics_every_min: float = Field(default=60.0, ge=0)
    # How old a material's process parameters, or a site's quality rates, from the MES may be
    # before a sync asks again (minutes; 0: every sync). What was never answered is asked at once.
    mes_refresh_every_min: float = Field(default=60.0, ge=0)
    hold_source: str = "integration-hub"
    # Who answers for the hub's assets in the Dagster UI: "team:NAME" or an e-mail address.
    asset_owner: str = "team:plant-integration"
    # How often the regate_on_change sensor looks for changed permits and work orders (Dagster's
    # daemon loop runs every 5 s, so less gains nothing).
    regate_interval_s: int = Field(default=5, ge=5)
    # The largest change (permits and devices) the sensor re-gates within its tick; a larger one,
    # or every change with 0, becomes a regate run (seconds later: a run's launch costs seconds).
    regate_in_tick_max: int = Field(default=200, ge=0)
    # Sites of the PTW that another team's hub gates: their permits are counted, never decided.
    sites_left_to_others: Annotated[tuple[str, ...], NoDecode] = ()
    gate_api: GateApiSettings = GateApiSettings()

    def __repr_args__(self):
        """A password inside a URL (database, broker) is starred like any other secret."""
        for name, value in super().__repr_args__():
            yield name, without_password(value) if name in ("database_url", "celery_broker") else value

    @model_validator(mode="before")
    @classmethod
    def _nested_defaults(cls, values: Any) -> Any:
        """`HUB_ERP__TOKEN` alone arrives as `{"token": ...}`: `erp`'s other fields keep their defaults."""
        if not isinstance(values, dict):
            return values
        merged = dict(values)
        for name, field in cls.model_fields.items():
            given = values.get(name)
            if isinstance(given, dict) and isinstance(field.default, BaseModel):
                merged[name] = {**field.default.model_dump(exclude_unset=True), **given}
        return merged

    @field_validator("sites", "sites_left_to_others", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any, info) -> Any:
        """`HUB_SITES=NJ01,HZ02`; site codes are compared as the PTW mapping normalises them."""
        if isinstance(value, str):
            value = value.split(",")
        sites = tuple(str(site).strip().upper() for site in value if str(site).strip())
        if len(set(sites)) != len(sites) or (info.field_name == "sites" and not sites):
            raise ValueError(f"{info.field_name} must name {'at least one site, ' if info.field_name == 'sites' else ''}each site once")
        return sites

    @model_validator(mode="after")
    def _left_sites_not_gated_here(self) -> "HubSettings":
        both = sorted(set(self.sites) & set(self.sites_left_to_others))
        if both:
            raise ValueError(f"sites {', '.join(both)} are both in sites and in sites_left_to_others")
        return self


def child_environment(settings: HubSettings, **extra: str) -> dict[str, str]:
    """This process's environment for a process it starts, with exactly these settings as its
    `HUB_*` variables (none inherited from here), and `extra` on top."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    return {**inherited, **settings_environment(settings), **extra}


def settings_environment(settings: HubSettings) -> dict[str, str]:
    """The `HUB_*` variables from which another process rebuilds exactly these settings."""
    env: dict[str, str] = {}

    def put(name: str, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, tuple):
            value = ",".join(value)
        env[name.upper()] = str(value)

    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, (SystemEndpoint, GateApiSettings)):
            for field in type(value).model_fields:
                put(f"HUB_{name}__{field}", getattr(value, field))
        else:
            put(f"HUB_{name}", value)
    return env
