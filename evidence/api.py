"""The ledger's read API: the one evidence module the TUI and the PDF reports import.

Every read goes through a :class:`LedgerReader`, built over a caller-owned asyncpg connection, a
:class:`Recorder` naming the reader (``actor`` of the record) and the reader's stated ``purpose``. Each read
appends one ``ledger.read`` event (PCI DSS 10.2.1.3: all access to audit logs) to the ledger **in the same
transaction** as the read: operation, the leaf range returned, the tree size read against, the filter,
the number of results and the purpose. If that record cannot be written, the transaction rolls back and
the read raises :class:`ReadNotRecordedError` without returning anything (fail closed). Lookups that fail
in a way that tells the reader something (an unknown event id, an event no checkpoint covers yet) are
recorded too, with outcome ``failure``, before their error is raised.

Because the records are ledger entries, reading grows the ledger. A proof bundle is always against a
signed checkpoint from ``ledger_checkpoints`` verified with the trusted keys the caller supplies (never
keys read from the database); an entry appended after the latest checkpoint — a read's own record among
them — becomes provable once the evidence service signs the next one (``ledger.checkpoint_interval``).

The connection must not be inside a transaction: the record has to be committed before data is returned,
which an outer transaction the caller might roll back would undo.

Public names (everything else in ``evidence`` is private to the TUI and the reports):

- :class:`LedgerReader` — ``events``, ``latest_checkpoint``, ``checkpoints``, ``checkpoint_covering``,
  ``inclusion_proof``, ``consistency_proof``;
- records: :class:`EventRecord`, :class:`EventPage`, :class:`CheckpointRecord`, :class:`ConsistencyProof`;
- proof bundles: :class:`ProofBundle`, :func:`check_bundle`, :class:`BundleCheck`, :data:`BUNDLE_FORMAT`,
  :class:`BundleFormatError` (``evidence.proofs``);
- the reader's identity: :class:`Recorder`, :class:`ServiceActor` (``evidence.own_events``);
- the log's public keys: :func:`log_keys`, :class:`LogKey`;
- the PCI DSS 10.2.2 details an event lacks: :func:`missing_10_2_2`, and the requirements an event
  evidences: :func:`pci_requirements` (``evidence.pci``), for reports;
- offline checks of a pack (``pcigate verify-pack``): :class:`Checkpoint`, :class:`NoteVerifier`,
  :class:`NoteError` (``evidence.checkpoint``), :func:`verify_consistency` (``evidence.merkle``);
- errors: :class:`ReadError` and its subclasses, :class:`ProofError`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Generic, Literal, TypeVar

import asyncpg
import orjson

from evidence import merkle
from evidence.checkpoint import Checkpoint, NoteError, NoteSigner, NoteVerifier, load_signing_key, open_note
from evidence.merkle import ProofError, verify_consistency
from evidence.own_events import Recorder, ServiceActor
from evidence.pci import missing_10_2_2
from evidence.pci import requirements as pci_requirements
from evidence.proofs import BUNDLE_FORMAT, BundleCheck, BundleFormatError, ProofBundle, check_bundle
from evidence.store import LedgerStore
from schemas import AnyEvent, format_utc, parse_event

__all__ = [
    "BUNDLE_FORMAT",
    "MAX_LIMIT",
    "BundleCheck",
    "BundleFormatError",
    "Checkpoint",
    "CheckpointRecord",
    "ConsistencyProof",
    "EventNotFoundError",
    "EventPage",
    "EventRecord",
    "LedgerReader",
    "LogKey",
    "NotCoveredError",
    "NoteError",
    "NoteVerifier",
    "ProofBundle",
    "ProofError",
    "ReadError",
    "ReadNotRecordedError",
    "Recorder",
    "ServiceActor",
    "UntrustedCheckpointError",
    "check_bundle",
    "log_keys",
    "missing_10_2_2",
    "pci_requirements",
    "verify_consistency",
]

MAX_LIMIT: Final = 10_000
"""The most events or checkpoints one read returns; page with ``after_index`` / ``after_size``."""

Operation = Literal["events", "inclusion_proof", "consistency_proof", "checkpoint"]
_T = TypeVar("_T")
_EVENT_COLUMNS: Final = (
    "SELECT idx, event_id, event_type, event_time, pci, session_id, actor_sub, leaf_hash, canonical"
    " FROM ledger_entries"
)
_DB_ERRORS: Final = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


# ------------------------------------------------------------------------------------------- errors


class ReadError(Exception):
    """A ledger read failed; nothing was returned."""


class ReadNotRecordedError(ReadError):
    """The read's ``ledger.read`` record could not be written, so the read was refused (fail closed)."""


class EventNotFoundError(ReadError):
    """No ledger entry has that event id (the attempt itself was recorded)."""


class NotCoveredError(ReadError):
    """No signed checkpoint covers the entry yet: wait for the next one (``ledger.checkpoint_interval``)."""


class UntrustedCheckpointError(ReadError):
    """A stored checkpoint is not signed by a trusted key, is for another log, or disagrees with the tree."""


# ------------------------------------------------------------------------------------------ records


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One ledger entry. ``canonical`` and ``event`` are None once retention pruned the payload."""

    index: int
    event_id: str
    type: str
    time: datetime
    pci: tuple[str, ...]
    session_id: str | None
    actor_sub: str | None
    leaf_hash: bytes
    canonical: bytes | None  # the exact RFC 8785 bytes that were hashed
    event: Mapping[str, Any] | None  # canonical, decoded

    def model(self) -> AnyEvent:
        """The event as the typed v1 model (``schemas``); raises ReadError if its payload was pruned."""
        if self.canonical is None:
            raise ReadError(f"the payload of entry {self.index} was pruned; only its leaf hash remains")
        return parse_event(self.canonical)


@dataclass(frozen=True, slots=True)
class EventPage:
    """Entries in index order, read against the tree of ``tree_size`` entries."""

    records: tuple[EventRecord, ...]
    tree_size: int
    next_after: int | None  # pass as ``after_index`` for the next page; None when the page was not full

    def __iter__(self) -> Iterator[EventRecord]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)


@dataclass(frozen=True, slots=True)
class CheckpointRecord:
    """A signed checkpoint as stored, and which of the reader's trusted keys verify it (empty: none)."""

    size: int
    root: bytes
    note: str
    key_name: str
    key_id: int
    created_at: datetime
    trusted_by: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    """RFC 9162 §2.1.4 proof that the signed tree of ``new_size`` extends the tree of ``old_size``."""

    old_size: int
    new_size: int
    old_root: bytes  # as stored; an auditor compares it with the root of a checkpoint they kept
    new_root: bytes
    path: tuple[bytes, ...]
    new_checkpoint: str  # signed note of new_size, verified with the reader's trusted keys
    old_checkpoint: str | None  # signed note of old_size, if one was signed at exactly that size
    verifier_keys: tuple[str, ...]  # the trusted keys that signed new_checkpoint

    def check(self, old_root: bytes | None = None) -> None:
        """Verify the proof from ``old_root`` (default: the stored one) to ``new_root``; raises ProofError."""
        merkle.verify_consistency(
            self.old_size,
            self.new_size,
            self.path,
            self.old_root if old_root is None else old_root,
            self.new_root,
        )


@dataclass(frozen=True, slots=True)
class LogKey:
    """One public key of the log, as a verifier key string (``<name>+<key id>+<base64 key>``)."""

    vkey: str
    name: str
    key_id: str  # 8 hex digits
    current: bool  # the key that signs new checkpoints


def log_keys(
    origin: str, signing_key_pem: bytes | None, trusted_keys: Sequence[str] = ()
) -> tuple[LogKey, ...]:
    """The log's public keys: the current signing key's (from its PKCS#8 PEM, if given) first, then the
    earlier keys' verifier strings (``ledger.trusted_keys``). Raises ``NoteError`` for a bad key."""
    keys: list[LogKey] = []
    if signing_key_pem is not None:
        v = NoteSigner(origin, load_signing_key(signing_key_pem)).verifier
        keys.append(LogKey(v.vkey, v.name, f"{v.key_id:08x}", current=True))
    for text in trusted_keys:
        v = NoteVerifier.parse(text)
        if all(k.vkey != v.vkey for k in keys):
            keys.append(LogKey(v.vkey, v.name, f"{v.key_id:08x}", current=False))
    return tuple(keys)


# ------------------------------------------------------------------------------------------- reader


@dataclass(slots=True)
class _Outcome(Generic[_T]):
    """What one read returns and what its ``ledger.read`` record says."""

    value: _T
    first: int | None = None
    last: int | None = None
    tree_size: int | None = None
    filter: dict[str, Any] | None = None
    results: int = 0
    error: ReadError | None = None  # raised after the (failure) record is committed
    code: str | None = None


def _uuid(event_id: str | uuid.UUID) -> uuid.UUID:
    if isinstance(event_id, uuid.UUID):
        return event_id
    try:
        return uuid.UUID(event_id)
    except (ValueError, AttributeError, TypeError):
        raise ValueError("an event id is a UUID such as 019a8f3e-51c3-7000-9a11-3c5e7f9b1d20") from None


def _decode(canonical: bytes | None) -> Mapping[str, Any] | None:
    """orjson: a report decodes every event of its period (2-3x faster than json); json takes what orjson
    refuses but the ledger may hold (an integer beyond 64 bits)."""
    if canonical is None:
        return None
    try:
        obj = orjson.loads(canonical)
    except orjson.JSONDecodeError:
        obj = json.loads(canonical)
    if not isinstance(obj, dict):
        raise ReadError("a ledger entry's canonical form is not a JSON object: the ledger is damaged")
    return obj


class LedgerReader:
    """Reads the ledger for one reader and records every read (``ledger.read``) in the same transaction.

    ``conn`` is the caller's asyncpg connection to the ledger database (not inside a transaction);
    ``recorder`` builds the records with the reader as actor (its ``log_origin`` names the log);
    ``purpose`` is the reader's stated reason (PCI DSS 10.3.1: read access for a job-related need), at
    most 256 characters, or None; ``trusted_keys`` are the log's verifier key strings (``log_keys``,
    ``pcigate ledger keys``), needed for proofs and used to mark checkpoints trusted.
    """

    def __init__(
        self,
        conn: asyncpg.Connection,
        recorder: Recorder,
        purpose: str | None,
        *,
        trusted_keys: Sequence[str | NoteVerifier] = (),
    ) -> None:
        self._conn = conn
        self._store = LedgerStore(conn)
        self._recorder = recorder
        self._origin = recorder.actor.log_origin
        self._purpose = purpose
        self._verifiers = [k if isinstance(k, NoteVerifier) else NoteVerifier.parse(k) for k in trusted_keys]
        self._check_record(_Outcome(None))

    @property
    def purpose(self) -> str | None:
        return self._purpose

    # --------------------------------------------------------------------------------- events

    async def events(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        types: Sequence[str] = (),
        requirement: str | None = None,
        actor_sub: str | None = None,
        session_id: str | None = None,
        after_index: int | None = None,
        limit: int = 1000,
    ) -> EventPage:
        """Entries in index order matching every given filter: ``since <= time < until`` (aware datetimes),
        type in ``types`` (all when empty), evidencing PCI DSS ``requirement``, by actor ``actor_sub``, in
        ``session_id``; at most ``limit`` of them with index > ``after_index``.

        ``session_id`` has no field in the v1 ``ledger.read`` filter; it is recorded in the record's
        outcome message (``session_id=...``).
        """
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be 1..{MAX_LIMIT}")
        if after_index is not None and after_index < 0:
            raise ValueError("after_index must be >= 0")
        wanted = tuple(dict.fromkeys(types))
        filt = {
            "types": list(wanted),
            "since": None if since is None else format_utc(since),
            "until": None if until is None else format_utc(until),
            "actor_sub": actor_sub,
            "requirement": requirement,
        }
        message = None if session_id is None else f"session_id={session_id}"
        self._check_record(_Outcome(None, filter=filt), message)

        async def work() -> _Outcome[EventPage]:
            size = await self._store.size()
            where = ["idx < $1"]
            args: list[Any] = [size]

            def cond(sql: str, value: Any) -> None:
                args.append(value)
                where.append(sql.replace("?", f"${len(args)}"))

            if after_index is not None:
                cond("idx > ?", after_index)
            if since is not None:
                cond("event_time >= ?", since)
            if until is not None:
                cond("event_time < ?", until)
            if wanted:
                cond("event_type = ANY(?::text[])", list(wanted))
            if requirement is not None:
                cond("pci @> ARRAY[?::text]", requirement)
            if actor_sub is not None:
                cond("actor_sub = ?", actor_sub)
            if session_id is not None:
                cond("session_id = ?", session_id)
            args.append(limit)
            # every value is a parameter; the SQL is joined from the constant conditions above
            sql = f"{_EVENT_COLUMNS} WHERE {' AND '.join(where)} ORDER BY idx LIMIT ${len(args)}"
            rows = await self._conn.fetch(sql, *args)
            records = tuple(
                EventRecord(
                    index=r["idx"],
                    event_id=str(r["event_id"]),
                    type=r["event_type"],
                    time=r["event_time"],
                    pci=tuple(r["pci"]),
                    session_id=r["session_id"],
                    actor_sub=r["actor_sub"],
                    leaf_hash=bytes(r["leaf_hash"]),
                    canonical=None if r["canonical"] is None else bytes(r["canonical"]),
                    event=_decode(None if r["canonical"] is None else bytes(r["canonical"])),
                )
                for r in rows
            )
            page = EventPage(records, size, records[-1].index if len(records) == limit else None)
            return _Outcome(
                page,
                first=records[0].index if records else None,
                last=records[-1].index if records else None,
                tree_size=size,
                filter=filt,
                results=len(records),
            )

        return await self._recorded("events", work, message)

    # ---------------------------------------------------------------------------- checkpoints

    async def latest_checkpoint(self) -> CheckpointRecord | None:
        """The newest signed checkpoint, or None if none was signed yet."""
        found = await self._read_checkpoints("ORDER BY size DESC LIMIT 1")
        return found[0] if found else None

    async def checkpoints(
        self, *, after_size: int | None = None, limit: int = 1000
    ) -> tuple[CheckpointRecord, ...]:
        """Signed checkpoints by increasing size, those larger than ``after_size``, at most ``limit``."""
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be 1..{MAX_LIMIT}")
        return await self._read_checkpoints(
            "WHERE size > $1 ORDER BY size LIMIT $2", -1 if after_size is None else after_size, limit
        )

    async def checkpoint_covering(self, size: int) -> CheckpointRecord | None:
        """The smallest signed checkpoint of at least ``size`` entries (covering every index < size)."""
        found = await self._read_checkpoints("WHERE size >= $1 ORDER BY size LIMIT 1", size)
        return found[0] if found else None

    async def _read_checkpoints(self, tail: str, *args: Any) -> tuple[CheckpointRecord, ...]:
        async def work() -> _Outcome[tuple[CheckpointRecord, ...]]:
            # ``tail`` is one of the constant clauses of the three callers; values are parameters
            sql = f"SELECT size, root, note, key_name, key_id, created_at FROM ledger_checkpoints {tail}"  # noqa: S608
            rows = await self._conn.fetch(sql, *args)
            found = tuple(
                CheckpointRecord(
                    r["size"],
                    bytes(r["root"]),
                    r["note"],
                    r["key_name"],
                    r["key_id"],
                    r["created_at"],
                    self._trusted_by(r["note"], r["size"], bytes(r["root"])),
                )
                for r in rows
            )
            return _Outcome(found, tree_size=max((c.size for c in found), default=None), results=len(found))

        return await self._recorded("checkpoint", work)

    def _trusted_by(self, note: str, size: int, root: bytes) -> tuple[str, ...]:
        try:
            opened = open_note(note, self._verifiers)
            cp = Checkpoint.parse(opened.text)
        except NoteError:
            return ()
        if cp.origin != self._origin or cp.size != size or cp.root != root:
            return ()
        return tuple(v.vkey for v in opened.verified_by)

    # --------------------------------------------------------------------------------- proofs

    def _need_keys(self) -> None:
        if not self._verifiers:
            raise ReadError("a proof needs the log's trusted keys (trusted_keys): none were given")

    def _open_checkpoint(self, note: str, size: int, root: bytes) -> tuple[str, ...]:
        """The trusted keys that signed a stored checkpoint; raises UntrustedCheckpointError otherwise."""
        try:
            opened = open_note(note, self._verifiers)
            cp = Checkpoint.parse(opened.text)
        except NoteError as exc:
            raise UntrustedCheckpointError(
                f"checkpoint {size} does not verify with the trusted keys: {exc}"
            ) from None
        if cp.origin != self._origin:
            raise UntrustedCheckpointError(
                f"checkpoint {size} is for log {cp.origin!r}, not {self._origin!r}"
            )
        if cp.size != size or cp.root != root:
            raise UntrustedCheckpointError(
                f"checkpoint {size}: its note disagrees with its stored size or root"
            )
        return tuple(v.vkey for v in opened.verified_by)

    async def inclusion_proof(
        self, event_id: str | uuid.UUID, *, checkpoint_size: int | None = None
    ) -> ProofBundle:
        """A self-contained proof bundle that the event is in the log, against the latest signed
        checkpoint (or the one of exactly ``checkpoint_size`` entries).

        Raises EventNotFoundError, NotCoveredError (no signed checkpoint covers the entry yet: retry after
        the next checkpoint), UntrustedCheckpointError, ReadError (payload pruned) or ReadNotRecordedError.
        """
        self._need_keys()
        wanted = _uuid(event_id)

        async def work() -> _Outcome[ProofBundle | None]:
            row = await self._conn.fetchrow(
                "SELECT idx, canonical, leaf_hash FROM ledger_entries WHERE event_id = $1", wanted
            )
            if row is None:
                return _Outcome(
                    None,
                    error=EventNotFoundError(f"no event {wanted} in the ledger"),
                    code="not_found",
                )
            index = row["idx"]
            cp = await self._store.checkpoint_at(checkpoint_size)
            if cp is None or cp.size <= index:
                if checkpoint_size is not None:
                    why = (
                        f"no checkpoint of size {checkpoint_size} was signed"
                        if cp is None
                        else f"checkpoint {checkpoint_size} does not cover entry {index}"
                    )
                    error: ReadError = NotCoveredError(f"event {wanted} (entry {index}): {why}")
                else:
                    covered = "no checkpoint was signed yet" if cp is None else f"the latest covers {cp.size}"
                    error = NotCoveredError(
                        f"event {wanted} is entry {index}, which no signed checkpoint covers yet ({covered});"
                        " wait for the next checkpoint (ledger.checkpoint_interval) and retry"
                    )
                return _Outcome(
                    None,
                    first=index,
                    last=index,
                    tree_size=None if cp is None else cp.size,
                    error=error,
                    code="not_covered",
                )
            if row["canonical"] is None:
                return _Outcome(
                    None,
                    first=index,
                    last=index,
                    tree_size=cp.size,
                    error=ReadError(f"event {wanted}: its payload was pruned, only its leaf hash remains"),
                    code="pruned",
                )
            size, root, note = cp.size, cp.root, cp.note
            signed_by = self._open_checkpoint(note, size, root)
            canonical = bytes(row["canonical"])
            if merkle.leaf_hash(canonical) != bytes(row["leaf_hash"]):
                raise ReadError(f"entry {index}: its stored leaf hash is not the hash of its bytes")
            path = await self._store.inclusion_proof(index, size)
            bundle = ProofBundle(
                log_origin=self._origin,
                event_id=str(wanted),
                event=canonical.decode("utf-8"),
                leaf_index=index,
                tree_size=size,
                inclusion_path=tuple(path),
                checkpoint=note,
                verifier_keys=signed_by,
            )
            checked = check_bundle(bundle, self._verifiers)
            if not checked.ok:
                raise ReadError(f"the proof of entry {index} does not check: {checked.problem}")
            return _Outcome(bundle, first=index, last=index, tree_size=size, results=1)

        found = await self._recorded("inclusion_proof", work)
        assert found is not None  # every path without a bundle carries an error
        return found

    async def consistency_proof(self, old_size: int, new_size: int | None = None) -> ConsistencyProof:
        """Proof that the signed tree of ``new_size`` entries (default: the latest checkpoint) extends the
        tree of ``old_size`` entries (0 < old_size <= new_size)."""
        self._need_keys()

        async def work() -> _Outcome[ConsistencyProof | None]:
            cp = await self._store.checkpoint_at(new_size)
            if cp is None or not 0 < old_size <= cp.size:
                what = (
                    "no checkpoint was signed yet" if cp is None else f"the checkpoint has {cp.size} entries"
                )
                if cp is None and new_size is not None:
                    what = f"no checkpoint of size {new_size} was signed"
                return _Outcome(
                    None,
                    tree_size=None if cp is None else cp.size,
                    error=NotCoveredError(f"no consistency proof from size {old_size}: {what}"),
                    code="not_covered",
                )
            size, root, note = cp.size, cp.root, cp.note
            signed_by = self._open_checkpoint(note, size, root)
            old_root = await self._store.root(old_size)
            path = tuple(await self._store.consistency_proof(old_size, size))
            old_note = await self._conn.fetchval(
                "SELECT note FROM ledger_checkpoints WHERE size = $1", old_size
            )
            proof = ConsistencyProof(old_size, size, old_root, root, path, note, old_note, signed_by)
            try:
                proof.check()
            except ProofError as exc:
                raise ReadError(
                    f"the stored tree is not consistent from {old_size} to {size}: {exc}"
                ) from None
            return _Outcome(proof, tree_size=size, results=1)

        found = await self._recorded("consistency_proof", work)
        assert found is not None
        return found

    # ------------------------------------------------------------------------------ recording

    def _check_record(self, outcome: _Outcome[Any], message: str | None = None) -> None:
        """Refuse, before reading, a purpose or filter the ledger.read contract would refuse."""
        try:
            self._record_data("events", outcome, message)
        except ValueError as exc:
            raise ValueError(f"the read cannot be recorded as ledger.read: {exc}") from None

    def _record_data(self, operation: Operation, outcome: _Outcome[Any], message: str | None = None) -> Any:
        data = {
            "log_origin": self._origin,
            "operation": operation,
            "first_index": outcome.first,
            "last_index": outcome.last,
            "tree_size": outcome.tree_size,
            "filter": outcome.filter,
            "results": outcome.results,
            "purpose": self._purpose,
        }
        failed = outcome.error is not None
        note = message
        if failed:
            note = str(outcome.error) if message is None else f"{message}; {outcome.error}"
            note = note[:1024]
        return self._recorder.event(
            "ledger.read",
            data,
            result="failure" if failed else "success",
            code=outcome.code if failed else None,
            message=note,
        )

    async def _recorded(
        self, operation: Operation, work: Callable[[], Awaitable[_Outcome[_T]]], message: str | None = None
    ) -> _T:
        """Run ``work`` and append its ``ledger.read`` record in one transaction; return its value only if
        both committed."""
        if self._conn.is_in_transaction():
            raise ReadError(
                "the ledger read API needs a connection outside any transaction: the read's record must be"
                " committed before anything is returned"
            )
        stage = "read"
        try:
            async with self._conn.transaction():
                outcome = await work()
                stage = "record"
                own = self._record_data(operation, outcome, message)
                appended = await self._store.append([own.entry])
                if appended.added != 1:
                    raise ReadNotRecordedError(f"the ledger.read record {own.event_id} was not appended")
                stage = "commit"
        except ReadError:
            raise
        except LookupError as exc:  # a tree node the proof needs is missing
            raise ReadError(str(exc)) from exc
        except _DB_ERRORS as exc:
            if stage == "read":
                raise ReadError(f"the ledger read failed: {type(exc).__name__}: {exc}") from exc
            raise ReadNotRecordedError(
                f"the read was refused because its ledger.read record could not be written"
                f" ({type(exc).__name__}: {exc})"
            ) from exc
        if outcome.error is not None:
            raise outcome.error
        return outcome.value
