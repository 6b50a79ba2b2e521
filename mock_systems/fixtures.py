"""Loading fixture files and the optional on-disk state of the mocks.

Fixtures are the plant data the mocks serve (read-only, reloaded on every start); state is what
clients change (PTW holds, ERP documents), kept in memory and, when a `state_dir` is given,
journalled to one JSON-lines file per system so that a fresh server process sees earlier runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class FixtureError(ValueError):
    """A fixture file is missing or is not the documented shape."""


def load_fixture(fixtures_dir: Path, relative: str, expect: type = list) -> Any:
    path = Path(fixtures_dir) / relative
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FixtureError(f"{path}: fixture file not found") from None
    except json.JSONDecodeError as exc:
        raise FixtureError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None
    if not isinstance(data, expect):
        raise FixtureError(f"{path}: expected a JSON {expect.__name__}, got {type(data).__name__}")
    if expect is list:
        for index, item in enumerate(data):
            if not isinstance(item, dict):
                raise FixtureError(f"{path}: item {index} is not a JSON object")
    return data


class StateJournal:
    """One system's client-made changes as an append-only JSON-lines file.

    Appending one line per change keeps a write O(1) however much state has piled up (a
    whole-state rewrite per change made large benchmark runs quadratic). A torn last line,
    left by a process killed mid-write, is ignored on replay.
    """

    def __init__(self, state_dir: Path, name: str):
        self.path = Path(state_dir) / f"{name}.jsonl"

    def replay(self) -> list[dict]:
        """Every whole change in order; a torn tail is cut off so later appends start clean."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        changes, kept = [], 0
        for line in data.splitlines(keepends=True):
            try:
                if not line.endswith(b"\n"):
                    raise ValueError("no line end")
                changes.append(json.loads(line))
            except ValueError:
                break
            kept += len(line)
        if kept < len(data):
            with open(self.path, "r+b") as handle:
                handle.truncate(kept)
        return changes

    def append(self, changes: list[dict]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps(change, ensure_ascii=False) + "\n" for change in changes)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(text)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
