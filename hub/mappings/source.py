"""Reads mapping text into data plus a YAML node tree, resolving per-site overlays.

A site file names its base with ``extends:`` and holds only its differences. They are merged
the way JSON Merge Patch (RFC 7396) merges documents: objects merge key by key, a key set to
null is removed, anything else (lists included) replaces the base's value. The merge happens on
the node tree, and every node keeps the mark of the file it came from, so a problem in the
merged mapping is reported at the file, line and column that caused it.

Only the safe YAML loader is used: tags that would build Python objects are refused.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hub.mappings.suggest import expected
from hub.yamlfile import ConfigError, ConfigProblem, compose_node, construct, decode, read_limited

PACKAGE_DIR = Path(__file__).resolve().parent
SITES_DIR = PACKAGE_DIR / "sites"
_NULL_TAG = "tag:yaml.org,2002:null"
_SOURCE_KEYS = frozenset({"from", "const", "concat", "unit_of", "first", "reduce", "unavailable", "todo"})

Loc = tuple[Any, ...]


@dataclass(frozen=True)
class SourceFile:
    path: Path | None  # resolved; None for text given without a file
    sha256: str  # of this file's own bytes


@dataclass(frozen=True)
class MappingSource:
    """The merged mapping as plain data and as nodes, with the lineage of every file in it."""

    data: Any
    node: yaml.Node | None
    name: str  # "eam-hz02.yaml (extends eam.yaml)"
    sha256: str  # of every file's bytes, base first
    files: tuple[SourceFile, ...]  # base first
    contents: tuple[bytes, ...]  # every file's bytes, base first
    problems: tuple[ConfigProblem, ...]  # found while reading (duplicate keys); loading goes on


def packaged_mappings() -> list[str]:
    """Names of the mapping files shipped with the hub (e.g. "eam")."""
    return sorted(p.stem for p in PACKAGE_DIR.glob("*.yaml"))


def site_overlays() -> list[Path]:
    """The per-site overlay files shipped with the hub."""
    return sorted(SITES_DIR.glob("*.yaml"))


def loc_text(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def locate(root: yaml.Node | None, loc: Loc, at_key: bool, default_file: str) -> tuple[str, int, int]:
    """(file, line, column) of the node at loc (of its key when at_key), or of the deepest node found."""
    if root is None:
        return default_file, 1, 1
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
    return mark.name, mark.line + 1, mark.column + 1


def problem(root: yaml.Node | None, loc: Loc, message: str, default_file: str, at_key: bool = False) -> ConfigProblem:
    file, line, column = locate(root, loc, at_key, default_file)
    return ConfigProblem(file, line, column, loc_text(loc), message)


def read_source(raw: bytes, name: str, source_file: Path | None = None, _chain: tuple[Path, ...] = ()) -> MappingSource:
    """Mapping text (and, for an overlay, the files it extends), merged. Raises ConfigError."""
    text = decode(raw, name)
    node = compose_node(text, name)
    problems = _duplicate_keys(node)
    short = source_file.name if source_file is not None else Path(name).name
    own = SourceFile(source_file, hashlib.sha256(raw).hexdigest())
    extends = _extends_of(node, name)
    if extends is None:
        return MappingSource(construct(node, name), node, short, own.sha256, (own,), (raw,), tuple(problems))
    base_path = _resolve_base(node, extends, name, source_file)
    if base_path in _chain or base_path == source_file:
        raise ConfigError([_extends_problem(node, name, f"{extends!r} leads back to this file (a cycle)")])
    base = read_source(read_limited(base_path), str(base_path), base_path, _chain + ((source_file,) if source_file else ()))
    merged = _merge(base.node, node)
    merged.value = [(k, v) for k, v in merged.value if k.value != "extends"]
    contents = (*base.contents, raw)
    return MappingSource(
        construct(merged, name), merged, f"{short} (extends {base.name})",
        hashlib.sha256(b"".join(contents)).hexdigest(), (*base.files, own), contents,
        base.problems + tuple(problems),
    )


def _extends_of(node: yaml.Node | None, name: str) -> str | None:
    """The value of a top-level ``extends`` key: the base this file overlays."""
    if not isinstance(node, yaml.MappingNode):
        return None
    for key, value in node.value:
        if key.value == "extends":
            if not isinstance(value, yaml.ScalarNode) or value.tag == _NULL_TAG or not value.value.strip():
                raise ConfigError([_extends_problem(node, name, "expected the base mapping's file name")])
            return value.value.strip()
    return None


def _extends_problem(node: yaml.Node | None, name: str, message: str) -> ConfigProblem:
    return problem(node, ("extends",), message, name, at_key=True)


def _resolve_base(node: yaml.Node | None, extends: str, name: str, source_file: Path | None) -> Path:
    """Next to the overlay first, then among the packaged mappings (``eam`` or ``eam.yaml``)."""
    here = source_file.parent if source_file is not None else Path.cwd()
    candidates = [here / extends, PACKAGE_DIR / extends, PACKAGE_DIR / f"{extends}.yaml"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    packaged = [f"{n}.yaml" for n in packaged_mappings()]
    message = f"cannot find {extends!r} next to this file or among the packaged mappings; {expected(extends, packaged)}"
    raise ConfigError([_extends_problem(node, name, message)])


def _merge(base: yaml.Node | None, patch: yaml.Node) -> yaml.Node:
    """RFC 7396 on nodes; merged objects take the overlay's marks, so errors point at the overlay.

    One addition: a field spec in the overlay that says where its value comes from (``from``,
    ``const``, ``concat``, ``unit_of``) replaces the base's source instead of adding a second one.
    """
    if not (isinstance(base, yaml.MappingNode) and isinstance(patch, yaml.MappingNode)):
        return patch
    entries: dict[str, tuple[yaml.Node, yaml.Node]] = {str(k.value): (k, v) for k, v in base.value}
    if any(str(k.value) in _SOURCE_KEYS for k, _ in patch.value):
        entries = {name: entry for name, entry in entries.items() if name not in _SOURCE_KEYS}
    for key, value in patch.value:
        name = str(key.value)
        if isinstance(value, yaml.ScalarNode) and value.tag == _NULL_TAG:
            entries.pop(name, None)
        elif name in entries:
            entries[name] = (key, _merge(entries[name][1], value))
        else:
            entries[name] = (key, value)
    return yaml.MappingNode(
        base.tag, list(entries.values()), patch.start_mark, patch.end_mark, flow_style=base.flow_style
    )


def _duplicate_keys(node: yaml.Node | None, loc: Loc = ()) -> list[ConfigProblem]:
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
                        mark.name, mark.line + 1, mark.column + 1, loc_text(loc + (text,)),
                        f"duplicate key (first at line {earlier.line + 1})",
                    )
                )
            else:
                first[text] = key
            problems.extend(_duplicate_keys(value, loc + (text,)))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            problems.extend(_duplicate_keys(item, loc + (index,)))
    return problems
