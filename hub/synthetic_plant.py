"""A seeded synthetic plant group, written in the mock systems' fixture format (fixtures/README.md).

Load tests and benchmarks need plants far larger than the hand-written fixtures, with the same
quirks: device IDs typed messily, site synonyms for work-order statuses, unit variants, and a
small share of malformed records the hub must quarantine. Everything is drawn from one
`random.Random(seed)` and written in a fixed order, never from the clock, so the same arguments
give byte-identical files. The big lists are streamed one compact record per line, which keeps
memory flat and lets `change_plant` rewrite single records without parsing the rest.

With `effects` (the default), two patterns the cross-system analyses should find are planted:
one workshop whose monthly work at height and defect rate rise together, and two devices named
by open lifting permits whose failures come ever sooner. Without, failures of a device are
spread evenly over its history and defect rates vary month to month without a trend.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
import random
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

PLANT_TZ = ZoneInfo("Asia/Shanghai")
DEFAULT_ANCHOR = date(2026, 12, 1)
MALFORMED_SHARE = 0.005
MAX_SITES = 99
MIN_DEVICES_PER_SITE = 10

REPO_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PACKAGED_COST_RULES = Path(__file__).with_name("rules") / "costs.yaml"

PERMITS_FILE = "ptw/permits.json"
ASSETS_FILE = "eam/assets.json"
WORK_ORDERS_FILE = "eam/workorders.json"
MATERIALS_FILE = "mes/materials.json"
QUALITY_FILE = "mes/quality.json"
COMPANY_FILE = "erp/company.json"
COST_RULES_FILE = "rules/costs.yaml"
MANIFEST_FILE = "manifest.json"

DAY = 1440  # minutes; every time below is whole minutes from the calendar's first day, plant local

# --------------------------------------------------------------------------- vocabulary

PERMIT_TYPE_WEIGHTS = {"DH": 38, "GC": 26, "SX": 12, "DZ": 13, "LSYD": 11}
# (shortest, longest) planned duration in minutes, by permit type.
PERMIT_DURATIONS = {"DH": (120, 600), "GC": (120, 540), "SX": (180, 540), "DZ": (120, 360), "LSYD": (480, 4320)}
RISK_WEIGHTS = {"1": 18, "2": 37, "3": 45}
STATE_WEIGHTS = {
    "CLOSED": 870, "CANCELLED": 40, "SUBMITTED": 27, "APPROVED": 31, "IN_PROGRESS": 25, "SUSPENDED": 7,
}
OPEN_STATES = ("SUBMITTED", "APPROVED", "IN_PROGRESS", "SUSPENDED")
CLOSE_RESULT_WEIGHTS = {"COMPLETED": 88, "ABORTED": 9, "INCIDENT": 3}
DEVICES_PER_PERMIT = {0: 5, 1: 545, 2: 260, 3: 120, 4: 70}
MATERIALS_PER_PERMIT = {0: 25, 1: 42, 2: 23, 3: 10}

WORK_TYPE_WEIGHTS = {"PM": 40, "CM": 27, "INSP": 17, "OH": 8, "EM": 8}
# (shortest, longest) scheduled duration in minutes, by work type.
WORK_DURATIONS = {"PM": (120, 600), "CM": (120, 4320), "EM": (60, 720), "INSP": (60, 480), "OH": (1440, 14400)}
# Internal status -> the labels sites use for it; the first is Maximo's own.
STATUS_LABELS = {
    "WAPPR": ("WAPPR",), "APPR": ("APPR", "APPR S1"), "WSCH": ("WSCH",), "WMATL": ("WMATL",),
    "INPRG": ("INPRG", "进行中"), "COMP": ("COMP", "完工"), "CLOSE": ("CLOSE", "已关闭"), "CAN": ("CAN",),
}
FINISHED_STATUS_WEIGHTS = {"COMP": 42, "CLOSE": 46, "CAN": 12}
PLANNED_STATUS_WEIGHTS = {"WAPPR": 30, "APPR": 35, "WSCH": 25, "WMATL": 10}
OPEN_STATUS_WEIGHTS = {"INPRG": 45, "APPR": 25, "WAPPR": 15, "WMATL": 15}
SYNONYM_SHARE = 0.45
TERMINAL_STATUSES = ("CLOSE", "CAN")
FAILURE_TYPES = ("CM", "EM")

# Planted effects. The rising workshop's permits are work at height this often (26 % elsewhere).
RISING_HEIGHT_SHARE = 0.5
# Days between the planted failures of a device, oldest first: the last three come about five times sooner.
PLANTED_FAILURE_GAPS = (150, 130, 140, 120, 40, 25, 15)
PLANTED_DEVICES = 2
QUALITY_MONTHS = 12  # months of defect rates, up to the month before the anchor's
FAILURE_PERIOD_DAYS = (20, 120)  # a device's own mean time between failures

SURNAMES = "张王李赵刘陈杨黄吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾田董袁潘蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦方白邹孟熊秦邱江尹薛段雷侯龙史陶黎贺顾毛郝龚邵万钱严武戴孔汤"
GIVEN_NAMES = (
    "伟 强 磊 洋 勇 军 杰 涛 斌 超 明 刚 平 辉 鹏 华 飞 鑫 波 宁 静 敏 燕 艳 娟 霞 芳 丽 婷 雪 琳 峰 浩 亮 翔 "
    "建国 建华 志强 志明 海涛 晓东 文博 宇航 佳怡 思远 俊杰 国强 红梅 秀英 立新 永刚 春雷 德明 振华 学军"
).split()

CITIES = (
    "茂名 宁波 大连 天津 上海 镇海 泉州 淄博 仪征 独山子 兰州 湛江 揭阳 古雷 连云港 曹妃甸 洋浦 钦州 岳阳 九江 "
    "安庆 荆门 长岭 齐鲁"
).split()
SITE_KINDS = ("石化基地", "炼化基地", "乙烯基地", "化工园区", "烯烃基地", "芳烃基地")
AREA_POOL = (
    ("常减压车间", "CDU"), ("催化裂化车间", "FCC"), ("加氢车间", "HDT"), ("重整车间", "REF"), ("乙烯车间", "ETY"),
    ("聚乙烯车间", "PE"), ("聚丙烯车间", "PP"), ("芳烃车间", "ARO"), ("环氧乙烷车间", "EO"), ("乙二醇车间", "EG"),
    ("合成氨车间", "NH3"), ("尿素车间", "URE"), ("甲醇车间", "MEO"), ("氯碱车间", "CLA"), ("丙烯腈车间", "AN"),
    ("苯乙烯车间", "SM"), ("罐区", "TNK"), ("储运车间", "STO"), ("公用工程", "UTL"), ("动力车间", "PWR"),
    ("污水处理场", "WWT"), ("空分车间", "ASU"), ("硫磺回收车间", "SRU"), ("热电车间", "CHP"),
)
# Letter in the asset number, weight, and what such a device is called.
DEVICE_KINDS = (
    ("P", 30, ("进料泵", "回流泵", "循环泵", "输送泵", "装车泵", "计量泵", "屏蔽泵")),
    ("E", 18, ("换热器", "冷却器", "再沸器", "冷凝器", "预热器")),
    ("V", 14, ("缓冲罐", "分离罐", "回流罐", "闪蒸罐", "精馏塔", "吸收塔")),
    ("T", 12, ("储罐", "球罐", "中间罐", "成品罐")),
    ("C", 8, ("压缩机", "循环气压缩机", "空气压缩机")),
    ("R", 8, ("反应釜", "反应器", "聚合釜")),
    ("F", 4, ("加热炉", "裂解炉")),
    ("B", 3, ("锅炉", "余热锅炉")),
    ("G", 3, ("发电机", "汽轮机")),
)
DEVICE_SERVICES = (
    "乙烯", "丙烯", "苯", "甲苯", "二甲苯", "原料", "产品", "溶剂", "冷却水", "锅炉给水", "氮气", "甲醇", "碱液",
    "污油", "热水", "蒸汽凝液", "循环氢", "燃料气",
)
UNKNOWN_DEVICE_AREA = 9  # areas are numbered 1..8, so `X-9nnn` is never a real device

# Names permits mention that the MES does not know (consumables, not process materials).
UNKNOWN_MATERIALS = ("导热油", "白土", "活性炭", "分子筛", "瓷球", "脱硫剂")
LIQUID, GAS, INERT = "liquid", "gas", "inert"
MATERIAL_BASES = (
    ("乙醇", "Ethanol", LIQUID), ("丙酮", "Acetone", LIQUID), ("乙酸乙酯", "Ethyl acetate", LIQUID),
    ("环己烷", "Cyclohexane", LIQUID), ("正己烷", "n-Hexane", LIQUID), ("异丙醇", "Isopropanol", LIQUID),
    ("丙烯腈", "Acrylonitrile", LIQUID), ("苯乙烯", "Styrene", LIQUID), ("乙苯", "Ethylbenzene", LIQUID),
    ("正丁醇", "n-Butanol", LIQUID), ("醋酸", "Acetic acid", LIQUID), ("乙二醇", "Ethylene glycol", LIQUID),
    ("环氧丙烷", "Propylene oxide", LIQUID), ("苯酚", "Phenol", LIQUID), ("苯胺", "Aniline", LIQUID),
    ("四氢呋喃", "Tetrahydrofuran", LIQUID), ("乙腈", "Acetonitrile", LIQUID), ("甲基叔丁基醚", "MTBE", LIQUID),
    ("异辛烷", "Isooctane", LIQUID), ("重整汽油", "Reformate", LIQUID), ("裂解汽油", "Pyrolysis gasoline", LIQUID),
    ("燃料油", "Fuel oil", LIQUID), ("航空煤油", "Jet fuel", LIQUID), ("溶剂油", "Solvent naphtha", LIQUID),
    ("正庚烷", "n-Heptane", LIQUID), ("丙烯酸", "Acrylic acid", LIQUID), ("醋酸乙烯", "Vinyl acetate", LIQUID),
    ("异丁醇", "Isobutanol", LIQUID), ("碳九芳烃", "C9 aromatics", LIQUID),
    ("丙烷", "Propane", GAS), ("正丁烷", "n-Butane", GAS), ("异丁烯", "Isobutylene", GAS), ("乙烷", "Ethane", GAS),
    ("氯乙烯", "Vinyl chloride", GAS), ("干气", "Dry gas", GAS), ("合成气", "Syngas", GAS),
    ("燃料气", "Fuel gas", GAS), ("液化天然气", "LNG", GAS), ("碳四馏分", "C4 fraction", GAS),
    ("乙炔", "Acetylene", GAS), ("二甲醚", "Dimethyl ether", GAS),
    ("二氧化碳", "Carbon dioxide", INERT), ("氩气", "Argon", INERT), ("硫酸", "Sulfuric acid", INERT),
    ("盐酸", "Hydrochloric acid", INERT), ("氢氧化钠溶液", "Sodium hydroxide solution", INERT),
    ("次氯酸钠", "Sodium hypochlorite", INERT), ("二氧化硫", "Sulfur dioxide", INERT),
)
MATERIAL_GRADES = (
    ("工业级", "technical grade"), ("优级品", "premium grade"), ("精制", "refined"), ("粗品", "crude"),
    ("回收", "recovered"), ("一级品", "first grade"), ("试剂级", "reagent grade"), ("循环", "recycle"),
)


# --------------------------------------------------------------------------- sites


@dataclass(frozen=True)
class Area:
    name: str
    cost_center: str


@dataclass(frozen=True)
class Site:
    code: str  # company code, e.g. NJ01
    name: str
    short: str  # in asset and permit numbers: NJ-P-1001, PTW-NJ-2026-00001
    areas: tuple[Area, ...]


def _fixture_company() -> dict:
    return json.loads((REPO_FIXTURES / COMPANY_FILE).read_text(encoding="utf-8"))


def _fixture_sites() -> list[Site]:
    """The fixture plant's two sites, read from its ERP master data so the two cannot drift apart."""
    sites = []
    for company in _fixture_company()["companyCodes"]:
        centers = company["CostCenters"]
        short = centers[0]["CostCenter"].split("-")[1]
        sites.append(
            Site(
                company["CompanyCode"], company["Name"], short,
                tuple(Area(c["Name"], c["CostCenter"]) for c in centers),
            )
        )
    return sites


def _make_sites(rng: random.Random, count: int) -> list[Site]:
    sites = _fixture_sites()[:count]
    names = rng.sample([city + kind for city in CITIES for kind in SITE_KINDS], count - len(sites))
    for index, name in enumerate(names, start=len(sites) + 1):
        code = f"S{index:02d}"
        pool = rng.sample(AREA_POOL, rng.randint(3, 5))
        sites.append(Site(code, name, code, tuple(Area(area, f"CC-{code}-{tag}") for area, tag in pool)))
    return sites


# --------------------------------------------------------------------------- drawing helpers


class Weighted:
    """Draws from a fixed list with fixed weights, by bisecting cumulative weights (no per-call setup)."""

    def __init__(self, rng: random.Random, items: Sequence[Any], weights: Sequence[float]):
        self._items = list(items)
        self._cum = list(itertools.accumulate(weights))
        self._total = self._cum[-1]
        self._random = rng.random

    @classmethod
    def of(cls, rng: random.Random, table: dict) -> Weighted:
        return cls(rng, list(table), list(table.values()))

    @classmethod
    def zipf(cls, rng: random.Random, items: Sequence[Any], exponent: float = 1.0, offset: float = 1.0) -> Weighted:
        """The item at rank k weighs 1 / (k + offset) ** exponent: a few items get most draws."""
        return cls(rng, items, [1.0 / (k + offset) ** exponent for k in range(len(items))])

    def __call__(self) -> Any:
        return self._items[bisect.bisect_right(self._cum, self._random() * self._total)]


class Calendar:
    """Whole minutes from a fixed first day, formatted without strftime (which dominates otherwise)."""

    def __init__(self, anchor: date, days_before: int = 800, days_after: int = 800):
        self.first = anchor - timedelta(days=days_before)
        self.anchor = days_before * DAY  # the anchor date's 00:00, plant local
        self._days = [(self.first + timedelta(days=d)).isoformat() for d in range(days_before + days_after)]
        self._times = [f"{m // 60:02d}:{m % 60:02d}:00" for m in range(DAY)]

    def local(self, minute: int) -> str:
        """PTW style: naive plant local `YYYY-MM-DD HH:MM:SS`."""
        return f"{self._days[minute // DAY]} {self._times[minute % DAY]}"

    def iso(self, minute: int) -> str:
        """EAM style: ISO 8601 with the plant's offset."""
        return f"{self._days[minute // DAY]}T{self._times[minute % DAY]}+08:00"

    def day(self, minute: int) -> str:
        return f"{self._days[minute // DAY]}T00:00:00+08:00"

    def year(self, minute: int) -> str:
        return self._days[minute // DAY][:4]

    def month(self, minute: int) -> str:
        return self._days[minute // DAY][:7]


class JsonLines:
    """A JSON list written one compact record per line: `[`, records joined by `,\\n`, `]`."""

    def __init__(self, handle: TextIO):
        self._handle = handle
        self._separator = "[\n"
        self.count = 0

    def write(self, record: dict) -> None:
        self.write_line(json.dumps(record, ensure_ascii=False, separators=(",", ":")))

    def write_line(self, line: str) -> None:
        self._handle.write(self._separator)
        self._handle.write(line)
        self._separator = ",\n"
        self.count += 1

    def close(self) -> None:
        self._handle.write("[\n]\n" if self.count == 0 else "\n]\n")


def _open_list(out_dir: Path, relative: str) -> tuple[TextIO, JsonLines]:
    path = out_dir / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("w", encoding="utf-8", newline="\n", buffering=1 << 20)
    return handle, JsonLines(handle)


def _read_lines(path: Path) -> list[str]:
    """The record lines of a list written by `JsonLines` (a plant from `generate_plant`)."""
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines[0] != "[" or lines[-2:] != ["]", ""]:
        raise ValueError(f"{path} was not written by generate_plant (one record per line)")
    return [line[:-1] if line.endswith(",") else line for line in lines[1:-2]]


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8", newline="\n")


def _malformed_count(total: int) -> int:
    return max(1, round(total * MALFORMED_SHARE)) if total else 0


def _person(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + rng.choice(GIVEN_NAMES)


# --------------------------------------------------------------------------- EAM assets


@dataclass
class DevicePool:
    """Asset numbers by site and area, in creation order: the rank a Zipf draw uses."""

    by_area: dict[tuple[str, str], list[str]]
    by_site: dict[str, list[str]]
    all: list[str]


def _write_assets(out_dir: Path, rng: random.Random, cal: Calendar, sites: list[Site], count: int,
                  malformed: list[dict]) -> DevicePool:
    kinds = Weighted(rng, DEVICE_KINDS, [k[1] for k in DEVICE_KINDS])
    status = Weighted.of(rng, {"OPERATING": 90, "NOT READY": 7, "DECOMMISSIONED": 3})
    site_weights = [rng.uniform(0.6, 1.4) for _ in sites]
    per_site = _split(count, site_weights, minimum=MIN_DEVICES_PER_SITE)
    broken = set(rng.sample(range(count), _malformed_count(count)))
    pool = DevicePool({}, {}, [])
    sequence: dict[tuple[str, int, str], int] = {}
    handle, out = _open_list(out_dir, ASSETS_FILE)
    with handle:
        for site, site_count in zip(sites, per_site):
            areas = Weighted(rng, list(enumerate(site.areas, start=1)), [rng.uniform(0.5, 1.5) for _ in site.areas])
            pool.by_site[site.code] = []
            for _ in range(site_count):
                area_no, area = areas()
                letter, _, names = kinds()
                seq = sequence[(site.code, area_no, letter)] = sequence.get((site.code, area_no, letter), 0) + 1
                assetnum = f"{site.short}-{letter}-{area_no}{seq:03d}"
                number = f"{rng.randint(1, 6)}#" if rng.random() < 0.3 else ""
                suffix = rng.choice(("", "", "A", "B", "C"))
                record: dict[str, Any] = {
                    "assetnum": assetnum,
                    "siteid": site.code,
                    "description": f"{number}{rng.choice(DEVICE_SERVICES)}{rng.choice(names)}{suffix}",
                    "location": area.name,
                    "status": status(),
                }
                roll = rng.random()
                if roll < 0.04:  # due soon, some already overdue for work around the anchor
                    record["nextinspdate"] = cal.day(cal.anchor + rng.randint(-10, 20) * DAY)
                elif roll < 0.86:
                    record["nextinspdate"] = cal.day(cal.anchor + rng.randint(30, 400) * DAY)
                if rng.random() < 0.005:  # the site's feed to the group EAM stopped weeks ago
                    record["datasyncdate"] = cal.iso(cal.anchor - rng.randint(10 * DAY, 90 * DAY))
                if len(pool.all) in broken:
                    malformed.append(_break_asset(rng, record))
                out.write(record)
                pool.all.append(assetnum)
                pool.by_site[site.code].append(assetnum)
                pool.by_area.setdefault((site.code, area.name), []).append(assetnum)
        out.close()
    return pool


def _break_asset(rng: random.Random, record: dict) -> dict:
    field = rng.choice(("nextinspdate", "datasyncdate", "description"))
    if field == "nextinspdate":
        record["nextinspdate"] = "2027-02-30T00:00:00+08:00"
        problem = "not a date"
    elif field == "datasyncdate":
        record["datasyncdate"] = "2026-11-20 06:00:00"
        problem = "no UTC offset"
    else:
        del record["description"]
        problem = "missing"
    return {"file": ASSETS_FILE, "kind": "equipment", "key": record["assetnum"], "field": field, "problem": problem}


def _split(total: int, weights: Sequence[float], minimum: int = 0) -> list[int]:
    """`total` split by weight (largest remainders), each share at least `minimum`."""
    spare = total - minimum * len(weights)
    raw = [spare * w / sum(weights) for w in weights]
    shares = [int(r) for r in raw]
    by_remainder = sorted(range(len(raw)), key=lambda i: (shares[i] - raw[i], i))
    for i in by_remainder[: spare - sum(shares)]:
        shares[i] += 1
    return [minimum + s for s in shares]


# --------------------------------------------------------------------------- MES materials


def _material_names() -> Iterator[tuple[str, str, str]]:
    """(name, English description, class): plain names, then grades, then numbered blends, without end."""
    for zh, en, kind in MATERIAL_BASES:
        yield zh, en, kind
    for (zh, en, kind), (grade, grade_en) in itertools.product(MATERIAL_BASES, MATERIAL_GRADES):
        yield f"{zh}（{grade}）", f"{en} ({grade_en})", kind
    for number in itertools.count(1):
        for zh, en, kind in MATERIAL_BASES:
            yield f"{number}号{zh}", f"{en} No. {number}", kind


def _number(value: float, places: int) -> str:
    text = f"{value:.{places}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _parameter(pid: str, value: str, unit: str | None) -> dict:
    if unit is None:
        return {"ID": pid, "Value": {"ValueString": value, "DataType": "string"}}
    return {"ID": pid, "Value": {"ValueString": value, "DataType": "double", "UnitOfMeasure": unit}}


def _material(rng: random.Random, name: str, description: str, kind: str) -> dict:
    parameters = []
    if kind == LIQUID:
        flash = rng.randint(-45, 120)
        if rng.random() < 0.12:
            parameters.append(_parameter("FLASH_POINT", _number(flash * 1.8 + 32, 1), "degF"))
        else:
            parameters.append(_parameter("FLASH_POINT", str(flash), "Cel"))
    if kind != INERT:
        lel = rng.uniform(0.6, 15)
        parameters.append(_parameter("LEL", _number(lel, 1), "%"))
        parameters.append(_parameter("UEL", _number(lel + rng.uniform(2, 45), 1), "%"))
    parameters.append(_parameter("OPERATING_TEMPERATURE", str(rng.randint(-40, 250)), "Cel"))
    pressure = rng.uniform(0.05, 5)
    if rng.random() < 0.15:
        parameters.append(_parameter("OPERATING_PRESSURE", str(round(pressure * 1000)), "kPa"))
    else:
        parameters.append(_parameter("OPERATING_PRESSURE", _number(pressure, 2), "MPa"))
    if rng.random() < 0.85:
        parameters.append(_parameter("TOXICITY_CLASS", rng.choice(("I", "II", "III", "IV")), None))
    return {"ID": name, "Description": description, "Parameter": parameters}


def _write_materials(out_dir: Path, rng: random.Random, count: int, malformed: list[dict]) -> list[str]:
    real = json.loads((REPO_FIXTURES / MATERIALS_FILE).read_text(encoding="utf-8"))[:count]
    materials = list(real)
    taken = {m["ID"] for m in real} | set(UNKNOWN_MATERIALS)
    fresh = (entry for entry in _material_names() if entry[0] not in taken)
    for name, description, kind in itertools.islice(fresh, count - len(real)):
        materials.append(_material(rng, name, description, kind))
    for material in real:  # the fixture's own malformed parameter comes along with it
        for parameter in material["Parameter"]:
            if "DataType" not in parameter["Value"]:
                malformed.append(_material_entry(material, parameter, "Value.DataType"))
    already = sum(1 for m in malformed if m["file"] == MATERIALS_FILE)
    generated = materials[len(real):]
    for material in rng.sample(generated, min(len(generated), max(0, _malformed_count(count) - already))):
        parameter = rng.choice([p for p in material["Parameter"] if p["ID"] != "TOXICITY_CLASS"])
        field = rng.choice(("DataType", "UnitOfMeasure"))
        del parameter["Value"][field]
        malformed.append(_material_entry(material, parameter, f"Value.{field}"))
    handle, out = _open_list(out_dir, MATERIALS_FILE)
    with handle:
        for material in materials:
            out.write(material)
        out.close()
    return [m["ID"] for m in materials]


def _material_entry(material: dict, parameter: dict, field: str) -> dict:
    return {
        "file": MATERIALS_FILE, "kind": "process_parameter", "key": f"{material['ID']}/{parameter['ID']}",
        "field": field, "problem": "missing",
    }


# --------------------------------------------------------------------------- PTW permits


@dataclass(frozen=True)
class OpenPermit:
    """What a work order needs to overlap an open permit: a real device and the window."""

    devices: tuple[str, ...]
    start: int
    end: int


class PermitWriter:
    def __init__(self, rng: random.Random, cal: Calendar, sites: list[Site], pool: DevicePool, materials: list[str],
                 rising: tuple[str, str] | None = None):
        self.rng, self.cal, self.sites = rng, cal, sites
        self.rising = rising  # (site, area) whose work at height grows towards the anchor
        self.pool = pool
        self.site = Weighted(rng, sites, [rng.uniform(0.6, 1.4) for _ in sites])
        self.areas = {s.code: Weighted(rng, s.areas, [rng.uniform(0.5, 1.5) for _ in s.areas]) for s in sites}
        self.devices = {
            (s.code, a.name): Weighted.zipf(rng, pool.by_area.get((s.code, a.name)) or pool.by_site[s.code])
            for s in sites
            for a in s.areas
        }
        self.material = Weighted.zipf(rng, materials)
        self.type = Weighted.of(rng, PERMIT_TYPE_WEIGHTS)
        self.risk = Weighted.of(rng, RISK_WEIGHTS)
        self.state = Weighted.of(rng, STATE_WEIGHTS)
        self.result = Weighted.of(rng, CLOSE_RESULT_WEIGHTS)
        self.device_count = Weighted.of(rng, DEVICES_PER_PERMIT)
        self.material_count = Weighted.of(rng, MATERIALS_PER_PERMIT)
        self.numbers = {s.code: 0 for s in sites}
        self.open: list[OpenPermit] = []
        self.lifted_open: list[str] = []  # devices of open lifting permits, in order of appearance
        # Work-at-height permits (not cancelled) per (site, area, month of planned start).
        self.height_months: dict[tuple[str, str, str], int] = {}

    def _typed(self, device: str) -> str:
        """As a person types it into the PTW: now and then lower case or with a stray space."""
        roll = self.rng.random()
        if roll < 0.06:
            return device.lower()
        if roll < 0.09:
            return " " + device
        if roll < 0.12:
            return device + " "
        return device

    def _equipment(self, site: Site, area: Area) -> tuple[list[str], tuple[str, ...]]:
        pick = self.devices[(site.code, area.name)]
        real = list(dict.fromkeys(pick() for _ in range(self.device_count())))
        typed = [self._typed(d) for d in real]
        if typed and self.rng.random() < 0.004:
            letter = self.rng.choice(DEVICE_KINDS)[0]
            typed[-1] = f"{site.short}-{letter}-{UNKNOWN_DEVICE_AREA}{self.rng.randrange(1000):03d}"
            real = real[:-1]
        return typed, tuple(real)

    def _materials(self) -> list[str]:
        names = list(dict.fromkeys(self.material() for _ in range(self.material_count())))
        if names and self.rng.random() < 0.004:
            names[-1] = self.rng.choice(UNKNOWN_MATERIALS)
        return names

    def _office_time(self, latest: int) -> int:
        """A time on `latest`'s day or the day before, in office hours, not after `latest`."""
        moment = latest // DAY * DAY + self.rng.randint(8 * 60, 17 * 60 + 30)
        return moment if moment <= latest else moment - DAY

    def permit(self) -> tuple[dict, str]:
        rng, cal, a = self.rng, self.cal, self.cal.anchor
        site = self.site()
        area = self.areas[site.code]()
        kind = self.type()
        rising = (site.code, area.name) == self.rising
        if rising and rng.random() < RISING_HEIGHT_SHARE:
            kind = "GC"
        state = self.state()
        shortest, longest = PERMIT_DURATIONS[kind]
        duration = rng.randint(shortest // 30, longest // 30) * 30
        time_of_day = rng.choice((7 * 60, 7 * 60 + 30, 8 * 60, 8 * 60, 8 * 60 + 30, 9 * 60, 13 * 60, 14 * 60))
        guardian = _person(rng) if rng.random() < 0.87 else None
        approve = arrive = close = result = hours = None
        if state in ("CLOSED", "CANCELLED") and rising and kind == "GC":
            # Denser towards the anchor: the month's count grows through the year.
            start = a - (4 + int(361 * (1 - math.sqrt(rng.random())))) * DAY + time_of_day
        elif state in ("CLOSED", "CANCELLED"):
            start = a - rng.randint(4, 365) * DAY + time_of_day
        elif state == "SUBMITTED":
            start = a + rng.randint(1, 45) * DAY + time_of_day
        elif state == "APPROVED":
            start = a + rng.randint(0, 30) * DAY + time_of_day
        elif state == "IN_PROGRESS":
            start = a - rng.randint(2 * 60, 3 * DAY)
            duration = max(duration, a - start + rng.randint(2, 48) * 60)
        else:  # SUSPENDED: started, stopped, not yet resumed
            start = a - rng.randint(1, 10) * DAY + time_of_day
            duration = max(duration, a - start + rng.randint(1, 10) * DAY)
        end = start + duration
        submit = self._office_time(min(start, a) - rng.randint(60, 3 * DAY))
        if state == "SUBMITTED":
            update = submit
        else:
            approve = submit + rng.randint(20, max(21, min(DAY, min(start, a) - submit - 10)))
            update = approve
        if state in ("IN_PROGRESS", "SUSPENDED", "CLOSED") and guardian and rng.random() < 0.93:
            arrive = start + rng.randint(-30, 10)
            update = arrive + rng.randint(5, 15)
        if state == "SUSPENDED":
            update = min(a - 1, update + rng.randint(60, 2 * DAY))
        elif state == "CANCELLED":
            if rng.random() < 0.4:
                approve = None
            update = min(a - 1, start, (approve or submit) + rng.randint(30, 3 * DAY))
        elif state == "CLOSED":
            result = self.result()
            worked = duration if result == "COMPLETED" else int(duration * rng.uniform(0.2, 0.8))
            close = max(start + worked + rng.randint(-60, 60), (arrive or start) + 30)
            hours = max(0.5, (close - start) // 30 / 2)
            update = close + rng.randint(1, 5)
        typed, real = self._equipment(site, area)
        if state in OPEN_STATES and real:
            self.open.append(OpenPermit(real, start, end))
            if kind == "DZ":
                self.lifted_open.extend(real)
        if kind == "GC" and state != "CANCELLED":
            month = (site.code, area.name, cal.month(start))
            self.height_months[month] = self.height_months.get(month, 0) + 1
        self.numbers[site.code] += 1
        record = {
            "ticketNo": f"PTW-{site.short}-{cal.year(submit)}-{self.numbers[site.code]:05d}",
            "ticketType": kind,
            "riskLevel": self.risk(),
            "siteCode": site.code,
            "workshop": area.name,
            "equipmentCodes": typed,
            "materials": self._materials(),
            "applicant": _person(rng),
            "guardian": guardian,
            "planStartTime": cal.local(start),
            "planEndTime": cal.local(end),
            "state": state,
            "submitTime": cal.local(submit),
            "approveTime": None if approve is None else cal.local(approve),
            "guardianArriveTime": None if arrive is None else cal.local(arrive),
            "closeTime": None if close is None else cal.local(close),
            "closeResult": result,
            "workHours": hours,
            "updateTime": cal.local(update),
        }
        return record, state


def _break_permit(rng: random.Random, record: dict) -> dict:
    field = rng.choice(("ticketType", "equipmentCodes", "planStartTime", "riskLevel"))
    if field == "ticketType":
        record["ticketType"] = rng.choice(("XX", "DHX", "高处"))
        problem = "unknown value"
    elif field == "equipmentCodes":
        del record["equipmentCodes"]
        problem = "missing"
    elif field == "planStartTime":
        record["planStartTime"] = rng.choice(("2026-13-45 25:00:00", record["planStartTime"].replace("-", "/")))
        problem = "not a date"
    else:
        record["riskLevel"] = rng.choice(("4", "0", "高"))
        problem = "unknown value"
    return {"file": PERMITS_FILE, "kind": "permit", "key": record["ticketNo"], "field": field, "problem": problem}


def _write_permits(out_dir: Path, rng: random.Random, writer: PermitWriter, count: int,
                   malformed: list[dict]) -> dict[str, int]:
    broken = set(rng.sample(range(count), _malformed_count(count)))
    states = dict.fromkeys(STATE_WEIGHTS, 0)
    handle, out = _open_list(out_dir, PERMITS_FILE)
    with handle:
        for index in range(count):
            record, state = writer.permit()
            states[state] += 1
            if index in broken:
                malformed.append(_break_permit(rng, record))
            out.write(record)
        out.close()
    return states


# --------------------------------------------------------------------------- EAM work orders


def _label(rng: random.Random, maxvalue: str) -> str:
    labels = STATUS_LABELS[maxvalue]
    return labels[1] if len(labels) > 1 and rng.random() < SYNONYM_SHARE else labels[0]


class WorkOrderWriter:
    def __init__(self, rng: random.Random, cal: Calendar, pool: DevicePool, open_permits: list[OpenPermit],
                 site_of: Callable[[str], str], count: int, planted: Sequence[str] = ()):
        self.rng, self.cal = rng, cal
        # Devices whose failure history is the planted series only: drawn failures become preventive work.
        self.planted = frozenset(planted)
        # Finished failures drawn so far per device, and the device's phase in its evenly spread series.
        self.failures: dict[str, tuple[float, int]] = {}
        order = list(pool.all)
        rng.shuffle(order)
        # The offset grows with the fleet, so the busiest device carries a similar share at any scale.
        self.skewed = Weighted.zipf(rng, order, offset=max(1.0, len(order) / 400))
        self.uniform = order
        self.open_permits = open_permits
        self.site_of = site_of
        overlap_share = min(0.05, 0.2 * len(open_permits) / count) if count else 0.0
        self.category = Weighted.of(
            rng, {"finished": 0.86 - overlap_share, "planned": 0.08, "open": 0.06, "overlap": overlap_share}
        )
        self.worktype = Weighted.of(rng, WORK_TYPE_WEIGHTS)
        self.finished = Weighted.of(rng, FINISHED_STATUS_WEIGHTS)
        self.planned = Weighted.of(rng, PLANNED_STATUS_WEIGHTS)
        self.open = Weighted.of(rng, OPEN_STATUS_WEIGHTS)
        self.isolation_working = Weighted.of(rng, {"APPLIED": 40, "NONE": 40, "RELEASED": 20})

    def _isolation(self, status: str, start: int) -> str:
        """Isolation is applied for work under way, not for work still waiting to start."""
        if status in ("INPRG", "WMATL") and start <= self.cal.anchor:
            return self.isolation_working()
        return "NONE"

    def _device(self) -> str:
        return self.skewed() if self.rng.random() < 0.3 else self.rng.choice(self.uniform)

    def _next_failure(self, device: str) -> int | None:
        """When the device's next failure is reported, None once its history is full. A device fails
        at its own period, each failure up to 15 % of it early or late, so no device fails faster
        by chance (work still open was reported back then and waits in the backlog)."""
        latest = self.cal.anchor - 3 * DAY - WORK_DURATIONS["CM"][1]
        if device not in self.failures:
            period = self.rng.randint(*FAILURE_PERIOD_DAYS) * DAY
            self.failures[device] = (self.cal.anchor - 400 * DAY + self.rng.randint(0, period), period)
        due, period = self.failures[device]
        if due > latest:
            return None
        self.failures[device] = (due + period, period)
        return due + int((self.rng.random() - 0.5) * 0.3 * period)

    def _lead(self, kind: str) -> int:
        """How long before its start work is reported: failures hours, planned work weeks.
        (`random()` arithmetic: randint would cost a tenth of the large plant's time.)"""
        if kind in FAILURE_TYPES:
            return 20 + int(self.rng.random() * 16 * 60)
        return (2 + int(self.rng.random() * 29)) * DAY

    def planted_failure(self, number: int, device: str, index: int) -> dict:
        """Failure `index` of a planted device: closed corrective or emergency work, reported on the
        planted schedule that ends a week before the anchor."""
        rng, cal = self.rng, self.cal
        reported = cal.anchor - 7 * DAY - sum(PLANTED_FAILURE_GAPS[index:]) * DAY + rng.randint(0, 8 * 60)
        kind = rng.choice(FAILURE_TYPES)
        start = reported + rng.randint(30, 4 * 60)
        finish = start + rng.randint(2, 24) * 60
        return {
            "wonum": f"WO-{number}", "assetnum": device, "siteid": self.site_of(device), "worktype": kind,
            "status": _label(rng, "CLOSE"), "status_maxvalue": "CLOSE", "reportdate": cal.iso(reported),
            "schedstart": cal.iso(start), "schedfinish": cal.iso(finish),
            "actfinish": cal.iso(finish - rng.randint(0, 60)), "isolationstate": "RELEASED",
            "changedate": cal.iso(finish + rng.randint(60, 2 * DAY)),
        }

    def work_order(self, number: int) -> dict:
        rng, cal, a = self.rng, self.cal, self.cal.anchor
        kind = self.worktype()
        shortest, longest = WORK_DURATIONS[kind]
        duration = rng.randint(shortest // 30, longest // 30) * 30
        category = self.category()
        finish_known = True
        actfinish = reported = None
        if category == "overlap":
            permit = rng.choice(self.open_permits)
            device = rng.choice(permit.devices)
            status = self.open()
            start = permit.start - rng.randint(0, 48) * 60
            duration = permit.start - start + rng.randint(60, permit.end - permit.start + DAY)
            isolation = self._isolation(status, start)
            changed = min(a - 1, start) - rng.randint(60, 7 * DAY)
        elif category == "open":
            device = self._device()
            status = self.open()
            start = a + rng.randint(-20 * DAY, 10 * DAY)
            finish_known = rng.random() < 0.9
            isolation = self._isolation(status, start)
            changed = min(a - 1, start) - rng.randint(60, 7 * DAY)
        elif category == "planned":
            device = self._device()
            status = self.planned()
            start = a + rng.randint(14, 200) * DAY + rng.choice((8, 9, 13)) * 60
            isolation = "NONE"
            changed = a - rng.randint(60, 60 * DAY)
        else:
            device = self._device()
            status = self.finished()
            if kind in FAILURE_TYPES and device not in self.planted:
                reported = self._next_failure(device)
            if reported is not None:
                start = reported + self._lead(kind)
            else:
                start = a - rng.randint(3 * DAY + longest, 400 * DAY)
            roll = rng.random()
            isolation = "APPLIED" if roll < 0.004 else "RELEASED" if roll < 0.4 else "NONE"
            if status != "CAN":
                actfinish = start + int(duration * rng.uniform(0.6, 1.1))
            changed = min(a - 1, (actfinish or start) + rng.randint(30, 3 * DAY))
        start -= start % 15
        if kind in FAILURE_TYPES and category != "finished" and device not in self.planted:
            reported = self._next_failure(device)
            reported = None if reported is None else min(reported, start - self._lead(kind))
        if kind in FAILURE_TYPES and reported is None:
            kind = "PM"  # the device's failures are all placed (or planted): this is preventive work
        record: dict[str, Any] = {
            "wonum": f"WO-{number}",
            "assetnum": device,
            "siteid": self.site_of(device),
            "worktype": kind,
            "status": _label(rng, status),
            "status_maxvalue": status,
            "reportdate": cal.iso(min(start - self._lead(kind) if reported is None else reported, changed)),
            "schedstart": cal.iso(start),
        }
        if finish_known:
            record["schedfinish"] = cal.iso(start + duration)
        if actfinish is not None:
            record["actfinish"] = cal.iso(actfinish)
        record["isolationstate"] = isolation
        record["changedate"] = cal.iso(changed)
        return record


def _break_work_order(rng: random.Random, record: dict) -> dict:
    field = rng.choice(("status_maxvalue", "schedstart", "worktype", "isolationstate"))
    if field == "status_maxvalue":
        record["status"], record["status_maxvalue"] = "HOLD", "BOGUS"
        problem = "unknown value"
    elif field == "schedstart":
        record["schedstart"] = "2026-13-45T25:00:00+08:00"
        problem = "not a date"
    elif field == "worktype":
        record["worktype"] = rng.choice(("XX", "PMX"))
        problem = "unknown value"
    else:
        record["isolationstate"] = "LOCKED"
        problem = "unknown value"
    return {"file": WORK_ORDERS_FILE, "kind": "maintenance_record", "key": record["wonum"], "field": field,
            "problem": problem}


def _write_work_orders(out_dir: Path, rng: random.Random, writer: WorkOrderWriter, count: int,
                       malformed: list[dict]) -> None:
    # The planted failure series come first (as many as the count allows), whole and well formed.
    planted = [(d, i) for d in sorted(writer.planted) for i in range(len(PLANTED_FAILURE_GAPS) + 1)][:count]
    broken = set(rng.sample(range(len(planted), count), min(count - len(planted), _malformed_count(count))))
    handle, out = _open_list(out_dir, WORK_ORDERS_FILE)
    with handle:
        for index in range(count):
            if index < len(planted):
                record = writer.planted_failure(1_000_001 + index, *planted[index])
            else:
                record = writer.work_order(1_000_001 + index)
            if index in broken:
                malformed.append(_break_work_order(rng, record))
            out.write(record)
        out.close()


# --------------------------------------------------------------------------- MES quality


def _quality_months(anchor: date) -> list[date]:
    """The first days of the QUALITY_MONTHS months before the anchor's month, oldest first."""
    months = []
    year, month = anchor.year, anchor.month
    for _ in range(QUALITY_MONTHS):
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
        months.append(date(year, month, 1))
    return months[::-1]


def _write_quality(out_dir: Path, rng: random.Random, anchor: date, sites: list[Site],
                   height_months: dict[tuple[str, str, str], int], rising: tuple[str, str] | None) -> int:
    """A defect rate per workshop and month. The rising workshop's rate follows its month's work
    at height (with a little noise); every other rate varies around the workshop's own level."""
    months = _quality_months(anchor)
    handle, out = _open_list(out_dir, QUALITY_FILE)
    with handle:
        for site in sites:
            for area in site.areas:
                level = rng.uniform(0.006, 0.03)
                counts = [height_months.get((site.code, area.name, m.isoformat()[:7]), 0) for m in months]
                most = max(counts) or 1
                for month, count in zip(months, counts):
                    if (site.code, area.name) == rising:
                        rate = level * (0.5 + 1.5 * count / most) * rng.uniform(0.95, 1.05)
                    else:
                        rate = level * rng.uniform(0.75, 1.25)
                    last_day = (month.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
                    out.write({
                        "SiteID": site.code, "WorkCenterID": area.name, "Period": month.isoformat()[:7],
                        "DefectRate": f"{rate:.4f}", "QuantityInspected": rng.randrange(1500, 12000, 10),
                        "LastUpdated": f"{last_day.isoformat()}T22:{rng.randrange(60):02d}:00+08:00",
                    })
        out.close()
    return out.count


# --------------------------------------------------------------------------- ERP and cost rules


def _company(sites: list[Site]) -> dict:
    fixture = _fixture_company()
    accounts = fixture["companyCodes"][0]["GLAccounts"]
    return {
        "duplicateWindowDays": fixture["duplicateWindowDays"],
        "firstAccountingDocument": fixture["firstAccountingDocument"],
        "companyCodes": [
            {
                "CompanyCode": site.code,
                "Name": site.name,
                "Currency": "CNY",
                "CostCenters": [{"CostCenter": area.cost_center, "Name": area.name} for area in site.areas],
                "GLAccounts": accounts,
            }
            for site in sites
        ],
    }


def _cost_rules(sites: list[Site]) -> str:
    """The packaged costs.yaml, byte for byte, except its `cost_centers` block."""
    lines = PACKAGED_COST_RULES.read_text(encoding="utf-8").splitlines(keepends=True)
    start = lines.index("cost_centers:\n")
    end = start + 1
    while end < len(lines) and (lines[end].startswith(" ") or not lines[end].strip()):
        end += 1
    block = ["cost_centers:\n"]
    for site in sites:
        block.append(f"  {site.code}:\n")
        block.extend(f"    {area.name}: {area.cost_center}\n" for area in site.areas)
    block.append("\n")
    return "".join(lines[:start] + block + lines[end:])


# --------------------------------------------------------------------------- the plant


def _check_arguments(sites: int, permits: int, devices: int, work_orders: int, materials: int) -> None:
    problems = []
    if not 1 <= sites <= MAX_SITES:
        problems.append(f"sites must be 1 to {MAX_SITES}, got {sites}")
    if permits < 1:
        problems.append(f"permits must be at least 1, got {permits}")
    fewest = MIN_DEVICES_PER_SITE * max(sites, 1)
    if devices < fewest:
        problems.append(f"devices must be at least {MIN_DEVICES_PER_SITE} per site ({fewest}), got {devices}")
    if work_orders < 0:
        problems.append(f"work orders must not be negative, got {work_orders}")
    if materials < 1:
        problems.append(f"materials must be at least 1, got {materials}")
    if problems:
        raise ValueError("; ".join(problems))


def generate_plant(out_dir: Path, *, sites: int, permits: int, devices: int, work_orders: int, materials: int,
                   seed: int, anchor: date = DEFAULT_ANCHOR, effects: bool = True) -> dict:
    """Write a synthetic plant group into `out_dir` and return its manifest (also in manifest.json).

    Every `updateTime` and `changedate` lies before `anchor` (plant local), so a change stamped
    at or after it is the only thing an incremental pull sees. `effects` plants the patterns the
    cross-system analyses look for; the manifest names where.
    """
    _check_arguments(sites, permits, devices, work_orders, materials)
    out_dir = Path(out_dir)
    rng = random.Random(seed)
    cal = Calendar(anchor)
    malformed: list[dict] = []
    plant_sites = _make_sites(rng, sites)
    pool = _write_assets(out_dir, rng, cal, plant_sites, devices, malformed)
    material_names = _write_materials(out_dir, rng, materials, malformed)
    rising = (plant_sites[0].code, plant_sites[0].areas[0].name) if effects else None
    permit_writer = PermitWriter(rng, cal, plant_sites, pool, material_names, rising)
    states = _write_permits(out_dir, rng, permit_writer, permits, malformed)
    quality = _write_quality(out_dir, rng, anchor, plant_sites, permit_writer.height_months, rising)
    site_by_prefix = {s.short: s.code for s in plant_sites}
    planted = list(dict.fromkeys(permit_writer.lifted_open))[:PLANTED_DEVICES] if effects else []
    wo_writer = WorkOrderWriter(
        rng, cal, pool, permit_writer.open, lambda assetnum: site_by_prefix[assetnum.split("-")[0]], work_orders,
        planted,
    )
    _write_work_orders(out_dir, rng, wo_writer, work_orders, malformed)
    _write_json(out_dir / COMPANY_FILE, _company(plant_sites))
    (out_dir / COST_RULES_FILE).parent.mkdir(parents=True, exist_ok=True)
    (out_dir / COST_RULES_FILE).write_text(_cost_rules(plant_sites), encoding="utf-8", newline="\n")
    manifest = {
        "generator": "hub.synthetic_plant",
        "arguments": {
            "sites": sites, "permits": permits, "devices": devices, "work_orders": work_orders,
            "materials": materials, "seed": seed, "anchor": anchor.isoformat(), "effects": effects,
        },
        "timezone": "Asia/Shanghai",
        "sites": [
            {"code": s.code, "name": s.name, "areas": {a.name: a.cost_center for a in s.areas}} for s in plant_sites
        ],
        "effects": {
            "height_quality_workshop": None if rising is None else {"site": rising[0], "workshop": rising[1]},
            "failing_devices": [{"site": site_by_prefix[d.split("-")[0]], "device_id": d} for d in planted],
        },
        "counts": {
            "permits": permits, "permit_states": states, "assets": devices, "work_orders": work_orders,
            "materials": materials, "quality_rates": quality, "company_codes": sites,
            "malformed": {f: sum(1 for m in malformed if m["file"] == f)
                          for f in (PERMITS_FILE, ASSETS_FILE, WORK_ORDERS_FILE, MATERIALS_FILE)},
        },
        "malformed": malformed,
    }
    _write_json(out_dir / MANIFEST_FILE, manifest)
    return manifest


# --------------------------------------------------------------------------- changes for a re-sync


def _plant_time(now: datetime) -> datetime:
    """`now` as naive plant local time, to the second; a naive `now` is taken as plant local already."""
    local = now.astimezone(PLANT_TZ).replace(tzinfo=None) if now.tzinfo else now
    return local.replace(microsecond=0)


def _pick(rng: random.Random, preferred: list[int], fallback: list[int], count: int, what: str) -> list[int]:
    """`count` indexes, from `preferred` first; the rest from `fallback`."""
    if count > len(preferred) + len(fallback):
        raise ValueError(f"cannot change {count} {what}: only {len(preferred) + len(fallback)} can be changed")
    chosen = rng.sample(preferred, min(count, len(preferred)))
    return chosen + rng.sample(fallback, count - len(chosen))


def _fields(line: str, names: tuple[str, ...]) -> tuple:
    record = json.loads(line)
    return tuple(record[name] for name in names)


def _shift(text: str, minutes: int, pattern: str) -> str:
    return (datetime.strptime(text, pattern) + timedelta(minutes=minutes)).strftime(pattern)


LOCAL = "%Y-%m-%d %H:%M:%S"
ISO_LOCAL = "%Y-%m-%dT%H:%M:%S+08:00"


def _change_permit(rng: random.Random, permit: dict, stamp: str, local_now: datetime) -> str:
    state = permit["state"]
    move = rng.random() < 0.4
    if state in ("SUBMITTED", "APPROVED") and move:
        minutes = rng.choice((-1, 1)) * rng.randint(1, 72) * 60
        permit["planStartTime"] = _shift(permit["planStartTime"], minutes, LOCAL)
        permit["planEndTime"] = _shift(permit["planEndTime"], minutes, LOCAL)
        change = f"window moved {minutes // 60:+d}h"
    elif state == "SUBMITTED":
        permit["state"], permit["approveTime"] = "APPROVED", stamp
        change = "SUBMITTED->APPROVED"
    elif state in ("APPROVED", "SUSPENDED"):
        if state == "APPROVED":
            permit["guardianArriveTime"] = stamp if permit["guardian"] else None
        permit["state"] = "IN_PROGRESS"
        change = f"{state}->IN_PROGRESS"
    elif state == "IN_PROGRESS":
        began = datetime.strptime(permit["guardianArriveTime"] or permit["planStartTime"], LOCAL)
        permit["state"], permit["closeTime"] = "CLOSED", stamp
        permit["closeResult"] = rng.choices(list(CLOSE_RESULT_WEIGHTS), list(CLOSE_RESULT_WEIGHTS.values()))[0]
        permit["workHours"] = max(0.5, int((local_now - began).total_seconds() // 1800) / 2)
        change = "IN_PROGRESS->CLOSED"
    else:  # a closed permit amended afterwards; nothing its costs depend on
        permit["materials"] = list(dict.fromkeys([*permit["materials"], "氮气"]))
        change = "materials amended"
    permit["updateTime"] = stamp
    return change


WORK_ORDER_NEXT = {"WAPPR": ("APPR",), "APPR": ("WSCH", "INPRG"), "WSCH": ("INPRG",), "WMATL": ("INPRG",),
                   "INPRG": ("COMP",), "COMP": ("CLOSE",)}


def _change_work_order(rng: random.Random, order: dict, stamp: str) -> str:
    status = order["status_maxvalue"]
    roll = rng.random()
    if status in TERMINAL_STATUSES or (status != "COMP" and roll < 0.25):
        minutes = rng.choice((-1, 1)) * rng.randint(1, 72 if status not in TERMINAL_STATUSES else 4) * 60
        for field in ("schedstart", "schedfinish"):
            if field in order:
                order[field] = _shift(order[field], minutes, ISO_LOCAL)
        change = f"window moved {minutes // 60:+d}h"
    elif status != "COMP" and roll < 0.35:
        before = order["isolationstate"]
        order["isolationstate"] = "RELEASED" if before == "APPLIED" else "APPLIED"
        change = f"isolation {before}->{order['isolationstate']}"
    else:
        after = rng.choice(WORK_ORDER_NEXT[status])
        synonym = order["status"] != order["status_maxvalue"]
        labels = STATUS_LABELS[after]
        order["status"] = labels[1] if synonym and len(labels) > 1 else labels[0]
        order["status_maxvalue"] = after
        if after == "COMP":
            order["actfinish"] = stamp
            if order["isolationstate"] == "APPLIED" and rng.random() < 0.7:
                order["isolationstate"] = "RELEASED"
        change = f"{status}->{after}"
    order["changedate"] = stamp
    return change


def _rewrite(path: Path, lines: list[str], changed: dict[int, dict]) -> None:
    with path.open("w", encoding="utf-8", newline="\n", buffering=1 << 20) as handle:
        out = JsonLines(handle)
        for index, line in enumerate(lines):
            if index in changed:
                out.write(changed[index])
            else:
                out.write_line(line)
        out.close()


def change_plant(src: Path, dst: Path, *, fraction: float = 0.01, seed: int, now: datetime) -> dict:
    """Copy the plant at `src` to `dst` with `fraction` of its permits and work orders changed at `now`.

    Open permits move on (approved, started, closed) or have their window moved; open work
    orders change status, window or isolation, and finished ones move to CLOSE. Each changed
    record gets `updateTime`/`changedate` = `now`, which must be later than every stamp in the
    plant, so an incremental pull from `now` returns exactly the changed records.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    src, dst = Path(src), Path(dst)
    manifest = json.loads((src / MANIFEST_FILE).read_text(encoding="utf-8"))
    malformed = {(m["file"], m["key"]) for m in manifest["malformed"]}
    local_now = _plant_time(now)
    stamp, iso_stamp = local_now.strftime(LOCAL), local_now.strftime(ISO_LOCAL)
    rng = random.Random(f"change:{seed}:{stamp}")

    permit_lines = _read_lines(src / PERMITS_FILE)
    permits = [_fields(line, ("ticketNo", "state", "updateTime")) for line in permit_lines]
    order_lines = _read_lines(src / WORK_ORDERS_FILE)
    orders = [_fields(line, ("wonum", "status_maxvalue", "changedate")) for line in order_lines]
    latest = max([p[2] for p in permits] + [o[2][:19].replace("T", " ") for o in orders])
    if latest >= stamp:
        raise ValueError(f"now ({stamp} plant time) must be later than the plant's latest change ({latest})")

    usable_permits = [i for i, p in enumerate(permits) if (PERMITS_FILE, p[0]) not in malformed]
    usable_orders = [i for i, o in enumerate(orders) if (WORK_ORDERS_FILE, o[0]) not in malformed]
    permit_picks = _pick(
        rng,
        [i for i in usable_permits if permits[i][1] in OPEN_STATES],
        [i for i in usable_permits if permits[i][1] == "CLOSED"],
        round(fraction * len(permits)),
        "permits",
    )
    order_picks = _pick(
        rng,
        [i for i in usable_orders if orders[i][1] not in TERMINAL_STATUSES],
        [i for i in usable_orders if orders[i][1] in TERMINAL_STATUSES],
        round(fraction * len(orders)),
        "work orders",
    )
    changed_permits = {i: json.loads(permit_lines[i]) for i in sorted(permit_picks)}
    changed_orders = {i: json.loads(order_lines[i]) for i in sorted(order_picks)}
    permit_changes = {p["ticketNo"]: _change_permit(rng, p, stamp, local_now) for p in changed_permits.values()}
    order_changes = {o["wonum"]: _change_work_order(rng, o, iso_stamp) for o in changed_orders.values()}

    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    _rewrite(dst / PERMITS_FILE, permit_lines, changed_permits)
    _rewrite(dst / WORK_ORDERS_FILE, order_lines, changed_orders)
    change = {
        "source": manifest["arguments"],
        "fraction": fraction,
        "seed": seed,
        "now": {"updateTime": stamp, "changedate": iso_stamp},
        "permits": permit_changes,
        "work_orders": order_changes,
    }
    _write_json(dst / MANIFEST_FILE, {**manifest, "change": change})
    return change
