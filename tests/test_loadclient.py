"""The bench's lean HTTP/1.1 client against a real server on loopback: a keep-alive connection the
server closed while idle is opened again and the request sent once more; a reply that is not
HTTP counts as a failed request (status 0), never as an exception that stops the load."""

from __future__ import annotations

import asyncio
import json

from hub.bench.loadclient import LoadConnection


async def _serve(handler) -> tuple[asyncio.base_events.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/api/v1/gate-checks"


async def _read_request(reader: asyncio.StreamReader) -> dict:
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return json.loads(await reader.readexactly(length))


def test_a_connection_the_server_closed_while_idle_is_opened_again_and_the_request_sent_again():
    seen: list[dict] = []

    async def one_answer_per_connection(reader, writer):
        seen.append(await _read_request(reader))
        body = b'{"decision":"allow"}'
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()  # no "Connection: close": as a keep-alive timeout closes an idle connection

    async def run():
        server, url = await _serve(one_answer_per_connection)
        async with server:
            connection = LoadConnection(url, "token")
            first = await connection.post({"n": 1})
            await asyncio.sleep(0.1)  # the server has closed the connection meanwhile
            second = await connection.post({"n": 2})
            connection.close()
        return first, second

    first, second = asyncio.run(run())
    assert first == (200, b'{"decision":"allow"}') and second == (200, b'{"decision":"allow"}')
    assert seen == [{"n": 1}, {"n": 2}]


def test_a_reply_that_is_not_http_is_a_failed_request():
    async def garbage(reader, writer):
        await _read_request(reader)
        writer.write(b"garbage\r\n\r\n")
        await writer.drain()
        writer.close()

    async def run():
        server, url = await _serve(garbage)
        async with server:
            connection = LoadConnection(url, "token")
            return await connection.post({"n": 1})

    assert asyncio.run(run()) == (0, b"")
