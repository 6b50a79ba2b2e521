"""Reading and writing single values: the text, number and object steps every field type shares.

Problems are raised as `FieldError`, which the engine turns into a quarantine reason (inbound) or
an `OutboundError` (outbound); a helper here never decides which.
"""

from __future__ import annotations

import re
from collections.abc import Callable
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


MISSING: Any = object()  # vendor path absent


def getter(path: str) -> Callable[[Any], Any]:
    """Reads a dotted vendor path; MISSING when any part is absent or not an object."""
    parts = tuple(path.split("."))
    if len(parts) == 1:
        (only,) = parts

        def get_one(record: Any) -> Any:
            return record.get(only, MISSING)

        return get_one

    def get_nested(record: Any) -> Any:
        current = record
        for part in parts:
            if not isinstance(current, AnyMapping):
                return MISSING
            current = current.get(part, MISSING)
            if current is MISSING:
                return MISSING
        return current

    return get_nested


def is_empty(value: Any) -> bool:
    return value is MISSING or value is None or (type(value) is str and not value.strip())


def emptiness(value: Any) -> str:
    if value is MISSING:
        return "missing"
    if value is None:
        return "is null"
    return "is empty"


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


# --------------------------------------------------------------------------- characters no store can hold

#: Characters XML 1.0 does not allow: C0 controls other than tab, LF and CR, lone surrogates,
#: U+FFFE and U+FFFF. zeep and lxml refuse them, and PostgreSQL refuses NUL in text and JSON,
#: so a value holding one must never get past the mapping layer.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def character_kind(char: str) -> str:
    code = ord(char)
    if code < 0x20:
        return "a control character"
    if 0xD800 <= code <= 0xDFFF:
        return "a lone surrogate"
    return "a non-character"


def describe_character(char: str) -> str:
    """E.g. "a control character U+0000"."""
    return f"{character_kind(char)} U+{ord(char):04X}"


def bad_character(text: str) -> str | None:
    """The first character of text that XML 1.0 does not allow, or None."""
    match = _NOT_XML.search(text)
    return match.group() if match else None


def find_bad_text(value: Any, path: str = "") -> tuple[str, str] | None:
    """(where, character) of the first text inside value, keys included, that XML 1.0 does not allow.

    ``where`` is relative to value: "" for value itself, "[0]" for a list element,
    ".name" for an object's entry.
    """
    if isinstance(value, str):
        char = bad_character(value)
        return (path, char) if char is not None else None
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if isinstance(value, AnyMapping):
        for key, item in value.items():
            name = key if isinstance(key, str) else str(key)
            char = bad_character(name)
            if char is not None:
                return (f"{path} (an entry name)", char)
            found = find_bad_text(item, f"{path}.{name}")
            if found is not None:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = find_bad_text(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def visible(text: str) -> str:
    """text with every character XML 1.0 does not allow written as the escape ``\\uXXXX``."""
    return _NOT_XML.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def storable(value: Any) -> tuple[Any, bool]:
    """A copy of plain data (objects, lists, text) with `visible` text and entry names, and
    whether anything had to change; other values are kept as they are."""
    if isinstance(value, str):
        shown = visible(value)
        return shown, shown != value
    if isinstance(value, AnyMapping):
        out: dict[Any, Any] = {}
        changed = False
        for key, item in value.items():
            new_key, key_changed = storable(key) if isinstance(key, str) else (key, False)
            new_item, item_changed = storable(item)
            out[new_key] = new_item
            changed = changed or key_changed or item_changed
        return out, changed
    if isinstance(value, (list, tuple)):
        items = [storable(item) for item in value]
        return [item for item, _ in items], any(changed for _, changed in items)
    return value, False
