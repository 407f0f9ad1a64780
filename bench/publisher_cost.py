"""CPU per event of the audit publisher (``gateway/publisher.py``) against a private nats-server.

The spool process pays for every audit event twice: once to spool it, once to publish it. This measures
the second part. Per round it fills a temporary spool with N durable events of about 1.3 KB, runs the
publisher until JetStream acknowledged all of them, and reports events/s and the CPU time of this process
per event (``time.process_time``: every thread, so the spool's cursor writes count too), the event loop
thread's share (user + system), and the nats-server's CPU per event for context. ``old`` is ``OldPump``, a
labelled copy of the previous ``publish_async`` pump, run interleaved with the new one round by round so
that drift on a shared machine hits both alike. ``spool`` is what ``Spool.read`` and ``mark_published``
alone cost over the same backlog — part of every figure above, not the publisher's own doing.

    .venv/bin/python bench/publisher_cost.py [--events 20000] [--rounds 3] [--only-new] [--rate 2000]

``--rate R`` adds runs where a producer appends R events/s (in 1 ms ticks) while the publisher drains them,
the spool process's situation under load: batches are small, so the per-batch cost (two loop wake-ups, a
socket write and read) weighs more per event. The producer's own cost, measured alone, is subtracted; these
figures are noisier than the backlog ones. Starts only a private nats-server (file store, fsync always, as
in the dev stack) and removes it again. Runs on uvloop, as the spool service does (``--asyncio``: not).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import statistics
import tempfile
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import nats

from gateway.loop import loop_factory  # what the spool service runs on
from gateway.publisher import Publisher
from gateway.spool import Spool
from pcigate import nats_provision as np
from pcigate.devstack import binaries, procs
from pcigate.devstack.natsserver import NatsServer
from pcigate.devstack.ports import free_port

SUBJECT = "pcigate.audit.statement"
_TICKS = os.sysconf("SC_CLK_TCK")

Finish = Callable[[], Awaitable[None]]


def payload(run: str, i: int, size: int) -> tuple[str, bytes]:
    msg_id = f"{run}-{i:08d}"
    body = {"id": msg_id, "type": "statement", "n": i, "pad": ""}
    raw = json.dumps(body).encode()
    body["pad"] = "x" * max(0, size - len(raw))
    return msg_id, json.dumps(body).encode()


def server_cpu(pid: int) -> float:
    """CPU seconds (user + system) the nats-server used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def loop_cpu() -> tuple[float, float]:
    """User and system CPU seconds of the calling (event loop) thread."""
    ru = resource.getrusage(resource.RUSAGE_THREAD)
    return ru.ru_utime, ru.ru_stime


class OldPump:
    """FOR COMPARISON ONLY: the previous publisher's pump (``JetStreamContext.publish_async``, one pending
    future per message), minus its reconnect handling, which a healthy run does not exercise."""

    def __init__(self, spool: Spool, url: str, max_in_flight: int) -> None:
        self.spool, self.url, self.max_in_flight = spool, url, max_in_flight

    async def run(self, progress: asyncio.Event) -> None:
        spool = self.spool
        nc = await nats.connect(self.url)
        try:
            js = nc.jetstream(timeout=5.0, publish_async_max_pending=self.max_in_flight)
            inflight: deque[tuple[int, asyncio.Future[Any]]] = deque()
            sent = spool.published_seq
            while True:
                room = self.max_in_flight - len(inflight)
                if room > 0:
                    for rec in spool.read(sent, room, 1 << 20):
                        fut = await js.publish_async(
                            rec.subject, rec.payload, headers={"Nats-Msg-Id": rec.msg_id}
                        )
                        inflight.append((rec.seq, fut))
                        sent = rec.seq
                if not inflight:
                    await spool.wait_for_records(sent)
                    continue
                if not inflight[0][1].done():
                    await asyncio.wait_for(inflight[0][1], 5.0)
                acked = 0
                while inflight and inflight[0][1].done():
                    seq, fut = inflight.popleft()
                    fut.result()
                    acked = seq
                if acked:
                    spool.mark_published(acked)
                    progress.set()
        finally:
            await nc.close()


async def start_new(spool: Spool, url: str, max_in_flight: int) -> Finish:
    pub = Publisher(spool, [url], max_in_flight=max_in_flight)
    task = asyncio.create_task(pub.run())

    async def finish() -> None:
        try:
            if not await pub.drain(120):
                raise RuntimeError("the publisher did not drain within 120 s")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return finish


async def start_old(spool: Spool, url: str, max_in_flight: int) -> Finish:
    progress = asyncio.Event()
    task = asyncio.create_task(OldPump(spool, url, max_in_flight).run(progress))

    async def finish() -> None:
        try:
            while spool.published_seq < spool.last_event_seq:
                progress.clear()
                await asyncio.wait_for(progress.wait(), 120)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return finish


async def start_spool_only(spool: Spool, url: str, max_in_flight: int) -> Finish:
    """Read and mark the backlog in the publisher's chunks, publishing nothing: the spool's share."""

    async def finish() -> None:
        sent = spool.published_seq
        while records := spool.read(sent, max_in_flight, 1 << 20):
            sent = records[-1].seq
            spool.mark_published(sent)
            await asyncio.sleep(0)

    return finish


STARTERS: dict[str, Callable[[Spool, str, int], Awaitable[Finish]]] = {
    "new": start_new,
    "old": start_old,
    "spool": start_spool_only,
}
LABELS = {
    "new": "new (core publish, one ack inbox)",
    "old": "old (publish_async), for comparison",
    "spool": "spool read+mark alone (included)",
}


async def produce(spool: Spool, run: str, n: int, size: int, rate: float) -> None:
    """Append n events at ``rate`` per second in 1 ms ticks (0: all at once)."""
    if rate <= 0:
        for i in range(n):
            spool.append_event(SUBJECT, *payload(run, i, size))
        return
    loop = asyncio.get_running_loop()
    start = loop.time()
    i = 0
    while i < n:
        due = min(n, int((loop.time() - start) * rate) + 1)
        while i < due:
            spool.append_event(SUBJECT, *payload(run, i, size))
            i += 1
        await asyncio.sleep(0.001)


async def one_run(
    kind: str, url: str, server_pid: int, home: Path, run: str, args: argparse.Namespace, rate: float
) -> dict[str, float]:
    spool = Spool(home / run, segment_bytes=64 << 20)
    spool.open(asyncio.get_running_loop())
    try:
        if rate <= 0:
            await produce(spool, run, args.events, args.size, 0)
            await spool.wait_durable(spool.last_event_seq)
        cpu0, wall0, srv0, (usr0, sys0) = (
            time.process_time(),
            time.perf_counter(),
            server_cpu(server_pid),
            loop_cpu(),
        )
        if kind == "alone":
            await produce(spool, run, args.events, args.size, rate)
            await spool.wait_durable(spool.last_event_seq)
        else:
            finish = await STARTERS[kind](spool, url, args.max_in_flight)
            if rate > 0:
                await produce(spool, run, args.events, args.size, rate)
            await finish()
        usr1, sys1 = loop_cpu()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        srv = server_cpu(server_pid) - srv0
    finally:
        spool.close()
    per = 1e6 / args.events
    return {
        "events_per_s": args.events / wall,
        "cpu_us": cpu * per,
        "loop_us": (usr1 - usr0 + sys1 - sys0) * per,
        "loop_sys_us": (sys1 - sys0) * per,
        "server_us": srv * per,
    }


def median(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def show(label: str, rows: list[dict[str, float]], base: list[dict[str, float]] | None = None) -> None:
    def less(key: str) -> float:
        return median(rows, key) - (median(base, key) if base else 0.0)

    cpus = [r["cpu_us"] for r in rows]
    print(
        f"{label:<44} {median(rows, 'events_per_s'):>7.0f} ev/s  {less('cpu_us'):>6.1f} µs"
        f" (±{(max(cpus) - min(cpus)) / 2:.1f})  loop {less('loop_us'):>6.1f} (sys {less('loop_sys_us'):.1f})"
        f"  nats-server {median(rows, 'server_us'):>5.1f} µs"
    )


async def main(args: argparse.Namespace) -> None:
    kinds = ["new"] if args.only_new else ["new", "old"]
    with tempfile.TemporaryDirectory(prefix="pcigate-pubbench-") as tmp:
        home = Path(tmp)
        server = NatsServer(binaries.nats_server_binary(), home / "nats", free_port(), free_port())
        pid = await asyncio.to_thread(server.start)
        try:
            await np.provision_url(server.url, np.Settings(duplicate_window=120))
            print(
                f"{args.events} events of ~{args.size} B, max_in_flight {args.max_in_flight}, "
                f"{args.rounds} round(s), {type(asyncio.get_running_loop()).__module__} loop, "
                f"{os.cpu_count()} CPUs; medians; CPU per event of this process"
            )
            results: dict[str, list[dict[str, float]]] = {}
            for r in range(args.rounds):
                order = kinds if r % 2 == 0 else kinds[::-1]
                for kind in [*order, "spool"]:
                    row = await one_run(kind, server.url, pid, home, f"b-{kind}-{r}", args, 0)
                    results.setdefault(f"backlog/{kind}", []).append(row)
                if args.rate > 0:
                    for kind in ["alone", *order]:
                        row = await one_run(kind, server.url, pid, home, f"r-{kind}-{r}", args, args.rate)
                        results.setdefault(f"rate/{kind}", []).append(row)
            print("backlog (publisher running flat out):")
            for kind in [*kinds, "spool"]:
                show(f"  {LABELS[kind]}", results[f"backlog/{kind}"])
            if args.rate > 0:
                print(f"sustained {args.rate:g} events/s, producer's own cost subtracted:")
                show("  producer alone (subtracted below)", results["rate/alone"])
                for kind in kinds:
                    show(f"  {LABELS[kind]}", results[f"rate/{kind}"], results["rate/alone"])
        finally:
            await asyncio.to_thread(procs.terminate, pid, server.marker)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--events", type=int, default=20000)
    p.add_argument("--size", type=int, default=1300, help="payload bytes per event (default 1300)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--max-in-flight", type=int, default=256)
    p.add_argument("--only-new", action="store_true", help="skip the old publish_async pump")
    p.add_argument("--rate", type=float, default=0.0, help="also measure at this sustained append rate")
    p.add_argument("--asyncio", action="store_true", help="the plain asyncio loop instead of uvloop")
    return p.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    with asyncio.Runner(loop_factory=None if arguments.asyncio else loop_factory()) as runner:
        runner.run(main(arguments))
