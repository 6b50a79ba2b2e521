"""The SAP journal-entry SOAP flavor (erp-sap-soap.yaml) through the real parts: the mock ERP on
loopback, a SQLite store, the assets on a temporary Dagster instance."""

from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from conftest import materialize_sites
from dagster import DagsterInstance

from hub.definitions import ASSETS, CHECKS
from hub.mappings.engine import load_mapping
from hub.resources import resources_from_settings
from hub.store.repository import HubStore
from hub.yamlfile import ConfigError

REPO = Path(__file__).parents[1]
FLAVOR = REPO / "hub" / "mappings" / "erp-sap-soap.yaml"
WSDL = REPO / "mock_systems" / "erp_journal_entry.wsdl"
POST_PATH = "/sap/bc/srt/scs_ext/sap/journalentrycreaterequestconfi"
QUERY_PATH = "/sap/bc/srt/scs_ext/sap/journalentrybyreferencequery"
CLEARING = "21819901"


def soap_settings(make_settings, sqlite_url, mocks, **overrides):
    settings = make_settings(sqlite_url, mocks.urls, erp_wsdl=str(WSDL), **overrides)
    settings.erp.mapping = "erp-sap-soap"
    return settings


def run(settings, instance, sites=("NJ01", "HZ02")):
    return materialize_sites(
        [*ASSETS, *CHECKS], sites=sites, resources=resources_from_settings(settings), instance=instance,
        raise_on_error=False,
    )


def ledger(mocks) -> list[dict]:
    return httpx.get(f"{mocks.base_urls['erp']}/_admin/state", timeout=10).raise_for_status().json()["documents"]


def received(mocks, path: str) -> list[dict]:
    log = httpx.get(f"{mocks.base_urls['erp']}/_admin/received", timeout=10).raise_for_status().json()
    return [r for r in log if r["method"] == "POST" and r["path"] == path]


def assert_booked_once_and_balanced(mocks, outbox: list[dict]) -> None:
    documents = ledger(mocks)
    references = [d["DocumentReferenceID"] for d in documents]
    posted = {r["entry_key"]: r for r in outbox if r["status"] == "posted"}
    assert sorted(references) == sorted(posted)  # every posted entry once, nothing else
    for doc in documents:
        row = posted[doc["DocumentReferenceID"]]
        assert doc["AccountingDocument"] == row["accounting_document"]
        amounts = {item["DebitCreditCode"]: Decimal(item["Amount"]) for item in doc["Items"]}
        accounts = {item["DebitCreditCode"]: item["GLAccount"] for item in doc["Items"]}
        assert amounts == {"S": Decimal(row["payload"]["amount"]), "H": -Decimal(row["payload"]["amount"])}
        assert accounts == {"S": row["payload"]["gl_account"], "H": CLEARING}


def test_the_soap_flavor_posts_every_entry_once_balanced(fresh_mocks, sqlite_url, make_settings):
    settings = soap_settings(make_settings, sqlite_url, fresh_mocks)
    with DagsterInstance.ephemeral() as instance:
        result = run(settings, instance)
    assert result.success
    outbox = HubStore(settings.database_url).load_outbox()
    assert outbox and {r["status"] for r in outbox} == {"posted"}
    assert_booked_once_and_balanced(fresh_mocks, outbox)
    posts = received(fresh_mocks, POST_PATH)
    assert posts and all("JournalEntryBulkCreateRequest" in p["body"] for p in posts)
    assert not [r for r in received(fresh_mocks, "/api/v1/journal-entries/bulk")]  # nothing went the REST way
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["erp_entries_confirmed"] and checks["erp_ledger_reconciled"]


def test_a_post_dropped_after_commit_is_asked_for_by_reference_and_never_booked_twice(
    fresh_mocks, sqlite_url, make_settings
):
    settings = soap_settings(make_settings, sqlite_url, fresh_mocks, retry_attempts=1)
    faults = {"rules": [{"kind": "commit_then_drop", "times": 1, "method": "POST", "path_prefix": POST_PATH}]}
    httpx.put(f"{fresh_mocks.base_urls['erp']}/_admin/faults", json=faults, timeout=10).raise_for_status()
    store = HubStore(settings.database_url)
    with DagsterInstance.ephemeral() as instance:
        first = run(settings, instance, sites=("NJ01",))
        assert not first.success  # the ERP committed, the answer was lost: unclear, not posted
        unclear = [r for r in store.load_outbox(site="NJ01") if r["status"] == "unclear"]
        assert unclear
        assert sorted(d["DocumentReferenceID"] for d in ledger(fresh_mocks)) == sorted(r["entry_key"] for r in unclear)
        posts_before = len(received(fresh_mocks, POST_PATH))
        second = run(settings, instance, sites=("NJ01",))
    assert second.success
    outbox = store.load_outbox(site="NJ01")
    assert {r["status"] for r in outbox} == {"posted"}
    assert len(received(fresh_mocks, QUERY_PATH)) >= len(unclear)  # each unclear entry asked for first
    assert len(received(fresh_mocks, POST_PATH)) == posts_before  # and none of them sent again
    assert_booked_once_and_balanced(fresh_mocks, outbox)


def test_an_entry_the_erp_refuses_is_recorded_with_its_words_and_nothing_is_lost(
    fresh_mocks, sqlite_url, make_settings, tmp_path
):
    rules = (REPO / "hub" / "rules" / "costs.yaml").read_text(encoding="utf-8")
    assert "CC-NJ-CRK" in rules
    costs = tmp_path / "costs.yaml"
    costs.write_text(rules.replace("CC-NJ-CRK", "CC-NJ-GONE"), encoding="utf-8")
    settings = soap_settings(make_settings, sqlite_url, fresh_mocks, cost_rules_file=costs)
    with DagsterInstance.ephemeral() as instance:
        run(settings, instance)
    store = HubStore(settings.database_url)
    outbox = store.load_outbox()
    refused = [r for r in outbox if r["status"] == "rejected"]
    assert refused and {r["payload"]["cost_center"] for r in refused} == {"CC-NJ-GONE"}
    assert {r["status"] for r in outbox} == {"posted", "rejected"}  # every entry accounted for
    quarantined = {q["source_key"]: q["reason"] for q in store.list_quarantine() if q["system"] == "erp"}
    for row in refused:
        assert "CC-NJ-GONE" in row["last_error"]  # the ERP's own words
        assert "CC-NJ-GONE" in quarantined[row["entry_key"]]
    assert_booked_once_and_balanced(fresh_mocks, outbox)


def _variant(tmp_path: Path, old: str, new: str) -> tuple[Path, str]:
    text = FLAVOR.read_text(encoding="utf-8")
    assert old in text
    changed = text.replace(old, new, 1)
    path = tmp_path / "erp-variant.yaml"
    path.write_text(changed, encoding="utf-8")
    return path, changed


def _at(text: str, needle: str) -> str:
    line = next(n for n, row in enumerate(text.splitlines(), 1) if needle in row)
    return f"{line}:{text.splitlines()[line - 1].index(needle) + 1}"


def test_the_outbound_mapping_refuses_a_path_it_cannot_build(tmp_path):
    path, text = _variant(
        tmp_path, "      JournalEntry.DocumentDate:",
        "      JournalEntry.Item[0].GLAccount: {from: gl_account}\n      JournalEntry.DocumentDate:",
    )
    with pytest.raises(ConfigError) as info:
        load_mapping(path)
    [problem] = info.value.problems
    assert str(problem).startswith(f"{path}:{_at(text, 'JournalEntry.Item[0]')}: ")
    assert "'Item[0]' is not an element name" in str(problem) and "'items'" in str(problem)


def test_items_that_can_never_balance_are_refused_when_the_file_is_loaded(tmp_path):
    path, text = _variant(tmp_path, "places: 2, negate: true}", "places: 2}")
    with pytest.raises(ConfigError) as info:
        load_mapping(path)
    [problem] = info.value.problems
    assert str(problem).startswith(f"{path}:{_at(text, 'balance:')}: ")
    assert "amount sums to 2" in str(problem)
