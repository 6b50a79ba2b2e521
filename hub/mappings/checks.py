"""Load-time checks: every problem in a mapping file, at once, as file:line:column: where: what.

Structure (keys and value types) is checked by pydantic against `hub.mappings.spec`; its errors
are reworded here with did-you-mean hints. Meaning (record kinds and canonical fields that
exist, required fields mapped, known transforms, formats, units and zones, settings that fit
together) is checked by `Checker`. A file that passes both compiles without surprises.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterable
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import yaml
from pydantic import BaseModel, ValidationError

from hub.mappings import dates, outbound, units
from hub.mappings.gate_inputs import UNAVAILABLE_VALUE
from hub.mappings.compile import TRANSFORMS, literal_values, nested_model
from hub.mappings.source import Loc, problem
from hub.mappings.spec import KINDS, FieldSpec, InboundSpec, MappingFile, OutboundSpec
from hub.mappings.suggest import expected
from hub.mappings.values import FieldError
from hub.yamlfile import ConfigProblem

_QUOTED = re.compile(r"'([^']*)'")
_INBOUND_ONLY = ("concat", "unit_of", "split", "convert", "time_of_day", "first", "reduce", "unavailable", "todo", "lookup")


# --------------------------------------------------------------------------- structure


def structure_problems(exc: ValidationError, node: yaml.Node | None, name: str) -> list[ConfigProblem]:
    """pydantic's errors about a mapping file, located and worded for the person editing it."""
    problems = []
    for err in _without_union_tags(exc.errors(include_url=False)):
        loc = tuple(err["loc"])
        kind = err["type"]
        if kind == "extra_forbidden":
            key = str(loc[-1])
            message = f"unknown key {key!r}; {expected(key, _keys_at(loc[:-1]))}"
            problems.append(problem(node, loc, message, name, at_key=True))
        elif kind == "missing":
            problems.append(problem(node, loc[:-1], f"{str(loc[-1])!r} is required", name))
        elif kind == "literal_error":
            choices = _QUOTED.findall(err.get("ctx", {}).get("expected", ""))
            found = str(err.get("input"))
            problems.append(problem(node, loc, f"found {found!r}; {expected(found, choices)}", name))
        else:
            message = err["msg"]
            if "input" in err:
                message += f" (found {err['input']!r})"
            if kind == "string_type" and isinstance(err.get("input"), bool):
                message += "; YAML reads yes, no, on, off, true and false as true/false: put the text in quotes"
            problems.append(problem(node, loc, message, name))
    return problems


#: The names pydantic gives the members of a union (``key: str | list[str]``) in an error's location.
_UNION_TAGS = frozenset({"str", "list[str]", "SourceChoice"})


def _without_union_tags(errors: list[Any]) -> list[Any]:
    """One error per value of a union type: the text member's, located at the value itself.

    A key given as ``no`` (YAML false) should read "should be a valid string", not also "should
    be a valid list"; a list element's own problem keeps its place.
    """
    def tag_index(loc: Loc) -> int | None:
        return next((i for i, part in enumerate(loc) if part in _UNION_TAGS), None)

    text_failed = {tuple(e["loc"][:i]) for e in errors if (i := tag_index(tuple(e["loc"]))) is not None
                   and e["loc"][i] == "str"}
    kept = []
    for err in errors:
        loc = tuple(err["loc"])
        index = tag_index(loc)
        if index is None:
            kept.append(err)
        elif loc[index] == "str" or loc[:index] not in text_failed:
            kept.append({**err, "loc": loc[:index] + loc[index + 1:]})
    return kept


def _keys_at(loc: Loc) -> list[str]:
    """The keys the spec model at loc accepts, for did-you-mean on a misspelt one."""
    annotation: Any = MappingFile
    for part in loc:
        model = _model_in(annotation)
        if model is not None:
            fields = {f.alias or n: f for n, f in model.model_fields.items()}
            annotation = fields[str(part)].annotation if str(part) in fields else None
        else:
            annotation = _element_of(annotation)
    model = _model_in(annotation)
    return [f.alias or n for n, f in model.model_fields.items()] if model is not None else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                return arg
    return None


def _element_of(annotation: Any) -> Any:
    """The value type of a dict or list annotation (Optional unwrapped)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if typing.get_origin(a) in (dict, list)]
        annotation = inner[0] if inner else None
    args = typing.get_args(annotation)
    return args[-1] if args else None


# --------------------------------------------------------------------------- meaning


@cache
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


class Checker:
    """Checks the meaning of a structurally valid mapping file."""

    def __init__(self, spec: MappingFile, node: yaml.Node | None, name: str):
        self.spec, self.node, self.name = spec, node, name
        self.problems: list[ConfigProblem] = []
        self.known_units = {**{u: u for u in units.UNITS}, **spec.units}

    def add(self, loc: Loc, message: str, at_key: bool = False) -> None:
        self.problems.append(problem(self.node, loc, message, self.name, at_key))

    def zone(self, loc: Loc, name: str | None) -> None:
        if name is None:
            return
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            hint = expected(name, sorted(_zone_names()), listed=False)
            self.add(loc, f"unknown time zone {name!r}; {hint} (use a name like Asia/Shanghai)")

    def tables(self) -> None:
        """Each look-up table: inline rows, or an endpoint operation that brings them, not both."""
        operations = self.spec.endpoint.operations if self.spec.endpoint is not None else {}
        for name, table in self.spec.tables.items():
            loc = ("tables", name)
            if (table.rows is None) == (table.operation is None):
                self.add(loc, "give either 'rows' (an inline table) or 'operation' (a request of the endpoint)", True)
                continue
            if table.rows is not None:
                for key in ("key", "value"):
                    if getattr(table, key) is not None:
                        self.add(loc + (key,), f"'{key}' names a field of requested rows: it is only for 'operation'", True)
                continue
            for key in ("key", "value"):
                if getattr(table, key) is None:
                    self.add(loc, f"a requested table needs '{key}': the field of each row holding the {key}", True)
            try:
                refresh = dates.parse_iso_duration(table.refresh)
            except FieldError:
                refresh = None
            if refresh is None or refresh.total_seconds() <= 0:
                self.add(loc + ("refresh",), f"{table.refresh!r} is not a positive ISO 8601 duration (e.g. PT1H)")
            operation = operations.get(table.operation or "")
            if operation is None:
                self.add(loc + ("operation",), f"the endpoint has no operation {table.operation!r}; "
                         f"{expected(table.operation or '', operations)}")
            elif not any(name in r.records.values() for r in operation.requests):
                self.add(loc + ("operation",), f"operation {table.operation!r} brings no records named {name!r}: "
                         f"add {{<where>: {name}}} to a request's 'records'")
            elif operation.takes_ids:
                self.add(loc + ("operation",), f"operation {table.operation!r} takes ids; a table is read whole")

    def run(self) -> list[ConfigProblem]:
        spec = self.spec
        self.zone(("timezone",), spec.timezone)
        self.tables()
        for code, unit in spec.units.items():
            if unit not in units.UNITS:
                self.add(("units", code), f"unknown unit {unit!r}; {expected(unit, units.UNITS)}")
            elif code in units.UNITS and code != unit:
                self.add(("units", code), f"{code!r} is the hub's own unit name; it cannot stand for {unit!r}", True)
        for direction, kinds in (("inbound", spec.inbound), ("outbound", spec.outbound)):
            for kind, kind_spec in kinds.items():
                loc = (direction, kind)
                if kind not in KINDS:
                    self.add(loc, f"unknown record kind {kind!r}; {expected(kind, KINDS)}", at_key=True)
                elif isinstance(kind_spec, InboundSpec):
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
            self.inbound_fields(loc + (group,), kind, model, getattr(spec, group), group)
        self.required_mapped(loc + ("fields",), kind, model, spec.parent_fields.keys() | spec.fields.keys())
        self.conversions(loc, kind, spec)

    def required_mapped(self, loc: Loc, what: str, model: type[BaseModel], mapped: Iterable[str]) -> None:
        mapped = set(mapped)
        missing = [n for n, f in model.model_fields.items() if f.is_required() and n not in mapped]
        if missing:
            self.add(loc, f"required {what} fields not mapped: {', '.join(missing)}", at_key=True)

    def inbound_fields(
        self, loc: Loc, what: str, model: type[BaseModel], fields: dict[str, FieldSpec], group: str
    ) -> None:
        for target, spec in fields.items():
            floc = loc + (target,)
            if target not in model.model_fields:
                self.add(floc, self.no_field(what, target, model), at_key=True)
                continue
            annotation = model.model_fields[target].annotation
            self.common(floc, spec, inbound=True)
            self.inbound_only(floc, what, target, spec)
            if group != "fields":
                for key in ("convert", "unit_of"):
                    if getattr(spec, key) is not None:
                        self.add(floc + (key,), f"'{key}' is only for a kind's own 'fields'", at_key=True)
            allowed = literal_values(annotation)
            if spec.map is not None and allowed is not None:
                for vendor_value, value in spec.map.items():
                    if value not in allowed:
                        self.add(
                            floc + ("map", vendor_value),
                            f"{value!r} is not a valid {what}.{target}; {expected(value, allowed)}",
                        )
            if spec.each_fields is not None:
                nested = nested_model(annotation)
                if nested is None:
                    self.add(floc + ("each_fields",), f"{what}.{target} does not hold a list of records", True)
                    continue
                sub_what = f"{what}.{target}"
                self.inbound_fields(floc + ("each_fields",), sub_what, nested, spec.each_fields, "each_fields")
                self.required_mapped(floc + ("each_fields",), sub_what, nested, spec.each_fields)

    def inbound_only(self, loc: Loc, what: str, target: str, spec: FieldSpec) -> None:
        """Settings that only inbound fields have: to-dos, unavailable inputs, reductions, look-ups."""
        if spec.todo is not None:
            self.add(loc + ("todo",), f"still to decide: {spec.todo}", at_key=True)
        if spec.unavailable is not None and (what, target) not in UNAVAILABLE_VALUE:
            can = ", ".join(f"{k}.{f}" for k, f in UNAVAILABLE_VALUE)
            self.add(loc + ("unavailable",), f"{what}.{target} cannot be declared unavailable (only {can}): "
                     "without it the record cannot be placed or read", at_key=True)
        if spec.reason is not None and not (spec.has_const or spec.has_default):
            self.add(loc + ("reason",), "'reason' says why a const or default is right: this field has neither", True)
        if spec.lookup is not None and spec.lookup not in self.spec.tables:
            hint = expected(spec.lookup, self.spec.tables) if self.spec.tables else "the file declares no 'tables'"
            self.add(loc + ("lookup",), f"no look-up table {spec.lookup!r}; {hint}")
        reduce = spec.reduce
        if reduce is not None:
            takes_value = reduce.op in ("min", "max", "first")
            if takes_value and reduce.value is None:
                self.add(loc + ("reduce",), f"reduce op {reduce.op} needs 'value': the field of each row to take", True)
            if not takes_value and reduce.value is not None:
                self.add(loc + ("reduce", "value"), f"reduce op {reduce.op} counts rows: 'value' is only for min, "
                         "max and first", at_key=True)
            for group in ("where", "unless"):
                for path, wanted in getattr(reduce, group).items():
                    values = wanted if isinstance(wanted, list) else [wanted]
                    if not values or any(isinstance(v, (dict, list)) or v is None for v in values):
                        self.add(loc + ("reduce", group, path), "a condition is a value or a list of values")

    def conversions(self, loc: Loc, kind: str, spec: InboundSpec) -> None:
        """convert's units and chooser, and unit_of naming a converted field of the same kind."""
        model = KINDS[kind]
        plain = [
            n for group in (spec.parent_fields, spec.fields) for n, f in group.items()
            if f.convert is None and f.unit_of is None and not f.reads_fields
        ]
        converted = [n for n, f in spec.fields.items() if f.convert is not None]
        for target, field in spec.fields.items():
            floc = loc + ("fields", target)
            convert = field.convert
            if convert is not None:
                if field.value_type not in ("str", "decimal"):
                    self.add(floc + ("convert",), f"'convert' needs type str or decimal (this field has type "
                             f"{field.value_type})", at_key=True)
                targets = {convert.to: ("convert", "to")} if isinstance(convert.to, str) else {
                    unit: ("convert", "to", key) for key, unit in convert.to.items()
                }
                for unit, where in targets.items():
                    if unit not in units.UNITS:
                        self.add(floc + where, f"unknown unit {unit!r}; {expected(unit, units.UNITS)}")
                if isinstance(convert.to, dict) and convert.by is None:
                    self.add(floc + ("convert",), "a table of units in 'to' needs 'by': the canonical field "
                             "that picks the row", at_key=True)
                if isinstance(convert.to, str) and convert.by is not None:
                    self.add(floc + ("convert", "by"), "'by' is only for a table of units in 'to'", at_key=True)
                if convert.by is not None and convert.by not in plain:
                    if convert.by in model.model_fields:
                        message = f"{kind}.{convert.by} is not mapped by a plain field of this kind"
                    else:
                        message = self.no_field(kind, convert.by, model)
                    self.add(floc + ("convert", "by"), message)
            for index, choice in enumerate(field.first or ()):
                condition = getattr(choice, "condition", None)
                if condition is not None and condition[0] not in plain:
                    if condition[0] in model.model_fields:
                        message = f"{kind}.{condition[0]} is not mapped by a plain field of this kind"
                    else:
                        message = self.no_field(kind, condition[0], model)
                    self.add(floc + ("first", index, "when"), message)
            if field.unit_of is not None and field.unit_of not in converted:
                hint = expected(field.unit_of, converted) if converted else "no field of this kind has 'convert'"
                self.add(floc + ("unit_of",), f"{field.unit_of!r} is not a converted field; {hint}")

    # outbound -------------------------------------------------------------------------

    def outbound(self, loc: Loc, kind: str, spec: OutboundSpec) -> None:
        model = KINDS[kind]
        if spec.key is not None and spec.key not in model.model_fields:
            self.add(loc + ("key",), self.no_field(kind, spec.key, model))
        self.outbound_fields(loc + ("fields",), kind, model, spec.fields)
        if spec.balance is not None:
            self.balance(loc + ("balance",), spec)

    def balance(self, loc: Loc, spec: OutboundSpec) -> None:
        """``balance`` names a field built with ``items`` whose amounts sum to zero for any record."""
        assert spec.balance is not None
        field = spec.fields.get(spec.balance.items)
        if field is None or field.items is None:
            built = [t for t, f in spec.fields.items() if f.items is not None]
            hint = expected(spec.balance.items, built) if built else "no field of this kind has 'items'"
            self.add(loc + ("items",), f"{spec.balance.items!r} is not a field built with 'items'; {hint}")
            return
        problem_text = outbound.static_imbalance(field.items, spec.balance)
        if problem_text is not None:
            self.add(loc, problem_text, at_key=True)

    def outbound_fields(self, loc: Loc, what: str, model: type[BaseModel], fields: dict[str, FieldSpec]) -> None:
        seen: list[str] = []
        for target, spec in fields.items():
            floc = loc + (target,)
            unbuildable = outbound.path_problem(target)
            if unbuildable is not None:
                self.add(floc, unbuildable, at_key=True)
            for other in seen:
                if outbound.clashes(target, other):
                    self.add(floc, f"vendor path {target!r} clashes with {other!r}", at_key=True)
            seen.append(target)
            self.common(floc, spec, inbound=False)
            for key in _INBOUND_ONLY:
                if getattr(spec, key) is not None:
                    self.add(floc + (key,), f"'{key}' is only for inbound mappings", at_key=True)
            if spec.negate and spec.value_type != "decimal":
                self.add(floc + ("negate",), f"'negate' turns a number's sign: it needs type decimal "
                         f"(this field has type {spec.value_type})", at_key=True)
            if spec.items is not None:
                for index, item in enumerate(spec.items):
                    self.outbound_fields(floc + ("items", index), what, model, item)
                continue
            source = spec.from_
            if source is None or spec.has_const:
                continue
            name = outbound.message_value(source)
            if name is not None:
                if name not in outbound.MESSAGE_VALUES:
                    self.add(floc + ("from",), f"no message value {source!r}; "
                             f"{expected(name, outbound.MESSAGE_VALUES)} (written $name)")
                continue
            if source not in model.model_fields:
                self.add(floc + ("from",), self.no_field(what, source, model))
                continue
            annotation = model.model_fields[source].annotation
            allowed = literal_values(annotation)
            if spec.map is not None and allowed is not None:
                for canonical_value in spec.map:
                    if canonical_value not in allowed:
                        self.add(
                            floc + ("map", canonical_value),
                            f"{canonical_value!r} is not a valid {what}.{source}; {expected(canonical_value, allowed)}",
                            at_key=True,
                        )
                uncovered = [v for v in allowed if v not in spec.map]
                if uncovered and spec.unknown != "default":
                    self.add(floc + ("map",), f"no vendor value for {what}.{source} {', '.join(map(repr, uncovered))}")
            if spec.each_fields is not None:
                nested = nested_model(annotation)
                if nested is None:
                    self.add(floc + ("each_fields",), f"{what}.{source} does not hold a list of records", True)
                    continue
                self.outbound_fields(floc + ("each_fields",), f"{what}.{source}", nested, spec.each_fields)

    # both -----------------------------------------------------------------------------

    def common(self, loc: Loc, spec: FieldSpec, inbound: bool) -> None:
        sources = spec.sources
        if not sources:
            self.add(loc, "needs 'from' (where the value comes from), 'const' (a fixed value), 'concat' "
                     "(several vendor fields joined), 'first' (the first of several present), 'reduce' (from a "
                     "child list), 'unavailable' (the vendor cannot provide it) or, outbound, 'items' (objects "
                     "built from the record)")
        elif len(sources) > 1:
            self.add(loc, f"give only one of {', '.join(repr(s) for s in sources)}")
        if "separator" in spec.model_fields_set and spec.concat is None:
            self.add(loc + ("separator",), "'separator' is only used with 'concat'", at_key=True)
        for key in ("transform", "each"):
            for index, name in enumerate(getattr(spec, key) or ()):
                if name not in TRANSFORMS:
                    self.add(loc + (key, index), f"unknown transform {name!r}; {expected(name, TRANSFORMS)}")
        if inbound:
            for key in ("items", "negate"):
                if key in spec.model_fields_set:
                    self.add(loc + (key,), f"'{key}' is only for outbound mappings", at_key=True)
        self.unknown_values(loc, spec)
        self.zone(loc + ("timezone",), spec.timezone)
        vtype = spec.value_type
        if vtype == "list":
            if spec.transform:
                self.add(loc + ("transform",), "a list applies transforms to each element: use 'each'", True)
            if spec.map is not None:
                self.add(loc + ("map",), "'map' does not apply to a list", True)
            if spec.each is not None and spec.each_fields is not None:
                self.add(loc + ("each_fields",), "give either 'each' or 'each_fields', not both", True)
            if spec.split is not None and spec.each_fields is not None:
                self.add(loc + ("split",), "'split' gives a list of texts: use 'each', not 'each_fields'", True)
        else:
            for key in ("split", "each", "each_fields"):
                if getattr(spec, key) is not None:
                    self.add(loc + (key,), f"'{key}' is only for type list (this field has type {vtype})", True)
        self.formats(loc, spec, vtype)
        if spec.places is not None:
            if inbound:
                self.add(loc + ("places",), "'places' is only used when writing to the vendor (outbound)", True)
            elif vtype != "decimal":
                self.add(loc + ("places",), f"'places' is only for type decimal (this field has type {vtype})", True)

    def unknown_values(self, loc: Loc, spec: FieldSpec) -> None:
        if spec.unknown is None:
            return
        if spec.map is None:
            self.add(loc + ("unknown",), "'unknown' says what to do with a value 'map' does not list: add a 'map'",
                     at_key=True)
        elif spec.unknown == "default" and not spec.has_default:
            self.add(loc + ("unknown",), "'unknown: default' needs a 'default' value for this field")

    def formats(self, loc: Loc, spec: FieldSpec, vtype: str) -> None:
        if spec.format is not None:
            if vtype not in ("datetime", "date", "duration"):
                self.add(loc + ("format",), f"'format' is only for type datetime, date or duration "
                         f"(this field has type {vtype})")
            else:
                needs_zone = vtype == "datetime" and spec.timezone is None
                self.check_format(loc + ("format",), spec.format, vtype, needs_zone=needs_zone)
        time_of_day = spec.time_of_day
        if time_of_day is not None:
            if vtype != "datetime":
                self.add(loc + ("time_of_day",), f"'time_of_day' completes a date-time: it needs type datetime "
                         f"(this field has type {vtype})", at_key=True)
            self.check_format(loc + ("time_of_day", "format"), time_of_day.format, "time_of_day", needs_zone=False)
            if self.spec.timezone is None and spec.timezone is None:
                self.add(loc + ("time_of_day",), "a date plus a time of day is plant-local time: set 'timezone' at "
                         "the top of the file", at_key=True)

    def check_format(self, loc: Loc, fmt: str, vtype: str, needs_zone: bool) -> None:
        named = dates.NAMED_FORMATS[vtype]
        if fmt in named:
            return
        if vtype == "duration" or "%" not in fmt:
            patterns = "" if vtype == "duration" else " or a pattern like '%Y-%m-%d %H:%M:%S'"
            self.add(loc, f"unknown {vtype.replace('_', ' ')} format {fmt!r}; {expected(fmt, named)}{patterns}")
        elif not dates.is_usable_pattern(fmt):
            self.add(loc, f"{fmt!r} is not a usable format (use {' or '.join(named)} or a pattern like "
                     "'%Y-%m-%d %H:%M:%S')")
        elif needs_zone and dates.is_local_pattern(fmt) and self.spec.timezone is None:
            self.add(loc, f"{fmt!r} reads plant-local times: set 'timezone' at the top of the file")

    @staticmethod
    def no_field(what: str, name: str, model: type[BaseModel]) -> str:
        return f"{what} has no field {name!r}; {expected(name, model.model_fields)}"
