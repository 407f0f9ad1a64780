"""``pcigate evidence``: folds the audit stream into the ledger and signs checkpoints of it.

Per batch, in order (three pipelined stages, each keeping batch order): fetch it from the durable pull
consumer; turn each message into an entry or a quarantine record and account for every stream sequence
number up to the batch's highest (a hole is read straight from the stream, or recorded as ``audit.gap`` when
the stream no longer has it); commit all of it in one transaction, and only then acknowledge. A crash
anywhere before the commit loses nothing (the messages are redelivered, or read back as holes); a crash
after it duplicates nothing (event ids are unique and the stream position moved in the same transaction).
While the database is unreachable the batch is held, its acknowledgement deadline extended, and the commit
retried with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeVar

import asyncpg
import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from evidence.checkpoint import NoteSigner
from evidence.entries import SUBJECT_PREFIX, to_entry
from evidence.own_events import STREAM, GapCause, OwnEvent, Recorder
from evidence.pull import Puller, stream_sequence
from evidence.store import LedgerStore, NewEntry, Quarantined, StoredCheckpoint

__all__ = ["CHECKPOINT_SUBJECT", "EvidenceService", "ServiceSettings"]

T = TypeVar("T")
StopReason = Literal["shutdown", "error"]

log = logging.getLogger("pcigate.evidence")

CHECKPOINT_SUBJECT: Final = "pcigate.checkpoints"
_FILTER: Final = SUBJECT_PREFIX + ">"
# Errors after which the database connection is replaced and the batch retried: the connection or the
# server went away (57xxx: terminated, shutting down, starting), the transaction lost a race (40xxx), or
# the server ran short (53xxx: disk full, out of memory). Anything else is a bug or a damaged ledger and
# stops the service, which records ledger.stopped with reason "error".
_DB_ERRORS: Final = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.TransactionRollbackError,
    asyncpg.exceptions.InsufficientResourcesError,
)


@dataclass(frozen=True)
class ServiceSettings:
    origin: str
    checkpoint_every: int = 1000
    checkpoint_interval: float = 10.0
    batch: int = 1000
    max_ack_pending: int = 8000  # bounds what is in flight towards us (the pipeline holds up to 5 batches)
    ack_wait: float = 30.0
    durable: str = "evidence"
    application_name: str = "pcigate-evidence"  # how DBAs see the writer in pg_stat_activity
    software_version: str = "0"
    retry_min: float = 0.2
    retry_max: float = 10.0


@dataclass
class _Batch:
    acks: list[Msg] = field(default_factory=list)
    entries: list[NewEntry] = field(default_factory=list)
    refused: list[Quarantined] = field(default_factory=list)
    own: list[OwnEvent] = field(default_factory=list)
    through: int = 0


class EvidenceService:
    def __init__(
        self,
        settings: ServiceSettings,
        *,
        dsn: str,
        signer: NoteSigner,
        recorder: Recorder,
        nats_servers: list[str],
        nats_options: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self._dsn = dsn
        self._signer = signer
        self._recorder = recorder
        self._servers = nats_servers
        self._nats_options = nats_options or {}
        self._conn: asyncpg.Connection | None = None
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._puller: Puller | None = None
        self.through = 0  # stream position committed
        self._prepared = 0  # stream position of the last batch prepared (>= through)
        self._last_checkpoint: StoredCheckpoint | None = None
        self._last_checkpoint_at = time.monotonic()
        self._unpublished: list[OwnEvent] = []
        self._unpublished_note: StoredCheckpoint | None = None
        self.size = 0  # tree size after our last commit
        self._size_checked_at = 0.0  # when a quiet stream last looked for entries readers appended
        self.committed = 0  # entries appended by this process (for tests and the benchmark)

    # ------------------------------------------------------------------------------------ lifecycle

    async def run(self, stop: asyncio.Event, on_ready: Callable[[str], None] | None = None) -> None:
        """Consume until ``stop`` is set; records ledger.started first and ledger.stopped last."""
        await self._with_db(self._open_ledger)
        await self._connect_nats()
        started = await self._with_db(self._record_start)
        await self._catch_up()
        if on_ready is not None:
            on_ready(started)
        reason: StopReason = "shutdown"
        message: str | None = None
        try:
            await self._consume(stop)
        except Exception as exc:
            reason, message = "error", f"{type(exc).__name__}"
            log.exception("evidence service failed")
            raise
        finally:
            await self._shutdown(reason, message)

    async def _consume(self, stop: asyncio.Event) -> None:
        """Three stages, one batch apart: fetch k+2 while k+1 is checked and converted while k commits, so
        NATS and database round trips overlap the CPU work. Each stage keeps batch order, so commits and
        acks do too. (Converting in a helper process was measured slower: pickling a batch each way cost
        the event loop more than the conversion it saved.)"""
        fetched: asyncio.Queue[list[Msg] | None] = asyncio.Queue(maxsize=1)
        prepared: asyncio.Queue[_Batch | None] = asyncio.Queue(maxsize=1)

        async def fetch() -> None:
            while not stop.is_set():
                await fetched.put(await self._fetch(stop))
            await fetched.put(None)

        async def prepare() -> None:
            while (msgs := await fetched.get()) is not None:
                # an empty batch still travels: the committer's tick for time-based checkpoints
                await prepared.put(await self._prepare(msgs) if msgs else _Batch(through=self._prepared))
            await prepared.put(None)

        async def commit() -> None:
            while (batch := await prepared.get()) is not None:
                if batch.acks:
                    await self._commit_and_ack(batch)
                else:
                    await self._maybe_checkpoint()  # the interval runs out while the stream is quiet
                    await self._publish_pending()

        try:
            async with asyncio.TaskGroup() as stages:
                for stage in (fetch, prepare, commit):
                    stages.create_task(stage(), name=f"evidence-{stage.__name__}")
        except BaseExceptionGroup as group:  # report the first failure as itself
            raise group.exceptions[0] from None

    async def _shutdown(self, reason: StopReason, message: str | None) -> None:
        clean = reason == "shutdown"
        try:
            async with asyncio.timeout(15):
                await self._with_db(lambda: self._record_stop(reason, clean, message), attempts=3)
                await self._maybe_checkpoint(force=True)
                await self._publish_pending()
        except Exception as exc:  # the stop is best effort; the next start finds the state in the ledger
            log.error("could not record ledger.stopped: %s", exc)
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._nc.close(), 5)
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._conn.close(), 5)

    # ------------------------------------------------------------------------------------- database

    async def _db(self) -> LedgerStore:
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(
                self._dsn, timeout=10, server_settings={"application_name": self.settings.application_name}
            )
        return LedgerStore(self._conn)

    async def _with_db(
        self, work: Callable[[], Awaitable[T]], attempts: int | None = None, keepalive: Sequence[Msg] = ()
    ) -> T:
        """Run ``work`` until it succeeds, replacing the connection and backing off on database errors."""
        delay = self.settings.retry_min
        tried = 0
        last_touch = time.monotonic()
        while True:
            try:
                return await work()
            except _DB_ERRORS as exc:
                tried += 1
                if attempts is not None and tried >= attempts:
                    raise
                log.warning("ledger database unavailable (%s); retrying in %.1fs", exc, delay)
                if self._conn is not None:
                    self._conn.terminate()
                    self._conn = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.retry_max)
                if keepalive and time.monotonic() - last_touch > self.settings.ack_wait / 3:
                    last_touch = time.monotonic()
                    for msg in keepalive:  # still working on them: no redelivery yet
                        with contextlib.suppress(Exception):
                            await msg.in_progress()

    async def _open_ledger(self) -> None:
        store = await self._db()
        await store.create_schema()
        self.through = self._prepared = await store.stream_position(STREAM)
        self.size = await store.size()
        self._last_checkpoint = await store.latest_checkpoint()

    async def _tree(self) -> tuple[int, bytes]:
        """The tree's size and root now (for ledger.started and ledger.stopped)."""
        store = await self._db()
        size = await store.size()
        return size, await store.root(size)

    async def _record_start(self) -> str:
        size, root = await self._tree()
        own = self._recorder.started(
            initialized=size == 0,
            tree_size=size,
            root=root,
            signing_key_id=self._signer.verifier.key_id,
            consumer=self.settings.durable,
            resume_after_sequence=self.through,
            software_version=self.settings.software_version,
        )
        await self._commit(_Batch(own=[own], through=self.through))
        return (
            f"ledger {self.settings.origin}: {size} entries, stream {STREAM} through sequence {self.through}"
        )

    async def _record_stop(self, reason: StopReason, clean: bool, message: str | None) -> None:
        size, root = await self._tree()
        own = self._recorder.stopped(
            reason=reason,
            clean=clean,
            tree_size=size,
            root=root,
            last_sequence=self.through,
            message=message,
        )
        await self._commit(_Batch(own=[own], through=self.through))

    async def _commit(self, batch: _Batch) -> None:
        store = await self._db()
        assert self._conn is not None
        async with self._conn.transaction():
            done = await store.append([*batch.entries, *(o.entry for o in batch.own)])
            if batch.refused:
                await store.add_quarantined(batch.refused)
            if batch.through > self.through:
                await store.advance_stream(STREAM, batch.through)
        self.through = max(self.through, batch.through)
        self.size = done.size
        self.committed += done.added
        self._unpublished.extend(batch.own)

    # ----------------------------------------------------------------------------------------- NATS

    async def _connect_nats(self) -> None:
        async def quiet(exc: Exception) -> None:
            log.debug("NATS: %s", exc)

        self._nc = await nats.connect(
            self._servers,
            max_reconnect_attempts=-1,
            reconnect_time_wait=1,
            error_cb=quiet,
            **self._nats_options,
        )
        self._js = self._nc.jetstream()
        s = self.settings
        await self._js.add_consumer(
            STREAM,
            ConsumerConfig(
                durable_name=s.durable,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=s.ack_wait,
                max_ack_pending=s.max_ack_pending,
                max_deliver=-1,  # never give up on a message: a dropped one would be a hole
                filter_subject=_FILTER,
            ),
        )
        self._puller = Puller(self._nc, STREAM, s.durable)
        await self._puller.start()

    async def _fetch(self, stop: asyncio.Event) -> list[Msg]:
        assert self._puller is not None
        wait = min(1.0, self.settings.checkpoint_interval / 2)
        try:
            return (await self._puller.pull(self.settings.batch, wait)).msgs
        except nats.errors.Error as exc:  # disconnected, slow consumer...: nats-py reconnects by itself
            log.warning("fetch from %s failed (%s); retrying", STREAM, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.retry_min)
            return []

    async def _first_seq(self) -> int:
        assert self._js is not None
        info = await self._js.stream_info(STREAM)
        return int(info.state.first_seq)

    # ----------------------------------------------------------------------------------------- fold

    async def _prepare(self, msgs: list[Msg], through_at_least: int = 0) -> _Batch:
        """Entries, quarantine records and gap events for every sequence after the last prepared batch,
        up to the highest delivered one (or ``through_at_least``)."""
        after = self._prepared
        batch = _Batch(acks=msgs, through=after)
        fresh: dict[int, tuple[str, bytes, str | None]] = {}
        for msg in msgs:
            seq = stream_sequence(msg.reply)
            if seq is None:
                seq = msg.metadata.sequence.stream  # an ack subject form we do not know: ask nats-py
            if seq > after:
                fresh[seq] = (msg.subject, msg.data, (msg.headers or {}).get("Nats-Msg-Id"))
        top = max([*fresh, through_at_least])
        if top > after:
            await self._fill_holes(fresh, after, top, batch)
            for seq in sorted(fresh):
                subject, data, msg_id = fresh[seq]
                item = to_entry(data, stream_seq=seq, subject=subject, msg_id=msg_id)
                if isinstance(item, NewEntry):
                    batch.entries.append(item)
                else:
                    batch.refused.append(item)
                    batch.own.append(
                        self._recorder.gap(
                            first_missing=seq, last_missing=seq, cause="invalid_event", subject=_safe(subject)
                        )
                    )
            batch.through = self._prepared = top
        return batch

    async def _catch_up(self) -> None:
        """Read from the stream what the consumer has acknowledged but the ledger lacks.

        With acks after commits that never happens, unless the ledger database was restored from an
        older backup or replaced: the stream, not the consumer's state, then says what is missing.
        """
        assert self._js is not None
        info = await self._js.consumer_info(STREAM, self.settings.durable)
        floor = int(info.ack_floor.stream_seq or 0) if info.ack_floor else 0
        if floor <= self._prepared:
            return
        log.warning(
            "the ledger is behind the consumer (through %d, acknowledged %d): reading the rest from %s",
            self._prepared,
            floor,
            STREAM,
        )
        while self._prepared < floor:
            batch = await self._prepare([], through_at_least=min(floor, self._prepared + self.settings.batch))
            await self._commit_and_ack(batch)

    async def _commit_and_ack(self, batch: _Batch) -> None:
        """Commit, then acknowledge, then sign if due: one at a time on the one connection."""
        await self._with_db(lambda: self._commit(batch), keepalive=batch.acks)
        for msg in batch.acks:  # only now: everything they carried is committed
            with contextlib.suppress(Exception):
                await msg.ack()
        await self._maybe_checkpoint()
        await self._publish_pending()

    async def _fill_holes(
        self, fresh: dict[int, tuple[str, bytes, str | None]], after: int, top: int, batch: _Batch
    ) -> None:
        """Account for every sequence in (after, top] the batch lacks: read it, or record it gone."""
        missing = [s for s in range(after + 1, top + 1) if s not in fresh]
        if not missing:
            return
        assert self._js is not None
        first = await self._first_seq()
        gone: list[int] = [s for s in missing if s < first]  # aged out or removed before we read them
        cause_of: dict[int, GapCause] = dict.fromkeys(gone, "stream_limit")
        for seq in (s for s in missing if s >= first):
            try:
                raw = await self._js.get_msg(STREAM, seq)
            except NotFoundError:
                cause_of[seq] = "unknown"
                continue
            fresh[seq] = (raw.subject or "", raw.data or b"", (raw.headers or {}).get("Nats-Msg-Id"))
        for lo, hi, cause in _ranges(sorted(cause_of), cause_of):
            log.error("audit gap: stream %s sequences %d-%d are missing (%s)", STREAM, lo, hi, cause)
            batch.own.append(self._recorder.gap(first_missing=lo, last_missing=hi, cause=cause))

    # ---------------------------------------------------------------------------------- checkpoints

    async def _maybe_checkpoint(self, *, force: bool = False) -> None:
        """Sign when ``checkpoint_every`` entries or ``checkpoint_interval`` passed since the last one."""
        s = self.settings
        last = self._last_checkpoint
        signed = last.size if last is not None else -1
        now = time.monotonic()
        found = False
        if self.size == signed and not force and now - self._size_checked_at >= s.checkpoint_interval:
            # Readers append their ledger.read records to the ledger directly (evidence.api): a quiet
            # stream must not leave them unsigned. One count per interval finds them, signed at once.
            self._size_checked_at = now

            async def size() -> int:
                return await (await self._db()).size()

            self.size = max(self.size, await self._with_db(size, attempts=3))
            found = self.size != signed
        if self.size == signed:
            self._last_checkpoint_at = now
            return
        elapsed = found or now - self._last_checkpoint_at >= s.checkpoint_interval
        if not (force or elapsed or self.size - max(signed, 0) >= s.checkpoint_every):
            return

        async def sign() -> StoredCheckpoint:
            store = await self._db()
            return await store.checkpoint(self._signer, s.origin)

        cp = await self._with_db(sign, attempts=None if force else 3)
        self._last_checkpoint_at = time.monotonic()
        self._last_checkpoint = self._unpublished_note = cp
        self.size = max(self.size, cp.size)
        log.info("checkpoint %d signed", cp.size)

    # ---------------------------------------------------------------------------------- publishing

    async def _publish_pending(self) -> None:
        """Best effort: the ledger already holds these; the stream copies are for SIEMs and followers."""
        if self._js is None or (not self._unpublished and self._unpublished_note is None):
            return
        try:
            while self._unpublished:
                own = self._unpublished[0]
                await self._js.publish(
                    own.subject, own.payload, headers={"Nats-Msg-Id": own.event_id}, timeout=2
                )
                self._unpublished.pop(0)
            note = self._unpublished_note
            if note is not None:
                await self._js.publish(
                    CHECKPOINT_SUBJECT,
                    note.note.encode(),
                    headers={"Nats-Msg-Id": f"{self.settings.origin}/{note.size}/{note.root.hex()[:16]}"},
                    timeout=2,
                )
                self._unpublished_note = None
        except Exception as exc:
            log.warning("publishing to NATS failed (%s); will retry", exc)


def _safe(subject: str) -> str | None:
    """A subject for an event's ``subject`` field: bounded, or none (it came from outside)."""
    return subject[:256] if subject and subject.isprintable() else None


def _ranges(seqs: list[int], cause_of: dict[int, GapCause]) -> list[tuple[int, int, GapCause]]:
    """Consecutive sequence numbers with one cause, as (first, last, cause)."""
    out: list[tuple[int, int, GapCause]] = []
    for seq in seqs:
        if out and out[-1][1] == seq - 1 and out[-1][2] == cause_of[seq]:
            out[-1] = (out[-1][0], seq, out[-1][2])
        else:
            out.append((seq, seq, cause_of[seq]))
    return out
