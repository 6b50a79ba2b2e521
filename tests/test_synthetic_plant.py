"""The synthetic plant generator: deterministic, realistic, and served and mapped like the fixtures.

Expectations come from the generated files and the manifest, read back here; the quarantine
checks run the hub's own mapping files, and the serving checks run the real mock systems.
"""

from __future__ import annotations

import json
import re
import statistics
from collections import Counter
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from lxml import etree
from typer.testing import CliRunner

from hub.cli import app
from hub.logic.rules import load_cost_rules
from hub.mappings.engine import load_mapping
from hub.synthetic_plant import STATUS_LABELS, change_plant, generate_plant
from mock_systems.servers import start_systems

REPO = Path(__file__).parents[1]
PLANT_TZ = ZoneInfo("Asia/Shanghai")
ANCHOR_LOCAL = "2026-12-01 00:00:00"
TNS = "urn:plant:eam:maintenance:v1"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
CJK = re.compile(r"[\u4e00-\u9fff]")
SIZE = {"sites": 3, "permits": 2000, "devices": 400, "work_orders": 4000, "materials": 60}

#: (mapping, kind, file) for every vendor list the hub maps.
MAPPED_FILES = (
    ("ptw", "permit", "ptw/permits.json"),
    ("eam", "equipment", "eam/assets.json"),
    ("eam", "maintenance_record", "eam/workorders.json"),
    ("mes", "process_parameter", "mes/materials.json"),
)


def read(plant: Path, relative: str):
    return json.loads((plant / relative).read_text(encoding="utf-8"))


def norm(device_id: str) -> str:
    return device_id.strip().upper()


def files_of(plant: Path) -> dict[str, bytes]:
    return {str(p.relative_to(plant)): p.read_bytes() for p in sorted(plant.rglob("*")) if p.is_file()}


def quarantined_by_mappings(plant: Path) -> dict[tuple[str, str], str]:
    """(file, key) -> reason for every record the hub's mappings reject."""
    rejected = {}
    for system, kind, relative in MAPPED_FILES:
        for item in load_mapping(system).inbound(kind, read(plant, relative)).quarantined:
            rejected[(relative, item.source_key)] = item.reason
    return rejected


def soap_request(assetnums: list[str], changedsince: str | None = None) -> bytes:
    items = "".join(f"<eam:assetnum>{a}</eam:assetnum>" for a in assetnums)
    since = f"<eam:changedsince>{changedsince}</eam:changedsince>" if changedsince else ""
    return (
        f'<soap:Envelope xmlns:soap="{SOAP_ENV}" xmlns:eam="{TNS}"><soap:Body><eam:GetAssetMaintenanceRequest>'
        f"{items}{since}</eam:GetAssetMaintenanceRequest></soap:Body></soap:Envelope>"
    ).encode()


def eam_answer(url: str, assetnums: list[str], changedsince: str | None = None) -> tuple[list[str], list[str]]:
    """(asset numbers, work order numbers) the SOAP EAM answers."""
    reply = httpx.post(
        url, content=soap_request(assetnums, changedsince), timeout=30,
        headers={"content-type": "text/xml; charset=utf-8", "SOAPAction": f'"{TNS}/GetAssetMaintenance"'},
    )
    reply.raise_for_status()
    root = etree.fromstring(reply.content)
    return (
        [e.text for e in root.iter(f"{{{TNS}}}assetnum") if e.getparent().tag == f"{{{TNS}}}asset"],
        [e.text for e in root.iter(f"{{{TNS}}}wonum")],
    )


def ptw_listing(base_url: str, since: str | None = None) -> list[dict]:
    items, token = [], None
    with httpx.Client(timeout=30) as http:
        while True:
            params = {"page_size": 500, **({"updated_since": since} if since else {}), **({"page_token": token} if token else {})}
            page = http.get(f"{base_url}/api/v1/permits", params=params).raise_for_status().json()
            items += page["items"]
            token = page["next_page_token"]
            if not token:
                return items


@pytest.fixture(scope="module")
def plant(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("plant")
    generate_plant(out, seed=11, **SIZE)
    return out


@pytest.fixture(scope="module")
def manifest(plant: Path) -> dict:
    return read(plant, "manifest.json")


# --------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_bytes_and_another_seed_does_not(tmp_path: Path) -> None:
    small = {"sites": 3, "permits": 300, "devices": 60, "work_orders": 600, "materials": 30}
    first = generate_plant(tmp_path / "a", seed=5, **small)
    second = generate_plant(tmp_path / "b", seed=5, **small)
    other = generate_plant(tmp_path / "c", seed=6, **small)
    assert first == second
    assert files_of(tmp_path / "a") == files_of(tmp_path / "b")
    changed = {name for name, data in files_of(tmp_path / "c").items() if files_of(tmp_path / "a")[name] != data}
    assert {"ptw/permits.json", "eam/assets.json", "eam/workorders.json", "manifest.json"} <= changed
    assert other != first


# --------------------------------------------------------------------------- sites, ERP, cost rules


def test_first_sites_are_the_fixture_plant_and_the_rest_are_generated(plant: Path) -> None:
    fixture = read(REPO / "fixtures", "erp/company.json")["companyCodes"]
    companies = read(plant, "erp/company.json")["companyCodes"]
    assert [c["CompanyCode"] for c in companies] == ["NJ01", "HZ02", "S03"]
    assert companies[:2] == fixture
    generated = companies[2]
    assert CJK.search(generated["Name"])
    assert all(CJK.search(cc["Name"]) and cc["CostCenter"].startswith("CC-S03-") for cc in generated["CostCenters"])
    assert [gl["GLAccount"] for gl in generated["GLAccounts"]] == [f"6602010{i}" for i in range(1, 6)]


def test_cost_rules_cover_every_area_and_keep_every_other_rule(plant: Path) -> None:
    rules = load_cost_rules(plant / "rules/costs.yaml")
    packaged = load_cost_rules()
    companies = read(plant, "erp/company.json")["companyCodes"]
    assert rules.cost_centers == {
        c["CompanyCode"]: {cc["Name"]: cc["CostCenter"] for cc in c["CostCenters"]} for c in companies
    }
    assert rules.model_dump(exclude={"cost_centers"}) == packaged.model_dump(exclude={"cost_centers"})


# --------------------------------------------------------------------------- distributions


def test_permits_have_a_realistic_mix_of_types_states_and_windows(plant: Path) -> None:
    permits = read(plant, "ptw/permits.json")
    types = Counter(p["ticketType"] for p in permits)
    assert {"DH", "SX", "GC", "DZ", "LSYD"} <= set(types)
    ranked = [t for t, _ in types.most_common()]
    assert ranked[:2] == ["DH", "GC"]
    assert {"1", "2", "3"} <= {p["riskLevel"] for p in permits}
    states = Counter(p["state"] for p in permits)
    open_share = sum(states[s] for s in ("SUBMITTED", "APPROVED", "IN_PROGRESS", "SUSPENDED")) / len(permits)
    assert 0.07 <= open_share <= 0.11
    assert states["CLOSED"] / len(permits) > 0.8 and states["CANCELLED"] > 0
    closed = [p for p in permits if p["state"] == "CLOSED"]
    assert all(p["closeTime"] and p["closeResult"] and p["workHours"] for p in closed)
    assert {p["closeResult"] for p in closed} == {"COMPLETED", "ABORTED", "INCIDENT"}
    assert any(p["guardian"] is None for p in closed)
    assert min(p["planStartTime"] for p in closed) < "2025-12-15"
    assert all(p["updateTime"] < ANCHOR_LOCAL for p in permits)
    for p in permits:
        if p["state"] in ("SUBMITTED", "APPROVED", "IN_PROGRESS"):
            assert "2026-11-01" < p["planStartTime"] < "2027-02-01" and p["planEndTime"] > ANCHOR_LOCAL


def test_device_links_are_skewed_messy_and_sometimes_unknown(plant: Path) -> None:
    permits = read(plant, "ptw/permits.json")
    known = {a["assetnum"] for a in read(plant, "eam/assets.json")}
    materials = {m["ID"] for m in read(plant, "mes/materials.json")}
    typed = [code for p in permits for code in p.get("equipmentCodes", [])]
    links = Counter(norm(code) for p in permits for code in set(p.get("equipmentCodes", [])))
    top, median = max(links.values()), statistics.median(links.values())
    assert top >= 5 * median
    assert any(code != code.strip() for code in typed)
    assert any(code.strip() == code.strip().lower() for code in typed)
    assert any(p.get("equipmentCodes") == [] for p in permits)
    assert {norm(c) for c in typed} - known
    assert all(len(p.get("equipmentCodes", [])) <= 4 and len(p["materials"]) <= 3 for p in permits)
    assert {m for p in permits for m in p["materials"]} - materials


def test_work_orders_cover_every_status_kind_and_isolation(plant: Path) -> None:
    orders = read(plant, "eam/workorders.json")
    well_formed = [o for o in orders if o["status_maxvalue"] != "BOGUS"]
    pairs = {(o["status"], o["status_maxvalue"]) for o in well_formed}
    assert pairs == {(label, value) for value, labels in STATUS_LABELS.items() for label in labels}
    assert {"PM", "CM", "EM", "INSP", "OH"} <= {o["worktype"] for o in orders}
    assert {"NONE", "APPLIED", "RELEASED"} <= {o["isolationstate"] for o in orders}
    assert all(o["changedate"] < "2026-12-01T00:00:00+08:00" for o in orders)
    past = sum(o["schedstart"] < "2026-12-01" for o in orders)
    assert past / len(orders) > 0.8
    per_device = Counter(o["assetnum"] for o in orders)
    assert max(per_device.values()) >= 3 * statistics.median(per_device.values())


def test_some_open_work_orders_overlap_open_permits_on_their_devices(plant: Path) -> None:
    windows: dict[str, list[tuple[str, str]]] = {}
    for p in read(plant, "ptw/permits.json"):
        if p["state"] in ("SUBMITTED", "APPROVED", "IN_PROGRESS"):
            for code in p.get("equipmentCodes", []):
                windows.setdefault(norm(code), []).append((p["planStartTime"], p["planEndTime"]))
    overlapping = 0
    for o in read(plant, "eam/workorders.json"):
        if o["status_maxvalue"] in ("COMP", "CLOSE", "CAN") or "schedfinish" not in o:
            continue
        start, end = (o[f][:19].replace("T", " ") for f in ("schedstart", "schedfinish"))
        overlapping += any(start < p_end and p_start < end for p_start, p_end in windows.get(o["assetnum"], []))
    assert overlapping >= 10


def test_names_are_chinese_and_materials_have_the_documented_parameters(plant: Path) -> None:
    assets = read(plant, "eam/assets.json")
    assert all(CJK.search(a.get("description", "泵")) and CJK.search(a["location"]) for a in assets)
    assert any(a.get("datasyncdate", "").startswith("2026-") for a in assets)
    soon = [a for a in assets if "2026-11-20" < a.get("nextinspdate", "") < "2026-12-21"]
    assert soon
    materials = read(plant, "mes/materials.json")
    assert materials[:18] == read(REPO / "fixtures", "mes/materials.json")
    generated = materials[18:]
    assert len(generated) == SIZE["materials"] - 18 and all(CJK.search(m["ID"]) for m in generated)
    assert len({m["ID"] for m in materials}) == len(materials)
    units = Counter(p["Value"].get("UnitOfMeasure") for m in generated for p in m["Parameter"])
    assert {"Cel", "degF", "MPa", "kPa", "%"} <= set(units)
    for m in generated:
        for p in m["Parameter"]:
            if p["ID"] == "TOXICITY_CLASS":
                assert p["Value"] == {"ValueString": p["Value"]["ValueString"], "DataType": "string"}
                assert p["Value"]["ValueString"] in {"I", "II", "III", "IV"}


# --------------------------------------------------------------------------- malformed records


def test_malformed_share_is_about_half_a_percent(plant: Path, manifest: dict) -> None:
    per_file = Counter(m["file"] for m in manifest["malformed"])
    assert per_file == Counter({f: n for f, n in manifest["counts"]["malformed"].items() if n})
    for relative in ("ptw/permits.json", "eam/assets.json", "eam/workorders.json"):
        share = per_file[relative] / len(read(plant, relative))
        assert 0.004 <= share <= 0.006, relative
    assert per_file["mes/materials.json"] >= 1
    assert len({(m["file"], m["key"]) for m in manifest["malformed"]}) == len(manifest["malformed"])


def test_hub_mappings_quarantine_exactly_the_manifests_malformed_records(plant: Path, manifest: dict) -> None:
    rejected = quarantined_by_mappings(plant)
    assert set(rejected) == {(m["file"], m["key"]) for m in manifest["malformed"]}
    for entry in manifest["malformed"]:
        assert entry["field"] in rejected[(entry["file"], entry["key"])], entry
    kinds = {(m["file"], m["field"]) for m in manifest["malformed"]}
    assert {f for _, f in kinds if _ == "ptw/permits.json"} >= {"ticketType", "equipmentCodes", "planStartTime"}


def test_malformed_records_keep_what_the_mocks_need(plant: Path) -> None:
    permits = read(plant, "ptw/permits.json")
    assert len({p["ticketNo"] for p in permits}) == len(permits)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", p["updateTime"]) for p in permits)
    orders = read(plant, "eam/workorders.json")
    assert len({o["wonum"] for o in orders}) == len(orders)
    known = {a["assetnum"] for a in read(plant, "eam/assets.json")}
    assert {o["assetnum"] for o in orders} <= known


# --------------------------------------------------------------------------- served by the mocks


def test_mock_systems_serve_the_generated_plant(plant: Path) -> None:
    permits = read(plant, "ptw/permits.json")
    orders = read(plant, "eam/workorders.json")
    companies = read(plant, "erp/company.json")["companyCodes"]
    with start_systems(plant) as systems:
        listed = ptw_listing(systems.base_urls["ptw"])
        assert [p["ticketNo"] for p in listed] == [
            p["ticketNo"] for p in sorted(permits, key=lambda p: (p["updateTime"], p["ticketNo"]))
        ]
        busiest = Counter(o["assetnum"] for o in orders).most_common(2)
        wanted = [busiest[0][0].lower() + " ", busiest[1][0], "NJ-P-9999"]
        assets, wonums = eam_answer(systems.urls["eam"], wanted)
        assert assets == [busiest[0][0], busiest[1][0]]
        assert sorted(wonums) == sorted(o["wonum"] for o in orders if o["assetnum"] in assets)

        generated = read(plant, "mes/materials.json")[20]["ID"]
        answer = httpx.post(
            f"{systems.base_urls['mes']}/api/v1/material-parameters/query",
            json={"MaterialDefinitionIDs": ["乙烯", generated, "导热油"]}, timeout=10,
        ).json()
        assert [m["ID"] for m in answer["MaterialDefinition"]] == ["乙烯", generated]
        assert answer["UnknownIDs"] == ["导热油"]

        s03 = companies[2]
        entry = {"CompanyCode": "S03", "DocumentReferenceID": "PTW-S03-TEST/ppe", "DocumentHeaderText": "test",
                 "PostingDate": "2026-11-20", "TransactionCurrency": "CNY", "GLAccount": "66020103",
                 "CostCenter": s03["CostCenters"][0]["CostCenter"], "Amount": "60.00"}
        wrong = {**entry, "CostCenter": "CC-NJ-CRK", "DocumentReferenceID": "PTW-S03-TEST/guardian"}
        confirmations = httpx.post(
            f"{systems.base_urls['erp']}/api/v1/journal-entries/bulk", timeout=10,
            json={"MessageHeader": {"ID": "t", "CreationDateTime": "2026-11-28T10:00:00Z"},
                  "JournalEntryCreateRequest": [{"MessageHeader": {"UUID": f"u{i}"}, "JournalEntry": e}
                                                for i, e in enumerate((entry, wrong))]},
        ).json()["JournalEntryCreateConfirmation"]
        assert [c["Log"]["MaximumLogItemSeverityCode"] for c in confirmations] == ["1", "3"]


# --------------------------------------------------------------------------- change_plant

NOW = datetime(2026, 12, 1, 9, 30, 15, tzinfo=PLANT_TZ)


def by_key(plant: Path, relative: str, key: str) -> dict[str, dict]:
    return {r[key]: r for r in read(plant, relative)}


@pytest.fixture(scope="module")
def changed(plant: Path, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("changed") / "plant"
    return out, change_plant(plant, out, fraction=0.01, seed=3, now=NOW)


def test_change_plant_changes_exactly_the_fraction_and_stamps_them(plant: Path, changed) -> None:
    out, change = changed
    for relative, key, stamp_field, stamp, listed in (
        ("ptw/permits.json", "ticketNo", "updateTime", "2026-12-01 09:30:15", change["permits"]),
        ("eam/workorders.json", "wonum", "changedate", "2026-12-01T09:30:15+08:00", change["work_orders"]),
    ):
        before, after = by_key(plant, relative, key), by_key(out, relative, key)
        assert list(before) == list(after)
        differing = {k for k in before if before[k] != after[k]}
        assert differing == set(listed)
        assert len(differing) == round(0.01 * len(before))
        assert all(after[k][stamp_field] == stamp for k in differing)
        assert all(after[k][stamp_field] < stamp for k in set(after) - differing)
    permits_before = by_key(plant, "ptw/permits.json", "ticketNo")
    for ticket, what in change["permits"].items():
        old, new = permits_before[ticket], by_key(out, "ptw/permits.json", "ticketNo")[ticket]
        moved = (old["state"], old["planStartTime"]) != (new["state"], new["planStartTime"])
        assert moved and old["state"] in ("SUBMITTED", "APPROVED", "IN_PROGRESS", "SUSPENDED"), (ticket, what)
        if new["state"] == "CLOSED":
            assert new["closeTime"] == "2026-12-01 09:30:15" and new["closeResult"] and new["workHours"]
    for other in ("eam/assets.json", "mes/materials.json", "erp/company.json", "rules/costs.yaml"):
        assert (plant / other).read_bytes() == (out / other).read_bytes()


def test_change_plant_is_deterministic_and_keeps_records_mappable(plant: Path, changed, tmp_path: Path) -> None:
    out, change = changed
    again = change_plant(plant, tmp_path / "again", fraction=0.01, seed=3, now=NOW)
    assert again == change
    assert files_of(tmp_path / "again") == files_of(out)
    other = change_plant(plant, tmp_path / "other", fraction=0.01, seed=4, now=NOW)
    assert other["permits"] != change["permits"]
    manifest = read(out, "manifest.json")
    assert set(quarantined_by_mappings(out)) == {(m["file"], m["key"]) for m in manifest["malformed"]}


def test_an_incremental_pull_from_now_sees_exactly_the_changes(changed) -> None:
    out, change = changed
    orders = by_key(out, "eam/workorders.json", "wonum")
    with start_systems(out) as systems:
        listed = ptw_listing(systems.base_urls["ptw"], since=NOW.isoformat())
        assert {p["ticketNo"] for p in listed} == set(change["permits"])
        devices = sorted({orders[w]["assetnum"] for w in change["work_orders"]})
        _, wonums = eam_answer(systems.urls["eam"], devices, changedsince=NOW.isoformat())
        assert set(wonums) == set(change["work_orders"])


def test_change_plant_refuses_a_now_before_the_plants_last_change(plant: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must be later"):
        change_plant(plant, tmp_path / "x", seed=1, now=datetime(2026, 11, 30, 12, 0, tzinfo=PLANT_TZ))
    with pytest.raises(ValueError, match="fraction"):
        change_plant(plant, tmp_path / "x", fraction=0, seed=1, now=NOW)


# --------------------------------------------------------------------------- CLI


def test_cli_writes_the_plant_and_prints_a_summary(tmp_path: Path) -> None:
    out = tmp_path / "plant"
    result = CliRunner().invoke(
        app,
        ["generate", "--sites", "2", "--permits", "400", "--devices", "50", "--work-orders", "800",
         "--materials", "25", "--seed", "9", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    for relative in ("ptw/permits.json", "eam/assets.json", "eam/workorders.json", "mes/materials.json",
                     "erp/company.json", "rules/costs.yaml", "manifest.json"):
        assert (out / relative).is_file(), relative
    assert len(read(out, "ptw/permits.json")) == 400
    assert re.search(r"permits\s+400\s+malformed\s+2", result.output)
    assert re.search(r"work orders\s+800\s+malformed\s+4", result.output)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--sites", "0"], "--sites"),
        (["--permits", "-1"], "--permits"),
        (["--sites", "3", "--devices", "20"], "at least 10 per site"),
        (["--anchor", "2026-13-01"], "--anchor"),
    ],
)
def test_cli_refuses_bad_arguments_clearly(tmp_path: Path, arguments: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["generate", "--out", str(tmp_path / "plant"), *arguments])
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "plant" / "manifest.json").exists()


def test_cli_will_not_write_into_an_unrelated_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me", encoding="utf-8")
    result = CliRunner().invoke(app, ["generate", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "not an empty folder or a generated plant" in result.output
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
