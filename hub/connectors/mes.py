"""MES process parameters, fetched in batches of distinct material names."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from hub.connectors.batching import distinct_batches
from hub.connectors.rest import RestClient


@dataclass
class MesReply:
    material_definitions: list[dict[str, Any]] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)


class MesClient:
    def __init__(self, rest: RestClient, batch_size: int):
        self.rest = rest
        self.batch_size = batch_size

    def parameters_for(self, material_names: Iterable[str]) -> MesReply:
        reply = MesReply()
        for batch in distinct_batches(material_names, self.batch_size):
            page = self.rest.request(
                "POST", "/api/v1/material-parameters/query", json={"MaterialDefinitionIDs": batch}
            )
            reply.material_definitions.extend(page.get("MaterialDefinition", []))
            reply.unknown.extend(page.get("UnknownIDs", []))
        return reply
