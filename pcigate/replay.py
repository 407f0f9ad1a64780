"""What ``pcigate replay`` shows, from a session's recording (``schemas.recording``). Pure: it checks chunks
against the hashes the ledger holds and turns records into terminal lines, psql-style; the CLI reads the
ledger and the stream.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from schemas.recording import Chunk, RecordingFormatError, parse_chunk, statement_text, value_text

__all__ = ["Attested", "ChunkProblemError", "Line", "lines", "table", "verified_chunks"]


@dataclass(frozen=True, slots=True)
class Attested:
    """A chunk as the ledger knows it: its ``recording.chunk`` event."""

    seq: int
    sha256: str
    size: int
    msg_id: str
    final: bool
    ledger_index: int


class ChunkProblemError(Exception):
    """A chunk is missing, changed, or not in the ledger; the message names it."""


def verified_chunks(
    session_id: str, attested: Sequence[Attested], stored: Mapping[int, bytes]
) -> Iterator[Chunk]:
    """The session's chunks in order, each checked against its hash in the ledger; raises ChunkProblemError at
    the first one that is missing, changed or unattested (nothing after it is shown)."""
    by_seq = {a.seq: a for a in attested}
    last = max([*by_seq, *stored], default=0)
    for seq in range(1, last + 1):
        record = by_seq.get(seq)
        data = stored.get(seq)
        name = f"chunk {seq} ({session_id}.{seq})"
        if record is None:
            raise ChunkProblemError(
                f"{name} is in the recordings stream but not in the ledger: it is not attested"
            )
        if data is None:
            raise ChunkProblemError(
                f"{name} is missing from the recordings stream (ledger entry {record.ledger_index})"
            )
        digest = hashlib.sha256(data).hexdigest()
        if digest != record.sha256 or len(data) != record.size:
            raise ChunkProblemError(
                f"{name} was changed: its SHA-256 is {digest}, the ledger (entry {record.ledger_index}) "
                f"says {record.sha256}"
            )
        try:
            yield parse_chunk(data, session_id=session_id, seq=seq)
        except RecordingFormatError as exc:
            raise ChunkProblemError(f"{name} matches its hash but cannot be read: {exc}") from None


@dataclass(frozen=True, slots=True)
class Line:
    """A line to show ``t`` milliseconds into the session."""

    t: float
    text: str


NUMERIC_OIDS: Final = frozenset({20, 21, 23, 26, 700, 701, 790, 1700})  # psql right-aligns these


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[bool] = ()) -> list[str]:
    """psql's aligned format: a header, a rule, the rows (``right``: columns aligned right, numbers)."""
    cells = [[value_text(v) for v in row] for row in rows]
    widths = [len(c) for c in columns]
    for row in cells:
        for i, cell in enumerate(row[: len(widths)]):
            widths[i] = max(widths[i], len(cell))
    flush = [i < len(right) and right[i] for i in range(len(widths))]
    out = [" " + " | ".join(c.center(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    out.append("-" + "-+-".join("-" * w for w in widths) + "-")
    for row in cells:
        padded = (c.rjust(w) if r else c.ljust(w) for c, w, r in zip(row, widths, flush, strict=False))
        out.append(" " + " | ".join(padded).rstrip())
    return out


def _who(record: Mapping[str, Any]) -> str:
    who = f"{record.get('sub')} ({record.get('kind')})"
    if record.get("on_behalf_of"):
        who += f" for {record['on_behalf_of']}"
    return who


def _event_lines(event: Mapping[str, Any], prompt: str) -> list[str]:
    kind = event.get("type")
    data = event.get("data") or {}
    outcome = event.get("outcome") or {}
    if kind == "command.blocked":
        message = outcome.get("message") or "statement refused by policy"
        statement = data.get("statement")
        text = statement.get("text") if isinstance(statement, Mapping) else None
        shown = [f"{prompt}{text}"] if text else []
        return [*shown, f"ERROR:  {outcome.get('code') or '42501'}: {message}"]
    if kind == "approval.requested":
        groups = ", ".join(data.get("approver_groups") or ())
        expires = data.get("expires_at")
        return [f"-- held for approval {data.get('request_id')} (approvers: {groups}; expires {expires})"]
    if kind == "approval.decided":
        actor = event.get("actor") or {}
        verb = "approved" if data.get("decision") == "approve" else "denied"
        return [f"-- {verb} by {actor.get('sub')}: {data.get('reason')}"]
    if kind == "approval.expired":
        return [f"-- approval {data.get('request_id')} expired without a decision"]
    if kind == "masking.applied":
        return [f"-- {data.get('total_values')} value(s) masked"]
    if kind == "sad.detected":
        return [f"-- sensitive authentication data ({data.get('kind')}) {data.get('action')}"]
    return []


class _Player:
    """Turns records into lines, holding a result's rows until its completion."""

    def __init__(self, database: str = "") -> None:
        self.prompt = f"{database}=> "
        self.columns: list[str] = []
        self.right: list[bool] = []
        self.rows: list[Sequence[Any]] = []
        self.notes: list[str] = []  # event lines that arrived while a result was open: shown after it

    def feed(self, record: Mapping[str, Any]) -> Iterator[str]:
        kind = record.get("k")
        if kind == "session":
            self.prompt = f"{record.get('database')}=> "
            yield (
                f"-- session of {_who(record)} on {record.get('connection')} as {record.get('role')}"
                f" ({record.get('client_app') or 'unknown client'})"
            )
        elif kind == "statement":
            yield from self._result()
            yield f"{self.prompt}{statement_text(record)}"
            params = (record.get("statement") or {}).get("parameters")
            if params:
                yield f"-- parameters: {json.dumps(params, ensure_ascii=False)}"
        elif kind == "columns":
            yield from self._result()
            described = [c for c in record.get("columns") or () if isinstance(c, Mapping)]
            self.columns = [str(c.get("name")) for c in described]
            self.right = [c.get("type_oid") in NUMERIC_OIDS for c in described]
        elif kind == "rows":
            rows = record.get("rows")
            self.rows.extend(rows if isinstance(rows, list) else [])
        elif kind == "complete":
            yield from self._result(record)
        elif kind in ("error", "notice"):
            yield from self._result()
            label = "ERROR" if kind == "error" else (record.get("severity") or "NOTICE")
            yield f"{label}:  {record.get('sqlstate') or ''}: {record.get('message') or ''}".replace(
                ":  :", ": "
            )
            for extra in ("detail", "hint"):
                if record.get(extra):
                    yield f"{extra.upper()}:  {record[extra]}"
        elif kind == "event":
            event = record.get("event")
            shown = _event_lines(event, self.prompt) if isinstance(event, Mapping) else []
            if self.columns:
                self.notes.extend(shown)
            else:
                yield from shown
        elif kind == "end":
            yield from self._result()
            yield f"-- session ended ({record.get('reason')})"

    def _result(self, complete: Mapping[str, Any] | None = None) -> Iterator[str]:
        if self.columns:
            yield from table(self.columns, self.rows, self.right)
            if complete is not None:
                total, kept = complete.get("rows"), complete.get("rows_recorded")
                shown = f"({total} row{'s' if total != 1 else ''})"
                if isinstance(total, int) and isinstance(kept, int) and kept < total:
                    shown += f"  -- {kept} recorded, {total - kept} counted only"
                yield shown
            yield ""
        elif complete is not None:
            yield str(complete.get("tag") or "")
        yield from self.notes
        self.columns, self.rows, self.notes = [], [], []


def lines(chunks: Iterator[Chunk]) -> Iterator[Line]:
    """The session as the client saw it, line by line with its time."""
    player = _Player()
    for chunk in chunks:
        for record in chunk.records:
            t = record.get("t")
            at = float(t) if isinstance(t, int | float) else 0.0
            for text in player.feed(record):
                yield Line(at, text)
