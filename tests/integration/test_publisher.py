"""The spool publisher against a private, real nats-server: exactly once through outages and restarts."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.js.api import DiscardPolicy, StorageType, StreamConfig

from gateway.publisher import Publisher
from gateway.spool import Spool
from pcigate import nats_provision as np
from pcigate.devstack import binaries, procs
from pcigate.devstack.natsserver import NatsServer
from pcigate.devstack.ports import free_port

pytestmark = pytest.mark.integration

SUBJECT = "pcigate.audit.statement"


class Nats:
    """A private nats-server that a test can crash and restart on the same port and store."""

    def __init__(self, home: Path) -> None:
        self.server = NatsServer(binaries.nats_server_binary(), home, free_port(), free_port())
        self.url = self.server.url
        self.pid = self.server.start()

    async def crash(self) -> None:
        await asyncio.to_thread(procs.terminate, self.pid, self.server.marker, 0)  # SIGKILL right away

    async def restart(self) -> None:
        self.pid = await asyncio.to_thread(self.server.start)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Nats]:
    srv = Nats(tmp_path / "nats")
    yield srv
    procs.terminate(srv.pid, srv.server.marker)


@pytest.fixture
async def provisioned(server: Nats) -> str:
    await np.provision_url(server.url, np.Settings(duplicate_window=120))
    return server.url


@pytest.fixture
async def nc(provisioned: str) -> AsyncIterator[Client]:
    client = await nats.connect(provisioned)
    yield client
    await client.close()


@pytest.fixture
async def spool(tmp_path: Path) -> AsyncIterator[Spool]:
    s = Spool(tmp_path / "spool", segment_bytes=256 << 10)
    s.open(asyncio.get_running_loop())
    yield s
    s.close()


def event(i: int) -> tuple[str, bytes]:
    msg_id = f"evt-{i:06d}"
    return msg_id, json.dumps({"id": msg_id, "type": "statement", "n": i}).encode()


async def stream_ids(nc: Client) -> list[str]:
    """Every Nats-Msg-Id in the audit stream, in stream order."""
    js = nc.jetstream()
    total = (await js.stream_info(np.AUDIT_STREAM)).state.messages
    ids: list[str] = []
    for seq in range(1, total + 1):
        msg = await js.get_msg(np.AUDIT_STREAM, seq)
        assert msg.headers is not None
        ids.append(msg.headers["Nats-Msg-Id"])
        assert json.loads(msg.data or b"{}")["id"] == ids[-1]
    return ids


async def ids_in(nc: Client, stream: str) -> list[str]:
    """Every Nats-Msg-Id in ``stream``, in stream order (any payload)."""
    js = nc.jetstream()
    total = (await js.stream_info(stream)).state.messages
    ids: list[str] = []
    for seq in range(1, total + 1):
        msg = await js.get_msg(stream, seq)
        assert msg.headers is not None
        ids.append(msg.headers["Nats-Msg-Id"])
    return ids


def side_stream(
    name: str, subject: str, *, max_msgs: int = -1, storage: StorageType = StorageType.FILE
) -> StreamConfig:
    """A stream next to the audit stream, for records on other subjects."""
    return StreamConfig(
        name=name,
        subjects=[subject],
        storage=storage,
        discard=DiscardPolicy.NEW,
        duplicate_window=120,
        max_msgs=max_msgs,
    )


async def until(condition: Callable[[], object], what: str) -> None:
    """Poll ``condition()`` (a bounded number of times, never asserting elapsed time)."""
    for _ in range(400):
        if condition():
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"never happened: {what}")


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "gateway.publisher" and r.levelno == logging.WARNING
    ]


def retries_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Failed retries after an outage was reported (logged at debug level, one per attempt)."""
    return [r.getMessage() for r in caplog.records if "still unavailable" in r.getMessage()]


async def run_publisher(pub: Publisher) -> asyncio.Task[None]:
    return asyncio.create_task(pub.run())


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_publishes_every_event_exactly_once_in_order(
    provisioned: str, nc: Client, spool: Spool
) -> None:
    pub = Publisher(spool, [provisioned], max_in_flight=128)
    task = await run_publisher(pub)
    try:
        expected = []
        for i in range(2000):
            msg_id, payload = event(i)
            spool.append_event(SUBJECT, msg_id, payload)
            expected.append(msg_id)
            if i % 100 == 99:
                await asyncio.sleep(0)  # interleave with publishing, as live sessions do
        assert await pub.drain(30)
        assert pub.state == "connected"
    finally:
        await stop(task)
    assert str(pub.state) == "disconnected"  # (str: mypy keeps the narrowed property type)
    assert await stream_ids(nc) == expected
    assert pub.published == 2000
    assert spool.published_seq == spool.last_event_seq
    assert spool.stats()["pending_unpublished"] == 0


async def test_intents_are_not_published(provisioned: str, nc: Client, spool: Spool) -> None:
    pub = Publisher(spool, [provisioned])
    task = await run_publisher(pub)
    try:
        spool.append_intent(SUBJECT, "evt-a", b'{"id": "evt-a", "interrupted": true}')
        spool.append_event(SUBJECT, "evt-a", b'{"id": "evt-a"}')
        spool.append_event(SUBJECT, "evt-b", b'{"id": "evt-b"}')
        assert await pub.drain(10)
    finally:
        await stop(task)
    assert await stream_ids(nc) == ["evt-a", "evt-b"]


async def test_a_trickle_goes_out_event_by_event(provisioned: str, nc: Client, spool: Spool) -> None:
    """A lone event is published without waiting for more to fill a batch."""
    pub = Publisher(spool, [provisioned])
    task = await run_publisher(pub)
    try:
        for i in range(3):
            spool.append_event(SUBJECT, *event(i))
            assert await pub.drain(30)  # no further event comes until this one is acknowledged
            assert pub.published == i + 1
    finally:
        await stop(task)
    assert await stream_ids(nc) == [event(i)[0] for i in range(3)]


async def test_nats_crash_mid_stream_loses_and_duplicates_nothing(
    server: Nats, provisioned: str, spool: Spool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.publisher")
    pub = Publisher(spool, [provisioned], max_in_flight=64, ack_timeout=2.0)
    task = await run_publisher(pub)
    expected: list[str] = []

    async def produce(start: int, stop_at: int) -> None:
        for i in range(start, stop_at):
            msg_id, payload = event(i)
            spool.append_event(SUBJECT, msg_id, payload)
            expected.append(msg_id)
            if i % 20 == 0:
                await asyncio.sleep(0.001)

    try:
        producer = asyncio.create_task(produce(0, 1000))
        for _ in range(10000):
            if pub.published >= 300:
                break
            await asyncio.sleep(0.001)
        # crash the server while publishes are in flight (SIGKILL right away)
        await server.crash()
        await producer
        await produce(1000, 2000)  # the gateway keeps going: its records wait in the spool
        for _ in range(200):
            if pub.state == "disconnected":
                break
            await asyncio.sleep(0.05)
        assert pub.state == "disconnected"
        assert spool.published_seq < spool.last_event_seq
        await server.restart()
        assert await pub.drain(60)
    finally:
        await stop(task)
    client = await nats.connect(server.url)
    try:
        ids = await stream_ids(client)
    finally:
        await client.close()
    assert len(ids) == len(set(ids)) == 2000
    assert ids == expected  # order kept, nothing skipped
    mine = [r for r in caplog.records if r.name == "gateway.publisher"]
    warnings = [r for r in mine if r.levelno == logging.WARNING]  # one line per outage, not per retry
    infos = [r for r in mine if r.levelno == logging.INFO and "reachable again" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert len(infos) == 1


async def test_restart_after_crash_republishes_without_duplicates(
    tmp_path: Path, provisioned: str, nc: Client, spool: Spool
) -> None:
    for i in range(1500):
        spool.append_event(SUBJECT, *event(i))
    await spool.wait_durable(spool.last_event_seq)
    spool.mark_published(500)  # pretend 1..500 went out earlier; the cursor file says 500
    await asyncio.sleep(0.3)
    crashed = tmp_path / "crashed"
    shutil.copytree(
        spool.directory, crashed, ignore=shutil.ignore_patterns("spare.*")
    )  # the disk image a crash right now would leave
    pub = Publisher(spool, [provisioned])
    task = await run_publisher(pub)
    try:
        assert await pub.drain(30)
    finally:
        await stop(task)
    expected = [event(i)[0] for i in range(500, 1500)]
    assert await stream_ids(nc) == expected

    restarted = Spool(crashed, segment_bytes=256 << 10)
    restarted.open(asyncio.get_running_loop())
    try:
        assert restarted.published_seq == 500
        pub2 = Publisher(restarted, [provisioned])
        task = await run_publisher(pub2)
        try:
            assert await pub2.drain(30)
        finally:
            await stop(task)
        assert pub2.published == 1000  # every event after the persisted cursor was sent again ...
    finally:
        restarted.close()
    assert await stream_ids(nc) == expected  # ... and JetStream dropped each duplicate


async def test_missing_stream_is_retried_not_skipped(server: Nats, spool: Spool) -> None:
    """No stream yet (no responders): the publisher waits; once provisioned, everything lands."""
    pub = Publisher(spool, [server.url], ack_timeout=1.0)
    task = await run_publisher(pub)
    try:
        for i in range(10):
            spool.append_event(SUBJECT, *event(i))
        await asyncio.sleep(0.5)
        assert spool.published_seq == 0
        assert pub.state == "disconnected"
        await np.provision_url(server.url, np.Settings(duplicate_window=120))
        assert await pub.drain(20)
    finally:
        await stop(task)
    client = await nats.connect(server.url)
    try:
        assert await stream_ids(client) == [event(i)[0] for i in range(10)]
    finally:
        await client.close()


async def test_drain_times_out_while_nats_is_down(tmp_path: Path, spool: Spool) -> None:
    pub = Publisher(spool, [f"nats://127.0.0.1:{free_port()}"])
    task = await run_publisher(pub)
    try:
        spool.append_event(SUBJECT, *event(1))
        assert not await pub.drain(0.5)
        assert pub.state == "disconnected"
    finally:
        await stop(task)
    assert spool.published_seq == 0


async def test_stream_refusing_stops_the_drain_at_the_refused_record_until_fixed(
    provisioned: str, nc: Client, spool: Spool, caplog: pytest.LogCaptureFixture
) -> None:
    """A JetStream error ack (a full discard-new stream) is an error: the cursor stops before the refused
    record, nothing after it counts as published, and once the stream takes records again all of them land
    in order, exactly once."""
    caplog.set_level(logging.DEBUG, logger="gateway.publisher")
    js = nc.jetstream()
    await js.add_stream(side_stream("LIMITED", "limited.>", max_msgs=3))
    seqs = [spool.append_event("limited.events", *event(i)) for i in range(10)]
    pub = Publisher(spool, [provisioned], ack_timeout=60.0)  # only the error ack can stop it soon
    task = await run_publisher(pub)
    try:
        await until(lambda: warnings_of(caplog), "the refusal is logged")
        assert "maximum messages" in warnings_of(caplog)[0], warnings_of(caplog)
        assert spool.published_seq == seqs[2]
        assert pub.published == 3
        await until(lambda: retries_of(caplog), "a retry refused as well")  # it keeps retrying ...
        assert spool.published_seq == seqs[2]  # ... and never skips the refused record
        await js.update_stream(side_stream("LIMITED", "limited.>", max_msgs=-1))
        assert await pub.drain(30)
    finally:
        await stop(task)
    assert await ids_in(nc, "LIMITED") == [event(i)[0] for i in range(10)]
    assert pub.published == 10
    assert len(warnings_of(caplog)) == 1  # one line per outage
    assert any("reachable again" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)


async def test_no_stream_for_one_subject_holds_back_everything_after_it(
    provisioned: str, nc: Client, spool: Spool, caplog: pytest.LogCaptureFixture
) -> None:
    """No stream on one record's subject (a "no responders" status) stops the cursor there even though
    later records land; once a stream exists, the record lands and the later ones are not duplicated."""
    caplog.set_level(logging.DEBUG, logger="gateway.publisher")
    before = [spool.append_event(SUBJECT, *event(i)) for i in range(5)]
    orphan = spool.append_event("orphan.events", *event(5))
    after = [spool.append_event(SUBJECT, *event(i)) for i in range(6, 10)]
    pub = Publisher(spool, [provisioned], max_in_flight=16, ack_timeout=60.0)
    task = await run_publisher(pub)
    try:
        await until(lambda: warnings_of(caplog), "the missing stream is logged")
        assert "no responders" in warnings_of(caplog)[0], warnings_of(caplog)
        assert spool.published_seq == before[-1] < orphan < after[0]
        await until(lambda: retries_of(caplog), "a retry refused as well")
        assert "no responders" in retries_of(caplog)[0]
        assert spool.published_seq == before[-1]
        await nc.jetstream().add_stream(side_stream("ORPHANS", "orphan.>"))
        assert await pub.drain(30)
    finally:
        await stop(task)
    assert spool.published_seq == after[-1]
    assert await ids_in(nc, "ORPHANS") == [event(5)[0]]
    # records after the orphan may have landed before it (pipelined); re-sends were dropped as duplicates
    assert await stream_ids(nc) == [event(i)[0] for i in (*range(5), *range(6, 10))]


async def test_ids_the_inline_encoder_declines_keep_their_place(
    provisioned: str, nc: Client, spool: Spool, caplog: pytest.LogCaptureFixture
) -> None:
    """Records whose id the fast encoder does not vouch for go through Client.publish in the same batch,
    in order; the pinned nats-py needs no fallback for the rest."""
    caplog.set_level(logging.INFO, logger="gateway.publisher")
    ids = ["evt-a", "evt-\x7fb", "evt-c", "evt-d\x00", "evt-e"]
    for msg_id in ids:
        spool.append_event(SUBJECT, msg_id, json.dumps({"id": msg_id}).encode())
    pub = Publisher(spool, [provisioned])
    task = await run_publisher(pub)
    try:
        assert await pub.drain(10)
    finally:
        await stop(task)
    assert await ids_in(nc, np.AUDIT_STREAM) == ids
    assert not warnings_of(caplog)


async def test_acks_overtaking_each_other_across_streams(provisioned: str, nc: Client, spool: Spool) -> None:
    """A memory stream acknowledges before the file stream (fsync always) does: acks arrive out of order,
    and the cursor still moves over the contiguous acknowledged prefix only, ending at the last record."""
    await nc.jetstream().add_stream(side_stream("FAST", "fast.>", storage=StorageType.MEMORY))
    subjects = [SUBJECT if i % 3 else "fast.events" for i in range(600)]
    for i, subject in enumerate(subjects):
        spool.append_event(subject, *event(i))
    pub = Publisher(spool, [provisioned], max_in_flight=64, ack_timeout=30.0)
    task = await run_publisher(pub)
    try:
        assert await pub.drain(60)
    finally:
        await stop(task)
    assert pub.published == 600
    assert spool.published_seq == spool.last_event_seq
    assert await ids_in(nc, "FAST") == [event(i)[0] for i in range(600) if subjects[i] != SUBJECT]
    assert await stream_ids(nc) == [event(i)[0] for i in range(600) if subjects[i] == SUBJECT]
