"""Reading and writing single values: the text, number and object steps every field type shares.

Problems are raised as `FieldError`, which the engine turns into a quarantine reason (inbound) or
an `OutboundError` (outbound); a helper here never decides which.
"""

from __future__ import annotations

import re
from collections.abc import Mapping as AnyMapping
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel

_INT_RE = re.compile(r"[+-]?[0-9]+")


class FieldError(Exception):
    """Problems with one field: (vendor path, or None for "the field's own path", message)."""

    def __init__(self, items: list[tuple[str | None, str]]):
        self.items = items
        super().__init__(items)


def fail(message: str) -> FieldError:
    return FieldError([(None, message)])


def type_name(value: Any) -> str:
    if isinstance(value, AnyMapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, bool):
        return "true/false"
    return type(value).__name__


def as_text(value: Any) -> str:
    """Vendor text, or a JSON number read as its text (riskLevel 3 is "3")."""
    if type(value) is str:
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise fail(f"expected text, found {type_name(value)}")
    return str(value)


def parse_int(text: str) -> int:
    stripped = text.strip()
    if not _INT_RE.fullmatch(stripped):
        raise fail(f"cannot parse {text!r} as a whole number")
    return int(stripped)


def parse_decimal(text: str) -> Decimal:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise fail(f"cannot parse {text!r} as a decimal number") from None
    if not value.is_finite():
        raise fail(f"cannot parse {text!r} as a decimal number")
    return value


def parse_object(value: Any) -> dict[str, Any]:
    if not isinstance(value, AnyMapping):
        raise fail(f"expected an object, found {type_name(value)}")
    return dict(value)


def decimal_renderer(places: int | None):
    """Decimal -> text with exactly ``places`` decimals; a value needing more is refused, never rounded."""
    quantum = Decimal(1).scaleb(-places) if places is not None else None

    def render(value: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
            raise fail(f"expected a decimal number, found {type_name(value)}")
        number = Decimal(value) if not isinstance(value, Decimal) else value
        if not number.is_finite():
            raise fail(f"{number} is not a finite number")
        if quantum is not None:
            exact = number.quantize(quantum)
            if exact != number:
                raise fail(f"{number} has more than {places} decimal places; round it before posting")
            number = exact
        return format(number, "f")

    return render


def render_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)) or value != int(value):
        raise fail(f"expected a whole number, found {value!r}")
    return int(value)


def render_str(value: Any) -> str:
    if isinstance(value, (AnyMapping, list, tuple, BaseModel)):
        raise fail(f"expected text, found {type_name(value)}")
    return value if type(value) is str else str(value)


def render_object(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, AnyMapping):
        return dict(value)
    raise fail(f"expected an object, found {type_name(value)}")
