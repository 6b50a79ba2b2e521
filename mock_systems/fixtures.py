"""Loading fixture files and the optional on-disk state of the mocks.

Fixtures are the plant data the mocks serve (read-only, reloaded on every start); state is what
clients change (PTW holds, ERP documents), kept in memory and, when a `state_dir` is given,
mirrored to one JSON file per system so that a fresh server process sees earlier runs.
"""

from __future__ import annotations

import json
import os
import tempfile
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


class StateFile:
    """One system's mutable state as a JSON file, written atomically on every change."""

    def __init__(self, state_dir: Path, name: str):
        self.path = Path(state_dir) / f"{name}.json"

    def load(self) -> dict | None:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None

    def save(self, data: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(data, handle, ensure_ascii=False, indent=1)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
