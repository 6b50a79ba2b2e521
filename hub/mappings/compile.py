"""Turns checked field specs into small functions, so mapping a record is a few dict look-ups.

Compilation assumes the file passed `hub.mappings.checks`; it asserts rather than re-explains.
Field functions raise `FieldError` (the record goes to quarantine) or `Abort` (``unknown:
error``: the whole batch stops); they never decide which record they belong to.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from collections.abc import Mapping as AnyMapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from hub.mappings import dates, outbound, units
from hub.mappings.children import reducer
from hub.mappings.gate_inputs import UNAVAILABLE_VALUE
from hub.mappings.spec import KINDS, ConvertSpec, FieldSpec, SourceChoice, TableSpec
from hub.mappings.suggest import expected
from hub.mappings.values import (
    MISSING,
    FieldError,
    as_text,
    bad_character,
    describe_character,
    decimal_renderer,
    emptiness,
    fail,
    getter,
    is_empty,
    parse_decimal,
    parse_int,
    parse_object,
    render_int,
    render_object,
    render_str,
    type_name,
)


def _id(value: str) -> str:
    return value.strip().upper()


#: The only transforms a mapping file may name. Each takes and returns text.
TRANSFORMS: dict[str, Callable[[str], str]] = {
    "id": _id,  # strip + upper-case: device IDs, codes
    "strip": str.strip,
    "upper": str.upper,
    "lower": str.lower,
}

OMIT: Any = object()  # leave the canonical field out so the model's default applies
_UNLISTED: Any = object()  # a value the field's map does not list


class Abort(Exception):
    """A value that means the mapping itself is wrong (``unknown: error``): stop the batch."""

    def __init__(self, where: str | None, message: str):
        self.where, self.message = where, message
        super().__init__(message)


@dataclass
class RecordState:
    """What one vendor record has mapped to so far: later stages (unit conversion) read it.

    ``tables`` holds the rows of the requested look-up tables this mapping run was given.
    """

    data: dict[str, Any] = field(default_factory=dict)
    units: dict[str, str | None] = field(default_factory=dict)  # converted field -> its unit
    tables: AnyMapping[str, AnyMapping[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class WithUnit:
    """A converted value and the unit it ended up in."""

    value: Any
    unit: str | None


#: Field stages: plain fields first, then conversions (they read plain fields), then unit_of.
PLAIN, CONVERT, UNIT_OF = 0, 1, 2


@dataclass(frozen=True)
class InField:
    target: str  # canonical field
    source: str | None  # vendor path(s) for messages, None for const
    run: Callable[[Any, RecordState], Any]  # -> canonical value, WithUnit or OMIT; raises FieldError
    stage: int = PLAIN


@dataclass(frozen=True)
class OutField:
    path: tuple[str, ...]  # vendor path, split
    target: str  # vendor path as written
    source: str | None  # canonical field, None for const
    run: Callable[[Any, AnyMapping[str, Any]], Any]  # (canonical record, message values) -> vendor value; raises FieldError


def nested_model(annotation: Any) -> type[BaseModel] | None:
    """The record type inside a list-like annotation such as tuple[Reason, ...]."""
    for arg in typing.get_args(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
        inner = nested_model(arg)
        if inner is not None:
            return inner
    return None


def literal_values(annotation: Any) -> tuple[str, ...] | None:
    """The allowed values of a Literal[...] (or Optional[Literal[...]]) annotation."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return tuple(str(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        values: list[str] = []
        for arg in typing.get_args(annotation):
            if arg is type(None):
                continue
            inner = literal_values(arg)
            if inner is None:
                return None
            values.extend(inner)
        return tuple(values) or None
    return None


def _number(value: Any) -> Decimal | None:
    if isinstance(value, Decimal):
        return value
    try:
        number = Decimal(value.strip())
    except (InvalidOperation, AttributeError):
        return None
    return number if number.is_finite() else None


_KIND_OF = {model: kind for kind, model in KINDS.items()}
_SHAPES: dict[str, Callable[[Any], bool]] = {
    "text": lambda value: isinstance(value, (str, int, float, Decimal)) and not isinstance(value, bool),
    "object": lambda value: isinstance(value, AnyMapping),
    "list": lambda value: isinstance(value, (list, tuple)),
}


class Compiler:
    def __init__(self, zone: ZoneInfo | None, unit_aliases: dict[str, str], tables: dict[str, TableSpec] | None = None):
        self.zone = zone
        self.unit_aliases = unit_aliases  # vendor code -> hub unit name
        self.tables = tables or {}

    def _zone(self, spec: FieldSpec) -> ZoneInfo | None:
        """The field's own time zone, else the file's."""
        return ZoneInfo(spec.timezone) if spec.timezone else self.zone

    # inbound ------------------------------------------------------------------------

    def inbound_field(self, target: str, spec: FieldSpec, model: type[BaseModel]) -> InField:
        if spec.has_const:
            constant = spec.const
            return InField(target, None, lambda record, state: constant)
        if spec.unavailable is not None:
            unknown = UNAVAILABLE_VALUE[(_KIND_OF[model], target)]  # checked at load
            value = OMIT if unknown is None else unknown
            return InField(target, None, lambda record, state: value)
        read, source = self._reader(spec)
        if spec.has_default:
            on_empty = spec.default
        elif not model.model_fields[target].is_required():
            on_empty = OMIT
        else:
            on_empty = None
        if spec.value_type == "list":
            return InField(target, source, self._inbound_list(spec, model, target, read, source, on_empty))
        run = self._inbound_scalar(spec, read, on_empty)
        if spec.convert is not None:
            return InField(target, source, self._converting(spec.convert, spec.value_type, run), CONVERT)
        if spec.unit_of is not None:
            return InField(target, source, run, UNIT_OF)
        # A field whose source is chosen by other fields is mapped after them.
        return InField(target, source, run, CONVERT if spec.reads_fields else PLAIN)

    def _reader(self, spec: FieldSpec) -> tuple[Callable[[Any, RecordState], Any], str]:
        """(record, state) -> raw value or MISSING, and the vendor path(s) for messages."""
        if spec.unit_of is not None:
            converted = spec.unit_of
            return (lambda record, state: state.units.get(converted, MISSING)), f"unit of {converted}"
        if spec.concat is not None:
            parts = tuple((path, getter(path)) for path in spec.concat)
            separator = spec.separator

            def read_concat(record: Any, state: RecordState) -> Any:
                texts: list[str] = []
                problems: list[tuple[str | None, str]] = []
                for path, get in parts:
                    value = get(record)
                    if is_empty(value):
                        problems.append((path, emptiness(value)))
                        continue
                    try:
                        texts.append(as_text(value))
                    except FieldError as exc:
                        problems.extend((path, message) for _, message in exc.items)
                if not texts:
                    return MISSING
                if problems:
                    raise FieldError(problems)
                return separator.join(texts)

            return read_concat, ", ".join(spec.concat)
        if spec.first is not None:
            return self._first_reader(spec.first)
        if spec.reduce is not None:
            reduce = reducer(spec.reduce, self._parser(spec))
            return (lambda record, state: reduce(record)), f"{spec.reduce.over} ({spec.reduce.op})"
        assert spec.from_ is not None  # checked at load
        get = getter(spec.from_)
        return (lambda record, state: get(record)), spec.from_

    @staticmethod
    def _first_reader(choices: list[str | SourceChoice]) -> tuple[Callable[[Any, RecordState], Any], str]:
        """The first candidate whose condition holds and whose value is present, not empty and of
        its required shape."""
        candidates = []
        for choice in choices:
            path, shape, when = (choice, None, None) if isinstance(choice, str) else (choice.from_, choice.shape, choice.condition)
            candidates.append((getter(path), _SHAPES[shape] if shape else None, when))

        def read_first(record: Any, state: RecordState) -> Any:
            for get, fits, when in candidates:
                if when is not None and str(state.data.get(when[0])) != when[1]:
                    continue
                value = get(record)
                if not is_empty(value) and (fits is None or fits(value)):
                    return value
            return MISSING

        names = [c if isinstance(c, str) else c.from_ for c in choices]
        return read_first, " or ".join(names)

    def _table_lookup(self, spec: FieldSpec) -> Callable[[str, RecordState], str] | None:
        """text -> the table's value; a value the table lacks (or a table never loaded) quarantines."""
        if spec.lookup is None:
            return None
        name, table = spec.lookup, self.tables[spec.lookup]
        inline = dict(table.rows) if table.rows is not None else None
        origin = "inline" if inline is not None else f"from operation {table.operation}"

        def lookup(value: str, state: RecordState) -> str:
            rows = inline if inline is not None else state.tables.get(name)
            if rows is None:
                raise fail(f"look-up table {name} ({origin}) has not been loaded, so {value!r} cannot be looked up")
            found = rows.get(value)
            if found is None:
                raise fail(f"{value!r} is not in look-up table {name} ({origin}, {len(rows)} rows)")
            return found

        return lookup

    def _inbound_scalar(
        self, spec: FieldSpec, read: Callable[[Any, RecordState], Any], on_empty: Any
    ) -> Callable[[Any, RecordState], Any]:
        optional = spec.optional
        steps = tuple(TRANSFORMS[name] for name in spec.transform)
        table = self._table_lookup(spec)
        lookup = self._map_lookup(spec)
        parse = self._parser(spec)
        is_object = spec.value_type == "object"
        finish = self._finisher(spec, parse)

        def run(record: Any, state: RecordState) -> Any:
            value = read(record, state)
            if is_empty(value):
                if optional:
                    return on_empty
                raise fail(emptiness(value))
            if is_object:
                return parse(value)
            value = as_text(value)
            for step in steps:
                value = step(value)
            if table is not None:
                value = table(value, state)
            if lookup is not None:
                value = lookup(value)
                if value is _UNLISTED:
                    return spec.default
            return finish(value, record)

        return run

    def _finisher(self, spec: FieldSpec, parse: Callable[[Any], Any]) -> Callable[[str, Any], Any]:
        """(text, record) -> value: the type's parser, or a date completed by its time-of-day field."""
        time_of_day = spec.time_of_day
        if time_of_day is None:
            return lambda text, record: parse(text)
        zone = self._zone(spec)
        assert zone is not None  # checked at load
        read_date = dates.date_parser(spec.format or dates.ISO)
        read_time = dates.time_of_day_parser(time_of_day.format)
        get_time, time_path = getter(time_of_day.from_), time_of_day.from_

        def finish(date_text: str, record: Any) -> Any:
            day = read_date(date_text)
            time_value = get_time(record)
            if is_empty(time_value):
                raise FieldError([(time_path, emptiness(time_value))])
            try:
                time_text = as_text(time_value)
                since_midnight = read_time(time_text)
            except FieldError as exc:
                raise FieldError([(time_path, message) for _, message in exc.items]) from None
            naive = datetime(day.year, day.month, day.day) + since_midnight
            return dates.localize(naive, zone, f"{date_text} {time_text}")

        return finish

    def _map_lookup(self, spec: FieldSpec) -> Callable[[str], Any] | None:
        """text -> mapped text; an unlisted value quarantines, aborts, or gives _UNLISTED (use the default)."""
        if spec.map is None:
            return None
        table = dict(spec.map)
        allowed = ", ".join(table)
        on_unknown = spec.unknown or "quarantine"

        def lookup(value: str) -> Any:
            mapped = table.get(value, _UNLISTED)
            if mapped is not _UNLISTED or on_unknown == "default":
                return mapped
            char = bad_character(value)
            if char is not None:  # unreadable vendor data, not a value the mapping failed to foresee
                raise fail(f"contains {describe_character(char)}")
            if on_unknown == "error":
                raise Abort(None, f"unexpected value {value!r}; expected one of {allowed}")
            raise fail(f"unknown value {value!r}; expected one of {allowed}")

        return lookup

    def _inbound_list(
        self, spec: FieldSpec, model: type[BaseModel], target: str, read: Callable[[Any, RecordState], Any],
        source: str, on_empty: Any,
    ) -> Callable[[Any, RecordState], Any]:
        element = self._inbound_element(spec, model, target)
        optional, separator = spec.optional, spec.split

        def run_list(record: Any, state: RecordState) -> Any:
            value = read(record, state)
            if value is MISSING or value is None or (separator is not None and is_empty(value)):
                if optional:
                    return on_empty
                raise fail(emptiness(value))
            if separator is not None:
                value = [piece for piece in as_text(value).split(separator) if piece.strip()]
            elif not isinstance(value, (list, tuple)):
                raise fail(f"expected a list, found {type_name(value)}")
            out = []
            problems: list[tuple[str | None, str]] = []
            for index, item in enumerate(value):
                try:
                    out.append(element(item))
                except FieldError as exc:
                    problems.extend((f"{source}[{index}]" + (f".{sub}" if sub else ""), m) for sub, m in exc.items)
                except Abort as exc:
                    raise Abort(f"{source}[{index}]" + (f".{exc.where}" if exc.where else ""), exc.message) from None
            if problems:
                raise FieldError(problems)
            return out

        return run_list

    def _inbound_element(self, spec: FieldSpec, model: type[BaseModel], target: str) -> Callable[[Any], Any]:
        if spec.each_fields is not None:
            nested = nested_model(model.model_fields[target].annotation)
            assert nested is not None  # checked at load
            subs = tuple(self.inbound_field(name, sub, nested) for name, sub in spec.each_fields.items())

            def element_object(item: Any) -> dict[str, Any]:
                if not isinstance(item, AnyMapping):
                    raise fail(f"expected an object, found {type_name(item)}")
                out: dict[str, Any] = {}
                problems: list[tuple[str | None, str]] = []
                state = RecordState()
                for sub in subs:
                    try:
                        value = sub.run(item, state)
                    except FieldError as exc:
                        problems.extend((where or sub.source, message) for where, message in exc.items)
                        continue
                    except Abort as exc:
                        raise Abort(exc.where or sub.source, exc.message) from None
                    if value is not OMIT:
                        out[sub.target] = value
                if problems:
                    raise FieldError(problems)
                return out

            return element_object

        steps = tuple(TRANSFORMS[name] for name in spec.each or ())

        def element_text(item: Any) -> str:
            if item is None or (type(item) is str and not item.strip()):
                raise fail(emptiness(item))
            value = as_text(item)
            for step in steps:
                value = step(value)
            return value

        return element_text

    def _converting(
        self, convert: ConvertSpec, value_type: str, run_value: Callable[[Any, RecordState], Any]
    ) -> Callable[[Any, RecordState], Any]:
        """Wraps a field so a number in the vendor's unit comes out in the hub's unit for this record."""
        get_unit, unit_path = getter(convert.unit), convert.unit
        aliases = self.unit_aliases
        known = [*units.UNITS, *(a for a in aliases if a not in units.UNITS)]
        single = convert.to if isinstance(convert.to, str) else None
        table = convert.to if isinstance(convert.to, dict) else {}
        by, decimals = convert.by, convert.decimals

        def vendor_unit(record: Any) -> str | None:
            raw = get_unit(record)
            if is_empty(raw):
                return None
            try:
                return as_text(raw).strip()
            except FieldError as exc:
                raise FieldError([(unit_path, message) for _, message in exc.items]) from None

        def run(record: Any, state: RecordState) -> WithUnit:
            value = run_value(record, state)
            given = vendor_unit(record)
            hub_unit = aliases.get(given, given if given in units.UNITS else None) if given is not None else None
            chooser = state.data.get(by) if by is not None else None
            target = single or (table.get(str(chooser)) if chooser is not None else None)
            number = _number(value) if value is not OMIT and value is not None else None
            if target is None or number is None:
                return WithUnit(value, hub_unit or given)
            if given is None:
                raise fail(f"no unit in {unit_path} to convert {value} to {target}")
            if hub_unit is None:
                raise fail(f"unknown unit {given!r} in {unit_path}; {expected(given, known)}")
            if hub_unit == target:  # already in the hub's unit; SAP's float text -1.36E2 is written -136
                return WithUnit(units.plain(number) if value_type == "str" and "E" in value.upper() else value, target)
            converted = units.convert(number, hub_unit, target, decimals)
            return WithUnit(units.plain(converted) if value_type == "str" else converted, target)

        return run

    def _parser(self, spec: FieldSpec) -> Callable[[Any], Any]:
        vtype = spec.value_type
        fmt = spec.format or (dates.ISO_DURATION if vtype == "duration" else dates.ISO)
        if vtype == "str":
            return lambda text: text
        if vtype == "int":
            return parse_int
        if vtype == "decimal":
            return parse_decimal
        if vtype == "datetime":
            return dates.datetime_parser(fmt, self._zone(spec))
        if vtype == "date":
            return dates.date_parser(fmt)
        if vtype == "duration":
            return dates.parse_iso_duration
        if vtype == "object":
            return parse_object
        raise AssertionError(vtype)

    # outbound -----------------------------------------------------------------------

    def outbound_field(self, target: str, spec: FieldSpec, model: type[BaseModel]) -> OutField:
        path = tuple(target.split("."))
        if spec.has_const:
            constant = spec.const
            return OutField(path, target, None, lambda record, message: constant)
        if spec.items is not None:
            return OutField(path, target, None, self._outbound_items(spec.items, model))
        source = spec.from_
        assert source is not None  # checked at load
        optional, default, negate = spec.optional, spec.default, spec.negate
        read = _message_reader(name) if (name := outbound.message_value(source)) else _record_reader(source)
        render = self._renderer(spec, model, source)
        lookup = self._map_lookup(spec)
        steps = tuple(TRANSFORMS[name] for name in spec.transform)

        def run(record: Any, message: AnyMapping[str, Any]) -> Any:
            value = read(record, message)
            if value is None:
                if optional:
                    return default
                raise fail("is null")
            value = render(-value if negate else value)
            if lookup is not None:
                try:
                    value = lookup(value)
                except Abort as exc:  # outbound has no quarantine: any unlisted value stops the caller
                    raise fail(exc.message) from None
                if value is _UNLISTED:
                    return default
            for step in steps:
                value = step(value)
            return value

        return OutField(path, target, source, run)

    def _outbound_items(self, items: list[dict[str, FieldSpec]], model: type[BaseModel]) -> Callable[[Any, Any], Any]:
        """One object per entry of ``items``, each built from the same record."""
        groups = tuple(tuple(self.outbound_field(t, f, model) for t, f in item.items()) for item in items)

        def run_items(record: Any, message: AnyMapping[str, Any]) -> list[dict[str, Any]]:
            out, problems = [], []
            for index, group in enumerate(groups):
                try:
                    out.append(build_vendor(group, record, message))
                except FieldError as exc:
                    problems.extend((f"[{index}].{where}", m) for where, m in exc.items)
            if problems:
                raise FieldError(problems)
            return out

        return run_items

    def _renderer(self, spec: FieldSpec, model: type[BaseModel], source: str) -> Callable[[Any], Any]:
        vtype = spec.value_type
        fmt = spec.format or dates.ISO
        if vtype == "str":
            return render_str
        if vtype == "int":
            return render_int
        if vtype == "decimal":
            return decimal_renderer(spec.places)
        if vtype == "datetime":
            return dates.datetime_renderer(fmt, self._zone(spec))
        if vtype == "date":
            return dates.date_renderer(fmt)
        if vtype == "duration":
            return dates.render_duration
        if vtype == "object":
            return render_object
        # list
        if spec.each_fields is not None:
            nested = nested_model(model.model_fields[source].annotation)
            assert nested is not None
            subs = tuple(self.outbound_field(name, sub, nested) for name, sub in spec.each_fields.items())

            def element(item: Any) -> dict[str, Any]:
                return build_vendor(subs, item, {})

        else:
            steps = tuple(TRANSFORMS[name] for name in spec.each or ())

            def element(item: Any) -> Any:
                value = render_str(item)
                for step in steps:
                    value = step(value)
                return value

        def render_list(value: Any) -> list[Any]:
            if not isinstance(value, (list, tuple)):
                raise fail(f"expected a list, found {type_name(value)}")
            out = []
            problems: list[tuple[str | None, str]] = []
            for index, item in enumerate(value):
                try:
                    out.append(element(item))
                except FieldError as exc:
                    problems.extend((f"[{index}]" + (f".{where}" if where else ""), m) for where, m in exc.items)
            if problems:
                raise FieldError(problems)
            return out

        return render_list


def _record_reader(source: str) -> Callable[[Any, Any], Any]:
    return lambda record, message: getattr(record, source)


def _message_reader(name: str) -> Callable[[Any, Any], Any]:
    def read(record: Any, message: AnyMapping[str, Any]) -> Any:
        if name not in message:
            raise fail(f"the writer gave no message value {name!r}")
        return message[name]

    return read


def build_vendor(fields: tuple[OutField, ...], record: Any, message: AnyMapping[str, Any]) -> dict[str, Any]:
    """A vendor body from outbound fields, dotted vendor paths expanded into nested objects."""
    out: dict[str, Any] = {}
    problems: list[tuple[str | None, str]] = []
    for spec in fields:
        try:
            value = spec.run(record, message)
        except FieldError as exc:
            for where, message_text in exc.items:
                # a list element's problem arrives as "[i].sub"; name it from the vendor side
                problems.append((spec.target + (where if where and where.startswith("[") else ""), message_text))
            continue
        outbound.place(out, spec.path, value)
    if problems:
        raise FieldError(problems)
    return out
