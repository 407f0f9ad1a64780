"""Approval round trip through the pcigate gateway: decision sent -> the client has its result.

Issue 6 aims at p50 <= 20 ms and p99 <= 100 ms over 200 approvals. One asyncpg client (extended protocol,
bind parameters) runs ``UPDATE cards SET exp_year = exp_year WHERE card_id = $1 RETURNING card_id``, which
the dev stack's rule ``card-writes`` holds. A watcher on KV ``PCIGATE_APPROVALS`` sees the request appear;
the clock starts when the approver's decision (``pcigate.approvals.decide.<gateway>``, the same request/reply
``pcigate approvals approve`` sends, with a real token the gateway verifies) is sent and stops when the
UPDATE's row is in the client's hands. In that time the gateway verifies the token, judges the decision,
makes ``approval.decided`` durable (spool fsync), compare-and-swaps the record, then judges, records and
runs the statement.

Also reported: ``hold`` (UPDATE sent -> its request record visible in KV: the approval.requested fsync and
the KV create) and ``reply`` (decision sent -> the approver's tool has the gateway's answer); and, for scale,
the same UPDATE on a rule-free table through the gateway and direct (``direct``), each the median of
``--count`` runs. Requests are sequential: one approver deciding one statement at a time, as people do.

    PYTHONPATH=. .venv/bin/python bench/approval_roundtrip.py [--count 200] [--json FILE] [--keep]

It brings up its own dev stack under ``.pcigate-bench`` (``--home``), as bench/pgbench_gateway.py does, and
takes it down again unless ``--keep`` or unless it was already running. The pure parts (percentiles, the
table, the verdict) are unit-tested in tests/unit/test_bench_approval_report.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg

from bench.pgbench_gateway import (
    DATABASE,
    BenchError,
    Stack,
    on_dev_stack,
    pcigate,
    say,
)
from pcigate.approvals_client import ApprovalsClient, effective_state
from schemas.approvals import Request

AIM_P50_MS = 20.0
AIM_P99_MS = 100.0
REQUESTER = "bench-requester@example.com"
APPROVER = "bench-approver@example.com"
HELD = "UPDATE cards SET exp_year = exp_year WHERE card_id = $1 RETURNING card_id"
FREE = "UPDATE customers SET country = country WHERE customer_id = $1 RETURNING customer_id"


# ------------------------------------------------------------------------------------------ pure parts


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty sample."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Summary:
    name: str
    count: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float


def summarize(name: str, seconds: Sequence[float]) -> Summary:
    ms = [s * 1000 for s in seconds]
    return Summary(name, len(ms), percentile(ms, 50), percentile(ms, 90), percentile(ms, 99), max(ms))


def format_table(rows: Sequence[Summary]) -> str:
    lines = [f"{'measure':34} {'n':>5} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}"]
    lines += [
        f"{r.name:34} {r.count:5d} {r.p50_ms:8.2f} {r.p90_ms:8.2f} {r.p99_ms:8.2f} {r.max_ms:8.2f}"
        for r in rows
    ]
    return "\n".join(lines)


def verdict(roundtrip: Summary) -> str:
    p50 = "met" if roundtrip.p50_ms <= AIM_P50_MS else "NOT met"
    p99 = "met" if roundtrip.p99_ms <= AIM_P99_MS else "NOT met"
    return (
        f"aim p50 <= {AIM_P50_MS:.0f} ms: {p50} ({roundtrip.p50_ms:.2f}); "
        f"aim p99 <= {AIM_P99_MS:.0f} ms: {p99} ({roundtrip.p99_ms:.2f})"
    )


# ------------------------------------------------------------------------------------------ measuring


async def _pending(client: ApprovalsClient, found: asyncio.Queue[Request], ready: asyncio.Event) -> None:
    """New pending requests of the bench requester, as the KV bucket announces them."""
    async for request in client.watch(ready):
        mine = request.requester.sub == REQUESTER and not request.approvals
        if mine and effective_state(request) == "pending":
            found.put_nowait(request)


async def measure(stack: Stack, count: int) -> dict[str, list[float]]:
    status = stack.status
    host, port = status["gateway"]["postgres"].rsplit(":", 1)
    home = str(stack.home)
    token = pcigate("token", "--home", home, "--sub", REQUESTER, "--groups", "payments-admins", "--ttl", "2h")
    approver = pcigate("token", "--home", home, "--sub", APPROVER, "--groups", "approvers", "--ttl", "2h")
    if token.returncode or approver.returncode:
        raise BenchError(f"pcigate token failed: {token.stderr.strip()} {approver.stderr.strip()}")
    conn = await asyncpg.connect(host=host, port=int(port), user=REQUESTER, password=token.stdout.strip(),
                                 database=DATABASE, ssl=False)  # fmt: skip
    direct = await asyncpg.connect(
        host=stack.postgres_address()[0], port=stack.postgres_address()[1], user="pcigate_rw",
        password=stack.secret("pcigate_rw"), database=DATABASE, ssl=False,
    )  # fmt: skip
    times: dict[str, list[float]] = {"roundtrip": [], "hold": [], "reply": [], "unheld": [], "direct": []}
    try:
        async with ApprovalsClient([status["nats"]]) as client, ApprovalsClient([status["nats"]]) as watching:
            found: asyncio.Queue[Request] = asyncio.Queue()
            ready = asyncio.Event()
            watch = asyncio.create_task(_pending(watching, found, ready))
            await ready.wait()
            for i in range(count + 5):  # five warm-ups
                card = 1 + i % 1000
                sent = time.perf_counter()
                run = asyncio.create_task(conn.fetchval(HELD, card))
                async with asyncio.timeout(30):
                    request = await found.get()
                seen = time.perf_counter()
                decided = time.perf_counter()
                reply = await client.decide(request, "approve", reason="bench", token=approver.stdout.strip(),
                                            channel="api", client_app="pcigate-bench")  # fmt: skip
                replied = time.perf_counter()
                got = await run
                done = time.perf_counter()
                if reply.refused is not None or got != card:
                    raise BenchError(f"approval {i} went wrong: {reply.refused} {reply.message} -> {got}")
                if i >= 5:
                    times["roundtrip"].append(done - decided)
                    times["hold"].append(seen - sent)
                    times["reply"].append(replied - decided)
            for i in range(count):
                t0 = time.perf_counter()
                await conn.fetchval(FREE, 1 + i % 1000)
                t1 = time.perf_counter()
                await direct.fetchval(FREE, 1 + i % 1000)
                t2 = time.perf_counter()
                times["unheld"].append(t1 - t0)
                times["direct"].append(t2 - t1)
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
    finally:
        await conn.close()
        await direct.close()
    return times


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--count", type=int, default=200, help="approvals measured (default %(default)s)")
    p.add_argument("--home", default=".pcigate-bench", help="dev stack state directory (default %(default)s)")
    p.add_argument("--keep", action="store_true", help="leave the dev stack running")
    p.add_argument("--json", default=None, help="write every sample and the summary here")
    args = p.parse_args(argv)
    try:
        times = on_dev_stack(
            Path(args.home), args.keep, lambda stack: asyncio.run(measure(stack, args.count))
        )
    except BenchError as exc:
        say(f"error: {exc}")
        return 1
    names = {
        "roundtrip": "decision sent -> client has result",
        "reply": "decision sent -> approver has reply",
        "hold": "statement sent -> request in KV",
        "unheld": "same UPDATE, no rule (gateway)",
        "direct": "same UPDATE, direct",
    }
    rows = [summarize(names[k], v) for k, v in times.items()]
    print(format_table(rows))
    print(verdict(rows[0]))
    if args.json:
        doc = {"summary": [asdict(r) for r in rows], "samples_s": times, "count": args.count}
        Path(args.json).write_text(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
