"""The mapping language against replies shaped as real Maximo OSLC and SAP OData v2 send them.

Each test writes a real flavor file to tmp_path and goes through the real loader, the real CLI
and, where a request is involved, a real HTTP server on loopback.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from typer.testing import CliRunner

from hub.cli import app as hub_app
from hub.connectors.endpoint import EndpointSpec
from hub.connectors.operations import SystemClient
from hub.connectors.rest import RestClient
from hub.connectors.retry import RetryPolicy
from hub.logic.clearance import SiteEam, build_profiles
from hub.logic.gate import decide
from hub.logic.rules import GateRules
from hub.mappings import load_mapping
from hub.mappings.lookups import LookupCache
from hub.model import Permit
from hub.settings import SystemEndpoint
from conftest import loopback_server, reply_json

NOW = datetime(2026, 3, 1, 8, 0, tzinfo=timezone.utc)

# Maximo work orders with their tag-locks as child rows, a site's status labels (synonyms), and
# a location that is text, or an object when the related object of that name is selected.
MAXIMO = """\
system: eam
version: 1
timezone: Asia/Shanghai
tables:
  wo_status:                       # the site's synonym domain: label -> internal value
    rows: {"APPR S1": APPR, "进行中": INPRG, "WAPPR": WAPPR, "CLOSE": CLOSE}
inbound:
  equipment:
    key: [siteid, assetnum]
    fields:
      device_id: {from: assetnum, transform: [id]}
      site: {from: siteid, transform: [id]}
      name: {from: description}
      area:
        first: [{from: location, shape: text}, "$alias_this_attr$location"]
        optional: true
      status: {from: status_maxvalue, map: {OPERATING: operating, NOTREADY: not_ready}}
  maintenance_record:
    key: [siteid, wonum]
    fields:
      record_id: {from: wonum, transform: [id]}
      site: {from: siteid, transform: [id]}
      device_id: {from: assetnum, transform: [id]}
      kind: {from: worktype, map: {PM: preventive, CM: corrective}}
      status:
        from: status
        lookup: wo_status
        map: {WAPPR: planned, APPR: approved, INPRG: in_progress, CLOSE: closed}
      isolation:
        reduce:
          over: wosafetylink
          op: any
          where: {applied: true}
          unless: {removed: true}
          empty: released
        map: {"true": applied, "false": released, released: released}
      window_start: {from: schedstart, type: datetime, format: "%Y%m%d%H%M%S", timezone: UTC, optional: true}
      window_end: {from: schedfinishDate, type: datetime, format: "%Y-%m-%d", time_of_day: {from: schedfinishTime, format: "%H:%M:%S"}, optional: true}
      updated_at: {from: changedate, type: datetime, format: iso}
    ignore: [href, _rowstamp]
endpoint:
  operations:
    maintenance:
      batch: {size: 50, item: '"{id}"', escape: json, join: ","}
      requests:
        - path: /os/mxwo
          query: {oslc.where: 'assetnum in [{ids}]'}
          records: {member: maintenance_record}
"""


def work_order(wonum: str, locks: list | None, status: str = "APPR S1") -> dict:
    row = {
        "href": f"http://maximo/oslc/os/mxwo/_{wonum}", "_rowstamp": "1234", "wonum": wonum, "siteid": "nj01 ",
        "assetnum": "p-101", "worktype": "PM", "status": status, "status_maxvalue": "APPR",
        "schedstart": "20260301060000", "schedfinishDate": "2026-03-01", "schedfinishTime": "18:00:00",
        "changedate": "2026-03-01T07:00:00+08:00",
    }
    if locks is not None:
        row["wosafetylink"] = locks
    return row


def reply(*members: dict) -> dict:
    return {"member": list(members), "responseInfo": {"totalCount": len(members), "href": "http://maximo/oslc/os/mxwo"}}


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def run(*args: str):
    return CliRunner().invoke(hub_app, ["mappings", *args])


# --------------------------------------------------------------------------- reductions, look-ups, zones


def test_isolation_from_tag_lock_rows_any_applied_and_not_removed(tmp_path):
    mapping = load_mapping(write(tmp_path, "maximo.yaml", MAXIMO))
    rows = [
        work_order("WO1", [{"tagoutid": "T1", "applied": True, "removed": False}]),
        work_order("WO2", [{"tagoutid": "T1", "applied": True, "removed": True}, {"tagoutid": "T2", "applied": False}]),
        work_order("WO3", []),
        work_order("WO4", None),
        work_order("WO5", [{"tagoutid": "T1", "applied": "Y"}]),  # says nothing of removal: still a lock
    ]
    result = mapping.inbound("maintenance_record", reply(*rows)["member"])
    assert result.quarantined == []
    assert [r.isolation for r in result.records] == ["applied", "released", "released", "released", "applied"]


def test_a_child_list_that_is_not_a_list_quarantines_naming_it(tmp_path):
    mapping = load_mapping(write(tmp_path, "maximo.yaml", MAXIMO))
    [rejected] = mapping.inbound("maintenance_record", [work_order("WO1", {"applied": True})]).quarantined  # type: ignore[arg-type]
    assert rejected.source_key == "nj01/WO1"  # the exact vendor text, for writing back
    assert "isolation (from wosafetylink): expected a list, found an object" in rejected.reason


def test_reduce_needs_an_explicit_empty_result(tmp_path):
    text = MAXIMO.replace("          empty: released\n", "")
    result = run("validate", str(write(tmp_path, "maximo.yaml", text)))
    assert result.exit_code == 1
    line = text.splitlines().index("        reduce:") + 2
    assert f"maximo.yaml:{line}:11: inbound.maintenance_record.fields.isolation.reduce: 'empty' is required" in result.output


def test_status_label_looked_up_in_the_inline_synonym_table_and_unknown_label_quarantines(tmp_path):
    mapping = load_mapping(write(tmp_path, "maximo.yaml", MAXIMO))
    result = mapping.inbound("maintenance_record", [work_order("WO1", [], "进行中"), work_order("WO2", [], "APPR S9")])
    assert [r.status for r in result.records] == ["in_progress"]
    [rejected] = result.quarantined
    assert "'APPR S9' is not in look-up table wo_status (inline, 4 rows)" in rejected.reason


def test_utc_compact_and_plant_local_date_time_pair_in_one_file(tmp_path):
    mapping = load_mapping(write(tmp_path, "maximo.yaml", MAXIMO))
    [record] = mapping.inbound("maintenance_record", [work_order("WO1", [])]).records
    assert record.window_start == datetime(2026, 3, 1, 6, 0, tzinfo=timezone.utc)  # UTC as sent
    assert record.window_end == datetime(2026, 3, 1, 10, 0, tzinfo=timezone.utc)  # 18:00 in Shanghai


def test_location_as_text_or_as_selected_related_object(tmp_path):
    mapping = load_mapping(write(tmp_path, "maximo.yaml", MAXIMO))
    asset = {"assetnum": "P-101", "siteid": "NJ01", "description": "pump", "status_maxvalue": "OPERATING"}
    result = mapping.inbound("equipment", [
        {**asset, "location": "U1-PUMPS"},
        {**asset, "assetnum": "P-102", "location": {"location": "U1-PUMPS", "description": "pumps"},
         "$alias_this_attr$location": "U1-PUMPS-B"},
    ])
    assert [e.area for e in result.records] == ["U1-PUMPS", "U1-PUMPS-B"]


def test_composite_key_is_exact_for_writing_back_and_normalised_for_matching(tmp_path):
    mapping = load_mapping(write(tmp_path, "maximo.yaml", MAXIMO))
    [unit] = mapping.vendor_records("maintenance_record", [work_order("wo1 ", [])])
    assert unit.key == "nj01/wo1"
    assert unit.match_key == "NJ01/WO1"


# --------------------------------------------------------------------------- a table from a second request


SAP_CATALOGUE = """\
system: mes
version: 1
tables:
  characteristic:                  # characteristic name -> data type, from the class catalogue
    operation: catalogue
    key: CharcName
    value: CharcDataType
    refresh: PT10M
inbound:
  process_parameter:
    key: __metadata.id
    fields:
      material_name: {from: Material, transform: [strip]}
      parameter_id: {from: Characteristic, transform: [id]}
      value: {first: [CharcValue, CharcFromNumericValue]}
      data_type: {from: Characteristic, lookup: characteristic}
      unit: {from: CharcFromNumericValueUnit, optional: true}
      updated_at: {from: ChangedOn, type: datetime, format: sap_date, optional: true}
endpoint:
  operations:
    catalogue:
      requests:
        - path: /A_ClfnCharcBasic
          query: {$format: json}
          records: {d.results: characteristic}
    parameters:
      batch: {size: 10, item: "Material eq '{id}'", escape: odata, join: " or "}
      requests:
        - path: /A_ProductCharcValue
          query: {$filter: "{ids}", $format: json}
          records: {d.results: process_parameter}
"""

PARAMETERS = {"d": {"results": [
    {"__metadata": {"id": "A_ProductCharcValue('TOLUENE','FLASH_POINT')"}, "Material": "TOLUENE",
     "Characteristic": "FLASH_POINT", "CharcValue": "", "CharcFromNumericValue": "4",
     "CharcFromNumericValueUnit": "CEL", "ChangedOn": "/Date(1772323200000+0000)/"},
    {"__metadata": {"id": "A_ProductCharcValue('TOLUENE','TOXICITY')"}, "Material": "TOLUENE",
     "Characteristic": "TOXICITY", "CharcValue": "IV", "ChangedOn": "/Date(1772323200000+0000)/"},
]}}


def catalogue_server(calls: list[str]):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            calls.append(self.path)
            body = json.dumps({"d": {"results": [
                {"CharcName": "FLASH_POINT", "CharcDataType": "NUM"}, {"CharcName": "LEL", "CharcDataType": "NUM"},
            ]}}).encode()
            reply_json(self, body)

        def log_message(self, *args):
            pass

    return loopback_server(Handler)


def test_a_table_from_a_second_request_is_cached_refreshed_and_a_missing_value_quarantines(tmp_path):
    mapping = load_mapping(write(tmp_path, "sap.yaml", SAP_CATALOGUE))
    calls: list[str] = []
    with catalogue_server(calls) as url:
        rest = RestClient("mes", SystemEndpoint(url=url), connect_timeout_s=2, read_timeout_s=2,
                          retry=RetryPolicy(attempts=1))
        assert mapping.spec.endpoint is not None
        with SystemClient("mes", EndpointSpec.model_validate(mapping.spec.endpoint.model_dump()), "sap.yaml",
                          base_url=url, rest=rest) as client:
            cache = LookupCache(mapping)
            tables = cache.tables(client.fetch, NOW)
            assert cache.tables(client.fetch, NOW + timedelta(minutes=5)) == tables  # cached
            assert len(calls) == 1
            cache.tables(client.fetch, NOW + timedelta(minutes=10))  # refreshed on its interval
            assert len(calls) == 2 and calls[0].startswith("/A_ClfnCharcBasic")
    result = mapping.inbound("process_parameter", PARAMETERS["d"]["results"], tables)
    [record] = result.records
    assert (record.value, record.data_type, record.unit) == ("4", "NUM", "CEL")  # the numeric value as fallback
    [rejected] = result.quarantined
    assert "'TOXICITY' is not in look-up table characteristic (from operation catalogue, 2 rows)" in rejected.reason
    # Never loaded: every record that needs the table is quarantined saying so.
    unloaded = mapping.inbound("process_parameter", PARAMETERS["d"]["results"][:1])
    assert "look-up table characteristic (from operation catalogue) has not been loaded" in unloaded.quarantined[0].reason


def test_a_table_naming_an_operation_the_endpoint_lacks_is_refused_at_its_place(tmp_path):
    path = write(tmp_path, "sap.yaml", SAP_CATALOGUE.replace("operation: catalogue", "operation: catalog"))
    result = run("validate", str(path))
    assert result.exit_code == 1
    assert f"{path}:5:16: tables.characteristic.operation: the endpoint has no operation 'catalog'" in result.output


# --------------------------------------------------------------------------- preview of whole replies


def test_preview_reads_a_maximo_reply_wrapped_in_member_and_response_info(tmp_path):
    mapping = write(tmp_path, "maximo.yaml", MAXIMO)
    sample = write(tmp_path, "reply.json", json.dumps(reply(work_order("WO1", [{"applied": True}]))))
    result = run("preview", str(mapping), "--sample", str(sample), "--kind", "maintenance_record")
    assert result.exit_code == 0, result.output
    assert "1 mapped, 0 quarantined" in result.output and "isolation: applied" in result.output
    assert "responseInfo" not in result.output


def test_preview_reads_odata_results_and_a_single_entity(tmp_path):
    mapping = write(tmp_path, "sap.yaml", SAP_CATALOGUE)
    many = write(tmp_path, "many.json", json.dumps(PARAMETERS))
    single = write(tmp_path, "one.json", json.dumps({"d": PARAMETERS["d"]["results"][1]}))
    for sample, count in ((many, 2), (single, 1)):
        result = run("preview", str(mapping), "--sample", str(sample))
        assert result.exit_code == 0, result.output
        assert f"0 mapped, {count} quarantined" in result.output  # no catalogue loaded in a preview


# --------------------------------------------------------------------------- gate inputs


def test_validate_refuses_an_invented_gate_input_and_warns_when_a_reason_is_given(tmp_path):
    invented = MAXIMO.replace(
        'status: {from: status_maxvalue, map: {OPERATING: operating, NOTREADY: not_ready}}', 'status: {const: operating}'
    )
    path = write(tmp_path, "maximo.yaml", invented)
    result = run("validate", str(path))
    assert result.exit_code == 1
    line = invented.splitlines().index("      status: {const: operating}") + 1
    assert f"{path}:{line}:7: inbound.equipment.fields.status: gate input equipment.status comes from a const" in result.output
    reasoned = invented.replace("{const: operating}", "{const: operating, reason: \"the test rig has no status\"}")
    result = run("validate", str(write(tmp_path, "maximo.yaml", reasoned)))
    assert result.exit_code == 0, result.output
    assert "warning: " in result.output and "(the test rig has no status)" in result.output


def test_an_unmapped_isolation_is_refused_since_the_model_would_say_none(tmp_path):
    start = MAXIMO.index("      isolation:\n")
    end = MAXIMO.index("      window_start")
    result = run("validate", str(write(tmp_path, "maximo.yaml", MAXIMO[:start] + MAXIMO[end:])))
    assert result.exit_code == 1
    assert "gate input maintenance_record.isolation is not mapped, so every record would say 'none'" in result.output


def test_unavailable_isolation_blocks_the_permit_with_isolation_unknown(tmp_path):
    start = MAXIMO.index("      isolation:\n")
    end = MAXIMO.index("      window_start")
    text = MAXIMO[:start] + '      isolation: {unavailable: "this Maximo has no safety module"}\n' + MAXIMO[end:]
    path = write(tmp_path, "maximo.yaml", text)
    result = run("validate", str(path))
    assert result.exit_code == 0 and "blocks with ISOLATION_UNKNOWN" in result.output
    mapping = load_mapping(path)
    records = mapping.inbound("maintenance_record", [work_order("WO1", None, "CLOSE")]).records
    assert [r.isolation for r in records] == ["unknown"]
    equipment = load_mapping(path).inbound("equipment", [
        {"assetnum": "P-101", "siteid": "NJ01", "description": "pump", "status_maxvalue": "OPERATING"}
    ]).records
    rules = GateRules(version="t", max_eam_data_age=timedelta(hours=1))
    eam = SiteEam("NJ01", {e.device_id: e for e in equipment}, records, {"P-101": NOW})
    permit = Permit(permit_id="GZ-1", permit_type="work_at_height", risk_level="red", site="NJ01", area="U1",
                    device_ids=("P-101",), applicant="li", planned_start=NOW, planned_end=NOW + timedelta(hours=2),
                    status="approved", submitted_at=NOW, updated_at=NOW)
    decision = decide(permit, build_profiles(["P-101"], eam, rules, NOW), rules, NOW)
    assert decision is not None and decision.decision == "block"
    assert [r.code for r in decision.reasons] == ["ISOLATION_UNKNOWN"]


def test_identity_cannot_be_declared_unavailable(tmp_path):
    text = MAXIMO.replace("      device_id: {from: assetnum, transform: [id]}\n      site: {from: siteid, transform: [id]}\n      name",
                          "      device_id: {unavailable: nope}\n      site: {from: siteid, transform: [id]}\n      name")
    result = run("validate", str(write(tmp_path, "maximo.yaml", text)))
    assert result.exit_code == 1 and "equipment.device_id cannot be declared unavailable" in result.output


def test_packaged_flavors_have_no_invented_gate_inputs():
    result = run("validate")
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output


# --------------------------------------------------------------------------- drafts


def test_new_drafts_a_flavor_from_a_captured_reply_that_validate_refuses_until_decided(tmp_path):
    sample = write(tmp_path, "reply.json", json.dumps(reply(work_order("WO1", [{"applied": True}]))))
    draft_path = tmp_path / "draft.yaml"
    result = run("new", "eam", "--from-sample", str(sample), "--kind", "maintenance_record", "-o", str(draft_path))
    assert result.exit_code == 0, result.output
    text = draft_path.read_text(encoding="utf-8")
    assert 'records: {"member": maintenance_record}' in text
    assert 'updated_at: {todo: "which vendor field gives updated_at?"}' in text
    assert '#   changedate: {type: "datetime", format: "iso"}' in text
    assert "#   schedstart: {type: \"datetime\", format: \"%Y%m%d%H%M%S\", timezone: \"UTC\"}" in text
    checked = run("validate", str(draft_path))
    assert checked.exit_code == 1
    for gate_input in ("status", "isolation", "device_id"):
        assert f"inbound.maintenance_record.fields.{gate_input}.todo: still to decide: gate input" in checked.output


# --------------------------------------------------------------------------- a value field chosen by data type


def batch_value(charc: str, text: str, number: str | None, unit: str = "") -> dict:
    """An API_BATCH_SRV A_BatchCharcValue row as SAP sends it: both value fields, one of them meaningful."""
    return {
        "__metadata": {"type": "API_BATCH_SRV.A_BatchCharcValueType"}, "Material": "乙烯", "Batch": "B1",
        "CharcInternalID": charc, "CharcValue": text, "CharcFromNumericValue": number,
        "CharcFromNumericValueUnit": unit, "LastChangeDateTime": "/Date(1761955200000+0000)/",
    }


def test_the_catalogues_data_type_picks_the_value_field_never_the_one_that_happens_to_be_filled():
    """SAP fills both value fields: a CHAR characteristic with an empty text still has a numeric
    zero, a NUM one may carry text. The data type from the catalogue decides, so an empty CHAR
    value is held as missing instead of read as 0, and a NUM value is read as its number."""
    mapping = load_mapping("mes-sap-s4")
    tables = {
        "characteristic": {"0000000801": "FLASH_POINT", "0000000806": "TOXICITY_CLASS"},
        "characteristic_type": {"0000000801": "NUM", "0000000806": "CHAR"},
    }
    result = mapping.inbound("process_parameter", [
        batch_value("0000000801", "-136 °C", "-1.36E2", "CEL"),
        batch_value("0000000806", "", "0.0E+00"),
        batch_value("0000000806", "III", "0.0E+00"),
    ], tables=tables)
    assert [(p.parameter_id, p.value, p.data_type) for p in result.records] == [
        ("FLASH_POINT", "-136", "double"), ("TOXICITY_CLASS", "III", "string"),
    ]
    [held] = result.quarantined
    assert "value" in held.reason and "CharcValue" in held.reason


def test_a_condition_on_a_field_the_kind_does_not_have_is_refused_at_its_place(tmp_path):
    text = (
        "extends: mes-sap-s4.yaml\n"
        "inbound:\n"
        "  process_parameter:\n"
        "    fields:\n"
        "      value:\n"
        "        first:\n"
        "          - {from: CharcFromNumericValue, when: {dtype: double}}\n"
        "          - {from: CharcValue, when: {data_type: string}}\n"
    )
    path = tmp_path / "mes-site.yaml"
    path.write_text(text, encoding="utf-8")
    (tmp_path / "mes-sap-s4.yaml").write_text(
        (Path(__file__).parents[1] / "hub/mappings/mes-sap-s4.yaml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    result = run("validate", str(path))
    assert result.exit_code == 1
    assert "mes-site.yaml:7:" in result.output and "first[0].when: process_parameter has no field 'dtype'" in result.output
