"""Session recording: what a session did and what it was shown, in chunks of the ``pcigate-recording/1``
format (``schemas.recording``), each committed to the ledger by the SHA-256 in its ``recording.chunk``
event.

:class:`SessionRecorder` is a hook installed after masking, so the rows, errors and notices it sees are
the ones the client receives. The session feeds it what only the session knows: each statement's masked
record (the one its audit event carries) and the session's other events (blocks, approvals, masking).
The recorder never touches raw statement text or parameters.

A chunk is cut when it reaches :data:`CHUNK_BYTES`, when a statement completes and :data:`FLUSH_EVERY`
has passed since the last one, and when the session ends; so a busy session costs a chunk (and an event)
per 64 KiB or per second, not per statement. Before a chunk is hashed it is scanned for card numbers and
any found is masked (defence in depth: the rows it holds already passed masking).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from gateway.hooks import Hook, SessionInfo, StatementView
from gateway.masking.detect import has_candidate, mask_card_data
from gateway.pgwire.messages import FieldDesc, ProtocolError, parse_data_row, parse_error_fields
from schemas import recording as fmt
from schemas.models import RecordingChunk, RecordingChunkData

__all__ = ["CHUNK_BYTES", "FLUSH_EVERY", "ChunkMeta", "ChunkSink", "RecordingPolicy", "SessionRecorder"]

log = logging.getLogger("pcigate.gateway.recording")

CHUNK_BYTES: Final = 64 * 1024
FLUSH_EVERY: Final = 1.0  # seconds
_ERROR: Final = ord("E")
_NOTICE: Final = ord("N")
_COPY_DATA: Final = ord("d")
_FIELDS: Final = {"S": "severity", "C": "sqlstate", "M": "message", "D": "detail", "H": "hint"}


@dataclass(frozen=True, slots=True)
class ChunkMeta:
    """What the ``recording.chunk`` event says about a chunk besides its hash."""

    seq: int
    sha256: str
    size: int
    subject: str
    msg_id: str
    records: int
    first_sequence: int | None
    last_sequence: int | None
    rows_recorded: int
    rows_omitted: int
    final: bool


ChunkSink = Callable[[bytes, ChunkMeta], None]
"""Publishes one chunk (to the spool, then its event); raises when it cannot be kept."""


_SHAPES: Final = 64


def _encode(value: Any) -> bytes:
    """One record as a line: orjson (~0.2 µs, three records a statement). What it refuses (a string holding
    a lone surrogate) goes through json with ASCII escapes: still one valid JSON line."""
    try:
        return orjson.dumps(value) + b"\n"
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(value, separators=(",", ":")).encode() + b"\n"


def _seq(seq: int | None) -> bytes:
    return b"null" if seq is None else b"%d" % seq


class _Rows:
    """The row handler of one result set: the first rows up to the statement's limit, then only counts."""

    __slots__ = ("_formats", "_recorder", "_seq")

    def __init__(self, recorder: SessionRecorder, seq: int | None, formats: tuple[int, ...]) -> None:
        self._recorder = recorder
        self._seq = seq
        self._formats = formats

    def data_rows(self, buf: bytearray, spans: Sequence[tuple[int, int]]) -> list[bytes | None] | None:
        room = self._recorder.room(self._seq, len(spans))
        if room:
            rows = [self._values(bytes(buf[s + 5 : e])) for s, e in spans[:room]]
            self._recorder.add({"k": "rows", "seq": self._seq, "rows": rows})
        return None

    def _values(self, body: bytes) -> list[Any]:
        try:
            raw = parse_data_row(body)
        except ProtocolError:
            return []
        formats = self._formats
        out: list[Any] = []
        for i, value in enumerate(raw):
            if value is None:
                out.append(None)
            elif (formats[i] if i < len(formats) else 0) == 1:
                out.append({"binary": len(value)})  # never the bytes: their meaning is the type's
            else:
                out.append(value.decode("utf-8", "replace"))
        return out


class SessionRecorder(Hook):
    """Records one session; ``sink`` publishes each chunk. ``rows_per_statement`` rows of each statement
    are written; the rest are counted."""

    def __init__(
        self,
        session: SessionInfo,
        sink: ChunkSink,
        *,
        rows_per_statement: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session_id = session.session_id
        self._sink = sink
        self._limit = rows_per_statement
        self._clock = clock
        self._start = clock()
        self._last_flush = self._start
        self._seq = 0
        self._parts: list[bytes] = []
        self._size = 0
        self._records = 0
        self._first: int | None = None
        self._last: int | None = None
        self._rows_recorded = 0
        self._rows_omitted = 0
        self._written: dict[int | None, int] = {}  # statement sequence -> rows written
        self._columns: dict[tuple[tuple[str, int, int], ...], bytes] = {}  # result shape -> its JSON
        self._closed = False
        identity = session.identity
        self.add({
            "k": "session",
            "sub": identity.sub,
            "kind": identity.kind,
            "on_behalf_of": identity.on_behalf_of,
            "connection": session.connection,
            "database": session.database,
            "role": session.upstream_role,
            "client_app": session.client_app,
        })  # fmt: skip

    # --------------------------------------------------------------------------- fed by the session

    def record_statement(self, sequence: int, event_id: str, statement_json: str) -> None:
        """A statement about to run; ``statement_json`` is its audit record (masked text, parameters)."""
        self._touch(sequence)
        self._raw(
            b'{"k":"statement","t":%s,"seq":%d,"event_id":"%s","statement":%s}\n'
            % (self._ms(), sequence, event_id.encode(), statement_json.encode())
        )

    def record_event(self, payload: bytes, sequence: int | None = None) -> None:
        """One of the session's audit events (compact JSON, as spooled)."""
        if sequence is not None:
            self._touch(sequence)
        self._raw(b'{"k":"event","t":%s,"event":%s}\n' % (self._ms(), payload))

    # ------------------------------------------------------------------------------------ hooks

    def row_description(self, stmt: StatementView | None, fields: Sequence[FieldDesc]) -> _Rows | None:
        seq = None if stmt is None else stmt.sequence
        shape = tuple((f.name, f.type_oid, f.format) for f in fields)
        columns = self._columns.get(shape)
        if columns is None:  # a session mostly repeats a few result shapes: encode each once
            if len(self._columns) >= _SHAPES:
                self._columns.clear()
            listed = [{"name": name, "type_oid": oid, "format": form} for name, oid, form in shape]
            columns = self._columns[shape] = _encode(listed)[:-1]
        self._raw(b'{"k":"columns","seq":%s,"columns":%s,"t":%s}\n' % (_seq(seq), columns, self._ms()))
        return _Rows(self, seq, tuple(f.format for f in fields))

    def copy_out(
        self, stmt: StatementView | None, buf: bytearray, spans: Sequence[tuple[int, int]]
    ) -> list[bytes | None] | None:
        seq = None if stmt is None else stmt.sequence
        room = self.room(seq, len(spans))
        if room:
            lines = [bytes(buf[s + 5 : e]).decode("utf-8", "replace") for s, e in spans[:room]]
            self.add({"k": "rows", "seq": seq, "rows": [[line] for line in lines]})
        return None

    def server_message(self, stmt: StatementView | None, mtype: int, body: bytes) -> bytes | None:
        if mtype in (_ERROR, _NOTICE):
            try:
                fields = parse_error_fields(body)
            except ProtocolError:
                fields = {}
            record: dict[str, Any] = {"k": "error" if mtype == _ERROR else "notice"}
            record["seq"] = None if stmt is None else stmt.sequence
            record.update({name: fields.get(code) for code, name in _FIELDS.items()})
            self.add(record)
        return None

    def command_complete(self, stmt: StatementView, tag: str, rows: int | None) -> None:
        written = self._written.get(stmt.sequence, 0)
        self.add({"k": "complete", "seq": stmt.sequence, "tag": tag, "rows": rows, "rows_recorded": written})
        if self._size >= CHUNK_BYTES or self._clock() - self._last_flush >= FLUSH_EVERY:
            self.flush()

    def close(self, session: SessionInfo, reason: str) -> None:
        if self._closed:
            return
        self.add({"k": "end", "reason": reason})
        self._closed = True
        try:
            self.flush(final=True)
        except Exception as exc:  # the session is over: say what was lost, never raise from close
            log.error("session %s: the recording's last chunk could not be kept: %s", self._session_id, exc)

    # ---------------------------------------------------------------------------------- chunks

    def room(self, seq: int | None, offered: int) -> int:
        """How many of ``offered`` rows of statement ``seq`` may still be written (the rest are counted)."""
        written = self._written.get(seq, 0)
        take = max(0, min(offered, self._limit - written))
        self._written[seq] = written + take
        self._rows_recorded += take
        self._rows_omitted += offered - take
        if seq is not None:
            self._touch(seq)
        return take

    def add(self, record: dict[str, Any]) -> None:
        record["t"] = self._ms_value()
        self._raw(_encode(record))

    def flush(self, *, final: bool = False) -> None:
        """Cut a chunk of what was recorded since the last one (nothing to cut: nothing happens, unless
        ``final``, which always writes the closing chunk)."""
        if not self._parts and not final:
            return
        self._seq += 1
        data = fmt.chunk_header(self._session_id, self._seq) + b"".join(self._parts)
        if has_candidate(data):
            data = mask_card_data(data).data
        meta = ChunkMeta(
            seq=self._seq,
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
            subject=fmt.subject(self._session_id),
            msg_id=fmt.msg_id(self._session_id, self._seq),
            records=self._records,
            first_sequence=self._first,
            last_sequence=self._last,
            rows_recorded=self._rows_recorded,
            rows_omitted=self._rows_omitted,
            final=final,
        )
        # only the latest statement can still have rows coming: forget the counts of the others
        self._written = {k: v for k, v in self._written.items() if k == self._last}
        self._parts, self._size, self._records = [], 0, 0
        self._first = self._last = None
        self._rows_recorded = self._rows_omitted = 0
        self._last_flush = self._clock()
        self._sink(data, meta)

    def _raw(self, line: bytes) -> None:
        self._parts.append(line)
        self._size += len(line)
        self._records += 1
        if self._size >= fmt.MAX_CHUNK_BYTES:
            self.flush()

    def _touch(self, sequence: int) -> None:
        if self._first is None:
            self._first = sequence
        self._last = sequence

    def _ms_value(self) -> float:
        return round((self._clock() - self._start) * 1000, 3)

    def _ms(self) -> bytes:
        return repr(self._ms_value()).encode()


class RecordingPolicy:
    """One connection's recording settings; builds each session's recorder (none when switched off).
    ``append`` puts a chunk on the spool (subject, msg id, bytes), in order with the session's events."""

    def __init__(
        self, *, enabled: bool, rows_per_statement: int, append: Callable[[str, str, bytes], object]
    ):
        self.enabled = enabled
        self.rows_per_statement = rows_per_statement
        self._append = append

    def hooks(self, session: SessionInfo) -> list[Hook]:
        if not self.enabled:
            return []

        def sink(data: bytes, meta: ChunkMeta) -> None:
            self._append(meta.subject, meta.msg_id, data)
            session.emit(RecordingChunk, _chunk_data(meta))

        return [SessionRecorder(session, sink, rows_per_statement=self.rows_per_statement)]


def _chunk_data(meta: ChunkMeta) -> RecordingChunkData:
    return RecordingChunkData(
        seq=meta.seq,
        sha256=meta.sha256,
        bytes=meta.size,
        subject=meta.subject,
        msg_id=meta.msg_id,
        records=meta.records,
        first_sequence=meta.first_sequence,
        last_sequence=meta.last_sequence,
        rows_recorded=meta.rows_recorded,
        rows_omitted=meta.rows_omitted,
        final=meta.final,
        format=fmt.FORMAT,
    )
