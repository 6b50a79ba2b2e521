"""Reductions over a child list of a vendor record: one value from many rows (``reduce:``).

Maximo keeps a work order's tag-locks as child rows, not as an attribute: "isolation is applied"
means "some row is applied and not removed". A row is kept when every ``where`` condition holds
and no ``unless`` condition does; a condition missing from a row never holds, so ``unless:
{removed: true}`` keeps a row that does not say it was removed (fail closed), where ``where:
{removed: false}`` would drop it.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping as AnyMapping
from typing import Any

from hub.mappings.spec import ReduceSpec
from hub.mappings.values import MISSING, FieldError, as_text, getter, is_empty, type_name

_TRUE = frozenset({"Y", "YES", "TRUE", "1"})
_FALSE = frozenset({"N", "NO", "FALSE", "0"})


def _holds(value: Any, wanted: Any) -> bool:
    """Whether a vendor value equals a condition's value (one of them, for a list)."""
    if isinstance(wanted, list):
        return any(_holds(value, one) for one in wanted)
    if value is MISSING or value is None or isinstance(value, (AnyMapping, list, tuple)):
        return False
    if isinstance(wanted, bool):
        if isinstance(value, bool):
            return value is wanted
        return str(value).strip().upper() in (_TRUE if wanted else _FALSE)
    return not isinstance(value, bool) and str(value).strip() == str(wanted)


def _condition(conditions: dict[str, Any]) -> Callable[[Any], list[bool]]:
    checks = tuple((getter(path), wanted) for path, wanted in conditions.items())
    return lambda row: [_holds(get(row), wanted) for get, wanted in checks]


def reducer(spec: ReduceSpec, order: Callable[[str], Any]) -> Callable[[Any], Any]:
    """record -> the reduced raw value (text, a vendor value, or ``empty``).

    ``order`` turns a value's text into what min/max compare (the field's parsed type).
    """
    get_rows, over = getter(spec.over), spec.over
    where, unless = _condition(spec.where), _condition(spec.unless)
    get_value = getter(spec.value) if spec.value is not None else None
    op, empty = spec.op, spec.empty

    def kept_rows(record: Any) -> list[Any] | None:
        rows = get_rows(record)
        if rows is MISSING or rows is None or rows == []:
            return None
        if not isinstance(rows, (list, tuple)):
            raise FieldError([(over, f"expected a list, found {type_name(rows)}")])
        problems = [(f"{over}[{i}]", f"expected an object, found {type_name(r)}")
                    for i, r in enumerate(rows) if not isinstance(r, AnyMapping)]
        if problems:
            raise FieldError(problems)
        return [row for row in rows if all(where(row)) and not any(unless(row))]

    def values(kept: list[Any]) -> list[Any]:
        assert get_value is not None  # checked at load
        return [value for row in kept if not is_empty(value := get_value(row))]

    def reduce(record: Any) -> Any:
        kept = kept_rows(record)
        if kept is None:
            return empty
        if op == "any":
            return "true" if kept else "false"
        if op == "all":
            rows = get_rows(record)
            return "true" if len(kept) == len(rows) else "false"
        if op == "count":
            return str(len(kept))
        found = values(kept)
        if not found:
            return empty
        if op == "first":
            return found[0]
        try:
            keyed = [(order(as_text(value)), value) for value in found]
        except FieldError as exc:
            raise FieldError([(f"{over}[*].{spec.value}", message) for _, message in exc.items]) from None
        pick = min if op == "min" else max
        return pick(keyed, key=lambda pair: pair[0])[1]

    return reduce
