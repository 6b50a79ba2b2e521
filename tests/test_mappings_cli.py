"""`hub mappings validate | preview | diff` against real mapping and sample files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
from typer.testing import CliRunner

from hub.cli.mappings import app
from hub.mappings import packaged_mappings, site_overlays

REPO = Path(__file__).resolve().parents[1]
MAPPINGS_DIR = REPO / "hub" / "mappings"
FIXTURES = Path(__file__).resolve().parent / "mapping_fixtures"
WIDE = {"COLUMNS": "220"}


def run(*args: str):
    return CliRunner().invoke(app, list(args), env=WIDE)


def copy(name: str, to: Path) -> Path:
    return Path(shutil.copy(FIXTURES / name, to / name))


def test_validate_prints_every_error_with_its_place_and_fails(tmp_path):
    broken = copy("broken-mes.yaml", tmp_path)
    result = run("validate", str(broken))
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"{broken}:12:44: inbound.process_parameter.fields.parameter_id.transform[0]: unknown transform 'trim'; "
        "did you mean 'strip'? expected one of id, strip, upper, lower",
        f"{broken}:14:87: inbound.process_parameter.fields.data_type.unknown: 'unknown: default' needs a 'default' "
        "value for this field",
        f"{broken}:15:7: inbound.process_parameter.fields.unti: process_parameter has no field 'unti'; "
        "did you mean 'unit'? expected one of material_name, parameter_id, value, data_type, unit, updated_at",
    ]


def test_validate_reports_good_files_and_bad_ones(tmp_path):
    good = tmp_path / "mes.yaml"
    good.write_bytes((MAPPINGS_DIR / "mes.yaml").read_bytes())
    syntax = tmp_path / "syntax.yaml"
    syntax.write_text("system: mes\nversion: 1\ninbound: {process_parameter: [\n", encoding="utf-8")
    result = run("validate", str(good), str(syntax))
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].startswith(f"ok {good} (mes.yaml, sha256 ")
    assert lines[1:] == [f"{syntax}:4:1: (syntax): expected the node content, but found '<stream end>'"]


def test_validate_defaults_to_every_packaged_mapping_and_site_overlay():
    result = run("validate")
    assert result.exit_code == 0, result.output
    checked = [line.split(" ")[1] for line in result.output.splitlines()]
    assert checked == [str(MAPPINGS_DIR / f"{n}.yaml") for n in packaged_mappings()] + [
        str(path) for path in site_overlays()
    ]
    assert str(MAPPINGS_DIR / "sites" / "eam-hz02.yaml") in checked
    assert "(eam-hz02.yaml (extends eam.yaml), sha256 " in result.output


def test_preview_shows_vendor_and_canonical_side_by_side(tmp_path):
    sample = copy("mes-sample.json", tmp_path)
    result = run("preview", "mes", "--sample", str(sample), "--kind", "process_parameter")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "mes.yaml: process_parameter (23 mapped, 1 quarantined)" in out
    # methanol's flash point arrives as 52 degF and becomes Cel; its pressure as 5 kPa and becomes MPa
    assert_row(out, "甲醇/FLASH_POINT", "Value.ValueString: 52", "value: 11.111111")
    assert_row(out, "甲醇/FLASH_POINT", "Value.UnitOfMeasure: degF", "unit: Cel")
    assert_row(out, "甲醇/OPERATING_PRESSURE", "Value.ValueString: 5", "value: 0.005")
    assert_row(out, "环氧乙烷/OPERATING_PRESSURE", "Value.ValueString: 0.3", "quarantined")
    assert out.splitlines()[-4:] == [
        "Quarantined (1):",
        "  mes.yaml: process_parameter 环氧乙烷/OPERATING_PRESSURE: data_type (from Parameter[0].Value.DataType): "
        "missing",
        "Unmapped vendor fields (1):",
        "  Parameter[*].Value.Quality (in 1 record)",
    ]


def assert_row(output: str, key: str, vendor: str, canonical: str) -> None:
    """The table row of key holds this vendor text in its vendor column and this canonical text in its last."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if f"│ {key} " in line)
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith(("├", "└")))
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in lines[start:end]]
    assert any(vendor == row[1] for row in cells), (vendor, cells)
    assert any(canonical == row[2] for row in cells), (canonical, cells)


def test_preview_of_a_file_keyed_by_kind(tmp_path):
    workorders = json.loads((REPO / "fixtures" / "eam" / "workorders.json").read_text(encoding="utf-8"))
    assets = json.loads((REPO / "fixtures" / "eam" / "assets.json").read_text(encoding="utf-8"))
    sample = tmp_path / "eam.json"
    sample.write_text(json.dumps({"equipment": assets[:2], "maintenance_record": workorders[:3]}), encoding="utf-8")
    both = run("preview", "eam", "--sample", str(sample))
    assert both.exit_code == 0, both.output
    assert "eam.yaml: equipment (2 mapped, 0 quarantined)" in both.output
    assert "eam.yaml: maintenance_record (3 mapped, 0 quarantined)" in both.output
    one = run("preview", "eam", "--sample", str(sample), "--kind", "equipment")
    assert "eam.yaml: equipment (2 mapped" in one.output and "maintenance_record (" not in one.output


def test_preview_asks_for_a_kind_or_a_readable_sample(tmp_path):
    sample = tmp_path / "list.json"
    sample.write_text("[]", encoding="utf-8")
    result = run("preview", "eam", "--sample", str(sample))
    assert result.exit_code == 2
    assert "eam.yaml maps equipment, maintenance_record: choose one" in result.output
    sample.write_text('{"MaterialDefinition": []}', encoding="utf-8")
    result = run("preview", "mes", "--sample", str(sample), "--kind", "process_parameter")
    assert result.exit_code == 2
    assert "found MaterialDefinition" in result.output
    sample.write_text("not json", encoding="utf-8")
    assert run("preview", "mes", "--sample", str(sample)).exit_code == 2


def test_preview_of_a_broken_mapping_prints_its_errors(tmp_path):
    broken = copy("broken-mes.yaml", tmp_path)
    sample = copy("mes-sample.json", tmp_path)
    result = run("preview", str(broken), "--sample", str(sample))
    assert result.exit_code == 1
    assert len(result.output.splitlines()) == 3
    assert all(line.startswith(f"{broken}:") for line in result.output.splitlines())


def test_diff_shows_what_changes_per_record(tmp_path):
    sample = copy("mes-sample.json", tmp_path)
    changed = tmp_path / "mes-new.yaml"
    text = (MAPPINGS_DIR / "mes.yaml").read_text(encoding="utf-8")
    text = text.replace("OPERATING_PRESSURE: MPa", "OPERATING_PRESSURE: kPa")
    text = text.replace("data_type:    {from: Value.DataType, transform: [strip]}",
                        "data_type:    {from: Value.DataType, transform: [strip], optional: true, default: double}")
    text = text.replace("LEL: \"%\"", "LEL: ppm")
    changed.write_text(text, encoding="utf-8")
    result = run("diff", "mes", str(changed), "--sample", str(sample), "--kind", "process_parameter")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "mes.yaml -> mes-new.yaml, process_parameter: 7 changed, 1 no longer quarantined; 16 unchanged"
    assert lines[1:5] == [
        "乙烯/LEL: changed",
        "  value: '2.7' → '27000'",
        "  unit: '%' → 'ppm'",
        "乙烯/OPERATING_PRESSURE: changed",
    ]
    assert "  value: '2.0' → '2000'" in lines
    assert lines[-6:] == [
        "环氧乙烷/OPERATING_PRESSURE: no longer quarantined",
        "  material_name: '环氧乙烷'",
        "  parameter_id: 'OPERATING_PRESSURE'",
        "  value: '300'",
        "  data_type: 'double'",
        "  unit: 'kPa'",
    ]


def test_diff_names_records_that_become_quarantined(tmp_path):
    sample = copy("mes-sample.json", tmp_path)
    stricter = tmp_path / "strict.yaml"
    text = (MAPPINGS_DIR / "mes.yaml").read_text(encoding="utf-8")
    stricter.write_text(text.replace("transform: [strip]}\n      unit", "map: {double: double}}\n      unit"),
                        encoding="utf-8")
    result = run("diff", "mes", str(stricter), "--sample", str(sample), "--kind", "process_parameter")
    assert result.exit_code == 0, result.output
    summary, *quarantined = result.output.splitlines()
    assert summary == "mes.yaml -> strict.yaml, process_parameter: 4 now quarantined; 20 unchanged"
    assert len(quarantined) == 4  # the four TOXICITY_CLASS parameters: DataType "string"
    assert quarantined[0] == (
        "乙烯/TOXICITY_CLASS: now quarantined: strict.yaml: process_parameter 乙烯/TOXICITY_CLASS: data_type "
        "(from Parameter[0].Value.DataType): unknown value 'string'; expected one of double"
    )


def test_the_hub_command_has_the_mappings_group():
    from hub.cli import app as hub_app

    result = CliRunner().invoke(hub_app, ["mappings", "validate", str(FIXTURES / "mes-sap.yaml")])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"ok {FIXTURES / 'mes-sap.yaml'} (mes-sap.yaml, sha256 ")


def test_preview_live_reads_the_configured_system(fresh_mocks, monkeypatch):
    """`--live` fetches through the flavor's endpoint from the system in the HUB_* settings."""
    monkeypatch.setenv("HUB_EAM__URL", fresh_mocks.urls["eam_oslc"])
    result = CliRunner().invoke(
        app, ["preview", "eam-maximo-oslc", "--live", "--ids", "HZ-P-101,HZ-E-101", "--site", "HZ02"], terminal_width=200
    )
    assert result.exit_code == 0, result.output
    assert "HZ-P-101" in result.output
    # HZ-E-101 carries the malformed work order: shown with its reason, not dropped.
    assert "BOGUS" in result.output
    received = httpx.get(f"{fresh_mocks.base_urls['eam_oslc']}/_admin/received", timeout=10).json()
    assert {r["path"] for r in received} == {"/maximo/oslc/os/mxasset", "/maximo/oslc/os/mxwo"}
    # Equipment is (site, number): the EAM is asked at the one site named.
    assert all('siteid="HZ02"' in r["query"]["oslc.where"] for r in received)
    # By default at the first configured site, where HZ-E-101 does not exist.
    default = CliRunner().invoke(app, ["preview", "eam-maximo-oslc", "--live", "--ids", "HZ-E-101"], terminal_width=200)
    assert default.exit_code == 0 and "BOGUS" not in default.output


def test_preview_needs_a_source():
    result = CliRunner().invoke(app, ["preview", "mes"])
    assert result.exit_code != 0
    assert "exactly one of --sample FILE or --live" in result.output
