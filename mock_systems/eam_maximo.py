"""EAM, Maximo's own REST API: object structures `mxapiasset`, `mxapiwodetail`, `mxapisynonymdomain`.

The `mxasset`/`mxwo` structures of `eam_oslc.py` serve the WSDL's attributes one to one. These
serve the same `EamRecords` the way a real Maximo does, so a client must do what it would do
against one:

- `oslc.where` over any attribute (`=`, `in [...]`, `>=`, `<=`), `oslc.select` with related
  objects (`location{location,description}`); a related object named like an attribute moves
  the attribute's text to `$alias_this_attr$<name>`, as Maximo does;
- status labels are the site's synonyms; `internalvalues=1` adds `status_maxvalue`, and the
  synonym domain itself is served (`mxapisynonymdomain`), derived from the labels in use;
- lock-out/tag-out is not a work-order attribute but child rows (`wosafetylink`, `wotagout`,
  `wotaglock`, `wolockout`), derived from the plant's isolation state: an applied isolation is
  a lock applied and not removed, a released one a lock applied and removed, none no rows.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from .base import PLANT_TZ
from .eam import AssetQuery, EamRecords, normalise_assetnum, parse_datetime
from .eam_oslc import (
    _CLAUSE_SEPARATOR,
    DEFAULT_PAGE_SIZE,
    MAX_IDS,
    MAX_PAGE_SIZE,
    OSLC_ROOT,
    OslcQueryError,
    bounded_int,
    oslc_error,
    resource_id,
    rowstamp,
)

ALIAS_PREFIX = "$alias_this_attr$"
# Internal values of Maximo's WOSTATUS and LOCASSETSTATUS synonym domains that the plant uses.
WO_STATUSES = {
    "WAPPR": "Waiting on approval", "APPR": "Approved", "WSCH": "Waiting to be scheduled",
    "WMATL": "Waiting on material", "INPRG": "In progress", "COMP": "Completed", "CLOSE": "Closed",
    "CAN": "Canceled",
}
ASSET_STATUSES = {"OPERATING": "Operating", "NOT READY": "Not ready", "DECOMMISSIONED": "Decommissioned"}
DOMAINS = {"WOSTATUS": WO_STATUSES, "LOCASSETSTATUS": ASSET_STATUSES}
# How the lock-out/tag-out rows read for each isolation state: (applied, removed), or no rows.
ISOLATION_ROWS = {"APPLIED": (True, False), "RELEASED": (True, True)}
HAZARD_ID = "ISOLATE"
TAGOUT_STATE = "ISOLATED"
LOCKOUT_STATE = "LOCKED"

_LITERAL = r'"(?:[^"\\]|\\.)*"'
_COMPARISON = re.compile(rf"(\w+)\s*(>=|<=|=)\s*({_LITERAL})", re.DOTALL)
_MEMBERSHIP = re.compile(r"(\w+)\s+in\s+(\[.*\])", re.IGNORECASE | re.DOTALL)
_SELECT_TERM = re.compile(r"\s*(\*|\w+)\s*(\{)?")


# ---------------------------------------------------------------------------- oslc.where


@dataclass(frozen=True)
class Clause:
    """One `oslc.where` clause: `attribute op values`, op one of `=`, `in`, `>=`, `<=`."""

    attribute: str
    op: str
    values: tuple[str, ...]

    def keeps(self, member: dict) -> bool:
        value = member.get(self.attribute)
        if self.op in {"=", "in"}:
            return value is not None and normalise_assetnum(value) in {normalise_assetnum(v) for v in self.values}
        if value is None:
            return False
        try:
            served = parse_datetime(str(value))
        except ValueError:
            return True  # an unreadable date is served, so the client can quarantine it
        bound = parse_datetime(self.values[0])
        return served >= bound if self.op == ">=" else served <= bound


def _string(literal: str) -> str:
    try:
        return json.loads(literal)
    except ValueError:
        raise OslcQueryError(f"cannot read the literal {literal}") from None


def parse_where(text: str | None, attributes: tuple[str, ...], dates: frozenset[str]) -> list[Clause]:
    """The clauses of `oslc.where` (none without it), attribute names lower-cased."""
    if text is None or not text.strip():
        return []
    clauses = []
    for raw in _CLAUSE_SEPARATOR.split(text.strip()):
        raw = raw.strip()
        if match := _MEMBERSHIP.fullmatch(raw):
            name, values = match.group(1).lower(), _list(match.group(2))
            op = "in"
        elif match := _COMPARISON.fullmatch(raw):
            name, op, values = match.group(1).lower(), match.group(2), (_string(match.group(3)),)
        else:
            raise OslcQueryError(f"cannot read the where clause {raw!r}")
        if name not in attributes:
            raise OslcQueryError(f"oslc.where names an attribute this object structure does not have: {name}")
        if op in {">=", "<="}:
            if name not in dates:
                raise OslcQueryError(f"{op} compares dates; {name} is not a date")
            try:
                parse_datetime(values[0])
            except ValueError:
                raise OslcQueryError(f"{name} needs an ISO 8601 date and time, got {values[0]!r}") from None
        clauses.append(Clause(name, op, values))
    return clauses


def _list(literal: str) -> tuple[str, ...]:
    try:
        values = json.loads(literal)
    except (ValueError, RecursionError):
        raise OslcQueryError(f'cannot read the list {literal!r}: use ["A","B"]') from None
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise OslcQueryError(f"in [...] takes quoted strings, got {literal!r}")
    if not 1 <= len(values) <= MAX_IDS:
        raise OslcQueryError(f"in [...] takes 1 to {MAX_IDS} values, got {len(values)}")
    return tuple(dict.fromkeys(values))


def _values(clauses: list[Clause], attribute: str, ops: tuple[str, ...] = ("=", "in")) -> tuple[str, ...] | None:
    found = [c.values for c in clauses if c.attribute == attribute and c.op in ops]
    return found[0] if found else None


# ---------------------------------------------------------------------------- oslc.select


@dataclass
class Selection:
    """`oslc.select`: attribute names (or `*`), and related objects with their own selection."""

    names: list[str] = field(default_factory=list)
    related: dict[str, Selection] = field(default_factory=dict)


def parse_select(text: str) -> Selection:
    selection, rest = _select_list(text, 0)
    if rest != len(text):
        raise OslcQueryError(f"cannot read oslc.select after {text[:rest]!r}")
    return selection


def _select_list(text: str, position: int) -> tuple[Selection, int]:
    selection = Selection()
    while True:
        match = _SELECT_TERM.match(text, position)
        if match is None:
            raise OslcQueryError(f"cannot read oslc.select at {text[position:]!r}")
        name, position = match.group(1).lower(), match.end()
        if match.group(2):
            selection.related[name], position = _select_list(text, position)
            if not text.startswith("}", position):
                raise OslcQueryError(f"oslc.select: {{ after {name} is never closed")
            position += 1
        else:
            selection.names.append(name)
        while position < len(text) and text[position].isspace():
            position += 1
        if not text.startswith(",", position):
            return selection, position
        position += 1


# ---------------------------------------------------------------------------- object structures

Rows = Callable[["Plant", dict], list[dict]]


@dataclass(frozen=True)
class Relation:
    """A related object of a member: its attributes and its rows (`many`: a list, else one object)."""

    attributes: tuple[str, ...]
    rows: Rows
    many: bool = False


@dataclass(frozen=True)
class Structure:
    """One object structure: its attributes, the member's key, where members come from, its relations."""

    name: str
    attributes: tuple[str, ...]
    key: Callable[[dict], str]
    candidates: Callable[[Plant, list[Clause]], list[dict]]
    relations: dict[str, Relation]
    dates: frozenset[str] = frozenset()
    domains: dict[str, str] = field(default_factory=dict)  # attribute -> synonym domain


class Plant:
    """The EAM records as Maximo's object structures show them (derived attributes and child rows)."""

    def __init__(self, records: EamRecords):
        self.records = records

    def asset_of(self, workorder: dict) -> dict | None:
        return self.records.asset(str(workorder.get("siteid", "")), str(workorder.get("assetnum", "")))

    def asset_member(self, asset: dict) -> dict:
        """An asset's attributes with Maximo's `changedate`: when it was last changed, or, for an
        asset unchanged since the fixtures, its last data sync (none if it has neither)."""
        changed = self.records.asset_changed_at(str(asset.get("siteid", "")), str(asset.get("assetnum", "")))
        stamp = changed.astimezone(PLANT_TZ).replace(microsecond=0).isoformat() if changed else asset.get("datasyncdate")
        return asset | ({"changedate": stamp} if stamp else {})

    def workorder_member(self, workorder: dict) -> dict:
        """A work order's attributes: the record without `isolationstate` (child rows carry it) and
        with its asset's `location`, as Maximo copies it onto the work order."""
        member = {k: v for k, v in workorder.items() if k not in {"isolationstate", "status_maxvalue"}}
        asset = self.asset_of(workorder)
        if asset is not None and asset.get("location") is not None:
            member["location"] = asset["location"]
        return member

    def synonyms(self) -> list[dict]:
        """The synonym domains' rows: each internal value as its own default, then each label a
        site uses for an internal value, by domain, site and label."""
        rows = [
            {"domainid": domain, "value": value, "maxvalue": value, "description": text, "defaults": True}
            for domain, values in DOMAINS.items()
            for value, text in values.items()
        ]
        labels = {
            (str(wo.get("siteid")), str(wo.get("status")), str(wo.get("status_maxvalue")))
            for wo in self.records.every_workorder()
        }
        for siteid, label, internal in sorted(labels):
            if internal in WO_STATUSES and label != internal:
                rows.append(
                    {"domainid": "WOSTATUS", "value": label, "maxvalue": internal,
                     "description": WO_STATUSES[internal], "defaults": False, "siteid": siteid}
                )
        return rows

    def internal_value(self, domain: str, record: dict, attribute: str) -> str | None:
        """The internal value behind a record's label: a work order carries its own, an asset's
        label is looked up in the domain (a label the domain lacks has none)."""
        if domain == "WOSTATUS":
            return record.get("status_maxvalue")
        label = record.get(attribute)
        return label if label in DOMAINS[domain] else None


def _isolation(workorder: dict) -> tuple[bool, bool] | None:
    return ISOLATION_ROWS.get(str(workorder.get("isolationstate", "")).strip().upper())


def _safety_links(plant: Plant, workorder: dict) -> list[dict]:
    if _isolation(workorder) is None:
        return []
    wonum = workorder["wonum"]
    return [{"wosafetylinkid": f"{wonum}-1", "wonum": wonum, "siteid": workorder.get("siteid"),
             "hazardid": HAZARD_ID, "tagoutid": f"TO-{wonum}", "assetnum": workorder.get("assetnum")}]


def _tagouts(plant: Plant, workorder: dict) -> list[dict]:
    if _isolation(workorder) is None:
        return []
    wonum = workorder["wonum"]
    return [{"tagoutid": f"TO-{wonum}", "wonum": wonum, "siteid": workorder.get("siteid"),
             "assetnum": workorder.get("assetnum"), "requiredstate": TAGOUT_STATE, "tagoutseq": 1}]


def _taglocks(plant: Plant, workorder: dict) -> list[dict]:
    if _isolation(workorder) is None:
        return []
    wonum = workorder["wonum"]
    return [{"tagoutid": f"TO-{wonum}", "lockoutid": f"LO-{wonum}", "wonum": wonum,
             "siteid": workorder.get("siteid"), "applyseq": 1, "removeseq": 1}]


def _lockouts(plant: Plant, workorder: dict) -> list[dict]:
    state = _isolation(workorder)
    if state is None:
        return []
    wonum = workorder["wonum"]
    return [{"lockoutid": f"LO-{wonum}", "tagoutid": f"TO-{wonum}", "wonum": wonum,
             "siteid": workorder.get("siteid"), "assetnum": workorder.get("assetnum"),
             "requiredstate": LOCKOUT_STATE, "applyseq": 1, "removeseq": 1,
             "applied": state[0], "removed": state[1]}]


def _location(asset: dict | None, siteid: Any) -> list[dict]:
    """The asset's location as a related object; the plant's locations are named by their area."""
    location = (asset or {}).get("location")
    return [] if location is None else [{"location": location, "description": location, "siteid": siteid}]


def _asset(plant: Plant, workorder: dict) -> list[dict]:
    asset = plant.asset_of(workorder)
    return [plant.asset_member(asset)] if asset is not None else []


def _indexed(clauses: list[Clause]) -> tuple[AssetQuery | None, str | None]:
    """The records' index query the where clause names (asset numbers, at a site if it names
    one; or a site's changes since a change date), or None; and the site it names."""
    assetnums, siteids = _values(clauses, "assetnum"), _values(clauses, "siteid")
    site = normalise_assetnum(siteids[0]) if siteids and len(siteids) == 1 else None
    since = _values(clauses, "changedate", (">=",))
    if assetnums is not None:
        return AssetQuery([normalise_assetnum(n) for n in assetnums], site), site
    if site is not None and since is not None:
        return AssetQuery([], site, parse_datetime(since[0])), site
    return None, site


def _asset_candidates(plant: Plant, clauses: list[Clause]) -> list[dict]:
    """The assets the where clause could keep, from the records' indexes where it allows."""
    query, _ = _indexed(clauses)
    found = plant.records.assets(query) if query is not None else plant.records.every_asset()
    return [plant.asset_member(asset) for asset in found]


def _workorder_candidates(plant: Plant, clauses: list[Clause]) -> list[dict]:
    """The work orders the where clause could keep, from the records' indexes where it names
    assets, a site and a change date (the feed), or a site and work order numbers."""
    query, site = _indexed(clauses)
    if query is not None:
        found = plant.records.workorders(query)
    elif site is not None and (wonums := _values(clauses, "wonum")) is not None:
        found = [wo for wonum in wonums if (wo := plant.records.workorder(site, wonum)) is not None]
    else:
        found = plant.records.every_workorder()
    return [plant.workorder_member(wo) | {"_record": wo} for wo in found]


ASSET_ATTRIBUTES = ("assetnum", "siteid", "description", "location", "status", "nextinspdate", "datasyncdate", "changedate")
WORKORDER_ATTRIBUTES = (
    "wonum", "siteid", "assetnum", "location", "worktype", "status", "reportdate", "schedstart", "schedfinish",
    "actfinish", "changedate",
)
LOCATION_ATTRIBUTES = ("location", "description", "siteid")
STRUCTURES = (
    Structure(
        "mxapiasset", ASSET_ATTRIBUTES, lambda a: f"{a.get('assetnum')}/{a.get('siteid')}", _asset_candidates,
        {"location": Relation(LOCATION_ATTRIBUTES, lambda plant, asset: _location(asset, asset.get("siteid")))},
        frozenset({"nextinspdate", "datasyncdate", "changedate"}), {"status": "LOCASSETSTATUS"},
    ),
    Structure(
        "mxapiwodetail", WORKORDER_ATTRIBUTES, lambda w: f"{w.get('siteid')}/{w.get('wonum')}",
        _workorder_candidates,
        {
            "location": Relation(LOCATION_ATTRIBUTES, lambda plant, wo: _location(plant.asset_of(wo), wo.get("siteid"))),
            "asset": Relation(ASSET_ATTRIBUTES, _asset),
            "wosafetylink": Relation(("wosafetylinkid", "wonum", "siteid", "hazardid", "tagoutid", "assetnum"), _safety_links, True),
            "wotagout": Relation(("tagoutid", "wonum", "siteid", "assetnum", "requiredstate", "tagoutseq"), _tagouts, True),
            "wotaglock": Relation(("tagoutid", "lockoutid", "wonum", "siteid", "applyseq", "removeseq"), _taglocks, True),
            "wolockout": Relation(
                ("lockoutid", "tagoutid", "wonum", "siteid", "assetnum", "requiredstate", "applyseq", "removeseq",
                 "applied", "removed"),
                _lockouts, True,
            ),
        },
        frozenset({"reportdate", "schedstart", "schedfinish", "actfinish", "changedate"}), {"status": "WOSTATUS"},
    ),
    Structure(
        "mxapisynonymdomain", ("domainid", "value", "maxvalue", "description", "defaults", "siteid"),
        lambda s: f"{s.get('domainid')}/{s.get('maxvalue')}/{s.get('value')}/{s.get('siteid') or ''}",
        lambda plant, clauses: plant.synonyms(), {},
    ),
)


def _chosen(names: list[str], attributes: tuple[str, ...]) -> tuple[str, ...]:
    if "*" in names:
        return attributes
    unknown = sorted(set(names) - set(attributes))
    if unknown:
        raise OslcQueryError(f"oslc.select names attributes this object structure does not have: {unknown}")
    return tuple(name for name in attributes if name in names)


class MaximoApi:
    """Maximo's REST API over one `EamRecords`: the routes `EamOslcSystem` adds beside its own."""

    def __init__(self, records: EamRecords):
        self.plant = Plant(records)

    def collection(self, structure: Structure, request: Request) -> JSONResponse:
        params = request.query_params
        try:
            if params.get("lean") != "1":
                raise OslcQueryError("this service answers lean JSON only: add lean=1")
            clauses = parse_where(params.get("oslc.where"), structure.attributes, structure.dates)
            selection = parse_select(params["oslc.select"]) if "oslc.select" in params else Selection()
            for name in [n for n in selection.names if n in structure.relations and n not in structure.attributes]:
                selection.names.remove(name)  # a related object named without braces: all its attributes
                selection.related.setdefault(name, Selection())
            attributes = _chosen(selection.names, structure.attributes)
            unknown = sorted(set(selection.related) - set(structure.relations))
            if unknown:
                raise OslcQueryError(f"oslc.select names related objects this object structure does not have: {unknown}")
            related = {
                name: (structure.relations[name], _chosen(sub.names or ["*"], structure.relations[name].attributes))
                for name, sub in selection.related.items()
            }
            internal = params.get("internalvalues") == "1"
            page_size = bounded_int(params.get("oslc.pageSize"), "oslc.pageSize", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
            page_number = bounded_int(params.get("pageno"), "pageno", 1)
        except OslcQueryError as exc:
            return oslc_error(400, str(exc))
        kept = [m for m in structure.candidates(self.plant, clauses) if all(c.keeps(m) for c in clauses)]
        kept.sort(key=structure.key)
        collection_href = f"{str(request.base_url).rstrip('/')}{OSLC_ROOT}/os/{structure.name}"
        members = [
            self._member(structure, candidate, attributes, related, internal, collection_href)
            for candidate in kept[(page_number - 1) * page_size : page_number * page_size]
        ]
        info: dict[str, Any] = {
            "href": str(request.url), "pagenum": page_number, "totalCount": len(kept),
            "totalPages": max(1, -(-len(kept) // page_size)),
        }
        if page_number * page_size < len(kept):
            info["nextPage"] = {"href": str(request.url.include_query_params(pageno=page_number + 1))}
        return JSONResponse({"member": members, "responseInfo": info})

    def _member(
        self, structure: Structure, candidate: dict, attributes: tuple[str, ...],
        related: dict[str, tuple[Relation, tuple[str, ...]]], internal: bool, collection_href: str,
    ) -> dict:
        record = candidate.get("_record", candidate)
        member: dict[str, Any] = {}
        for name in attributes:
            if candidate.get(name) is not None:
                member[name] = candidate[name]
            domain = structure.domains.get(name)
            if internal and domain is not None and (value := self.plant.internal_value(domain, record, name)) is not None:
                member[f"{name}_maxvalue"] = value
        for name, (relation, chosen) in related.items():
            if candidate.get(name) is not None:
                member.pop(name, None)
                member[f"{ALIAS_PREFIX}{name}"] = candidate[name]
            rows = [
                {a: row[a] for a in chosen if row.get(a) is not None} | {"href": _child_href(name, relation, row)}
                for row in relation.rows(self.plant, record)
            ]
            if relation.many:
                if rows:
                    member[name] = rows
            else:
                member[name] = rows[0] if rows else {}
        member["href"] = f"{collection_href}/{resource_id(structure.key(candidate))}"
        member["_rowstamp"] = rowstamp(record)
        return member

    def add_routes(self, app: FastAPI) -> None:
        for structure in STRUCTURES:
            self._add_route(app, structure)

    def _add_route(self, app: FastAPI, structure: Structure) -> None:
        @app.get(f"{OSLC_ROOT}/os/{structure.name}")
        async def serve(request: Request) -> JSONResponse:
            return self.collection(structure, request)


def _child_href(name: str, relation: Relation, row: dict) -> str:
    """A child row's href as Maximo writes it: `http://childkey#` and the base64 of its key."""
    key = f"{name.upper()}/{row.get(relation.attributes[0])}/{row.get('siteid')}"
    return "http://childkey#" + base64.b64encode(key.encode("utf-8")).decode("ascii").replace("=", "-")
