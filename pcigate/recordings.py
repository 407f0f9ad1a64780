"""Reading session recordings: the sessions and their chunks' hashes from the ledger (through
``evidence.api``, so every read is recorded as ``ledger.read``), the chunks from stream
``PCIGATE_RECORDINGS``. Shared by ``pcigate replay`` and the console's Sessions tab; what is shown is
``pcigate.replay``'s.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from nats.js.api import ConsumerConfig, DeliverPolicy

from pcigate.replay import Attested, ChunkProblemError
from schemas.recording import subject

if TYPE_CHECKING:
    from nats.aio.client import Client

    from evidence.api import LedgerReader

__all__ = ["STREAM", "SessionRow", "attested_chunks", "list_sessions", "stored_chunks"]

STREAM: Final = "PCIGATE_RECORDINGS"
SESSION_TYPES: Final = ("session.opened", "session.closed", "recording.chunk")
FETCH_TIMEOUT_S: Final = 5.0
# evidence.api.MAX_LIMIT, the most one ledger read returns (a test keeps them equal): not imported, so the
# console and `pcigate replay` start without loading the ledger reader until they read.
PAGE: Final = 10_000


@dataclass(slots=True)
class SessionRow:
    """A session as the ledger knows it; ``final``: its recording's last chunk is in the ledger."""

    session_id: str
    sub: str | None = None
    kind: str | None = None
    on_behalf_of: str | None = None
    connection: str | None = None
    database: str | None = None
    started: datetime | None = None
    duration_ms: float | None = None
    statements: int | None = None
    chunks: int = 0
    final: bool = False

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["started"] = None if self.started is None else self.started.isoformat()
        return out


async def list_sessions(
    reader: LedgerReader, since: datetime, *, most: int | None = None
) -> list[SessionRow]:
    """Sessions opened since ``since``, oldest first (with ``most``: the newest ``most`` of them)."""
    rows: dict[str, SessionRow] = {}
    after: int | None = None
    while True:
        page = await reader.events(types=SESSION_TYPES, since=since, after_index=after, limit=PAGE)
        for record in page:
            event = record.event
            if event is None or record.session_id is None:
                continue
            row = rows.setdefault(record.session_id, SessionRow(record.session_id))
            data = event.get("data") or {}
            if record.type == "session.opened":
                actor = event.get("actor") or {}
                target = event.get("target") or {}
                row.sub, row.kind = actor.get("sub"), actor.get("kind")
                row.on_behalf_of = actor.get("on_behalf_of")
                row.connection, row.database = target.get("connection"), target.get("database")
                row.started = record.time
            elif record.type == "session.closed":
                row.duration_ms, row.statements = data.get("duration_ms"), data.get("statements")
            else:
                row.chunks += 1
                row.final = row.final or bool(data.get("final"))
        if page.next_after is None:
            break
        after = page.next_after
    found = [r for r in rows.values() if r.started is not None]
    return found if most is None else found[-most:]


async def attested_chunks(reader: LedgerReader, session_id: str) -> list[Attested]:
    """The session's ``recording.chunk`` events: what each chunk must hash to."""
    found: list[Attested] = []
    after: int | None = None
    while True:
        page = await reader.events(
            types=("recording.chunk",), session_id=session_id, after_index=after, limit=PAGE
        )
        for record in page:
            data = (record.event or {}).get("data") or {}
            seq, size, final = int(data["seq"]), int(data["bytes"]), bool(data["final"])
            found.append(Attested(seq, str(data["sha256"]), size, str(data["msg_id"]), final, record.index))
        if page.next_after is None:
            return found
        after = page.next_after


async def stored_chunks(nc: Client, session_id: str) -> dict[int, bytes]:
    """The session's chunks in the recordings stream, by the number their message id gives. Raises
    ChunkProblemError for a message that is not one of the session's, or two that claim one number."""
    js = nc.jetstream()
    wanted = subject(session_id)
    info = await js.stream_info(STREAM, subjects_filter=wanted)
    count = (info.state.subjects or {}).get(wanted, 0)
    chunks: dict[int, bytes] = {}
    if not count:
        return chunks
    sub = await js.subscribe(
        wanted, stream=STREAM, ordered_consumer=True, config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
    )
    try:
        for _ in range(count):
            msg = await sub.next_msg(timeout=FETCH_TIMEOUT_S)
            mid = (msg.headers or {}).get("Nats-Msg-Id", "")
            head, _, tail = mid.rpartition(".")
            if head != session_id or not tail.isdigit():
                raise ChunkProblemError(f"a message on {wanted} has a foreign message id {mid!r}")
            seq = int(tail)
            if chunks.get(seq, msg.data) != msg.data:
                raise ChunkProblemError(f"two different chunks claim number {seq} ({mid}): one is forged")
            chunks[seq] = msg.data
    finally:
        await sub.unsubscribe()
    return chunks
