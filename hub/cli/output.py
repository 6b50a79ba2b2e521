"""The one console every `hub` command prints through, and its `--json` output."""

from __future__ import annotations

import json
from collections.abc import Iterable
from enum import Enum
from typing import Any

import typer
from rich.console import Console

console = Console()


def choices(name: str, values: Iterable[str], doc: str) -> type[Enum]:
    """A str enum of `values`: an option whose choices Typer lists in --help and checks."""
    enum = Enum(name, {value: value for value in values}, type=str)
    enum.__doc__ = doc
    return enum


def emit_json(data: Any) -> None:
    """`data` as JSON on stdout: plain text, never wrapped or coloured, so scripts can parse it."""
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))
