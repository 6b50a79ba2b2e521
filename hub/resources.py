"""Dagster resources: the only place assets get clients, store and rules from.

Assets ask a resource for a client and never see URLs or credentials; the values
are bound from `HUB_*` settings in `hub.definitions`, secrets as `EnvVar` so the
Dagster UI shows the variable name, never the value.
"""

from __future__ import annotations

import os
from functools import lru_cache

from dagster import ConfigurableResource, EnvVar

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


@lru_cache(maxsize=16)
def _store_for(database_url: str) -> HubStore:
    """One engine (and connection pool) per database per process, shared by all assets."""
    return HubStore(database_url)


class HubStoreResource(ConfigurableResource):
    database_url: str

    def store(self) -> HubStore:
        return _store_for(self.database_url)


class RulesResource(ConfigurableResource):
    gate_rules_file: str | None = None
    cost_rules_file: str | None = None

    def gate(self) -> GateRules:
        return load_gate_rules(self.gate_rules_file)

    def costs(self) -> CostRules:
        return load_cost_rules(self.cost_rules_file)


class SitesResource(ConfigurableResource):
    """The sites this hub gates (HUB_SITES) and those the group leaves to other hubs."""

    configured: list[str]
    left_to_others: list[str] = []


class PlantSystemResource(ConfigurableResource):
    """Endpoint, credentials, timeouts, retries and batch size shared by all four systems.

    How the system is spoken to (paths, paging, batching, REST or SOAP) is the `endpoint:`
    section of its flavor file, `mapping`; `batch_size` may only lower the flavor's size.
    """

    url: str
    username: str | None = None
    password: str | None = None
    token: str | None = None
    api_key: str | None = None
    api_key_header: str = "X-API-Key"
    mapping: str
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0
    retry_attempts: int = 5
    retry_initial_s: float = 0.5
    retry_max_s: float = 30.0
    retry_budget_s: float = 120.0
    breaker_failures: int = 5
    breaker_reset_s: float = 30.0
    max_response_bytes: int = 50 * 1024 * 1024
    # The most one request may take, all of it (HUB_REQUEST_DEADLINE_S).
    request_deadline_s: float = 60.0
    ca_bundle: str | None = None
    wsdl: str | None = None  # for a flavor that speaks SOAP; default: the URL with ?wsdl
    batch_size: int | None = None

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
            password=self.password,
            token=self.token,
            api_key=self.api_key,
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
        )


class PtwResource(PlantSystemResource):
    hold_source: str = "integration-hub"

    def client(self) -> SystemClient:
        return self.operations("PTW", tuned="permits_changed")


class EamResource(PlantSystemResource):
    # A device asked about within this many hours is asked only for changed work orders.
    full_pull_every_h: float = 24.0
    # A whole pull dropping more than this share of a site's open work orders is held as suspect.
    suspect_drop_share: float = 0.5

    def client(self) -> SystemClient:
        return self.operations("EAM", tuned="maintenance")


class MesResource(PlantSystemResource):
    def client(self) -> SystemClient:
        return self.operations("MES", tuned="parameters")


class ErpResource(PlantSystemResource):
    def client(self) -> ErpClient:
        return ErpClient(self.operations("ERP", tuned="post_entries"))


def _secret(env_name: str, value: object) -> EnvVar | None:
    """Bind a secret by variable name when it came from the environment."""
    if value is None:
        return None
    return EnvVar(env_name) if env_name in os.environ else value.get_secret_value()  # type: ignore[attr-defined]


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
        "store": HubStoreResource(database_url=settings.database_url),
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
        "mes": _system(MesResource, "mes", settings, settings.mes_batch_size),
        "erp": _system(ErpResource, "erp", settings, settings.erp_batch_size),
    }
