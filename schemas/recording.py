"""The session recording format, ``pcigate-recording/1``: what the gateway writes to stream
``PCIGATE_RECORDINGS`` and ``pcigate replay`` reads back. Pure: no I/O.

A recording is a sequence of chunks published on ``pcigate.recordings.<session_id>`` with
``Nats-Msg-Id`` ``<session_id>.<seq>``. For each chunk the gateway emits a ``recording.chunk`` audit event
with the chunk's SHA-256, so the evidence ledger commits to every chunk. A chunk is UTF-8 JSON lines: a
header line, then records, each one compact JSON object with a kind ``k`` and ``t``, the milliseconds
since the session opened:

``chunk``      ``format``, ``session_id``, ``seq`` (1, 2, … without gaps) — always the first line
``session``    who (``sub``, ``kind``, ``on_behalf_of``), ``connection``, ``database``, ``role``,
               ``client_app`` — the first record of chunk 1
``statement``  ``seq``, ``event_id``, ``statement``: the statement as its audit event holds it (masked text
               and parameters)
``columns``    ``seq``, ``columns``: ``name``, ``type_oid``, ``format`` of a result set
``rows``       ``seq``, ``rows``: lists of values; text as the client received it after masking, null,
               or ``{"binary": <length>}`` for a binary-format value (never its bytes)
``complete``   ``seq``, ``tag``, ``rows`` (the server's count), ``rows_recorded``
``error``,     ``seq`` (or null), ``severity``, ``sqlstate``, ``message``, ``detail``, ``hint``: as the client
``notice``     received them, after masking
``event``      ``event``: one of the session's audit events (a block, an approval, masking), as emitted
``end``        ``reason``: the session ended (the last record of the final chunk)

Everything in a chunk passed masking first, and the writer masks any card number that could still be in
it before hashing (defence in depth): a recording never holds clear card data.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "FORMAT",
    "KINDS",
    "MAX_CHUNK_BYTES",
    "Chunk",
    "RecordingFormatError",
    "chunk_header",
    "encode_record",
    "msg_id",
    "parse_chunk",
    "subject",
]

FORMAT: Final = "pcigate-recording/1"
SUBJECT_PREFIX: Final = "pcigate.recordings."
MAX_CHUNK_BYTES: Final = 256 * 1024  # a chunk is cut before it would pass this (one record may exceed it)
KINDS: Final = frozenset(
    {"chunk", "session", "statement", "columns", "rows", "complete", "error", "notice", "event", "end"}
)

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


class RecordingFormatError(ValueError):
    """A chunk that is not ``pcigate-recording/1``; the message says where."""


def subject(session_id: str) -> str:
    return SUBJECT_PREFIX + session_id


def msg_id(session_id: str, seq: int) -> str:
    return f"{session_id}.{seq}"


def encode_record(record: Mapping[str, Any]) -> bytes:
    """One record as a line (compact JSON, UTF-8, newline); a lone surrogate, which UTF-8 cannot hold,
    becomes ``?``."""
    return (_dumps(record) + "\n").encode("utf-8", "replace")


def chunk_header(session_id: str, seq: int) -> bytes:
    return encode_record({"k": "chunk", "format": FORMAT, "session_id": session_id, "seq": seq})


@dataclass(frozen=True, slots=True)
class Chunk:
    session_id: str
    seq: int
    records: tuple[Mapping[str, Any], ...]  # after the header


def parse_chunk(data: bytes, *, session_id: str | None = None, seq: int | None = None) -> Chunk:
    """Decode a chunk; with ``session_id`` / ``seq``, its header must name them."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise RecordingFormatError("a chunk is UTF-8") from None
    if not text.endswith("\n"):
        raise RecordingFormatError("a chunk ends with a newline")
    records: list[Mapping[str, Any]] = []
    for number, line in enumerate(text[:-1].split("\n"), start=1):
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            raise RecordingFormatError(f"line {number} is not JSON") from None
        if not isinstance(record, dict) or record.get("k") not in KINDS:
            raise RecordingFormatError(f"line {number} is not a record of a known kind")
        records.append(record)
    header = records[0]
    if header.get("k") != "chunk" or header.get("format") != FORMAT:
        raise RecordingFormatError(f"the first line is not a {FORMAT} chunk header")
    sid, nth = header.get("session_id"), header.get("seq")
    if not isinstance(sid, str) or type(nth) is not int or nth < 1:
        raise RecordingFormatError("the chunk header names no session or sequence number")
    if session_id is not None and sid != session_id:
        raise RecordingFormatError(f"the chunk belongs to session {sid}, not {session_id}")
    if seq is not None and nth != seq:
        raise RecordingFormatError(f"the chunk is number {nth}, not {seq}")
    if any(r.get("k") == "chunk" for r in records[1:]):
        raise RecordingFormatError("a chunk has one header")
    return Chunk(sid, nth, tuple(records[1:]))


def statement_text(record: Mapping[str, Any]) -> str:
    """The masked text of a ``statement`` record."""
    statement = record.get("statement")
    return str(statement.get("text", "")) if isinstance(statement, Mapping) else ""


def value_text(value: Any) -> str:
    """A ``rows`` value as a table cell."""
    if value is None:
        return ""
    if isinstance(value, Mapping) and "binary" in value:
        return f"<binary, {value['binary']} bytes>"
    return str(value)


def row_values(rows: Any) -> Sequence[Sequence[Any]]:
    return rows if isinstance(rows, list) else []
