from pathlib import Path

import httpx
import pytest

from mock_systems.servers import RunningSystems, start_systems

REPO_ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="session")
def mock_systems():
    """The four mock systems on free loopback ports, serving `fixtures/`, for the whole session."""
    with start_systems(REPO_ROOT / "fixtures") as running:
        yield running


@pytest.fixture
def fresh_mocks(mock_systems: RunningSystems):
    """The session's mocks, reset to the fixture state: no holds, documents, log or faults."""
    with httpx.Client(timeout=10) as client:
        for base_url in mock_systems.base_urls.values():
            client.post(f"{base_url}/_admin/reset").raise_for_status()
    yield mock_systems
