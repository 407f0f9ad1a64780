"""Session recording without I/O: the recorder's chunks (header, records, row limit, cut points, hashes),
the format's parser, and replay's chunk checks and psql-style rendering. The recorder sits after masking in
the gateway; here it is also shown that a card number that would still reach it is masked in the chunk."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import pytest

from gateway.hooks import HookChain, SessionInfo, StatementView
from gateway.identity import VerifiedIdentity
from gateway.pgwire import messages as m
from gateway.pgwire.messages import FieldDesc
from gateway.recording import ChunkMeta, RecordingPolicy, SessionRecorder
from gateway.sqltext import analyze
from pcigate.devstack.testcards import TEST_PANS
from pcigate.replay import Attested, ChunkProblemError, lines, table, verified_chunks
from schemas.recording import FORMAT, RecordingFormatError, parse_chunk
from tests.pgframes import frames

SID = "019aa000-0000-7000-8000-000000000001"
STATEMENT = json.dumps({"text": "SELECT card_id, pan FROM cards WHERE card_id = $1", "parameters": ["7"]})


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def rec_info() -> SessionInfo:
    identity = VerifiedIdentity(
        sub="agent-7", iss="https://issuer.example", name=None, groups=("agents",), kind="agent",
        on_behalf_of="alice@example.com", jti=None, expires_at=datetime(2030, 1, 1, tzinfo=UTC), amr=(),
    )  # fmt: skip
    return SessionInfo(SID, identity, "payments", "payments", "pcigate_ro", "127.0.0.1", 5000, "psql", False)


def recorder(limit: int = 2) -> tuple[SessionRecorder, list[tuple[bytes, ChunkMeta]], Clock]:
    chunks: list[tuple[bytes, ChunkMeta]] = []
    clock = Clock()
    sink = lambda data, meta: chunks.append((data, meta))  # noqa: E731 - a one-line sink
    rec = SessionRecorder(rec_info(), sink, rows_per_statement=limit, clock=clock)
    return rec, chunks, clock


def run_select(rec: SessionRecorder, seq: int, rows: list[list[bytes | None]]) -> None:
    stmt = StatementView(seq, "SELECT card_id, pan FROM cards", analyze("SELECT 1"), None, [], "simple")
    rec.record_statement(seq, f"019aa000-0000-7000-8000-00000000010{seq}", STATEMENT)
    handler = rec.row_description(stmt, [FieldDesc("card_id", type_oid=20), FieldDesc("pan")])
    assert handler is not None
    buf, spans = frames([m.data_row(r) for r in rows])
    assert handler.data_rows(buf, spans) is None  # it never changes what the client gets
    rec.command_complete(stmt, f"SELECT {len(rows)}", len(rows))


def test_a_session_is_recorded_in_chunks_whose_hashes_the_events_carry() -> None:
    rec, chunks, clock = recorder()
    run_select(rec, 1, [[b"1", b"411111******1111"], [b"2", None], [b"3", b"555555******4444"]])
    assert not chunks  # less than a second and 64 KiB: nothing cut yet
    clock.now += 1.5
    run_select(rec, 2, [[b"4", b"378282*****0005"]])
    assert len(chunks) == 1
    rec.close(rec_info(), "client_closed")
    assert [meta.seq for _, meta in chunks] == [1, 2] and chunks[-1][1].final
    first, meta = chunks[0]
    assert meta.sha256 == hashlib.sha256(first).hexdigest() and meta.size == len(first)
    assert meta.subject == f"pcigate.recordings.{SID}" and meta.msg_id == f"{SID}.1"
    assert (meta.first_sequence, meta.last_sequence) == (1, 2)
    assert (meta.rows_recorded, meta.rows_omitted) == (3, 1)  # statement 1: 2 of 3 rows written
    chunk = parse_chunk(first, session_id=SID, seq=1)
    kinds = [r["k"] for r in chunk.records]
    assert kinds == ["session", "statement", "columns", "rows", "complete", "statement", "columns", "rows",
                     "complete"]  # fmt: skip
    assert chunk.records[0]["on_behalf_of"] == "alice@example.com"
    assert chunk.records[3]["rows"] == [["1", "411111******1111"], ["2", None]]
    assert chunk.records[4] == {"k": "complete", "seq": 1, "tag": "SELECT 3", "rows": 3, "rows_recorded": 2,
                                "t": 0.0}  # fmt: skip
    assert [r["k"] for r in parse_chunk(chunks[1][0]).records] == ["end"]


def test_a_card_number_that_reaches_the_recorder_is_masked_in_the_chunk() -> None:
    rec, chunks, _ = recorder(limit=10)
    pan = TEST_PANS["visa"][0]
    run_select(rec, 1, [[b"1", pan.encode()]])
    rec.flush()
    data, _ = chunks[0]
    assert pan.encode() not in data and b"411111" in data
    assert chunks[0][1].sha256 == hashlib.sha256(data).hexdigest()  # the hash is of what is kept


def test_binary_values_errors_notices_and_events_are_recorded_without_raw_bytes() -> None:
    rec, chunks, _ = recorder()
    stmt = StatementView(1, "SELECT x", analyze("SELECT 1"), None, [], "extended")
    handler = rec.row_description(stmt, [FieldDesc("blob", type_oid=17, format=1)])
    assert handler is not None
    buf, spans = frames([m.data_row([b"\x04\x11\x11\x11"])])
    handler.data_rows(buf, spans)
    body = m.error_response("ERROR", "42501", "permission denied for table cards")[5:]
    assert rec.server_message(stmt, ord("E"), body) is None
    rec.record_event(
        b'{"type":"command.blocked","outcome":{"code":"42501","message":"DROP is not allowed"}}', 2
    )
    rec.flush()
    records = parse_chunk(chunks[0][0]).records
    assert records[2]["rows"] == [[{"binary": 4}]]
    assert records[3]["k"] == "error" and records[3]["sqlstate"] == "42501" and records[3]["seq"] == 1
    assert records[4]["event"]["type"] == "command.blocked" and chunks[0][1].last_sequence == 2


def test_a_big_session_is_cut_by_size() -> None:
    rec, chunks, _ = recorder(limit=100_000)
    for seq in range(1, 40):
        run_select(rec, seq, [[str(i).encode(), b"x" * 500] for i in range(100)])
    assert len(chunks) >= 5 and all(meta.size < 300_000 for _, meta in chunks)
    assert [meta.seq for _, meta in chunks] == list(range(1, len(chunks) + 1))


def attest(chunks: list[tuple[bytes, ChunkMeta]]) -> list[Attested]:
    return [Attested(meta.seq, meta.sha256, meta.size, meta.msg_id, meta.final, i) for i, (_, meta) in
            enumerate(chunks)]  # fmt: skip


def recorded() -> tuple[list[Attested], dict[int, bytes]]:
    rec, chunks, clock = recorder()
    run_select(rec, 1, [[b"1", b"411111******1111"], [b"2", None], [b"3", b"555555******4444"]])
    rec.flush()
    clock.now += 2
    rec.record_event(
        b'{"type":"approval.requested","data":{"request_id":"r-1","approver_groups":["approvers"],'
        b'"expires_at":"2026-12-05T10:05:00Z"}}'
    )
    rec.record_event(b'{"type":"approval.decided","actor":{"sub":"bob@example.com"},'
                     b'"data":{"decision":"approve","reason":"CHG-1"}}')  # fmt: skip
    rec.close(rec_info(), "client_closed")
    return attest(chunks), {meta.seq: data for data, meta in chunks}


def test_replay_shows_the_session_as_psql_did() -> None:
    attested, stored = recorded()
    text = [line.text for line in lines(verified_chunks(SID, attested, stored))]
    assert text[0] == "-- session of agent-7 (agent) for alice@example.com on payments as pcigate_ro (psql)"
    assert text[1] == "payments=> SELECT card_id, pan FROM cards WHERE card_id = $1"
    assert text[3:8] == [
        " card_id |       pan",
        "---------+------------------",
        "       1 | 411111******1111",
        "       2 |",
        "(3 rows)  -- 2 recorded, 1 counted only",
    ]
    assert "-- held for approval r-1 (approvers: approvers; expires 2026-12-05T10:05:00Z)" in text
    assert "-- approved by bob@example.com: CHG-1" in text and text[-1] == "-- session ended (client_closed)"


def test_a_changed_missing_or_unattested_chunk_stops_the_replay_naming_it() -> None:
    attested, stored = recorded()
    changed = dict(stored)
    changed[1] = changed[1].replace(b"411111", b"411112")
    with pytest.raises(ChunkProblemError, match=rf"chunk 1 \({SID}\.1\) was changed"):
        list(verified_chunks(SID, attested, changed))
    with pytest.raises(ChunkProblemError, match=r"chunk 2 .* is missing from the recordings stream"):
        list(verified_chunks(SID, attested, {1: stored[1]}))
    with pytest.raises(ChunkProblemError, match=r"chunk 2 .* not in the ledger"):
        list(verified_chunks(SID, attested[:1], stored))


def test_the_format_refuses_what_it_does_not_know() -> None:
    good = f'{{"k":"chunk","format":"{FORMAT}","session_id":"{SID}","seq":1}}\n'.encode()
    assert parse_chunk(good).records == ()
    for bad, why in ((b"", "newline"), (b"{}\n", "known kind"), (good.replace(b"/1", b"/2"), "header"),
                     (good + good, "one header"), (b"\xff\n", "UTF-8")):  # fmt: skip
        with pytest.raises(RecordingFormatError, match=why):
            parse_chunk(bad)
    with pytest.raises(RecordingFormatError, match="not 2"):
        parse_chunk(good, seq=2)


def test_table_aligns_like_psql() -> None:
    assert table(["a", "long name"], [["1", None], [{"binary": 3}, "x"]]) == [
        "         a         | long name",
        "-------------------+-----------",
        " 1                 |",
        " <binary, 3 bytes> | x",
    ]


def test_a_connection_can_switch_recording_off() -> None:
    appended: list[tuple[str, str, bytes]] = []
    info = rec_info()
    off = RecordingPolicy(enabled=False, rows_per_statement=100, append=lambda *a: appended.append(a))
    assert off.hooks(info) == []
    on = RecordingPolicy(enabled=True, rows_per_statement=100, append=lambda *a: appended.append(a))
    (hook,) = on.hooks(info)
    assert isinstance(hook, SessionRecorder)
    chain = HookChain([hook])
    assert not chain.wants_statements and not chain.wants_waits  # it never judges or holds a statement


def test_a_value_utf8_cannot_hold_still_makes_a_valid_chunk() -> None:
    rec, chunks, _ = recorder()
    stmt = StatementView(1, "SELECT x", analyze("SELECT 1"), None, [], "simple")
    rec.row_description(stmt, [FieldDesc("bad\udcff name")])
    rec.flush()
    (columns,) = [r for r in parse_chunk(chunks[0][0]).records if r["k"] == "columns"]
    assert columns["columns"][0]["name"] == "bad\udcff name"
