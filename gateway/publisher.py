"""Drains the audit spool to NATS JetStream, in order, exactly once per Nats-Msg-Id.

Statements never wait for NATS: they wait for the spool. This task publishes what the spool made durable,
keeping up to ``max_in_flight`` acknowledgements outstanding (``publish_async``: one pending future per
message, no serial round trip), and moves the spool's cursor over the contiguous acknowledged prefix only.
Any error — disconnect, ack timeout, no stream, a stream refusing — restarts from the first unacknowledged
record after a backoff; JetStream's duplicate window drops re-sends of records that did land. Nothing is
skipped, so a record JetStream refuses forever stops the drain (and, once the spool fills, the gateway):
that is the fail-closed choice for an audit trail.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, Literal

import nats.errors
from nats.aio.client import Client

from gateway.spool import Spool, SpoolUnavailable
from pcigate.natsconn import NatsUnavailableError, connect_once

log = logging.getLogger(__name__)

_BACKOFF_MIN = 0.1
_BACKOFF_MAX = 5.0
_READ_BYTES = 1 << 20
_CONNECT_WITHIN = 5.0
# set by connect_once or by us; a caller's value would conflict
_OWNED_OPTIONS = frozenset(
    {
        "servers",
        "connect_timeout",
        "max_reconnect_attempts",
        "reconnect_time_wait",
        "allow_reconnect",
        "error_cb",
        "closed_cb",
        "disconnected_cb",
    }
)
_EXPECTED = (nats.errors.Error, NatsUnavailableError, OSError, TimeoutError, SpoolUnavailable)


class _ConnectionLostError(Exception):
    """The NATS connection closed under us; in-flight publishes will never be acknowledged."""


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__


class Publisher:
    def __init__(
        self,
        spool: Spool,
        servers: Sequence[str],
        *,
        connect_options: dict[str, object] | None = None,
        max_in_flight: int = 256,
        ack_timeout: float = 5.0,
    ) -> None:
        self._spool = spool
        self._servers = list(servers)
        self._options: dict[str, Any] = {
            k: v for k, v in (connect_options or {}).items() if k not in _OWNED_OPTIONS
        }
        self._max_in_flight = max(1, max_in_flight)
        self._ack_timeout = ack_timeout
        self._state: Literal["connected", "disconnected"] = "disconnected"
        self._outage = False  # an outage was logged and recovery not yet
        self._backoff = _BACKOFF_MIN
        self._progress: list[asyncio.Future[None]] = []
        self.published = 0

    @property
    def state(self) -> Literal["connected", "disconnected"]:
        return self._state

    async def run(self) -> None:
        """Publish until cancelled; never raises for NATS trouble (it waits and retries)."""
        while True:
            nc: Client | None = None
            try:
                lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                nc = await self._connect(lost)
                self._state = "connected"
                await self._pump(nc, lost)
            except asyncio.CancelledError:
                raise
            except _EXPECTED as exc:
                self._down(_describe(exc))
            except _ConnectionLostError:
                self._down("connection closed")
            except Exception as exc:  # a bug must not stop the audit drain; it is retried like an outage
                log.exception("audit publisher: unexpected error")
                self._down(_describe(exc))
            finally:
                self._state = "disconnected"
                if nc is not None:
                    await self._close(nc)
            await asyncio.sleep(self._backoff)
            self._backoff = min(self._backoff * 2, _BACKOFF_MAX)

    async def drain(self, timeout: float) -> bool:  # noqa: ASYNC109 - the contract
        """True once every appended event is acknowledged by JetStream; False after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        spool = self._spool
        while spool.published_seq < spool.last_event_seq:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            fut: asyncio.Future[None] = loop.create_future()
            self._progress.append(fut)
            try:
                await asyncio.wait_for(fut, remaining)
            except TimeoutError:
                return False
        return True

    # ------------------------------------------------------------------ internals

    async def _connect(self, lost: asyncio.Future[None]) -> Client:
        async def on_lost() -> None:
            if not lost.done():
                lost.set_result(None)

        return await connect_once(
            self._servers,
            within=_CONNECT_WITHIN,
            closed_cb=on_lost,
            disconnected_cb=on_lost,
            **self._options,
        )

    @staticmethod
    async def _close(nc: Client) -> None:
        try:
            await asyncio.wait_for(nc.close(), 2.0)
        except Exception as exc:  # closing a broken connection may fail in many ways; it is gone either way
            log.debug("audit publisher: close failed: %s", _describe(exc))

    def _down(self, reason: str) -> None:
        self._state = "disconnected"
        if not self._outage:
            self._outage = True
            log.warning(
                "audit publisher: cannot publish to NATS JetStream (%s); events stay in the spool "
                "(%d pending) and are retried",
                reason,
                self._spool.unpublished,
            )
        else:
            log.debug("audit publisher: still unavailable (%s)", reason)

    def _recovered(self) -> None:
        self._backoff = _BACKOFF_MIN
        if self._outage:
            self._outage = False
            log.info(
                "audit publisher: NATS JetStream reachable again; publishing %d spooled event(s)",
                self._spool.unpublished,
            )

    def _notify_progress(self) -> None:
        waiters, self._progress = self._progress, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def _pump(self, nc: Client, lost: asyncio.Future[None]) -> None:
        spool = self._spool
        js = nc.jetstream(timeout=self._ack_timeout, publish_async_max_pending=self._max_in_flight)
        inflight: deque[tuple[int, asyncio.Future[Any], float]] = deque()
        sent = spool.published_seq
        try:
            while True:
                if lost.done():
                    raise _ConnectionLostError
                room = self._max_in_flight - len(inflight)
                if room > 0:
                    for rec in spool.read(sent, room, _READ_BYTES):
                        fut = await js.publish_async(
                            rec.subject, rec.payload, headers={"Nats-Msg-Id": rec.msg_id}
                        )
                        inflight.append((rec.seq, fut, time.monotonic()))
                        sent = rec.seq
                if not inflight:
                    self._recovered()
                    await self._idle(sent, lost)
                    continue
                head = inflight[0]
                if not head[1].done():
                    await self._await_head(head, lost)
                acked = 0
                while inflight and inflight[0][1].done():
                    seq, fut, _ = inflight.popleft()
                    fut.result()  # raises the JetStream error; everything from here is re-sent later
                    acked = seq
                    self.published += 1
                if acked:
                    self._recovered()
                    spool.mark_published(acked)
                    self._notify_progress()
        finally:
            for _, fut, _ in inflight:
                if fut.done():
                    if not fut.cancelled():
                        fut.exception()  # retrieved: the retry path handles it
                else:
                    fut.cancel()

    async def _await_head(
        self, head: tuple[int, asyncio.Future[Any], float], lost: asyncio.Future[None]
    ) -> None:
        remaining = head[2] + self._ack_timeout - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no JetStream acknowledgement within {self._ack_timeout:g}s")
        done, _ = await asyncio.wait((head[1], lost), timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        if not done:
            raise TimeoutError(f"no JetStream acknowledgement within {self._ack_timeout:g}s")
        if lost in done and not head[1].done():
            raise _ConnectionLostError

    async def _idle(self, after: int, lost: asyncio.Future[None]) -> None:
        waiter = asyncio.ensure_future(self._spool.wait_for_records(after))
        try:
            await asyncio.wait((waiter, lost), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if waiter.done():
                waiter.result()
            else:
                waiter.cancel()
