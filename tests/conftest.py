from pathlib import Path

import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import uuid

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

import mock_systems as mock_systems_package
from hub.connectors.breaker import close_all_breakers
from hub.settings import HubSettings, SystemEndpoint
from hub.store.migrate import upgrade
from mock_systems.servers import RunningSystems, start_systems

REPO_ROOT = Path(__file__).parents[1]
EAM_WSDL = Path(mock_systems_package.__file__).with_name("eam.wsdl")
PG_URL = os.environ.get("HUB_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")


@pytest.fixture(autouse=True)
def closed_breakers():
    """Circuit breakers live per process; each test starts with every circuit closed."""
    close_all_breakers()
    yield
    close_all_breakers()


def _environment_kept() -> Iterator[None]:
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(autouse=True)
def own_environment():
    """Binding a secret by name (or opening the default Dagster home) writes into this process's
    environment: each test gets the environment back as it found it, so no test's settings leak
    into the next."""
    yield from _environment_kept()


@pytest.fixture(autouse=True, scope="module")
def own_module_environment():
    """The same for a module's fixtures: a module-scoped demo run sets DAGSTER_HOME, and the next
    module's `hub demo` must not inherit it."""
    yield from _environment_kept()


@pytest.fixture
def http():
    """A plain HTTP client for reading the mocks as any client would."""
    with httpx.Client(timeout=10) as client:
        yield client


@pytest.fixture(scope="session")
def mock_systems():
    """The mock systems (both flavors) on free loopback ports, serving `fixtures/`, for the whole session."""
    with start_systems(REPO_ROOT / "fixtures") as running:
        yield running


@pytest.fixture
def fresh_mocks(mock_systems: RunningSystems):
    """The session's mocks, reset to the fixture state: no holds, documents, log or faults."""
    with httpx.Client(timeout=10) as client:
        for base_url in mock_systems.base_urls.values():
            client.post(f"{base_url}/_admin/reset").raise_for_status()
    yield mock_systems


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'hub.db'}"


@pytest.fixture
def pg_url():
    """A throwaway schema in the local PostgreSQL; missing PostgreSQL fails the test, never skips it."""
    schema = f"test_{uuid.uuid4().hex}"
    admin = create_engine(PG_URL, poolclass=NullPool)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except OperationalError as exc:  # pragma: no cover - only when the server is down
        admin.dispose()
        pytest.fail(f"PostgreSQL is required for these tests and is not reachable: {exc}")
    url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    yield url.render_as_string(hide_password=False)
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def make_settings():
    """Settings pointing at given mock URLs, with a migrated store, quick retries and quick circuit resets."""

    def make(database_url: str, urls: dict[str, str], **overrides) -> HubSettings:
        upgrade(database_url)
        endpoints = {name: SystemEndpoint(url=urls[name]) for name in ("ptw", "eam", "mes", "erp")}
        defaults = {
            "retry_attempts": 3,
            "retry_initial_s": 0.01,
            "retry_max_s": 0.5,
            "read_timeout_s": 10,
            "breaker_reset_s": 0.1,
        }
        return HubSettings(
            database_url=database_url, eam_wsdl=str(EAM_WSDL), **{**defaults, **endpoints, **overrides}
        )

    return make


@contextmanager
def loopback_server(handler: type[BaseHTTPRequestHandler], wrap_socket=None) -> Iterator[str]:
    """A throwaway HTTP(S) server on loopback for replies the mock systems never give."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if wrap_socket is not None:
        server.socket = wrap_socket(server.socket)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{'https' if wrap_socket else 'http'}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def reply_json(handler: BaseHTTPRequestHandler, body: bytes, status: int = 200) -> None:
    """Answer a loopback server's request with a JSON body."""
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


class SitesResult:
    """The partition runs of every site, read as one run of the whole plant."""

    def __init__(self, results: list) -> None:
        self.results = results
        self.run_ids = [result.run_id for result in results]

    @property
    def success(self) -> bool:
        return all(result.success for result in self.results)

    @property
    def all_events(self) -> list:
        return [event for result in self.results for event in result.all_events]

    def get_asset_materialization_events(self) -> list:
        return [event for result in self.results for event in result.get_asset_materialization_events()]

    def get_asset_check_evaluations(self) -> list:
        return [event for result in self.results for event in result.get_asset_check_evaluations()]


def materialize_sites(assets, sites=("NJ01", "HZ02"), **kwargs) -> SitesResult:
    """`dagster.materialize` once per site partition, one after another, as `hub sync` runs them."""
    from dagster import materialize

    # The site as the run's partition tag, as the schedules give it: a checks-only selection
    # cannot take a partition key.
    return SitesResult([materialize(assets, tags={"dagster/partition": site}, **kwargs) for site in sites])


@contextmanager
def mock_systems_cli(*options: str) -> Iterator[queue.Queue]:
    """`mock-systems serve` on free ports with `options`, as a process; yields the lines it prints.
    It must stop cleanly on SIGTERM when the block ends (killed if it does not)."""
    command = [sys.executable, "-m", "mock_systems", "serve", *options]
    command += [arg for name in ("ptw", "eam", "mes", "erp", "eam-oslc", "mes-odata") for arg in (f"--{name}-port", "0")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO_ROOT)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    try:
        yield lines
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
