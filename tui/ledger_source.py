"""The console's ledger reads: the panel's status (the latest signed checkpoint, whether it verifies and
extends what the console saw before, the latest audit gaps). Read only through ``evidence.api``, so each
refresh is itself recorded (``ledger.read``, purpose "approver console: ledger status") with the approver
as reader; the panel refreshes when it is opened and on ``r``, not on a timer, so the records stay
meaningful. The Sessions tab reads the recorded sessions and a replay's chunk hashes through the same
source, recorded alike.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, TypeVar

import asyncpg

from evidence.api import CheckpointRecord, LedgerReader, ProofError, ReadError, Recorder, ServiceActor
from pcigate.recordings import attested_chunks, list_sessions
from tui.activity import Line, summarize
from tui.ledger import LedgerStatus

if TYPE_CHECKING:
    from pcigate.recordings import SessionRow
    from pcigate.replay import Attested

__all__ = ["LedgerSource"]

PURPOSE: Final = "approver console: ledger status"
HISTORY_PURPOSE: Final = "approver console: the session of a held statement"
SESSIONS_PURPOSE: Final = "approver console: recorded sessions"
REPLAY_PURPOSE: Final = "approver console: replay of session {}"
GAPS_WITHIN: Final = timedelta(days=7)
CONNECT_TIMEOUT_S: Final = 5.0

T = TypeVar("T")


class LedgerSource:
    """Reads the panel's status; keeps the last checkpoint to prove the next one extends it."""

    def __init__(self, dsn: str, trusted_keys: Sequence[str], actor: ServiceActor) -> None:
        self._dsn = dsn
        self._keys = list(trusted_keys)
        self.actor = actor  # replaced by the verified approver once whoami answers
        self._seen: CheckpointRecord | None = None

    async def read(self) -> LedgerStatus:
        now = datetime.now(UTC)
        try:
            conn = await asyncpg.connect(self._dsn, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
            return LedgerStatus(now, problem=f"the ledger database is not reachable ({exc})")
        try:
            reader = LedgerReader(conn, Recorder(self.actor), PURPOSE, trusted_keys=self._keys)
            return await self._status(reader, now)
        except ReadError as exc:
            return LedgerStatus(now, problem=f"the ledger could not be read: {exc}")
        finally:
            await conn.close()

    async def history(self, session_id: str, before: datetime, limit: int = 12) -> list[Line] | str:
        """The statements of ``session_id`` recorded before ``before`` (the newest ``limit``), or why not."""
        try:
            conn = await asyncpg.connect(self._dsn, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
            return f"the ledger database is not reachable ({exc})"
        try:
            reader = LedgerReader(conn, Recorder(self.actor), HISTORY_PURPOSE, trusted_keys=self._keys)
            page = await reader.events(
                session_id=session_id, types=["command.executed", "command.blocked"], until=before, limit=1000
            )
        except ReadError as exc:
            return f"the ledger could not be read: {exc}"
        finally:
            await conn.close()
        lines = [summarize(r.event) for r in page if r.event is not None]
        return [line for line in lines if line is not None][-limit:]

    async def sessions(self, since: datetime, most: int) -> list[SessionRow] | str:
        """The sessions opened since ``since``, the newest ``most`` of them, newest first; or why not."""
        found = await self._reading(SESSIONS_PURPOSE, lambda reader: list_sessions(reader, since, most=most))
        return found if isinstance(found, str) else found[::-1]

    async def attested(self, session_id: str) -> list[Attested] | str:
        """What each chunk of ``session_id``'s recording must hash to, from the ledger; or why not."""
        return await self._reading(
            REPLAY_PURPOSE.format(session_id), lambda reader: attested_chunks(reader, session_id)
        )

    async def _reading(self, purpose: str, use: Callable[[LedgerReader], Awaitable[T]]) -> T | str:
        """``use`` a reader recorded as this console's approver; a sentence instead of an exception, since
        the console must go on without the ledger."""
        try:
            conn = await asyncpg.connect(self._dsn, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
            return f"the ledger database is not reachable ({exc})"
        try:
            return await use(LedgerReader(conn, Recorder(self.actor), purpose, trusted_keys=self._keys))
        except (ReadError, OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            return f"the ledger could not be read: {exc}"
        except (KeyError, ValueError, TypeError) as exc:  # an event without the fields its type has
            return f"the ledger holds an event this console cannot read: {type(exc).__name__}: {exc}"
        finally:
            await conn.close()

    async def _status(self, reader: LedgerReader, now: datetime) -> LedgerStatus:
        latest = await reader.latest_checkpoint()
        gaps = await reader.events(types=["audit.gap"], since=now - GAPS_WITHIN, limit=1000)
        shown_gaps = tuple(
            (r.time.strftime("%Y-%m-%d %H:%M:%S"), _gap_text(r.event)) for r in list(gaps)[-5:]
        )
        if latest is None:
            return LedgerStatus(now, signature="no checkpoint signed yet", gaps=shown_gaps, healthy=True)
        if latest.trusted_by:
            names = ", ".join("+".join(k.split("+")[:2]) for k in latest.trusted_by)  # name+key id
            signature = f"signature verified with {names}"
        elif self._keys:
            signature = "NOT signed by any trusted key of this log"
        else:
            signature = "not checked: no trusted key (set ledger.signing_key or ledger.trusted_keys)"
        consistency, consistent = "first checkpoint this console has seen", True
        previous = self._seen
        if previous is not None and latest.size > previous.size and self._keys:
            try:
                proof = await reader.consistency_proof(previous.size, latest.size)
                proof.check(previous.root)
            except (ProofError, ReadError) as exc:
                consistency, consistent = (
                    f"does NOT extend the checkpoint of size {previous.size}: {exc}",
                    False,
                )
            else:
                consistency = f"extends the checkpoint of size {previous.size} seen before (proof checked)"
        elif previous is not None and latest.size == previous.size:
            consistent = latest.root == previous.root
            consistency = "unchanged since the last refresh" if consistent else "SAME SIZE, DIFFERENT ROOT"
        if consistent:
            self._seen = latest
        healthy = bool(latest.trusted_by) and consistent and not shown_gaps
        return LedgerStatus(now, latest, signature, consistency, healthy, shown_gaps)


def _gap_text(event: Mapping[str, Any] | None) -> str:
    if event is None:
        return "payload pruned"
    data = event.get("data") or {}
    first, last = data.get("first_missing"), data.get("last_missing")
    return (
        f"{data.get('stream', '?')} {first}..{last} missing ({data.get('cause', 'unknown')}, detected by "
        f"{data.get('detected_by', '?')})"
    )
