"""Runs mapping files: vendor records <-> canonical records.

A mapping file is checked once when it is loaded (structure by `hub.mappings.spec`, meaning
here) and compiled into small per-field functions, so mapping a record costs a handful of dict
look-ups and one pydantic validation; nothing is re-read or re-compiled per record.

Inbound never raises for bad data: every vendor record becomes either a canonical record or a
`Rejected` entry whose reason names the mapping file, the record, the canonical field and the
vendor field. Outbound raises `OutboundError` (the hub built the record, so a failure is a bug
or a configuration error, not vendor data to quarantine).
"""

from __future__ import annotations

import hashlib
import re
import threading
import types
import typing
from collections.abc import Callable, Iterable
from collections.abc import Mapping as AnyMapping
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ValidationError

from hub.mappings.spec import KINDS, FieldSpec, InboundSpec, MappingFile, OutboundSpec
from hub.model import Canonical
from hub.yamlfile import ConfigError, ConfigProblem, compose, problems_from

__all__ = [
    "InboundResult",
    "Mapping",
    "OutboundError",
    "Rejected",
    "TRANSFORMS",
    "load_mapping",
    "packaged_mappings",
    "parse_mapping",
]

PACKAGE_DIR = Path(__file__).resolve().parent


# --------------------------------------------------------------------------- registries


def _id(value: str) -> str:
    return value.strip().upper()


#: The only transforms a mapping file may name. Each takes and returns text.
TRANSFORMS: dict[str, Callable[[str], str]] = {
    "id": _id,  # strip + upper-case: device IDs, codes
    "strip": str.strip,
    "upper": str.upper,
    "lower": str.lower,
}

ISO = "iso"
_SAMPLE_TIME = datetime(2026, 12, 31, 23, 59, 58)
_INT_RE = re.compile(r"[+-]?[0-9]+")


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Rejected:
    """A vendor record that did not map; kept whole so it can be replayed after a fix."""

    kind: str
    source_key: str | None
    payload: dict[str, Any]
    field: str | None
    reason: str
    # Canonical fields that did map (plain values only): lets the gate fail closed on
    # a rejected permit or work order whose ID, status or device could still be read.
    partial: dict[str, Any] = field(default_factory=dict)


@dataclass
class InboundResult:
    records: list[Canonical] = field(default_factory=list)
    quarantined: list[Rejected] = field(default_factory=list)


class OutboundError(ValueError):
    """A canonical record could not be written in the vendor's shape."""

    def __init__(self, reason: str, field: str | None = None):
        self.reason = reason
        self.field = field
        super().__init__(reason)


# --------------------------------------------------------------------------- field plumbing

_MISSING: Any = object()  # vendor path absent
_OMIT: Any = object()  # leave the canonical field out so the model's default applies


class _Fail(Exception):
    """Field-level problems: (vendor path or None for "the field's own path", message)."""

    def __init__(self, items: list[tuple[str | None, str]]):
        self.items = items
        super().__init__(items)


def _fail(message: str) -> _Fail:
    return _Fail([(None, message)])


def _type_name(value: Any) -> str:
    if isinstance(value, AnyMapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, bool):
        return "true/false"
    return type(value).__name__


def _emptiness(value: Any) -> str:
    if value is _MISSING:
        return "missing"
    if value is None:
        return "is null"
    return "is empty"



def _as_text(value: Any) -> str:
    if type(value) is str:
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise _fail(f"expected text, found {_type_name(value)}")
    return str(value)


def _getter(path: str) -> Callable[[Any], Any]:
    parts = tuple(path.split("."))
    if len(parts) == 1:
        (only,) = parts

        def get_one(record: Any) -> Any:
            return record.get(only, _MISSING)

        return get_one

    def get_nested(record: Any) -> Any:
        current = record
        for part in parts:
            if not isinstance(current, AnyMapping):
                return _MISSING
            current = current.get(part, _MISSING)
            if current is _MISSING:
                return _MISSING
        return current

    return get_nested


def _is_local_format(fmt: str | None) -> bool:
    return fmt is not None and fmt != ISO and "%z" not in fmt


# inbound parsers: text -> canonical value ----------------------------------------------


def _parse_int(text: str) -> int:
    stripped = text.strip()
    if not _INT_RE.fullmatch(stripped):
        raise _fail(f"cannot parse {text!r} as a whole number")
    return int(stripped)


def _parse_decimal(text: str) -> Decimal:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise _fail(f"cannot parse {text!r} as a decimal number") from None
    if not value.is_finite():
        raise _fail(f"cannot parse {text!r} as a decimal number")
    return value


_FAST_DIRECTIVES = {
    "Y": r"(?P<Y>\d{4})",
    "m": r"(?P<m>\d{1,2})",
    "d": r"(?P<d>\d{1,2})",
    "H": r"(?P<H>\d{1,2})",
    "M": r"(?P<M>\d{1,2})",
    "S": r"(?P<S>\d{1,2})",
}


def _fast_pattern(fmt: str) -> Callable[[str], datetime] | None:
    """A regex reader for purely numeric patterns like '%Y-%m-%d %H:%M:%S' (strptime is ~5x slower).

    Accepts exactly what strptime accepts for these directives; other patterns return None and
    use strptime.
    """
    out, seen, i = [], set(), 0
    while i < len(fmt):
        char = fmt[i]
        if char == "%":
            directive = fmt[i + 1 : i + 2]
            if directive == "%":
                out.append("%")
            elif directive in _FAST_DIRECTIVES and directive not in seen:
                seen.add(directive)
                out.append(_FAST_DIRECTIVES[directive])
            else:
                return None
            i += 2
        else:
            out.append(r"\s+" if char.isspace() else re.escape(char))
            i += 1
    if not {"Y", "m", "d"} <= seen:
        return None
    regex = re.compile("".join(out))

    def parse(text: str) -> datetime:
        match = regex.fullmatch(text)
        if match is None:
            raise ValueError(text)
        g = match.groupdict()
        return datetime(
            int(g["Y"]), int(g["m"]), int(g["d"]), int(g.get("H") or 0), int(g.get("M") or 0), int(g.get("S") or 0)
        )

    return parse


def _datetime_parser(fmt: str, zone: ZoneInfo | None) -> Callable[[str], datetime]:
    if fmt == ISO:

        def parse_iso(text: str) -> datetime:
            try:
                value = datetime.fromisoformat(text.strip())
            except ValueError:
                raise _fail(f"cannot parse {text!r} as an ISO 8601 date-time") from None
            if value.tzinfo is None:
                raise _fail(f"{text!r} has no UTC offset")
            return value.astimezone(timezone.utc)

        return parse_iso

    read = _fast_pattern(fmt) or (lambda text: datetime.strptime(text, fmt))

    def parse_pattern(text: str) -> datetime:
        try:
            value = read(text.strip())
        except ValueError:
            raise _fail(f"cannot parse {text!r} with format {fmt!r}") from None
        if value.tzinfo is not None:
            return value.astimezone(timezone.utc)
        assert zone is not None  # checked at load
        return _localize(value, zone, text)

    return parse_pattern


def _localize(naive: datetime, zone: ZoneInfo, text: str) -> datetime:
    offset = naive.replace(tzinfo=zone).utcoffset()
    if offset != naive.replace(tzinfo=zone, fold=1).utcoffset():
        # Only in zones with daylight saving (not Asia/Shanghai since 1991): refuse to guess.
        early = naive.replace(tzinfo=zone)
        if early.astimezone(timezone.utc).astimezone(zone).replace(tzinfo=None) != naive:
            raise _fail(f"{text!r} does not exist in {zone.key} (clocks went forward)")
        raise _fail(f"{text!r} is ambiguous in {zone.key} (clocks went back)")
    assert offset is not None
    return (naive - offset).replace(tzinfo=timezone.utc)


def _date_parser(fmt: str) -> Callable[[str], date]:
    if fmt == ISO:

        def parse_iso_date(text: str) -> date:
            try:
                return date.fromisoformat(text.strip())
            except ValueError:
                raise _fail(f"cannot parse {text!r} as an ISO 8601 date") from None

        return parse_iso_date

    def parse_pattern_date(text: str) -> date:
        try:
            return datetime.strptime(text.strip(), fmt).date()
        except ValueError:
            raise _fail(f"cannot parse {text!r} with format {fmt!r}") from None

    return parse_pattern_date


# outbound renderers: canonical value -> vendor value -----------------------------------


def _render_decimal(places: int | None) -> Callable[[Any], str]:
    quantum = Decimal(1).scaleb(-places) if places is not None else None

    def render(value: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
            raise _fail(f"expected a decimal number, found {_type_name(value)}")
        number = Decimal(value) if not isinstance(value, Decimal) else value
        if not number.is_finite():
            raise _fail(f"{number} is not a finite number")
        if quantum is not None:
            exact = number.quantize(quantum)
            if exact != number:
                raise _fail(f"{number} has more than {places} decimal places; round it before posting")
            number = exact
        return format(number, "f")

    return render


def _render_datetime(fmt: str, zone: ZoneInfo | None) -> Callable[[Any], str]:
    def check(value: Any) -> datetime:
        if not isinstance(value, datetime):
            raise _fail(f"expected a date-time, found {_type_name(value)}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise _fail("date-time has no time zone")
        return value

    if fmt == ISO:
        return lambda value: check(value).astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    target = zone or timezone.utc
    return lambda value: check(value).astimezone(target).strftime(fmt)


def _render_date(fmt: str) -> Callable[[Any], str]:
    def render(value: Any) -> str:
        if isinstance(value, datetime) or not isinstance(value, date):
            raise _fail(f"expected a date, found {_type_name(value)}")
        return value.isoformat() if fmt == ISO else value.strftime(fmt)

    return render


def _render_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)) or value != int(value):
        raise _fail(f"expected a whole number, found {value!r}")
    return int(value)


def _render_str(value: Any) -> str:
    if isinstance(value, (AnyMapping, list, tuple, BaseModel)):
        raise _fail(f"expected text, found {_type_name(value)}")
    return value if type(value) is str else str(value)


def _render_object(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, AnyMapping):
        return dict(value)
    raise _fail(f"expected an object, found {_type_name(value)}")


# --------------------------------------------------------------------------- compiled specs


@dataclass(frozen=True)
class _InField:
    target: str  # canonical field
    source: str | None  # vendor path, None for const
    run: Callable[[Any], Any]  # vendor record -> canonical value or _OMIT; raises _Fail


@dataclass(frozen=True)
class _OutField:
    path: tuple[str, ...]  # vendor path, split
    target: str  # vendor path as written
    source: str | None  # canonical field, None for const
    run: Callable[[Any], Any]  # canonical record -> vendor value; raises _Fail


@dataclass(frozen=True)
class _InKind:
    kind: str
    model: type[Canonical]
    key: Callable[[Any], Any] | None
    key_path: str | None
    records_at: str | None
    records_at_get: Callable[[Any], Any] | None
    parent_key: Callable[[Any], Any] | None
    parent_fields: tuple[_InField, ...]
    fields: tuple[_InField, ...]
    labels: dict[str, str]  # canonical field -> "field (from vendor path)" for validation errors


@dataclass(frozen=True)
class _OutKind:
    kind: str
    model: type[Canonical]
    key: str | None
    fields: tuple[_OutField, ...]


class _Compiler:
    def __init__(self, zone: ZoneInfo | None):
        self.zone = zone

    # inbound ------------------------------------------------------------------------

    def inbound_field(self, target: str, spec: FieldSpec, model: type[BaseModel]) -> _InField:
        if spec.has_const:
            constant = spec.const
            return _InField(target, None, lambda record: constant)
        source = spec.from_
        assert source is not None  # checked at load
        get = _getter(source)
        optional = spec.optional
        if spec.has_default:
            on_empty = spec.default
        elif not model.model_fields[target].is_required():
            on_empty = _OMIT
        else:
            on_empty = None
        vtype = spec.value_type

        if vtype == "list":
            element = self._inbound_element(spec, model, target)

            def run_list(record: Any) -> Any:
                value = get(record)
                if value is _MISSING or value is None:
                    if optional:
                        return on_empty
                    raise _fail(_emptiness(value))
                if not isinstance(value, (list, tuple)):
                    raise _fail(f"expected a list, found {_type_name(value)}")
                out = []
                problems: list[tuple[str | None, str]] = []
                for index, item in enumerate(value):
                    try:
                        out.append(element(item))
                    except _Fail as exc:
                        for sub, message in exc.items:
                            where = f"{source}[{index}]" + (f".{sub}" if sub else "")
                            problems.append((where, message))
                if problems:
                    raise _Fail(problems)
                return out

            return _InField(target, source, run_list)

        steps = tuple(TRANSFORMS[name] for name in spec.transform)
        value_map = dict(spec.map) if spec.map is not None else None
        allowed = ", ".join(value_map) if value_map is not None else ""
        parse = self._parser(spec)
        is_object = vtype == "object"

        def run(record: Any) -> Any:
            value = get(record)
            if value is _MISSING or value is None or (type(value) is str and not value.strip()):
                if optional:
                    return on_empty
                raise _fail(_emptiness(value))
            if is_object:
                return parse(value)
            value = _as_text(value)
            for step in steps:
                value = step(value)
            if value_map is not None:
                try:
                    value = value_map[value]
                except KeyError:
                    raise _fail(f"unknown value {value!r}; expected one of {allowed}") from None
            return parse(value)

        return _InField(target, source, run)

    def _inbound_element(self, spec: FieldSpec, model: type[BaseModel], target: str) -> Callable[[Any], Any]:
        if spec.each_fields is not None:
            nested = _nested_model(model.model_fields[target].annotation)
            assert nested is not None  # checked at load
            subs = tuple(self.inbound_field(name, sub, nested) for name, sub in spec.each_fields.items())

            def element_object(item: Any) -> dict[str, Any]:
                if not isinstance(item, AnyMapping):
                    raise _fail(f"expected an object, found {_type_name(item)}")
                out: dict[str, Any] = {}
                problems: list[tuple[str | None, str]] = []
                for sub in subs:
                    try:
                        value = sub.run(item)
                    except _Fail as exc:
                        problems.extend((where or sub.source, message) for where, message in exc.items)
                        continue
                    if value is not _OMIT:
                        out[sub.target] = value
                if problems:
                    raise _Fail(problems)
                return out

            return element_object

        steps = tuple(TRANSFORMS[name] for name in spec.each or ())

        def element_text(item: Any) -> str:
            if item is None or (type(item) is str and not item.strip()):
                raise _fail(_emptiness(item))
            value = _as_text(item)
            for step in steps:
                value = step(value)
            return value

        return element_text

    def _parser(self, spec: FieldSpec) -> Callable[[Any], Any]:
        vtype = spec.value_type
        fmt = spec.format or ISO
        if vtype == "str":
            return lambda text: text
        if vtype == "int":
            return _parse_int
        if vtype == "decimal":
            return _parse_decimal
        if vtype == "datetime":
            return _datetime_parser(fmt, self.zone)
        if vtype == "date":
            return _date_parser(fmt)
        if vtype == "object":

            def parse_object(value: Any) -> dict[str, Any]:
                if not isinstance(value, AnyMapping):
                    raise _fail(f"expected an object, found {_type_name(value)}")
                return dict(value)

            return parse_object
        raise AssertionError(vtype)

    # outbound -----------------------------------------------------------------------

    def outbound_field(self, target: str, spec: FieldSpec, model: type[BaseModel]) -> _OutField:
        path = tuple(target.split("."))
        if spec.has_const:
            constant = spec.const
            return _OutField(path, target, None, lambda record: constant)
        source = spec.from_
        assert source is not None
        optional, default = spec.optional, spec.default
        render = self._renderer(spec, model, source)
        value_map = dict(spec.map) if spec.map is not None else None
        allowed = ", ".join(value_map) if value_map is not None else ""
        steps = tuple(TRANSFORMS[name] for name in spec.transform)

        def run(record: Any) -> Any:
            value = getattr(record, source)
            if value is None:
                if optional:
                    return default
                raise _fail("is null")
            value = render(value)
            if value_map is not None:
                try:
                    value = value_map[value]
                except KeyError:
                    raise _fail(f"unknown value {value!r}; expected one of {allowed}") from None
            for step in steps:
                value = step(value)
            return value

        return _OutField(path, target, source, run)

    def _renderer(self, spec: FieldSpec, model: type[BaseModel], source: str) -> Callable[[Any], Any]:
        vtype = spec.value_type
        fmt = spec.format or ISO
        if vtype == "str":
            return _render_str
        if vtype == "int":
            return _render_int
        if vtype == "decimal":
            return _render_decimal(spec.places)
        if vtype == "datetime":
            return _render_datetime(fmt, self.zone)
        if vtype == "date":
            return _render_date(fmt)
        if vtype == "object":
            return _render_object
        # list
        if spec.each_fields is not None:
            nested = _nested_model(model.model_fields[source].annotation)
            assert nested is not None
            subs = tuple(self.outbound_field(name, sub, nested) for name, sub in spec.each_fields.items())

            def element(item: Any) -> dict[str, Any]:
                return _build_vendor(subs, item)

        else:
            steps = tuple(TRANSFORMS[name] for name in spec.each or ())

            def element(item: Any) -> Any:
                value = _render_str(item)
                for step in steps:
                    value = step(value)
                return value

        def render_list(value: Any) -> list[Any]:
            if not isinstance(value, (list, tuple)):
                raise _fail(f"expected a list, found {_type_name(value)}")
            out = []
            problems: list[tuple[str | None, str]] = []
            for index, item in enumerate(value):
                try:
                    out.append(element(item))
                except _Fail as exc:
                    problems.extend((f"[{index}]" + (f".{where}" if where else ""), m) for where, m in exc.items)
            if problems:
                raise _Fail(problems)
            return out

        return render_list


def _build_vendor(fields: tuple[_OutField, ...], record: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    problems: list[tuple[str | None, str]] = []
    for spec in fields:
        try:
            value = spec.run(record)
        except _Fail as exc:
            for where, message in exc.items:
                # a list element's problem arrives as "[i].sub"; name it from the vendor side
                problems.append((spec.target + (where if where and where.startswith("[") else ""), message))
            continue
        node = out
        for part in spec.path[:-1]:
            node = node.setdefault(part, {})
        node[spec.path[-1]] = value
    if problems:
        raise _Fail(problems)
    return out


# --------------------------------------------------------------------------- model introspection


def _literal_values(annotation: Any) -> tuple[str, ...] | None:
    """The allowed values of a Literal[...] (or Optional[Literal[...]]) annotation."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return tuple(str(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        values: list[str] = []
        for arg in typing.get_args(annotation):
            if arg is type(None):
                continue
            inner = _literal_values(arg)
            if inner is None:
                return None
            values.extend(inner)
        return tuple(values) or None
    return None


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The record type inside a list-like annotation such as tuple[Reason, ...]."""
    for arg in typing.get_args(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
        inner = _nested_model(arg)
        if inner is not None:
            return inner
    return None


# --------------------------------------------------------------------------- load-time checks

Loc = tuple[Any, ...]


def _loc_text(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _locate(root: yaml.Node | None, loc: Loc, at_key: bool) -> tuple[int, int]:
    """line, column of the node at loc (of its key when at_key and the key exists)."""
    if root is None:
        return 1, 1
    node, key_node, complete = root, None, True
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(part):
                    key_node, child = key, value
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            key_node, child = None, node.value[part]
        if child is None:
            complete = False
            break
        node = child
    target = key_node if (at_key and complete and key_node is not None) else node
    mark = target.start_mark
    return mark.line + 1, mark.column + 1


class _Checker:
    """Checks the meaning of a structurally valid mapping file."""

    def __init__(self, spec: MappingFile, node: yaml.Node | None, name: str):
        self.spec, self.node, self.name = spec, node, name
        self.problems: list[ConfigProblem] = []

    def add(self, loc: Loc, message: str, at_key: bool = False) -> None:
        line, column = _locate(self.node, loc, at_key)
        self.problems.append(ConfigProblem(self.name, line, column, _loc_text(loc), message))

    def run(self) -> list[ConfigProblem]:
        spec = self.spec
        if spec.timezone is not None:
            try:
                ZoneInfo(spec.timezone)
            except (ZoneInfoNotFoundError, ValueError):
                self.add(("timezone",), f"unknown time zone {spec.timezone!r} (use a name like Asia/Shanghai)")
        for direction, kinds in (("inbound", spec.inbound), ("outbound", spec.outbound)):
            for kind, kind_spec in kinds.items():
                loc = (direction, kind)
                if kind not in KINDS:
                    self.add(loc, f"unknown record kind {kind!r}; expected one of {', '.join(KINDS)}", at_key=True)
                    continue
                if isinstance(kind_spec, InboundSpec):
                    self.inbound(loc, kind, kind_spec)
                else:
                    self.outbound(loc, kind, kind_spec)
        return self.problems

    # inbound --------------------------------------------------------------------------

    def inbound(self, loc: Loc, kind: str, spec: InboundSpec) -> None:
        model = KINDS[kind]
        if spec.records_at is None:
            if spec.parent_fields:
                self.add(loc + ("parent_fields",), "parent_fields needs records_at", at_key=True)
            if spec.parent_key is not None:
                self.add(loc + ("parent_key",), "parent_key needs records_at", at_key=True)
        for name in spec.parent_fields.keys() & spec.fields.keys():
            self.add(loc + ("parent_fields", name), f"{name!r} is mapped in both parent_fields and fields", True)
        for group in ("parent_fields", "fields"):
            self.inbound_fields(loc + (group,), kind, model, getattr(spec, group))
        self.required_mapped(loc + ("fields",), kind, model, spec.parent_fields.keys() | spec.fields.keys())

    def required_mapped(self, loc: Loc, what: str, model: type[BaseModel], mapped: Iterable[str]) -> None:
        mapped = set(mapped)
        missing = [n for n, f in model.model_fields.items() if f.is_required() and n not in mapped]
        if missing:
            self.add(loc, f"required {what} fields not mapped: {', '.join(missing)}", at_key=True)

    def inbound_fields(self, loc: Loc, what: str, model: type[BaseModel], fields: dict[str, FieldSpec]) -> None:
        for target, spec in fields.items():
            floc = loc + (target,)
            if target not in model.model_fields:
                self.add(floc, self.no_field(what, target, model), at_key=True)
                continue
            annotation = model.model_fields[target].annotation
            self.common(floc, spec, inbound=True)
            allowed = _literal_values(annotation)
            if spec.map is not None and allowed is not None:
                for vendor_value, value in spec.map.items():
                    if value not in allowed:
                        self.add(
                            floc + ("map", vendor_value),
                            f"{value!r} is not a valid {what}.{target}; expected one of {', '.join(allowed)}",
                        )
            if spec.each_fields is not None:
                nested = _nested_model(annotation)
                if nested is None:
                    self.add(floc + ("each_fields",), f"{what}.{target} does not hold a list of records", True)
                    continue
                sub_what = f"{what}.{target}"
                self.inbound_fields(floc + ("each_fields",), sub_what, nested, spec.each_fields)
                self.required_mapped(floc + ("each_fields",), sub_what, nested, spec.each_fields)

    # outbound -------------------------------------------------------------------------

    def outbound(self, loc: Loc, kind: str, spec: OutboundSpec) -> None:
        model = KINDS[kind]
        if spec.key is not None and spec.key not in model.model_fields:
            self.add(loc + ("key",), self.no_field(kind, spec.key, model))
        self.outbound_fields(loc + ("fields",), kind, model, spec.fields)

    def outbound_fields(self, loc: Loc, what: str, model: type[BaseModel], fields: dict[str, FieldSpec]) -> None:
        seen: list[str] = []
        for target, spec in fields.items():
            floc = loc + (target,)
            parts = target.split(".")
            if any(not p for p in parts):
                self.add(floc, f"vendor path {target!r} has an empty part", at_key=True)
            for other in seen:
                if other == target or other.startswith(target + ".") or target.startswith(other + "."):
                    self.add(floc, f"vendor path {target!r} clashes with {other!r}", at_key=True)
            seen.append(target)
            self.common(floc, spec, inbound=False)
            source = spec.from_
            if source is None or spec.has_const:
                continue
            if source not in model.model_fields:
                self.add(floc + ("from",), self.no_field(what, source, model))
                continue
            annotation = model.model_fields[source].annotation
            allowed = _literal_values(annotation)
            if spec.map is not None and allowed is not None:
                for canonical_value in spec.map:
                    if canonical_value not in allowed:
                        self.add(
                            floc + ("map", canonical_value),
                            f"{canonical_value!r} is not a valid {what}.{source}; expected one of {', '.join(allowed)}",
                            at_key=True,
                        )
                uncovered = [v for v in allowed if v not in spec.map]
                if uncovered:
                    self.add(floc + ("map",), f"no vendor value for {what}.{source} {', '.join(map(repr, uncovered))}")
            if spec.each_fields is not None:
                nested = _nested_model(annotation)
                if nested is None:
                    self.add(floc + ("each_fields",), f"{what}.{source} does not hold a list of records", True)
                    continue
                self.outbound_fields(floc + ("each_fields",), f"{what}.{source}", nested, spec.each_fields)

    # both -----------------------------------------------------------------------------

    def common(self, loc: Loc, spec: FieldSpec, inbound: bool) -> None:
        if spec.has_const and spec.from_ is not None:
            self.add(loc, "give either 'from' or 'const', not both")
        elif not spec.has_const and spec.from_ is None:
            self.add(loc, "needs 'from' (where the value comes from) or 'const' (a fixed value)")
        for key in ("transform", "each"):
            for index, name in enumerate(getattr(spec, key) or ()):
                if name not in TRANSFORMS:
                    self.add(loc + (key, index), f"unknown transform {name!r}; expected one of {', '.join(TRANSFORMS)}")
        vtype = spec.value_type
        if vtype == "list":
            if spec.transform:
                self.add(loc + ("transform",), "a list applies transforms to each element: use 'each'", True)
            if spec.map is not None:
                self.add(loc + ("map",), "'map' does not apply to a list", True)
            if spec.each is not None and spec.each_fields is not None:
                self.add(loc + ("each_fields",), "give either 'each' or 'each_fields', not both", True)
        else:
            for key in ("each", "each_fields"):
                if getattr(spec, key) is not None:
                    self.add(loc + (key,), f"'{key}' is only for type list (this field has type {vtype})", True)
        if spec.format is not None:
            if vtype not in ("datetime", "date"):
                self.add(loc + ("format",), f"'format' is only for type datetime or date (this field has type {vtype})")
            elif spec.format != ISO:
                self.check_pattern(loc + ("format",), spec.format, needs_zone=vtype == "datetime")
        if spec.places is not None:
            if inbound:
                self.add(loc + ("places",), "'places' is only used when writing to the vendor (outbound)", True)
            elif vtype != "decimal":
                self.add(loc + ("places",), f"'places' is only for type decimal (this field has type {vtype})", True)

    def check_pattern(self, loc: Loc, fmt: str, needs_zone: bool) -> None:
        try:
            datetime.strptime(_SAMPLE_TIME.strftime(fmt), fmt)
            ok = "%" in fmt
        except ValueError:
            ok = False
        if not ok:
            self.add(loc, f"{fmt!r} is not a usable date format (use iso or a pattern like '%Y-%m-%d %H:%M:%S')")
        elif needs_zone and _is_local_format(fmt) and self.spec.timezone is None:
            self.add(loc, f"{fmt!r} reads plant-local times: set 'timezone' at the top of the file")

    @staticmethod
    def no_field(what: str, name: str, model: type[BaseModel]) -> str:
        return f"{what} has no field {name!r}; expected one of {', '.join(model.model_fields)}"


def _duplicate_keys(node: yaml.Node | None, name: str, loc: Loc = ()) -> list[ConfigProblem]:
    """safe_load keeps the last of two equal keys silently; in a mapping file that hides a mistake."""
    problems: list[ConfigProblem] = []
    if isinstance(node, yaml.MappingNode):
        first: dict[str, yaml.Node] = {}
        for key, value in node.value:
            text = str(key.value)
            if text in first:
                mark, earlier = key.start_mark, first[text].start_mark
                problems.append(
                    ConfigProblem(
                        name, mark.line + 1, mark.column + 1, _loc_text(loc + (text,)),
                        f"duplicate key (first at line {earlier.line + 1})",
                    )
                )
            else:
                first[text] = key
            problems.extend(_duplicate_keys(value, name, loc + (text,)))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            problems.extend(_duplicate_keys(item, name, loc + (index,)))
    return problems


# --------------------------------------------------------------------------- the mapping


class Mapping:
    """A loaded, checked and compiled mapping file. Immutable; safe to share between threads."""

    def __init__(self, spec: MappingFile, source_file: Path | None, sha256: str, name: str):
        self.spec = spec
        self.system = spec.system
        self.source_file = source_file
        self.sha256 = sha256
        self.name = name  # short file name used in quarantine reasons, e.g. "ptw.yaml"
        self.zone = ZoneInfo(spec.timezone) if spec.timezone else None
        compiler = _Compiler(self.zone)
        self._in = {kind: self._compile_inbound(compiler, kind, s) for kind, s in spec.inbound.items()}
        self._out = {
            kind: _OutKind(
                kind,
                KINDS[kind],
                s.key,
                tuple(compiler.outbound_field(t, f, KINDS[kind]) for t, f in s.fields.items()),
            )
            for kind, s in spec.outbound.items()
        }

    def __repr__(self) -> str:
        return f"Mapping(system={self.system!r}, file={self.name!r}, sha256={self.sha256[:12]}...)"

    @property
    def inbound_kinds(self) -> tuple[str, ...]:
        return tuple(self._in)

    @property
    def outbound_kinds(self) -> tuple[str, ...]:
        return tuple(self._out)

    @staticmethod
    def _compile_inbound(compiler: _Compiler, kind: str, spec: InboundSpec) -> _InKind:
        model = KINDS[kind]
        parent = tuple(compiler.inbound_field(t, f, model) for t, f in spec.parent_fields.items())
        fields = tuple(compiler.inbound_field(t, f, model) for t, f in spec.fields.items())
        labels = {}
        for group, prefix in ((parent, ""), (fields, f"{spec.records_at}[*]." if spec.records_at else "")):
            for f in group:
                labels[f.target] = f"{f.target} (from {prefix}{f.source})" if f.source else f"{f.target} (const)"
        return _InKind(
            kind=kind,
            model=model,
            key=_getter(spec.key) if spec.key else None,
            key_path=spec.key,
            records_at=spec.records_at,
            records_at_get=_getter(spec.records_at) if spec.records_at else None,
            parent_key=_getter(spec.parent_key) if spec.parent_key else None,
            parent_fields=parent,
            fields=fields,
            labels=labels,
        )

    # inbound ------------------------------------------------------------------------

    def inbound(self, kind: str, vendor_records: Iterable[dict[str, Any]]) -> InboundResult:
        """Map vendor records of one kind; every record ends up in `records` or `quarantined`."""
        try:
            compiled = self._in[kind]
        except KeyError:
            raise KeyError(
                f"{self.name} has no inbound mapping for {kind!r}; it maps {', '.join(self._in) or 'nothing'}"
            ) from None
        result = InboundResult()
        for index, record in enumerate(vendor_records):
            if compiled.records_at is None:
                self._inbound_one(compiled, result, record, record, index, None)
            else:
                self._inbound_nested(compiled, result, record, index)
        return result

    def _key_of(self, get: Callable[[Any], Any] | None, record: Any) -> str | None:
        if get is None or not isinstance(record, AnyMapping):
            return None
        try:
            value = get(record)
        except Exception:  # noqa: BLE001 - a key is only for messages
            return None
        if value is _MISSING or value is None or isinstance(value, (AnyMapping, list, tuple)):
            return None
        text = str(value).strip()
        return text or None

    def _label(self, compiled: _InKind, key: str | None, where: str, record: Any = None) -> str:
        if key is not None:
            return f"{self.name}: {compiled.kind} {key}"
        no_key = f" (no {compiled.key_path})" if compiled.key_path and isinstance(record, AnyMapping) else ""
        return f"{self.name}: {compiled.kind} at {where}{no_key}"

    def _reject(
        self, result: InboundResult, compiled: _InKind, key: str | None, payload: Any, label: str,
        problems: list[tuple[str | None, str]], data: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(payload, dict):
            payload = {"_raw": payload}
        first = next((f for f, _ in problems if f is not None), None)
        reason = label + ": " + "; ".join(m for _, m in problems)
        partial = {k: v for k, v in (data or {}).items() if isinstance(v, (str, int, float, bool))}
        result.quarantined.append(Rejected(compiled.kind, key, payload, first, reason, partial))

    def _run_fields(
        self, fields: tuple[_InField, ...], record: Any, prefix: str, data: dict[str, Any],
        problems: list[tuple[str | None, str]],
    ) -> None:
        for f in fields:
            try:
                value = f.run(record)
            except _Fail as exc:
                for where, message in exc.items:
                    if f.source is None:
                        problems.append((f.target, f"{f.target} (const): {message}"))
                    else:
                        problems.append((f.target, f"{f.target} (from {prefix}{where or f.source}): {message}"))
                continue
            except Exception as exc:  # noqa: BLE001 - inbound never raises for data
                problems.append((f.target, f"{f.target} (from {prefix}{f.source}): cannot map: {exc!r}"))
                continue
            if value is not _OMIT:
                data[f.target] = value

    def _validate(
        self, compiled: _InKind, data: dict[str, Any], problems: list[tuple[str | None, str]]
    ) -> Canonical | None:
        failed = {f for f, _ in problems}
        try:
            return compiled.model.model_validate(data)
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                loc = err["loc"]
                target = str(loc[0]) if loc else None
                if target in failed:
                    continue  # already explained by the field's own mapping error
                label = compiled.labels.get(target, target or compiled.kind) if target else compiled.kind
                deeper = _loc_text(loc[1:]) if len(loc) > 1 else ""
                message = err["msg"]
                if err["type"] != "missing" and "input" in err:
                    message += f" (found {err['input']!r})"
                problems.append((target, f"{label}: {deeper + ': ' if deeper else ''}{message}"))
        except Exception as exc:  # noqa: BLE001
            problems.append((None, f"cannot build {compiled.kind}: {exc!r}"))
        return None

    def _inbound_one(
        self, compiled: _InKind, result: InboundResult, record: Any, payload: Any, index: int,
        parent: tuple[dict[str, Any], list[tuple[str | None, str]], str | None, str, str] | None,
    ) -> None:
        if parent is None:
            key = self._key_of(compiled.key, record)
            label = self._label(compiled, key, f"index {index}", record)
            data: dict[str, Any] = {}
            problems: list[tuple[str | None, str]] = []
            prefix = ""
        else:
            parent_data, parent_problems, parent_key, where, prefix = parent
            child_key = self._key_of(compiled.key, record)
            key = None if parent_key is None and child_key is None else f"{parent_key or '?'}/{child_key or '?'}"
            label = self._label(compiled, key, where, record)
            data, problems = dict(parent_data), list(parent_problems)
        if not isinstance(record, AnyMapping):
            problems.append((None, f"record is not an object (found {_type_name(record)})"))
            self._reject(result, compiled, key, payload, label, problems)
            return
        self._run_fields(compiled.fields, record, prefix, data, problems)
        canonical = self._validate(compiled, data, problems)
        if canonical is not None and not problems:
            result.records.append(canonical)
            return
        self._reject(result, compiled, key, payload, label, problems, data)

    def _inbound_nested(self, compiled: _InKind, result: InboundResult, record: Any, index: int) -> None:
        """One vendor object holding a list (records_at): one canonical record per element."""
        if not isinstance(record, AnyMapping):
            self._inbound_one(compiled, result, record, record, index, None)
            return
        assert compiled.records_at_get is not None and compiled.records_at is not None
        parent_key = self._key_of(compiled.parent_key, record)
        children = compiled.records_at_get(record)
        if children is _MISSING or children is None:
            return  # nothing listed, nothing to map
        if not isinstance(children, (list, tuple)):
            label = self._label(compiled, parent_key, f"index {index}", record)
            problems: list[tuple[str | None, str]] = [
                (None, f"{compiled.records_at}: expected a list, found {_type_name(children)}")
            ]
            self._reject(result, compiled, parent_key, record, label, problems)
            return
        parent_data: dict[str, Any] = {}
        parent_problems: list[tuple[str | None, str]] = []
        self._run_fields(compiled.parent_fields, record, "", parent_data, parent_problems)
        for position, child in enumerate(children):
            payload = _with_only_child(record, compiled.records_at, child)
            prefix = f"{compiled.records_at}[{position}]."
            where = f"index {index}, {prefix[:-1]}"
            self._inbound_one(
                compiled, result, child, payload, index, (parent_data, parent_problems, parent_key, where, prefix)
            )

    # outbound -----------------------------------------------------------------------

    def outbound(self, kind: str, record: BaseModel) -> dict[str, Any]:
        """The vendor body for one canonical record, dotted vendor paths expanded into objects."""
        try:
            compiled = self._out[kind]
        except KeyError:
            raise KeyError(
                f"{self.name} has no outbound mapping for {kind!r}; it maps {', '.join(self._out) or 'nothing'}"
            ) from None
        if not isinstance(record, compiled.model):
            raise TypeError(f"{kind} needs a {compiled.model.__name__}, got {type(record).__name__}")
        try:
            return _build_vendor(compiled.fields, record)
        except _Fail as exc:
            key = getattr(record, compiled.key) if compiled.key else None
            label = f"{self.name}: {kind}" + (f" {key}" if key is not None else "")
            sources = {f.target: f.source for f in compiled.fields}
            parts = []
            for where, message in exc.items:
                target = where or "?"
                source = sources.get(target.split("[")[0])
                parts.append(f"{target} (from {source}): {message}" if source else f"{target}: {message}")
            first = exc.items[0][0] if exc.items else None
            raise OutboundError(label + ": " + "; ".join(parts), first) from None


def _with_only_child(record: AnyMapping[str, Any], path: str, child: Any) -> dict[str, Any]:
    """A copy of record whose list at path holds only child: replaying it maps just that record."""
    parts = path.split(".")
    top = dict(record)
    node = top
    for part in parts[:-1]:
        inner = dict(node[part])
        node[part] = inner
        node = inner
    node[parts[-1]] = [child]
    return top


# --------------------------------------------------------------------------- loading

_CACHE: dict[tuple[str, str], Mapping] = {}
_CACHE_LOCK = threading.Lock()


def packaged_mappings() -> list[str]:
    """Names of the mapping files shipped with the hub (e.g. "eam")."""
    return sorted(p.stem for p in PACKAGE_DIR.glob("*.yaml"))


def parse_mapping(data: bytes | str, name: str = "<mapping>", source_file: Path | None = None) -> Mapping:
    """Check and compile mapping text. Raises ConfigError listing every problem as file:line:col."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigProblem(name, 1, 1, "(file)", f"not UTF-8 text: {exc.reason}")]) from None
    loaded, node = compose(text, name)
    problems = _duplicate_keys(node, name)
    try:
        spec = MappingFile.model_validate(loaded if loaded is not None else {})
    except ValidationError as exc:
        raise ConfigError(problems + problems_from(exc, node, name)) from None
    problems += _Checker(spec, node, name).run()
    if problems:
        raise ConfigError(problems)
    short = source_file.name if source_file is not None else Path(name).name
    return Mapping(spec, source_file, hashlib.sha256(raw).hexdigest(), short)


def _resolve(system: str | Path) -> Path:
    if isinstance(system, Path):
        return system
    if "/" in system or "\\" in system or system.endswith((".yaml", ".yml")):
        return Path(system)
    path = PACKAGE_DIR / f"{system}.yaml"
    if not path.is_file():
        raise ConfigError(
            [
                ConfigProblem(
                    system, 1, 1, "(file)",
                    f"no packaged mapping {system!r}; packaged: {', '.join(packaged_mappings())}",
                )
            ]
        )
    return path


def load_mapping(system: str | Path) -> Mapping:
    """A packaged mapping by system name ("ptw", "eam", "mes", "erp") or a mapping file by path.

    Cached by path and content hash: an edited file is re-read and re-checked.
    """
    path = _resolve(system)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([ConfigProblem(str(path), 1, 1, "(file)", f"cannot read: {exc.strerror}")]) from None
    resolved = str(path.resolve())
    cache_key = (resolved, hashlib.sha256(raw).hexdigest())
    with _CACHE_LOCK:
        cached = _CACHE.get(cache_key)
    if cached is not None:
        return cached
    mapping = parse_mapping(raw, str(path), Path(resolved))
    with _CACHE_LOCK:
        _CACHE[cache_key] = mapping
    return mapping
