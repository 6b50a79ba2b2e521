"""`hub report` after a sync of the fixture plant, opened in headless Chromium: every section and
chart is there and loaded, and text typed at the PTW is shown as text, never run."""

from datetime import timedelta
from pathlib import Path

from conftest import materialize_sites
from dagster import DagsterInstance
from playwright.sync_api import sync_playwright
from typer.testing import CliRunner

from hub.cli import app
from hub.definitions import ASSETS
from hub.resources import resources_from_settings
from hub.store.repository import HubStore

CHROMIUM = "/usr/bin/chromium"
SECTIONS = ["approval", "response", "alerts", "overdue", "similar", "hazards", "gate"]
HOSTILE = '<img src=x onerror="window.injected=1">'


def test_the_report_renders_every_section_and_chart_in_chromium(fresh_mocks, sqlite_url, make_settings, tmp_path: Path, monkeypatch):
    settings = make_settings(sqlite_url, fresh_mocks.urls)
    with DagsterInstance.ephemeral() as instance:
        assert materialize_sites(ASSETS, resources=resources_from_settings(settings), instance=instance).success
    store = HubStore(sqlite_url)
    permit = store.load_permits(site="NJ01")[0]
    # An area whose name is markup: the approval table lists it, escaped.
    late = permit.model_copy(update={"permit_id": "PTW-NJ-XSS", "area": HOSTILE, "submitted_at": permit.updated_at,
                                     "approved_at": permit.updated_at + timedelta(minutes=30),
                                     "updated_at": permit.updated_at + timedelta(days=1)})
    store.upsert_permits([late], permit.updated_at)

    monkeypatch.setenv("HUB_DATABASE_URL", sqlite_url)
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["report", "--days", "30", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "index.html").is_file()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page()
        page.goto((out / "index.html").as_uri())
        page.wait_for_load_state("load")
        for section in SECTIONS:
            assert page.locator(f"section#{section} h2").count() == 1, section
        images = page.locator("img")
        assert images.count() == 5
        loaded = page.evaluate("Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)")
        assert loaded == [True] * 5
        assert page.evaluate("window.injected") is None
        assert HOSTILE in page.locator("section#approval").inner_text()
        browser.close()


def test_an_unknown_site_is_a_usage_error(sqlite_url, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HUB_DATABASE_URL", sqlite_url)
    result = CliRunner().invoke(app, ["report", "--site", "XX99", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "XX99" in result.output
