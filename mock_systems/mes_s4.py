"""MES, SAP S/4HANA's standard OData v2 services: batch characteristic values and their catalogue.

`ZMES_PROCESS_SRV` (mes_odata.py) is a custom service made for the hub: one row per parameter,
its value as text beside its data type. A plant that keeps process parameters as batch
classification in S/4HANA serves them through two standard services instead, and a client has
to join them, because only the catalogue knows a characteristic's data type:

- `API_CLFN_CHARACTERISTIC_SRV/A_ClfnCharacteristicForKeyDate`: one characteristic per
  parameter ID (`Characteristic`), its `CharcInternalID`, `CharcDataType` (`NUM`, `CHAR`),
  length, decimals and default unit;
- `API_BATCH_SRV/A_BatchCharcValue`: one value per parameter of a material's batch, keyed by
  `CharcInternalID`, the value in `CharcValue` (CHAR) or in `CharcFromNumericValue` as SAP's
  float text (`"-1.36E2"`) with `CharcFromNumericValueUnit` (NUM), unconverted, in the SAP code of
  the stored unit.

Everything is derived from `fixtures/mes/materials.json`: material i has the one batch
`str(i + 1).zfill(10)`; characteristic n (from 0, by first appearance of its parameter ID) has
the internal ID `str(801 + n).zfill(10)`. A value the catalogue says is numeric but that is not (环氧乙烷's
`OPERATING_PRESSURE` has no `DataType`) is served as text in `CharcValue` with no numeric value,
so malformed stays malformed.

Quality comes from an analytical CDS query published as OData v2,
`C_INSPLOTDEFECTRATEQ_CDS/C_InspLotDefectRateQResults`: one row per plant, work center and
calendar month (`CalendarYearMonth`, `YYYYMM`), with the inspected and defective quantities and
the defect rate as Edm.Decimal text. The work center's code (`WorkCenter`) is derived from its
position in the site's rows of `fixtures/mes/quality.json`; its description (`WorkCenterText`)
is the workshop's name. An analytical query carries no change stamp.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from .base import PLANT_TZ
from .mes import MesMaterials, MesQuality
from .mes_odata import (
    FIRST_CHANGE_DAY,
    INVALID_FILTER,
    INVALID_OPTION,
    MAX_TOP,
    SAP_UNITS,
    ODataQueryError,
    change_stamp,
    check_inlinecount,
    check_options,
    count_option,
    literal,
    odata_error,
)

ODATA_ROOT = "/sap/opu/odata/sap"
MAX_TERMS = 40
NOT_FOUND = "/IWBEP/CM_MGW_RT/020"  # SAP Gateway's "resource not found"
DATA_TYPES = {"double": "NUM", "string": "CHAR"}
QUERY_OPTIONS = {"$filter", "$format", "$top", "$skip", "$inlinecount", "$select"}

_LITERAL = r"'(?:[^']|'')*'"
_TERM = re.compile(rf"\s*(\w+)\s+eq\s+({_LITERAL})\s*")
_KEY = re.compile(rf"(?:(\w+)=)?({_LITERAL})")
_RESOURCE = re.compile(r"(\w+)(?:\((.*)\))?")


def sap_date(moment: datetime) -> str:
    """Edm.DateTimeOffset as SAP's OData v2 JSON writes it: `/Date(<ms since epoch>+0000)/`."""
    return f"/Date({int(moment.timestamp() * 1000)}+0000)/"


def sap_float(number: Decimal) -> str:
    """A number as ABAP writes a float: one digit, the rest of the digits, `E` and the exponent
    (`-136` -> `"-1.36E2"`, `0.8` -> `"8.0E-1"`, `20231229` -> `"2.0231229E7"`)."""
    if number.is_zero():
        return "0.0E0"
    sign, digits, exponent = number.normalize().as_tuple()
    text = "".join(map(str, digits))
    return f"{'-' if sign else ''}{text[0]}.{text[1:] or '0'}E{len(text) - 1 + exponent}"


def _unquote(text: str) -> str:
    return text[1:-1].replace("''", "'")


@dataclass(frozen=True)
class EntitySet:
    """One entity set: its entity type, key properties, all properties in order, its rows."""

    service: str
    name: str
    type_name: str
    keys: tuple[str, ...]
    properties: tuple[str, ...]
    filterable: frozenset[str]

    def key_predicate(self, row: dict) -> str:
        if len(self.keys) == 1:
            return f"({literal(str(row[self.keys[0]]))})"
        return "(" + ",".join(f"{k}={literal(str(row[k]))}" for k in self.keys) + ")"


def parse_filter(text: str | None, entity_set: EntitySet) -> list[tuple[str, str]]:
    """(property, value) terms of `P eq 'v' or P eq 'v' ...`; none without `$filter`."""
    if text is None:
        return []
    terms = []
    for raw in re.split(r"\s+or\s+(?=(?:[^']*'[^']*')*[^']*$)", text.strip()):
        match = _TERM.fullmatch(raw)
        if match is None or match.group(1) not in entity_set.filterable:
            allowed = ", ".join(sorted(entity_set.filterable))
            raise ODataQueryError(INVALID_FILTER, f"$filter takes <property> eq '...' joined by ' or ' ({allowed}), got {raw!r}")
        terms.append((match.group(1), _unquote(match.group(2))))
    if len(terms) > MAX_TERMS:
        raise ODataQueryError(INVALID_FILTER, f"$filter takes at most {MAX_TERMS} terms, got {len(terms)}")
    return terms


def parse_key(text: str, entity_set: EntitySet) -> dict[str, str]:
    """`('v')` or `(K1='v1',K2='v2')` as {key: value}; every key, each once."""
    parts = re.split(r",(?=(?:[^']*'[^']*')*[^']*$)", text) if text else []
    found: dict[str, str] = {}
    for part in parts:
        match = _KEY.fullmatch(part.strip())
        if match is None:
            raise ODataQueryError(INVALID_FILTER, f"cannot read the key predicate ({text})")
        name = match.group(1) or (entity_set.keys[0] if len(entity_set.keys) == 1 else "")
        found[name] = _unquote(match.group(2))
    if set(found) != set(entity_set.keys):
        raise ODataQueryError(INVALID_FILTER, f"{entity_set.name} is keyed by {', '.join(entity_set.keys)}")
    return found


CHARACTERISTICS = EntitySet(
    "API_CLFN_CHARACTERISTIC_SRV", "A_ClfnCharacteristicForKeyDate",
    "API_CLFN_CHARACTERISTIC_SRV.A_ClfnCharacteristicForKeyDateType", ("CharcInternalID",),
    ("CharcInternalID", "Characteristic", "CharcStatus", "CharcDataType", "CharcLength", "CharcDecimals",
     "CharcValueUnit", "MultipleValuesAreAllowed", "CharcLastChangedDateTime"),
    frozenset({"CharcInternalID", "Characteristic"}),
)
DEFECT_RATES = EntitySet(
    "C_INSPLOTDEFECTRATEQ_CDS", "C_InspLotDefectRateQResults", "C_INSPLOTDEFECTRATEQ_CDS.C_InspLotDefectRateQResult",
    ("ID",),
    ("ID", "Plant", "WorkCenter", "WorkCenterText", "CalendarYearMonth", "InspectedQuantity", "DefectiveQuantity",
     "QuantityUnit", "DefectRate"),
    frozenset({"Plant", "CalendarYearMonth"}),
)
BATCH_VALUES = EntitySet(
    "API_BATCH_SRV", "A_BatchCharcValue", "API_BATCH_SRV.A_BatchCharcValueType",
    ("Material", "BatchIdentifyingPlant", "Batch", "CharcInternalID", "CharcValuePositionNumber"),
    ("Material", "BatchIdentifyingPlant", "Batch", "CharcInternalID", "CharcValuePositionNumber",
     "CharcValueDependency", "CharcValue", "CharcFromNumericValue", "CharcFromNumericValueUnit",
     "CharcToNumericValue", "CharcToNumericValueUnit", "LastChangeDateTime"),
    frozenset({"Material", "Batch", "CharcInternalID"}),
)


def _number(value: dict) -> Decimal | None:
    """The stored value as a number, when it is typed as one and reads as one."""
    if value.get("DataType") != "double" or not isinstance(value.get("ValueString"), str):
        return None
    try:
        number = Decimal(value["ValueString"].strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _decimals(number: Decimal) -> int:
    return max(0, -number.normalize().as_tuple().exponent)


class ClassificationPlant:
    """The fixture materials as a characteristic catalogue and batch characteristic values."""

    def __init__(self, materials: MesMaterials):
        catalogue: dict[str, dict] = {}
        for material in materials.by_name.values():
            for parameter in material.get("Parameter") or []:
                value = parameter.get("Value") or {}
                entry = catalogue.setdefault(str(parameter.get("ID")), {"type": None, "unit": None, "decimals": 0, "length": 1})
                entry["type"] = entry["type"] or DATA_TYPES.get(value.get("DataType"))
                entry["unit"] = entry["unit"] or value.get("UnitOfMeasure")
                number = _number(value)
                if number is not None:
                    entry["decimals"] = max(entry["decimals"], _decimals(number))
                entry["length"] = max(entry["length"], len(str(value.get("ValueString") or "")))
        created = sap_date(datetime.combine(FIRST_CHANGE_DAY, datetime.min.time(), tzinfo=PLANT_TZ))
        self.characteristics = [
            {
                "CharcInternalID": str(801 + n).zfill(10), "Characteristic": name, "CharcStatus": "1",
                "CharcDataType": entry["type"] or "CHAR",
                "CharcLength": 15 if entry["type"] == "NUM" else entry["length"], "CharcDecimals": entry["decimals"],
                "CharcValueUnit": SAP_UNITS.get(entry["unit"], entry["unit"]) if entry["type"] == "NUM" else "",
                "MultipleValuesAreAllowed": False, "CharcLastChangedDateTime": created,
            }
            for n, (name, entry) in enumerate(catalogue.items())
        ]
        by_name = {c["Characteristic"]: c for c in self.characteristics}
        self.values = [
            self._value(material, position, parameter, by_name[str(parameter.get("ID"))])
            for position, material in enumerate(materials.by_name.values())
            for parameter in material.get("Parameter") or []
        ]

    @staticmethod
    def _value(material: dict, position: int, parameter: dict, characteristic: dict) -> dict:
        value = parameter.get("Value") or {}
        number = _number(value) if characteristic["CharcDataType"] == "NUM" else None
        unit = SAP_UNITS.get(value.get("UnitOfMeasure"), value.get("UnitOfMeasure")) if number is not None else ""
        return {
            "Material": material["ID"], "BatchIdentifyingPlant": "", "Batch": str(position + 1).zfill(10),
            "CharcInternalID": characteristic["CharcInternalID"], "CharcValuePositionNumber": "1",
            "CharcValueDependency": "1",
            "CharcValue": "" if number is not None else value.get("ValueString"),
            "CharcFromNumericValue": sap_float(number) if number is not None else None,
            "CharcFromNumericValueUnit": unit,
            "CharcToNumericValue": "0.0E0", "CharcToNumericValueUnit": "",
            "LastChangeDateTime": sap_date(change_stamp(position)),
        }

def _defect_rates(quality: MesQuality) -> list[dict]:
    """The quality records as the analytical query's rows; unreadable values are served as stored."""
    centers: dict[tuple[str, str], str] = {}
    rows = []
    for record in quality.rows:
        plant, workshop = str(record.get("SiteID", "")), str(record.get("WorkCenterID", ""))
        center = centers.setdefault(
            (plant, workshop), f"{plant[:4]}WC{1 + sum(1 for p, _ in centers if p == plant):02d}"
        )
        month = str(record.get("Period", "")).replace("-", "")
        inspected, rate = record.get("QuantityInspected"), record.get("DefectRate")
        try:
            defective = str(round(Decimal(str(rate)) * int(inspected)))
        except (InvalidOperation, TypeError, ValueError):
            defective = None
        rows.append({
            "ID": f"{plant}/{center}/{month}", "Plant": plant, "WorkCenter": center, "WorkCenterText": workshop,
            "CalendarYearMonth": month, "InspectedQuantity": None if inspected is None else str(inspected),
            "DefectiveQuantity": defective, "QuantityUnit": "EA", "DefectRate": rate,
        })
    return rows


class S4Services:
    """The routes of the standard services, added to the OData MES's server."""

    def __init__(self, materials: MesMaterials, quality: MesQuality):
        self.plant = ClassificationPlant(materials)
        self._rows = {
            CHARACTERISTICS: self.plant.characteristics, BATCH_VALUES: self.plant.values,
            DEFECT_RATES: _defect_rates(quality),
        }

    def rows(self, entity_set: EntitySet) -> list[dict]:
        return self._rows[entity_set]

    def answer(self, entity_set: EntitySet, keys: str | None, request: Request) -> JSONResponse:
        params = request.query_params
        try:
            check_options(params, QUERY_OPTIONS)
            selected = self._select(params.get("$select"), entity_set)
            service = f"{str(request.base_url).rstrip('/')}{ODATA_ROOT}/{entity_set.service}"
            if keys is not None:
                wanted = parse_key(keys, entity_set)
                found = [r for r in self.rows(entity_set) if all(str(r[k]) == v for k, v in wanted.items())]
                if not found:
                    return odata_error(404, NOT_FOUND, f"Resource not found for segment '{entity_set.name}({keys})'")
                return JSONResponse({"d": self._entity(entity_set, found[0], selected, service)})
            check_inlinecount(params)
            terms = parse_filter(params.get("$filter"), entity_set)
            top = count_option(params.get("$top"), "$top", MAX_TOP, MAX_TOP)
            skip = count_option(params.get("$skip"), "$skip", 0)
        except ODataQueryError as exc:
            return odata_error(400, exc.code, str(exc))
        rows = [r for r in self.rows(entity_set) if not terms or any(str(r[p]) == v for p, v in terms)]
        body: dict[str, Any] = {"results": [self._entity(entity_set, r, selected, service) for r in rows[skip : skip + top]]}
        if params.get("$inlinecount") == "allpages":
            body["__count"] = str(len(rows))
        if top > 0 and skip + top < len(rows):
            body["__next"] = str(request.url.include_query_params(**{"$skip": skip + top}))
        return JSONResponse({"d": body})

    @staticmethod
    def _select(text: str | None, entity_set: EntitySet) -> tuple[str, ...]:
        if text is None or text.strip() == "*":
            return entity_set.properties
        names = {name.strip() for name in text.split(",") if name.strip()}
        unknown = sorted(names - set(entity_set.properties))
        if unknown:
            raise ODataQueryError(INVALID_OPTION, f"$select names properties {entity_set.name} does not have: {unknown}")
        return tuple(p for p in entity_set.properties if p in names)

    @staticmethod
    def _entity(entity_set: EntitySet, row: dict, selected: tuple[str, ...], service: str) -> dict:
        uri = f"{service}/{entity_set.name}{entity_set.key_predicate(row)}"
        return {"__metadata": {"id": uri, "uri": uri, "type": entity_set.type_name}, **{p: row[p] for p in selected}}

    def add_routes(self, app: FastAPI) -> None:
        for entity_set in (CHARACTERISTICS, BATCH_VALUES, DEFECT_RATES):
            self._add_route(app, entity_set)

    def _add_route(self, app: FastAPI, entity_set: EntitySet) -> None:
        @app.get(f"{ODATA_ROOT}/{entity_set.service}/{{resource}}")
        async def serve(resource: str, request: Request) -> JSONResponse:
            match = _RESOURCE.fullmatch(resource)
            if match is None or match.group(1) != entity_set.name:
                return odata_error(404, NOT_FOUND, f"Resource not found for segment '{resource}'")
            return self.answer(entity_set, match.group(2), request)
