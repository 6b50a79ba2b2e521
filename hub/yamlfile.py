"""Safe, limited YAML loading with pydantic validation whose errors point at file:line:column.

IT teams edit these files by hand, so an error must say exactly where to look and
what was expected; a stack trace into pydantic internals is no help to them.

Every YAML file the hub reads goes through :class:`LimitedLoader`: the safe loader (no tags
that build Python objects) with three limits, each refused with a located ``ConfigError``
before any work grows with the document:

* size: a file above ``max_bytes`` (1 MB) is refused before it is read in full;
* depth: collections nested deeper than ``max_depth`` (50), counting what aliases bring in;
* aliases: every alias counts the nodes it stands for (nested aliases expanded); when the
  document's aliases together stand for more than ``max_alias_nodes`` (10,000) nodes, the file
  is refused. A "billion laughs" file is refused after a few hundred events, and an alias to a
  collection that contains it (a cycle) is refused outright.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class YamlLimits:
    max_bytes: int = 1_000_000
    max_depth: int = 50
    max_alias_nodes: int = 10_000


DEFAULT_LIMITS = YamlLimits()


@dataclass(frozen=True)
class ConfigProblem:
    file: str
    line: int
    column: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.field}: {self.message}"


class ConfigError(ValueError):
    """All problems found in one file, so they can be fixed in one pass."""

    def __init__(self, problems: list[ConfigProblem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class YamlLimitError(yaml.MarkedYAMLError):
    """A document over one of the limits. A MarkedYAMLError, so callers' syntax handling reports it too."""


def _limit_error(message: str, mark: yaml.Mark | None) -> YamlLimitError:
    return YamlLimitError(problem=message, problem_mark=mark)


class LimitedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses documents too deep or with aliases standing for too much."""

    limits: YamlLimits = DEFAULT_LIMITS

    def __init__(self, stream: Any, limits: YamlLimits | None = None):
        super().__init__(stream)
        if limits is not None:
            self.limits = limits
        self._depth = 0  # collections open around the node being composed
        self._alias_nodes = 0  # nodes the document's aliases stand for, so far
        # (expanded node count, collection height) of every composed collection, by id(node)
        self._measures: dict[int, tuple[int, int]] = {}
        self._open_anchors: set[str] = set()

    def compose_document(self) -> Any:
        node = super().compose_document()
        self._measures.clear()  # node ids are only stable while the tree is being built
        self._alias_nodes = 0
        return node

    def _measure(self, node: yaml.Node) -> tuple[int, int]:
        return self._measures.get(id(node), (1, 0))

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            if event.anchor in self._open_anchors:
                raise _limit_error(f"alias *{event.anchor} refers to a collection that contains it", event.start_mark)
            node = super().compose_node(parent, index)  # raises on an undefined alias
            size, height = self._measure(node)
            self._alias_nodes += size
            if self._alias_nodes > self.limits.max_alias_nodes:
                raise _limit_error(
                    f"alias *{event.anchor} takes the document's aliases beyond {self.limits.max_alias_nodes} "
                    "expanded nodes (an alias bomb?); write the values out or use fewer aliases",
                    event.start_mark,
                )
            self._check_depth(self._depth + height, event.start_mark, f" through alias *{event.anchor}")
            return node
        event = self.peek_event()
        if not isinstance(event, yaml.CollectionStartEvent):
            return super().compose_node(parent, index)
        self._depth += 1
        self._check_depth(self._depth, event.start_mark, "")
        if event.anchor is not None:
            self._open_anchors.add(event.anchor)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
            self._open_anchors.discard(event.anchor)
        children = node.value if isinstance(node, yaml.SequenceNode) else [n for pair in node.value for n in pair]
        measures = [self._measure(child) for child in children]
        self._measures[id(node)] = (1 + sum(m[0] for m in measures), 1 + max((m[1] for m in measures), default=0))
        return node

    def _check_depth(self, depth: int, mark: yaml.Mark, how: str) -> None:
        if depth > self.limits.max_depth:
            raise _limit_error(f"nested deeper than {self.limits.max_depth} levels{how}", mark)


def _field_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _node_at(root: yaml.Node, loc: tuple[Any, ...]) -> yaml.Node:
    """The deepest YAML node along a pydantic error location, to get a line number."""
    node = root
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(part):
                    child = value
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
        if child is None:
            break
        node = child
    return node


def _too_big(name: str, size: int, limits: YamlLimits) -> ConfigError:
    message = f"file is {size} bytes, over the limit of {limits.max_bytes} bytes for a YAML file"
    return ConfigError([ConfigProblem(name, 1, 1, "(file)", message)])


def yaml_error(exc: yaml.MarkedYAMLError, name: str) -> ConfigError:
    """A located ConfigError for a YAML syntax error or a refused limit."""
    mark = exc.problem_mark
    file = mark.name if mark is not None and mark.name and not mark.name.startswith("<") else name
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    field = "(limits)" if isinstance(exc, YamlLimitError) else "(syntax)"
    return ConfigError([ConfigProblem(file, line, col, field, str(exc.problem))])


def read_limited(path: Path | str, limits: YamlLimits = DEFAULT_LIMITS) -> bytes:
    """A YAML file's bytes; a file over the size limit is refused without reading it in full."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(limits.max_bytes + 1)
            if len(raw) > limits.max_bytes:
                handle.seek(0, 2)
                raise _too_big(str(path), max(handle.tell(), len(raw)), limits)
    except OSError as exc:
        raise ConfigError([ConfigProblem(str(path), 1, 1, "(file)", f"cannot read: {exc.strerror}")]) from None
    return raw


def decode(raw: bytes, name: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigProblem(name, 1, 1, "(file)", f"not UTF-8 text: {exc.reason}")]) from None


def compose_node(text: str, name: str, limits: YamlLimits = DEFAULT_LIMITS) -> yaml.Node | None:
    """The node tree of one YAML document, every mark naming ``name``; refused over the limits."""
    if len(text) > limits.max_bytes or len(text.encode("utf-8")) > limits.max_bytes:
        raise _too_big(name, len(text.encode("utf-8")), limits)
    loader = LimitedLoader(text, limits)
    loader.name = name  # every mark of this file's nodes names the file
    try:
        return loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        raise yaml_error(exc, name) from None
    finally:
        loader.dispose()


def construct(node: yaml.Node | None, name: str) -> Any:
    """Plain data from a node tree composed by :func:`compose_node` (safe tags only)."""
    if node is None:
        return None
    loader = LimitedLoader("")
    try:
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        raise yaml_error(exc, name) from None
    finally:
        loader.dispose()


def compose(text: str, name: str, limits: YamlLimits = DEFAULT_LIMITS) -> tuple[Any, yaml.Node | None]:
    """Parse YAML with the limited safe loader, keeping the node tree for locations."""
    node = compose_node(text, name, limits)
    return construct(node, name), node


def problems_from(exc: ValidationError, node: yaml.Node | None, name: str) -> list[ConfigProblem]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        located = _node_at(node, loc) if node is not None else None
        mark = located.start_mark if located is not None else None
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = err["msg"]
        if err["type"] not in ("missing", "extra_forbidden") and "input" in err:
            message += f" (found {err['input']!r})"
        problems.append(ConfigProblem(name, line, col, _field_path(loc), message))
    return problems


def load_validated(path: Path | str, model: type[M], limits: YamlLimits = DEFAULT_LIMITS) -> M:
    path = Path(path)
    name = str(path)
    data, node = compose(decode(read_limited(path, limits), name), name, limits)
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as exc:
        raise ConfigError(problems_from(exc, node, name)) from None
