"""Secrets never leave the hub: not in output, logs, Dagster events, metadata, exceptions or reprs.

Credentials are set the way operators set them, through `HUB_*` environment variables, against
mocks that really require them. The whole job runs through Dagster twice: once cleanly, once
with a wrong ERP password and a 503 storm on the PTW write-back, so errors are raised, logged
and recorded. Then every trace the runs left is searched for each secret in every form it
takes on the wire.
"""

from __future__ import annotations

import base64
import os
import traceback
from collections.abc import Iterator
from typing import Any
from unittest import mock

import httpx
import pytest
import respx
from conftest import materialize_sites
from dagster import DagsterInstance, EnvVar, serialize_value

from hub.connectors.retry import VendorRejected
from hub.definitions import ASSETS, CHECKS
from hub.resources import resources_from_settings
from hub.settings import HubSettings, SystemEndpoint
from hub.store.migrate import upgrade
from mock_systems.servers import start_systems
from test_connectors import FIXTURES, WSDL, admin_state, set_faults

PTW_TOKEN = "ptw-token-Q7vX2-do-not-leak"
EAM_API_KEY = "eam-apikey-M3kL9-do-not-leak"
MES_API_KEY = "mes-apikey-Z8rT4-do-not-leak"
ERP_PASSWORD = "erp-password-H5nB1-do-not-leak"
WRONG_ERP_PASSWORD = "erp-wrong-password-W2cD6-do-not-leak"


def wire_forms(*secrets: str) -> list[str]:
    """Each secret as set, and as it travels in a basic-auth header."""
    forms = list(secrets)
    forms += [base64.b64encode(f"hub:{s}".encode()).decode() for s in secrets]
    return forms


ALL_FORMS = wire_forms(PTW_TOKEN, EAM_API_KEY, MES_API_KEY, ERP_PASSWORD, WRONG_ERP_PASSWORD)


def assert_no_secret(where: str, text: str) -> None:
    leaked = [form for form in ALL_FORMS if form in text]
    assert not leaked, f"{where} holds a secret"


@pytest.fixture(autouse=True)
def environment_restored() -> Iterator[None]:
    """Binding resources puts secrets into os.environ; the next test must not inherit them."""
    with mock.patch.dict(os.environ):
        yield


@pytest.fixture(scope="module")
def guarded_mocks() -> Iterator[Any]:
    auth = {
        "ptw": {"bearer": PTW_TOKEN},
        "eam": {"api_key": {"header": "X-API-Key", "value": EAM_API_KEY}},
        "mes": {"api_key": {"header": "X-API-Key", "value": MES_API_KEY}},
        "erp": {"basic": ["hub", ERP_PASSWORD]},
    }
    with start_systems(FIXTURES, auth=auth) as running:
        yield running


def settings_from_environment(
    monkeypatch: pytest.MonkeyPatch, mocks: Any, database_url: str, erp_password: str
) -> HubSettings:
    env = {
        "HUB_DATABASE_URL": database_url,
        "HUB_EAM_WSDL": str(WSDL),
        "HUB_RETRY_ATTEMPTS": "2",
        "HUB_RETRY_INITIAL_S": "0.01",
        "HUB_RETRY_MAX_S": "0.05",
        "HUB_BREAKER_RESET_S": "0.1",
        "HUB_PTW__TOKEN": PTW_TOKEN,
        "HUB_EAM__API_KEY": EAM_API_KEY,
        "HUB_MES__API_KEY": MES_API_KEY,
        "HUB_ERP__USERNAME": "hub",
        "HUB_ERP__PASSWORD": erp_password,
        **{f"HUB_{system.upper()}__URL": mocks.urls[system] for system in ("ptw", "eam", "mes", "erp")},
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    upgrade(database_url)
    return HubSettings()


def run_job(settings: HubSettings, instance: DagsterInstance):
    return materialize_sites(
        [*ASSETS, *CHECKS], resources=resources_from_settings(settings), instance=instance, raise_on_error=False
    )


def test_secrets_appear_nowhere_after_good_and_failing_runs(
    guarded_mocks: Any,
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    for base_url in guarded_mocks.base_urls.values():
        httpx.post(f"{base_url}/_admin/reset", timeout=10).raise_for_status()
    good = settings_from_environment(monkeypatch, guarded_mocks, sqlite_url, ERP_PASSWORD)

    with DagsterInstance.ephemeral() as instance:
        clean = run_job(good, instance)
        assert clean.success  # the credentials really are used and accepted
        assert len(admin_state(guarded_mocks, "erp")["documents"]) == 83

        # Second run: the ERP refuses a wrong password, and the PTW answers 503 to every write.
        # A fresh store, so every entry and hold is tried again.
        for system in ("ptw", "erp"):
            httpx.post(f"{guarded_mocks.base_urls[system]}/_admin/reset", timeout=10).raise_for_status()
        set_faults(guarded_mocks, "ptw", {"kind": "status", "status": 503, "method": "PUT"})
        bad = settings_from_environment(
            monkeypatch, guarded_mocks, sqlite_url.replace("hub.db", "second.db"), WRONG_ERP_PASSWORD
        )
        failing = run_job(bad, instance)
        assert not failing.success
        failures = {e.step_key: e for e in failing.all_events if e.event_type_value == "STEP_FAILURE"}
        assert {"erp_postings", "permit_gate_decisions"} <= set(failures)
        assert "401" in failures["erp_postings"].event_specific_data.error.to_string()
        assert "503" in failures["permit_gate_decisions"].event_specific_data.error.to_string()

        records = [record for result in (clean, failing) for run_id in result.run_ids for record in instance.all_logs(run_id)]
        runs = [instance.get_run_by_id(run_id) for result in (clean, failing) for run_id in result.run_ids]

    serialized = [serialize_value(record) for record in records]
    # The search covers error text and metadata: both are in what was serialized.
    assert any("ERP refused the request (HTTP 401)" in text for text in serialized)
    assert any("write_back_failures" in text for text in serialized)
    for record, text in zip(records, serialized):
        assert_no_secret(f"event {record.dagster_event_type}", text)
    for run in runs:
        assert_no_secret("run record", serialize_value(run))
    captured = capfd.readouterr()
    assert "erp_postings" in captured.out + captured.err  # the run did log to the console
    assert_no_secret("stdout", captured.out)
    assert_no_secret("stderr", captured.err)
    assert_no_secret("python logging", caplog.text)
    for settings in (good, bad):
        assert_no_secret("repr(settings)", repr(settings))
        for name, resource in resources_from_settings(settings).items():
            assert_no_secret(f"repr({name} resource)", repr(resource))


def test_refusals_and_reprs_hide_secrets_given_directly() -> None:
    endpoint = SystemEndpoint(url="http://erp.invalid", username="hub", password=ERP_PASSWORD, token=PTW_TOKEN)
    settings = HubSettings(erp=endpoint, mes=SystemEndpoint(url="http://mes.invalid", api_key=MES_API_KEY))

    resources = resources_from_settings(settings)

    # Given in code, yet bound by name: the value waits in this process's environment for the run.
    assert isinstance(resources["erp"].password, EnvVar) and resources["erp"].password.env_var_name == "HUB_ERP__PASSWORD"
    initialised = {name: resources[name].process_config_and_initialize() for name in ("erp", "mes")}
    assert initialised["erp"].password == ERP_PASSWORD
    for text in (repr(settings), str(settings), repr(endpoint), *map(repr, resources.values()), *map(repr, initialised.values())):
        assert_no_secret("repr", text)
    assert "password='**********'" in repr(initialised["erp"]) and "token='**********'" in repr(initialised["erp"])
    assert "api_key='**********'" in repr(initialised["mes"])


@respx.mock(base_url="http://erp.invalid")
def test_a_server_echoing_credentials_does_not_leak_them(respx_mock: respx.MockRouter) -> None:
    """A 401 page that repeats the request's headers back must not carry them into the error."""

    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, text=f"denied: {dict(request.headers)}")

    respx_mock.get("/api/v1/journal-entries").mock(side_effect=echo)
    settings = HubSettings(
        erp=SystemEndpoint(url="http://erp.invalid", username="hub", password=ERP_PASSWORD, api_key=MES_API_KEY)
    )
    client = resources_from_settings(settings)["erp"].client()

    with pytest.raises(VendorRejected, match="HTTP 401") as refused:
        client.find_by_reference("PTW-NJ-2026-0007/labour")

    echoed = str(respx_mock.calls.last.response.text)
    assert MES_API_KEY in echoed  # the server really did echo it
    text = "".join(traceback.format_exception(refused.value))
    assert_no_secret("exception", text)
    assert "**********" in str(refused.value)
