"""One side of a proxied connection as an asyncio Protocol.

During the handshake (startup, TLS, authentication) the session reads from it with ``await``; once
relaying, the bytes go straight to a sink callback with no coroutine or queue in between, which is what
keeps the per-message cost low (DESIGN.md, performance design). Flow control is explicit: the session
pauses reading one side while the other side's write buffer is full.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable
from typing import cast

from gateway.pgwire.messages import MessageTooLarge, ProtocolError
from gateway.pgwire.startup import startup_packet_length

__all__ = ["Endpoint", "PeerClosedError"]

_HEADER = 5


class PeerClosedError(Exception):
    """The peer went away while we waited for its bytes."""


class Endpoint(asyncio.Protocol):
    """A transport plus a read buffer; see the module docstring for the two modes."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._waiter: asyncio.Future[None] | None = None
        self._sink: Callable[[bytes], None] | None = None
        self._on_lost: Callable[[Exception | None], None] | None = None
        self._on_drained: Callable[[], None] | None = None
        self._on_full: Callable[[], None] | None = None
        self.closed = False
        self.lost_exc: Exception | None = None
        self.write_paused = False

    # --- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)
        keep_alive(transport.get_extra_info("socket"))

    def data_received(self, data: bytes) -> None:
        sink = self._sink
        if sink is not None:
            sink(data)
            return
        self._buf += data
        self._wake()

    def eof_received(self) -> bool | None:
        return None  # close the transport: PostgreSQL has no half-closed connections

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.lost_exc = exc
        self._wake()
        if self._on_lost is not None:
            self._on_lost(exc)

    def pause_writing(self) -> None:
        self.write_paused = True
        if self._on_full is not None:
            self._on_full()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._on_drained is not None:
            self._on_drained()

    # --- handshake mode -------------------------------------------------------------------------

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _fill(self, n: int) -> None:
        while len(self._buf) < n:
            if self.closed:
                raise PeerClosedError("connection closed by peer")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def buffered(self) -> int:
        return len(self._buf)

    async def read_exact(self, n: int) -> bytes:
        await self._fill(n)
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    async def read_startup_packet(self) -> bytes:
        """The untyped first packet (length includes itself); length checked before the body arrives."""
        await self._fill(4)
        length = startup_packet_length(self._buf)
        assert length is not None
        return await self.read_exact(length)

    async def read_message(self, max_len: int) -> tuple[int, bytes]:
        """One typed message as (type, body)."""
        await self._fill(_HEADER)
        length = int.from_bytes(self._buf[1:5], "big")
        if length < 4:
            raise ProtocolError(f"invalid message length {length}")
        if length > max_len:
            raise MessageTooLarge(f"message of {length} bytes exceeds the limit of {max_len}")
        msg = await self.read_exact(1 + length)
        return msg[0], msg[5:]

    def write(self, data: bytes | bytearray) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    async def start_tls(self, context: ssl.SSLContext, *, server_side: bool, hostname: str | None) -> None:
        """Upgrade in place; refuses if the peer already sent bytes that would bypass TLS (CVE-2021-23214)."""
        if self._buf:
            raise ProtocolError("unencrypted data after the TLS request")
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        new = await loop.start_tls(
            self.transport,
            self,
            context,
            server_side=server_side,
            server_hostname=hostname,
            ssl_handshake_timeout=15.0,
        )
        if new is None:
            raise PeerClosedError("connection closed during the TLS handshake")
        self.transport = new

    def ssl_object(self) -> ssl.SSLObject | None:
        if self.transport is None:
            return None
        obj = self.transport.get_extra_info("ssl_object")
        return obj if isinstance(obj, ssl.SSLObject) else None

    # --- relay mode -----------------------------------------------------------------------------

    def relay(
        self,
        sink: Callable[[bytes], None],
        on_lost: Callable[[Exception | None], None],
        on_full: Callable[[], None],
        on_drained: Callable[[], None],
    ) -> None:
        """Hand every further byte to ``sink``; bytes already buffered are delivered first."""
        self._sink = sink
        self._on_lost = on_lost
        self._on_full = on_full
        self._on_drained = on_drained
        if self._buf:
            data = bytes(self._buf)
            self._buf.clear()
            sink(data)
        if self.closed:
            on_lost(self.lost_exc)

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


def keep_alive(sock: socket.socket | None) -> None:
    """TCP keepalive on both legs of a session: a statement held for a person can leave a connection silent
    for minutes, and a NAT or firewall between would drop it unseen; a dead peer is found in ~2 minutes."""
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 6)):
            option = getattr(socket, name, None)  # Linux and most BSDs; macOS lacks TCP_KEEPIDLE
            if option is not None:
                sock.setsockopt(socket.IPPROTO_TCP, option, value)
