"""SELECT every row of a 1,000,000-row card table through the pcigate gateway (masking on) vs direct.

Issue 5: result sets with no sensitive column and no content candidate must cost next to nothing, and a
card table read whole through the gateway may cost at most 2x direct (aim: 1.3x). Both targets are measured
in the same run, interleaved: for each round, for each client, for each table, direct and gateway back to
back in an order that alternates from cell to cell and from round to round. Reported: median seconds per
target, the median of the rounds' own gateway/direct ratios (drift of a shared machine between rounds
cancels out), MB/s of what the client received and where the CPU time went.

    PYTHONPATH=. .venv/bin/python bench/masking_select.py [--quick] [--rounds N] [--check] [--json FILE]

Clients (each its own measurement, a fresh connection per run, timed from sending the query to the last
row; psql from process start to exit):

- ``psql``     ``psql -X -At -c 'SELECT * FROM t' > /dev/null``: simple protocol, text; libpq buffers the
               whole result, psql prints it. Includes process start and connecting.
- ``discard``  asyncpg ``conn.execute(q)``: the same simple-protocol text result as psql, received and
               dropped unparsed. The cheapest client there is, so the gateway's share shows most.
- ``asyncpg``  asyncpg ``conn.fetch(q)``: extended protocol, binary format, 1M Records in memory; what an
               asyncpg application does to read a result (a server-side cursor would add a round trip per
               prefetch batch and measure latency instead of throughput).
- ``psycopg``  psycopg 3 ``cur.execute(q); cur.fetchall()`` (autocommit): extended protocol, text format,
               the default client-side cursor. Skipped with a note when psycopg is not installed.
- ``copy``     asyncpg ``copy_from_query`` (``COPY (SELECT * FROM t) TO STDOUT``, text) into a null sink.

Bytes are the TCP payload the client's socket received during the query (``tcpi_bytes_received`` from
``TCP_INFO``, so protocol framing included); psql's socket is not ours, so its row reuses the discard
client's count (the same messages of the same simple-protocol query). The Python clients run on uvloop,
with the cyclic GC paused while timed (1M records would otherwise trigger full collections that have
nothing to do with the gateway).

CPU seconds per run: the client's (this process, or psql's through RUSAGE_CHILDREN), its PostgreSQL
backend's (``pg_backend_pid()``, through the gateway the upstream one; Python clients only) and the
gateway's processes' (the gateway and its spool service, from /proc). A cell more than 10x direct in a
round is not measured again: the floor is 2x, and more rounds would only make the run long.

Before measuring, one row of the card table is read through the gateway by each client kind and its ``pan``
classified as masked or clear (never printed). Masking not active is a prominent warning, and ``--check``
then fails.

The pure parts (classification, medians, ratios, the table, the verdict, the JSON document) are unit-tested
in tests/unit/test_bench_masking_report.py. The dev stack, the token and the environment come from
bench/pgbench_gateway.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import re
import resource
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import asyncpg
import uvloop

from bench import pgbench_gateway as pb
from pcigate.devstack import binaries
from pcigate.devstack.testcards import TEST_PANS, luhn_valid

try:
    import psycopg

    HAVE_PSYCOPG = True
except ImportError:  # optional: a dev dependency
    HAVE_PSYCOPG = False

ROOT = pb.ROOT
DEFAULT_HOME = pb.DEFAULT_HOME
DATABASE = pb.DATABASE
BENCH_ROLE = pb.BENCH_ROLE
READ_ONLY_ROLE = pb.READ_ONLY_ROLE

TARGETS = ("direct", "gateway")
REFERENCE = "direct"
SUBJECT = "gateway"
CLIENTS = ("psql", "discard", "asyncpg", "psycopg", "copy")
CARDS = "bench_cards"
ORDERS = "bench_orders"
TABLES = (CARDS, ORDERS)
VERDICT_TABLE = CARDS  # the floor is judged on the card table

FLOOR_RATIO = 2.0  # gateway/direct elapsed time, masking on (issue 5)
AIM_RATIO = 1.3
SETTLED_RATIO = 5 * FLOOR_RATIO  # a cell this far above the floor is not measured again (keeps runs short)

FULL_ROWS = 1_000_000
QUICK_ROWS = 100_000
DEFAULT_ROUNDS = 7

CLIENT_HELP = {
    "psql": "psql -At > /dev/null (simple protocol, text; incl. start + connect)",
    "discard": "asyncpg execute: simple-protocol text, rows dropped unparsed",
    "asyncpg": "asyncpg fetch: extended protocol, binary, all Records in memory",
    "psycopg": "psycopg 3 execute + fetchall: extended protocol, text",
    "copy": "asyncpg copy_from_query: COPY (SELECT ...) TO STDOUT, text, null sink",
}
BYTES_FROM = {"psql": "discard"}  # psql's socket is not ours: same messages as the discard client's

# ============================================================================================ pure parts

# struct tcp_info (linux/tcp.h): tcpi_bytes_received is the __u64 at offset 128 (Linux >= 4.1).
TCP_INFO_BYTES_RECEIVED = 128
TCP_INFO_LEN = 256


def tcp_bytes_received(info: bytes) -> int | None:
    """``tcpi_bytes_received`` from a ``getsockopt(IPPROTO_TCP, TCP_INFO)`` buffer; None if too short."""
    if len(info) < TCP_INFO_BYTES_RECEIVED + 8:
        return None
    return int(struct.unpack_from("=Q", info, TCP_INFO_BYTES_RECEIVED)[0])


def proc_stat_cpu(text: str, clock_ticks: int) -> float:
    """utime + stime in seconds from a ``/proc/<pid>/stat`` line (all threads of the process)."""
    fields = text[text.rindex(")") + 2 :].split()  # the name may hold spaces and parentheses
    return (int(fields[11]) + int(fields[12])) / clock_ticks


def proc_stat_ppid(text: str) -> int:
    return int(text[text.rindex(")") + 2 :].split()[1])


_DIGIT_RUN = re.compile(r"\d[\d \-]{11,}\d")
_KNOWN_PANS = frozenset(p for group in TEST_PANS.values() for p in group)

PanStatus = Literal["masked", "clear"]


def classify_pan(value: str | None) -> PanStatus:
    """``clear`` when the value still holds a card number: a Luhn-valid run of 13-19 digits (spaces and
    dashes allowed between them) or a published test number anywhere in a digit run; otherwise ``masked``
    (``411111******1111``, a token that fails Luhn, NULL)."""
    if value is None:
        return "masked"
    for m in _DIGIT_RUN.finditer(value):
        digits = re.sub(r"[ \-]", "", m.group(0))
        if 13 <= len(digits) <= 19 and luhn_valid(digits):
            return "clear"
        if any(pan in digits for pan in _KNOWN_PANS):  # glued to other digits, still the number
            return "clear"
    return "masked"


def scrub(text: str) -> str:
    """``text`` with every digit run long enough to be a card number (13+ characters of digits, spaces and
    dashes) replaced."""
    return _DIGIT_RUN.sub("[digits]", text)


def pan_shape(value: str | None) -> str:
    """What a masked value looks like with every digit replaced by ``#``: safe to print."""
    if value is None:
        return "NULL"
    return re.sub(r"\d", "#", value)[:40]


@dataclass(frozen=True)
class MaskCheck:
    """One client kind's read of one card row through the gateway; ``status`` ``error`` carries ``detail``."""

    client: str
    status: Literal["masked", "clear", "error"]
    shape: str = ""  # digits as '#', only for masked values
    detail: str = ""


MaskingStatus = Literal["active", "not active", "partial", "unknown"]


def masking_status(checks: Sequence[MaskCheck]) -> MaskingStatus:
    """``active``: every client kind got the pan masked; ``not active``: every one that answered got it in
    clear; ``partial``: some masked, some clear; ``unknown``: no answer at all."""
    seen = {c.status for c in checks if c.status != "error"}
    if not seen:
        return "unknown"
    if seen == {"masked"}:
        return "active"
    if seen == {"clear"}:
        return "not active"
    return "partial"


def masking_lines(status: MaskingStatus, checks: Sequence[MaskCheck]) -> list[str]:
    """The masking report; anything but ``active`` is framed as a warning. Never holds a clear value."""
    per = ", ".join(
        f"{c.client} {c.status}"
        + (f" ({c.shape})" if c.shape else "")
        + (f" ({c.detail.split(':', 1)[0]})" if c.detail else "")  # the whole message goes to the notes
        for c in checks
    )
    if status == "active":
        return [f"masking: ACTIVE (pan masked: {per})"]
    head = {
        "not active": "masking: NOT ACTIVE (pan returned in clear)",
        "partial": "masking: PARTIAL (pan returned in clear to some clients)",
        "unknown": "masking: UNKNOWN (could not read a card row through the gateway)",
    }[status]
    body = [head, f"per client: {per or 'no check ran'}", "the gateway figures are not figures with masking"]
    width = max(len(line) for line in body) + 6
    bar = "!" * width
    return [bar, *(f"!! {line.ljust(width - 6)} !!" for line in body), bar]


def median(values: Iterable[float]) -> float:
    return pb.median(values)


rotated = pb.rotated


@dataclass(frozen=True)
class Sample:
    """One timed run: ``bytes`` received by the client's socket during the query (None: not counted);
    CPU seconds used meanwhile by the client, by its PostgreSQL backend (Python clients only) and by the
    gateway's processes (gateway runs only)."""

    round: int
    client: str
    table: str
    target: str
    seconds: float
    bytes: int | None
    rows: int | None
    client_cpu: float | None = None
    server_cpu: float | None = None
    gateway_cpu: float | None = None


@dataclass(frozen=True)
class Row:
    client: str
    table: str
    runs: int  # rounds in which both targets were measured
    direct_s: float | None  # median over rounds
    direct_spread: float | None  # (max - min) / 2 / median
    gateway_s: float | None
    gateway_spread: float | None
    ratio: float | None  # median over rounds of gateway / direct in the same round
    ratio_min: float | None
    ratio_max: float | None
    bytes_direct: int | None  # median bytes per run
    bytes_gateway: int | None
    mbps_direct: float | None  # 10^6 bytes per second (median bytes / median seconds)
    mbps_gateway: float | None
    ratio_of_medians: float | None = None  # gateway median / direct median, for comparison
    client_cpu_direct: float | None = None  # medians of CPU seconds per run
    client_cpu_gateway: float | None = None
    server_cpu_direct: float | None = None
    server_cpu_gateway: float | None = None
    gateway_cpu: float | None = None


def settled(direct_s: float | None, gateway_s: float | None) -> bool:
    """Whether one round's pair is so far above the floor that more rounds would only cost time."""
    return direct_s is not None and gateway_s is not None and gateway_s > SETTLED_RATIO * direct_s


def _spread(values: Sequence[float]) -> float | None:
    mid = median(values) if values else 0.0
    return (max(values) - min(values)) / 2.0 / mid if values and mid else None


def _median_int(values: Sequence[int]) -> int | None:
    return round(median(values)) if values else None


def _med(values: Sequence[float] | None) -> float | None:
    return median(values) if values else None


def summarize(
    samples: Iterable[Sample],
    clients: Sequence[str],
    tables: Sequence[str],
    bytes_from: Mapping[str, str] = BYTES_FROM,
) -> list[Row]:
    """Medians per (client, table, target) and the ratio gateway/direct per (client, table); round 0 (the
    warm-up) only counts bytes.

    The ratio is the median of the rounds' own ratios: direct and gateway run back to back in each round, so
    drift of the machine between rounds (a shared VM) cancels out, which a ratio of medians does not. A
    client whose runs count no bytes borrows the median of ``bytes_from[client]`` for the same table and
    target (psql from the discard client: the same simple-protocol messages).
    """
    by_key: dict[tuple[str, str, str], list[Sample]] = {}
    every: dict[tuple[str, str, str], list[Sample]] = {}  # with round 0, the warm-up: for bytes only
    for s in samples:
        every.setdefault((s.client, s.table, s.target), []).append(s)
        if s.round > 0:
            by_key.setdefault((s.client, s.table, s.target), []).append(s)

    def bytes_of(client: str, table: str, target: str) -> int | None:
        for name in (client, bytes_from.get(client)):
            runs = by_key.get((name or "", table, target)) or every.get((name or "", table, target), [])
            counted = [s.bytes for s in runs if s.bytes is not None]
            if counted:
                return _median_int(counted)
        return None

    def cpu(runs: Sequence[Sample], attr: str) -> float | None:
        return _med([v for v in (getattr(s, attr) for s in runs) if v is not None])

    rows: list[Row] = []
    for client in clients:
        for table in tables:
            d_runs = by_key.get((client, table, REFERENCE), [])
            g_runs = by_key.get((client, table, SUBJECT), [])
            if not d_runs and not g_runs:
                continue
            d = [s.seconds for s in d_runs]
            g = [s.seconds for s in g_runs]
            ds, gs = _med(d), _med(g)
            d_round = {s.round: s.seconds for s in d_runs}
            paired = [s.seconds / d_round[s.round] for s in g_runs if d_round.get(s.round)]
            bd, bg = bytes_of(client, table, REFERENCE), bytes_of(client, table, SUBJECT)
            rows.append(
                Row(
                    client=client,
                    table=table,
                    runs=len(paired),
                    direct_s=ds,
                    direct_spread=_spread(d),
                    gateway_s=gs,
                    gateway_spread=_spread(g),
                    ratio=_med(paired),
                    ratio_min=min(paired) if paired else None,
                    ratio_max=max(paired) if paired else None,
                    bytes_direct=bd,
                    bytes_gateway=bg,
                    mbps_direct=bd / ds / 1e6 if bd is not None and ds else None,
                    mbps_gateway=bg / gs / 1e6 if bg is not None and gs else None,
                    ratio_of_medians=gs / ds if gs is not None and ds else None,
                    client_cpu_direct=cpu(d_runs, "client_cpu"),
                    client_cpu_gateway=cpu(g_runs, "client_cpu"),
                    server_cpu_direct=cpu(d_runs, "server_cpu"),
                    server_cpu_gateway=cpu(g_runs, "server_cpu"),
                    gateway_cpu=cpu(g_runs, "gateway_cpu"),
                )
            )
    return rows


def _cell(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"±{100.0 * value:.0f}%"


def _range(low: float | None, high: float | None) -> str:
    return "-" if low is None or high is None else f"{low:.2f}-{high:.2f}"


def format_table(rows: Sequence[Row]) -> str:
    """Per client and table: median seconds direct and through the gateway with their spread, the ratio
    (median of the rounds' ratios) and its range, MB/s each way, MB per result, then where the time goes:
    median CPU seconds of the client and of its PostgreSQL backend (both in gateway runs) and of the
    gateway."""
    header = (
        "client",
        "table",
        "direct s",
        "spread",
        "gateway s",
        "spread",
        "ratio",
        "range",
        "MB/s direct",
        "MB/s gateway",
        "MB",
        "CPU s: client",
        "server",
        "gateway",
    )
    lines = [header]
    for r in rows:
        mb = r.bytes_direct if r.bytes_direct is not None else r.bytes_gateway
        lines.append(
            (
                r.client,
                r.table,
                _cell(r.direct_s, ".3f"),
                _pct(r.direct_spread),
                _cell(r.gateway_s, ".3f"),
                _pct(r.gateway_spread),
                _cell(r.ratio, ".2f"),
                _range(r.ratio_min, r.ratio_max),
                _cell(r.mbps_direct, ".0f"),
                _cell(r.mbps_gateway, ".0f"),
                _cell(None if mb is None else mb / 1e6, ".1f"),
                _cell(
                    r.client_cpu_gateway if r.client_cpu_gateway is not None else r.client_cpu_direct, ".2f"
                ),
                _cell(
                    r.server_cpu_gateway if r.server_cpu_gateway is not None else r.server_cpu_direct, ".2f"
                ),
                _cell(r.gateway_cpu, ".2f"),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for line in lines:
        cells = [
            c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


@dataclass(frozen=True)
class ClientCheck:
    client: str
    ratio: float | None

    @property
    def measured(self) -> bool:
        return self.ratio is not None

    @property
    def floor_ok(self) -> bool:
        return self.ratio is not None and self.ratio <= FLOOR_RATIO

    @property
    def aim_ok(self) -> bool:
        return self.ratio is not None and self.ratio <= AIM_RATIO


@dataclass(frozen=True)
class Verdict:
    status: Literal["met", "not met", "not measured"]
    checks: tuple[ClientCheck, ...]
    masking: MaskingStatus

    @property
    def passed(self) -> bool:
        """What ``--check`` requires: the floor met by every client, with masking active."""
        return self.status == "met" and self.masking == "active"


def floor_verdict(
    rows: Sequence[Row], clients: Sequence[str], masking: MaskingStatus, table: str = VERDICT_TABLE
) -> Verdict:
    """The floor holds only when every client was measured on ``table``, each within 2x (fail closed); one
    measured above it is ``not met`` even when another is missing."""
    by_client = {r.client: r for r in rows if r.table == table}
    checks = tuple(ClientCheck(c, by_client[c].ratio if c in by_client else None) for c in clients)
    status: Literal["met", "not met", "not measured"]
    if any(c.measured and not c.floor_ok for c in checks):
        status = "not met"
    elif not checks or not all(c.measured for c in checks):
        status = "not measured"
    else:
        status = "met"
    return Verdict(status, checks, masking)


def format_verdict(verdict: Verdict, rows: Sequence[Row]) -> list[str]:
    lines = [
        f"floor (issue 5): gateway/direct elapsed <= {FLOOR_RATIO:.1f} on {VERDICT_TABLE}, every client; "
        f"aim <= {AIM_RATIO:.1f}"
    ]
    for c in verdict.checks:
        if not c.measured:
            lines.append(f"  {c.client:8} not measured")
            continue
        assert c.ratio is not None
        floor = "ok" if c.floor_ok else "ABOVE FLOOR"
        aim = "aim met" if c.aim_ok else "above aim"
        lines.append(f"  {c.client:8} {c.ratio:.2f}  {floor}, {aim}")
    others = [r for r in rows if r.table != VERDICT_TABLE and r.ratio is not None]
    if others:
        lines.append(
            "no card column, no candidate (should cost next to nothing): "
            + ", ".join(f"{r.client} {r.ratio:.2f}" for r in others)
        )
    verdict_line = f"verdict: FLOOR {verdict.status.upper()}"
    if verdict.masking != "active" and verdict.status != "not measured":
        verdict_line += f" -- but masking {verdict.masking.upper()}: these are not figures with masking"
    lines.append(verdict_line)
    return lines


def format_machine(machine: Mapping[str, Any]) -> str:
    return (
        f"machine: {machine.get('nproc', '?')} CPUs ({machine.get('cpu', '?')}), "
        f"PostgreSQL {machine.get('postgresql', '?')}, {machine.get('psql', '?')}, "
        f"asyncpg {machine.get('asyncpg', '?')}, psycopg {machine.get('psycopg', '?')}, "
        f"Python {machine.get('python', '?')} ({machine.get('loop', '?')}); "
        f"source {machine.get('source', '?')}"
    )


def results_document(
    machine: Mapping[str, Any],
    settings: Mapping[str, Any],
    samples: Sequence[Sample],
    rows: Sequence[Row],
    verdict: Verdict,
    checks: Sequence[MaskCheck],
    notes: Sequence[str],
) -> dict[str, Any]:
    """What ``--json`` writes: everything to compare runs later; no credentials, no card values."""
    return {
        "benchmark": "SELECT every row of a card table: direct vs pcigate gateway (masking on)",
        "machine": dict(machine),
        "settings": dict(settings),
        "masking": {"status": verdict.masking, "checks": [asdict(c) for c in checks]},
        "floor": {
            "table": VERDICT_TABLE,
            "ratio": FLOOR_RATIO,
            "aim_ratio": AIM_RATIO,
            "status": verdict.status,
            "passed": verdict.passed,
            "checks": [{**asdict(c), "floor_ok": c.floor_ok, "aim_ok": c.aim_ok} for c in verdict.checks],
        },
        "results": [asdict(r) for r in rows],
        "runs": [asdict(s) for s in samples],
        "notes": list(notes),
    }


# ============================================================================================ harness

BenchError = pb.BenchError
say = pb.say


Target = pb.Target


def find_psql(explicit: str | None) -> str:
    """psql from PATH, else beside the embedded PostgreSQL (as pgbench_gateway finds pgbench)."""
    if explicit:
        return explicit
    found = shutil.which("psql")
    if found:
        return found
    try:
        candidate = binaries.postgres_bindir() / "psql"
    except binaries.MissingBinaryError as exc:
        raise BenchError(f"no psql on PATH and none beside the dev PostgreSQL: {exc}") from exc
    if not candidate.is_file():
        raise BenchError("no psql on PATH nor in the embedded PostgreSQL; install postgresql-client")
    return str(candidate)


# ----------------------------------------------------------------------------------------- tables

CARDS_COLUMNS = (
    ("card_id", "bigint"),
    ("customer_id", "bigint"),
    ("holder_name", "text"),
    ("brand", "text"),
    ("pan", "text"),
    ("exp_month", "smallint"),
    ("exp_year", "smallint"),
)
ORDERS_COLUMNS = (
    ("order_id", "bigint"),
    ("customer", "text"),
    ("amount", "numeric"),
    ("status", "text"),
    ("created_at", "timestamp with time zone"),
)

COLUMNS = {CARDS: CARDS_COLUMNS, ORDERS: ORDERS_COLUMNS}


def select_sql(table: str, named: bool = False, tail: str = "") -> str:
    """``SELECT * FROM public.<table>``, or with its columns by name (what the gateway can trace without
    asking the catalog; it asks for that where it cannot resolve ``*``, as for COPY)."""
    columns = ", ".join(name for name, _ in COLUMNS[table]) if named else "*"
    return f"SELECT {columns} FROM public.{table}{tail}"


_NAMES = """
WITH first(n) AS (SELECT ARRAY['Ada','Alan','Grace','Edsger','Barbara','Donald','Frances','Ken','Radia','Tim',
                               'Margaret','Dennis','Hedy','Linus','Sophie','John','Katherine','Niklaus']),
     last(n) AS (SELECT ARRAY['Lovelace','Turing','Hopper','Dijkstra','Liskov','Knuth','Allen','Thompson',
                              'Perlman','Berners-Lee','Hamilton','Ritchie','Lamarr','Torvalds','Wilson','Backus',
                              'Johnson','Wirth'])
"""

# Shaped like the demo public.cards without cvv (a card table does not store it); $1 rows, $2 brands[],
# $3 pans[] (parallel arrays of the brands' published test numbers).
CARDS_SQL = f"""
CREATE TABLE public.{CARDS} (
    card_id      bigint PRIMARY KEY,
    customer_id  bigint NOT NULL,
    holder_name  text NOT NULL,
    brand        text NOT NULL,
    pan          text NOT NULL,
    exp_month    smallint NOT NULL,
    exp_year     smallint NOT NULL
)
"""
FILL_CARDS = (
    _NAMES
    + f"""
INSERT INTO public.{CARDS}
SELECT i,
       1 + (i * 7919) % 250000,
       first.n[1 + i % 18] || ' ' || last.n[1 + (i / 18) % 18],
       ($2::text[])[1 + i % cardinality($2::text[])],
       ($3::text[])[1 + i % cardinality($3::text[])],
       1 + i % 12,
       2027 + i % 6
FROM generate_series(1, $1::bigint) AS i, first, last
"""
)

# No card column and nothing a content detector could take for one: no digit run longer than 7.
ORDERS_SQL = f"""
CREATE TABLE public.{ORDERS} (
    order_id    bigint PRIMARY KEY,
    customer    text NOT NULL,
    amount      numeric(12,2) NOT NULL,
    status      text NOT NULL,
    created_at  timestamptz NOT NULL
)
"""
FILL_ORDERS = (
    _NAMES
    + f"""
INSERT INTO public.{ORDERS}
SELECT i,
       first.n[1 + i % 18] || ' ' || last.n[1 + (i / 18) % 18],
       (100 + (i * 2654435761) % 250000) / 100.0,
       (ARRAY['captured','captured','captured','authorized','refunded','declined'])[1 + i % 6],
       timestamptz '2025-01-01' + make_interval(secs => i * 97)
FROM generate_series(1, $1::bigint) AS i, first, last
"""
)


async def _table_state(conn: asyncpg.Connection, table: str) -> tuple[list[tuple[str, str]], int | None]:
    cols = await conn.fetch(
        "SELECT column_name::text, data_type::text FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position",
        table,
    )
    shape = [(r[0], r[1]) for r in cols]
    count = await conn.fetchval(f"SELECT count(*) FROM public.{table}") if shape else None
    return shape, None if count is None else int(count)


async def _ensure_tables(host: str, port: int, user: str, password: str, rows: int) -> list[str]:
    conn = await asyncpg.connect(
        host=host, port=port, user=user, password=password, database=DATABASE, ssl=False
    )
    said: list[str] = []
    pans = [(brand, pan) for brand, group in TEST_PANS.items() for pan in group]
    try:
        for table, columns, create, fill, args in (
            (CARDS, CARDS_COLUMNS, CARDS_SQL, FILL_CARDS, ([b for b, _ in pans], [p for _, p in pans])),
            (ORDERS, ORDERS_COLUMNS, ORDERS_SQL, FILL_ORDERS, ()),
        ):
            shape, count = await _table_state(conn, table)
            if shape == list(columns) and count == rows:
                said.append(f"{table}: present with {rows:,} rows")
                continue
            started = time.monotonic()
            async with conn.transaction():
                await conn.execute(f"DROP TABLE IF EXISTS public.{table}")
                await conn.execute(create)
                await conn.execute(fill, rows, *args)
                await conn.execute(f"GRANT SELECT ON public.{table} TO {BENCH_ROLE}, {READ_ONLY_ROLE}")
            # Hint bits and the visibility map set now, not by whichever target happens to scan first.
            await conn.execute(f"VACUUM (FREEZE, ANALYZE) public.{table}")
            size = await conn.fetchval("SELECT pg_total_relation_size($1::regclass)", f"public.{table}")
            said.append(
                f"{table}: created with {rows:,} rows in {time.monotonic() - started:.1f} s "
                f"({int(size) / 1e6:.0f} MB with index)"
            )
    finally:
        await conn.close()
    return said


def ensure_tables(stack: pb.Stack, rows: int) -> None:
    """The two tables in ``payments``, owned by the superuser and readable by the roles the targets use;
    rebuilt when their shape or row count differ from this run's."""
    host, port, user, password = pb.superuser(stack)
    for line in asyncio.run(_ensure_tables(host, port, user, password, rows)):
        say(line)


# ----------------------------------------------------------------------------------------- clients


@dataclass(frozen=True)
class RunResult:
    seconds: float
    bytes: int | None
    rows: int | None
    client_cpu: float | None = None
    server_cpu: float | None = None


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def processes_of(pid: int) -> list[int]:
    """``pid`` and its children (the gateway forks its spool service)."""
    found = [pid]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                if proc_stat_ppid((entry / "stat").read_text()) == pid:
                    found.append(int(entry.name))
    return found


def cpu_of(pids: Sequence[int]) -> float | None:
    """CPU seconds used so far by ``pids`` (those still alive); None when none can be read."""
    total, seen = 0.0, False
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += proc_stat_cpu(Path(f"/proc/{pid}/stat").read_text(), CLOCK_TICKS)
            seen = True
    return total if seen else None


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _received(sock: socket.socket | None) -> int | None:
    if sock is None:
        return None
    try:
        return tcp_bytes_received(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_LEN))
    except OSError:
        return None


def _delta(before: int | None, after: int | None) -> int | None:
    return after - before if before is not None and after is not None else None


def _asyncpg_socket(conn: asyncpg.Connection) -> socket.socket | None:
    transport = getattr(conn, "_transport", None)  # asyncpg has no public accessor for its socket
    sock = transport.get_extra_info("socket") if transport is not None else None
    return sock if hasattr(sock, "getsockopt") else None


async def _asyncpg_connect(target: Target) -> asyncpg.Connection:
    # ssl=False on both sides: the gateway offers TLS, the dev PostgreSQL does not (like pgbench_gateway).
    return await asyncpg.connect(
        host=target.host,
        port=target.port,
        user=target.user,
        password=target.password,
        database=DATABASE,
        ssl=False,
        timeout=60,
        command_timeout=600,
    )


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


async def _run_asyncpg(client: str, target: Target, query: str) -> RunResult:
    conn = await _asyncpg_connect(target)
    try:
        sock = _asyncpg_socket(conn)
        backend = [int(await conn.fetchval("SELECT pg_backend_pid()"))]  # through the gateway: upstream's
        server = cpu_of(backend)
        before = _received(sock)
        cpu = time.process_time()
        with _gc_paused():
            started = time.perf_counter()
            if client == "discard":
                tag = await conn.execute(query)  # no arguments: simple protocol, rows dropped unparsed
                rows: int | None = int(tag.rsplit(" ", 1)[-1])
                elapsed = time.perf_counter() - started
            elif client == "asyncpg":
                records = await conn.fetch(query)
                elapsed = time.perf_counter() - started
                rows = len(records)
                del records
            elif client == "copy":
                sink = NullSink()
                tag = await conn.copy_from_query(query, output=sink.write)
                elapsed = time.perf_counter() - started
                rows = int(tag.rsplit(" ", 1)[-1])
            else:
                raise ValueError(client)
        cpu = time.process_time() - cpu
        after = _received(sock)
        server_after = cpu_of(backend)
    finally:
        await conn.close()
    server_cpu = server_after - server if server is not None and server_after is not None else None
    return RunResult(elapsed, _delta(before, after), rows, cpu, server_cpu)


class NullSink:
    def __init__(self) -> None:
        self.bytes = 0

    async def write(self, data: bytes) -> None:
        self.bytes += len(data)


def _psycopg_conninfo(target: Target) -> dict[str, Any]:
    return {
        "host": target.host,
        "port": target.port,
        "user": target.user,
        "password": target.password,
        "dbname": DATABASE,
        "sslmode": "disable",
        "gssencmode": "disable",
        "application_name": "pcigate-bench",
        "autocommit": True,
        "connect_timeout": 60,
    }


def _run_psycopg(target: Target, query: str) -> RunResult:
    with psycopg.connect(**_psycopg_conninfo(target)) as conn:
        sock = socket.fromfd(conn.pgconn.socket, socket.AF_INET, socket.SOCK_STREAM)  # a dup, closed below
        try:
            pid = conn.execute("SELECT pg_backend_pid()").fetchone()
            backend = [int(pid[0])] if pid else []
            server = cpu_of(backend)
            before = _received(sock)
            cpu = time.process_time()
            with _gc_paused(), conn.cursor() as cur:
                started = time.perf_counter()
                cur.execute(query)
                rows = len(cur.fetchall())
                elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu
            after = _received(sock)
            server_after = cpu_of(backend)
        finally:
            sock.close()
    server_cpu = server_after - server if server is not None and server_after is not None else None
    return RunResult(elapsed, _delta(before, after), rows, cpu, server_cpu)


def _run_psql(psql: str, target: Target, sql: str) -> RunResult:
    cpu = _children_cpu()
    started = time.perf_counter()
    done = subprocess.run(
        [psql, "-X", "-q", "-A", "-t", "-c", sql],
        env=target.env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=600,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise BenchError(
            f"psql exited {done.returncode}: {done.stderr.decode(errors='replace').strip()[:300]}"
        )
    return RunResult(elapsed, None, None, _children_cpu() - cpu)


@dataclass
class Runner:
    """Runs one client against one target; the Python clients share one uvloop event loop."""

    psql: str
    loop: asyncio.Runner
    named: bool = False  # the columns by name instead of *
    gateway_pids: list[int] = field(default_factory=list)

    def run(self, client: str, target: Target, table: str) -> RunResult:
        query = select_sql(table, self.named)
        if client == "psql":
            return _run_psql(self.psql, target, query)
        if client == "psycopg":
            return _run_psycopg(target, query)
        return self.loop.run(_run_asyncpg(client, target, query))


# ----------------------------------------------------------------------------------------- masking check

PAN_INDEX = [name for name, _ in CARDS_COLUMNS].index("pan")


async def _pan_asyncpg(target: Target, query: str, copy: bool) -> str | None:
    conn = await _asyncpg_connect(target)
    try:
        if copy:
            sink = Collect()
            await conn.copy_from_query(query, output=sink.write)
            line = b"".join(sink.chunks).decode().rstrip("\n")
            value = line.split("\t")[PAN_INDEX]
            return None if value == "\\N" else value
        row = await conn.fetchrow(query)
        return None if row is None else row["pan"]
    finally:
        await conn.close()


class Collect:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    async def write(self, data: bytes) -> None:
        self.chunks.append(data)


def _pan_psycopg(target: Target, query: str) -> str | None:
    with psycopg.connect(**_psycopg_conninfo(target)) as conn:
        row = conn.execute(query).fetchone()
    if row is None:
        raise BenchError("no row")
    value = row[PAN_INDEX]
    return None if value is None else str(value)


def _pan_psql(psql: str, target: Target, query: str) -> str | None:
    done = subprocess.run(
        [psql, "-X", "-q", "-A", "-t", "-F", "\t", "-c", query],
        env=target.env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(
            f"psql exited {done.returncode}: {done.stderr.decode(errors='replace').strip()[:200]}"
        )
    fields = done.stdout.decode().rstrip("\n").split("\t")
    if len(fields) != len(CARDS_COLUMNS):
        raise BenchError(f"psql printed {len(fields)} fields, not {len(CARDS_COLUMNS)}")
    return fields[PAN_INDEX] or None


def check_masking(runner: Runner, gateway: Target, clients: Sequence[str]) -> list[MaskCheck]:
    """One card row through the gateway per client kind (discard reads none; it shares psql's protocol)."""
    query = select_sql(CARDS, runner.named, " ORDER BY card_id LIMIT 1")
    readers: dict[str, Callable[[], str | None]] = {
        "psql": lambda: _pan_psql(runner.psql, gateway, query),
        "asyncpg": lambda: runner.loop.run(_pan_asyncpg(gateway, query, copy=False)),
        "psycopg": lambda: _pan_psycopg(gateway, query),
        "copy": lambda: runner.loop.run(_pan_asyncpg(gateway, query, copy=True)),
    }
    checks: list[MaskCheck] = []
    for client in clients:
        reader = readers.get(client)
        if reader is None:
            continue
        try:
            value = reader()
        except Exception as exc:  # a refused read is a finding, not a crash
            checks.append(MaskCheck(client, "error", detail=_error_text(exc)))
            continue
        status = classify_pan(value)
        checks.append(MaskCheck(client, status, pan_shape(value) if status == "masked" else ""))
        del value  # the clear value goes no further than this function
    return checks


def _error_text(exc: BaseException) -> str:
    """Type, SQLSTATE and message, with any long digit run in the message replaced (it might echo one)."""
    sqlstate = getattr(exc, "sqlstate", None)
    head = f"{type(exc).__name__}" + (f" {sqlstate}" if sqlstate else "")
    message = scrub(str(exc).splitlines()[0] if str(exc) else "")
    return f"{head}: {message}"[:400] if message else head


# ----------------------------------------------------------------------------------------- measuring


@dataclass
class Plan:
    rounds: int
    rows: int
    clients: list[str]
    tables: list[str]


@dataclass
class Outcome:
    samples: list[Sample] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    connect_ms: dict[str, float] = field(default_factory=dict)


def measure(runner: Runner, targets: Mapping[str, Target], plan: Plan) -> Outcome:
    """Warm-up, then interleaved rounds; a (client, table, target) that fails is dropped with a note."""
    out = Outcome()
    live = [t for t in TARGETS if t in targets]
    dropped: set[tuple[str, str, str]] = set()

    def attempt(client: str, table: str, target: str, rnd: int) -> RunResult | None:
        gw_before = cpu_of(runner.gateway_pids) if target == SUBJECT else None
        try:
            result = runner.run(client, targets[target], table)
        except Exception as exc:  # one failing cell must not lose the others
            why = str(exc) if isinstance(exc, BenchError) else _error_text(exc)
            note = f"{client} on {table} via {target} dropped: {why}"
            out.notes.append(note)
            say(f"  ! {note}")
            dropped.add((client, table, target))
            return None
        if result.rows is not None and result.rows != plan.rows:
            note = f"{client} on {table} via {target} dropped: {result.rows:,} rows, not {plan.rows:,}"
            out.notes.append(note)
            say(f"  ! {note}")
            dropped.add((client, table, target))
            return None
        gw_after = cpu_of(runner.gateway_pids) if target == SUBJECT else None
        gw_cpu = gw_after - gw_before if gw_before is not None and gw_after is not None else None
        # round 0 is the warm-up: its bytes count (psql borrows them), its time does not
        sample = Sample(
            rnd,
            client,
            table,
            target,
            result.seconds,
            result.bytes,
            result.rows,
            result.client_cpu,
            result.server_cpu,
            gw_cpu,
        )
        out.samples.append(sample)
        return result

    say("warm-up: psql start + connect, then one discard read per table and target")
    if "psql" in plan.clients:
        for target in live:
            times = []
            for _ in range(3):
                with contextlib.suppress(BenchError):
                    times.append(_run_psql(runner.psql, targets[target], "SELECT 1").seconds)
            if times:
                out.connect_ms[target] = 1000.0 * median(times)
    for table in plan.tables:
        for target in live:
            attempt("discard", table, target, 0)
    dropped.clear()  # a failed warm-up is retried in the rounds (and noted again if it fails again)
    cell = 0
    done: set[tuple[str, str]] = set()
    for rnd in range(1, plan.rounds + 1):
        for client in plan.clients:
            for table in plan.tables:
                cell += 1
                if (client, table) in done:
                    continue
                seconds: dict[str, float] = {}
                for target in rotated(live, rnd + cell):
                    if (client, table, target) in dropped:
                        continue
                    result = attempt(client, table, target, rnd)
                    if result is None:
                        continue
                    seconds[target] = result.seconds
                    mb = "" if result.bytes is None else f"  {result.bytes / 1e6 / result.seconds:6.0f} MB/s"
                    say(
                        f"  round {rnd}/{plan.rounds}  {client:8} {table:13} {target:8} "
                        f"{result.seconds:7.3f} s{mb}"
                    )
                gc.collect()
                if rnd < plan.rounds and settled(seconds.get(REFERENCE), seconds.get(SUBJECT)):
                    done.add((client, table))
                    note = (
                        f"{client} on {table}: gateway/direct {seconds[SUBJECT] / seconds[REFERENCE]:.1f} "
                        f"in round {rnd}, over {SETTLED_RATIO:.0f}: not measured in later rounds"
                    )
                    out.notes.append(note)
                    say(f"  ! {note}")
    return out


# ------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="SELECT every row of a 1M-row card table (and a card-free one) through the pcigate "
        "gateway with masking on vs direct PostgreSQL, interleaved; prints medians, ratios and MB/s."
    )
    p.add_argument(
        "--home", default=str(DEFAULT_HOME), help="dev stack state directory (default: %(default)s)"
    )
    p.add_argument("--rounds", type=int, default=None, help=f"rounds (default: {DEFAULT_ROUNDS}; --quick 1)")
    p.add_argument(
        "--rows",
        type=int,
        default=None,
        help=f"rows per table (default: {FULL_ROWS:,}; --quick {QUICK_ROWS:,})",
    )
    p.add_argument("--quick", action="store_true", help=f"{QUICK_ROWS:,} rows, 1 round: a smoke run")
    p.add_argument("--clients", default=",".join(CLIENTS), help="comma-separated subset of %(default)s")
    p.add_argument("--tables", default="cards,orders", help="comma-separated subset of %(default)s")
    p.add_argument(
        "--named-columns",
        action="store_true",
        help="list the columns by name instead of SELECT * (the gateway refuses COPY of * when it "
        "cannot tell which output columns hold card data)",
    )
    p.add_argument("--psql", default=None, help="psql binary (default: PATH, then the embedded one)")
    p.add_argument("--keep", action="store_true", help="leave the dev stack (and the tables) up")
    p.add_argument("--check", action="store_true", help="exit 1 unless the floor is met with masking active")
    p.add_argument("--json", metavar="FILE", default=None, help="also write the results as JSON")
    args = p.parse_args(argv)
    args.rounds = args.rounds if args.rounds is not None else (1 if args.quick else DEFAULT_ROUNDS)
    args.rows = args.rows if args.rows is not None else (QUICK_ROWS if args.quick else FULL_ROWS)
    if args.rounds < 1 or args.rows < 1:
        p.error("--rounds and --rows must be >= 1")
    clients = [c.strip() for c in args.clients.split(",") if c.strip()]
    if not clients or not set(clients) <= set(CLIENTS):
        p.error(f"--clients: choose from {', '.join(CLIENTS)}")
    names = {"cards": CARDS, "orders": ORDERS, CARDS: CARDS, ORDERS: ORDERS}
    tables = [t.strip() for t in args.tables.split(",") if t.strip()]
    if not tables or not set(tables) <= set(names):
        p.error("--tables: choose from cards, orders")
    args.client_list = [c for c in CLIENTS if c in clients]  # report order
    args.table_list = [t for t in TABLES if t in {names[t] for t in tables}]
    return args


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], capture_output=True, text=True, cwd=ROOT, timeout=10, check=False
    ).stdout.strip()


def source_state() -> str:
    """The commit measured and whether the gateway's code differs from it (figures follow the code)."""
    try:
        head = _git("rev-parse", "--short", "HEAD")
        dirty = _git("status", "--porcelain", "--", "gateway", "pcigate")
    except (OSError, subprocess.SubprocessError):
        return "?"
    if not head:
        return "?"
    return f"{head} (gateway/pcigate modified in the tree)" if dirty else head


async def _server_version(target: Target) -> str:
    conn = await _asyncpg_connect(target)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    home = Path(args.home).resolve()
    plan = Plan(args.rounds, args.rows, list(args.client_list), list(args.table_list))
    notes: list[str] = []
    if "psycopg" in plan.clients and not HAVE_PSYCOPG:
        plan.clients.remove("psycopg")
        notes.append("psycopg not installed in this Python: its client skipped")
    stacks: list[pb.Stack] = []
    checks: list[MaskCheck] = []
    try:
        psql = find_psql(args.psql)
        with (
            pb.cleanup(stacks, [], args.keep),
            asyncio.Runner(loop_factory=uvloop.new_event_loop) as loop,
        ):
            stack = pb.stack_before(home)
            stacks.append(stack)
            pb.stack_up(stack)
            pg_host, pg_port = stack.postgres_address()
            targets = {REFERENCE: Target(REFERENCE, pg_host, pg_port, BENCH_ROLE, stack.secret(BENCH_ROLE))}
            ensure_tables(stack, plan.rows)
            gateway = pb.gateway_target(stack, home, notes)
            if gateway is not None:
                targets[SUBJECT] = gateway
            for note in notes:
                say(f"  ! {note}")
            runner = Runner(psql, loop, named=args.named_columns)
            gw_pid = stack.status.get("services", {}).get("gateway", {}).get("pid")
            if gateway is not None and isinstance(gw_pid, int):
                runner.gateway_pids = processes_of(gw_pid)
            if gateway is not None and CARDS in plan.tables:
                checks = check_masking(runner, gateway, plan.clients)
                notes.extend(f"masking check via {c.client}: {c.detail}" for c in checks if c.detail)
                for line in masking_lines(masking_status(checks), checks):
                    say(line)
            outcome = measure(runner, targets, plan)
            notes.extend(outcome.notes)
            machine = {
                "nproc": os.cpu_count(),
                "cpu": pb.cpu_model(),
                "kernel": platform.release(),
                "postgresql": loop.run(_server_version(targets[REFERENCE])),
                "psql": pb.version_line([psql, "--version"]),
                "asyncpg": asyncpg.__version__,
                "psycopg": psycopg.__version__ if HAVE_PSYCOPG else "not installed",
                "python": platform.python_version(),
                "source": source_state(),
                "loop": f"uvloop {getattr(uvloop, '__version__', '?')}",
            }
    except BenchError as exc:
        print(f"masking_select: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("masking_select: interrupted", file=sys.stderr)
        return 130

    status = masking_status(checks)
    rows = summarize(outcome.samples, plan.clients, plan.tables)
    verdict = floor_verdict(rows, plan.clients, status)
    if outcome.connect_ms:
        notes.append(
            "psql start + connect + SELECT 1 (included in the psql rows): "
            + ", ".join(f"{t} {ms:.0f} ms" for t, ms in outcome.connect_ms.items())
        )
    settings = {
        **asdict(plan),
        "query": select_sql(CARDS, args.named_columns).replace(CARDS, "<table>"),
        "named_columns": args.named_columns,
        "warmup": "round 0: one discard read per table and target, for bytes only",
        "sslmode": "disable",
        "role": BENCH_ROLE,
        "clients_described": {c: CLIENT_HELP[c] for c in plan.clients},
        "bytes": "TCP payload received by the client socket during the query (TCP_INFO); psql: discard's",
        "measured_targets": sorted({s.target for s in outcome.samples}, key=TARGETS.index),
    }
    say("")
    say(format_machine(machine))
    say(
        f"SELECT {'<columns by name>' if args.named_columns else '*'} of {plan.rows:,} rows, "
        f"{plan.rounds} round(s), medians over rounds (spread: half the range; ratio: median of the rounds' "
        f"own ratios), fresh connection per run, sslmode=disable, role {BENCH_ROLE}; "
        "MB = 10^6 bytes received"
    )
    say("")
    say(format_table(rows))
    say("")
    for c in plan.clients:
        say(f"  {c:8} {CLIENT_HELP[c]}")
    say("")
    for line in format_verdict(verdict, rows):
        say(line)
    if SUBJECT in targets and CARDS in plan.tables:
        for line in masking_lines(status, checks):
            say(line)
    for note in notes:
        say(f"note: {note}")
    if args.json:
        doc = results_document(machine, settings, outcome.samples, rows, verdict, checks, notes)
        Path(args.json).write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        say(f"results written to {args.json}")
    if args.check and not verdict.passed:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
