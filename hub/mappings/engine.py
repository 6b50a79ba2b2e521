"""Runs mapping files: vendor records <-> canonical records.

A mapping file is checked once when it is loaded (structure by `hub.mappings.spec`, meaning by
`hub.mappings.checks`) and compiled into small per-field functions (`hub.mappings.compile`), so
mapping a record costs a handful of dict look-ups and one pydantic validation.

Inbound never raises for bad data: every vendor record becomes either a canonical record or a
`Rejected` entry whose reason names the mapping file, the record, the canonical field and the
vendor field. The one exception is a value map with ``unknown: error``: an unlisted value means
the mapping itself is wrong, and `MappingAbort` stops the batch.

A canonical text value (a list's or object's text too) holding a character XML 1.0 does not
allow (NUL and the other C0 controls but tab, LF and CR; lone surrogates; U+FFFE, U+FFFF) is a
reject like any other: zeep refuses such text and PostgreSQL refuses NUL, so one such record
must not fail a whole step. What a `Rejected` carries can always be stored: its payload and
reason show each such character as the escape ``\\uXXXX`` (the reason says so), and a record
whose key holds one is kept without a source key, like a record that has none, since no store
can keep that key and no system can be addressed by it. Outbound raises `OutboundError`
(the hub built the record, so a failure is a bug or a configuration error, not vendor data to
quarantine).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable
from collections.abc import Mapping as AnyMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ValidationError

from hub.mappings import drift, gate_inputs, outbound
from hub.mappings.checks import Checker, structure_problems
from hub.mappings.compile import (
    MISSING,
    OMIT,
    TRANSFORMS,
    Abort,
    Compiler,
    InField,
    OutField,
    RecordState,
    WithUnit,
    build_vendor,
    getter,
)
from hub.mappings.source import (
    PACKAGE_DIR,
    MappingSource,
    SourceFile,
    loc_text,
    packaged_mappings,
    problem,
    read_source,
)
from hub.mappings.spec import KINDS, BalanceSpec, InboundSpec, MappingFile, key_name, key_paths
from hub.mappings.suggest import closest
from hub.mappings.values import FieldError, bad_character, describe_character, find_bad_text, storable, type_name, visible
from hub.model import Canonical
from hub.yamlfile import ConfigError, ConfigProblem, read_limited

__all__ = [
    "InboundResult",
    "Mapping",
    "MappingAbort",
    "OutboundError",
    "Rejected",
    "TRANSFORMS",
    "VendorRecord",
    "load_mapping",
    "packaged_mappings",
    "parse_mapping",
]

Problems = list[tuple[str | None, str]]


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


@dataclass(frozen=True)
class VendorRecord:
    """One vendor record as the engine maps it: for records_at kinds, the enclosing object with one element."""

    key: str | None  # exactly as the vendor wrote it: what is written back and replayed
    payload: Any  # what to map (or replay) to get exactly this record
    own: Any  # the record's own vendor fields: the element, for records_at kinds; else the payload

    @property
    def match_key(self) -> str | None:
        """The key normalised (each part trimmed, upper case) for matching records, never for writing back."""
        return None if self.key is None else "/".join(TRANSFORMS["id"](part) for part in self.key.split("/"))


@dataclass(frozen=True)
class GateFinding:
    """A gate input the file does not read from the vendor, located; ``refused`` without a reason."""

    refused: bool
    problem: ConfigProblem


class OutboundError(ValueError):
    """A canonical record could not be written in the vendor's shape."""

    def __init__(self, reason: str, field: str | None = None):
        self.reason = reason
        self.field = field
        super().__init__(reason)


class MappingAbort(Exception):
    """A value the mapping says must never be unlisted (``unknown: error``): the batch stops.

    Raised when a surprise value means the mapping file itself is wrong, so mapping the rest
    of the batch with it would put wrong records into the hub.
    """

    def __init__(self, reason: str, kind: str, source_key: str | None, field: str):
        self.reason, self.kind, self.source_key, self.field = reason, kind, source_key, field
        super().__init__(reason)


# --------------------------------------------------------------------------- compiled kinds


@dataclass(frozen=True)
class _InKind:
    kind: str
    model: type[Canonical]
    spec: InboundSpec
    key: tuple[Callable[[Any], Any], ...] | None  # one getter per part of the key
    records_at_get: Callable[[Any], Any] | None
    parent_key: tuple[Callable[[Any], Any], ...] | None
    parent_fields: tuple[InField, ...]
    fields: tuple[InField, ...]  # in stage order: plain, converted, unit_of
    labels: dict[str, str]  # canonical field -> "field (from vendor path)" for validation errors


@dataclass(frozen=True)
class _OutKind:
    kind: str
    model: type[Canonical]
    key: str | None
    fields: tuple[OutField, ...]
    balance: BalanceSpec | None


@dataclass(frozen=True)
class _Context:
    """Where a record stands, for messages: its label, key and the prefix of its vendor paths."""

    label: str
    key: str | None
    prefix: str


# --------------------------------------------------------------------------- the mapping


class Mapping:
    """A loaded, checked and compiled mapping file. Immutable; safe to share between threads."""

    def __init__(self, spec: MappingFile, source_file: Path | None, sha256: str, name: str,
                 files: tuple[SourceFile, ...] = (), gate_findings: tuple[GateFinding, ...] = ()):
        self.spec = spec
        # Gate inputs not read from the vendor (hub.mappings.gate_inputs): `hub mappings validate`
        # refuses the file for a refused one and warns about the rest.
        self.gate_findings = gate_findings
        self.system = spec.system
        self.source_file = source_file
        self.sha256 = sha256
        self.name = name  # used in quarantine reasons, e.g. "ptw.yaml" or "eam-hz02.yaml (extends eam.yaml)"
        self.files = files  # every file the mapping was read from, base first
        self.zone = ZoneInfo(spec.timezone) if spec.timezone else None
        compiler = Compiler(self.zone, dict(spec.units), dict(spec.tables))
        self._in = {kind: self._compile_inbound(compiler, kind, s) for kind, s in spec.inbound.items()}
        self._out = {
            kind: _OutKind(
                kind,
                KINDS[kind],
                s.key,
                tuple(compiler.outbound_field(t, f, KINDS[kind]) for t, f in s.fields.items()),
                s.balance,
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
    def _compile_inbound(compiler: Compiler, kind: str, spec: InboundSpec) -> _InKind:
        model = KINDS[kind]
        parent = tuple(compiler.inbound_field(t, f, model) for t, f in spec.parent_fields.items())
        fields = sorted((compiler.inbound_field(t, f, model) for t, f in spec.fields.items()), key=lambda f: f.stage)
        labels = {}
        for group, prefix in ((parent, ""), (fields, f"{spec.records_at}[*]." if spec.records_at else "")):
            for f in group:
                labels[f.target] = f"{f.target} (from {prefix}{f.source})" if f.source else f"{f.target} (const)"
        return _InKind(
            kind=kind,
            model=model,
            spec=spec,
            key=tuple(getter(path) for path in key_paths(spec.key)) or None,
            records_at_get=getter(spec.records_at) if spec.records_at else None,
            parent_key=tuple(getter(path) for path in key_paths(spec.parent_key)) or None,
            parent_fields=parent,
            fields=tuple(fields),
            labels=labels,
        )

    def _inbound_kind(self, kind: str) -> _InKind:
        try:
            return self._in[kind]
        except KeyError:
            raise KeyError(
                f"{self.name} has no inbound mapping for {kind!r}; it maps {', '.join(self._in) or 'nothing'}"
            ) from None

    # inbound ------------------------------------------------------------------------

    def inbound(
        self, kind: str, vendor_records: Iterable[dict[str, Any]], tables: AnyMapping[str, AnyMapping[str, str]] | None = None,
    ) -> InboundResult:
        """Map vendor records of one kind; every record ends up in `records` or `quarantined`.

        ``tables`` holds the rows of the look-up tables the endpoint requests (`hub.mappings.lookups`);
        a field looking up a table not given quarantines its record. Raises MappingAbort (and maps
        nothing) when a field with ``unknown: error`` meets an unlisted value.
        """
        compiled = self._inbound_kind(kind)
        result = InboundResult()
        given = tables or {}
        for index, record in enumerate(vendor_records):
            if compiled.records_at_get is None:
                self._inbound_one(compiled, result, record, record, index, None, given)
            else:
                self._inbound_nested(compiled, result, record, index, given)
        return result

    def vendor_records(self, kind: str, vendor_records: Iterable[Any]) -> list[VendorRecord]:
        """The records ``inbound`` would map, one per canonical record, each with its key.

        Mapping one of them alone gives exactly one record or one rejection; previews and diffs
        use this to show each vendor record next to what it became.
        """
        compiled = self._inbound_kind(kind)
        out = []
        for record in vendor_records:
            if compiled.records_at_get is None or not isinstance(record, AnyMapping):
                out.append(VendorRecord(self._key_of(compiled.key, record), record, record))
                continue
            parent_key = self._key_of(compiled.parent_key, record)
            children = compiled.records_at_get(record)
            if children is MISSING or children is None:
                continue
            if not isinstance(children, (list, tuple)):
                out.append(VendorRecord(parent_key, record, record))
                continue
            for child in children:
                key = self._child_key(compiled, parent_key, child)
                out.append(VendorRecord(key, _with_only_child(record, compiled.spec.records_at or "", child), child))
        return out

    def unmapped_fields(self, kind: str, vendor_records: Iterable[Any]) -> dict[str, int]:
        """Vendor field paths no field spec reads (and the kind does not ``ignore``), with counts.

        Nested objects give leaf paths (``Value.Extra``); elements of a records_at list are
        reported under it (``Parameter[*].Value.Extra``).
        """
        return drift.unmapped_fields(self._inbound_kind(kind).spec, vendor_records)

    def record_key(self, kind: str, record: Any) -> str | None:
        """A vendor record's key as the flavor names it (`key:`), read without mapping the record:
        what an unreadable record is filed under."""
        return self._key_of(self._inbound_kind(kind).key, record)

    def _key_of(self, getters: tuple[Callable[[Any], Any], ...] | None, record: Any) -> str | None:
        """The record's key as the vendor wrote it (parts trimmed, joined by "/"); None if a part is absent."""
        if getters is None or not isinstance(record, AnyMapping):
            return None
        parts = []
        for get in getters:
            value = get(record)
            if value is MISSING or value is None or isinstance(value, (AnyMapping, list, tuple)):
                return None
            text = str(value).strip()
            if not text:
                return None
            parts.append(text)
        return "/".join(parts)

    def _child_key(self, compiled: _InKind, parent_key: str | None, child: Any) -> str | None:
        child_key = self._key_of(compiled.key, child)
        return None if parent_key is None and child_key is None else f"{parent_key or '?'}/{child_key or '?'}"

    def _label(self, compiled: _InKind, key: str | None, where: str, record: Any = None) -> str:
        if key is not None:
            return f"{self.name}: {compiled.kind} {visible(key)}"
        no_key = f" (no {key_name(compiled.spec.key)})" if compiled.spec.key and isinstance(record, AnyMapping) else ""
        return f"{self.name}: {compiled.kind} at {where}{no_key}"

    def _reject(
        self, result: InboundResult, compiled: _InKind, context: _Context, payload: Any, problems: Problems,
        data: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(payload, dict):
            payload = {"_raw": payload}
        payload, escaped = storable(payload)
        key = context.key
        first = next((f for f, _ in problems if f is not None), None)
        reason = context.label + ": " + "; ".join(m for _, m in problems)
        if key is not None and bad_character(key) is not None:
            # No store can keep this key and no system can be addressed by it: the record is
            # kept like one without a key, named (escaped) in its reason and payload only.
            key = None
            reason += (
                "; kept without a source key, since the key cannot be stored or sent back as it is "
                "(a hold cannot be written for it; correct it at the source)"
            )
        if escaped:
            reason += "; in the stored payload each character XML 1.0 does not allow is written as the escape \\uXXXX"
        partial = {
            k: v for k, v in (data or {}).items()
            if isinstance(v, (int, float, bool)) or (isinstance(v, str) and bad_character(v) is None)
        }
        result.quarantined.append(Rejected(compiled.kind, key, payload, first, visible(reason), partial))

    def _run_fields(
        self, compiled: _InKind, fields: tuple[InField, ...], record: Any, context: _Context, state: RecordState,
        problems: Problems,
    ) -> None:
        for f in fields:
            try:
                value = f.run(record, state)
            except FieldError as exc:
                for where, message in exc.items:
                    if f.source is None:
                        problems.append((f.target, f"{f.target} (const): {message}"))
                    else:
                        problems.append((f.target, f"{f.target} (from {context.prefix}{where or f.source}): {message}"))
                continue
            except Abort as exc:
                where = f"{context.prefix}{exc.where or f.source}"
                raise MappingAbort(
                    f"{context.label}: {f.target} (from {where}): {exc.message}; the mapping says an unlisted value "
                    "is an error ('unknown: error'), so this batch was stopped",
                    compiled.kind, context.key, f.target,
                ) from None
            except Exception as exc:  # noqa: BLE001 - inbound never raises for data
                problems.append((f.target, f"{f.target} (from {context.prefix}{f.source}): cannot map: {exc!r}"))
                continue
            if isinstance(value, WithUnit):
                unit_bad = find_bad_text(value.unit) if value.unit is not None else None
                if unit_bad is not None:
                    problems.append((f.target, self._bad_text_message(f, context, " unit", unit_bad[1])))
                    continue
                state.units[f.target] = value.unit
                value = value.value
            bad = find_bad_text(value) if value is not OMIT else None
            if bad is not None:
                problems.append((f.target, self._bad_text_message(f, context, bad[0], bad[1])))
                continue  # never kept, not even as a partial value the gate could read
            if value is not OMIT:
                state.data[f.target] = value

    @staticmethod
    def _bad_text_message(f: InField, context: _Context, where: str, char: str) -> str:
        source = "const" if f.source is None else f"from {context.prefix}{f.source}"
        return f"{f.target}{where} ({source}): contains {describe_character(char)}"

    def _validate(self, compiled: _InKind, data: dict[str, Any], problems: Problems) -> Canonical | None:
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
                deeper = loc_text(loc[1:]) if len(loc) > 1 else ""
                message = err["msg"]
                if err["type"] != "missing" and "input" in err:
                    message += f" (found {err['input']!r})"
                problems.append((target, f"{label}: {deeper + ': ' if deeper else ''}{message}"))
        except Exception as exc:  # noqa: BLE001
            problems.append((None, f"cannot build {compiled.kind}: {exc!r}"))
        return None

    def _inbound_one(
        self, compiled: _InKind, result: InboundResult, record: Any, payload: Any, index: int,
        parent: tuple[RecordState, Problems, str | None, str, str] | None,
        tables: AnyMapping[str, AnyMapping[str, str]],
    ) -> None:
        if parent is None:
            key = self._key_of(compiled.key, record)
            context = _Context(self._label(compiled, key, f"index {index}", record), key, "")
            state, problems = RecordState(tables=tables), []
        else:
            parent_state, parent_problems, parent_key, where, prefix = parent
            key = self._child_key(compiled, parent_key, record)
            context = _Context(self._label(compiled, key, where, record), key, prefix)
            state, problems = RecordState(dict(parent_state.data), tables=tables), list(parent_problems)
        if not isinstance(record, AnyMapping):
            problems.append((None, f"record is not an object (found {type_name(record)})"))
            self._reject(result, compiled, context, payload, problems)
            return
        self._run_fields(compiled, compiled.fields, record, context, state, problems)
        canonical = self._validate(compiled, state.data, problems)
        key_char = bad_character(key) if key is not None else None
        if key_char is not None and not problems:
            # No field reads the key, yet it names the record in quarantine and in replays.
            problems.append((None, f"key {key_name(compiled.spec.key)} contains {describe_character(key_char)}"))
        if canonical is not None and not problems:
            result.records.append(canonical)
            return
        self._reject(result, compiled, context, payload, problems, state.data)

    def _inbound_nested(
        self, compiled: _InKind, result: InboundResult, record: Any, index: int, tables: AnyMapping[str, AnyMapping[str, str]],
    ) -> None:
        """One vendor object holding a list (records_at): one canonical record per element."""
        if not isinstance(record, AnyMapping):
            self._inbound_one(compiled, result, record, record, index, None, tables)
            return
        assert compiled.records_at_get is not None
        records_at = compiled.spec.records_at or ""
        parent_key = self._key_of(compiled.parent_key, record)
        children = compiled.records_at_get(record)
        if children is MISSING or children is None:
            return  # nothing listed, nothing to map
        if not isinstance(children, (list, tuple)):
            context = _Context(self._label(compiled, parent_key, f"index {index}", record), parent_key, "")
            problems: Problems = [(None, f"{records_at}: expected a list, found {type_name(children)}")]
            self._reject(result, compiled, context, record, problems)
            return
        parent_context = _Context(self._label(compiled, parent_key, f"index {index}", record), parent_key, "")
        parent_state, parent_problems = RecordState(tables=tables), []
        self._run_fields(compiled, compiled.parent_fields, record, parent_context, parent_state, parent_problems)
        for position, child in enumerate(children):
            payload = _with_only_child(record, records_at, child)
            prefix = f"{records_at}[{position}]."
            where = f"index {index}, {prefix[:-1]}"
            self._inbound_one(
                compiled, result, child, payload, index, (parent_state, parent_problems, parent_key, where, prefix),
                tables,
            )

    # outbound -----------------------------------------------------------------------

    def outbound(self, kind: str, record: BaseModel, message: AnyMapping[str, Any] | None = None) -> dict[str, Any]:
        """The vendor body for one canonical record, dotted vendor paths expanded into objects.

        ``message`` holds the values fields read with ``from: $name`` (`hub.mappings.outbound`);
        items that must balance and do not raise `OutboundError`, and nothing is sent.
        """
        try:
            compiled = self._out[kind]
        except KeyError:
            raise KeyError(
                f"{self.name} has no outbound mapping for {kind!r}; it maps {', '.join(self._out) or 'nothing'}"
            ) from None
        if not isinstance(record, compiled.model):
            raise TypeError(f"{kind} needs a {compiled.model.__name__}, got {type(record).__name__}")
        key = getattr(record, compiled.key) if compiled.key else None
        label = f"{self.name}: {kind}" + (f" {key}" if key is not None else "")
        try:
            body = build_vendor(compiled.fields, record, message or {})
        except FieldError as exc:
            sources = {f.target: f.source for f in compiled.fields}
            parts = []
            for where, text in exc.items:
                target = where or "?"
                source = sources.get(target.split("[")[0])
                parts.append(f"{target} (from {source}): {text}" if source else f"{target}: {text}")
            first = exc.items[0][0] if exc.items else None
            raise OutboundError(label + ": " + "; ".join(parts), first) from None
        unbalanced = outbound.imbalance(body, compiled.balance) if compiled.balance is not None else None
        if unbalanced is not None:
            raise OutboundError(f"{label}: {unbalanced}", compiled.balance.items)
        return body


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


def _build(source: MappingSource, name: str, source_file: Path | None) -> Mapping:
    problems = list(source.problems)
    try:
        spec = MappingFile.model_validate(source.data if source.data is not None else {})
    except ValidationError as exc:
        raise ConfigError(problems + structure_problems(exc, source.node, name)) from None
    problems += Checker(spec, source.node, name).run()
    if problems:
        raise ConfigError(problems)
    found = tuple(
        GateFinding(f.refused, problem(source.node, f.loc, f.message, name, f.at_key)) for f in gate_inputs.findings(spec)
    )
    return Mapping(spec, source_file, source.sha256, source.name, source.files, found)


def parse_mapping(data: bytes | str, name: str = "<mapping>", source_file: Path | None = None) -> Mapping:
    """Check and compile mapping text. Raises ConfigError listing every problem as file:line:col.

    An overlay (``extends:``) finds its base next to ``source_file`` (or the working directory)
    or among the packaged mappings.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return _build(read_source(raw, name, source_file), name, source_file)


def _resolve(system: str | Path) -> Path:
    if isinstance(system, Path):
        return system
    if "/" in system or "\\" in system or system.endswith((".yaml", ".yml")):
        return Path(system)
    path = PACKAGE_DIR / f"{system}.yaml"
    if not path.is_file():
        best = closest(system, packaged_mappings())
        hint = f"did you mean {best!r}? " if best else ""
        message = f"no packaged mapping {system!r}; {hint}packaged: {', '.join(packaged_mappings())}"
        raise ConfigError([ConfigProblem(system, 1, 1, "(file)", message)])
    return path


def _unchanged(mapping: Mapping) -> bool:
    """Whether every file an overlay was built from still has the bytes it was built from."""
    for source in mapping.files[:-1]:
        try:
            current = hashlib.sha256(source.path.read_bytes()).hexdigest() if source.path else source.sha256
        except OSError:
            return False
        if current != source.sha256:
            return False
    return True


def load_mapping(system: str | Path) -> Mapping:
    """A packaged mapping by system name ("ptw", "eam", "mes", "erp") or a mapping file by path.

    Cached by path and content hash (of the base files too, for an overlay): an edited file is
    re-read and re-checked.
    """
    path = _resolve(system)
    raw = read_limited(path)
    resolved = path.resolve()
    cache_key = (str(resolved), hashlib.sha256(raw).hexdigest())
    with _CACHE_LOCK:
        cached = _CACHE.get(cache_key)
    if cached is not None and _unchanged(cached):
        return cached
    mapping = _build(read_source(raw, str(path), resolved), str(path), resolved)
    with _CACHE_LOCK:
        _CACHE[cache_key] = mapping
    return mapping
