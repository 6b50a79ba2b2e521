"""What the Dagster UI serves shows secrets by variable name only, wherever they were set.

Two real `dagster-webserver`s load the code location as an operator starts it: one with
secrets in the environment and in `hub.env` (found in the working directory), one whose
`hub.env` misspells a secret-bearing variable, so the location fails to load. GraphQL is
asked for the resources' configured values and for the load error; the webservers' own
output and every file of their Dagster homes are searched too.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import pytest

from hub.resources import resources_from_settings
from hub.settings import HubSettings, SettingsError

REPO = Path(__file__).parents[1]
START_WAIT_S = 60

ENV_TOKEN = "erp-token-env-K4pQ8-do-not-leak"
ENV_PASSWORD = "ptw-password-env-T6wR3-do-not-leak"
FILE_API_KEY = "mes-apikey-file-J9sD2-do-not-leak"
FILE_DB_PASSWORD = "db-password-file-V1yN7-do-not-leak"
MISSPELT_PASSWORD = "erp-password-misspelt-C5hG0-do-not-leak"
SECRETS = (ENV_TOKEN, ENV_PASSWORD, FILE_API_KEY, FILE_DB_PASSWORD, MISSPELT_PASSWORD)

LOCATION = "hub.definitions"
WORKSPACE_QUERY = """{ workspaceOrError { ... on Workspace { locationEntries { name locationOrLoadError {
  __typename
  ... on RepositoryLocation { repositories { name } }
  ... on PythonError { message stack errorChain { error { message stack } } }
} } } } }"""
RESOURCES_QUERY = """query ($selector: RepositorySelector!) {
  allTopLevelResourceDetailsOrError(repositorySelector: $selector) {
    ... on ResourceDetailsList { results {
      name description
      configFields { name description }
      configuredValues { key value type }
    } }
  }
  utilizedEnvVarsOrError(repositorySelector: $selector) { ... on EnvVarWithConsumersList { results { envVarName } } }
}"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assert_no_secret(where: str, text: str) -> None:
    leaked = [secret for secret in SECRETS if secret in text]
    assert not leaked, f"{where} shows {len(leaked)} secret(s)"


@dataclass
class Webserver:
    """One `dagster-webserver` on a workspace of its own, with its output in a file."""

    home: Path
    process: subprocess.Popen
    port: int
    output: Path

    @classmethod
    def start(cls, workdir: Path, env: dict[str, str]) -> "Webserver":
        home = workdir / "dagster_home"
        home.mkdir(parents=True)
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        (workdir / "workspace.yaml").write_text(f"load_from:\n  - python_module: {LOCATION}\n")
        port, output = free_port(), workdir / "webserver.log"
        clean = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
        with output.open("wb") as log:
            process = subprocess.Popen(
                [str(Path(sys.executable).with_name("dagster-webserver")), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                cwd=workdir,  # where settings find hub.env, as when an operator starts it
                env={**clean, **env, "DAGSTER_HOME": str(home), "PYTHONPATH": str(REPO)},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return cls(home, process, port, output)

    def query(self, query: str, **variables: Any) -> dict[str, Any]:
        reply = httpx.post(f"http://127.0.0.1:{self.port}/graphql", json={"query": query, "variables": variables}, timeout=30)
        reply.raise_for_status()
        body = reply.json()
        assert "errors" not in body, body["errors"]
        return body["data"]

    def location(self, deadline: float) -> dict[str, Any]:
        """The code location once it has loaded or failed to."""
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"dagster-webserver exited: {self.output.read_text()[-2000:]}"
            try:
                entries = self.query(WORKSPACE_QUERY)["workspaceOrError"]["locationEntries"]
                loaded = entries[0]["locationOrLoadError"] if entries else None
                if loaded is not None:
                    return loaded
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"the code location did not load within {START_WAIT_S} s")

    def stop(self) -> str:
        """Everything the webserver and its code server wrote, and every file of its Dagster home."""
        self.process.terminate()
        self.process.wait(timeout=30)
        files = [path.read_bytes().decode(errors="replace") for path in self.home.rglob("*") if path.is_file()]
        return "\n".join([self.output.read_text(errors="replace"), *files])


@dataclass
class Served:
    location: dict[str, Any]
    trace: str  # the webserver's output and its Dagster home, once it has stopped
    resources: dict[str, Any] | None = None
    env_vars: list[str] | None = None


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Served]]:
    """A well configured location and a misconfigured one, started side by side."""
    good, bad = tmp_path_factory.mktemp("good"), tmp_path_factory.mktemp("bad")
    # Only the token of the ERP is set: its URL and the rest keep their defaults.
    (good / "hub.env").write_text(
        f"HUB_MES__API_KEY={FILE_API_KEY}\nHUB_DATABASE_URL=postgresql+psycopg2://hub:{FILE_DB_PASSWORD}@127.0.0.1:9/hub\n"
    )
    (bad / "hub.env").write_text(f"HUB_ERP__PASWORD={MISSPELT_PASSWORD}\n")
    secrets_in_env = {"HUB_ERP__TOKEN": ENV_TOKEN, "HUB_PTW__USERNAME": "hub", "HUB_PTW__PASSWORD": ENV_PASSWORD}
    servers = {"good": Webserver.start(good, secrets_in_env), "bad": Webserver.start(bad, secrets_in_env)}
    try:
        deadline = time.monotonic() + START_WAIT_S
        locations = {name: server.location(deadline) for name, server in servers.items()}
        resources = env_vars = None
        if locations["good"]["__typename"] == "RepositoryLocation":
            selector = {"repositoryLocationName": LOCATION, "repositoryName": locations["good"]["repositories"][0]["name"]}
            data = servers["good"].query(RESOURCES_QUERY, selector=selector)
            resources = {r["name"]: r for r in data["allTopLevelResourceDetailsOrError"]["results"]}
            env_vars = [v["envVarName"] for v in data["utilizedEnvVarsOrError"]["results"]]
    finally:
        traces = {name: server.stop() for name, server in servers.items()}
    yield {
        "good": Served(locations["good"], traces["good"], resources, env_vars),
        "bad": Served(locations["bad"], traces["bad"]),
    }


def configured(resource: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {v["key"]: (v["value"], v["type"]) for v in resource["configuredValues"]}


def test_resources_show_secrets_by_variable_name(served: dict[str, Served]) -> None:
    good = served["good"]
    assert good.location["__typename"] == "RepositoryLocation", good.location
    assert good.resources is not None
    assert_no_secret("resources in GraphQL", repr(good.resources))
    assert configured(good.resources["erp"])["token"] == ("HUB_ERP__TOKEN", "ENV_VAR")  # from the environment
    assert configured(good.resources["ptw"])["password"] == ("HUB_PTW__PASSWORD", "ENV_VAR")
    assert configured(good.resources["mes"])["api_key"] == ("HUB_MES__API_KEY", "ENV_VAR")  # from hub.env
    assert configured(good.resources["store"])["database_url"] == ("HUB_DATABASE_URL", "ENV_VAR")
    assert configured(good.resources["erp"])["url"][0] == '"http://127.0.0.1:8104"'  # the default kept
    assert {"HUB_ERP__TOKEN", "HUB_PTW__PASSWORD", "HUB_MES__API_KEY", "HUB_DATABASE_URL"} <= set(good.env_vars or ())
    assert_no_secret("webserver output and Dagster home", good.trace)


def test_resources_and_their_fields_are_described(served: dict[str, Served]) -> None:
    resources = served["good"].resources
    assert resources is not None
    for name, resource in resources.items():
        assert resource["description"], f"resource {name} has no description"
        undescribed = [f["name"] for f in resource["configFields"] if not f["description"]]
        assert not undescribed, f"{name}: fields without a description: {undescribed}"


def test_the_load_error_names_the_variable_not_its_value(served: dict[str, Served]) -> None:
    bad = served["bad"]
    assert bad.location["__typename"] == "PythonError", bad.location
    shown = repr(bad.location)
    assert_no_secret("load error in GraphQL", shown)
    assert_no_secret("webserver output and Dagster home", bad.trace)
    assert "HUB_ERP__PASWORD (erp.pasword): Extra inputs are not permitted" in shown
    assert "HUB_ERP__PASWORD" in bad.trace  # the webserver did log the failure


# -- the same, without a webserver ---------------------------------------------------------------


@pytest.fixture
def environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """No `HUB_*` variable from outside, a working directory of its own (for hub.env), and
    whatever binding resources puts into os.environ gone afterwards."""
    monkeypatch.chdir(tmp_path)
    with mock.patch.dict(os.environ, clear=False):
        for name in [k for k in os.environ if k.startswith("HUB_")]:
            del os.environ[name]
        yield tmp_path


def test_one_nested_variable_keeps_its_siblings_defaults(environment: Path) -> None:
    os.environ["HUB_ERP__TOKEN"] = ENV_TOKEN
    (environment / "hub.env").write_text("HUB_GATE_API__MAX_BODY_BYTES=1024\n")

    settings = HubSettings()

    assert settings.erp.url == "http://127.0.0.1:8104" and settings.erp.api_key_header == "X-API-Key"
    assert settings.erp.token is not None and settings.erp.token.get_secret_value() == ENV_TOKEN
    assert settings.gate_api.max_body_bytes == 1024 and settings.gate_api.requests_per_second == 200
    assert HubSettings(erp={"token": ENV_TOKEN}).erp.url == "http://127.0.0.1:8104"


def test_a_settings_error_names_variables_never_values(environment: Path) -> None:
    os.environ["HUB_ERP__PASWORD"] = MISSPELT_PASSWORD
    (environment / "hub.env").write_text(f"HUB_RETRY_ATTEMPTS={ENV_TOKEN}\nHUB_PTW={{\"token\": 7}}\n")

    with pytest.raises(SettingsError) as raised:
        HubSettings()

    text = str(raised.value)
    assert "HUB_ERP__PASWORD (erp.pasword): Extra inputs are not permitted" in text
    assert "HUB_RETRY_ATTEMPTS (retry_attempts): Input should be a valid integer" in text
    assert "HUB_PTW__TOKEN (ptw.token)" in text
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    assert_no_secret("settings error", text + repr(raised.value.errors()) + raised.value.json())
    assert "7" not in repr([e["input"] for e in raised.value.errors()])


def test_a_secret_from_hub_env_is_bound_by_name_and_resolves_in_this_process(environment: Path) -> None:
    (environment / "hub.env").write_text(
        f"HUB_MES__API_KEY={FILE_API_KEY}\nHUB_DATABASE_URL=postgresql+psycopg2://hub:{FILE_DB_PASSWORD}@db/hub\n"
    )
    settings = HubSettings()
    assert FILE_DB_PASSWORD not in repr(settings) and "hub:**********@db" in repr(settings)

    resources = resources_from_settings(settings)

    assert resources["mes"].api_key.env_var_name == "HUB_MES__API_KEY"  # type: ignore[union-attr]
    assert resources["mes"].process_config_and_initialize().api_key == FILE_API_KEY
    assert resources["store"].database_url.env_var_name == "HUB_DATABASE_URL"  # type: ignore[attr-defined]
    assert os.environ["HUB_MES__API_KEY"] == FILE_API_KEY  # what run and step processes inherit
    assert_no_secret("resources", repr(resources))
