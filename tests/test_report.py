"""`hub report` after a sync of the fixture plant, opened in headless Chromium: every section and
chart is there and loaded, and text typed at the PTW is shown as text, never run; the rule files
it reads are the ones the settings name."""

from datetime import timedelta
from pathlib import Path

import pytest

from conftest import materialize_sites
from dagster import DagsterInstance
from playwright.sync_api import sync_playwright
from typer.testing import CliRunner

from hub.cli import app
from hub.definitions import ASSETS, hub_resources
from hub.store.repository import HubStore

CHROMIUM = "/usr/bin/chromium"
SECTIONS = ["approval", "response", "alerts", "overdue", "similar", "hazards", "gate", "height_quality", "lifting_failures"]
CHARTS = 7
PACKAGED_ANALYTICS = Path(__file__).parents[1] / "hub/rules/analytics.yaml"
HOSTILE = '<img src=x onerror="window.injected=1">'


def test_the_report_renders_every_section_and_chart_in_chromium(fresh_mocks, sqlite_url, make_settings, tmp_path: Path, monkeypatch):
    settings = make_settings(sqlite_url, fresh_mocks.urls)
    with DagsterInstance.ephemeral() as instance:
        assert materialize_sites(ASSETS, resources=hub_resources(settings), instance=instance).success
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
        assert images.count() == CHARTS
        loaded = page.evaluate("Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)")
        assert loaded == [True] * CHARTS
        for section in ("height_quality", "lifting_failures"):
            assert page.locator(f"section#{section} img").count() == 1, section
            assert page.locator(f"section#{section} tbody tr").count() > 0, section
        assert page.evaluate("window.injected") is None
        assert HOSTILE in page.locator("section#approval").inner_text()
        # The fixture plant's planted effects, as the assets flag them: a failing lifted device, and
        # the tank farm whose work at height rose with its defect rate (fixtures/README.md).
        assert "Flagged: NJ01/NJ-R-202." in page.locator("section#lifting_failures").inner_text()
        assert "Flagged: NJ01/罐区." in page.locator("section#height_quality").inner_text()
        browser.close()


def test_an_unknown_site_is_a_usage_error(sqlite_url, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HUB_DATABASE_URL", sqlite_url)
    result = CliRunner().invoke(app, ["report", "--site", "XX99", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "XX99" in result.output


def test_the_report_reads_the_analytics_rule_file_the_settings_name(sqlite_url, make_settings, tmp_path: Path, monkeypatch):
    make_settings(sqlite_url, {name: "http://127.0.0.1:9" for name in ("ptw", "eam", "mes", "erp")})  # migrates the store
    monkeypatch.setenv("HUB_DATABASE_URL", sqlite_url)
    edited = tmp_path / "analytics.yaml"
    edited.write_text(PACKAGED_ANALYTICS.read_text(encoding="utf-8").replace("response_rate_threshold: 0.92", "response_rate_threshold: 0.5"))
    outputs = {}
    for name, rules in (("packaged", None), ("edited", edited)):
        if rules:
            monkeypatch.setenv("HUB_ANALYTICS_RULES_FILE", str(rules))
        result = CliRunner().invoke(app, ["report", "--out", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        outputs[name] = (tmp_path / name / "index.html").read_text(encoding="utf-8")
    assert "threshold 92%" in outputs["packaged"] and "threshold 50%" in outputs["edited"]


@pytest.mark.parametrize("variable", ["HUB_ANALYTICS_RULES_FILE", "HUB_CROSS_SYSTEM_RULES_FILE"])
@pytest.mark.parametrize("content", [None, "version: x\nno_such_threshold: 1\n"])
def test_a_missing_or_invalid_rule_file_is_a_usage_error_naming_it(sqlite_url, tmp_path: Path, monkeypatch, variable, content):
    rules = tmp_path / "rules.yaml"
    if content is not None:
        rules.write_text(content, encoding="utf-8")
    monkeypatch.setenv("HUB_DATABASE_URL", sqlite_url)
    monkeypatch.setenv(variable, str(rules))
    result = CliRunner().invoke(app, ["report", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert str(rules) in result.output
    assert ("cannot read" if content is None else "no_such_threshold") in result.output
    assert not (tmp_path / "out").exists()
