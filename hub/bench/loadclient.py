"""A lean HTTP/1.1 client for loading the gate-check service: one keep-alive connection per worker.

The load runs on the machine it measures. A general client (httpx) spent about 3 ms of CPU per
request here, as much as a gate check itself, so the figures measured the client. This one
writes a POST and reads the status line, headers and `Content-Length` body, nothing more.
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlsplit

#: A request not answered within this long counts as failed (status 0).
TIMEOUT_S = 10.0


class LoadConnection:
    """`await post(payload)` -> (HTTP status, body); 0 when the request failed. Reconnects as needed."""

    def __init__(self, url: str, token: str):
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.head = (
            f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
        )
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, payload: dict) -> tuple[int, bytes]:
        body = json.dumps(payload, separators=(",", ":")).encode()
        try:
            return await asyncio.wait_for(self._exchange(body), TIMEOUT_S)
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError):
            self.close()
            return 0, b""

    async def _exchange(self, body: bytes) -> tuple[int, bytes]:
        reused = self.writer is not None
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(self.head.replace("{length}", str(len(body))).encode() + body)
        line = await self.reader.readline()
        if not line and reused:
            # The server closed the connection while it was idle (its keep-alive timeout): the
            # request was never read, so it is sent again on a new one.
            self.close()
            return await self._exchange(body)
        parts = line.split(b" ", 2)
        if len(parts) < 2:
            raise ValueError(f"not an HTTP status line: {line[:80]!r}")
        status = int(parts[1])
        length, close = 0, False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        answer = await self.reader.readexactly(length)
        if close:
            self.close()
        return status, answer

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None
