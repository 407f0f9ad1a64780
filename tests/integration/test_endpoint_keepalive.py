"""Both legs of a session keep TCP alive: a statement held for a person's decision can leave them silent
for minutes, and a middlebox would otherwise drop them unseen."""

from __future__ import annotations

import asyncio
import socket

import pytest

from gateway.endpoint import Endpoint

pytestmark = pytest.mark.integration


async def test_accepted_and_opened_connections_keep_alive() -> None:
    accepted: list[Endpoint] = []

    def accept() -> Endpoint:
        endpoint = Endpoint()
        accepted.append(endpoint)
        return endpoint

    loop = asyncio.get_running_loop()
    server = await loop.create_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport, _ = await loop.create_connection(Endpoint, "127.0.0.1", port)
    try:
        for _ in range(100):
            if accepted:
                break
            await asyncio.sleep(0.01)
        (inbound,) = accepted
        assert inbound.transport is not None
        for t in (inbound.transport, transport):
            sock = t.get_extra_info("socket")
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            if hasattr(socket, "TCP_KEEPIDLE"):
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 60
    finally:
        transport.close()
        server.close()
        await server.wait_closed()
