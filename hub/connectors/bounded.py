"""Replies read up to a size limit and a deadline, so one answer can neither exhaust the hub's
memory nor hold a request past its time.

A declared Content-Length over the limit is refused before a byte is read; otherwise the
body is read in chunks (after content decoding, so a compressed bomb is caught too) and
refused as soon as it passes the limit. With a deadline, the read is cut off as soon as the
deadline passes between two chunks, however slowly the bytes arrive.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from hub.connectors.deadline import Deadline
from hub.connectors.retry import ReplyTooLarge

DEFAULT_MAX_RESPONSE_BYTES = 50 * 1024 * 1024


def read_capped(
    system: str,
    status: int,
    headers: Mapping[str, str],
    chunks: Iterable[bytes],
    limit: int,
    deadline: Deadline | None = None,
) -> bytes:
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ReplyTooLarge(system, status, limit)
    body = bytearray()
    for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise ReplyTooLarge(system, status, limit)
        if deadline is not None:
            deadline.check()
    return bytes(body)
