"""A first flavor file drafted from a captured vendor reply (``hub mappings new``).

It guesses where the records are, lists every vendor field with a guessed type, and maps the
canonical fields whose vendor field is a likely match. What it cannot know stays a ``todo:``,
which `hub mappings validate` refuses, and every gate input is a ``todo`` whatever it matched:
only a person may decide where the gate's facts come from (or that they are unavailable).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping as AnyMapping
from datetime import datetime
from typing import Any

from hub.mappings.gate_inputs import GATE_INPUTS, UNAVAILABLE_VALUE
from hub.mappings.selector import at, guess
from hub.mappings.spec import KINDS
from hub.mappings.suggest import closest

_SAP_DATE = re.compile(r"\\?/Date\(-?\d+([+-]\d{4})?\)\\?/")
_COMPACT = re.compile(r"\d{14}")
_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")


def guessed_type(values: list[Any]) -> dict[str, Any]:
    """The field settings a column of sample values suggests: type and format."""
    present = [v for v in values if v not in (None, "")]
    if not present:
        return {}
    if all(isinstance(v, AnyMapping) for v in present):
        return {"type": "object"}
    if all(isinstance(v, list) for v in present):
        return {"type": "list"}
    texts = [str(v) for v in present]
    if all(_SAP_DATE.fullmatch(t) for t in texts):
        return {"type": "datetime", "format": "sap_date"}
    if all(_COMPACT.fullmatch(t) for t in texts):
        return {"type": "datetime", "format": "%Y%m%d%H%M%S", "timezone": "UTC"}
    if all(_iso_instant(t) for t in texts):
        return {"type": "datetime", "format": "iso"}
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) or _NUMBER.fullmatch(str(v)) for v in present):
        return {"type": "decimal"}
    return {}


def _iso_instant(text: str) -> bool:
    try:
        return datetime.fromisoformat(text).tzinfo is not None
    except ValueError:
        return False


def _columns(records: list[Any]) -> dict[str, list[Any]]:
    columns: dict[str, list[Any]] = {}
    for record in records[:200]:
        if isinstance(record, AnyMapping):
            for name, value in record.items():
                columns.setdefault(str(name), []).append(value)
    return columns


def _flow(settings: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k}: {json.dumps(v, ensure_ascii=False)}" for k, v in settings.items()) + "}"


def draft(system: str, kind: str, reply: Any) -> str:
    """The text of a draft flavor file for records of ``kind`` in a captured reply."""
    where = guess(reply)
    records = reply if where is None else at(reply, where) or []
    columns = _columns(records)
    model = KINDS[kind]
    lines = [
        f"# Draft flavor file for {system} {kind}, made from a captured reply by `hub mappings new`.",
        "# Every 'todo:' must be decided before `hub mappings validate` accepts the file; gate inputs",
        "# are always left to a person: map them from the vendor, or declare them 'unavailable' with the reason.",
        f"system: {system}",
        "version: 1",
        "inbound:",
        f"  {kind}:",
        "    fields:",
    ]
    for name, field in model.model_fields.items():
        match = closest(name, columns)
        if (kind, name) in GATE_INPUTS:
            hint = f"maybe from {match}; " if match else ""
            todo = f"gate input: {hint}map it from the vendor and check it"
            if (kind, name) in UNAVAILABLE_VALUE:
                todo += ", or declare it unavailable with the reason"
            lines.append(f"      {name}: {_flow({'todo': todo})}")
        elif match is not None:
            lines.append(f"      {name}: {_flow({'from': match, **guessed_type(columns[match])})}")
        elif field.is_required():
            lines.append(f"      {name}: {_flow({'todo': f'which vendor field gives {name}?'})}")
    lines.append("# Vendor fields in the sample, with the type they look like:")
    for column, values in columns.items():
        settings = guessed_type(values) or {"type": "str"}
        lines.append(f"#   {column}: {_flow(settings)}")
    lines += [
        "endpoint:",
        "  operations:",
        "    read:                          # todo: the request's path and query",
        "      requests:",
        "        - path: /todo",
        f"          records: {{{json.dumps(where) if where else 'todo'}: {kind}}}",
    ]
    return "\n".join(lines) + "\n"
