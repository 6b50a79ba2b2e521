"""EAM mock, second flavor: the same assets and work orders as Maximo OSLC JSON over REST.

A site whose EAM is reached through Maximo's REST API rather than a SOAP service still has the
same plant behind it, so this face answers from the SOAP mock's `EamRecords` and serves the
same attributes (the WSDL's `Asset` and `WorkOrder` sequences). Only the protocol differs:
`oslc.where` / `oslc.select` / `oslc.pageSize` / `pageno` queries, lean JSON members that omit
absent values, `responseInfo.nextPage` links, and Maximo's `{"Error": {...}}` for refused queries.
"""

from __future__ import annotations

import base64
import json
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from .base import MockSystem
from .eam import AssetQuery, EamRecords, normalise_assetnum, parse_datetime, records_for_second_face, xsd_sequence

OSLC_ROOT = "/maximo/oslc"
MAX_IDS = 100
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
REASON_CODE = "BMXAA7901E"

# `and` between clauses, but not inside a quoted literal (an even number of quotes follows).
_CLAUSE_SEPARATOR = re.compile(r'\s+and\s+(?=(?:[^"]*"[^"]*")*[^"]*$)', re.IGNORECASE)
_ASSETNUM_IN = re.compile(r"assetnum\s+in\s+(\[.*\])", re.IGNORECASE | re.DOTALL)
_CHANGEDATE_FROM = re.compile(r'changedate\s*>=\s*"([^"]*)"', re.IGNORECASE)
_SITEID_IS = re.compile(r'siteid\s*=\s*"([^"]*)"', re.IGNORECASE)


class OslcQueryError(ValueError):
    """A query the OSLC API refuses with HTTP 400."""


def oslc_error(status: int, message: str) -> JSONResponse:
    """Maximo's error body: `{"Error": {"message", "statusCode", "reasonCode"}}`."""
    body = {"message": f"{REASON_CODE} - {message}", "statusCode": str(status), "reasonCode": REASON_CODE}
    return JSONResponse({"Error": body}, status_code=status)


def _asset_list(literal: str) -> list[str]:
    try:
        ids = json.loads(literal)
    except (ValueError, RecursionError):
        raise OslcQueryError(f"cannot read the list {literal!r}: use [\"A\",\"B\"]") from None
    if not all(isinstance(i, str) for i in ids):
        raise OslcQueryError(f"assetnum in [...] takes quoted strings, got {literal!r}")
    if not 1 <= len(ids) <= MAX_IDS:
        raise OslcQueryError(f"assetnum in [...] takes 1 to {MAX_IDS} values, got {len(ids)}")
    return list(dict.fromkeys(normalise_assetnum(i) for i in ids))


def parse_where(text: str | None) -> AssetQuery:
    """`assetnum in ["A","B"]`, optionally `and siteid="S"` and `and changedate>="ISO"`, in any order;
    without the assets, `siteid` and `changedate` ask for the site's changes."""
    if text is None or not text.strip():
        raise OslcQueryError('oslc.where must name the assets: assetnum in ["..."]')
    assetnums: list[str] | None = None
    changedsince: datetime | None = None
    siteid: str | None = None
    seen_changedate = seen_siteid = False
    for clause in _CLAUSE_SEPARATOR.split(text.strip()):
        clause = clause.strip()
        if (match := _ASSETNUM_IN.fullmatch(clause)) and assetnums is None:
            assetnums = _asset_list(match.group(1))
        elif (match := _SITEID_IS.fullmatch(clause)) and not seen_siteid:
            seen_siteid = True
            siteid = normalise_assetnum(match.group(1)) or None
        elif (match := _CHANGEDATE_FROM.fullmatch(clause)) and not seen_changedate:
            seen_changedate = True
            try:
                changedsince = parse_datetime(match.group(1))
            except ValueError:
                raise OslcQueryError(f"changedate needs an ISO 8601 date and time, got {match.group(1)!r}") from None
        else:
            raise OslcQueryError(f"cannot read the where clause {clause!r}")
    if assetnums is None and (siteid is None or changedsince is None):
        raise OslcQueryError('oslc.where must name the assets (assetnum in ["..."]), or a siteid and a changedate')
    return AssetQuery(assetnums or [], siteid, changedsince)


def parse_select(text: str | None, attributes: tuple[str, ...]) -> tuple[str, ...]:
    """Selected attributes in the object structure's order; none without `oslc.select`, all for `*`."""
    if text is None:
        return ()
    names = {name.strip().lower() for name in text.split(",") if name.strip()}
    if "*" in names:
        return attributes
    unknown = sorted(names - set(attributes))
    if unknown:
        raise OslcQueryError(f"oslc.select names attributes this object structure does not have: {unknown}")
    return tuple(name for name in attributes if name in names)


def bounded_int(raw: str | None, name: str, default: int, maximum: int | None = None) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise OslcQueryError(f"{name} must be a whole number, got {raw!r}") from None
    if value < 1 or (maximum is not None and value > maximum):
        limit = f"1 to {maximum}" if maximum is not None else "at least 1"
        raise OslcQueryError(f"{name} must be {limit}, got {value}")
    return value


def resource_id(key: Any) -> str:
    """Maximo-style resource id: `_` and the base64 of the record's key, padding as `-`."""
    return "_" + base64.b64encode(str(key).encode("utf-8")).decode("ascii").replace("=", "-")


def rowstamp(record: dict) -> str:
    """Stable while the record is unchanged, different once it changes, as a Maximo rowstamp is."""
    return str(zlib.crc32(json.dumps(record, sort_keys=True, ensure_ascii=False).encode("utf-8")))


@dataclass(frozen=True)
class ObjectStructure:
    """One OSLC object structure: its name, key attribute, attributes and record lookup."""

    name: str
    key: str
    xsd_type: str
    fetch: Callable[[EamRecords, AssetQuery], list[dict]]

    @property
    def attributes(self) -> tuple[str, ...]:
        return xsd_sequence(self.xsd_type)


OBJECT_STRUCTURES = (
    ObjectStructure("mxasset", "assetnum", "Asset", EamRecords.assets),
    ObjectStructure("mxwo", "wonum", "WorkOrder", EamRecords.workorders),
)


class EamOslcSystem(MockSystem):
    """The EAM as Maximo OSLC: object structures `mxasset` and `mxwo` under `/maximo/oslc/os`."""

    name = "eam_oslc"
    url_path = OSLC_ROOT

    def load_fixtures(self) -> None:
        # The SOAP face started just before on the same fixtures (as `start_systems` does) shares
        # its records, so changes made through its admin surface are served here too.
        self.records = records_for_second_face(self.fixtures_dir)

    def clear_state(self) -> None:
        self.records.reset()

    def collection(self, structure: ObjectStructure, request: Request) -> JSONResponse:
        """One page of an object structure's members for this request's query."""
        params = request.query_params
        try:
            where = parse_where(params.get("oslc.where"))
            selected = parse_select(params.get("oslc.select"), structure.attributes)
            page_size = bounded_int(params.get("oslc.pageSize"), "oslc.pageSize", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
            page_number = bounded_int(params.get("pageno"), "pageno", 1)
        except OslcQueryError as exc:
            return oslc_error(400, str(exc))
        records = structure.fetch(self.records, where)
        collection_href = f"{str(request.base_url).rstrip('/')}{OSLC_ROOT}/os/{structure.name}"
        members = []
        for record in records[(page_number - 1) * page_size : page_number * page_size]:
            member = {name: record[name] for name in selected if record.get(name) is not None}
            member["href"] = f"{collection_href}/{resource_id(record.get(structure.key, ''))}"
            member["_rowstamp"] = rowstamp(record)
            members.append(member)
        info: dict[str, Any] = {"href": str(request.url), "pagenum": page_number, "totalCount": len(records)}
        if page_number * page_size < len(records):
            info["nextPage"] = {"href": str(request.url.include_query_params(pageno=page_number + 1))}
        return JSONResponse({"member": members, "responseInfo": info})

    def add_routes(self, app: FastAPI) -> None:
        for structure in OBJECT_STRUCTURES:
            self._add_collection_route(app, structure)
        from .eam_maximo import MaximoApi  # it builds on this module's query helpers

        MaximoApi(self.records).add_routes(app)

    def _add_collection_route(self, app: FastAPI, structure: ObjectStructure) -> None:
        @app.get(f"{OSLC_ROOT}/os/{structure.name}")
        async def serve_collection(request: Request) -> JSONResponse:
            return self.collection(structure, request)
