"""Drains the audit spool to NATS JetStream, in order, exactly once per Nats-Msg-Id.

Statements never wait for NATS: they wait for the spool. This task publishes what the spool made durable,
keeping up to ``max_in_flight`` acknowledgements outstanding, and moves the spool's cursor over the
contiguous acknowledged prefix only. Any error — disconnect, ack timeout, no stream (a "no responders"
status), a stream refusing (an ``error`` ack) — restarts from the first unacknowledged record after a
backoff, on a new connection; JetStream's duplicate window drops re-sends of records that did land. Nothing
is skipped, so a record JetStream refuses forever stops the drain (and, once the spool fills, the gateway):
that is the fail-closed choice for an audit trail.

Cost. ``JetStreamContext.publish_async`` draws a random inbox per message (a ``getrandom`` syscall) and
creates a future, a Msg and a coroutine per ack: ~35 µs of CPU per event flat out, 45-110 µs at 4000-2000
events/s (bench/publisher_cost.py). Here each record is a core publish with reply subject
``<inbox>.<spool seq>``, ``<inbox>`` drawn once per connection, and one wildcard subscription ``<inbox>.*``
receives every PubAck (``{"stream", "seq", "duplicate"?}`` or ``{"error": {...}}``; an empty message with
status 503 means no stream listens on the subject). The token in the ack's subject names the record; the
server's own PubAck format is recognised without ``json.loads``. The pump wakes once per quarter window of
acks (or when all are in, or on an error), not per ack. After an error it still waits for the acks of the
records ahead of the refused one, so the cursor gets as far as it can. Rounds of fewer than a quarter
window go out at most once per ``_ROUND_GAP`` (5 ms): a round costs about the same CPU whatever its size,
and a lone event after a quiet spell still goes out at once.

Two nats-py internals carry the hot path, because the public calls cost more than the rest together
(measured: ~8 µs per event each on a 2-core EPYC). They are identical in nats-py 2.9.0 and 2.16.0, the
ends of the supported range, and each has the public API behind it:
- publish: a batch's HPUB commands are built here and queued with ``Client._send_command`` once, then
  ``Client._flush_pending`` kicks nats-py's flusher task, which writes as soon as the pump yields (a lone
  event is not held back). Records whose subject, id or size the inline encoder does not vouch for go
  through ``Client.publish``, which validates them (and raises like before).
- acks: the client's ``_process_msg`` is wrapped on this connection's instance only, so plain messages on
  ``<inbox>.*`` are handled straight from the protocol parser; all other messages, and status messages
  (no responders), take nats-py's normal path to the subscription callback, which handles acks as well —
  so if a future nats-py stopped calling ``_process_msg``, acks would still arrive, only slower.
If the attributes are missing, the publisher logs once and uses ``Client.publish`` only.

Acks belong to one connection: its handlers update that connection's ``_Flight`` only, so a late ack from
a closed connection can never move the cursor of the next one. The pump runs as its own task per
connection, so a lost connection cancels whatever it waits on (acks or new records).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal, Protocol

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from gateway.spool import Spool
from gateway.spool_waits import SpoolUnavailable
from pcigate.natsconn import NatsUnavailableError, connect_once

log = logging.getLogger(__name__)

_BACKOFF_MIN = 0.1
_BACKOFF_MAX = 5.0
_READ_BYTES = 1 << 20
_CONNECT_WITHIN = 5.0
# Small rounds go out at most once per gap; one after a quiet gap goes at once. A round costs two loop
# wake-ups, a socket write and a read (~150 µs of CPU here) whatever its size: at 2000 events/s this took
# the publisher from ~73 to ~28-31 µs per event, for at most 5 ms more until an event is in JetStream.
_ROUND_GAP = 0.005
_MSG_ID = "Nats-Msg-Id"
_HDR_LEN = len(b"NATS/1.0\r\nNats-Msg-Id: \r\n\r\n")  # + len(msg id)
_STATUS = "Status"
_NO_RESPONDERS = "503"
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


class _Record(Protocol):
    """What ``Spool.read`` returns per event (only its reader API is relied on)."""

    @property
    def seq(self) -> int: ...
    @property
    def subject(self) -> str: ...
    @property
    def msg_id(self) -> str: ...
    @property
    def payload(self) -> bytes: ...


class _ConnectionLostError(Exception):
    """The NATS connection closed under us; in-flight publishes will never be acknowledged."""


class _NotAcceptedError(Exception):
    """JetStream answered a publish with an error, or no stream listens on its subject."""


_EXPECTED = (
    nats.errors.Error,
    NatsUnavailableError,
    OSError,
    TimeoutError,
    SpoolUnavailable,
    _NotAcceptedError,
)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__


def _refusal(seq: int, data: bytes, status: str | None) -> _NotAcceptedError | None:
    """None for a PubAck (a duplicate included: JetStream kept the first copy), else what went wrong."""
    if data.startswith(b'{"stream":') and b'"seq"' in data and b'"error"' not in data:
        return None  # the server's PubAck; json.loads would cost as much as everything else per ack
    if data:
        try:
            ack = json.loads(data)
        except ValueError:
            return _NotAcceptedError(f"unreadable JetStream acknowledgement for record {seq}: {data[:200]!r}")
        if isinstance(ack, dict):
            err = ack.get("error")
            if err is None and "seq" in ack:
                return None
            if isinstance(err, dict):
                return _NotAcceptedError(
                    f"JetStream refused record {seq}: {err.get('description', '?')} "
                    f"(code {err.get('code', '?')}, err_code {err.get('err_code', '?')})"
                )
        return _NotAcceptedError(f"unexpected JetStream acknowledgement for record {seq}: {data[:200]!r}")
    if status == _NO_RESPONDERS:
        return _NotAcceptedError(f"no JetStream stream for record {seq} (no responders)")
    return _NotAcceptedError(f"empty JetStream acknowledgement for record {seq} (status {status})")


def _expire(fut: asyncio.Future[bool]) -> None:
    if not fut.done():
        fut.set_result(False)


class _Flight:
    """One connection's outstanding publishes; only its ack handlers advance ``acked``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, wake_every: int) -> None:
        self.loop = loop
        self.wake_every = wake_every
        self.inbox = ""
        self.cut = 0  # len(inbox) + 1: where the seq token starts in an ack's subject
        self.pending: deque[int] = deque()  # seqs sent and not yet in the acknowledged prefix, in order
        self.early: set[int] = set()  # acknowledged, but behind an unacknowledged one
        self.sent_at: deque[tuple[int, float]] = deque()  # (last seq of a batch, when it was sent)
        self.acked = 0  # end of the contiguous acknowledged prefix (a spool seq; 0: none yet)
        self.count = 0  # records in that prefix
        self.seen = 0  # ``count`` when the pump last looked
        self.error: BaseException | None = None
        self.refused = 0  # the lowest seq that ``error`` is about (0: stop at once)
        self.lost = False
        self.task: asyncio.Task[None] | None = None
        self.wake: asyncio.Future[bool] | None = None

    def on_lost(self) -> None:
        self.lost = True
        if self.task is not None:
            self.task.cancel()

    def _fail(self, seq: int, exc: BaseException) -> None:
        if self.error is None or seq < self.refused:
            self.error, self.refused = exc, seq
        if self.pending and self.pending[0] >= self.refused:  # else the acks ahead of it are still due
            self._wake_pump()

    def _wake_pump(self) -> None:
        fut = self.wake
        if fut is not None and not fut.done():
            fut.set_result(True)

    def stopped(self) -> bool:
        """An error came back and every record ahead of the refused one is acknowledged."""
        return self.error is not None and (not self.pending or self.pending[0] >= self.refused)

    def ack(self, token: bytes | str, data: bytes, status: str | None) -> None:
        try:
            seq = int(token)
        except ValueError:
            return
        try:
            pending = self.pending
            if not pending or not pending[0] <= seq <= pending[-1]:
                return  # not outstanding (any more)
            refused = _refusal(seq, data, status)
            if refused is not None:
                self._fail(seq, refused)
            elif seq == pending[0]:
                pending.popleft()
                n = 1
                early = self.early
                if early:
                    while pending and pending[0] in early:
                        early.discard(seq := pending.popleft())
                        n += 1
                self.acked = seq
                self.count += n
                if (
                    not pending
                    or self.count - self.seen >= self.wake_every
                    or (self.error is not None and pending[0] >= self.refused)
                ):
                    self._wake_pump()
            else:
                self.early.add(seq)
        except Exception as exc:  # a bug here must restart the drain, not lose the ack silently
            self._fail(0, exc)

    async def on_msg(self, msg: Msg) -> None:
        """The subscription callback: status messages, and every ack if the fast hook is not called."""
        self.ack(msg.subject[self.cut :], msg.data, (msg.headers or {}).get(_STATUS))

    async def wait(self, deadline: float) -> bool:
        """Until the pump has work (True) or ``deadline`` passed (False)."""
        fut: asyncio.Future[bool] = self.loop.create_future()
        self.wake = fut
        timer = self.loop.call_at(deadline, _expire, fut)
        try:
            return await fut
        finally:
            timer.cancel()
            self.wake = None


_SendCommand = Callable[[bytes], Awaitable[None]]
_FlushPending = Callable[[], Awaitable[Any]]


class _Wire:
    """The direct paths into one nats-py connection (see the module docstring); None when unavailable."""

    warned = False  # the fallback is logged once per process

    def __init__(self, nc: Client, send: _SendCommand, flush: _FlushPending, reply: str) -> None:
        self.nc = nc
        self.send = send
        self.flush = flush
        self.reply = reply  # "<inbox>."
        self.heads: dict[str, bytes] = {}  # subject -> b"HPUB <subject> <inbox>.", validated once

    @classmethod
    def attach(cls, nc: Client, flight: _Flight) -> _Wire | None:
        send = getattr(nc, "_send_command", None)
        flush = getattr(nc, "_flush_pending", None)
        process = getattr(nc, "_process_msg", None)
        stats = getattr(nc, "stats", None)
        if not (callable(send) and callable(flush) and callable(process) and isinstance(stats, dict)):
            if not _Wire.warned:
                _Wire.warned = True
                log.warning(
                    "audit publisher: this nats-py lacks the internals of its fast path; "
                    "publishing through Client.publish (more CPU per event)"
                )
            return None
        prefix = flight.inbox.encode() + b"."
        cut = len(prefix)
        ack = flight.ack

        async def process_msg(
            sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
        ) -> None:
            if headers is None and subject.startswith(prefix):
                stats["in_msgs"] += 1
                stats["in_bytes"] += len(data)
                ack(subject[cut:], data, None)
                return
            await process(sid, subject, reply, data, headers)

        nc._process_msg = process_msg  # type: ignore[method-assign]  # this instance only
        return cls(nc, send, flush, flight.inbox + ".")

    def _head(self, subject: str) -> bytes | None:
        head = self.heads.get(subject)
        if head is None:
            if not subject or any(c.isspace() for c in subject) or not subject.isprintable():
                return None
            if len(self.heads) > 1024:
                self.heads.clear()
            head = self.heads[subject] = b"HPUB %b %b" % (subject.encode(), self.reply.encode())
        return head

    async def publish(self, records: Sequence[_Record]) -> None:
        """Queue the records' publishes, in order, and kick the flusher."""
        nc = self.nc
        max_payload = nc.max_payload
        out: list[bytes] = []
        sent = nbytes = 0
        for rec in records:
            head = self._head(rec.subject)
            mid = rec.msg_id
            payload = rec.payload
            if head is None or not mid.isprintable() or mid != mid.strip() or len(payload) > max_payload:
                # not something the inline encoder vouches for: the public call validates (or raises)
                if out:
                    await self.send(b"".join(out))
                    out = []
                await nc.publish(rec.subject, payload, f"{self.reply}{rec.seq}", {_MSG_ID: mid})
                continue
            m = mid.encode()
            n = _HDR_LEN + len(m)
            out.append(
                b"%b%d %d %d\r\nNATS/1.0\r\nNats-Msg-Id: %b\r\n\r\n%b\r\n"
                % (head, rec.seq, n, n + len(payload), m, payload)
            )
            sent += 1
            nbytes += len(payload)
        if out:
            await self.send(b"".join(out))
        stats = nc.stats
        stats["out_msgs"] += sent
        stats["out_bytes"] += nbytes
        await self.flush()


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
        loop = asyncio.get_running_loop()
        while True:
            nc: Client | None = None
            try:
                flight = _Flight(loop, max(1, self._max_in_flight // 4))
                nc = await self._connect(flight)
                await self._serve(nc, flight)
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

    async def _connect(self, flight: _Flight) -> Client:
        async def on_lost() -> None:
            flight.on_lost()

        return await connect_once(
            self._servers,
            within=_CONNECT_WITHIN,
            closed_cb=on_lost,
            disconnected_cb=on_lost,
            **self._options,
        )

    async def _serve(self, nc: Client, flight: _Flight) -> None:
        """Subscribe for acks, then pump in a task of its own that a lost connection cancels."""
        flight.inbox = nc.new_inbox()
        flight.cut = len(flight.inbox) + 1
        wire = _Wire.attach(nc, flight)
        await nc.subscribe(flight.inbox + ".*", cb=flight.on_msg)
        if flight.lost:
            raise _ConnectionLostError
        self._state = "connected"
        pump = asyncio.get_running_loop().create_task(self._pump(nc, wire, flight), name="pcigate-publisher")
        flight.task = pump
        try:
            await pump
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if flight.lost and task is not None and not task.cancelling():
                raise _ConnectionLostError from None  # on_lost cancelled the pump; nobody cancelled us
            raise

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

    async def _pump(self, nc: Client, wire: _Wire | None, flight: _Flight) -> None:
        spool = self._spool
        loop = flight.loop
        reply = flight.inbox + "."
        pending, sent_at = flight.pending, flight.sent_at
        max_in_flight, ack_timeout = self._max_in_flight, self._ack_timeout
        sent = spool.published_seq
        last_round = -_ROUND_GAP
        while True:
            room = max_in_flight - len(pending)
            if room > 0 and flight.error is None:
                records = spool.read(sent, room, _READ_BYTES)
                if records and len(records) < flight.wake_every:
                    # a small batch right after another: collect for the rest of the gap (see _ROUND_GAP)
                    hold = last_round + _ROUND_GAP - loop.time()
                    if hold > 0:
                        await asyncio.sleep(hold)
                        records += spool.read(records[-1].seq, room - len(records), _READ_BYTES)
                if records and flight.error is None:
                    last_round = loop.time()
                    if not nc.is_connected:
                        raise _ConnectionLostError
                    # outstanding before they are sent: an ack may be handled while a publish yields
                    pending.extend(rec.seq for rec in records)
                    if wire is not None:
                        await wire.publish(records)
                    else:
                        for rec in records:
                            headers = {_MSG_ID: rec.msg_id}
                            await nc.publish(rec.subject, rec.payload, f"{reply}{rec.seq}", headers)
                    sent = records[-1].seq
                    sent_at.append((sent, loop.time()))
            if not pending and flight.error is None:
                self._recovered()
                await spool.wait_for_records(sent)
                continue
            if flight.count == flight.seen and not flight.stopped():
                while sent_at[0][0] < pending[0]:
                    sent_at.popleft()
                woken = await flight.wait(sent_at[0][1] + ack_timeout)
                if not woken and flight.count == flight.seen and not flight.stopped():
                    if flight.error is not None:
                        raise flight.error  # the acks ahead of the refused record did not come either
                    raise TimeoutError(f"no JetStream acknowledgement within {ack_timeout:g}s")
            if flight.count != flight.seen:
                self.published += flight.count - flight.seen
                flight.seen = flight.count
                self._recovered()
                spool.mark_published(flight.acked)
                self._notify_progress()
            if flight.stopped():
                assert flight.error is not None
                raise flight.error  # everything from the first unacknowledged record is sent again
