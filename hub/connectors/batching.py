"""Batching by distinct keys: one call per batch of IDs in scope, never one per record."""

from __future__ import annotations

from collections.abc import Iterable


def distinct_batches(keys: Iterable[str], size: int) -> list[list[str]]:
    distinct = sorted(set(keys))
    return [distinct[i : i + size] for i in range(0, len(distinct), size)]
