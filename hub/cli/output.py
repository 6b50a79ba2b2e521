"""The one console every `hub` command prints through, and its `--json` output."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console

console = Console()


def emit_json(data: Any) -> None:
    """`data` as JSON on stdout: plain text, never wrapped or coloured, so scripts can parse it."""
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))
