"""Outbound structures beyond one value per path: where a value lands, what the writer supplies,
and items that must balance.

- A vendor path is element names joined by dots; a last part ``@name`` is an XML attribute of
  the element before it (``AmountInTransactionCurrency.@currencyCode``). An element holding
  both text and attributes is written ``{"#text": ..., "@name": ...}``, as XML-to-data tools
  write it; a JSON system never sees one unless its file asks for ``@``.
- ``from: $name`` reads a value of the message rather than of the canonical record: the
  outbox entry's idempotency key, the time it is sent. The writer supplies them per entry.
- ``items`` builds a list of objects from the one record; ``balance`` says the signed amounts
  in them must sum to zero, checked when the file is loaded (from the fields and constants
  each amount is made of) and again on every record (on the rendered amounts).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping as AnyMapping
from decimal import Decimal, InvalidOperation
from typing import Any

from hub.mappings.spec import BalanceSpec, FieldSpec

#: The values of a message a field may read with ``from: $name``.
MESSAGE_VALUES = {
    "idempotency_key": "the outbox entry's stable key: the ERP drops a repeat of it",
    "sent_at": "when this message is sent (a UTC date-time)",
}
TEXT = "#text"
MESSAGE_PREFIX = "$"


def message_value(source: str) -> str | None:
    """The message value a ``from`` names (``$sent_at`` -> ``sent_at``), or None for a canonical field."""
    return source[len(MESSAGE_PREFIX):] if source.startswith(MESSAGE_PREFIX) else None


def path_problem(target: str) -> str | None:
    """Why a vendor path cannot be built, or None."""
    parts = target.split(".")
    if any(not p for p in parts):
        return f"vendor path {target!r} has an empty part"
    for index, part in enumerate(parts):
        if any(c in part for c in "[]*"):
            return (f"vendor path {target!r} cannot be built: {part!r} is not an element name; "
                    "a list of objects is written with 'items' (one object per list entry)")
        if part.startswith("@") and (index != len(parts) - 1 or index == 0 or len(part) == 1):
            return f"vendor path {target!r} cannot be built: an attribute (@name) is the last part, after its element"
        if part == TEXT:
            return f"vendor path {target!r}: write the element's text at the element's own path, not {TEXT}"
    return None


def clashes(target: str, other: str) -> bool:
    """Whether two paths fill the same place; an element's attribute sits beside its text."""
    if target == other:
        return True
    shorter, longer = sorted((target, other), key=len)
    if not longer.startswith(shorter + "."):
        return False
    return not longer[len(shorter) + 1:].startswith("@")


def place(out: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    """Put value at path, making the objects on the way; an attribute keeps its element's text."""
    node = out
    for part in path[:-1]:
        inner = node.get(part)
        if not isinstance(inner, dict):
            inner = {} if inner is None else {TEXT: inner}
            node[part] = inner
        node = inner
    last = path[-1]
    if isinstance(node.get(last), dict) and not isinstance(value, (dict, list)):
        node[last][TEXT] = value
    else:
        node[last] = value


def _at(value: Any, path: str) -> Any:
    for part in path.split("."):
        value = value.get(part) if isinstance(value, AnyMapping) else None
    return value.get(TEXT) if isinstance(value, AnyMapping) else value


def imbalance(body: dict[str, Any], balance: BalanceSpec) -> str | None:
    """Why the built items do not balance, or None."""
    items = _at(body, balance.items)
    if not isinstance(items, list):
        return f"{balance.items} is not a list of items"
    total = Decimal(0)
    for index, item in enumerate(items):
        try:
            total += Decimal(str(_at(item, balance.amount)))
        except InvalidOperation:
            return f"{balance.items}[{index}].{balance.amount} is not a number"
    return None if total == 0 else f"items at {balance.items} do not balance: their amounts sum to {total}, not 0"


def _signed(spec: FieldSpec) -> tuple[str, Decimal] | None:
    """(canonical field or "", signed factor or constant) one item's amount is made of, or None."""
    if spec.has_const:
        try:
            return "", Decimal(str(spec.const))
        except InvalidOperation:
            return None
    if spec.from_ is None:
        return None
    return spec.from_, Decimal(-1 if spec.negate else 1)


def static_imbalance(items: list[dict[str, FieldSpec]], balance: BalanceSpec) -> str | None:
    """Why items built by these specs can never balance for every record, or None."""
    sums: Counter[str] = Counter()
    for index, item in enumerate(items):
        spec = item.get(balance.amount)
        signed = _signed(spec) if spec is not None else None
        if signed is None:
            return f"item {index + 1} has no amount at {balance.amount!r} made of one canonical field or a number"
        name, factor = signed
        sums[name] += factor
    off = {name: total for name, total in sums.items() if total != 0}
    if not off:
        return None
    terms = ", ".join(f"{name or 'constants'} sums to {total}" for name, total in sorted(off.items()))
    return f"the items' amounts do not balance: {terms} (a credit is written with 'negate: true')"
