"""Waiting for audit records to become durable: shared by the store (``gateway.spool``) and the
gateway's pipe to it (``gateway.spool_link``), which answer the same question from two processes."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections.abc import Callable

__all__ = ["Callback", "DurableWaits", "SpoolUnavailable"]

log = logging.getLogger("gateway.spool")

Callback = Callable[["SpoolUnavailable | None"], None]


class SpoolUnavailable(Exception):  # noqa: N818 - the contract's name
    """The spool cannot take (or did not make durable) a record: the statement must be refused."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DurableWaits:
    """Mixin: callbacks keyed by record sequence number, called in order once it is durable, or with
    the reason when durability failed. The host keeps ``durable_seq``, ``_failed``, ``_next_seq`` and
    ``_loop`` and calls ``_release_waiters`` / ``_fail_waiters``; everything runs on the loop thread."""

    durable_seq: int
    _failed: str | None
    _next_seq: int
    _loop: asyncio.AbstractEventLoop | None

    def _init_waits(self) -> None:
        self._waiters: list[tuple[int, int, Callback]] = []
        self._tick = itertools.count()

    def when_durable(self, seq: int, callback: Callback) -> None:
        if seq <= self.durable_seq:
            callback(None)
        elif self._failed is not None:
            callback(SpoolUnavailable(self._failed))
        elif seq >= self._next_seq:
            raise ValueError(f"record {seq} was never appended")
        else:
            heapq.heappush(self._waiters, (seq, next(self._tick), callback))

    async def wait_durable(self, seq: int) -> None:
        if seq <= self.durable_seq:
            return
        assert self._loop is not None
        fut: asyncio.Future[None] = self._loop.create_future()

        def done(err: SpoolUnavailable | None) -> None:
            if not fut.done():
                if err is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(err)

        self.when_durable(seq, done)
        await fut

    def _release_waiters(self, seq: int) -> None:
        waiters = self._waiters
        while waiters and waiters[0][0] <= seq:
            _call(heapq.heappop(waiters)[2], None)

    def _fail_waiters(self, reason: str) -> None:
        waiters, self._waiters = self._waiters, []
        for _, _, cb in sorted(waiters):
            _call(cb, SpoolUnavailable(reason))


def _call(cb: Callback, err: SpoolUnavailable | None) -> None:
    try:
        cb(err)
    except Exception:
        log.exception("audit spool durability callback failed")
