"""Filling an endpoint description's templates with the values an operation is run with.

A template that is exactly one placeholder takes its value as it is (a list of IDs, a body
object, a date); a placeholder inside text is replaced by the value's text. A query parameter
or body member whose value is not given is left out, so an optional filter such as
``updated_since`` is simply not sent; a path needs all of its values, each URL-quoted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from hub.connectors.endpoint import PLACEHOLDER, BatchSpec, whole_placeholder

MISSING: Any = object()  # a template whose value was not given

_ESCAPES = {
    "none": lambda text: text,
    "json": lambda text: json.dumps(text, ensure_ascii=False)[1:-1],  # inside a JSON string literal
    "odata": lambda text: text.replace("'", "''"),  # inside an OData string literal
}


def fill(template: Any, values: Mapping[str, Any]) -> Any:
    """The template with its placeholders filled; MISSING when a value it needs is not given."""
    if isinstance(template, str):
        whole = whole_placeholder(template)
        if whole is not None:
            value = values.get(whole)
            return MISSING if value is None else value
        names = PLACEHOLDER.findall(template)
        if any(values.get(name) is None for name in names):
            return MISSING
        return PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), template)
    if isinstance(template, dict):
        filled = {key: fill(value, values) for key, value in template.items()}
        return {key: value for key, value in filled.items() if value is not MISSING}
    if isinstance(template, list):
        return [value for value in (fill(item, values) for item in template) if value is not MISSING]
    return template


def fill_query(query: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, str | list[str]]:
    """Query parameters as text (a list repeats the parameter); those without a value are left out."""
    params: dict[str, str | list[str]] = {}
    for name, template in query.items():
        value = fill(template, values)
        if value is not MISSING:
            params[name] = [str(v) for v in value] if isinstance(value, list) else str(value)
    return params


def fill_path(path: str, values: Mapping[str, Any]) -> str:
    """The path with every placeholder replaced by its URL-quoted value; all must be given."""
    missing = [name for name in PLACEHOLDER.findall(path) if values.get(name) is None]
    if missing:
        raise ValueError(f"path {path!r} needs a value for {', '.join(missing)}")
    return PLACEHOLDER.sub(lambda m: quote(str(values[m.group(1)]), safe=""), path)


def batch_value(batch: BatchSpec, ids: Sequence[str]) -> str | list[str]:
    """What ``{ids}`` stands for: each ID escaped and written by ``item``, joined when ``join`` is set."""
    escape = _ESCAPES[batch.escape]
    items = [batch.item.replace("{id}", escape(identifier)) for identifier in ids]
    return items if batch.join is None else batch.join.join(items)
