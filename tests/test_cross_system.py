"""The cross-system analyses: hand-computed figures on tiny data, the rule file, the planted
effects of a generated plant, and the assets against the mocks."""

import json
import math
import statistics
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, materialize

from hub.analytics.cross_system import (
    failure_findings,
    height_against_quality,
    height_findings,
    lifting_failure_intervals,
)
from hub.analytics.report import build_report
from hub.assets.equipment import eam_pull
from hub.assets.permits import permits as permits_asset
from hub.assets.analytics import CROSS_SYSTEM_KEYS, permit_analytics
from hub.assets.quality import mes_quality_rates
from hub.definitions import hub_resources
from hub.logic.analytics_rules import load_analytics_rules
from hub.logic.cross_system_rules import (
    CrossSystemRules,
    FailureIntervalRules,
    HeightQualityRules,
    load_cross_system_rules,
)
from hub.mappings.engine import load_mapping
from hub.model import MaintenanceRecord, Permit, QualityRate
from hub.steps.analytics import read_analytics
from hub.store.migrate import upgrade
from hub.store.repository import HubStore
from hub.synthetic_plant import generate_plant
from hub.yamlfile import ConfigError

UTC = timezone.utc
PNG = b"\x89PNG\r\n\x1a\n"
RULES = CrossSystemRules(
    version="test",
    height_quality=HeightQualityRules(min_months=4, min_correlation=0.9),
    failure_intervals=FailureIntervalRules(recent_intervals=3, min_earlier_intervals=2, shortening_factor=2),
)


def permit(n: int, start: datetime, area: str = "A", permit_type: str = "work_at_height", status: str = "closed",
           devices: tuple[str, ...] = (), site: str = "NJ01") -> Permit:
    return Permit(
        permit_id=f"PTW-{n}", permit_type=permit_type, risk_level="yellow", site=site, area=area,
        device_ids=devices, applicant="王强", planned_start=start, planned_end=start + timedelta(hours=4),
        status=status, submitted_at=start - timedelta(days=1), updated_at=start,
    )


def rate(workshop: str, month: int, value: str) -> QualityRate:
    return QualityRate(site="NJ01", workshop=workshop, month=date(2026, month, 1), defect_rate=Decimal(value),
                       units_inspected=1000)


def mid(month: int) -> datetime:
    return datetime(2026, month, 15, 1, 0, tzinfo=UTC)


def height_data():
    counts = {"A": [1, 2, 3, 4], "B": [0, 1, 0, 1], "C": [1, 2, 3], "D": [4, 3, 2, 1]}
    permits, n = [], 0
    for area, per_month in counts.items():
        for month, count in enumerate(per_month, start=1):
            for _ in range(count - (area == "A" and month == 4)):
                n += 1
                permits.append(permit(n, mid(month), area))
    permits += [
        # 01:00 on 1 April in Shanghai: April, not March.
        permit(100, datetime(2026, 3, 31, 17, 0, tzinfo=UTC), "A"),
        permit(101, mid(2), "A", status="cancelled"),  # never worked
        permit(102, mid(2), "A", permit_type="hot_work"),  # not work at height
        permit(103, mid(6), "A"),  # no rate that month: not compared
    ]
    rates = (
        [rate("A", m, v) for m, v in zip(range(1, 5), ("0.01", "0.02", "0.03", "0.05"))]
        + [rate("B", m, "0.02") for m in range(1, 5)]
        + [rate("C", m, v) for m, v in zip(range(1, 4), ("0.01", "0.02", "0.03"))]
        + [rate("D", m, v) for m, v in zip(range(1, 5), ("0.05", "0.03", "0.02", "0.01"))]
    )
    return permits, rates


def test_work_at_height_against_quality_by_hand():
    result = height_against_quality(*height_data(), RULES)
    a = result.monthly[result.monthly["workshop"] == "A"]
    assert a["height_permits"].tolist() == [1, 2, 3, 4]
    assert a["month"].tolist() == [date(2026, m, 1) for m in range(1, 5)]
    by = result.workshops.set_index("workshop")
    # x = 1,2,3,4; y = .01,.02,.03,.05: Sxy = .065, Sxx = 5, Syy = .000875.
    assert by.loc["A", "correlation"] == pytest.approx(0.065 / math.sqrt(5 * 0.000875))
    assert by.loc["A", "permit_slope"] == pytest.approx(1.0)
    assert by.loc["A", "rate_slope"] == pytest.approx(0.013)
    assert by.loc["A", "months"] == 4 and by.loc["A", "height_permits"] == 10 and by.loc["A", "rising_together"]
    assert math.isnan(by.loc["B", "correlation"]) and not by.loc["B", "rising_together"]  # a flat rate
    assert by.loc["C", "correlation"] == pytest.approx(1.0) and not by.loc["C", "rising_together"]  # 3 months
    assert by.loc["D", "correlation"] > 0.9 and not by.loc["D", "rising_together"]  # both fall
    assert result.monthly[result.monthly["workshop"] == "B"]["height_permits"].tolist() == [0, 1, 0, 1]
    # What asset and report show: the flagged workshop first, then by correlation.
    found = height_findings(result)
    assert found.flagged == ["NJ01/A"] and found.table["workshop"].tolist()[:2] == ["A", "C"]
    assert found.chart.startswith(PNG)


def failure(record_id: str, device: str, day: float | None, kind: str = "corrective", status: str = "closed",
            site: str = "NJ01") -> MaintenanceRecord:
    reported = None if day is None else datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=day)
    return MaintenanceRecord(record_id=record_id, site=site, device_id=device, kind=kind, status=status,
                             reported_at=reported, updated_at=datetime(2026, 12, 1, tzinfo=UTC))


def test_lifting_failure_intervals_by_hand():
    lifting = [
        permit(1, mid(11), permit_type="lifting", status="approved", devices=("X", "Y")),
        permit(2, mid(11), permit_type="lifting", status="submitted", devices=("Z",)),
        permit(3, mid(11), permit_type="hot_work", status="approved", devices=("W",)),
    ]
    records = [failure(f"X{i}", "X", day, kind="emergency" if i % 2 else "corrective")
               for i, day in enumerate((0, 100, 190, 270, 300, 320, 330))]
    records += [
        failure("X-can", "X", 310, status="cancelled"),  # no failure
        failure("X-pm", "X", 315, kind="preventive"),  # no failure
        failure("X-undated", "X", None),  # cannot be placed in time
        failure("X-other-site", "X", 325, site="HZ02"),  # another site's device X
    ]
    records += [failure(f"Y{i}", "Y", day) for i, day in enumerate((0, 50, 100, 140, 170, 200))]
    records += [failure(f"Z{i}", "Z", day) for i, day in enumerate((0, 10, 20))]
    records += [failure(f"W{i}", "W", day) for i, day in enumerate((0, 100, 200, 210, 215, 218))]
    result = lifting_failure_intervals(lifting, records, RULES)
    by = result.devices.set_index("device_id")
    assert list(by.index) == ["X", "Y", "Z"]  # W is named by no lifting permit
    x = result.intervals[result.intervals["device_id"] == "X"]
    assert x["interval_days"].tolist()[1:] == [100, 90, 80, 30, 20, 10]
    assert by.loc["X", "failures"] == 7
    assert (by.loc["X", "earlier_mean_days"], by.loc["X", "recent_mean_days"]) == (90, 20)
    assert by.loc["X", "shortening"] == pytest.approx(4.5) and by.loc["X", "failing_faster"]
    # Y: 50, 50 before 40, 30, 30: earlier 50 against recent 33.3, 1.5 times sooner: under the factor.
    assert by.loc["Y", "shortening"] == pytest.approx(1.5) and not by.loc["Y", "failing_faster"]
    # Z: two intervals are too few for a trend.
    assert by.loc["Z", "failures"] == 3 and math.isnan(by.loc["Z", "shortening"]) and not by.loc["Z", "failing_faster"]
    found = failure_findings(result)
    assert found.flagged == ["NJ01/X"] and found.table["device_id"].tolist() == ["X", "Y", "Z"]


def test_no_records_give_empty_tables():
    height = height_against_quality([], [], RULES)
    failures = lifting_failure_intervals([], [], RULES)
    assert height.monthly.empty and height.workshops.empty
    assert failures.intervals.empty and failures.devices.empty
    for found in (height_findings(height), failure_findings(failures)):
        assert found.table.empty and found.flagged == [] and found.chart.startswith(PNG)


def test_the_packaged_rules_load():
    rules = load_cross_system_rules()
    assert rules.failure_intervals.shortening_factor == 2
    assert rules.height_quality.min_months >= 3


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ("  shortening_factor: 1", "failure_intervals.shortening_factor"),
        ("  min_correlation: -0.5", "height_quality.min_correlation"),
        ("  min_months: 2", "height_quality.min_months"),
    ],
)
def test_a_meaningless_threshold_is_refused_naming_file_and_field(tmp_path: Path, line: str, field: str):
    packaged = (Path(__file__).parents[1] / "hub/rules/cross_system.yaml").read_text(encoding="utf-8")
    name = line.split(":")[0]
    text = "\n".join(line if row.startswith(f"{name}:") else row for row in packaged.splitlines())
    assert text != packaged
    bad = tmp_path / "cross_system.yaml"
    bad.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_cross_system_rules(bad)
    assert str(bad) in str(raised.value) and field in str(raised.value)


# --------------------------------------------------------------------------- a generated plant


def generated(folder: Path, effects: bool) -> tuple[dict, dict[str, list]]:
    """A small generated plant and its records as the mappings read them, by kind."""
    manifest = generate_plant(folder, sites=2, permits=1000, devices=200, work_orders=2000, materials=40, seed=1,
                              effects=effects)

    def read(kind: str, system: str, relative: str):
        return load_mapping(system).inbound(kind, json.loads((folder / relative).read_text(encoding="utf-8"))).records

    return manifest, {
        "permits": read("permit", "ptw", "ptw/permits.json"),
        "rates": read("quality_rate", "mes", "mes/quality.json"),
        "records": read("maintenance_record", "eam", "eam/workorders.json"),
        "equipment": read("equipment", "eam", "eam/assets.json"),
    }


def analysed(folder: Path, effects: bool) -> tuple[dict, object, object]:
    manifest, plant = generated(folder, effects)
    rules = load_cross_system_rules()
    height = height_against_quality(plant["permits"], plant["rates"], rules)
    failures = lifting_failure_intervals(plant["permits"], plant["records"], rules)
    return manifest, height, failures


def flagged(height, failures) -> tuple[set, set]:
    workshops = height.workshops[height.workshops["rising_together"]]
    devices = failures.devices[failures.devices["failing_faster"]]
    return set(zip(workshops["site"], workshops["workshop"])), set(zip(devices["site"], devices["device_id"]))


def test_the_planted_effects_are_found_and_only_when_planted(tmp_path: Path):
    manifest, height, failures = analysed(tmp_path / "with", effects=True)
    planted = manifest["effects"]
    workshop = planted["height_quality_workshop"]
    devices = {(d["site"], d["device_id"]) for d in planted["failing_devices"]}
    assert len(devices) == 2
    assert flagged(height, failures) == ({(workshop["site"], workshop["workshop"])}, devices)
    # The planted devices are named by lifting permits the sync covers (open ones).
    permits = json.loads((tmp_path / "with/ptw/permits.json").read_text(encoding="utf-8"))
    lifted_open = {(p["siteCode"], d.strip().upper()) for p in permits if p["ticketType"] == "DZ"
                   and p["state"] in ("SUBMITTED", "APPROVED", "IN_PROGRESS", "SUSPENDED") for d in p.get("equipmentCodes", [])}
    assert devices <= lifted_open

    manifest, height, failures = analysed(tmp_path / "without", effects=False)
    assert manifest["effects"] == {"height_quality_workshop": None, "failing_devices": []}
    assert flagged(height, failures) == (set(), set())
    # Enough history to have looked: lifted devices with intervals to compare, months of rates.
    assert failures.devices["shortening"].notna().sum() >= 3
    assert (height.workshops["months"] == 12).all()


def report_sections(folder: Path, effects: bool, database_url: str) -> tuple[dict, dict, dict[str, str], dict[str, bytes]]:
    """The generated plant written to a real store, read back as `hub report` reads it, and the
    report's two cross-system sections as HTML."""
    manifest, plant = generated(folder, effects)
    upgrade(database_url)
    now = datetime.now(UTC)
    with HubStore(database_url) as store:
        store.upsert_permits(plant["permits"], now)
        store.upsert_equipment(plant["equipment"], now)
        store.upsert_maintenance_records(plant["records"], now)
        store.upsert_quality_rates(plant["rates"], now)
        data = read_analytics(store, ["NJ01", "HZ02"])
    page, charts = build_report(data, load_analytics_rules(), load_cross_system_rules(), now, 7)
    sections = {name: page.split(f'<section id="{name}">', 1)[1].split("</section>", 1)[0]
                for name in ("height_quality", "lifting_failures")}
    return manifest, plant, sections, charts


def test_the_reports_cross_system_sections_flag_the_planted_effects_and_nothing_else(tmp_path: Path):
    manifest, plant, sections, charts = report_sections(tmp_path / "with", True, f"sqlite:///{tmp_path / 'with.db'}")
    workshop = manifest["effects"]["height_quality_workshop"]
    devices = sorted(f"{d['site']}/{d['device_id']}" for d in manifest["effects"]["failing_devices"])
    assert f"Flagged: {workshop['site']}/{workshop['workshop']}." in sections["height_quality"]
    flagged_devices = sections["lifting_failures"].split("Flagged: ", 1)[1].split(".", 1)[0].split(", ")
    assert sorted(flagged_devices) == devices
    # The flagged rows come first, and the table says so too.
    first_row = sections["lifting_failures"].split("<tbody><tr>", 1)[1].split("</tr>", 1)[0]
    assert "<td>True</td>" in first_row and any(d.split("/")[1] in first_row for d in devices)
    # Every workshop of both sites is listed, with its months and its permits counted.
    assert sections["height_quality"].count("<tr>") == 1 + len({(r.site, r.workshop) for r in plant["rates"]})
    assert charts["height_quality.png"].startswith(PNG) and charts["lifting_failures.png"].startswith(PNG)

    _, _, sections, _ = report_sections(tmp_path / "without", False, f"sqlite:///{tmp_path / 'without.db'}")
    assert "No workshop flagged." in sections["height_quality"] and "Flagged:" not in sections["height_quality"]
    assert "No device flagged." in sections["lifting_failures"] and "Flagged:" not in sections["lifting_failures"]
    assert "<td>True</td>" not in sections["height_quality"] + sections["lifting_failures"]


# --------------------------------------------------------------------------- the assets


def test_the_assets_flag_the_fixture_plants_failing_device_with_a_chart(fresh_mocks, sqlite_url, make_settings):
    settings = make_settings(sqlite_url, fresh_mocks.urls)
    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            [permits_asset, eam_pull, mes_quality_rates, permit_analytics], partition_key="NJ01",
            selection=["permits", "equipment", "maintenance_records", "mes_quality_rates", *CROSS_SYSTEM_KEYS],
            resources=hub_resources(settings), instance=instance,
        )
        assert result.success
        metadata = {
            m.asset_key.to_user_string(): m.materialization.metadata for m in result.get_asset_materialization_events()
        }
        for name in ("work_at_height_quality", "lifting_failure_intervals"):
            chart = Path(metadata[name]["chart_file"].value)
            assert chart.read_bytes().startswith(b"\x89PNG") and chart.name == f"{name}-NJ01.png"
            assert "](data:image/png;base64," in metadata[name]["chart"].value
            assert metadata[name]["rule_version"].value == load_cross_system_rules().version
            schema = permit_analytics.specs_by_key[AssetKey(name)].metadata["dagster/column_schema"]
            assert list(metadata[name]["preview"].value.records[0].data) == [c.name for c in schema.columns]
    lifting = metadata["lifting_failure_intervals"]
    assert lifting["flagged"].value == "NJ01/NJ-R-202"
    first = lifting["preview"].value.records[0].data
    assert first["device_id"] == "NJ-R-202" and first["failures"] == 7 and first["failing_faster"] is True
    height = metadata["work_at_height_quality"]
    # Planted in the fixture (fixtures/README.md): the tank farm's work at height, June to
    # November 1, 1, 2, 2, 3, 4 permits, beside a defect rate rising from 2.62 % to 4.02 %. The
    # other workshops' work at height lies in December and January, after the months the MES rates.
    assert height["flagged"].value == "NJ01/罐区" and height["dagster/row_count"].value == 4
    [tanks] = [r.data for r in height["preview"].value.records if r.data["workshop"] == "罐区"]
    counts = [0, 0, 0, 0, 0, 1, 1, 2, 2, 3, 4]
    rates = [0.0246, 0.0203, 0.0247, 0.0252, 0.0244, 0.0262, 0.0281, 0.0305, 0.0334, 0.0368, 0.0402]
    assert tanks["months"] == 11 and tanks["height_permits"] == sum(counts) == 13
    assert tanks["correlation"] == pytest.approx(statistics.correlation(counts, rates), abs=1e-3)
    assert tanks["correlation"] == pytest.approx(0.967, abs=1e-3) and tanks["rising_together"] is True
    assert metadata["mes_quality_rates"]["dagster/row_count"].value == 44
