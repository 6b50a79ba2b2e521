"""MES mock: process parameters per material, ISA-95 / B2MML `MaterialDefinition` shape, and
the monthly defect rate of each workshop (work center) from the quality records.

Serves `fixtures/mes/materials.json` and `fixtures/mes/quality.json` as stored, malformed
records included, so the hub's quarantine path has something real to catch.
"""

from __future__ import annotations

import json
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from .base import MockSystem, error
from .fixtures import FixtureError, load_fixture

MAX_IDS = 200


class MesMaterials:
    """The fixture plant's materials by trimmed name, in fixture order.

    Both faces of the MES (B2MML here, OData in `mes_odata.py`) answer from this one lookup.
    """

    def __init__(self, fixtures_dir: Path):
        self.by_name: dict[str, dict] = {}
        for material in load_fixture(fixtures_dir, "mes/materials.json"):
            if not isinstance(material.get("ID"), str):
                raise FixtureError(f"mes/materials.json: material without ID: {material}")
            self.by_name[material["ID"].strip()] = material

    def lookup(self, names: list[str]) -> tuple[list[dict], list[str]]:
        """(known materials, unknown names) for names matched after trimming, each once, in order."""
        wanted = list(dict.fromkeys(name.strip() for name in names))
        return [self.by_name[n] for n in wanted if n in self.by_name], [n for n in wanted if n not in self.by_name]


class MesQuality:
    """The plant's monthly defect rates by workshop, in fixture order; every MES face answers from it."""

    def __init__(self, fixtures_dir: Path):
        self.rows: list[dict] = load_fixture(fixtures_dir, "mes/quality.json")

    def of_site(self, site: str) -> list[dict]:
        """The rows of one site, matched after trimming and upper-casing."""
        wanted = site.strip().upper()
        return [row for row in self.rows if str(row.get("SiteID", "")).strip().upper() == wanted]


class MesSystem(MockSystem):
    name = "mes"

    def load_fixtures(self) -> None:
        self.materials = MesMaterials(self.fixtures_dir)
        self.quality = MesQuality(self.fixtures_dir)

    def add_routes(self, app: FastAPI) -> None:
        @app.post("/api/v1/material-parameters/query")
        async def query(request: Request) -> JSONResponse:
            try:
                body = json.loads(await request.body())
            except ValueError:
                return error(400, "body is not JSON")
            ids = body.get("MaterialDefinitionIDs") if isinstance(body, dict) else None
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                return error(400, "body needs MaterialDefinitionIDs: a list of material names")
            if not 1 <= len(ids) <= MAX_IDS:
                return error(400, f"MaterialDefinitionIDs must hold 1 to {MAX_IDS} names, got {len(ids)}")
            known, unknown = self.materials.lookup(ids)
            return JSONResponse({"MaterialDefinition": known, "UnknownIDs": unknown})

        @app.get("/api/v1/quality/defect-rates")
        async def defect_rates(request: Request) -> JSONResponse:
            site = request.query_params.get("siteId", "")
            if not site.strip():
                return error(400, "query needs siteId: the site whose work centers to list")
            return JSONResponse({"DefectRate": self.quality.of_site(site)})

        @app.get("/api/v1/materials/{name}/parameters")
        async def one(name: str) -> JSONResponse:
            material = self.materials.by_name.get(name.strip())
            if material is None:
                return error(404, f"material {name} not found")
            return JSONResponse(material)
