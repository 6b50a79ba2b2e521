"""Mapping files: vendor records <-> canonical records, quarantine reasons, load-time checks."""

from __future__ import annotations

import hashlib
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.mappings import (
    TRANSFORMS,
    OutboundError,
    load_mapping,
    packaged_mappings,
    parse_mapping,
)
from hub.model import (
    Equipment,
    GateDecision,
    MaintenanceRecord,
    Permit,
    ProcessParameter,
    Reason,
    SafetyCostEntry,
)
from hub.yamlfile import ConfigError

SHANGHAI = ZoneInfo("Asia/Shanghai")
UTC = timezone.utc
MAPPINGS_DIR = Path(__file__).resolve().parents[1] / "hub" / "mappings"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def permit_record(**changes) -> dict:
    record = {
        "ticketNo": "PTW-NJ-2026-0042",
        "ticketType": "GC",
        "riskLevel": "1",
        "siteCode": "NJ01",
        "workshop": "裂解车间",
        "equipmentCodes": [" nj-p-101", "E-202 "],
        "materials": ["乙烯", " 氢气 "],
        "applicant": "张伟",
        "guardian": "李强",
        "planStartTime": "2026-12-01 08:00:00",
        "planEndTime": "2026-12-01 16:30:00",
        "state": "IN_PROGRESS",
        "submitTime": "2026-11-30 09:15:00",
        "approveTime": "2026-11-30 17:00:00",
        "guardianArriveTime": None,
        "closeTime": None,
        "closeResult": None,
        "workHours": 6.5,
        "updateTime": "2026-12-01 08:05:00",
    }
    record.update(changes)
    return record


def asset_record(**changes) -> dict:
    record = {
        "assetnum": " nj-p-101",
        "siteid": "NJ01",
        "description": "裂解炉进料泵",
        "location": "CRK-01",
        "status": "OPERATING",
        "nextinspdate": "2027-03-01T00:00:00+08:00",
    }
    record.update(changes)
    return record


def workorder_record(**changes) -> dict:
    record = {
        "wonum": "WO-1001",
        "assetnum": "NJ-P-101",
        "siteid": "NJ01",
        "worktype": "CM",
        "status": "APPR S1",  # a site's synonym label: must not matter
        "status_maxvalue": "APPR",
        "schedstart": "2026-12-01T08:00:00+08:00",
        "schedfinish": "2026-12-01T18:00:00+08:00",
        "isolationstate": "APPLIED",
        "changedate": "2026-11-30T10:00:00+08:00",
    }
    record.update(changes)
    return record


def material_record() -> dict:
    return {
        "ID": "乙烯",
        "Description": "Ethylene",
        "Parameter": [
            {"ID": "FLASH_POINT", "Value": {"ValueString": "-136", "DataType": "double", "UnitOfMeasure": "Cel"}},
            {"ID": "lel ", "Value": {"ValueString": "2.7", "DataType": "double", "UnitOfMeasure": "%"}},
            {"ID": "CAS", "Value": {"ValueString": "74-85-1", "DataType": "string"}},
        ],
    }


# --------------------------------------------------------------------------- loading


def test_every_packaged_mapping_loads_with_lineage():
    assert {"eam", "erp", "mes", "ptw"} <= set(packaged_mappings())
    for name in packaged_mappings():
        mapping = load_mapping(name)
        path = MAPPINGS_DIR / f"{name}.yaml"
        assert mapping.system == name or name.startswith(f"{mapping.system}-")  # e.g. a second vendor flavor
        assert mapping.source_file == path
        assert mapping.files[-1].path == path
        # an overlay's hash covers its base too
        assert mapping.sha256 == hashlib.sha256(b"".join(f.path.read_bytes() for f in mapping.files)).hexdigest()
        assert load_mapping(name) is mapping  # cached
        assert load_mapping(path) is mapping  # same file by path
    assert load_mapping("ptw").inbound_kinds == ("permit",)
    assert load_mapping("ptw").outbound_kinds == ("gate_decision",)
    assert load_mapping("eam").inbound_kinds == ("equipment", "maintenance_record")
    assert load_mapping("mes").inbound_kinds == ("process_parameter", "quality_rate")
    assert load_mapping("erp").outbound_kinds == ("safety_cost_entry",)


def test_edited_file_is_reloaded(tmp_path):
    path = tmp_path / "mes.yaml"
    text = (MAPPINGS_DIR / "mes.yaml").read_text(encoding="utf-8")
    path.write_text(text, encoding="utf-8")
    first = load_mapping(path)
    path.write_text(text.replace("ignore: [Description]", "ignore: []"), encoding="utf-8")
    second = load_mapping(path)
    assert second is not first and second.sha256 != first.sha256


def test_unknown_packaged_name():
    with pytest.raises(ConfigError) as info:
        load_mapping("sap")
    assert str(info.value) == f"sap:1:1: (file): no packaged mapping 'sap'; packaged: {', '.join(packaged_mappings())}"
    with pytest.raises(ConfigError) as info:
        load_mapping("mse")
    assert str(info.value).startswith("mse:1:1: (file): no packaged mapping 'mse'; did you mean 'mes'? packaged: eam")


def test_unknown_kind_at_call_is_a_programming_error():
    with pytest.raises(KeyError, match="ptw.yaml has no inbound mapping for 'equipment'; it maps permit"):
        load_mapping("ptw").inbound("equipment", [])


# --------------------------------------------------------------------------- PTW inbound


def test_ptw_permit_maps_to_canonical():
    result = load_mapping("ptw").inbound("permit", [permit_record()])
    assert result.quarantined == []
    assert result.records == [
        Permit(
            permit_id="PTW-NJ-2026-0042",
            permit_type="work_at_height",
            risk_level="red",
            site="NJ01",
            area="裂解车间",
            device_ids=("NJ-P-101", "E-202"),
            material_names=("乙烯", "氢气"),
            applicant="张伟",
            guardian="李强",
            planned_start=utc(2026, 12, 1, 0, 0),  # 08:00 Shanghai
            planned_end=utc(2026, 12, 1, 8, 30),
            status="active",
            submitted_at=utc(2026, 11, 30, 1, 15),
            approved_at=utc(2026, 11, 30, 9, 0),
            guardian_arrived_at=None,
            closed_at=None,
            result=None,
            work_hours=Decimal("6.5"),
            updated_at=utc(2026, 12, 1, 0, 5),
        )
    ]
    assert result.records[0].planned_start.isoformat() == "2026-12-01T00:00:00+00:00"


@pytest.mark.parametrize(
    ("vendor", "canonical"),
    [("DH", "hot_work"), ("SX", "confined_space"), ("GC", "work_at_height"), ("DZ", "lifting"),
     ("LSYD", "temporary_power"), (" dh", "hot_work")],
)
def test_ptw_ticket_types(vendor, canonical):
    [permit] = load_mapping("ptw").inbound("permit", [permit_record(ticketType=vendor)]).records
    assert permit.permit_type == canonical


def test_ptw_closed_permit_and_optional_values():
    record = permit_record(
        state="CLOSED", riskLevel=3, closeResult="INCIDENT", closeTime="2026-12-01 15:00:00",
        guardian="", workHours=None, guardianArriveTime="2026-12-01 07:50:00",
        equipmentCodes=[],  # no device linked: valid here, the gate decides what it means
    )
    del record["materials"]
    [permit] = load_mapping("ptw").inbound("permit", [record]).records
    assert permit.status == "closed"
    assert permit.risk_level == "yellow"  # a JSON number is read as its text "3"
    assert permit.result == "incident"
    assert permit.closed_at == utc(2026, 12, 1, 7, 0)
    assert permit.guardian_arrived_at == utc(2026, 11, 30, 23, 50)
    assert permit.guardian is None and permit.work_hours is None
    assert permit.device_ids == () and permit.material_names == ()


def test_ptw_missing_equipment_codes_is_quarantined():
    record = permit_record()
    del record["equipmentCodes"]
    result = load_mapping("ptw").inbound("permit", [record])
    assert result.records == []
    [rejected] = result.quarantined
    assert rejected.kind == "permit"
    assert rejected.source_key == "PTW-NJ-2026-0042"
    assert rejected.field == "device_ids"
    assert rejected.payload == record
    assert rejected.reason == "ptw.yaml: permit PTW-NJ-2026-0042: device_ids (from equipmentCodes): missing"


def test_ptw_unknown_ticket_type_is_quarantined():
    [rejected] = load_mapping("ptw").inbound("permit", [permit_record(ticketType="XX")]).quarantined
    assert rejected.field == "permit_type"
    assert rejected.reason == (
        "ptw.yaml: permit PTW-NJ-2026-0042: permit_type (from ticketType): "
        "unknown value 'XX'; expected one of DH, SX, GC, DZ, LSYD"
    )


def test_ptw_bad_date_is_quarantined():
    [rejected] = load_mapping("ptw").inbound("permit", [permit_record(planStartTime="2026-13-45 25:00:00")]).quarantined
    assert rejected.field == "planned_start"
    assert rejected.reason == (
        "ptw.yaml: permit PTW-NJ-2026-0042: planned_start (from planStartTime): "
        "cannot parse '2026-13-45 25:00:00' with format '%Y-%m-%d %H:%M:%S'"
    )


def test_ptw_all_problems_of_a_record_in_one_reason():
    record = permit_record(ticketType="XX", equipmentCodes=["P-101", "  ", None], submitTime=None, workHours=-1)
    [rejected] = load_mapping("ptw").inbound("permit", [record]).quarantined
    assert rejected.field == "permit_type"
    assert rejected.reason == (
        "ptw.yaml: permit PTW-NJ-2026-0042: "
        "permit_type (from ticketType): unknown value 'XX'; expected one of DH, SX, GC, DZ, LSYD; "
        "device_ids (from equipmentCodes[1]): is empty; "
        "device_ids (from equipmentCodes[2]): is null; "
        "submitted_at (from submitTime): is null; "
        "work_hours (from workHours): Input should be greater than or equal to 0 (found Decimal('-1'))"
    )


def test_ptw_canonical_validation_failure_is_quarantined():
    [rejected] = load_mapping("ptw").inbound("permit", [permit_record(workHours="-2")]).quarantined
    assert rejected.field == "work_hours"
    assert rejected.reason == (
        "ptw.yaml: permit PTW-NJ-2026-0042: work_hours (from workHours): "
        "Input should be greater than or equal to 0 (found Decimal('-2'))"
    )


def test_nothing_vanishes_and_nothing_raises():
    records = [
        permit_record(),
        "not an object",
        permit_record(ticketNo=None),
        permit_record(ticketNo="PTW-NJ-2026-0043", equipmentCodes="P-101"),
        permit_record(ticketNo="PTW-NJ-2026-0044", workHours="six"),
        permit_record(ticketNo="PTW-NJ-2026-0045", applicant={"name": "张伟"}),
    ]
    result = load_mapping("ptw").inbound("permit", records)
    assert len(result.records) + len(result.quarantined) == len(records)
    assert [r.permit_id for r in result.records] == ["PTW-NJ-2026-0042"]
    assert [(q.source_key, q.field, q.reason) for q in result.quarantined] == [
        (None, None, "ptw.yaml: permit at index 1: record is not an object (found str)"),
        (None, "permit_id", "ptw.yaml: permit at index 2 (no ticketNo): permit_id (from ticketNo): is null"),
        ("PTW-NJ-2026-0043", "device_ids",
         "ptw.yaml: permit PTW-NJ-2026-0043: device_ids (from equipmentCodes): expected a list, found str"),
        ("PTW-NJ-2026-0044", "work_hours",
         "ptw.yaml: permit PTW-NJ-2026-0044: work_hours (from workHours): cannot parse 'six' as a decimal number"),
        ("PTW-NJ-2026-0045", "applicant",
         "ptw.yaml: permit PTW-NJ-2026-0045: applicant (from applicant): expected text, found an object"),
    ]
    assert result.quarantined[0].payload == {"_raw": "not an object"}


# --------------------------------------------------------------------------- EAM inbound


def test_eam_equipment():
    eam = load_mapping("eam")
    result = eam.inbound(
        "equipment",
        [
            asset_record(),
            asset_record(assetnum="E-202", status="NOT READY", location="", nextinspdate=None,
                         datasyncdate="2026-11-27T23:00:00+08:00"),
        ],
    )
    assert result.quarantined == []
    assert result.records == [
        Equipment(device_id="NJ-P-101", site="NJ01", name="裂解炉进料泵", area="CRK-01", status="operating",
                  next_inspection_due=utc(2027, 2, 28, 16, 0), data_as_of=None),
        Equipment(device_id="E-202", site="NJ01", name="裂解炉进料泵", area=None, status="not_ready",
                  next_inspection_due=None, data_as_of=utc(2026, 11, 27, 15, 0)),
    ]


def test_eam_work_order_uses_internal_status_not_label():
    eam = load_mapping("eam")
    records = [
        workorder_record(),
        workorder_record(wonum="wo-1002 ", status="进行中", status_maxvalue="INPRG", worktype="EM",
                         isolationstate="RELEASED", schedstart=None, schedfinish=None),
        workorder_record(wonum="WO-1003", status="APPR", status_maxvalue="WSCH", worktype="INSP"),
        workorder_record(wonum="WO-1004", status="COMPLETE", status_maxvalue="WMATL", worktype="OH"),
    ]
    result = eam.inbound("maintenance_record", records)
    assert result.quarantined == []
    assert result.records[0] == MaintenanceRecord(
        record_id="WO-1001", site="NJ01", device_id="NJ-P-101", kind="corrective", status="approved",
        window_start=utc(2026, 12, 1, 0, 0), window_end=utc(2026, 12, 1, 10, 0),
        isolation="applied", updated_at=utc(2026, 11, 30, 2, 0),
    )
    assert [(r.record_id, r.kind, r.status, r.isolation) for r in result.records] == [
        ("WO-1001", "corrective", "approved", "applied"),
        ("WO-1002", "emergency", "in_progress", "released"),
        ("WO-1003", "inspection", "approved", "applied"),
        ("WO-1004", "overhaul", "in_progress", "applied"),
    ]
    assert result.records[1].window_start is None and result.records[1].window_end is None


@pytest.mark.parametrize(
    ("maxvalue", "status"),
    [("WAPPR", "planned"), ("APPR", "approved"), ("WSCH", "approved"), ("WMATL", "in_progress"),
     ("INPRG", "in_progress"), ("COMP", "completed"), ("CLOSE", "closed"), ("CAN", "cancelled")],
)
def test_eam_every_status_maxvalue(maxvalue, status):
    [record] = load_mapping("eam").inbound("maintenance_record", [workorder_record(status_maxvalue=maxvalue)]).records
    assert record.status == status


def test_eam_unknown_status_maxvalue_is_quarantined():
    record = workorder_record(status_maxvalue="BOGUS")
    [rejected] = load_mapping("eam").inbound("maintenance_record", [record]).quarantined
    assert rejected.source_key == "WO-1001"
    assert rejected.field == "status"
    assert rejected.payload == record
    assert rejected.reason == (
        "eam.yaml: maintenance_record WO-1001: status (from status_maxvalue): "
        "unknown value 'BOGUS'; expected one of WAPPR, APPR, WSCH, WMATL, INPRG, COMP, CLOSE, CAN"
    )


def test_eam_time_without_offset_is_quarantined():
    record = workorder_record(changedate="2026-11-30T10:00:00", schedstart="soon")
    [rejected] = load_mapping("eam").inbound("maintenance_record", [record]).quarantined
    assert rejected.reason == (
        "eam.yaml: maintenance_record WO-1001: "
        "window_start (from schedstart): cannot parse 'soon' as an ISO 8601 date-time; "
        "updated_at (from changedate): '2026-11-30T10:00:00' has no UTC offset"
    )


def test_eam_missing_isolation_is_not_defaulted():
    record = workorder_record()
    del record["isolationstate"]
    [rejected] = load_mapping("eam").inbound("maintenance_record", [record]).quarantined
    assert rejected.reason == "eam.yaml: maintenance_record WO-1001: isolation (from isolationstate): missing"


# --------------------------------------------------------------------------- MES inbound


def test_mes_one_material_becomes_many_parameters():
    result = load_mapping("mes").inbound("process_parameter", [material_record(), {"ID": "氢气", "Parameter": []}])
    assert result.quarantined == []
    assert result.records == [
        ProcessParameter(material_name="乙烯", parameter_id="FLASH_POINT", value="-136", data_type="double",
                         unit="Cel"),
        ProcessParameter(material_name="乙烯", parameter_id="LEL", value="2.7", data_type="double", unit="%"),
        ProcessParameter(material_name="乙烯", parameter_id="CAS", value="74-85-1", data_type="string", unit=None),
    ]


def test_mes_missing_data_type_is_quarantined_and_replayable():
    material = material_record()
    del material["Parameter"][1]["Value"]["DataType"]
    mes = load_mapping("mes")
    result = mes.inbound("process_parameter", [material])
    assert [r.parameter_id for r in result.records] == ["FLASH_POINT", "CAS"]
    [rejected] = result.quarantined
    assert rejected.source_key == "乙烯/lel"
    assert rejected.field == "data_type"
    assert rejected.reason == (
        "mes.yaml: process_parameter 乙烯/lel: data_type (from Parameter[1].Value.DataType): missing"
    )
    # the payload is the material with just the failing parameter: fixed and replayed, it maps alone
    assert rejected.payload == {**material, "Parameter": [material["Parameter"][1]]}
    fixed = rejected.payload
    fixed["Parameter"][0]["Value"]["DataType"] = "double"
    replay = mes.inbound("process_parameter", [fixed])
    assert replay.quarantined == [] and [r.parameter_id for r in replay.records] == ["LEL"]


def test_mes_parent_problem_rejects_each_parameter():
    material = material_record()
    material["ID"] = "  "
    result = load_mapping("mes").inbound("process_parameter", [material])
    assert result.records == []
    assert [q.reason for q in result.quarantined] == [
        "mes.yaml: process_parameter ?/FLASH_POINT: material_name (from ID): is empty",
        "mes.yaml: process_parameter ?/lel: material_name (from ID): is empty",
        "mes.yaml: process_parameter ?/CAS: material_name (from ID): is empty",
    ]


def test_mes_parameter_list_of_wrong_shape():
    result = load_mapping("mes").inbound("process_parameter", [{"ID": "乙烯", "Parameter": {"ID": "X"}}])
    [rejected] = result.quarantined
    assert rejected.reason == "mes.yaml: process_parameter 乙烯: Parameter: expected a list, found an object"


# --------------------------------------------------------------------------- outbound


def cost_entry(**changes) -> SafetyCostEntry:
    values = dict(
        entry_key="PTW-NJ-2026-0007/labour", permit_id="PTW-NJ-2026-0007", site="NJ01",
        cost_center="CC-NJ-CRK", gl_account="66020103", amount=Decimal("520"), currency="CNY",
        posting_date=date(2026, 11, 20), description="动火作业 人工费 PTW-NJ-2026-0007",
    )
    values.update(changes)
    return SafetyCostEntry(**values)


ERP_MESSAGE = {"idempotency_key": "6f1c0000-0000-4000-8000-000000000001"}


def test_erp_journal_entry_body():
    body = load_mapping("erp").outbound("safety_cost_entry", cost_entry(), ERP_MESSAGE)
    assert body == {
        "MessageHeader": {"UUID": ERP_MESSAGE["idempotency_key"]},
        "JournalEntry": {
            "CompanyCode": "NJ01",
            "DocumentReferenceID": "PTW-NJ-2026-0007/labour",
            "DocumentHeaderText": "动火作业 人工费 PTW-NJ-2026-0007",
            "PostingDate": "2026-11-20",
            "TransactionCurrency": "CNY",
            "GLAccount": "66020103",
            "CostCenter": "CC-NJ-CRK",
            "Amount": "520.00",
        }
    }


@pytest.mark.parametrize(("amount", "text"), [("1234.5", "1234.50"), ("0.1", "0.10"), ("1E+3", "1000.00")])
def test_erp_amount_has_two_decimals(amount, text):
    body = load_mapping("erp").outbound("safety_cost_entry", cost_entry(amount=Decimal(amount)), ERP_MESSAGE)
    assert body["JournalEntry"]["Amount"] == text


def test_erp_amount_is_never_silently_rounded():
    with pytest.raises(OutboundError) as info:
        load_mapping("erp").outbound("safety_cost_entry", cost_entry(amount=Decimal("520.005")), ERP_MESSAGE)
    assert str(info.value) == (
        "erp.yaml: safety_cost_entry PTW-NJ-2026-0007/labour: JournalEntry.Amount (from amount): "
        "520.005 has more than 2 decimal places; round it before posting"
    )
    assert info.value.field == "JournalEntry.Amount"


def test_outbound_refuses_the_wrong_record_type():
    with pytest.raises(TypeError, match="safety_cost_entry needs a SafetyCostEntry, got Permit"):
        load_mapping("erp").outbound("safety_cost_entry", load_mapping("ptw").inbound("permit", [permit_record()]).records[0])


def test_ptw_hold_body():
    decision = GateDecision(
        permit_id="PTW-NJ-2026-0042",
        decision="block",
        reasons=(
            Reason(code="OPEN_WORK_ORDER", device_id="P-101", message="工单 WO-1001 未关闭",
                   evidence={"wonum": "WO-1001", "status": "approved"}),
            Reason(code="EAM_DATA_STALE", device_id=None, message="EAM data older than 24 h"),
        ),
        rule_version="gate-2026.11-1",
        evaluated_at=datetime(2026, 11, 28, 18, 0, tzinfo=SHANGHAI),
    )
    assert load_mapping("ptw").outbound("gate_decision", decision) == {
        "action": "BLOCK",
        "ruleVersion": "gate-2026.11-1",
        "decidedAt": "2026-11-28T10:00:00Z",
        "reasons": [
            {"code": "OPEN_WORK_ORDER", "deviceId": "P-101", "message": "工单 WO-1001 未关闭",
             "evidence": {"wonum": "WO-1001", "status": "approved"}},
            {"code": "EAM_DATA_STALE", "deviceId": None, "message": "EAM data older than 24 h", "evidence": {}},
        ],
    }


def test_ptw_allow_body():
    decision = GateDecision(permit_id="P", decision="allow", rule_version="r1", evaluated_at=utc(2026, 11, 28, 10))
    assert load_mapping("ptw").outbound("gate_decision", decision) == {
        "action": "ALLOW", "ruleVersion": "r1", "decidedAt": "2026-11-28T10:00:00Z", "reasons": []
    }


# --------------------------------------------------------------------------- load-time checks

BASE = """\
system: test
version: 1
inbound:
  process_parameter:
    key: ID
    fields:
      material_name: {from: Material}
      parameter_id: {from: ID, transform: [id]}
      value: {from: Value}
      data_type: {from: Type}
"""


def position(text: str, line_contains: str, column_of: str) -> str:
    """'line:column' (1-based) of column_of on the first line containing line_contains."""
    for number, line in enumerate(text.splitlines(), start=1):
        if line_contains in line:
            return f"{number}:{line.index(column_of) + 1}"
    raise AssertionError(line_contains)


def load_error(tmp_path: Path, text: str) -> tuple[str, str]:
    path = tmp_path / "test.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_mapping(path)
    return str(path), str(info.value)


def test_base_mapping_is_valid(tmp_path):
    path = tmp_path / "test.yaml"
    path.write_text(BASE, encoding="utf-8")
    result = load_mapping(path).inbound("process_parameter", [{"Material": "乙烯", "ID": "lel", "Value": "2.7", "Type": "double"}])
    assert result.records == [ProcessParameter(material_name="乙烯", parameter_id="LEL", value="2.7", data_type="double")]


def test_error_unknown_canonical_field(tmp_path):
    path, error = load_error(tmp_path, BASE + "      colour: {from: Colour}\n")
    assert error == (
        f"{path}:11:7: inbound.process_parameter.fields.colour: process_parameter has no field 'colour'; "
        "expected one of material_name, parameter_id, value, data_type, unit, updated_at"
    )


def test_error_missing_required_canonical_field(tmp_path):
    path, error = load_error(tmp_path, BASE.replace("      value: {from: Value}\n", ""))
    assert error == f"{path}:6:5: inbound.process_parameter.fields: required process_parameter fields not mapped: value"


def test_error_unknown_transform(tmp_path):
    path, error = load_error(tmp_path, BASE.replace("[id]", "[id, trim]"))
    assert error == (
        f"{path}:8:48: inbound.process_parameter.fields.parameter_id.transform[1]: "
        "unknown transform 'trim'; did you mean 'strip'? expected one of id, strip, upper, lower"
    )


def test_error_unknown_kind(tmp_path):
    path, error = load_error(tmp_path, BASE.replace("process_parameter:", "process_parameters:"))
    assert error == (
        f"{path}:4:3: inbound.process_parameters: unknown record kind 'process_parameters'; "
        "did you mean 'process_parameter'? expected one of permit, equipment, maintenance_record, process_parameter, quality_rate, safety_cost_entry, gate_decision, erp_confirmation, erp_document"
    )


def test_error_yaml_syntax(tmp_path):
    path, error = load_error(tmp_path, BASE.replace("{from: Value}", "{from: Value"))
    assert error == f"{path}:10:16: (syntax): expected ',' or '}}', but got ':'"


def test_error_wrong_type_for_a_key(tmp_path):
    path, error = load_error(tmp_path, BASE.replace("{from: Type}", "{from: Type, optional: maybe}"))
    assert error == (
        f"{path}:10:41: inbound.process_parameter.fields.data_type.optional: "
        "Input should be a valid boolean, unable to interpret input (found 'maybe')"
    )


def test_error_misspelt_setting(tmp_path):
    path, error = load_error(tmp_path, BASE.replace("{from: Type}", "{form: Type}"))
    assert error == (
        f"{path}:10:19: inbound.process_parameter.fields.data_type.form: unknown key 'form'; did you mean 'from'? "
        "expected one of from, const, concat, separator, unit_of, default, optional, map, unknown, type, format, "
        "time_of_day, places, transform, split, each, each_fields, convert, first, reduce, unavailable, todo, reason, "
        "lookup, timezone, items, negate"
    )


def test_error_duplicate_key(tmp_path):
    path, error = load_error(tmp_path, BASE + "      value: {from: Value2}\n")
    assert error == f"{path}:11:7: inbound.process_parameter.fields.value: duplicate key (first at line 9)"


def test_error_code_tags_are_refused(tmp_path):
    path, error = load_error(tmp_path, BASE + "      unit: !!python/object/apply:os.system ['echo hi']\n")
    assert error == (
        f"{path}:11:13: (syntax): could not determine a constructor for the tag "
        "'tag:yaml.org,2002:python/object/apply:os.system'"
    )


def test_error_map_to_a_value_the_model_does_not_know(tmp_path):
    text = (MAPPINGS_DIR / "ptw.yaml").read_text(encoding="utf-8").replace("DZ: lifting", "DZ: hoisting")
    path, error = load_error(tmp_path, text)
    assert error == (
        f"{path}:{position(text, 'DZ: hoisting', 'hoisting')}: inbound.permit.fields.permit_type.map.DZ: 'hoisting' is not a valid permit.permit_type; "
        "did you mean 'lifting'? expected one of hot_work, confined_space, work_at_height, lifting, temporary_power"
    )


def test_error_outbound_map_must_cover_every_canonical_value(tmp_path):
    text = (MAPPINGS_DIR / "ptw.yaml").read_text(encoding="utf-8").replace(", allow: ALLOW", "")
    path, error = load_error(tmp_path, text)
    assert error == (
        f"{path}:{position(text, 'action:', '{block')}: outbound.gate_decision.fields.action.map: "
        "no vendor value for gate_decision.decision 'allow'"
    )


def test_error_local_times_need_a_timezone(tmp_path):
    text = (MAPPINGS_DIR / "ptw.yaml").read_text(encoding="utf-8").replace("timezone: Asia/Shanghai", "")
    path, error = load_error(tmp_path, text)
    lines = error.splitlines()
    where = position(text, "planned_start:", '"%Y')
    assert len(lines) == 7  # every local-time field is named, so all are fixed in one pass
    assert lines[0] == (
        f"{path}:{where}: inbound.permit.fields.planned_start.format: "
        "'%Y-%m-%d %H:%M:%S' reads plant-local times: set 'timezone' at the top of the file"
    )


def test_error_several_problems_reported_together(tmp_path):
    text = BASE.replace("[id]", "[idd]").replace("{from: Type}", "{from: Type, type: datetime, format: iso, places: 2}")
    path, error = load_error(tmp_path, text)
    assert error.splitlines() == [
        f"{path}:8:44: inbound.process_parameter.fields.parameter_id.transform[0]: "
        "unknown transform 'idd'; did you mean 'id'? expected one of id, strip, upper, lower",
        f"{path}:10:60: inbound.process_parameter.fields.data_type.places: "
        "'places' is only used when writing to the vendor (outbound)",
    ]


# --------------------------------------------------------------------------- properties


@settings(max_examples=300, deadline=None)
@given(
    moment=st.datetimes(
        min_value=datetime(1992, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.timezones(),
        allow_imaginary=False,
    ).filter(lambda d: d.utcoffset() is not None)
)
def test_plant_local_time_round_trips_to_the_second(moment):
    # Asia/Shanghai has had no daylight saving since 1991, so every local time is unambiguous.
    local = moment.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")
    [permit] = load_mapping("ptw").inbound("permit", [permit_record(planStartTime=local)]).records
    assert permit.planned_start == moment.astimezone(UTC).replace(microsecond=0)
    assert permit.planned_start.tzinfo == UTC


@given(st.text())
def test_id_transform_is_idempotent(text):
    once = TRANSFORMS["id"](text)
    assert TRANSFORMS["id"](once) == once


@settings(max_examples=200, deadline=None)
@given(
    moment=st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9000, 1, 1), timezones=st.timezones(),
                        allow_imaginary=False)
    .filter(lambda d: d.utcoffset() is not None)
)
def test_hold_time_written_is_the_same_instant(moment):
    decision = GateDecision(permit_id="P", decision="block", rule_version="r", evaluated_at=moment)
    written = load_mapping("ptw").outbound("gate_decision", decision)["decidedAt"]
    assert written.endswith("Z")
    assert datetime.fromisoformat(written) == moment.astimezone(UTC)


def test_daylight_saving_gaps_and_folds_are_refused(tmp_path):
    path = tmp_path / "berlin.yaml"
    path.write_text(
        """\
system: berlin
version: 1
timezone: Europe/Berlin
inbound:
  maintenance_record:
    key: id
    fields:
      record_id: {from: id}
      site: {const: NJ01}
      device_id: {from: device}
      kind: {const: inspection}
      status: {const: planned}
      updated_at: {from: changed, type: datetime, format: "%d.%m.%Y %H:%M"}
""",
        encoding="utf-8",
    )
    mapping = load_mapping(path)
    result = mapping.inbound(
        "maintenance_record",
        [
            {"id": "A", "device": "D", "changed": "29.03.2026 02:30"},
            {"id": "B", "device": "D", "changed": "25.10.2026 02:30"},
            {"id": "C", "device": "D", "changed": "25.10.2026 04:30"},
        ],
    )
    assert [q.reason for q in result.quarantined] == [
        "berlin.yaml: maintenance_record A: updated_at (from changed): '29.03.2026 02:30' does not exist in "
        "Europe/Berlin (clocks went forward)",
        "berlin.yaml: maintenance_record B: updated_at (from changed): '25.10.2026 02:30' is ambiguous in "
        "Europe/Berlin (clocks went back)",
    ]
    assert [r.updated_at for r in result.records] == [utc(2026, 10, 25, 3, 30)]
    assert result.records[0].updated_at - timedelta(hours=1) == utc(2026, 10, 25, 2, 30)


def test_hold_body_reads_back_with_a_list_of_sub_objects(tmp_path):
    """each_fields works both ways: a mapping reading the hold body gives back the same decision."""
    path = tmp_path / "readback.yaml"
    path.write_text(
        """\
system: ptw-readback
version: 1
inbound:
  gate_decision:
    fields:
      permit_id: {const: PTW-NJ-2026-0042}
      decision: {from: hold.action, map: {BLOCK: block, ALLOW: allow}}
      rule_version: {from: hold.ruleVersion}
      evaluated_at: {from: hold.decidedAt, type: datetime, format: iso}
      reasons:
        from: hold.reasons
        each_fields:
          code: {from: code}
          device_id: {from: deviceId, optional: true}
          message: {from: message}
          evidence: {from: evidence, type: object, optional: true}
""",
        encoding="utf-8",
    )
    decision = GateDecision(
        permit_id="PTW-NJ-2026-0042", decision="block", rule_version="gate-2026.11-1",
        evaluated_at=utc(2026, 11, 28, 10),
        reasons=(Reason(code="ISOLATION_NOT_RELEASED", device_id="P-101", message="挂牌未解除",
                        evidence={"wonum": "WO-1001"}),
                 Reason(code="NO_DEVICE_LINKED", message="no device")),
    )
    body = load_mapping("ptw").outbound("gate_decision", decision)
    readback = load_mapping(path)
    assert readback.inbound("gate_decision", [{"hold": body}]).records == [decision]

    broken = {"hold": {**body, "reasons": [{"code": "OPEN_WORK_ORDER", "message": None}, "oops"]}}
    [rejected] = readback.inbound("gate_decision", [broken]).quarantined
    assert rejected.reason == (
        "readback.yaml: gate_decision at index 0: reasons (from hold.reasons[0].message): is null; "
        "reasons (from hold.reasons[1]): expected an object, found str"
    )
