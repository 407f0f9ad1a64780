"""What result limits cost: a 1M-row read by an agent whose results are counted, against the same read by a
human whose are not, and direct.

One asyncpg client runs ``SELECT g FROM generate_series(1, N) g`` with ``conn.execute`` (simple protocol,
the result dropped unparsed: the cheapest client, so what the gateway adds shows most) directly as
``pcigate_rw``, through a gateway as a human (no limit) and through it as an agent whose limits
(``limits.results.agent``: statement and session rows set far above N) are counted for every row but never
reached. Rounds interleave the three, the order rotating; it prints the median seconds of each and the
ratios against direct and agent/human. Counting happens once per run of rows in a received buffer
(``gateway/result_limits.py``); row by row it cost 38% on this read.

    PYTHONPATH=. .venv/bin/python bench/result_limits.py [--rows 1000000] [--rounds 7] [--keep]

It brings up the dev stack under ``.pcigate-bench`` (``--home``) like the other benches and runs a gateway
of its own beside it (the dev stack's config, its own port and spool, the agent limits above).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
import yaml

from bench.pgbench_gateway import (
    DATABASE,
    BenchError,
    Stack,
    dev_token,
    on_dev_stack,
    pcigate_argv,
    say,
)
from pcigate.devstack.ports import free_port

FAR = 10**12  # a limit no read here reaches: counted, never cut
TARGETS = ("direct", "human", "agent")


def gateway_config(stack: Stack, spool: Path) -> tuple[Path, int]:
    """The dev stack's config with its own port, spool and agent limits."""
    config = yaml.safe_load((stack.home / "dev" / "pcigate.yaml").read_text())
    port = free_port()
    conn = config["connections"][0]
    conn["listen"] = f"127.0.0.1:{port}"
    conn.setdefault("limits", {})["results"] = {"agent": {"statement_rows": FAR, "session_rows": FAR}}
    config["nats"]["spool_dir"] = str(spool / "spool")
    path = spool / "pcigate.yaml"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path, port


async def wait_listening(port: int, proc: subprocess.Popen[bytes], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError("the bench gateway exited at start; run it by hand to see why")
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        await asyncio.sleep(0.1)
    raise BenchError(f"the bench gateway did not listen on {port} within {within:.0f} s")


async def measure(stack: Stack, port: int, rows: int, rounds: int) -> dict[str, list[float]]:
    pg_host, pg_port = stack.postgres_address()
    human = dev_token(stack.home, "bench-human@example.com", "--groups", "payments-admins")
    agent = dev_token(
        stack.home, "bench-agent@example.com", "--groups", "payments-admins", "--kind", "agent",
        "--on-behalf-of", "bench-human@example.com",
    )  # fmt: skip
    logins = {
        "direct": {
            "host": pg_host,
            "port": pg_port,
            "user": "pcigate_rw",
            "password": stack.secret("pcigate_rw"),
        },
        "human": {"host": "127.0.0.1", "port": port, "user": "human", "password": human},
        "agent": {"host": "127.0.0.1", "port": port, "user": "agent", "password": agent},
    }
    sql = f"SELECT g FROM generate_series(1, {rows}) g"
    times: dict[str, list[float]] = {t: [] for t in TARGETS}
    conns = {t: await asyncpg.connect(database=DATABASE, ssl=False, **logins[t]) for t in TARGETS}
    try:
        for target in TARGETS:  # warm-up
            await conns[target].execute(sql)
        for r in range(rounds):
            for target in TARGETS[r % 3 :] + TARGETS[: r % 3]:
                t0 = time.perf_counter()
                await conns[target].execute(sql)
                times[target].append(time.perf_counter() - t0)
    finally:
        for conn in conns.values():
            await conn.close()
    return times


def report(times: dict[str, list[float]], rows: int) -> str:
    med = {t: statistics.median(v) for t, v in times.items()}
    lines = [
        f"{rows:,} rows, asyncpg execute (simple protocol, result dropped), median of {len(times['direct'])}"
    ]
    lines.append(f"{'target':<8} {'median s':>9} {'x direct':>9}")
    for t in TARGETS:
        lines.append(f"{t:<8} {med[t]:>9.3f} {med[t] / med['direct']:>9.2f}")
    lines.append(f"agent (limits counted) / human (none): {med['agent'] / med['human']:.3f}")
    return "\n".join(lines)


def beside(stack: Stack, rows: int, rounds: int) -> dict[str, list[float]]:
    """The measurement, with the bench's own gateway running beside the dev stack's."""
    with tempfile.TemporaryDirectory(prefix="pcigate-bench-limits-") as tmp:
        path, port = gateway_config(stack, Path(tmp))
        proc = subprocess.Popen(
            [*pcigate_argv(), "gateway", "--config", str(path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            asyncio.run(wait_listening(port, proc))
            return asyncio.run(measure(stack, port, rows, rounds))
        finally:
            proc.terminate()
            proc.wait(timeout=60)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--home", default=".pcigate-bench", help="dev stack state directory (default %(default)s)")
    p.add_argument("--keep", action="store_true", help="leave the dev stack running")
    args = p.parse_args(argv)
    try:
        times = on_dev_stack(Path(args.home), args.keep, lambda stack: beside(stack, args.rows, args.rounds))
    except BenchError as exc:
        say(f"error: {exc}")
        return 1
    print(report(times, args.rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
