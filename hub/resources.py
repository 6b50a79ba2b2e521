"""Dagster resources: the only place assets get clients, store and rules from.

Assets ask a resource for a client and never see URLs or credentials; the values
are bound from `HUB_*` settings in `hub.definitions`, secrets (the database URL among
them) as `EnvVar` wherever they came from, so the Dagster UI, GraphQL and run records
show the variable name, never the value.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit
from functools import lru_cache

from dagster import ConfigurableResource, EnvVar
from pydantic import Field, SecretStr

from hub.connectors.auth import REDACTED, for_scheme
from hub.connectors.breaker import SystemBreaker, breaker_for
from hub.connectors.eam import EamClient
from hub.connectors.erp import ErpClient
from hub.connectors.operations import SystemClient
from hub.connectors.rest import RestClient
from hub.connectors.retry import RetryPolicy
from hub.logic.rules import CostRules, GateRules, load_cost_rules, load_gate_rules
from hub.mappings.engine import load_mapping
from hub.settings import HubSettings, SystemEndpoint
from hub.store.repository import HubStore


SECRET_FIELDS = ("password", "token", "api_key")


def _resolved(value: str | None) -> str | None:
    """The value behind an `EnvVar`: a resource used outside a run (a CLI preview, a service)
    is not initialised by Dagster, so its secrets are still bound by name."""
    if not isinstance(value, EnvVar):
        return value
    resolved = value.get_value()
    if resolved is None:
        raise ValueError(f"{value.env_var_name} is not set in the environment")
    return resolved


@lru_cache(maxsize=16)
def _store_for(database_url: str) -> HubStore:
    """One engine (and connection pool) per database per process, shared by all assets."""
    return HubStore(database_url)


class HubStoreResource(ConfigurableResource):
    """The hub's own database: canonical records, gate decisions, audit trail and quarantine."""

    database_url: str = Field(
        description="SQLAlchemy URL of the hub database, bound from HUB_DATABASE_URL by name: it may hold a password."
    )

    def store(self) -> HubStore:
        return _store_for(_resolved(self.database_url))


class RulesResource(ConfigurableResource):
    """The gate and cost rule files the hub decides by (the packaged rules when none is given)."""

    gate_rules_file: str | None = Field(
        default=None, description="Gate rule file (HUB_GATE_RULES_FILE); None: the packaged rules."
    )
    cost_rules_file: str | None = Field(
        default=None, description="Cost rule file (HUB_COST_RULES_FILE); None: the packaged rules."
    )

    def gate(self) -> GateRules:
        return load_gate_rules(self.gate_rules_file)

    def costs(self) -> CostRules:
        return load_cost_rules(self.cost_rules_file)


class SitesResource(ConfigurableResource):
    """The sites this hub gates (HUB_SITES) and those the group leaves to other hubs."""

    configured: list[str] = Field(description="Sites this hub gates, one run per site (HUB_SITES).")
    left_to_others: list[str] = Field(
        default=[], description="Sites another team's hub gates: counted, never decided (HUB_SITES_LEFT_TO_OTHERS)."
    )


class PlantSystemResource(ConfigurableResource):
    """Endpoint, credentials, timeouts, retries and batch size shared by all four systems.

    How the system is spoken to (paths, paging, batching, REST or SOAP) is the `endpoint:`
    section of its flavor file, `mapping`; `batch_size` may only lower the flavor's size.
    Credentials are bound by variable name (`HUB_<SYSTEM>__PASSWORD`, ...), never by value.
    """

    url: str = Field(description="Base URL of the system (HUB_<SYSTEM>__URL).")
    username: str | None = Field(default=None, description="User for basic auth (HUB_<SYSTEM>__USERNAME).")
    password: str | None = Field(default=None, description="Basic-auth password, bound from HUB_<SYSTEM>__PASSWORD.")
    token: str | None = Field(default=None, description="Bearer token, bound from HUB_<SYSTEM>__TOKEN.")
    api_key: str | None = Field(default=None, description="API key, bound from HUB_<SYSTEM>__API_KEY.")
    api_key_header: str = Field(default="X-API-Key", description="Header the API key travels in, unless the flavor names one.")
    mapping: str = Field(description="Flavor to speak: a packaged mapping name or a mapping file path.")
    connect_timeout_s: float = Field(default=5.0, description="Seconds to wait for a connection.")
    read_timeout_s: float = Field(default=30.0, description="Seconds to wait between bytes of a reply.")
    retry_attempts: int = Field(default=5, description="Tries of one request, the first included.")
    retry_initial_s: float = Field(default=0.5, description="First wait between tries; it doubles up to retry_max_s.")
    retry_max_s: float = Field(default=30.0, description="Longest wait between two tries.")
    retry_budget_s: float = Field(default=120.0, description="No new try starts once waiting for it would pass this.")
    breaker_failures: int = Field(default=5, description="Consecutive transient failures that open the circuit.")
    breaker_reset_s: float = Field(default=30.0, description="Seconds an open circuit stays open.")
    max_response_bytes: int = Field(default=50 * 1024 * 1024, description="A larger reply is refused before it is read whole.")
    request_deadline_s: float = Field(
        default=60.0, description="The most one request may take, all of it (HUB_REQUEST_DEADLINE_S)."
    )
    ca_bundle: str | None = Field(default=None, description="PEM bundle of the CAs to trust instead of the public ones.")
    wsdl: str | None = Field(default=None, description="WSDL for a SOAP flavor; None: the URL with ?wsdl.")
    batch_size: int | None = Field(default=None, description="Fewer items per request than the flavor's size; never more.")

    def __repr_args__(self):
        """Secrets show as stars; one bound by `EnvVar` shows the variable's name, which is no secret."""
        for name, value in super().__repr_args__():
            hidden = name in SECRET_FIELDS and value is not None and not isinstance(value, EnvVar)
            yield name, REDACTED if hidden else value

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(self.retry_attempts, self.retry_initial_s, self.retry_max_s, self.retry_budget_s)

    def breaker(self, system: str) -> SystemBreaker:
        return breaker_for(system, self.url, failures=self.breaker_failures, reset_s=self.breaker_reset_s)

    def operations(self, system: str, tuned: str) -> SystemClient:
        """The system's operations as its flavor file describes them; `batch_size` tunes operation `tuned`."""
        flavor = load_mapping(self.mapping)
        spec = flavor.spec.endpoint
        if spec is None:
            raise ValueError(f"{flavor.name} has no endpoint: section, so it cannot be used to reach the {system}")
        credentials = self.endpoint() if spec.auth is None else for_scheme(self.endpoint(), spec.auth.scheme, spec.auth.header)
        return SystemClient(
            system,
            spec,
            flavor.name,
            base_url=self.url,
            rest=self.rest(system, credentials) if "rest" in spec.protocols() else None,
            soap=self.soap(system, credentials) if "soap" in spec.protocols() else None,
            sizes={tuned: self.batch_size},
        )

    def endpoint(self) -> SystemEndpoint:
        return SystemEndpoint(
            url=self.url,
            username=self.username,
            password=_resolved(self.password),
            token=_resolved(self.token),
            api_key=_resolved(self.api_key),
            api_key_header=self.api_key_header,
        )

    def rest(self, system: str, credentials: SystemEndpoint) -> RestClient:
        return RestClient(
            system,
            credentials,
            connect_timeout_s=self.connect_timeout_s,
            read_timeout_s=self.read_timeout_s,
            retry=self.retry_policy(),
            breaker=self.breaker(system),
            max_response_bytes=self.max_response_bytes,
            ca_bundle=self.ca_bundle,
            deadline_s=self.request_deadline_s,
        )

    def soap(self, system: str, credentials: SystemEndpoint) -> EamClient:
        return EamClient(
            credentials,
            self.wsdl or f"{self.url}?wsdl",
            connect_timeout_s=self.connect_timeout_s,
            operation_timeout_s=self.read_timeout_s,
            retry=self.retry_policy(),
            breaker=self.breaker(system),
            max_response_bytes=self.max_response_bytes,
            ca_bundle=self.ca_bundle,
            deadline_s=self.request_deadline_s,
            system=system,
        )


class PtwResource(PlantSystemResource):
    """The permit-to-work system: permits are read from it and holds written back to it."""

    hold_source: str = Field(default="integration-hub", description="Source the hub's holds carry at the PTW (HUB_HOLD_SOURCE).")

    def client(self) -> SystemClient:
        return self.operations("PTW", tuned="permits_changed")


class EamResource(PlantSystemResource):
    """The maintenance system: equipment and its open work orders, per site."""

    full_pull_every_h: float = Field(
        default=24.0, description="A device asked about within this many hours is asked only for changed work orders."
    )
    suspect_drop_share: float = Field(
        default=0.5, description="A whole pull dropping more than this share of a site's open work orders is held as suspect."
    )

    def client(self) -> SystemClient:
        return self.operations("EAM", tuned="maintenance")


class MesResource(PlantSystemResource):
    """The manufacturing execution system: the process parameters of the permits' equipment."""

    refresh_every_min: float = Field(
        default=60.0, description="A material's parameters are asked for again once older (0: every sync)."
    )

    def client(self) -> SystemClient:
        return self.operations("MES", tuned="parameters")


class ErpResource(PlantSystemResource):
    """The ERP: safety costs are posted to it as journal entries."""

    def client(self) -> ErpClient:
        return ErpClient(self.operations("ERP", tuned="post_entries"))


def _secret(env_name: str, value: SecretStr | str | None) -> EnvVar | None:
    """Bind a secret by its variable's name, so Dagster shows the name and never the value.

    A secret from hub.env or given in code is not in the environment yet: it is put there under
    that name, where Dagster resolves it when a run initialises the resource, and where the run
    and step processes started from this one find it.
    """
    if value is None:
        return None
    os.environ[env_name] = value.get_secret_value() if isinstance(value, SecretStr) else value
    return EnvVar(env_name)


def _database_url(url: str) -> EnvVar | str:
    """A URL with a password in it is a secret, bound by name; one without (a SQLite file, a
    trusted local server) is shown as it is. Binding every URL would put it into this process's
    environment, where it would outrank the next settings' own database (`hub demo --workdir`)."""
    return _secret("HUB_DATABASE_URL", url) if urlsplit(url).password is not None else url


def _system(cls: type[PlantSystemResource], name: str, settings: HubSettings, batch_size: int | None, **extra: object):
    endpoint: SystemEndpoint = getattr(settings, name)
    prefix = f"HUB_{name.upper()}__"
    return cls(
        url=endpoint.url,
        username=endpoint.username,
        password=_secret(prefix + "PASSWORD", endpoint.password),
        token=_secret(prefix + "TOKEN", endpoint.token),
        api_key=_secret(prefix + "API_KEY", endpoint.api_key),
        api_key_header=endpoint.api_key_header,
        mapping=endpoint.mapping or name,
        connect_timeout_s=settings.connect_timeout_s,
        read_timeout_s=settings.read_timeout_s,
        retry_attempts=settings.retry_attempts,
        retry_initial_s=settings.retry_initial_s,
        retry_max_s=settings.retry_max_s,
        retry_budget_s=settings.retry_budget_s,
        breaker_failures=settings.breaker_failures,
        breaker_reset_s=settings.breaker_reset_s,
        max_response_bytes=settings.max_response_bytes,
        request_deadline_s=settings.request_deadline_s,
        ca_bundle=str(settings.ca_bundle) if settings.ca_bundle else None,
        batch_size=batch_size,
        **extra,
    )


def resources_from_settings(settings: HubSettings) -> dict[str, ConfigurableResource]:
    return {
        "store": HubStoreResource(database_url=_database_url(settings.database_url)),
        "sites": SitesResource(configured=list(settings.sites), left_to_others=list(settings.sites_left_to_others)),
        "rules": RulesResource(
            gate_rules_file=str(settings.gate_rules_file) if settings.gate_rules_file else None,
            cost_rules_file=str(settings.cost_rules_file) if settings.cost_rules_file else None,
        ),
        "ptw": _system(PtwResource, "ptw", settings, settings.ptw_page_size, hold_source=settings.hold_source),
        "eam": _system(
            EamResource,
            "eam",
            settings,
            settings.eam_batch_size,
            wsdl=settings.eam_wsdl,
            full_pull_every_h=settings.eam_full_pull_every_h,
            suspect_drop_share=settings.eam_suspect_drop_share,
        ),
        "mes": _system(MesResource, "mes", settings, settings.mes_batch_size, refresh_every_min=settings.mes_refresh_every_min),
        "erp": _system(ErpResource, "erp", settings, settings.erp_batch_size, wsdl=settings.erp_wsdl),
    }
