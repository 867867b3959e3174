"""The HTTP door's listening socket: connections accepted on it send without Nagle's delay."""

from __future__ import annotations

import asyncio
import socket

from mutualrec.http.serving import _socket


async def _nodelay_of_accepted_connection() -> int:
    listening = _socket("127.0.0.1", 0, reuse_port=False)
    seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def connected(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted = writer.get_extra_info("socket")
        seen.set_result(accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(connected, sock=listening)
    try:
        _reader, writer = await asyncio.open_connection("127.0.0.1", listening.getsockname()[1])
        value = await asyncio.wait_for(seen, 10)
        writer.close()
        return value
    finally:
        server.close()
        await server.wait_closed()


def test_accepted_connections_have_nagle_off() -> None:
    assert asyncio.run(_nodelay_of_accepted_connection()) != 0
