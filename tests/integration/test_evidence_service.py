"""The evidence service against a private JetStream and a private schema of the real ledger database."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import nats
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import StreamConfig

from evidence.api import LedgerReader
from evidence.checkpoint import Checkpoint, NoteSigner
from evidence.own_events import Recorder, ServiceActor
from evidence.service import CHECKPOINT_SUBJECT, EvidenceService, ServiceSettings
from pcigate import nats_provision as np
from tests.evidence_support import LedgerView, PrivateNats, event, private_schema, publish, wait_for

pytestmark = pytest.mark.integration

ORIGIN = "test.pcigate/ledger"
VISA_TEST_PAN = "4111111111111111"  # Visa's published test number


@dataclass
class Rig:
    nats_url: str
    dsn: str
    nc: Client
    js: JetStreamContext
    view: LedgerView
    signer: NoteSigner

    def service(self, **settings: Any) -> EvidenceService:
        actor = ServiceActor(
            sub="svc-pcigate-evidence",
            iss="https://idp.example.com",
            host="test",
            database="x",
            log_origin=ORIGIN,
        )
        options: dict[str, Any] = {"checkpoint_interval": 0.5, "batch": 50, "retry_min": 0.05}
        options.update(settings)
        return EvidenceService(
            ServiceSettings(origin=ORIGIN, **options),
            dsn=self.dsn,
            signer=self.signer,
            recorder=Recorder(actor),
            nats_servers=[self.nats_url],
        )


class Running:
    """A service running in a task until stopped."""

    def __init__(self, service: EvidenceService) -> None:
        self.service = service
        self.stop_event = asyncio.Event()
        self.ready = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(
            service.run(self.stop_event, on_ready=lambda _: self.ready.set())
        )

    async def started(self) -> Running:
        await asyncio.wait_for(self.ready.wait(), 30)
        return self

    async def stop(self) -> None:
        self.stop_event.set()
        await asyncio.wait_for(self.task, 30)


async def _rig(tmp_path: Path, ledger_dsn: str, *, deletable: bool = False) -> AsyncIterator[Rig]:
    server = PrivateNats(tmp_path / "nats")
    try:
        if deletable:
            # A stream as weak as a misconfigured server's: messages can vanish, so gaps can be made.
            nc0 = await nats.connect(server.url)
            await nc0.jetstream().add_stream(
                StreamConfig(name="PCIGATE_AUDIT", subjects=["pcigate.audit.>"], duplicate_window=120)
            )
            await nc0.close()
        await np.provision_url(server.url, np.Settings(duplicate_window=120)) if not deletable else None
        nc = await nats.connect(server.url)
        if deletable:
            await nc.jetstream().add_stream(
                StreamConfig(name="PCIGATE_CHECKPOINTS", subjects=[CHECKPOINT_SUBJECT])
            )
        async with private_schema(ledger_dsn) as dsn:
            conn = await asyncpg.connect(dsn)
            try:
                yield Rig(
                    server.url,
                    dsn,
                    nc,
                    nc.jetstream(),
                    LedgerView(conn),
                    NoteSigner(ORIGIN, Ed25519PrivateKey.generate()),
                )
            finally:
                await conn.close()
                await nc.close()
    finally:
        server.stop()


@pytest.fixture
async def rig(tmp_path: Path, dev_stack: dict[str, Any]) -> AsyncIterator[Rig]:
    async for r in _rig(tmp_path, dev_stack["ledger_dsn"]):
        yield r


@pytest.fixture
async def weak_rig(tmp_path: Path, dev_stack: dict[str, Any]) -> AsyncIterator[Rig]:
    async for r in _rig(tmp_path, dev_stack["ledger_dsn"], deletable=True):
        yield r


async def _consumer_idle(js: JetStreamContext) -> bool:
    info = await js.consumer_info("PCIGATE_AUDIT", "evidence")
    return bool(info.num_pending == 0 and info.num_ack_pending == 0)


async def test_events_become_entries_once_and_bad_messages_are_quarantined_with_a_gap_event(rig: Rig) -> None:
    running = await Running(rig.service()).started()
    sent = [event("command.executed") for _ in range(120)] + [event("session.opened")]
    for obj in sent[:60]:
        await publish(rig.js, obj)
    # not JSON; and an invalid event carrying a (test) card number in a field the contract does not have
    ack = await rig.js.publish("pcigate.audit.command.executed", b"\xff not json")
    bad_seqs = [ack.seq, await publish(rig.js, event("command.executed", pan=VISA_TEST_PAN))]
    for obj in sent[60:]:
        await publish(rig.js, obj)
    last_seq = (await rig.js.stream_info("PCIGATE_AUDIT")).state.last_seq
    await wait_for(lambda: _consumer_idle(rig.js), what="the consumer to drain")
    await running.stop()

    ids = await rig.view.ids()
    types = await rig.view.types()
    assert types[0] == "ledger.started" and types[-1] == "ledger.stopped"
    stream_ids = [i for i, t in zip(ids, types, strict=True) if not t.startswith(("ledger.", "audit."))]
    assert stream_ids == [o["id"] for o in sent], "every event once, in stream order"
    gaps = await rig.view.events("audit.gap")
    assert [(g["data"]["first_missing"], g["data"]["cause"]) for g in gaps] == [
        (seq, "invalid_event") for seq in bad_seqs
    ]
    assert await rig.view.count("ledger_quarantine") == 2
    stored = await rig.view.conn.fetch(
        "SELECT reason, payload_masked FROM ledger_quarantine ORDER BY stream_seq"
    )
    assert "not UTF-8 JSON" in stored[0]["reason"]
    assert "unexpected property" in stored[1]["reason"]
    assert VISA_TEST_PAN.encode() not in stored[1]["payload_masked"]
    position = await rig.view.conn.fetchval("SELECT through_seq FROM ledger_stream_state")
    assert position >= last_seq
    await rig.view.assert_tree_intact()
    # the final checkpoint covers everything, including ledger.stopped, and went out on NATS
    size = await rig.view.count()
    assert await rig.view.conn.fetchval("SELECT max(size) FROM ledger_checkpoints") == size
    last = await rig.js.get_last_msg("PCIGATE_CHECKPOINTS", CHECKPOINT_SUBJECT)
    assert Checkpoint.open(last.data or b"", [rig.signer.verifier], origin=ORIGIN).size == size
    # the service's own events were published too, for SIEMs
    started = await rig.view.events("ledger.started")
    msg = await rig.js.get_last_msg("PCIGATE_AUDIT", "pcigate.audit.ledger.stopped")
    assert (
        json.loads(msg.data or b"")["type"] == "ledger.stopped" and started[0]["data"]["initialized"] is True
    )


async def test_a_restart_resumes_without_duplicates_and_checkpoints_extend_each_other(rig: Rig) -> None:
    first = [event() for _ in range(40)]
    for obj in first:
        await publish(rig.js, obj)
    running = await Running(rig.service()).started()
    await wait_for(lambda: _consumer_idle(rig.js))
    await running.stop()
    second = [event() for _ in range(40)]
    for obj in second:
        await publish(rig.js, obj)
    running = await Running(rig.service()).started()
    await wait_for(lambda: _consumer_idle(rig.js))
    await running.stop()
    ids = await rig.view.ids()
    assert len(ids) == len(set(ids))
    assert [i for i in ids if i in {o["id"] for o in first + second}] == [o["id"] for o in first + second]
    starts = await rig.view.events("ledger.started")
    assert [s["data"]["initialized"] for s in starts] == [True, False]
    assert starts[1]["data"]["resume_after_sequence"] >= 40
    await rig.view.assert_tree_intact()


async def test_checkpoint_every_n_entries(rig: Rig) -> None:
    running = await Running(rig.service(checkpoint_every=25, checkpoint_interval=3600, batch=10)).started()
    for _ in range(100):
        await publish(rig.js, event())
    await wait_for(lambda: _consumer_idle(rig.js))
    sizes = [
        r["size"] for r in await rig.view.conn.fetch("SELECT size FROM ledger_checkpoints ORDER BY size")
    ]
    await running.stop()
    # signed as soon as a batch (10) takes the count past 25: every 25-34 entries, never on the timer
    steps = [b - a for a, b in itertools.pairwise([0, *sizes])]
    assert len(sizes) >= 3 and all(25 <= step < 35 for step in steps), sizes


async def test_a_readers_own_record_is_signed_while_the_stream_is_quiet(rig: Rig) -> None:
    """evidence.api appends ledger.read to the ledger directly; with nothing arriving on the stream the
    next interval still signs it, so the read becomes provable."""
    running = await Running(rig.service(checkpoint_interval=0.5)).started()

    async def signed_through(size: int) -> bool:
        return bool(
            await rig.view.conn.fetchval("SELECT coalesce(max(size), 0) FROM ledger_checkpoints") >= size
        )

    async def entries() -> int:
        return int(await rig.view.conn.fetchval("SELECT coalesce(max(idx) + 1, 0) FROM ledger_entries"))

    try:
        await wait_for(lambda: _consumer_idle(rig.js))
        before = await entries()
        await wait_for(lambda: signed_through(before), within=15, what="the service's own entries signed")
        reader_actor = ServiceActor(
            sub="auditor", iss="local:test", host="test", database="x", log_origin=ORIGIN
        )
        conn = await asyncpg.connect(rig.dsn)
        try:
            reader = LedgerReader(conn, Recorder(reader_actor), "quiet-stream test")
            await reader.latest_checkpoint()  # recorded as ledger.read, appended by the reader itself
        finally:
            await conn.close()
        after = await entries()
        assert after == before + 1
        await wait_for(
            lambda: signed_through(after), within=15, what="a checkpoint covering the reader's record"
        )
    finally:
        await running.stop()


async def test_a_lost_database_connection_is_replaced_and_nothing_is_lost_or_doubled(rig: Rig) -> None:
    running = await Running(rig.service(batch=20, application_name="pcigate-evidence-test")).started()
    sent = [event() for _ in range(300)]
    admin = rig.view.conn
    killed = 0
    for n, obj in enumerate(sent):
        await publish(rig.js, obj)
        if n % 100 == 50:
            # the service's own connection: the only one with this application name (once it has
            # reconnected after the last kill)
            for _ in range(100):
                done = await admin.fetchval(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND application_name = $1",
                    "pcigate-evidence-test",
                )
                if done:
                    killed += done
                    break
                await asyncio.sleep(0.02)
    await wait_for(lambda: _consumer_idle(rig.js), within=60)
    await running.stop()
    assert killed >= 2
    ids = await rig.view.ids()
    assert [i for i in ids if i in {o["id"] for o in sent}] == [o["id"] for o in sent]
    await rig.view.assert_tree_intact()


async def test_missing_sequences_become_audit_gaps(weak_rig: Rig) -> None:
    rig = weak_rig
    sent = [event() for _ in range(10)]
    for obj in sent:
        await publish(rig.js, obj)
    await rig.js.purge_stream("PCIGATE_AUDIT", seq=3)  # 1-2 aged out before anyone read them
    await rig.js.delete_msg("PCIGATE_AUDIT", 6)  # 6 removed
    running = await Running(rig.service()).started()
    await wait_for(lambda: _consumer_idle(rig.js))
    await running.stop()
    gaps = [
        (g["data"]["first_missing"], g["data"]["last_missing"], g["data"]["cause"])
        for g in await rig.view.events("audit.gap")
    ]
    assert gaps == [(1, 2, "stream_limit"), (6, 6, "unknown")]
    ids = await rig.view.ids()
    kept = [o["id"] for n, o in enumerate(sent, start=1) if n not in (1, 2, 6)]
    assert [i for i in ids if i in {o["id"] for o in sent}] == kept
    await rig.view.assert_tree_intact()


async def test_a_ledger_behind_the_consumer_reads_the_rest_from_the_stream(rig: Rig) -> None:
    """A ledger database restored from an older backup: the consumer already acknowledged what it lacks."""
    sent = [event() for _ in range(30)]
    for obj in sent:
        await publish(rig.js, obj)
    running = await Running(rig.service()).started()
    await wait_for(lambda: _consumer_idle(rig.js))
    await running.stop()
    await rig.view.conn.execute(  # an empty database: the service creates the tables again
        "DROP TABLE ledger_entries, ledger_nodes, ledger_checkpoints, ledger_stream_state, ledger_event_ids,"
        " ledger_partitions, ledger_quarantine"
    )
    running = await Running(rig.service()).started()
    ids = await rig.view.ids()  # ready means caught up: before anything new is delivered
    await running.stop()
    assert [i for i in ids if i in {o["id"] for o in sent}] == [o["id"] for o in sent]
    assert await rig.view.events("audit.gap") == []
    await rig.view.assert_tree_intact()
