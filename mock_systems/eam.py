"""EAM mock: Maximo-style asset maintenance over SOAP 1.1 document/literal, written with lxml.

No SOAP framework on the server side on purpose: the mock should answer exactly what
`eam.wsdl` declares, byte for byte in the order its XSD sequences give, and fail the way a
real SOAP stack does (HTTP 500 with a SOAP 1.1 Fault). The element order of `asset` and
`workorder` is read from the WSDL itself, so the two cannot drift apart.

Incoming XML is parsed with a hardened parser: no entity resolution, no network, no DTDs.

The plant can change while the mock runs: admin endpoints (`/_admin/workorders`,
`/_admin/assets/...`) open and change work orders and change assets, in memory (`/_admin/reset`
goes back to the fixtures). A changed work order gets `changedate` = now, so both faces'
changes-since queries see it; the OSLC face started with this one serves the same records.
"""

from __future__ import annotations

import bisect
import copy
import json
import threading
import weakref
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from lxml import etree

from .base import ADMIN_PREFIX, PLANT_TZ, MockSystem, error
from .fixtures import FixtureError, load_fixture
from .xmlsafe import hardened_parser

WSDL_PATH = Path(__file__).with_name("eam.wsdl")
TNS = "urn:plant:eam:maintenance:v1"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
XSD = "http://www.w3.org/2001/XMLSchema"
WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
WSDL_SOAP = "http://schemas.xmlsoap.org/wsdl/soap/"
SOAP_ACTION = f"{TNS}/GetAssetMaintenance"
MAX_ASSETS = 500
XML_CONTENT_TYPE = "text/xml; charset=utf-8"
# The `malformed` fault's body: the Body is never closed, so no XML parser accepts it.
MALFORMED_XML = (
    f'<?xml version="1.0" encoding="utf-8"?>\n<soap:Envelope xmlns:soap="{SOAP_ENV}"><soap:Body></soap:Envelope>'
).encode()


@cache
def xsd_sequence(type_name: str) -> tuple[str, ...]:
    """Element names of a complexType's sequence in eam.wsdl, in declared order."""
    tree = etree.parse(str(WSDL_PATH), hardened_parser())
    found = tree.xpath(
        "//xs:complexType[@name=$name]/xs:sequence/xs:element/@name", namespaces={"xs": XSD}, name=type_name
    )
    if not found:
        raise RuntimeError(f"eam.wsdl declares no complexType {type_name}")
    return tuple(str(name) for name in found)


class SoapClientError(ValueError):
    """A request the EAM refuses with a soap:Client Fault."""


def soap_fault(message: str, code: str = "soap:Client") -> Response:
    envelope = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"soap": SOAP_ENV})
    body = etree.SubElement(envelope, f"{{{SOAP_ENV}}}Body")
    fault = etree.SubElement(body, f"{{{SOAP_ENV}}}Fault")
    etree.SubElement(fault, "faultcode").text = code
    etree.SubElement(fault, "faultstring").text = message
    return Response(etree.tostring(envelope, xml_declaration=True, encoding="utf-8"), 500, media_type=XML_CONTENT_TYPE)


def normalise_assetnum(assetnum: Any) -> str:
    return str(assetnum).strip().upper()


def parse_datetime(text: str) -> datetime:
    """xs:dateTime; without an offset it is read as plant local time."""
    text = text.strip()
    if "T" not in text:
        raise ValueError(text)
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=PLANT_TZ)


@dataclass(frozen=True)
class AssetQuery:
    """What a request asks for: asset numbers (normalised, first occurrence order), an optional
    site (normalised; None is every site) and an optional change cutoff for work orders.

    No asset numbers, with a site and a cutoff, asks for everything of the site changed since:
    its changed assets and work orders (the feed a live gate watches)."""

    assetnums: list[str]
    siteid: str | None = None
    changedsince: datetime | None = None


def soap_payload(body: bytes, expected: str) -> etree._Element:
    """The one element in a SOAP 1.1 request's Body, which must be `expected` ({ns}name)."""
    try:
        root = etree.fromstring(body, hardened_parser())
    except etree.XMLSyntaxError as exc:
        raise SoapClientError(f"request is not well-formed XML: {exc}") from None
    if root.getroottree().docinfo.doctype:
        raise SoapClientError("DTDs are not allowed in requests")
    if root.tag != f"{{{SOAP_ENV}}}Envelope":
        raise SoapClientError(f"expected a SOAP 1.1 Envelope, got {root.tag}")
    soap_body = root.find(f"{{{SOAP_ENV}}}Body")
    if soap_body is None:
        raise SoapClientError("the Envelope has no Body")
    payload = [child for child in soap_body if isinstance(child.tag, str)]
    if len(payload) != 1 or payload[0].tag != expected:
        got = ", ".join(str(child.tag) for child in payload) or "nothing"
        raise SoapClientError(f"expected {expected} in the Body, got {got}")
    return payload[0]


def parse_request(body: bytes) -> AssetQuery:
    """The asset numbers, `siteid` and `changedsince` of a request."""
    request = soap_payload(body, f"{{{TNS}}}GetAssetMaintenanceRequest")
    assetnums: list[str] = []
    changedsince = siteid = None
    for element in request:
        if not isinstance(element.tag, str):
            continue
        if element.tag == f"{{{TNS}}}assetnum":
            assetnums.append(normalise_assetnum(element.text or ""))
        elif element.tag == f"{{{TNS}}}siteid":
            siteid = normalise_assetnum(element.text or "") or None
        elif element.tag == f"{{{TNS}}}changedsince":
            try:
                changedsince = parse_datetime(element.text or "")
            except ValueError:
                raise SoapClientError(f"changedsince is not an xs:dateTime: {element.text!r}") from None
        else:
            raise SoapClientError(f"unexpected element {element.tag} in GetAssetMaintenanceRequest")
    if not assetnums and (siteid is None or changedsince is None):
        raise SoapClientError("GetAssetMaintenanceRequest needs at least one assetnum, or siteid and changedsince")
    if len(assetnums) > MAX_ASSETS:
        raise SoapClientError(f"at most {MAX_ASSETS} assetnum per request, got {len(assetnums)}")
    return AssetQuery(list(dict.fromkeys(assetnums)), siteid, changedsince)


def _append_record(parent: etree._Element, tag: str, record: dict, fields: tuple[str, ...]) -> None:
    element = etree.SubElement(parent, f"{{{TNS}}}{tag}")
    for name in fields:
        value = record.get(name)
        if value is not None:
            etree.SubElement(element, f"{{{TNS}}}{name}").text = str(value)


def _changed_since(workorder: dict, since: datetime) -> bool:
    try:
        return parse_datetime(str(workorder.get("changedate", ""))) >= since
    except ValueError:
        return True  # an unreadable changedate is served, so the client can quarantine it


class EamRecords:
    """The fixture plant's assets and work orders, looked up by (site, normalised asset number).

    Two sites may reuse an asset number, as in Maximo (an asset is siteid + assetnum). Both faces
    of the EAM (SOAP here, OSLC in `eam_oslc.py`) answer from this one lookup, so they always
    serve the same plant.
    """

    def __init__(self, fixtures_dir: Path):
        self._fixture_assets = load_fixture(fixtures_dir, "eam/assets.json")
        for asset in self._fixture_assets:
            if not asset.get("assetnum"):
                raise FixtureError(f"eam/assets.json: asset without assetnum: {asset}")
        self._fixture_workorders = load_fixture(fixtures_dir, "eam/workorders.json")
        self._write_lock = threading.Lock()  # the two faces serve from different threads
        self.reset()

    def reset(self) -> None:
        """Back to the fixture records."""
        assets = {_asset_key(asset): copy.deepcopy(asset) for asset in self._fixture_assets}
        workorders: dict[tuple[str, str], list[dict]] = {}
        for workorder in self._fixture_workorders:
            workorders.setdefault(_asset_key(workorder), []).append(copy.deepcopy(workorder))
        for records in workorders.values():
            records.sort(key=lambda wo: str(wo.get("wonum", "")))
        # Changes replace whole records and lists rather than editing them, so a reader on the
        # other face's thread always iterates a consistent list.
        self._assets: dict[tuple[str, str], dict] = assets
        self._workorders: dict[tuple[str, str], list[dict]] = workorders
        # Assets carry no changedate of their own here; the change feed needs to know when each changed.
        self._asset_changed: dict[tuple[str, str], datetime] = {}
        # The change feed of each site, (changedate, wonum) in order, and where each work order is:
        # a feed query reads the tail since its cutoff, not every work order of the site.
        self._asset_of: dict[tuple[str, str], tuple[str, str]] = {}
        self._feed: dict[str, list[tuple[float, str]]] = {}
        for key, records in workorders.items():
            for workorder in records:
                self._asset_of[(key[0], str(workorder.get("wonum", "")))] = key
                self._feed.setdefault(key[0], []).append((_changed_at(workorder), str(workorder.get("wonum", ""))))
        for entries in self._feed.values():
            entries.sort()

    # -- changes (admin) --------------------------------------------------------------------
    def open_workorder(self, fields: dict) -> dict:
        """A new work order on an existing asset, `changedate` now; raises `RecordChangeError`."""
        unknown = sorted(set(fields) - set(WORKORDER_FIELDS))
        if unknown:
            raise RecordChangeError(400, f"fields a work order does not have or the EAM sets itself: {unknown}")
        missing = [name for name in WORKORDER_REQUIRED if not fields.get(name)]
        if missing:
            raise RecordChangeError(400, f"a work order needs {missing}")
        _check_values(fields)
        key = _asset_key(fields)
        with self._write_lock:
            if key not in self._assets:
                raise RecordChangeError(404, f"no asset {key[1]} at site {key[0]}")
            if self._find_workorder(key[0], str(fields["wonum"])) is not None:
                raise RecordChangeError(409, f"work order {fields['wonum']} already exists at site {key[0]}")
            values = {"isolationstate": "NONE", **fields, "changedate": _eam_now()}
            workorder = {name: values[name] for name in xsd_sequence("WorkOrder") if values.get(name) is not None}
            records = sorted([*self._workorders.get(key, []), workorder], key=lambda wo: str(wo.get("wonum", "")))
            self._workorders[key] = records
            self._asset_of[(key[0], str(workorder["wonum"]))] = key
            bisect.insort(self._feed.setdefault(key[0], []), (_changed_at(workorder), str(workorder["wonum"])))
        return workorder

    def change_workorder(self, siteid: str, wonum: str, changes: dict) -> dict:
        """Change fields of a work order (None removes an optional one), `changedate` now."""
        _check_changes(changes, WORKORDER_CHANGEABLE, WORKORDER_REQUIRED)
        with self._write_lock:
            found = self._find_workorder(normalise_assetnum(siteid), wonum)
            if found is None:
                raise RecordChangeError(404, f"no work order {wonum} at site {normalise_assetnum(siteid)}")
            key, index = found
            changed = _changed(self._workorders[key][index], changes)
            changed["changedate"] = _eam_now()
            records = list(self._workorders[key])
            records[index] = {name: changed[name] for name in xsd_sequence("WorkOrder") if changed.get(name) is not None}
            self._workorders[key] = records
            bisect.insort(self._feed.setdefault(key[0], []), (_changed_at(records[index]), wonum))
        return records[index]

    def change_asset(self, siteid: str, assetnum: str, changes: dict) -> dict:
        """Change fields of an asset (None removes an optional one). A query for assets by number
        always returns them; the site's change feed returns the asset from now on."""
        _check_changes(changes, ASSET_CHANGEABLE, ("status",))
        key = (normalise_assetnum(siteid), normalise_assetnum(assetnum))
        with self._write_lock:
            asset = self._assets.get(key)
            if asset is None:
                raise RecordChangeError(404, f"no asset {key[1]} at site {key[0]}")
            changed = _changed(asset, changes)
            self._assets[key] = {name: changed[name] for name in xsd_sequence("Asset") if changed.get(name) is not None}
            self._asset_changed[key] = datetime.now(timezone.utc)
        return self._assets[key]

    def _find_workorder(self, siteid: str, wonum: str) -> tuple[tuple[str, str], int] | None:
        key = self._asset_of.get((siteid, wonum))
        for index, workorder in enumerate(self._workorders.get(key, []) if key else []):
            if str(workorder.get("wonum", "")) == wonum:
                return key, index
        return None

    def _keys(self, query: AssetQuery) -> list[tuple[str, str]]:
        """The requested assets that exist, in request order, site by site."""
        sites = sorted({site for site, _ in self._assets}) if query.siteid is None else [query.siteid]
        return [(site, num) for num in query.assetnums for site in sites if (site, num) in self._assets]

    def assets(self, query: AssetQuery) -> list[dict]:
        """The requested assets; on the site's change feed, those changed at or after the cutoff."""
        if not query.assetnums:
            since = query.changedsince
            changed = list(self._asset_changed.items())
            keys = sorted(key for key, at in changed if key[0] == query.siteid and since is not None and at >= since)
        else:
            keys = self._keys(query)
        return [self._assets[key] for key in keys]

    def workorders(self, query: AssetQuery) -> list[dict]:
        """Work orders of the requested assets that exist, asset by asset, each by `wonum`.

        With `changedsince`, only those changed at or after it.
        """
        if not query.assetnums and query.changedsince is not None:
            return self._changed_workorders(str(query.siteid), query.changedsince)
        return [
            workorder
            for key in self._keys(query)
            for workorder in self._workorders.get(key, [])
            if query.changedsince is None or _changed_since(workorder, query.changedsince)
        ]

    def every_asset(self) -> list[dict]:
        """Every asset of the plant, by (site, asset number)."""
        return [self._assets[key] for key in sorted(self._assets)]

    def every_workorder(self) -> list[dict]:
        """Every work order of the plant, by (site, asset number, wonum)."""
        return [workorder for key in sorted(self._workorders) for workorder in self._workorders[key]]

    def asset(self, siteid: str, assetnum: str) -> dict | None:
        return self._assets.get((normalise_assetnum(siteid), normalise_assetnum(assetnum)))

    def asset_changed_at(self, siteid: str, assetnum: str) -> datetime | None:
        """When the asset was last changed through the admin surface (None: as the fixtures have it)."""
        return self._asset_changed.get((normalise_assetnum(siteid), normalise_assetnum(assetnum)))

    def workorder(self, siteid: str, wonum: str) -> dict | None:
        found = self._find_workorder(normalise_assetnum(siteid), wonum)
        return self._workorders[found[0]][found[1]] if found is not None else None

    def _changed_workorders(self, site: str, since: datetime) -> list[dict]:
        """The site's work orders changed at or after `since`, from the tail of its feed."""
        entries = list(self._feed.get(site, []))
        wonums = dict.fromkeys(wonum for _, wonum in entries[bisect.bisect_left(entries, (since.timestamp(), "")) :])
        found = [self._find_workorder(site, wonum) for wonum in wonums]
        return [
            workorder
            for key, index in sorted(f for f in found if f is not None)
            if _changed_since(workorder := self._workorders[key][index], since)
        ]


def _changed_at(workorder: dict) -> float:
    """A work order's changedate as a timestamp; one that does not parse sorts last (it is always served)."""
    try:
        return parse_datetime(str(workorder.get("changedate", ""))).timestamp()
    except ValueError:
        return float("inf")


def _asset_key(record: dict) -> tuple[str, str]:
    return normalise_assetnum(record.get("siteid", "")), normalise_assetnum(record.get("assetnum", ""))


class RecordChangeError(ValueError):
    """An admin change the EAM refuses, with the HTTP status to answer."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


WORKORDER_FIELDS = (
    "wonum", "assetnum", "siteid", "worktype", "status", "status_maxvalue",
    "reportdate", "schedstart", "schedfinish", "actfinish", "isolationstate",
)  # what a client gives; `changedate` is the EAM's
WORKORDER_REQUIRED = ("wonum", "assetnum", "siteid", "worktype", "status", "status_maxvalue")
WORKORDER_CHANGEABLE = ("status", "status_maxvalue", "isolationstate", "schedstart", "schedfinish", "actfinish")
ASSET_CHANGEABLE = ("status", "nextinspdate", "datasyncdate")
DATE_FIELDS = frozenset({"reportdate", "schedstart", "schedfinish", "actfinish", "nextinspdate", "datasyncdate"})


def _eam_now() -> str:
    return datetime.now(PLANT_TZ).replace(microsecond=0).isoformat()


def _check_values(fields: dict) -> None:
    for name, value in fields.items():
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip():
            raise RecordChangeError(400, f"{name} must be a non-empty string or null")
        if name in DATE_FIELDS:
            try:
                parsed = datetime.fromisoformat(value.strip()) if "T" in value else None
            except ValueError:
                parsed = None
            if parsed is None or parsed.tzinfo is None:
                raise RecordChangeError(400, f"{name} must be ISO 8601 with an offset, e.g. +08:00: {value!r}")


def _check_changes(changes: Any, changeable: tuple[str, ...], required: tuple[str, ...]) -> None:
    if not isinstance(changes, dict) or not changes:
        raise RecordChangeError(400, f"a change is a JSON object naming some of {list(changeable)}")
    unknown = sorted(set(changes) - set(changeable))
    if unknown:
        raise RecordChangeError(400, f"fields that cannot be changed here: {unknown}; changeable: {list(changeable)}")
    removed = [name for name in required if name in changes and changes[name] is None]
    if removed:
        raise RecordChangeError(400, f"{removed} cannot be removed")
    _check_values(changes)


def _changed(record: dict, changes: dict) -> dict:
    return {**record, **changes}


# The SOAP face's records, waiting for the OSLC face started next (as `start_systems` does) to
# serve the same plant. Weak, so records of a face that is gone are never handed out.
_RECORDS_FOR_SECOND_FACE: dict[Path, weakref.ref[EamRecords]] = {}
_SECOND_FACE_LOCK = threading.Lock()


def offer_to_second_face(fixtures_dir: Path, records: EamRecords) -> None:
    with _SECOND_FACE_LOCK:
        _RECORDS_FOR_SECOND_FACE[Path(fixtures_dir).resolve()] = weakref.ref(records)


def records_for_second_face(fixtures_dir: Path) -> EamRecords:
    """The records of the latest SOAP face on these fixtures not yet shared, or new ones."""
    with _SECOND_FACE_LOCK:
        offered = _RECORDS_FOR_SECOND_FACE.pop(Path(fixtures_dir).resolve(), None)
    records = offered() if offered is not None else None
    return records if records is not None else EamRecords(fixtures_dir)


class EamSystem(MockSystem):
    name = "eam"
    url_path = "/eam/soap"

    def load_fixtures(self) -> None:
        self.records = EamRecords(self.fixtures_dir)
        offer_to_second_face(self.fixtures_dir, self.records)

    def clear_state(self) -> None:
        self.records.reset()

    def malformed_response(self, path: str) -> Response:
        return Response(MALFORMED_XML, 200, media_type=XML_CONTENT_TYPE)

    def server_fault_response(self, message: str, path: str) -> Response:
        return soap_fault(message, "soap:Server")

    def answer(self, query: AssetQuery) -> bytes:
        envelope = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"soap": SOAP_ENV})
        body = etree.SubElement(envelope, f"{{{SOAP_ENV}}}Body")
        response = etree.SubElement(body, f"{{{TNS}}}GetAssetMaintenanceResponse", nsmap={None: TNS})
        for asset in self.records.assets(query):
            _append_record(response, "asset", asset, xsd_sequence("Asset"))
        for workorder in self.records.workorders(query):
            _append_record(response, "workorder", workorder, xsd_sequence("WorkOrder"))
        response.set("rsCount", str(len(response)))  # as Maximo's query services count their records
        return etree.tostring(envelope, xml_declaration=True, encoding="utf-8")

    def add_routes(self, app: FastAPI) -> None:
        self._add_change_routes(app)

        @app.post("/eam/soap")
        async def soap(request: Request) -> Response:
            try:
                query = parse_request(await request.body())
            except SoapClientError as exc:
                return soap_fault(str(exc))
            return Response(self.answer(query), media_type=XML_CONTENT_TYPE)

        @app.get("/eam/soap")
        async def wsdl(request: Request) -> Response:
            if "wsdl" not in {key.lower() for key in request.query_params}:
                return Response("POST SOAP 1.1 requests here; the WSDL is at ?wsdl\n", 405, media_type="text/plain")
            return Response(self.wsdl_for(str(request.url.replace(query=""))), media_type=XML_CONTENT_TYPE)

    def _add_change_routes(self, app: FastAPI) -> None:
        async def change(request: Request, apply: Any, status: int = 200) -> JSONResponse:
            try:
                body = json.loads(await request.body())
            except ValueError as exc:
                return error(400, f"body is not JSON: {exc}")
            try:
                return JSONResponse(apply(body), status_code=status)
            except RecordChangeError as exc:
                return error(exc.status, str(exc))

        @app.post(f"{ADMIN_PREFIX}/workorders")
        async def open_workorder(request: Request) -> JSONResponse:
            def apply(body: Any) -> dict:
                if not isinstance(body, dict):
                    raise RecordChangeError(400, "a work order is a JSON object")
                return self.records.open_workorder(body)

            return await change(request, apply, 201)

        @app.patch(f"{ADMIN_PREFIX}/workorders/{{siteid}}/{{wonum}}")
        async def change_workorder(siteid: str, wonum: str, request: Request) -> JSONResponse:
            return await change(request, lambda body: self.records.change_workorder(siteid, wonum, body))

        @app.patch(f"{ADMIN_PREFIX}/assets/{{siteid}}/{{assetnum}}")
        async def change_asset(siteid: str, assetnum: str, request: Request) -> JSONResponse:
            return await change(request, lambda body: self.records.change_asset(siteid, assetnum, body))

    def wsdl_for(self, address: str) -> bytes:
        """eam.wsdl with the service address pointing at this server."""
        tree = etree.parse(str(WSDL_PATH), hardened_parser())
        for element in tree.iter(f"{{{WSDL_SOAP}}}address"):
            element.set("location", address)
        return etree.tostring(tree, xml_declaration=True, encoding="utf-8")
