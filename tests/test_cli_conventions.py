"""The CLI's conventions, through the real commands: choices listed in the help, one option
style and one console, errors in one or two lines with documented exit codes, `--verbose` for
the trace, `--json` output, progress while `hub sync` runs, and the audit and quarantine guards."""

import ast
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from conftest import EAM_WSDL, REPO_ROOT
from hub.cli import Executor, Flavor, app
from hub.cli.errors import EXIT_CODES, problem_of, safe_url
from hub.logic.rules import load_gate_rules
from hub.yamlfile import ConfigError
from hub.store.migrate import upgrade
from hub.store.records import QuarantineItem
from hub.store.repository import HubStore

HUB = Path(sys.executable).with_name("hub")
MOCK_SYSTEMS = Path(sys.executable).with_name("mock-systems")
WIDE = {"COLUMNS": "200"}


def invoke(*args: str, env: dict | None = None):
    return CliRunner().invoke(app, list(args), env={**WIDE, **(env or {})})


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def hub_env(tmp_path: Path, urls: dict[str, str], **extra: str) -> dict[str, str]:
    """A clean environment for the `hub` command: the given systems, a fresh store and Dagster home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "DAGSTER_HOME"))}
    (tmp_path / "dagster_home").mkdir(exist_ok=True)
    return {
        **env,
        **WIDE,
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "HUB_DATABASE_URL": f"sqlite:///{tmp_path / 'hub.db'}",
        "HUB_EAM_WSDL": str(EAM_WSDL),
        "HUB_RETRY_ATTEMPTS": "1",
        **{f"HUB_{name.upper()}__URL": urls[name] for name in ("ptw", "eam", "mes", "erp")},
        **extra,
    }


def run_hub(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(HUB), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


# ------------------------------------------------------------------ choices, option style, one console


@pytest.mark.parametrize(
    "command, option, choices",
    [
        (["demo"], "--flavor", ["standard", "alternate"]),
        (["sync"], "--executor", ["in_process", "multiprocess", "celery"]),
        (["sync"], "--log-level", ["debug", "info", "warning", "error", "critical"]),
        (["quarantine", "list"], "--system", ["ptw", "eam", "mes", "erp", "hub"]),
        (["mappings", "preview"], "--kind", ["permit", "equipment"]),
    ],
)
def test_choices_are_listed_in_help_and_others_refused(command, option, choices):
    shown = invoke(*command, "--help")
    assert shown.exit_code == 0, shown.output
    listed = re.sub(r"[\s│]", "", shown.output)  # the help table wraps long choice lists
    assert all(choice in listed for choice in choices), shown.output
    refused = invoke(*command, option, "no-such-choice")
    assert refused.exit_code == 2
    assert "no-such-choice" in refused.output


def test_the_enums_are_the_choices_the_code_takes():
    from hub.demo import FLAVORS
    from hub.sync import EXECUTORS

    assert [e.value for e in Executor] == list(EXECUTORS)
    assert [f.value for f in Flavor] == list(FLAVORS)
    from hub.bench.scales import SCALES
    from hub.cli.bench import Scale

    assert [s.value for s in Scale] == list(SCALES)


def cli_sources() -> list[Path]:
    return [*(REPO_ROOT / "hub/cli").glob("*.py"), REPO_ROOT / "mock_systems/__main__.py"]


@pytest.mark.parametrize("path", cli_sources(), ids=lambda p: p.name)
def test_one_option_style_and_one_console(path):
    """Options and arguments as Annotated[...] (never `= typer.Option(...)`), and no console but the shared one."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            for default in [*node.args.defaults, *node.args.kw_defaults]:
                if isinstance(default, ast.Call) and isinstance(default.func, ast.Attribute):
                    assert default.func.attr not in ("Option", "Argument"), f"{path.name}:{default.lineno}"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Console":
            assert path.name == "output.py", f"{path.name}:{node.lineno} makes its own console"
    assert "argparse" not in path.read_text(encoding="utf-8")


def test_exit_codes_are_in_every_command_help_and_the_readme():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    documented = (REPO_ROOT / "docs/cli.md").read_text(encoding="utf-8")
    for code in EXIT_CODES:
        assert re.search(rf"^\| {code} \|", readme, re.M), f"exit code {code} not in the README's table"
        assert re.search(rf"^\| {code} \|", documented, re.M), f"exit code {code} not in docs/cli.md"
    commands = [
        ["demo"], ["sync"], ["dev"], ["db", "upgrade"], ["generate"], ["crashtest"], ["chaos"],
        ["audit", "verify"], ["audit", "head"], ["quarantine", "list"], ["quarantine", "replay"],
        ["mappings", "validate"], ["mappings", "preview"], ["mappings", "diff"], ["rules", "diff"],
    ]
    for command in commands:
        shown = invoke(*command, "--help")
        assert "Exit codes: 0 success; 1 " in " ".join(shown.output.split()), command


# ------------------------------------------------------------------ errors: one or two lines


def test_sync_with_the_ptw_down_says_so_in_two_lines(fresh_mocks, tmp_path):
    port = closed_port()
    urls = {**fresh_mocks.urls, "ptw": f"http://operator:s3cret-pw@127.0.0.1:{port}"}
    env = hub_env(tmp_path, urls)
    done = run_hub(env, "sync", cwd=tmp_path)
    said = lines(done.stdout + done.stderr)
    assert done.returncode == 1, done.stdout + done.stderr
    assert 1 <= len(said) <= 2, said
    assert "PTW" in said[0] and f"127.0.0.1:{port}" in said[0], said
    assert "HUB_PTW__URL" in said[-1]
    assert "s3cret-pw" not in done.stdout + done.stderr and "operator" not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr

    verbose = run_hub(env, "--verbose", "sync", cwd=tmp_path)
    assert verbose.returncode == 1
    assert "TransientError" in verbose.stderr and len(lines(verbose.stderr)) > 10
    assert "s3cret-pw" not in verbose.stdout + verbose.stderr


def test_sync_with_an_invalid_gate_rule_file_names_the_file_and_field(fresh_mocks, tmp_path):
    rules = tmp_path / "gate.yaml"
    rules.write_text("version: x\nno_such_rule: 1\n", encoding="utf-8")
    env = {**hub_env(tmp_path, fresh_mocks.urls), "HUB_GATE_RULES_FILE": str(rules)}
    done = run_hub(env, "sync", cwd=tmp_path)
    said = " ".join(lines(done.stdout + done.stderr))
    assert done.returncode == 2, said
    assert f"{rules}:2:" in said and "no_such_rule" in said, said
    assert "hub settings invalid" not in said and "Traceback" not in done.stderr


def test_the_mapper_names_a_rule_files_problem_not_the_settings(tmp_path):
    """A rule file's ConfigError is raised in place of the pydantic error it was made from; the
    mapper says the former (file, line, field), however the command reached it."""
    rules = tmp_path / "gate.yaml"
    rules.write_text("version: x\nno_such_rule: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_gate_rules(rules)
    found = problem_of(raised.value, {})
    assert found.exit_code == 2 and f"{rules}:2:" in found.message and "no_such_rule" in found.message
    assert "hub settings invalid" not in found.message


@pytest.mark.parametrize(
    "url, part",
    [
        ("postgresql+psycopg2://hub:s3cret-pw@127.0.0.1:{port}/hub", "port"),
        ("postgresql+psycopg2://hub:s3cret-pw@no-such-host.invalid:5432/hub", "host"),
        ("nosuchdriver://hub:s3cret-pw@127.0.0.1/hub", "driver"),
        ("postgresql+psycopg2://postgres@127.0.0.1:5432/no_such_database_here", "database"),
        ("postgresql+psycopg2://no_such_role:s3cret-pw@127.0.0.1:5432/test", "auth"),
    ],
)
def test_a_bad_database_url_names_the_part_that_failed(url, part):
    url = url.format(port=closed_port())
    for command in (["sync"], ["quarantine", "list"], ["audit", "verify"], ["db", "upgrade"]):
        result = invoke(*command, env={"HUB_DATABASE_URL": url})
        assert result.exit_code == 4, (command, result.output)
        said = lines(result.output)
        assert len(said) == 2, said
        assert f"database ({part}) at {safe_url(url)}" in said[0], said
        assert "s3cret-pw" not in result.output


def test_verbose_lets_the_trace_through(tmp_path):
    url = f"postgresql+psycopg2://hub:s3cret-pw@127.0.0.1:{closed_port()}/hub"
    env = {**os.environ, **WIDE, "HUB_DATABASE_URL": url}
    done = subprocess.run([str(HUB), "--verbose", "quarantine", "list"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "Traceback" in done.stderr and "OperationalError" in done.stderr and len(lines(done.stderr)) > 10
    assert "s3cret-pw" not in done.stderr


def test_bad_settings_are_one_line_without_their_values():
    result = invoke("sync", env={"HUB_PARALLEL_SITES": "0", "HUB_DATABASE_URL": "sqlite:///:memory:"})
    assert result.exit_code == 2, result.output
    said = lines(result.output)
    assert len(said) == 1 and "parallel_sites" in said[0], said


# ------------------------------------------------------------------ hub sync: progress, counts, --json


def test_sync_json_carries_the_counts_of_what_it_did(fresh_mocks, tmp_path):
    env = hub_env(tmp_path, fresh_mocks.urls)
    done = run_hub(env, "sync", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert set(report) == {"success", "exit_code", "error", "runs", "counts", "outside_the_gate"}
    assert (report["success"], report["exit_code"], report["error"]) == (True, 0, None)
    assert [(r["job"], r["site"], r["success"]) for r in report["runs"]] == [
        ("full_sync", "NJ01", True), ("full_sync", "HZ02", True), ("other_sites_sync", "(other sites)", True),
    ]
    assert set(report["runs"][0]) == {"job", "site", "run_id", "success", "duration_s", "message", "analytics"}
    counts = report["counts"]
    assert list(counts) == ["permits_synced", "blocked", "holds_written", "entries_posted", "records_quarantined"]
    # The same figures, as the store and the mock systems have them.
    store = HubStore(env["HUB_DATABASE_URL"])
    received = {
        name: httpx.get(f"{fresh_mocks.base_urls[name]}/_admin/received", timeout=10).json() for name in ("ptw", "erp")
    }
    holds = [r for r in received["ptw"] if r["method"] == "PUT" and r["path"].startswith("/api/v1/permits/")]
    assert counts["permits_synced"] == 65
    assert counts["blocked"] == sum(d.decision == "block" for d in store.latest_gate_decisions()) > 0
    assert counts["holds_written"] == len(holds) > 0
    assert counts["entries_posted"] == len(store.load_outbox()) > 0
    assert counts["records_quarantined"] == len(store.list_quarantine()) > 0
    assert any("SH03" in problem for problem in report["outside_the_gate"])


def test_sync_shows_each_site_while_it_runs_then_the_counts(fresh_mocks, tmp_path):
    # A terminal, as rich sees it: the progress is drawn (and cleared at the end).
    env = hub_env(tmp_path, fresh_mocks.urls, TTY_COMPATIBLE="1")
    done = run_hub(env, "sync", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", done.stdout)
    for site in ("NJ01", "HZ02", "(other sites)"):
        assert re.search(rf"{re.escape(site)}\s+running", plain), plain
        assert re.search(rf"{re.escape(site)}\s+succeeded", plain), plain
    assert re.search(
        r"permits synced 65, blocked \d+, holds written \d+, entries posted \d+, records quarantined \d+", plain
    )
    assert "DEBUG" not in done.stdout + done.stderr and "dagster - " not in done.stderr


# ------------------------------------------------------------------ demo, quarantine, mappings --json


def test_demo_json(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "DAGSTER_HOME"))}
    done = subprocess.run(
        [str(HUB), "demo", "--json", "--workdir", str(tmp_path / ".hub")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["success"] is True and report["permits_synced"] == 65
    assert len(report["blocked"]) == 21 and len(report["postings"]) == 83
    assert {"holds_written", "erp_posts_received", "quarantined", "allowed", "site_problems"} <= set(report)


def migrated(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    upgrade(url)
    return url


def test_quarantine_list_json_and_replay_of_an_unknown_id(tmp_path):
    url = migrated(tmp_path)
    store = HubStore(url)
    store.quarantine([QuarantineItem("ptw", "permit", "PTW-X-1", {"ticketNo": "PTW-X-1"}, "permitType", "unknown type 'ZZ'")])
    listed = invoke("quarantine", "list", "--json", "--database-url", url)
    assert listed.exit_code == 0, listed.output
    report = json.loads(listed.stdout)
    assert report["count"] == 1
    record = report["records"][0]
    assert {"id", "system", "record_kind", "source_key", "field", "reason", "state", "received"} <= set(record)
    assert (record["system"], record["source_key"], record["state"]) == ("ptw", "PTW-X-1", "open")

    unknown = invoke("quarantine", "replay", "99999", "--database-url", url)
    assert unknown.exit_code == 2, unknown.output
    assert lines(unknown.output) == ["hub: no quarantined record with id 99999 (see hub quarantine list --all)"]


def test_mappings_validate_json(tmp_path):
    broken = tmp_path / "broken-mes.yaml"
    broken.write_bytes((REPO_ROOT / "tests/mapping_fixtures/broken-mes.yaml").read_bytes())
    good = REPO_ROOT / "hub/mappings/mes.yaml"
    result = invoke("mappings", "validate", "--json", str(good), str(broken))
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    first, second = report["files"]
    assert (first["path"], first["ok"], first["mapping"], first["problems"]) == (str(good), True, "mes.yaml", [])
    assert second["ok"] is False and len(second["problems"]) == 3
    assert set(second["problems"][0]) == {"file", "line", "column", "field", "message"}


# ------------------------------------------------------------------ audit head and --expect-head


def test_audit_expect_head_detects_rows_removed_from_the_end(tmp_path):
    from datetime import datetime, timezone

    url = migrated(tmp_path)
    at = datetime(2026, 12, 1, tzinfo=timezone.utc)
    with HubStore(url) as store:
        store.append_audit("gate_decision", [(f"PTW-{i}", {"decision": "allow"}) for i in range(5)], at)
    head = invoke("audit", "head", "--database-url", url)
    assert head.exit_code == 0
    kept = head.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", kept)

    # The log grows: the kept head is still in it.
    with HubStore(url) as store:
        store.append_audit("gate_decision", [("PTW-5", {"decision": "block"})], at)
    assert invoke("audit", "verify", "--expect-head", kept, "--database-url", url).exit_code == 0

    with sqlite3.connect(make_url(url).database) as db:
        db.execute("DELETE FROM audit_log WHERE id >= 4")
    # The chain alone cannot tell ...
    assert invoke("audit", "verify", "--database-url", url).exit_code == 0
    # ... the kept head can.
    checked = invoke("audit", "verify", "--expect-head", kept, "--database-url", url)
    assert checked.exit_code == 1, checked.output
    assert f"the expected head {kept} is not in the log" in checked.output
    as_json = json.loads(invoke("audit", "verify", "--json", "--expect-head", kept, "--database-url", url).stdout)
    assert (as_json["ok"], as_json["fault"], as_json["rows_checked"], as_json["head_id"]) == (False, "truncated", 3, 3)
    assert set(as_json) == {"ok", "rows_checked", "head_id", "head_hash", "bad_row_id", "fault", "problem"}


# ------------------------------------------------------------------ mock-systems


def test_mock_systems_errors_are_one_line(tmp_path):
    bad_plan = tmp_path / "faults.json"
    bad_plan.write_text("{not json", encoding="utf-8")
    done = subprocess.run([str(MOCK_SYSTEMS), "serve", "--faults", str(bad_plan)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert lines(done.stderr) == [lines(done.stderr)[0]] and lines(done.stderr)[0].startswith("mock-systems: cannot use --faults")

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        others = [arg for name in ("eam", "mes", "erp", "eam-oslc", "mes-odata") for arg in (f"--{name}-port", "0")]
        command = [str(MOCK_SYSTEMS), "serve", "--fixtures", str(REPO_ROOT / "fixtures"), "--ptw-port", str(port), *others]
        busy = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert busy.returncode == 1
    assert len(lines(busy.stderr)) == 1 and f"ptw 127.0.0.1:{port}" in busy.stderr, busy.stderr
