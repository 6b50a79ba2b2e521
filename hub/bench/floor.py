"""What the mocks can serve: the hub's own requests sent again by a bare client that does nothing with the replies.

Each system's requests go in the order the hub sent them. Reads (GET) go one at a time, as
a listing whose every page names the next must; a run of consecutive writes or batch
queries (POST, PUT, DELETE) goes as wide as the hub sends them, the flavor's `concurrency`.
Every reply is read whole and dropped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from itertools import groupby
from typing import Any

import httpx

from hub.bench.mocks_process import server_root
from hub.connectors.concurrency import bounded_map

TIMEOUT_S = 120


def _content(body: Any) -> bytes | None:
    """The logged body as bytes again: JSON is logged parsed, SOAP as text."""
    if body is None:
        return None
    if isinstance(body, str):
        return body.encode("utf-8")
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _runs(entries: list[dict]) -> Iterator[tuple[bool, list[dict]]]:
    """Consecutive requests grouped: (reads?, the group), in the order they were sent."""
    for reads, group in groupby(entries, key=lambda entry: entry["method"] == "GET"):
        yield reads, list(group)


def replay(requests: Mapping[str, list[dict]], urls: Mapping[str, str], widths: Mapping[str, int]) -> int:
    """Send every logged request of each system to that system at `urls`, writes `widths[system]`
    at a time; returns how many replies came back with another status than the hub got (0 when
    the mocks started alike)."""
    differing = 0
    for system, entries in requests.items():
        with httpx.Client(base_url=server_root(urls[system]), timeout=TIMEOUT_S) as client:

            def send(entry: dict) -> bool:
                reply = client.request(
                    entry["method"],
                    entry["path"],
                    params=entry["query"] or None,
                    content=_content(entry["body"]),
                    headers=entry.get("headers") or {},
                )
                return reply.status_code != entry["status"]

            for reads, group in _runs(entries):
                width = 1 if reads else widths.get(system, 1)
                differing += sum(other for _, other in bounded_map(send, group, width))
    return differing
