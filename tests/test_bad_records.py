"""One unreadable record is quarantined; it never fails a site's steps or switches off its gate.

A NUL (or any character XML 1.0 does not allow) in a permit's device ID or ticket number
would make zeep refuse the EAM request and PostgreSQL refuse the row; the mapping layer turns
such a record into a reject whose quarantine row can be stored anywhere.
"""

import json
import shutil
from pathlib import Path

import httpx
import pytest
from conftest import materialize_sites
from dagster import DagsterInstance

from hub.definitions import ASSETS, CHECKS
from hub.mappings.engine import load_mapping, parse_mapping
from hub.resources import resources_from_settings
from hub.store.repository import HubStore
from mock_systems.servers import start_systems

REPO = Path(__file__).parents[1]

BAD_DEVICE = "PTW-NJ-2026-0901"
BAD_TICKET = "PTW-NJ-2026-09\u000002"
BAD_TICKET_STORED = "PTW-NJ-2026-09\\u000002"


def _template() -> dict:
    permits = json.loads((REPO / "fixtures/ptw/permits.json").read_text(encoding="utf-8"))
    return next(p for p in permits if p["ticketNo"] == "PTW-NJ-2026-0001")


def _permit(**changes) -> dict:
    return {**_template(), **changes}


# --------------------------------------------------------------------------- the mapping layer


def test_nul_in_a_list_element_is_a_reject_naming_file_key_and_field():
    result = load_mapping("ptw").inbound(
        "permit", [_template(), _permit(ticketNo=BAD_DEVICE, equipmentCodes=["NJ-C-101", "NJ-P-1\u000001"])]
    )
    assert [r.permit_id for r in result.records] == ["PTW-NJ-2026-0001"]
    (rejected,) = result.quarantined
    assert rejected.source_key == BAD_DEVICE
    assert rejected.field == "device_ids"
    assert rejected.reason.startswith(
        f"ptw.yaml: permit {BAD_DEVICE}: device_ids[1] (from equipmentCodes): contains a control character U+0000"
    )
    # Stored with a visible escape, and the reason says so.
    assert rejected.payload["equipmentCodes"] == ["NJ-C-101", "NJ-P-1\\u000001"]
    assert "\\uXXXX" in rejected.reason
    # What could be read still lets the gate fail closed on it; the bad value is never kept.
    assert rejected.partial["permit_id"] == BAD_DEVICE and rejected.partial["status"] == "approved"
    assert "device_ids" not in rejected.partial


def test_nul_in_the_key_is_kept_as_a_record_without_a_key():
    """No store can keep the key, and no hold can be addressed by it: the reason and payload name it, escaped."""
    result = load_mapping("ptw").inbound("permit", [_permit(ticketNo=BAD_TICKET)])
    (rejected,) = result.quarantined
    assert not result.records
    assert rejected.source_key is None
    assert "kept without a source key" in rejected.reason
    assert rejected.payload["ticketNo"] == BAD_TICKET_STORED
    assert rejected.field == "permit_id"
    assert f"permit {BAD_TICKET_STORED}: permit_id (from ticketNo): contains a control character U+0000" in (
        rejected.reason
    )
    assert "permit_id" not in rejected.partial and rejected.partial["site"] == "NJ01"
    stored = json.dumps([rejected.source_key, rejected.payload, rejected.reason, rejected.partial], ensure_ascii=False)
    assert "\x00" not in stored


@pytest.mark.parametrize(
    ("char", "kind"),
    [
        ("\u0001", "a control character U+0001"),
        ("\u001f", "a control character U+001F"),
        ("\ud800", "a lone surrogate U+D800"),
        ("\ufffe", "a non-character U+FFFE"),
        ("\uffff", "a non-character U+FFFF"),
    ],
)
def test_every_character_xml_refuses_is_caught(char, kind):
    result = load_mapping("ptw").inbound("permit", [_permit(materials=["乙烯", f"氢{char}气"])])
    (rejected,) = result.quarantined
    assert f"material_names[1] (from materials): contains {kind}" in rejected.reason
    assert rejected.payload["materials"][1] == f"氢\\u{ord(char):04x}气"


def test_tab_newline_and_carriage_return_are_text():
    result = load_mapping("ptw").inbound("permit", [_permit(workshop="裂解\t车间\r\n二")])
    assert not result.quarantined and result.records[0].area == "裂解\t车间\r\n二"


def test_nul_in_a_value_mapped_with_unknown_error_quarantines_and_never_stops_the_batch():
    mapping = parse_mapping(
        """
system: ptw
version: 1
inbound:
  permit:
    key: ticketNo
    fields:
      permit_id: {from: ticketNo, transform: [id]}
      permit_type: {from: ticketType, transform: [id], map: {GC: work_at_height}, unknown: error}
      risk_level: {const: orange}
      site: {from: siteCode}
      area: {from: workshop}
      device_ids: {from: equipmentCodes, type: list, each: [id]}
      applicant: {from: applicant}
      planned_start: {from: planStartTime, type: datetime, format: "%Y-%m-%d %H:%M:%S"}
      planned_end: {from: planEndTime, type: datetime, format: "%Y-%m-%d %H:%M:%S"}
      status: {const: approved}
      submitted_at: {from: submitTime, type: datetime, format: "%Y-%m-%d %H:%M:%S"}
      updated_at: {from: updateTime, type: datetime, format: "%Y-%m-%d %H:%M:%S"}
timezone: Asia/Shanghai
""",
        name="strict.yaml",
    )
    result = mapping.inbound("permit", [_permit(ticketType="G\u0000C"), _template()])
    assert [r.permit_id for r in result.records] == ["PTW-NJ-2026-0001"]
    (rejected,) = result.quarantined
    assert "permit_type (from ticketType): contains a control character U+0000" in rejected.reason


def test_nested_records_at_child_with_nul_is_rejected_alone():
    mapping = load_mapping("mes")
    sample = json.loads((REPO / "fixtures/mes/materials.json").read_text(encoding="utf-8"))
    material = sample[0] if isinstance(sample, list) else next(iter(sample.values()))
    clean = mapping.inbound("process_parameter", [material])
    assert clean.records and not clean.quarantined
    parameters = mapping.spec.inbound["process_parameter"].records_at
    assert parameters
    spoiled = json.loads(json.dumps(material))
    node = spoiled
    *parents, last = parameters.split(".")
    for part in parents:
        node = node[part]
    first = node[last][0]
    text_field = next(k for k, v in first.items() if isinstance(v, str))
    first[text_field] = first[text_field] + "\u0000"
    result = mapping.inbound("process_parameter", [spoiled])
    assert len(result.records) == len(clean.records) - 1
    (rejected,) = result.quarantined
    assert "U+0000" in rejected.reason and "\u0000" not in rejected.reason
    assert "\u0000" not in json.dumps(rejected.payload, ensure_ascii=False)


# --------------------------------------------------------------------------- the whole path


@pytest.fixture
def spoiled_mocks(tmp_path: Path):
    """The fixtures plus two NJ01 work-at-height permits: one NUL in a device ID, one in the ticket number."""
    fixtures = tmp_path / "fixtures"
    shutil.copytree(REPO / "fixtures", fixtures)
    path = fixtures / "ptw/permits.json"
    permits = json.loads(path.read_text(encoding="utf-8"))
    permits += [
        _permit(ticketNo=BAD_DEVICE, equipmentCodes=["NJ-P-1\u000001"]),
        _permit(ticketNo=BAD_TICKET, equipmentCodes=["NJ-C-101"]),
    ]
    path.write_text(json.dumps(permits, ensure_ascii=False), encoding="utf-8")
    with start_systems(fixtures) as systems:
        yield systems


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_a_site_with_unreadable_permits_is_still_gated(spoiled_mocks, sqlite_url, pg_url, database, make_settings):
    url = sqlite_url if database == "sqlite" else pg_url
    settings = make_settings(url, spoiled_mocks.urls)
    with DagsterInstance.ephemeral() as instance:
        result = materialize_sites(
            [*ASSETS, *CHECKS], sites=("NJ01",), resources=resources_from_settings(settings), instance=instance,
            raise_on_error=False,
        )
    failures = [e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert result.success, failures

    store = HubStore(url)
    rows = [row for row in store.list_quarantine() if row["system"] == "ptw"]
    (device_row,) = [row for row in rows if row["source_key"] == BAD_DEVICE]
    assert device_row["field"] == "device_ids"
    assert "device_ids[0] (from equipmentCodes): contains a control character U+0000" in device_row["reason"]
    assert device_row["payload"]["equipmentCodes"] == ["NJ-P-1\\u000001"]
    (ticket_row,) = [row for row in rows if row["payload"].get("ticketNo") == BAD_TICKET_STORED]
    assert ticket_row["source_key"] is None and f"permit {BAD_TICKET_STORED}:" in ticket_row["reason"]
    assert "permit_id (from ticketNo): contains a control character U+0000" in ticket_row["reason"]

    # Neither reaches the permits table; every other permit of the site is decided as usual.
    assert BAD_DEVICE not in store.permit_ids("NJ01")
    decisions = {d.permit_id: d for d in store.latest_gate_decisions()}
    usual = decisions["PTW-NJ-2026-0001"]
    assert usual.decision == "block" and "OPEN_WORK_ORDER" in {r.code for r in usual.reasons}
    # The permit with the unreadable device is blocked as an invalid record (fail closed).
    assert decisions[BAD_DEVICE].decision == "block"

    holds = httpx.get(f"{spoiled_mocks.base_urls['ptw']}/_admin/state", timeout=10).json()["holds"]
    assert holds["PTW-NJ-2026-0001"][0]["action"] == "BLOCK"
    assert holds[BAD_DEVICE][0]["action"] == "BLOCK"
