"""MES mock: process parameters per material, ISA-95 / B2MML `MaterialDefinition` shape.

Serves `fixtures/mes/materials.json` as stored, malformed parameters included, so the hub's
quarantine path has something real to catch.
"""

from __future__ import annotations

import json

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from .base import MockSystem, error
from .fixtures import FixtureError, load_fixture

MAX_IDS = 200


class MesSystem(MockSystem):
    name = "mes"

    def load_fixtures(self) -> None:
        self._materials: dict[str, dict] = {}
        for material in load_fixture(self.fixtures_dir, "mes/materials.json"):
            if not isinstance(material.get("ID"), str):
                raise FixtureError(f"mes/materials.json: material without ID: {material}")
            self._materials[material["ID"].strip()] = material

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
            wanted = list(dict.fromkeys(i.strip() for i in ids))
            return JSONResponse(
                {
                    "MaterialDefinition": [self._materials[i] for i in wanted if i in self._materials],
                    "UnknownIDs": [i for i in wanted if i not in self._materials],
                }
            )

        @app.get("/api/v1/materials/{name}/parameters")
        async def one(name: str) -> JSONResponse:
            material = self._materials.get(name.strip())
            if material is None:
                return error(404, f"material {name} not found")
            return JSONResponse(material)
