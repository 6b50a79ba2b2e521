"""The hash-chained audit log: the chain itself, the store, `hub audit verify`, and the assets feeding it."""

import dataclasses
import hashlib
import json
import sqlite3
import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from conftest import materialize_sites
from dagster import DagsterInstance
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from hub.audit import GENESIS_HASH, AuditRow, canonical_body, chain_hash, extend_chain, verify
from hub.cli import app as cli_app
from hub.definitions import ASSETS, CHECKS
from hub.resources import resources_from_settings
from hub.store.migrate import upgrade
from hub.store.repository import HubStore

AT = datetime(2026, 3, 1, 8, 30, 15, 250_000, tzinfo=timezone.utc)
COST_RULES = Path(__file__).parents[1] / "hub" / "rules" / "costs.yaml"


def decision_entries(count: int, start: int = 1) -> list[tuple[str, dict]]:
    body = {"decision": "block", "reasons": [{"code": "OPEN_WORK_ORDER"}]}
    return [(f"PTW-{i:04d}", {**body, "n": i}) for i in range(start, start + count)]


def chain_of(count: int) -> list[AuditRow]:
    return extend_chain(0, GENESIS_HASH, "gate_decision", decision_entries(count), AT)


def relinked(rows: list[AuditRow], head_hash: str) -> list[AuditRow]:
    """Rows re-forged onto ``head_hash``, each with a correct hash, ids kept: what a writer with table access can do."""
    out = []
    for row in rows:
        forged = chain_hash(head_hash, row.kind, row.ref, row.recorded_at, row.body)
        out.append(dataclasses.replace(row, prev_hash=head_hash, hash=forged))
        head_hash = forged
    return out


def renumbered(rows: list[AuditRow], first_id: int) -> list[AuditRow]:
    return [dataclasses.replace(row, id=first_id + i) for i, row in enumerate(rows)]


# ------------------------------------------------------------------ the chain (pure)


def test_hash_is_the_documented_formula_from_the_genesis_value():
    [row] = extend_chain(0, GENESIS_HASH, "erp_posting", [("NJ-1/labour", {"amount": Decimal("12.50")})], AT)
    text = "\n".join(["0" * 64, "erp_posting", "NJ-1/labour", "2026-03-01T08:30:15.250000+00:00", '{"amount":"12.50"}'])
    assert (row.id, row.prev_hash, row.body) == (1, GENESIS_HASH, '{"amount":"12.50"}')
    assert row.hash == hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_canonical_body_is_deterministic_compact_utf8():
    shanghai = timezone(timedelta(hours=8))
    at = datetime(2026, 3, 1, 16, 30, tzinfo=shanghai)
    body = {"z": 1, "a": {"y": "裂解车间", "b": [Decimal("0.10"), None]}, "at": at}
    reordered = {"at": at, "a": {"b": [Decimal("0.10"), None], "y": "裂解车间"}, "z": 1}
    expected = '{"a":{"b":["0.10",null],"y":"裂解车间"},"at":"2026-03-01T08:30:00.000000+00:00","z":1}'
    assert canonical_body(body) == canonical_body(reordered) == expected


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"at": datetime(2026, 3, 1)}, ValueError),  # naive: which zone?
        ({"x": float("nan")}, ValueError),
        ({"x": {1, 2}}, TypeError),  # a set has no order
    ],
)
def test_canonical_body_refuses_values_without_one_reading(body, error):
    with pytest.raises(error):
        canonical_body(body)


def test_newline_in_ref_refused_as_it_would_blur_the_hashed_fields():
    with pytest.raises(ValueError, match="newline"):
        extend_chain(0, GENESIS_HASH, "gate_decision", [("PTW-1\ngate_decision", {})], AT)


def test_intact_chain_and_extension_verify():
    rows = chain_of(3)
    later = AT + timedelta(seconds=1)
    rows += extend_chain(rows[-1].id, rows[-1].hash, "erp_posting", decision_entries(2, start=4), later)
    verdict = verify(iter(rows))
    assert verdict.ok
    assert (verdict.rows_checked, verdict.head_id, verdict.head_hash) == (5, 5, rows[-1].hash)
    assert [r.id for r in rows] == [1, 2, 3, 4, 5]


def test_empty_log_verifies_with_genesis_head():
    verdict = verify(iter(()))
    assert (verdict.ok, verdict.rows_checked, verdict.head_id, verdict.head_hash) == (True, 0, None, GENESIS_HASH)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("body", '{"decision":"allow","n":3,"reasons":[]}'),
        ("hash", "f" * 64),
        ("kind", "erp_posting"),
        ("ref", "PTW-9999"),
        ("recorded_at", AT + timedelta(microseconds=1)),
        ("prev_hash", "e" * 64),
    ],
)
def test_altered_row_is_the_first_bad_row(field, value):
    rows = chain_of(5)
    rows[2] = dataclasses.replace(rows[2], **{field: value})
    verdict = verify(rows)
    assert (verdict.ok, verdict.bad_row_id, verdict.fault) == (False, 3, "altered")
    assert verdict.problem == "row 3 altered: its hash does not match its content"
    assert (verdict.rows_checked, verdict.head_id, verdict.head_hash) == (2, 2, rows[1].hash)


def test_deleted_middle_row_is_missing():
    rows = chain_of(5)
    del rows[2]
    verdict = verify(rows)
    assert (verdict.bad_row_id, verdict.fault, verdict.problem) == (3, "missing", "row 3 missing: row 4 follows row 2")


def test_deleted_first_row_is_missing():
    verdict = verify(chain_of(5)[1:])
    assert (verdict.bad_row_id, verdict.fault) == (1, "missing")
    assert verdict.problem == "row 1 missing: row 2 follows the start"


def test_deleted_middle_row_with_later_rows_reforged_is_caught_by_the_id_gap():
    rows = chain_of(5)
    tampered = rows[:2] + relinked(rows[3:], rows[1].hash)
    verdict = verify(tampered)
    assert (verdict.bad_row_id, verdict.fault) == (3, "missing")


def test_deleted_last_row_leaves_a_valid_chain_with_an_earlier_head():
    """The documented limit: only comparing the head with an outside copy shows it."""
    rows = chain_of(5)
    verdict = verify(rows[:-1])
    assert verdict.ok
    assert (verdict.head_id, verdict.head_hash) == (4, rows[3].hash)
    assert verdict.head_hash != verify(rows).head_hash


def test_row_inserted_in_the_middle_breaks_the_link_of_the_row_after_it():
    rows = chain_of(5)
    [forged] = extend_chain(2, rows[1].hash, "gate_decision", [("PTW-0003", {"decision": "allow", "reasons": []})], AT)
    tampered = rows[:2] + [forged] + renumbered(rows[2:], 4)
    verdict = verify(tampered)
    assert (verdict.bad_row_id, verdict.fault) == (4, "unlinked")
    assert verdict.problem.startswith("row 4 out of place: its prev_hash is not row 3's hash")


def test_forged_row_with_a_correct_hash_in_the_wrong_place_is_unlinked():
    rows = chain_of(5)
    [forged] = extend_chain(5, rows[-1].hash, "gate_decision", [("PTW-0006", {"decision": "allow"})], AT)
    tampered = rows[:2] + renumbered([forged], 3) + renumbered(rows[2:], 4)
    verdict = verify(tampered)
    assert (verdict.bad_row_id, verdict.fault) == (3, "unlinked")


def test_swapped_rows_are_unlinked_at_the_first_of_them():
    rows = chain_of(5)
    swapped = rows[:1] + renumbered([rows[3]], 2) + [rows[2]] + renumbered([rows[1]], 4) + rows[4:]
    verdict = verify(swapped)
    assert (verdict.bad_row_id, verdict.fault) == (2, "unlinked")
    assert "not row 1's hash" in verdict.problem


def test_first_row_must_start_from_genesis():
    rows = relinked(chain_of(3), "a" * 64)
    verdict = verify(rows)
    assert (verdict.bad_row_id, verdict.fault) == (1, "unlinked")
    assert "not the genesis value" in verdict.problem


# ------------------------------------------------------------------ the store (SQLite and PostgreSQL)


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request) -> str:
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    upgrade(url)
    return url


def test_append_and_stream_back_in_id_order(store_url):
    with HubStore(store_url) as store:
        assert store.append_audit("gate_decision", [], AT) == 0
        assert store.append_audit("gate_decision", decision_entries(3), AT) == 3
        posting = ("NJ-1/labour", {"amount": Decimal("80.00")})
        assert store.append_audit("erp_posting", [posting], AT + timedelta(hours=1)) == 1
        assert store.append_audit("erp_rejection", [("NJ-2/ppe", {"rejection_message": "无此成本中心"})], AT) == 1
        rows = list(store.iter_audit(batch=2))
    assert [(r.id, r.kind) for r in rows] == [
        (1, "gate_decision"), (2, "gate_decision"), (3, "gate_decision"), (4, "erp_posting"), (5, "erp_rejection"),
    ]
    assert rows[0].prev_hash == GENESIS_HASH and rows[3].prev_hash == rows[2].hash
    assert rows[3].recorded_at == AT + timedelta(hours=1)
    assert json.loads(rows[3].body) == {"amount": "80.00"} and json.loads(rows[4].body)["rejection_message"] == "无此成本中心"
    verdict = verify(rows)
    assert (verdict.ok, verdict.rows_checked, verdict.head_id, verdict.head_hash) == (True, 5, 5, rows[-1].hash)


def test_iter_audit_pages_cover_every_row_once(store_url):
    with HubStore(store_url) as store:
        store.append_audit("gate_decision", decision_entries(12), AT)
        by_page = {size: [r.id for r in store.iter_audit(batch=size)] for size in (1, 4, 5, 100)}
    assert all(ids == list(range(1, 13)) for ids in by_page.values())


def test_naive_recorded_at_refused(store_url):
    with HubStore(store_url) as store:
        with pytest.raises(ValueError, match="timezone-aware"):
            store.append_audit("gate_decision", decision_entries(1), datetime(2026, 3, 1))
        assert list(store.iter_audit()) == []


def test_concurrent_appenders_build_one_chain(store_url):
    """Without the lock both appenders would read the same head and fork the chain (or collide on an id)."""
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def append_200(thread_no: int) -> None:
        try:
            with HubStore(store_url) as store:
                start.wait()
                for call in range(20):
                    refs = [(f"T{thread_no}-{call * 10 + i:03d}", {"thread": thread_no}) for i in range(10)]
                    store.append_audit("gate_decision", refs, datetime.now(timezone.utc))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=append_200, args=(n,)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with HubStore(store_url) as store:
        rows = list(store.iter_audit(batch=150))
    verdict = verify(rows)
    assert (verdict.ok, verdict.rows_checked, verdict.head_id) == (True, 400, 400)
    assert sorted(r.ref for r in rows) == sorted(f"T{n}-{i:03d}" for n in (1, 2) for i in range(200))


# ------------------------------------------------------------------ `hub audit verify`


def sqlite_file(url: str) -> str:
    return make_url(url).database


def run_verify(url: str):
    return CliRunner().invoke(cli_app, ["audit", "verify", "--database-url", url])


@pytest.fixture
def audited_sqlite(sqlite_url) -> str:
    upgrade(sqlite_url)
    with HubStore(sqlite_url) as store:
        store.append_audit("gate_decision", decision_entries(5), AT)
    return sqlite_url


def test_verify_on_a_clean_log(audited_sqlite):
    with HubStore(audited_sqlite) as store:
        head = list(store.iter_audit())[-1]
    result = run_verify(audited_sqlite)
    assert result.exit_code == 0, result.output
    assert "audit log intact: 5 rows checked" in result.output
    assert f"head: row 5, hash {head.hash}" in result.output
    assert "compare this head with a copy kept outside the database" in result.output


def test_verify_on_an_empty_log(sqlite_url):
    upgrade(sqlite_url)
    result = run_verify(sqlite_url)
    assert result.exit_code == 0, result.output
    assert "0 rows checked" in result.output and "head: none (empty log)" in result.output


def insert_forged_row_at_3(db: sqlite3.Connection) -> None:
    """Make room at id 3, then insert a row with a correct hash linked to row 2."""
    db.execute("UPDATE audit_log SET id = -id WHERE id >= 3")
    db.execute("UPDATE audit_log SET id = 1 - id WHERE id < 0")
    prev_hash, recorded_at = db.execute("SELECT hash, recorded_at FROM audit_log WHERE id = 2").fetchone()
    body = '{"decision":"allow","reasons":[]}'
    forged = chain_hash(prev_hash, "gate_decision", "PTW-0003", AT, body)
    db.execute(
        "INSERT INTO audit_log (id, kind, ref, body, recorded_at, prev_hash, hash) VALUES (3, ?, ?, ?, ?, ?, ?)",
        ("gate_decision", "PTW-0003", body, recorded_at, prev_hash, forged),
    )


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        (
            lambda db: db.execute("UPDATE audit_log SET body = replace(body, 'block', 'allow') WHERE id = 3"),
            "AUDIT LOG TAMPERED: row 3 altered",
        ),
        (lambda db: db.execute("DELETE FROM audit_log WHERE id = 3"), "AUDIT LOG TAMPERED: row 3 missing: row 4 follows row 2"),
        (insert_forged_row_at_3, "AUDIT LOG TAMPERED: row 4 out of place"),
    ],
    ids=["update-body", "delete-middle", "insert-forged"],
)
def test_verify_names_the_first_bad_row_after_raw_sql_tampering(audited_sqlite, tamper, expected):
    with sqlite3.connect(sqlite_file(audited_sqlite)) as db:
        tamper(db)
    result = run_verify(audited_sqlite)
    assert result.exit_code == 1, result.output
    assert expected in result.output
    assert "last intact: row" in result.output


def test_verify_on_an_unmigrated_database_says_so(tmp_path):
    result = run_verify(f"sqlite:///{tmp_path / 'nowhere.db'}")
    assert result.exit_code == 4
    assert "hub db upgrade" in result.output


# ------------------------------------------------------------------ the assets write it


def run_all(settings):
    with DagsterInstance.ephemeral() as instance:
        return materialize_sites(
            [*ASSETS, *CHECKS], resources=resources_from_settings(settings), instance=instance, raise_on_error=False
        )


def audit_rows(url: str, kind: str) -> list[AuditRow]:
    with HubStore(url) as store:
        return [r for r in store.iter_audit() if r.kind == kind]


def test_a_sync_run_audits_every_gate_decision_and_posting(fresh_mocks, sqlite_url, make_settings):
    assert run_all(make_settings(sqlite_url, fresh_mocks.urls)).success
    with HubStore(sqlite_url) as store:
        decisions = store.load_gate_decisions()
        outbox = {r["entry_key"]: r for r in store.load_outbox()}
        verdict = verify(store.iter_audit())
    gate_rows, posting_rows = audit_rows(sqlite_url, "gate_decision"), audit_rows(sqlite_url, "erp_posting")
    assert decisions and len(gate_rows) == len(decisions)
    audited = [(r.ref, json.loads(r.body)["fingerprint"]) for r in gate_rows]
    assert audited == [(d.decision.permit_id, d.fingerprint) for d in decisions]
    first = json.loads(gate_rows[0].body)
    assert first["decision"] == decisions[0].decision.decision and "reasons" in first and "rule_version" in first

    posted = {key for key, row in outbox.items() if row["status"] == "posted"}
    assert len(posted) == 83 and sorted(r.ref for r in posting_rows) == sorted(posted)
    for row in posting_rows:
        body, entry = json.loads(row.body), outbox[row.ref]
        assert body["accounting_document"] == entry["accounting_document"]
        assert body["message_uuid"] == entry["message_uuid"]
        assert body["amount"] == entry["payload"]["amount"]
    assert audit_rows(sqlite_url, "erp_rejection") == []
    assert verdict.ok and verdict.rows_checked == len(decisions) + 83


def test_rejections_and_postings_settled_by_reference_are_audited(fresh_mocks, sqlite_url, make_settings, tmp_path):
    """Run 1: the ERP commits but every answer is lost. Run 2: the committed entries are found by
    reference (audited as postings), the rest are re-sent and refused for an unknown cost center."""
    rules = tmp_path / "costs.yaml"
    rules.write_text(COST_RULES.read_text(encoding="utf-8").replace("CC-NJ-CRK", "CC-NJ-GONE"), encoding="utf-8")
    settings = make_settings(sqlite_url, fresh_mocks.urls, cost_rules_file=rules, retry_attempts=2)
    erp_faults = f"{fresh_mocks.base_urls['erp']}/_admin/faults"
    drop_posts = {"rules": [{"kind": "commit_then_drop", "method": "POST", "path_prefix": "/api/v1/journal-entries"}]}
    httpx.put(erp_faults, json=drop_posts, timeout=10).raise_for_status()
    try:
        assert not run_all(settings).success
    finally:
        httpx.put(erp_faults, json={"rules": []}, timeout=10).raise_for_status()
    with HubStore(sqlite_url) as store:
        assert store.outbox_summary()["unclear"] > 0
    assert audit_rows(sqlite_url, "erp_posting") == [] and audit_rows(sqlite_url, "erp_rejection") == []

    run_all(settings)
    with HubStore(sqlite_url) as store:
        outbox = {r["entry_key"]: r for r in store.load_outbox()}
        verdict = verify(store.iter_audit())
    posted = {k for k, r in outbox.items() if r["status"] == "posted"}
    rejected = {k for k, r in outbox.items() if r["status"] == "rejected"}
    assert posted and rejected
    assert sorted(r.ref for r in audit_rows(sqlite_url, "erp_posting")) == sorted(posted)
    rejections = audit_rows(sqlite_url, "erp_rejection")
    assert sorted(r.ref for r in rejections) == sorted(rejected)
    for row in rejections:
        body = json.loads(row.body)
        assert body["cost_center"] == "CC-NJ-GONE" and body["rejection_message"] == outbox[row.ref]["last_error"]
        assert "CC-NJ-GONE" in body["rejection_message"]
    assert verdict.ok
