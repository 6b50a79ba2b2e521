"""The lineage as a data engineer sees it: headless Chromium on the Dagster UI of a Dagster home
where `hub demo` ran.

The browser is the distribution's Chromium (`/usr/bin/chromium`, installed by `.ci/run`),
driven by `playwright` from PyPI through `executable_path`: no browser download. Each page's
text is written to `lineage_pages.txt` in the test's temporary folder and printed (`-s`).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from dagster import AssetKey, DagsterInstance
from playwright.sync_api import Page, sync_playwright

REPO = Path(__file__).parents[1]
CHROMIUM = "/usr/bin/chromium"
# Each group, and how many of its assets have checks.
CHECKED_ASSETS = {"analytics": 1, "eam": 2, "erp": 1, "gate": 2, "mes": 2, "ptw": 2}
GROUPS = tuple(CHECKED_ASSETS)
# Every group of the global lineage open, as the UI's "Expand all groups" leaves it.
EXPANDED = "?expanded=" + ",".join(f"global@global:{group}" for group in GROUPS)
SYSTEMS = ("ptw", "eam", "mes", "erp", "ptw_holds", "erp_journal_entries")
ASSETS = (
    "permits", "equipment", "maintenance_records", "process_parameters", "equipment_clearance",
    "permit_gate_decisions", "safety_cost_entries", "erp_postings", "permits_of_other_sites",
)
START_WAIT_S = 180
CHECK_EXECUTIONS = """query ($asset: AssetKeyInput!, $check: String!) {
  assetCheckExecutions(assetKey: $asset, checkName: $check, limit: 10) { partition evaluation { partition } }
}"""
PAGE_WAIT_S = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def without_hub_settings() -> dict[str, str]:
    """The environment less `HUB_*` and `DAGSTER_HOME`: the demo and the UI use their defaults,
    as on a fresh clone (the demo keeps its Dagster home in its workdir only when none is set)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("HUB_") and k != "DAGSTER_HOME"}


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("demo")
    hub = Path(sys.executable).with_name("hub")
    done = subprocess.run(
        [str(hub), "demo", "--workdir", str(workdir)], cwd=workdir, env=without_hub_settings(),
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return workdir / "dagster_home"


@pytest.fixture(scope="module")
def ui(demo_home) -> Iterator[str]:
    port = free_port()
    webserver = Path(sys.executable).with_name("dagster-webserver")
    log = demo_home.parent / "webserver.log"
    with log.open("w", encoding="utf-8") as out:
        server = subprocess.Popen(
            [str(webserver), "-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
            cwd=demo_home.parent, env={**without_hub_settings(), "DAGSTER_HOME": str(demo_home)},
            stdout=out, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_WAIT_S
        while True:
            try:
                reply = httpx.post(f"{base}/graphql", json={"query": "{ assetNodes { id } }"}, timeout=10).json()
                if reply["data"]["assetNodes"]:
                    break
            except (httpx.HTTPError, KeyError, TypeError, ValueError):
                pass
            assert server.poll() is None, f"dagster-webserver exited: {log.read_text(encoding='utf-8')[-3000:]}"
            assert time.monotonic() < deadline, "the UI did not serve the asset graph in time"
            time.sleep(1)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def browser_page() -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield browser.new_page(viewport={"width": 2400, "height": 1600})
        finally:
            browser.close()


def page_text(page: Page, url: str, shown: Callable[[str], bool], pages_file: Path) -> str:
    """The page's text once `shown` holds for it (the UI fills a page in as its queries answer),
    kept in `pages_file` for whoever reads the run."""
    page.goto(url)
    deadline = time.monotonic() + PAGE_WAIT_S
    while not shown(text := page.inner_text("body")) and time.monotonic() < deadline:
        page.wait_for_timeout(500)
    with pages_file.open("a") as out:
        out.write(f"===== {url}\n{text}\n")
    print(f"===== {url}\n{text}")
    return text


def lines(text: str) -> set[str]:
    return set(text.split("\n"))


CHECK_STATES = re.compile(r"^\d+ / \d+ Passed$", re.M)


def test_the_lineage_shows_systems_assets_checks_and_their_latest_metadata(ui, browser_page, demo_home, tmp_path):
    pages = tmp_path / "lineage_pages.txt"

    # The lineage: every node, with its kinds, and for each of the ten assets with checks how
    # many of them passed.
    # The whole graph no longer fits one screen at a readable zoom: each group's lineage shows its nodes.
    expected = {*SYSTEMS, *ASSETS, "soap", "rest", "Python", "SQLite"}
    seen: set[str] = set()
    for group, with_checks in CHECKED_ASSETS.items():
        url = f"{ui}/locations/hub.definitions/asset-groups/{group}"
        text = page_text(browser_page, url, lambda t: len(CHECK_STATES.findall(t)) == with_checks, pages)
        assert len(CHECK_STATES.findall(text)) == with_checks, group
        seen |= lines(text)
    assert expected <= seen

    # The gate's decisions selected (the UI then shows its neighbourhood): the sidebar.
    sidebar = {
        "gate_decisions_written_back", "gate_switched_on", "Passed", "Code Version",
        "dagster/row_count", "holds_written", "dagster/column_schema",
    }
    text = page_text(browser_page, f"{ui}/asset-groups/permit_gate_decisions{EXPANDED}", lambda t: sidebar <= lines(t), pages)
    assert sidebar <= lines(text)
    assert re.search(r"^gate:[0-9a-f]{12}\+ptw:[0-9a-f]{12}$", text, re.M), "no code version from the rule and flavor files"

    # A system: what it is, how it is reached, no credentials.
    system = {"flavor", "eam.yaml", "url", "http://127.0.0.1:8102/eam/soap"}
    described = "Enterprise asset management (maintenance) (flavor eam.yaml); not materialized by the hub."
    text = page_text(browser_page, f"{ui}/asset-groups/eam{EXPANDED}", lambda t: system <= lines(t) and described in t, pages)
    assert system <= lines(text) and described in text

    # The EAM pull's checks, the freshness of each site's EAM data among them.
    checks = {"eam_data_fresh", "devices_found_in_eam", "vendor_fields_mapped"}
    text = page_text(browser_page, f"{ui}/asset-groups/equipment{EXPANDED}", lambda t: checks <= lines(t), pages)
    assert checks <= lines(text)

    # The latest materialization's metadata, as the demo's run recorded it, and the table's columns.
    with DagsterInstance.from_config(str(demo_home)) as instance:
        latest = instance.get_latest_materialization_event(AssetKey("permit_gate_decisions")).asset_materialization
    row_count = f"Row count\n{latest.metadata['dagster/row_count'].value}"
    shown = {"holds_written", latest.partition, "permit_id", "fingerprint"}
    text = page_text(browser_page, f"{ui}/assets/permit_gate_decisions", lambda t: row_count in t and shown <= lines(t), pages)
    assert row_count in text and shown <= lines(text)


def test_check_results_are_recorded_per_site(ui):
    """Each site's evaluations are a history of their own: the UI plots and lists them by site."""
    for asset, check in (("equipment", "eam_data_fresh"), ("permit_gate_decisions", "gate_switched_on"), ("permits", "vendor_fields_mapped")):
        variables = {"asset": {"path": [asset]}, "check": check}
        reply = httpx.post(f"{ui}/graphql", json={"query": CHECK_EXECUTIONS, "variables": variables}, timeout=30).json()
        executions = reply["data"]["assetCheckExecutions"]
        assert sorted(e["partition"] for e in executions) == ["HZ02", "NJ01"], (asset, check)
        assert {e["evaluation"]["partition"] for e in executions} == {"HZ02", "NJ01"}, (asset, check)
