"""What the mocks can serve: the hub's own requests sent again by a bare client that does nothing with the replies.

Each system's requests go in the order the hub sent them, one at a time, as the hub sends
them (it has no per-system concurrency setting); every reply is read whole and dropped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

from hub.bench.mocks_process import server_root

TIMEOUT_S = 120


def _content(body: Any) -> bytes | None:
    """The logged body as bytes again: JSON is logged parsed, SOAP as text."""
    if body is None:
        return None
    if isinstance(body, str):
        return body.encode("utf-8")
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def replay(requests: Mapping[str, list[dict]], urls: Mapping[str, str]) -> int:
    """Send every logged request of each system to that system at `urls`; returns how many
    replies came back with another status than the hub got (0 when the mocks started alike)."""
    differing = 0
    for system, entries in requests.items():
        with httpx.Client(base_url=server_root(urls[system]), timeout=TIMEOUT_S) as client:
            for entry in entries:
                reply = client.request(
                    entry["method"],
                    entry["path"],
                    params=entry["query"] or None,
                    content=_content(entry["body"]),
                    headers=entry.get("headers") or {},
                )
                differing += reply.status_code != entry["status"]
    return differing
