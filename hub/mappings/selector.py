"""The records inside a vendor reply, found as the endpoint's requests say (``records:``).

A sample captured from a live system is the whole reply: Maximo wraps records in ``member``
next to ``responseInfo``, SAP OData v2 in ``d.results`` (or sends one entity as ``d`` alone), a
SOAP response carries them as child elements (parsed to ``{element: [rows]}`` first). Previews
and drafts read such replies as they are, rather than asking for the records cut out by hand.
"""

from __future__ import annotations

from collections.abc import Mapping as AnyMapping
from typing import Any

from hub.connectors.endpoint import EndpointSpec
from hub.mappings.values import MISSING, getter

#: OData v2's list wrapper: a single entity comes as the object that would hold it.
_ODATA_LIST = "results"


def at(reply: Any, where: str) -> list[Any] | None:
    """The records at a selector path; a lone OData entity (``d`` without ``results``) is one record."""
    found = getter(where)(reply) if isinstance(reply, AnyMapping) else MISSING
    if isinstance(found, list):
        return found
    parent, _, last = where.rpartition(".")
    if found is MISSING and last == _ODATA_LIST and parent:
        entity = getter(parent)(reply)
        if isinstance(entity, AnyMapping) and entity:
            return [entity]
    return None


def records_in(endpoint: EndpointSpec | None, reply: Any, kinds: tuple[str, ...]) -> dict[str, list[Any]]:
    """Records of the given kinds at every selector of the endpoint's requests that matches the reply."""
    out: dict[str, list[Any]] = {}
    if endpoint is None:
        return out
    for operation in endpoint.operations.values():
        for request in operation.requests:
            for where, kind in request.records.items():
                found = at(reply, where) if kind in kinds else None
                if found is not None and kind not in out:
                    out[kind] = found
    return out


def guess(reply: Any) -> str | None:
    """The likeliest selector of a reply's records: the first list of objects, depth first (None: a bare list)."""
    if isinstance(reply, list):
        return None
    if isinstance(reply, AnyMapping):
        for key in ("member", "rdfs:member", "d"):
            if key in reply:
                inner = reply[key]
                if isinstance(inner, list):
                    return key
                if isinstance(inner, AnyMapping):
                    return f"{key}.{_ODATA_LIST}" if key == "d" else guess_inner(inner, key)
        return guess_inner(reply, "")
    return None


def guess_inner(value: AnyMapping[str, Any], prefix: str) -> str | None:
    for key, inner in value.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(inner, list) and any(isinstance(i, AnyMapping) for i in inner):
            return path
        if isinstance(inner, AnyMapping):
            found = guess_inner(inner, path)
            if found is not None:
                return found
    return None
