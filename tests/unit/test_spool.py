"""The audit spool on real files in tmp_path: ordering, group commit, recovery, reclamation, refusal."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import pytest

from gateway import spool as spool_mod
from gateway import spool_format
from gateway.spool import Spool, SpoolLockedError, SpoolRecord, SpoolUnavailable

SUBJECT = "pcigate.audit.statement"


class CountingLoop:
    """The running loop, counting cross-thread wake-ups (writes run on the loop: there must be none)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.threadsafe_calls = 0

    def call_soon_threadsafe(self, cb: Callable[..., object], *args: object) -> asyncio.Handle:
        self.threadsafe_calls += 1
        return self._loop.call_soon_threadsafe(cb, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loop, name)


def opened(directory: Path, **kw: Any) -> Spool:
    kw.setdefault("segment_bytes", 1 << 20)  # keeps the zero-filled spare segments small
    s = Spool(directory, **kw)
    s.open(asyncio.get_running_loop())
    return s


@pytest.fixture
async def spool(tmp_path: Path) -> AsyncIterator[Spool]:
    s = opened(tmp_path / "spool")
    yield s
    s.close()


def crash_copy(src: Path, dst: Path) -> None:
    """The files a kill -9 would leave (the spare segment being prepared meanwhile is not part of it)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("spare.*"))


def payload(i: int) -> bytes:
    return f'{{"id": "evt-{i}", "n": {i}}}'.encode()


def ids(records: list[SpoolRecord]) -> list[str]:
    return [r.msg_id for r in records]


async def test_append_read_and_durable_order(spool: Spool) -> None:
    s1 = spool.append_event(SUBJECT, "evt-1", payload(1))
    s2 = spool.append_intent(SUBJECT, "evt-2", b"fallback")
    s3 = spool.append_event("pcigate.audit.login", "evt-3", payload(3))
    assert (s1, s2, s3) == (1, 2, 3)
    assert spool.read(0, 100, 1 << 20) == []  # nothing is readable before it is durable
    assert spool.durable_seq == 0
    await spool.wait_durable(s3)
    assert spool.durable_seq == 3
    assert spool.read(0, 100, 1 << 20) == [
        SpoolRecord(1, SUBJECT, "evt-1", payload(1)),
        SpoolRecord(3, "pcigate.audit.login", "evt-3", payload(3)),
    ]  # intents are never returned
    assert spool.read(1, 100, 1 << 20)[0].seq == 3
    assert spool.read(3, 100, 1 << 20) == []
    assert spool.read(0, 1, 1 << 20) == [SpoolRecord(1, SUBJECT, "evt-1", payload(1))]
    assert len(spool.read(0, 100, 1)) == 1  # a byte limit below one record still returns one


async def test_when_durable_is_synchronous_once_durable(spool: Spool) -> None:
    seq = spool.append_event(SUBJECT, "e", b"{}")
    got: list[SpoolUnavailable | None] = []
    spool.when_durable(seq, got.append)
    assert got == []
    await spool.wait_durable(seq)
    assert got == [None]
    spool.when_durable(seq, got.append)
    assert got == [None, None]  # called before when_durable returned
    with pytest.raises(ValueError, match="never appended"):
        spool.when_durable(seq + 5, got.append)


async def test_group_commit_shares_flushes_without_cross_thread_calls(tmp_path: Path) -> None:
    loop = CountingLoop(asyncio.get_running_loop())
    spool = Spool(tmp_path / "spool")
    spool.open(cast(asyncio.AbstractEventLoop, loop))
    try:
        done: list[SpoolUnavailable | None] = []
        seqs = [spool.append_event(SUBJECT, f"e{i}", payload(i)) for i in range(3000)]
        for seq in seqs:
            spool.when_durable(seq, done.append)
        await spool.wait_durable(seqs[-1])
        await asyncio.sleep(0)
        assert done == [None] * 3000
        stats = spool.stats()
        assert stats["records_written"] == 3000
        assert cast(int, stats["fsyncs"]) <= 10  # appended in one go: a handful of flushes, not 3000
        assert loop.threadsafe_calls == 0

        # concurrent sessions, each waiting for its record before the next statement
        before = cast(int, spool.stats()["fsyncs"])

        async def session(n: int) -> None:
            for i in range(150):
                await spool.wait_durable(spool.append_event(SUBJECT, f"s{n}-{i}", payload(i)))

        await asyncio.gather(*(session(n) for n in range(8)))
        flushes = cast(int, spool.stats()["fsyncs"]) - before
        assert flushes <= 1200 // 3, flushes  # 8 sessions share flushes
    finally:
        spool.close()


async def test_crash_image_keeps_every_durable_record_and_seq_continues(tmp_path: Path) -> None:
    live = opened(tmp_path / "live")
    try:
        for i in range(500):
            live.append_event(SUBJECT, f"e{i}", payload(i))
        await live.wait_durable(500)
        crash_copy(live.directory, tmp_path / "crashed")  # no close: what a kill -9 leaves
    finally:
        live.close()
    again = opened(tmp_path / "crashed")
    try:
        records = again.read(0, 10_000, 1 << 30)
        assert ids(records) == [f"e{i}" for i in range(500)]
        assert [r.seq for r in records] == list(range(1, 501))
        assert again.append_event(SUBJECT, "next", b"{}") == 501
        await again.wait_durable(501)
    finally:
        again.close()
    third = opened(tmp_path / "crashed")
    try:
        assert third.read(499, 10, 1 << 20) == [
            SpoolRecord(500, SUBJECT, "e499", payload(499)),
            SpoolRecord(501, SUBJECT, "next", b"{}"),
        ]
    finally:
        third.close()


def last_segment(directory: Path) -> Path:
    return sorted(directory.glob("*.seg"))[-1]


async def test_torn_tail_is_cut_and_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    d = tmp_path / "spool"
    s = opened(d)
    for i in range(20):
        s.append_event(SUBJECT, f"e{i}", payload(i))
    s.close()  # close trims the active segment to its last record
    seg = last_segment(d)
    seg.write_bytes(seg.read_bytes()[:-7])  # the last record half written
    caplog.set_level(logging.WARNING, logger="gateway.spool")
    s = opened(d)
    try:
        assert ids(s.read(0, 100, 1 << 20)) == [f"e{i}" for i in range(19)]
        assert any("torn record" in r.getMessage() for r in caplog.records)
        assert s.append_event(SUBJECT, "after", b"{}") == 20  # the torn record's seq is reused
        await s.wait_durable(20)
    finally:
        s.close()
    s = opened(d)
    try:
        assert ids(s.read(18, 100, 1 << 20)) == ["e18", "after"]
    finally:
        s.close()


async def test_garbage_in_preallocated_tail_is_cut(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A power cut can persist pages of an unfinished batch out of order: nonzero bytes after the end."""
    live = opened(tmp_path / "live")
    try:
        for i in range(10):
            live.append_event(SUBJECT, f"e{i}", payload(i))
        await live.wait_durable(10)
        crash_copy(live.directory, tmp_path / "crashed")
    finally:
        live.close()
    seg = last_segment(tmp_path / "crashed")
    data = bytearray(seg.read_bytes())
    end = len(data.rstrip(b"\0"))
    data[end + 100 : end + 200] = b"\x55" * 100
    seg.write_bytes(bytes(data))
    caplog.set_level(logging.WARNING, logger="gateway.spool")
    s = opened(tmp_path / "crashed")
    try:
        assert ids(s.read(0, 100, 1 << 20)) == [f"e{i}" for i in range(10)]
        assert any("torn record" in r.getMessage() for r in caplog.records)
    finally:
        s.close()


async def test_damaged_middle_segment_refuses_to_open(tmp_path: Path) -> None:
    d = tmp_path / "spool"
    s = opened(d, segment_bytes=4096)
    for i in range(200):
        s.append_event(SUBJECT, f"e{i}", payload(i))
    s.close()
    segs = sorted(d.glob("*.seg"))
    assert len(segs) > 3
    data = bytearray(segs[1].read_bytes())
    data[200] ^= 0xFF  # bit rot inside a durable record
    segs[1].write_bytes(bytes(data))
    with pytest.raises(spool_mod.SpoolCorruptError, match=r"records are missing|damaged"):
        opened(d, segment_bytes=4096)


async def test_interrupted_intent_becomes_its_fallback_event(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    d = tmp_path / "spool"
    s = opened(d)
    s.append_intent(SUBJECT, "stmt-1", b'{"id": "stmt-1", "outcome": "interrupted"}')
    s.append_intent(SUBJECT, "stmt-2", b'{"id": "stmt-2", "outcome": "interrupted"}')
    s.append_event(SUBJECT, "stmt-2", b'{"id": "stmt-2", "outcome": "success"}')
    s.append_event(SUBJECT, "login-1", b'{"id": "login-1"}')
    s.close()
    caplog.set_level(logging.WARNING, logger="gateway.spool")
    s = opened(d)
    try:
        records = s.read(0, 100, 1 << 20)
        assert [(r.seq, r.msg_id, r.payload) for r in records] == [
            (3, "stmt-2", b'{"id": "stmt-2", "outcome": "success"}'),
            (4, "login-1", b'{"id": "login-1"}'),
            (5, "stmt-1", b'{"id": "stmt-1", "outcome": "interrupted"}'),
        ]
        assert s.durable_seq == 5  # the fallback is durable before open() returns
        assert any("1 statement(s) were interrupted" in r.getMessage() for r in caplog.records)
    finally:
        s.close()
    caplog.clear()
    s = opened(d)  # reported once: the fallback event closed the intent
    try:
        assert len(s.read(0, 100, 1 << 20)) == 3
        assert not any("interrupted" in r.getMessage() for r in caplog.records)
    finally:
        s.close()


async def test_cursor_is_persisted_and_published_events_are_not_returned(tmp_path: Path) -> None:
    d = tmp_path / "spool"
    s = opened(d)
    try:
        for i in range(100):
            s.append_event(SUBJECT, f"e{i}", payload(i))
        await s.wait_durable(100)
        s.mark_published(60)
        assert s.read(60, 100, 1 << 20)[0].seq == 61
        assert s.stats()["pending_unpublished"] == 40
        await asyncio.sleep(0.3)  # the cursor is written within 100 ms, without a close
        crash_copy(d, tmp_path / "crashed")
        s.mark_published(70)
    finally:
        s.close()
    for directory, cursor in ((tmp_path / "crashed", 60), (d, 70)):
        again = opened(directory)
        try:
            assert again.published_seq == cursor
            assert again.stats()["pending_unpublished"] == 100 - cursor
            assert again.read(again.published_seq, 1000, 1 << 30)[0].msg_id == f"e{cursor}"
        finally:
            again.close()


@pytest.mark.parametrize("cursor", ['{"published_seq": 999}', "garbage"])
async def test_a_cursor_that_cannot_be_right_republishes_everything(
    tmp_path: Path, cursor: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Past the last record (segments removed by hand) or unreadable: resend rather than skip."""
    d = tmp_path / "spool"
    s = opened(d)
    for i in range(10):
        s.append_event(SUBJECT, f"e{i}", payload(i))
    s.mark_published(4)
    s.close()
    (d / "cursor").write_text(cursor)
    caplog.set_level(logging.ERROR, logger="gateway.spool")
    s = opened(d)
    try:
        assert s.published_seq == 0
        assert ids(s.read(s.published_seq, 100, 1 << 20)) == [f"e{i}" for i in range(10)]
        assert s.stats()["pending_unpublished"] == 10
        assert s.append_event(SUBJECT, "next", b"{}") == 11
        assert caplog.records
    finally:
        s.close()


async def test_segments_are_reclaimed_after_publish_but_not_past_an_open_intent(tmp_path: Path) -> None:
    s = opened(tmp_path / "spool", segment_bytes=4096)
    try:
        s.append_event(SUBJECT, "first", b"{}")
        intent = s.append_intent(SUBJECT, "long-statement", b"{}")
        for i in range(300):
            s.append_event(SUBJECT, f"e{i}", payload(i))
        await s.wait_durable(s.last_event_seq)
        many = cast(int, s.stats()["segments"])
        used = cast(int, s.stats()["used_bytes"])
        assert many > 5
        s.mark_published(s.last_event_seq)
        await asyncio.sleep(0.3)
        # the open intent pins its segment and every later one (at most a segment before it may go)
        firsts = sorted(int(p.name.split("-")[1][:-4]) for p in s.directory.glob("*.seg"))
        assert firsts[0] <= intent
        assert cast(int, s.stats()["segments"]) >= many - 1
        done = s.append_event(SUBJECT, "long-statement", b"{}")
        await s.wait_durable(done)
        s.mark_published(done)
        await asyncio.sleep(0.3)
        assert cast(int, s.stats()["segments"]) <= 2
        assert cast(int, s.stats()["used_bytes"]) < used // 5
        assert s.stats()["pending_unpublished"] == 0
        assert intent == 2
    finally:
        s.close()
    again = opened(tmp_path / "spool", segment_bytes=4096)
    try:
        assert again.read(again.published_seq, 100, 1 << 20) == []
        assert again.append_event(SUBJECT, "x", b"{}") == done + 1
    finally:
        again.close()


async def test_full_spool_refuses_until_published(tmp_path: Path) -> None:
    s = opened(tmp_path / "spool", max_bytes=64 << 10, segment_bytes=4096)
    try:
        s.append_intent(SUBJECT, "running", b"{}")
        seq = 0
        with pytest.raises(SpoolUnavailable) as err:
            for i in range(10_000):
                seq = s.append_event(SUBJECT, f"e{i}", b"x" * 200)
        assert err.value.reason == "spool is full (64.0 KiB)"
        assert s.stats()["failed"] is False
        # the event completing an open intent still fits: the statement already ran
        closing = s.append_event(SUBJECT, "running", b"{}")
        await s.wait_durable(closing)
        with pytest.raises(SpoolUnavailable, match="full"):
            s.append_event(SUBJECT, "more", b"x" * 200)
        s.mark_published(seq)
        await asyncio.sleep(0.3)
        s.append_event(SUBJECT, "more", b"x" * 200)  # space came back once published and reclaimed
    finally:
        s.close()


async def test_second_gateway_on_the_same_spool_is_refused(spool: Spool) -> None:
    with pytest.raises(SpoolLockedError, match="in use by another gateway process") as err:
        opened(spool.directory)
    assert isinstance(err.value, SpoolUnavailable)
    spool.append_event(SUBJECT, "still-works", b"{}")
    await spool.wait_durable(1)


async def test_closed_spool_refuses(tmp_path: Path) -> None:
    s = opened(tmp_path / "spool")
    s.close()
    with pytest.raises(SpoolUnavailable, match="spool is closed"):
        s.append_event(SUBJECT, "late", b"{}")
    s = opened(tmp_path / "spool")  # the lock was released
    s.close()


async def test_record_larger_than_a_segment(tmp_path: Path) -> None:
    d = tmp_path / "spool"
    s = opened(d, segment_bytes=4096)
    big = b"B" * 20_000
    s.append_event(SUBJECT, "small", b"{}")
    s.append_event(SUBJECT, "big", big)
    s.append_event(SUBJECT, "after", b"{}")
    await s.wait_durable(3)
    s.close()
    s = opened(d, segment_bytes=4096)
    try:
        records = s.read(0, 10, 1 << 20)
        assert ids(records) == ["small", "big", "after"]
        assert records[1].payload == big
    finally:
        s.close()


async def test_reads_fall_back_to_disk_beyond_the_memory_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool_mod, "_CACHE_RECORDS", 50)
    monkeypatch.setattr(spool_format, "_READ_CHUNK", 4096)  # records straddle read chunks
    s = opened(tmp_path / "spool", segment_bytes=8192)
    try:
        for i in range(400):
            if i % 7 == 0:
                s.append_intent(SUBJECT, f"i{i}", b"{}")
            s.append_event(SUBJECT, f"e{i}", payload(i))
        await s.wait_durable(s.last_event_seq)
        got: list[SpoolRecord] = []
        after = 0
        while batch := s.read(after, 33, 1 << 20):
            got.extend(batch)
            after = batch[-1].seq
        assert ids(got) == [f"e{i}" for i in range(400)]
        assert s.stats()["pending_unpublished"] == 400
        s.mark_published(got[200].seq)
        assert s.stats()["pending_unpublished"] == 199
    finally:
        s.close()


async def test_wait_for_records_wakes_on_durable_events(spool: Spool) -> None:
    waiter = asyncio.create_task(spool.wait_for_records(0))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    spool.append_intent(SUBJECT, "i", b"{}")
    await spool.wait_durable(1)
    await asyncio.sleep(0.01)
    assert not waiter.done()  # an intent is not something to publish
    spool.append_event(SUBJECT, "e", b"{}")
    await asyncio.wait_for(waiter, 2)
    await spool.wait_for_records(1)  # already there: returns at once


FAILING_SCRIPT = r"""
import asyncio, json, resource, sys
from pathlib import Path
from gateway.spool import Spool, SpoolUnavailable

async def main(directory):
    loop = asyncio.get_running_loop()
    s = Spool(Path(directory), segment_bytes=64 << 10, retry_interval=0.1)
    s.open(loop)
    await asyncio.sleep(0.5)  # let the first spare segment be prepared: then only rotation can fail
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    # files may not grow past 16 KiB: the next segment cannot be created (write/fallocate -> EFBIG)
    resource.setrlimit(resource.RLIMIT_FSIZE, (16 << 10, hard))
    out = {"accepted": [], "waits": {}}
    i = 0
    while not s.failed and i < 1000:
        batch = [s.append_event("pcigate.audit.t", f"e{i + k}", b"x" * 900) for k in range(5)]
        out["accepted"] += [f"e{i + k}" for k in range(5)]
        i += 5
        for seq in batch:
            s.when_durable(seq, lambda err, seq=seq: out["waits"].__setitem__(seq, err and err.reason))
        try:
            await s.wait_durable(batch[-1])
        except SpoolUnavailable:
            pass
    try:
        s.append_event("pcigate.audit.t", "refused", b"{}")
        out["refused"] = None
    except SpoolUnavailable as exc:
        out["refused"] = exc.reason
    await asyncio.sleep(0.5)
    out["still_failed"] = s.failed
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # the operator freed space
    for _ in range(100):
        if not s.failed:
            break
        await asyncio.sleep(0.05)
    out["recovered"] = not s.failed
    seq = s.append_event("pcigate.audit.t", "after", b"{}")
    await s.wait_durable(seq)
    out["accepted"].append("after")
    s.close()
    s = Spool(Path(directory), segment_bytes=64 << 10)
    s.open(loop)
    out["reopened"] = [(r.seq, r.msg_id) for r in s.read(0, 100000, 1 << 30)]
    s.close()
    print(json.dumps(out))

asyncio.run(main(sys.argv[1]))
"""


def test_write_failure_fails_closed_then_recovers_in_order(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-c", FAILING_SCRIPT, str(tmp_path / "spool")],
        cwd=root,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    waits = {int(k): v for k, v in out["waits"].items()}
    failures = {v for v in waits.values() if v is not None}
    assert failures == {"spool write failed: [Errno 27] File too large"}
    assert out["refused"] == "spool write failed: [Errno 27] File too large"
    assert out["still_failed"] is True  # retried every 0.1 s, still failing while the limit holds
    assert out["recovered"] is True
    assert "audit spool recovered" in proc.stderr
    # nothing accepted was dropped: the records whose waits failed were re-written, in order
    reopened = out["reopened"]
    assert [m for _, m in reopened] == out["accepted"]
    assert [q for q, _ in reopened] == list(range(1, len(reopened) + 1))
    # waits that succeeded came before every failure
    first_failed = min(q for q, v in waits.items() if v is not None)
    assert all(v is None for q, v in waits.items() if q < first_failed)
