"""Evidence service throughput, ``pcigate verify`` time and proof time (issue 4's benchmark).

1. Publishes ``--events`` contract-valid events (the schema examples, each with a fresh id and time: about
   1.2 KB each) to a private nats-server configured as the dev stack's (file store, fsync always).
2. Starts the evidence service (in this process, on uvloop, default batch and checkpoint settings) on a
   scratch schema of the dev stack's ledger database, and times until every event is committed, and until
   a signed checkpoint covers them all. events/s = events / time to commit all.
3. Times ``evidence.verify.verify_ledger`` over that ledger, and over a ``--verify-size`` ledger (default
   1,000,000 entries) built by appending the same events straight to the store (no NATS), when asked.
4. Times ``LedgerStore.inclusion_proof`` for random leaves of the biggest ledger.

Floors (issue 4): >= 10k events/s committed; verify 1M entries in <= 60 s. Aims: 50k events/s; 10 s.

    .venv/bin/python bench/evidence_throughput.py [--events 200000] [--verify-size 1000000] [--keep]

Needs the dev stack (``pcigate dev up``, or ``--home .pcigate-test``); drops its scratch schemas at the end
unless ``--keep``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import nats
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evidence import verify
from evidence.checkpoint import NoteSigner
from evidence.entries import to_entry
from evidence.own_events import Recorder, ServiceActor
from evidence.service import EvidenceService, ServiceSettings
from evidence.store import LedgerStore, NewEntry
from gateway.loop import loop_factory
from pcigate import nats_provision as np
from pcigate.devstack import binaries, procs, stack
from pcigate.devstack.layout import Layout
from pcigate.devstack.natsserver import NatsServer
from pcigate.devstack.ports import free_port
from schemas import new_event_id, utc_now
from tests.unit.test_schemas import examples

ORIGIN = "bench.pcigate/ledger"
SIGNER = NoteSigner(ORIGIN, Ed25519PrivateKey.generate())


def events(n: int) -> list[tuple[str, str, bytes]]:
    """``n`` (subject, id, payload) over every example type, weighted towards command.executed."""
    kinds = list(examples().values())
    weighted = [e for e in kinds if e["type"] == "command.executed"] * 8 + kinds
    out = []
    for i in range(n):
        obj = json.loads(json.dumps(weighted[i % len(weighted)]))
        obj["id"] = new_event_id()
        obj["time"] = utc_now()
        out.append((f"pcigate.audit.{obj['type']}", obj["id"], json.dumps(obj).encode()))
    return out


async def publish_all(url: str, batch: list[tuple[str, str, bytes]]) -> float:
    """Publish with up to 2000 acks outstanding; returns seconds."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    t0 = time.perf_counter()
    window = asyncio.Semaphore(2000)

    async def one(subject: str, msg_id: str, payload: bytes) -> None:
        async with window:
            await js.publish(subject, payload, headers={"Nats-Msg-Id": msg_id}, timeout=30)

    for start in range(0, len(batch), 20000):
        await asyncio.gather(*(one(*item) for item in batch[start : start + 20000]))
    elapsed = time.perf_counter() - t0
    await nc.close()
    return elapsed


async def scratch_schema(admin: asyncpg.Connection, dsn: str) -> tuple[str, str]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    await admin.execute(f"CREATE SCHEMA {schema}")
    return schema, f"{dsn}?options=-csearch_path%3D{schema}"


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    fields = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def run_service(url: str, dsn: str, n: int) -> dict[str, float]:
    actor = ServiceActor(
        sub="svc-pcigate-evidence", iss="https://bench.example", host="bench", database="x", log_origin=ORIGIN
    )
    signer = SIGNER
    service = EvidenceService(
        ServiceSettings(origin=ORIGIN), dsn=dsn, signer=signer, recorder=Recorder(actor), nats_servers=[url]
    )
    stop = asyncio.Event()
    conn = await asyncpg.connect(dsn)
    t0, c0, m0 = time.perf_counter(), cpu(), machine_busy()
    task = asyncio.get_running_loop().create_task(service.run(stop))
    committed_at: float | None = None
    covered_at: float | None = None
    c1, m1 = c0, m0
    while covered_at is None or committed_at is None:
        await asyncio.sleep(0.05)
        if task.done():
            task.result()
        if committed_at is None and service.committed >= n + 1:  # + ledger.started
            committed_at, c1, m1 = time.perf_counter(), cpu(), machine_busy()
        if committed_at is not None:
            size = await conn.fetchval("SELECT coalesce(max(size), 0) FROM ledger_checkpoints")
            if size >= n + 1:
                covered_at = time.perf_counter()
    stop.set()
    await task
    await conn.close()
    return {
        "commit_s": committed_at - t0,
        "covered_s": covered_at - t0,
        "events_per_s": n / (committed_at - t0),
        "service_cpu_us_per_event": (c1 - c0) / n * 1e6,
        "machine_busy": (m1[0] - m0[0]) / (m1[1] - m0[1]),
    }


async def fill(dsn: str, size: int) -> float:
    """Append ``size`` entries straight to the store (no NATS): the verify benchmark's ledger."""
    conn = await asyncpg.connect(dsn)
    store = LedgerStore(conn)
    await store.create_schema()
    t0 = time.perf_counter()
    have = await store.size()
    template = events(64)
    while have < size:
        chunk: list[NewEntry] = []
        for i in range(min(20000, size - have)):
            subject, _, payload = template[i % len(template)]
            obj = json.loads(payload)
            obj["id"] = new_event_id()
            entry = to_entry(json.dumps(obj).encode(), stream_seq=None, subject=subject, msg_id=obj["id"])
            assert isinstance(entry, NewEntry)
            chunk.append(entry)
        done = await store.append(chunk)
        have = done.size
        print(f"\r  filling: {have}/{size}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    await conn.close()
    return time.perf_counter() - t0


async def time_verify(dsn: str) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        t0 = time.perf_counter()
        report = await verify.verify_ledger(conn, [SIGNER.verifier], origin=ORIGIN, allow_pending=True)
        return {
            "seconds": time.perf_counter() - t0,
            "ok": getattr(report, "ok", None),
            "entries": getattr(report, "entries", None),
        }
    finally:
        await conn.close()


async def time_proofs(dsn: str, samples: int = 500) -> dict[str, float]:
    conn = await asyncpg.connect(dsn)
    store = LedgerStore(conn)
    size = await store.size()
    t0 = time.perf_counter()
    for _ in range(samples):
        await store.inclusion_proof(random.randrange(size), size)
    per = (time.perf_counter() - t0) / samples
    t0 = time.perf_counter()
    for _ in range(samples // 5):
        await store.consistency_proof(random.randrange(1, size), size)
    cons = (time.perf_counter() - t0) / (samples // 5)
    await conn.close()
    return {"tree_size": size, "inclusion_ms": per * 1e3, "consistency_ms": cons * 1e3}


async def main(args: argparse.Namespace) -> tuple[int, dict[str, Any]]:
    status = stack.status(Layout.default(args.home))
    if not status.get("running"):
        print("bench: the dev stack is not running (pcigate dev up, or --home)", file=sys.stderr)
        return 2, {}
    ledger_dsn = status["ledger_dsn"]
    admin = await asyncpg.connect(ledger_dsn)
    schemas: list[str] = []
    results: dict[str, Any] = {"events": args.events}
    with tempfile.TemporaryDirectory(prefix="pcigate-bench-") as tmp:
        server = NatsServer(binaries.nats_server_binary(), Path(tmp) / "nats", free_port(), free_port())
        pid = server.start()
        try:
            await np.provision_url(server.url, np.Settings(duplicate_window=120))
            batch = events(args.events)
            seconds = await publish_all(server.url, batch)
            results["publish_per_s"] = args.events / seconds
            print(f"published {args.events} events in {seconds:.1f} s ({args.events / seconds:.0f}/s)")
            schema, dsn = await scratch_schema(admin, ledger_dsn)
            schemas.append(schema)
            results["service"] = svc = await run_service(server.url, dsn, args.events)
            print(
                f"evidence: all {args.events} committed in {svc['commit_s']:.1f} s = "
                f"{svc['events_per_s']:.0f} events/s ({svc['service_cpu_us_per_event']:.0f} µs CPU/event in "
                f"the service, machine {svc['machine_busy']:.0%} busy); covered by a signed checkpoint "
                f"after {svc['covered_s']:.1f} s"
            )
            results["verify_service_ledger"] = v = await time_verify(dsn)
            print(f"verify {v['entries']} entries: {v['seconds']:.1f} s (ok={v['ok']})")
        finally:
            procs.terminate(pid, server.marker)
    if args.verify_size:
        schema, dsn = await scratch_schema(admin, ledger_dsn)
        schemas.append(schema)
        fill_s = await fill(dsn, args.verify_size)
        print(f"built a {args.verify_size}-entry ledger in {fill_s:.0f} s (store only)")
        results["verify_big"] = v = await time_verify(dsn)
        print(f"verify {v['entries']} entries: {v['seconds']:.1f} s (ok={v['ok']})")
        results["proofs"] = p = await time_proofs(dsn)
    else:
        results["proofs"] = p = await time_proofs(dsn)
    print(
        f"proofs at tree size {p['tree_size']}: inclusion {p['inclusion_ms']:.2f} ms, "
        f"consistency {p['consistency_ms']:.2f} ms"
    )
    rate = results["service"]["events_per_s"]
    big = results.get("verify_big")
    print(f"floor: >= 10000 events/s: {'MET' if rate >= 10000 else 'NOT MET'} ({rate:.0f})")
    if big:
        scaled = big["seconds"] * 1_000_000 / max(1, big["entries"] or 1)
        print(f"floor: verify 1M <= 60 s: {'MET' if scaled <= 60 else 'NOT MET'} ({scaled:.1f} s per 1M)")
    if not args.keep:
        for schema in schemas:
            await admin.execute(f"DROP SCHEMA {schema} CASCADE")
    await admin.close()
    return 0, results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--verify-size", type=int, default=1_000_000, help="0: skip the big verify")
    parser.add_argument("--home", default=None, help="dev stack state directory")
    parser.add_argument("--json", default=None)
    parser.add_argument("--keep", action="store_true", help="keep the scratch schemas")
    a = parser.parse_args()
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        code, figures = runner.run(main(a))
    if a.json:
        Path(a.json).write_text(json.dumps(figures, indent=2))
    sys.exit(code)
