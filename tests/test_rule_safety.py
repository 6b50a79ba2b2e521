"""Rule and mapping files cannot switch safety off by accident, nor exhaust the hub while loading.

Every YAML file is loaded with limits (size, nesting depth, alias expansion), and a gate rule
file that would quietly stop the gate from blocking is refused unless it says why.
"""

from __future__ import annotations

import re
import resource
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from hub.logic.rules import RULES_DIR, GateRules, load_cost_rules, load_gate_rules
from hub.mappings import load_mapping
from hub.yamlfile import ConfigError, YamlLimits, compose, load_validated

LOCATED = r":(\d+):(\d+): "


def bomb(levels: int = 9, width: int = 9, key: str = "lol") -> str:
    """A "billion laughs" document: each level aliases the one before it `width` times."""
    text = f"{key}0: &l0 [{', '.join(['lol'] * width)}]\n"
    for i in range(1, levels):
        text += f"{key}{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]\n"
    return text


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problem_at(exc: ConfigError, path: Path, field: str) -> tuple[int, int]:
    """(line, column) of the one problem about `field`, asserting it names the file."""
    [line] = [str(p) for p in exc.problems if p.field == field]
    match = re.match(re.escape(str(path)) + LOCATED + re.escape(field) + ": ", line)
    assert match, line
    return int(match.group(1)), int(match.group(2))


# --- YAML limits -----------------------------------------------------------------------------


def test_alias_bomb_is_refused_quickly_at_the_alias(tmp_path):
    path = write(tmp_path, "gate.yaml", "version: g-1\nmax_eam_data_age: PT15M\n" + bomb())
    started = time.monotonic()
    with pytest.raises(ConfigError) as exc:
        load_gate_rules(path)
    assert time.monotonic() - started < 5
    [problem] = exc.value.problems
    assert (problem.file, problem.field) == (str(path), "(limits)")
    assert "alias" in problem.message and "10000" in problem.message
    assert problem.line > 3 and problem.column > 1  # at the alias that crossed the budget, not 1:1


def test_aliases_within_the_budget_still_load():
    data, _ = compose("base: &b {x: 1}\ncopy:\n  <<: *b\n  y: 2\nagain: *b\n", "ok.yaml")
    assert data == {"base": {"x": 1}, "copy": {"x": 1, "y": 2}, "again": {"x": 1}}


def test_budget_counts_expanded_nodes_not_alias_events():
    # 10 aliases, each of a 1,001-node list: 10,010 nodes through aliases, over a 10,000 budget.
    text = "big: &big [" + ", ".join(["x"] * 1000) + "]\n" + "".join(f"a{i}: *big\n" for i in range(10))
    with pytest.raises(ConfigError, match=r"big\.yaml:11:\d+: \(limits\): alias \*big"):
        compose(text, "big.yaml")
    compose(text, "big.yaml", YamlLimits(max_alias_nodes=20_000))


def test_alias_to_a_collection_containing_it_is_refused():
    refused = r"cycle\.yaml:1:11: \(limits\): alias \*a refers to a collection that contains it"
    with pytest.raises(ConfigError, match=refused):
        compose("a: &a [1, *a]\n", "cycle.yaml")


def test_oversize_file_is_refused_without_parsing(tmp_path):
    path = tmp_path / "gate.yaml"
    with path.open("w", encoding="utf-8") as handle:
        handle.write("version: g-1\nmax_eam_data_age: PT15M\nnote: |\n")
        line = "  " + "x" * 98 + "\n"
        for _ in range(200_000):  # 20 MB
            handle.write(line)
    started = time.monotonic()
    with pytest.raises(ConfigError) as exc:
        load_gate_rules(path)
    assert time.monotonic() - started < 5
    assert str(exc.value).startswith(f"{path}:1:1: (file): file is ")
    assert "over the limit of 1000000 bytes" in str(exc.value)


def test_deep_nesting_is_refused_where_it_crosses_the_limit(tmp_path):
    path = write(tmp_path, "gate.yaml", "version: g-1\nmax_eam_data_age: PT15M\ndeep: " + "[" * 60 + "]" * 60 + "\n")
    with pytest.raises(ConfigError) as exc:
        load_gate_rules(path)
    assert str(exc.value) == f"{path}:3:56: (limits): nested deeper than 50 levels"


def test_nesting_through_an_alias_counts_too():
    text = "a: &a " + "[" * 30 + "]" * 30 + "\nb: " + "[" * 30 + "*a" + "]" * 30 + "\n"
    refused = r"deep\.yaml:2:\d+: \(limits\): nested deeper than 50 levels through alias \*a"
    with pytest.raises(ConfigError, match=refused):
        compose(text, "deep.yaml")


def test_syntax_errors_keep_their_location(tmp_path):
    path = write(tmp_path, "gate.yaml", "version: g-1\ngated_statuses: [approved\n")
    with pytest.raises(ConfigError, match=re.escape(f"{path}:3:1: (syntax): ")):
        load_gate_rules(path)


def test_file_that_is_not_utf8_is_refused(tmp_path):
    path = tmp_path / "gate.yaml"
    path.write_bytes(b"version: g-\xff\n")
    with pytest.raises(ConfigError, match=re.escape(f"{path}:1:1: (file): not UTF-8 text")):
        load_gate_rules(path)


def test_shipped_rule_and_mapping_files_still_load():
    assert load_cost_rules().version
    assert load_gate_rules().version
    assert load_mapping("eam").name


def run_hub(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """The `hub` command in a child process with bounded memory, so a regression fails instead of hanging."""

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    code = "import sys; from hub.cli import app; sys.argv[0] = 'hub'; app()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout, preexec_fn=limit_memory
    )


def test_mappings_validate_refuses_a_bomb_mapping_file_in_one_line(tmp_path):
    path = write(tmp_path, "eam-bomb.yaml", "system: eam\nversion: 1\n" + bomb(key="x-lol"))
    try:
        result = run_hub("mappings", "validate", str(path), timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail("hub mappings validate did not refuse the alias bomb in 15 s")
    assert result.returncode != 0
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout + result.stderr
    assert re.match(re.escape(str(path)) + LOCATED + r"\(limits\): alias \*l\d", lines[0])
    assert "Traceback" not in result.stderr


def test_mappings_validate_still_accepts_a_packaged_mapping():
    result = run_hub("mappings", "validate", str(Path("hub/mappings/eam.yaml").resolve()))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ok ")


# --- gate rules that would switch safety off ---------------------------------------------------

BASE = (
    "version: g-1\n"
    "gated_permit_types: [work_at_height]\n"
    "gated_statuses: [submitted, approved, active]\n"
    "max_eam_data_age: PT15M\n"
    "counted_work_order_kinds: [corrective]\n"
    "equipment_statuses_in_service: [operating]\n"
)

# (field, the line that replaces it, where its value starts)
UNSAFE = [
    ("gated_permit_types", "gated_permit_types: []", (2, 21)),
    ("gated_statuses", "gated_statuses: []", (3, 17)),
    ("max_eam_data_age", "max_eam_data_age: P36500D", (4, 19)),
    ("max_eam_data_age", "max_eam_data_age: PT25H", (4, 19)),
    ("counted_work_order_kinds", "counted_work_order_kinds: []", (5, 27)),
    ("equipment_statuses_in_service", "equipment_statuses_in_service: []", (6, 32)),
]


def unsafe_text(field: str, line: str) -> str:
    return "".join(line + "\n" if old.startswith(field + ":") else old + "\n" for old in BASE.splitlines())


@pytest.mark.parametrize(("field", "line", "at"), UNSAFE, ids=[u[1] for u in UNSAFE])
def test_rule_file_that_would_switch_a_check_off_is_refused(tmp_path, field, line, at):
    path = write(tmp_path, "gate.yaml", unsafe_text(field, line))
    with pytest.raises(ConfigError) as exc:
        load_gate_rules(path)
    assert problem_at(exc.value, path, field) == at
    assert "gate_disabled_reason" in str(exc.value)


@pytest.mark.parametrize(("field", "line", "at"), UNSAFE, ids=[u[1] for u in UNSAFE])
def test_the_same_file_loads_when_it_says_the_gate_is_off(tmp_path, field, line, at):
    path = write(tmp_path, "gate.yaml", unsafe_text(field, line) + 'gate_disabled_reason: "commissioning"\n')
    rules = load_gate_rules(path)
    assert rules.disabled is True
    assert rules.gate_disabled_reason == "commissioning"


def test_every_unsafe_value_is_reported_in_one_pass(tmp_path):
    text = BASE
    for field, line, _ in UNSAFE:
        text = text.replace(next(old for old in BASE.splitlines() if old.startswith(field + ":")), line)
    path = write(tmp_path, "gate.yaml", text)
    with pytest.raises(ConfigError) as exc:
        load_gate_rules(path)
    assert {p.field for p in exc.value.problems} == {field for field, _, _ in UNSAFE}


def test_a_blank_disabled_reason_is_refused_and_keeps_the_checks_on(tmp_path):
    text = unsafe_text("gated_statuses", "gated_statuses: []") + 'gate_disabled_reason: "  "\n'
    path = write(tmp_path, "gate.yaml", text)
    with pytest.raises(ConfigError) as exc:
        load_gate_rules(path)
    assert problem_at(exc.value, path, "gate_disabled_reason") == (7, 23)
    assert problem_at(exc.value, path, "gated_statuses") == (3, 17)


def test_a_rule_file_without_the_reason_is_not_disabled(tmp_path):
    rules = load_gate_rules(write(tmp_path, "gate.yaml", BASE))
    assert rules.disabled is False and rules.gate_disabled_reason is None
    assert rules.equipment_statuses_in_service == {"operating"}


def test_in_service_statuses_must_be_canonical(tmp_path):
    path = write(tmp_path, "gate.yaml", BASE.replace("[operating]", "[operating, NOT READY]"))
    with pytest.raises(ConfigError) as exc:
        load_gate_rules(path)
    assert problem_at(exc.value, path, "equipment_statuses_in_service[1]") == (6, 44)
    assert "lower case" in str(exc.value)


def test_age_limits_at_the_ceiling():
    assert GateRules(version="g", max_eam_data_age=timedelta(hours=24)).max_eam_data_age == timedelta(hours=24)
    with pytest.raises(ValueError, match="at most PT24H"):
        GateRules(version="g", max_eam_data_age=timedelta(hours=24, seconds=1))
    rules = GateRules(version="g", max_eam_data_age=timedelta(days=30), gate_disabled_reason="EAM migration")
    assert rules.disabled


def test_python_defaults_are_safe():
    rules = GateRules(version="g", max_eam_data_age=timedelta(minutes=15))
    assert rules.gated_permit_types and rules.gated_statuses and rules.counted_work_order_kinds
    assert rules.equipment_statuses_in_service == {"operating"}
    assert not rules.disabled


def test_shipped_gate_rules_load_with_fifteen_minutes():
    rules = load_gate_rules()
    assert rules.version == "gate-2026.12-1"
    assert rules.max_eam_data_age == timedelta(minutes=15)
    assert rules.equipment_statuses_in_service == {"operating"}
    assert not rules.disabled


REASON_CODES = [
    "DEVICE_UNKNOWN", "OPEN_WORK_ORDER", "ISOLATION_NOT_RELEASED", "INSPECTION_OVERDUE", "EAM_DATA_STALE",
    "EAM_UNAVAILABLE", "NO_DEVICE_LINKED", "EAM_RECORD_INVALID", "PERMIT_RECORD_INVALID",
    "EQUIPMENT_NOT_IN_SERVICE", "SITE_NOT_CONFIGURED", "EAM_REPLY_SUSPECT", "GATE_DISABLED",
]


def test_shipped_gate_file_and_docs_explain_every_reason_code():
    from hub.model import ReasonCode

    codes = set(ReasonCode.__args__) | set(REASON_CODES)  # type: ignore[attr-defined]
    shipped = (RULES_DIR / "gate.yaml").read_text(encoding="utf-8")
    docs = (Path(__file__).parents[1] / "docs" / "rules.md").read_text(encoding="utf-8")
    for code in sorted(codes):
        assert re.search(rf"^#.*\b{code}\b", shipped, re.MULTILINE), f"gate.yaml does not explain {code}"
        assert re.search(rf"^\| `{code}` \|", docs, re.MULTILINE), f"docs/rules.md has no row for {code}"
    for field in GateRules.model_fields:
        assert field in shipped, f"gate.yaml does not mention {field}"


def test_load_validated_applies_the_limits_to_any_model(tmp_path):
    path = write(tmp_path, "costs.yaml", bomb())
    with pytest.raises(ConfigError, match=re.escape(str(path)) + LOCATED + r"\(limits\)"):
        load_validated(path, GateRules)
