"""Safe YAML loading with pydantic validation whose errors point at file:line:column.

IT teams edit these files by hand, so an error must say exactly where to look and
what was expected; a stack trace into pydantic internals is no help to them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


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


def compose(text: str, name: str) -> tuple[Any, yaml.Node | None]:
    """Parse YAML with the safe loader, keeping the node tree for locations."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise ConfigError([ConfigProblem(name, line, col, "(syntax)", str(exc.problem))]) from None
    return data, node


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


def load_validated(path: Path | str, model: type[M]) -> M:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([ConfigProblem(str(path), 1, 1, "(file)", f"cannot read: {exc.strerror}")]) from None
    data, node = compose(text, str(path))
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as exc:
        raise ConfigError(problems_from(exc, node, str(path))) from None
