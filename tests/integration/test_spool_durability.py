"""The spool under a real process kill (SIGKILL mid-traffic, uvloop, concurrent sessions), then published.

A child process runs sessions that follow the gateway's protocol — intent durable, statement "runs",
completion event durable, then the client is answered (a line on stdout). The test kills it at a random
moment: every answered statement must be in the spool with its real outcome, every started-but-unanswered
one must be reported as interrupted, and JetStream must end up with each statement exactly once.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from gateway.publisher import Publisher
from gateway.spool import Spool, SpoolLockedError
from pcigate import nats_provision as np
from pcigate.devstack import binaries, procs
from pcigate.devstack.natsserver import NatsServer
from pcigate.devstack.ports import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SUBJECT = "pcigate.audit.statement"

CHILD = r"""
import asyncio, json, sys
from pathlib import Path
import uvloop
from gateway.spool import Spool

async def session(spool, n):
    i = 0
    while True:
        msg_id = f"{sys.argv[2]}-s{n}-{i}"
        await spool.wait_durable(spool.append_intent(
            "pcigate.audit.statement", msg_id, json.dumps({"id": msg_id, "outcome": "interrupted"}).encode()))
        print("start", msg_id, flush=True)
        await asyncio.sleep(0)  # the statement runs upstream
        await spool.wait_durable(spool.append_event(
            "pcigate.audit.statement", msg_id, json.dumps({"id": msg_id, "outcome": "success"}).encode()))
        print("ack", msg_id, flush=True)  # only now does the client see the result
        i += 1

async def main():
    spool = Spool(Path(sys.argv[1]), segment_bytes=256 << 10)
    spool.open(asyncio.get_running_loop())
    print("ready", flush=True)
    await asyncio.gather(*(session(spool, n) for n in range(8)))

uvloop.run(main())
"""


def spawn_child(directory: Path, run: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(directory), run],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_and_kill(directory: Path, acks: int, run: str = "run") -> tuple[set[str], set[str]]:
    """Start the child, SIGKILL it after ``acks`` answered statements; (started, answered) msg ids."""
    child = spawn_child(directory, run)
    started: set[str] = set()
    answered: set[str] = set()
    try:
        assert child.stdout is not None
        for line in child.stdout:
            kind, _, msg_id = line.strip().partition(" ")
            if kind == "start":
                started.add(msg_id)
            elif kind == "ack":
                answered.add(msg_id)
                if len(answered) >= acks:
                    break
        os.kill(child.pid, signal.SIGKILL)
        # lines the child printed before it died still count: it answered those clients
        for line in child.stdout:
            kind, _, msg_id = line.strip().partition(" ")
            if line.endswith("\n") and kind in ("start", "ack"):  # a line cut by the kill reached no one
                (started if kind == "start" else answered).add(msg_id)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL, child.stderr.read() if child.stderr else ""
    return started, answered


def outcomes(spool: Spool) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for rec in spool.read(0, 1_000_000, 1 << 30):
        body = json.loads(rec.payload)
        assert body["id"] == rec.msg_id
        out.setdefault(rec.msg_id, []).append(body["outcome"])
    return out


@pytest.fixture
def nats_url(tmp_path: Path) -> Iterator[str]:
    server = NatsServer(binaries.nats_server_binary(), tmp_path / "nats", free_port(), free_port())
    pid = server.start()
    yield server.url
    procs.terminate(pid, server.marker)


async def test_sigkill_loses_no_answered_statement_and_reports_the_rest(tmp_path: Path) -> None:
    d = tmp_path / "spool"
    all_started: set[str] = set()
    all_answered: set[str] = set()
    for round_, acks in enumerate((300, 50, 1000)):  # three crashes into the same spool
        started, answered = await asyncio.to_thread(run_and_kill, d, acks, f"run{round_}")
        assert answered <= started
        all_started |= started
        all_answered |= answered
        spool = Spool(d, segment_bytes=256 << 10)
        spool.open(asyncio.get_running_loop())
        try:
            seen = outcomes(spool)
            # every statement appears exactly once (no double report), with the truth where known
            assert all(len(v) == 1 for v in seen.values()), round_
            for msg_id in all_answered:
                assert seen[msg_id] == ["success"]
            for msg_id in all_started - all_answered:
                assert seen[msg_id] in (["success"], ["interrupted"])  # killed before or after its event
            assert set(seen) >= all_started
            seqs = [r.seq for r in spool.read(0, 1_000_000, 1 << 30)]
            assert seqs == sorted(seqs)
        finally:
            spool.close()


async def test_second_process_on_the_same_spool_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "spool"
    child = await asyncio.to_thread(spawn_child, d, "holder")
    try:
        assert child.stdout is not None
        assert (await asyncio.to_thread(child.stdout.readline)).strip() == "ready"
        with pytest.raises(SpoolLockedError, match=f"pid {child.pid}"):
            Spool(d).open(asyncio.get_running_loop())
    finally:
        child.kill()
        child.wait()
    spool = Spool(d)  # the kernel released the lock with the process
    spool.open(asyncio.get_running_loop())
    spool.close()


async def test_crashed_spool_drains_to_jetstream_exactly_once(tmp_path: Path, nats_url: str) -> None:
    await np.provision_url(nats_url, np.Settings(duplicate_window=120))
    d = tmp_path / "spool"
    started, answered = await asyncio.to_thread(run_and_kill, d, 400)
    spool = Spool(d, segment_bytes=256 << 10)
    spool.open(asyncio.get_running_loop())
    try:
        expected = outcomes(spool)
        pub = Publisher(spool, [nats_url])
        task = asyncio.create_task(pub.run())
        try:
            assert await pub.drain(30)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    finally:
        spool.close()
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(np.AUDIT_STREAM)
        got: dict[str, str] = {}
        for seq in range(1, info.state.messages + 1):
            msg = await js.get_msg(np.AUDIT_STREAM, seq)
            assert msg.headers is not None
            msg_id = msg.headers["Nats-Msg-Id"]
            assert msg_id not in got
            got[msg_id] = json.loads(msg.data or b"{}")["outcome"]
    finally:
        await nc.close()
    assert got == {k: v[0] for k, v in expected.items()}
    assert set(got) >= started
    assert all(got[m] == "success" for m in answered)
