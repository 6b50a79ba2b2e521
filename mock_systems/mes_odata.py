"""MES mock, second flavor: the same materials as an SAP OData v2 entity set.

A site whose MES is reached through an SAP Gateway service still has the same plant behind it,
so this face answers from the B2MML mock's `MesMaterials`. The format is what differs: one row
per parameter of a material, SAP unit codes, `/Date(ms)/` dates with `PT..H..M..S` times, and
server-driven paging through `__next`.

Two things are deliberately not a copy of the B2MML answer, so a client has to do real work:

- temperatures in °C are served in °F (`FAH`) and pressures in MPa in kPa (`KPA`), converted
  exactly with Decimal; every other unit keeps its value and gets its SAP code;
- each material carries a change stamp (the B2MML flavor has none), derived from the
  material's position i in `materials.json`: `ChangedOn` 2026-11-01 + i days, `ChangedAt`
  PT{8 + i mod 9}H{7i mod 60}M{13i mod 60}S, plant local time.

Values that are not numbers and units without an SAP code are served as stored, and a
parameter without a `DataType` keeps lacking one, so malformed records stay malformed.

The same service has `WorkshopDefectRateSet`: one row per site (`Plant`), workshop and month
(`CalMonth`, SAP's `YYYYMM`), the rate as Edm.Decimal text, the units inspected, and the change
stamp from the quality record's `LastUpdated` (`ChangedOn` + `ChangedAt`, plant local). It is
filtered by `Plant eq '..'` and paged like `MaterialParameterSet`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from .base import PLANT_TZ, MockSystem
from .mes import MesMaterials, MesQuality

SERVICE_ROOT = "/sap/opu/odata/sap/ZMES_PROCESS_SRV"
ENTITY_SET = "MaterialParameterSet"
ENTITY_TYPE = "ZMES_PROCESS_SRV.MaterialParameter"
RATE_SET = "WorkshopDefectRateSet"
RATE_TYPE = "ZMES_PROCESS_SRV.WorkshopDefectRate"
MAX_MATERIALS = 40
MAX_TOP = 200
FIRST_CHANGE_DAY = date(2026, 11, 1)
EPOCH = date(1970, 1, 1)
QUERY_OPTIONS = {"$filter", "$format", "$top", "$skip", "$inlinecount"}
INVALID_FILTER = "ZMES/INVALID_FILTER"  # codes of the OData error body
INVALID_OPTION = "ZMES/INVALID_OPTION"

SAP_UNITS = {
    "Cel": "CEL",
    "degF": "FAH",
    "K": "KEL",
    "MPa": "MPA",
    "kPa": "KPA",
    "bar": "BAR",
    "psi": "PSI",
    "%": "P1",
    "ppm": "PPM",
    None: "",
}
# B2MML unit -> (SAP unit served instead, exact conversion of the value)
CONVERSIONS: dict[str, tuple[str, Callable[[Decimal], Decimal]]] = {
    "Cel": ("FAH", lambda celsius: celsius * Decimal("1.8") + 32),
    "MPa": ("KPA", lambda megapascal: megapascal * 1000),
}

_LITERAL = r"'(?:[^']|'')*'"
_FILTER = re.compile(rf"Material\s+eq\s+{_LITERAL}(?:\s+or\s+Material\s+eq\s+{_LITERAL})*")
_LITERAL_TEXT = re.compile(r"'((?:[^']|'')*)'")
_PLANT_FILTER = re.compile(rf"Plant\s+eq\s+({_LITERAL})")


class ODataQueryError(ValueError):
    """A query the service refuses with HTTP 400; `code` goes into the OData error body."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def odata_error(status: int, code: str, message: str) -> JSONResponse:
    """The OData v2 error body: `{"error": {"code", "message": {"lang", "value"}}}`."""
    return JSONResponse({"error": {"code": code, "message": {"lang": "en", "value": message}}}, status_code=status)


def parse_filter(text: str | None) -> list[str]:
    """Material names (trimmed, each once, in order) of `Material eq '..' or Material eq '..'`."""
    if text is None or not _FILTER.fullmatch(text.strip()):
        raise ODataQueryError(INVALID_FILTER, f"$filter must be Material eq '...' joined by ' or ', got {text!r}")
    names = [literal.replace("''", "'") for literal in _LITERAL_TEXT.findall(text)]
    if len(names) > MAX_MATERIALS:
        raise ODataQueryError(INVALID_FILTER, f"$filter names at most {MAX_MATERIALS} materials, got {len(names)}")
    return list(dict.fromkeys(name.strip() for name in names))


def check_options(params, served: set[str]) -> None:
    """Refuse system query options the service does not serve, and any format but JSON."""
    unsupported = sorted(k for k in params if k.startswith("$") and k not in served)
    if unsupported:
        raise ODataQueryError(INVALID_OPTION, f"system query options not supported: {unsupported}")
    if params.get("$format", "json") != "json":
        raise ODataQueryError(INVALID_OPTION, "only $format=json is served")


def check_inlinecount(params) -> None:
    if params.get("$inlinecount", "none") not in {"allpages", "none"}:
        raise ODataQueryError(INVALID_OPTION, "$inlinecount must be allpages or none")


def count_option(raw: str | None, name: str, default: int, maximum: int | None = None) -> int:
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or (maximum is not None and int(raw) > maximum):
        limit = f"0 to {maximum}" if maximum is not None else "a whole number >= 0"
        raise ODataQueryError(INVALID_OPTION, f"{name} must be {limit}, got {raw!r}")
    return int(raw)


def _plain(number: Decimal) -> str:
    """A Decimal as a plain number without exponent or trailing zeros: 800.0 -> "800"."""
    text = format(number.normalize(), "f")
    return "0" if text == "-0" else text


def _value_and_unit(value: dict) -> tuple[Any, str | None]:
    """(ValueString, Unit) in this flavor's units; anything unconvertible is served as stored."""
    stored_value, stored_unit = value.get("ValueString"), value.get("UnitOfMeasure")
    if stored_unit in CONVERSIONS and isinstance(stored_value, str):
        sap_unit, convert = CONVERSIONS[stored_unit]
        try:
            number = Decimal(stored_value.strip())
        except InvalidOperation:
            number = None
        if number is not None and number.is_finite():
            return _plain(convert(number)), sap_unit
    return stored_value, SAP_UNITS.get(stored_unit, stored_unit)


def change_stamp(position: int) -> datetime:
    """When the parameters of the material at this position of materials.json last changed, in
    plant local time (the fixtures hold no change times; both SAP faces derive the same ones)."""
    day = FIRST_CHANGE_DAY + timedelta(days=position)
    at = time(8 + position % 9, 7 * position % 60, 13 * position % 60)
    return datetime.combine(day, at, tzinfo=PLANT_TZ)


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def sap_stamp(moment: datetime) -> dict[str, str]:
    """A plant-local moment as the service's change stamp: `ChangedOn` (the day) and `ChangedAt`."""
    local = moment.astimezone(PLANT_TZ)
    return {
        "ChangedOn": f"/Date({(local.date() - EPOCH).days * 86_400_000})/",
        "ChangedAt": f"PT{local.hour:02d}H{local.minute:02d}M{local.second:02d}S",
    }


def _rate_row(record: dict) -> dict:
    """A quality record as a `WorkshopDefectRateSet` row; unreadable values are served as stored."""
    row = {
        "Plant": record.get("SiteID"),
        "Workshop": record.get("WorkCenterID"),
        "CalMonth": str(record.get("Period", "")).replace("-", ""),
        "DefectRate": record.get("DefectRate"),
        "InspectedQty": record.get("QuantityInspected"),
    }
    try:
        row.update(sap_stamp(datetime.fromisoformat(str(record.get("LastUpdated")))))
    except ValueError:
        pass
    return {key: value for key, value in row.items() if value is not None}


class MesODataSystem(MockSystem):
    """The MES as SAP OData v2: `MaterialParameterSet` of service `ZMES_PROCESS_SRV`."""

    name = "mes_odata"
    url_path = SERVICE_ROOT

    def load_fixtures(self) -> None:
        self.materials = MesMaterials(self.fixtures_dir)
        self.quality = MesQuality(self.fixtures_dir)
        self._rows: dict[str, list[dict]] = {
            name: self._rows_of(material, position)
            for position, (name, material) in enumerate(self.materials.by_name.items())
        }

    @staticmethod
    def _rows_of(material: dict, position: int) -> list[dict]:
        """The material's parameters as entity rows (without `__metadata`, which needs the host)."""
        stamp = sap_stamp(change_stamp(position))
        rows = []
        for parameter in material.get("Parameter") or []:
            value = parameter.get("Value") or {}
            value_string, unit = _value_and_unit(value)
            row = {
                "Material": material["ID"],
                "ParameterId": parameter.get("ID"),
                "ValueString": value_string,
                "DataType": value.get("DataType"),
                "Unit": unit,
                **stamp,
            }
            rows.append({key: item for key, item in row.items() if item is not None})
        return rows

    def entity_set(self, request: Request) -> JSONResponse:
        params = request.query_params
        try:
            check_options(params, QUERY_OPTIONS)
            check_inlinecount(params)
            names = parse_filter(params.get("$filter"))
            top = count_option(params.get("$top"), "$top", MAX_TOP, MAX_TOP)
            skip = count_option(params.get("$skip"), "$skip", 0)
        except ODataQueryError as exc:
            return odata_error(400, exc.code, str(exc))
        rows = [row for name in names for row in self._rows.get(name, [])]
        return self._page(request, rows, ENTITY_SET, ENTITY_TYPE, ("Material", "ParameterId"), top, skip)

    def rate_set(self, request: Request) -> JSONResponse:
        params = request.query_params
        try:
            check_options(params, QUERY_OPTIONS)
            check_inlinecount(params)
            match = _PLANT_FILTER.fullmatch((params.get("$filter") or "").strip())
            if match is None:
                raise ODataQueryError(INVALID_FILTER, f"$filter must be Plant eq '...', got {params.get('$filter')!r}")
            top = count_option(params.get("$top"), "$top", MAX_TOP, MAX_TOP)
            skip = count_option(params.get("$skip"), "$skip", 0)
        except ODataQueryError as exc:
            return odata_error(400, exc.code, str(exc))
        rows = [_rate_row(record) for record in self.quality.of_site(match.group(1)[1:-1].replace("''", "'"))]
        return self._page(request, rows, RATE_SET, RATE_TYPE, ("Plant", "Workshop", "CalMonth"), top, skip)

    @staticmethod
    def _page(request: Request, rows: list[dict], entity_set: str, entity_type: str, keys: tuple[str, ...],
              top: int, skip: int) -> JSONResponse:
        """One page of an entity set's rows, each with its `__metadata`, and the link to the next."""
        params = request.query_params
        service = f"{str(request.base_url).rstrip('/')}{SERVICE_ROOT}"
        results = []
        for row in rows[skip : skip + top]:
            key = ",".join(f"{name}={literal(str(row.get(name, '')))}" for name in keys)
            uri = f"{service}/{entity_set}({key})"
            results.append({"__metadata": {"id": uri, "uri": uri, "type": entity_type}, **row})
        body: dict[str, Any] = {"results": results}
        if params.get("$inlinecount") == "allpages":
            body["__count"] = str(len(rows))
        if top > 0 and skip + top < len(rows):
            body["__next"] = str(request.url.include_query_params(**{"$skip": skip + top}))
        return JSONResponse({"d": body})

    def add_routes(self, app: FastAPI) -> None:
        @app.get(f"{SERVICE_ROOT}/{ENTITY_SET}")
        async def material_parameters(request: Request) -> JSONResponse:
            return self.entity_set(request)

        @app.get(f"{SERVICE_ROOT}/{RATE_SET}")
        async def workshop_defect_rates(request: Request) -> JSONResponse:
            return self.rate_set(request)

        from .mes_s4 import S4Services  # it builds on this module's OData helpers

        S4Services(self.materials, self.quality).add_routes(app)
