"""pgbench -S through the pcigate gateway vs direct PostgreSQL vs pgbouncer, interleaved in one run.

Absolute TPS on a shared 2-core machine drifts by more than the differences we care about, so the targets
are measured in rounds (for each round, for each query mode, for each target — target order rotating per
round) and only medians and ratios against direct PostgreSQL from the same run are reported. The floor of
issue 3 is gateway/direct >= 0.45 with auditing on and at most 250 µs added 1-client latency; the aim is
pgbouncer's level (>= 0.65).

``gateway`` is the dev stack's gateway with its default config (auditing and session recording on);
``gateway-norec`` is a second ``pcigate gateway`` the bench runs itself from the same config with
``recording.enabled: false`` on the connection (its own port and spool), so gateway/gateway-norec is what
recording costs (issue 9); ``gateway-nopolicy`` is another, whose connection's policy is emptied (no rules,
``default_action: allow``), so gateway/gateway-nopolicy is what judging each statement against the dev
stack's rules costs (issue 6). Its policy hook still reads every statement (the facts cache): the parse
itself is measured apart, by bench/policy_cost.py.

    .venv/bin/python bench/pgbench_gateway.py [--quick] [--targets direct,pgbouncer,gateway,gateway-norec,...]

The pure parts (pgbench output parsing, medians, the table, the floor verdict, the recording overhead) are
unit-tested in tests/unit/test_bench_report.py; the rest drives processes: ``pcigate dev up``, pgbench,
pgbouncer, the second gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import pwd
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import asyncpg
import yaml

from pcigate.config.errors import ConfigError
from pcigate.config.load import load_config
from pcigate.devstack import binaries
from pcigate.devstack.ports import can_connect, free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
_T = TypeVar("_T")
DEFAULT_HOME = ROOT / ".pcigate-bench"

TARGETS = ("direct", "pgbouncer", "gateway", "gateway-norec", "gateway-nopolicy")
MODES = ("simple", "prepared")
REFERENCE = "direct"
SUBJECT = "gateway"  # the dev stack's gateway, default config: auditing and recording on
NOREC = "gateway-norec"  # the same config with recording.enabled: false, run by the bench
NOPOLICY = "gateway-nopolicy"  # the same config with the connection's policy emptied, run by the bench

FLOOR_RATIO = 0.45  # gateway/direct TPS, auditing on (issue 3)
FLOOR_ADDED_US = 250.0  # gateway - direct, 1-client average latency
AIM_RATIO = 0.65  # pgbouncer's level on the same machine

DATABASE = "payments"
BENCH_ROLE = "pcigate_rw"  # every target runs as this upstream role
READ_ONLY_ROLE = "pcigate_ro"
BENCH_GROUP = "payments-admins"  # the dev config maps it to pcigate_rw
BENCH_SUB = "bench@example.com"
PGBENCH_TABLES = ("pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history")


# ============================================================================================ pure parts


class PgbenchOutputError(ValueError):
    """pgbench's output holds no usable result (aborted clients, no transactions, unknown format)."""


@dataclass(frozen=True)
class PgbenchResult:
    tps: float
    latency_ms: float
    transactions: int
    failed: int


_TPS = re.compile(r"^tps = ([0-9]+(?:\.[0-9]+)?)(.*)$", re.MULTILINE)
_LATENCY = re.compile(r"^latency average = ([0-9]+(?:\.[0-9]+)?) ms", re.MULTILINE)
_PROCESSED = re.compile(r"^number of transactions actually processed: ([0-9]+)", re.MULTILINE)
_FAILED = re.compile(r"^number of failed transactions: ([0-9]+)", re.MULTILINE)
_ERROR = re.compile(r"^pgbench: error: (.*)$", re.MULTILINE)
_HEADER = re.compile(r"^pgbench \((?P<client>[^,()]+(?:\([^()]*\))?)(?:, server (?P<server>[^)]+))?\)$", re.M)


def parse_pgbench(text: str) -> PgbenchResult:
    """TPS (excluding connection set-up), average latency and counts from one pgbench run's output.

    A run with aborted clients or failed transactions is no measurement: its TPS would flatter whichever
    target failed, so it is rejected rather than reported.
    """
    first_error = _ERROR.search(text)
    if "Run was aborted" in text or first_error:
        why = first_error.group(1).strip() if first_error else "run was aborted"
        raise PgbenchOutputError(f"pgbench failed: {why}")
    processed = _PROCESSED.search(text)
    latency = _LATENCY.search(text)
    tps_lines = _TPS.findall(text)
    if not (processed and latency and tps_lines):
        raise PgbenchOutputError("pgbench output has no tps/latency lines (unknown format?)")
    transactions = int(processed.group(1))
    failed_m = _FAILED.search(text)
    failed = int(failed_m.group(1)) if failed_m else 0
    if transactions == 0:
        raise PgbenchOutputError("pgbench processed no transactions")
    if failed:
        raise PgbenchOutputError(f"pgbench reported {failed} failed transactions")
    # pgbench >= 14 prints one line "(without initial connection time)"; older ones print "including" and
    # "excluding connections establishing" — the latter is the comparable figure.
    preferred = [v for v, tail in tps_lines if "without" in tail or "excluding" in tail]
    tps = float(preferred[0] if preferred else tps_lines[-1][0])
    return PgbenchResult(
        tps=tps, latency_ms=float(latency.group(1)), transactions=transactions, failed=failed
    )


def parse_server_version(text: str) -> str | None:
    """The server version pgbench's banner names: ``pgbench (15.2 (Debian), server 18.6)`` or ``(18.6)``."""
    m = _HEADER.search(text)
    if not m:
        return None
    return (m.group("server") or m.group("client")).strip()


def median(values: Iterable[float]) -> float:
    items = list(values)
    if not items:
        raise ValueError("median of no values")
    return float(statistics.median(items))


def rotated(items: Sequence[str], by: int) -> list[str]:
    """``items`` rotated left by ``by``: round r starts with a different target, so none always runs first."""
    if not items:
        return []
    k = by % len(items)
    return [*items[k:], *items[:k]]


@dataclass(frozen=True)
class Sample:
    """One pgbench run: ``clients`` > 1 is a throughput run, 1 a latency run."""

    round: int
    mode: str
    target: str
    clients: int
    tps: float
    latency_ms: float


@dataclass(frozen=True)
class Row:
    mode: str
    target: str
    runs: int
    tps: float | None  # median over rounds
    tps_min: float | None
    tps_max: float | None
    ratio: float | None  # tps / direct tps, same mode
    latency_ms: float | None  # median 1-client average latency
    added_us: float | None  # latency - direct latency, same mode


def summarize(
    samples: Iterable[Sample], targets: Sequence[str], modes: Sequence[str], clients: int
) -> list[Row]:
    """Median TPS of the ``clients``-client runs and median 1-client latency per (mode, target)."""
    tps: dict[tuple[str, str], list[float]] = {}
    lat: dict[tuple[str, str], list[float]] = {}
    for s in samples:
        key = (s.mode, s.target)
        if s.clients == clients:
            tps.setdefault(key, []).append(s.tps)
        if s.clients == 1:
            lat.setdefault(key, []).append(s.latency_ms)
    rows: list[Row] = []
    for mode in modes:
        ref_tps = median(tps[(mode, REFERENCE)]) if tps.get((mode, REFERENCE)) else None
        ref_lat = median(lat[(mode, REFERENCE)]) if lat.get((mode, REFERENCE)) else None
        for target in targets:
            runs = tps.get((mode, target), [])
            lats = lat.get((mode, target), [])
            if not runs and not lats:
                continue
            t = median(runs) if runs else None
            la = median(lats) if lats else None
            rows.append(
                Row(
                    mode=mode,
                    target=target,
                    runs=len(runs),
                    tps=t,
                    tps_min=min(runs) if runs else None,
                    tps_max=max(runs) if runs else None,
                    ratio=t / ref_tps if t is not None and ref_tps else None,
                    latency_ms=la,
                    added_us=(la - ref_lat) * 1000.0 if la is not None and ref_lat is not None else None,
                )
            )
    return rows


def _cell(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def format_table(rows: Sequence[Row]) -> str:
    """The compact result table; ``spread`` is (max - min) / median of the rounds' TPS."""
    header = ("mode", "target", "TPS(median)", "spread", "ratio", "1-client latency", "added")
    lines = [header]
    for r in rows:
        spread = (
            f"±{50.0 * (r.tps_max - r.tps_min) / r.tps:.0f}%"
            if r.tps and r.tps_min is not None and r.tps_max is not None
            else "-"
        )
        added = "" if r.target == REFERENCE or r.added_us is None else f"{r.added_us:+.0f} µs"
        latency = "-" if r.latency_ms is None else f"{r.latency_ms:.3f} ms"
        lines.append((r.mode, r.target, _cell(r.tps, ".0f"), spread, _cell(r.ratio, ".2f"), latency, added))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    right = {2, 3, 4, 5}  # numbers right-aligned
    out = []
    for line in lines:
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


@dataclass(frozen=True)
class ModeCheck:
    mode: str
    ratio: float | None
    added_us: float | None

    @property
    def ratio_ok(self) -> bool:
        return self.ratio is not None and self.ratio >= FLOOR_RATIO

    @property
    def latency_ok(self) -> bool:
        return self.added_us is not None and self.added_us <= FLOOR_ADDED_US

    @property
    def measured(self) -> bool:
        return self.ratio is not None and self.added_us is not None


@dataclass(frozen=True)
class Verdict:
    status: Literal["met", "not met", "not measured"]
    checks: tuple[ModeCheck, ...]

    @property
    def passed(self) -> bool:
        return self.status == "met"


def floor_verdict(rows: Sequence[Row], modes: Sequence[str]) -> Verdict:
    """The floor holds only when it is measured and met in every query mode (fail closed on gaps)."""
    by_key = {(r.mode, r.target): r for r in rows}
    checks = []
    for mode in modes:
        row = by_key.get((mode, SUBJECT))
        checks.append(ModeCheck(mode, row.ratio if row else None, row.added_us if row else None))
    if not checks or not all(c.measured for c in checks):
        status: Literal["met", "not met", "not measured"] = "not measured"
    elif all(c.ratio_ok and c.latency_ok for c in checks):
        status = "met"
    else:
        status = "not met"
    return Verdict(status, tuple(checks))


def format_verdict(verdict: Verdict, rows: Sequence[Row]) -> list[str]:
    lines = [
        f"floor (issue 3): gateway/direct >= {FLOOR_RATIO:.2f} with auditing on, "
        f"added 1-client latency <= {FLOOR_ADDED_US:.0f} µs"
    ]
    for c in verdict.checks:
        if not c.measured:
            lines.append(f"  {c.mode:9} not measured")
            continue
        assert c.ratio is not None and c.added_us is not None
        lines.append(
            f"  {c.mode:9} ratio {c.ratio:.2f} {'ok' if c.ratio_ok else 'BELOW FLOOR'}, "
            f"added {c.added_us:+.0f} µs {'ok' if c.latency_ok else 'ABOVE FLOOR'}"
        )
    lines.append(f"verdict: FLOOR {verdict.status.upper()}")
    pgb = {r.mode: r.ratio for r in rows if r.target == "pgbouncer" and r.ratio is not None}
    aims = []
    for c in verdict.checks:
        gw = "-" if c.ratio is None else f"{c.ratio:.2f}"
        ref = f", pgbouncer {pgb[c.mode]:.2f}" if c.mode in pgb else ""
        state = "" if c.ratio is None else (" met" if c.ratio >= AIM_RATIO else " below")
        aims.append(f"{c.mode} {gw}{state}{ref}")
    lines.append(f"aim: gateway/direct >= {AIM_RATIO:.2f} (pgbouncer's level): " + "; ".join(aims))
    return lines


@dataclass(frozen=True)
class RecordingOverhead:
    """What recording costs in one mode: gateway (recording on) against gateway-norec (off); or, with
    baseline gateway-nopolicy, what the policy's rules cost."""

    mode: str
    ratio: float | None  # median TPS gateway / median TPS of the baseline (gateway-norec)
    round_min: float | None  # the same ratio within each round (both run back to back): its range
    round_max: float | None
    added_us: float | None  # median 1-client latency gateway - gateway-norec: the cost per statement


def recording_overhead(
    samples: Iterable[Sample],
    rows: Sequence[Row],
    modes: Sequence[str],
    clients: int,
    *,
    baseline: str = NOREC,
) -> list[RecordingOverhead]:
    """gateway/gateway-norec per mode from the medians (as the table's ratio column), with the range of
    the rounds' own ratios, and the 1-client latency recording adds (one statement per pgbench -S
    transaction, so per statement). ``baseline`` gateway-nopolicy: the same for the policy's rules."""
    by_key = {(r.mode, r.target): r for r in rows}
    per_round: dict[tuple[str, int], dict[str, float]] = {}
    for s in samples:
        if s.clients == clients and s.target in (SUBJECT, baseline):
            per_round.setdefault((s.mode, s.round), {})[s.target] = s.tps
    out = []
    for mode in modes:
        on, off = by_key.get((mode, SUBJECT)), by_key.get((mode, baseline))
        ratio = on.tps / off.tps if on and off and on.tps is not None and off.tps else None
        rounds = [
            tps[SUBJECT] / tps[baseline]
            for (m, _), tps in per_round.items()
            if m == mode and tps.get(baseline) and SUBJECT in tps
        ]
        added = (
            (on.latency_ms - off.latency_ms) * 1000.0
            if on and off and on.latency_ms is not None and off.latency_ms is not None
            else None
        )
        out.append(
            RecordingOverhead(
                mode, ratio, min(rounds) if rounds else None, max(rounds) if rounds else None, added
            )
        )
    return out


def format_recording(
    overheads: Sequence[RecordingOverhead], what: str = "recording", baseline: str = NOREC
) -> list[str]:
    """The summary's recording lines: the TPS ratio per mode (rounds' range) and the cost per statement;
    ``what`` and ``baseline``: the lines for another feature (``policy``, gateway-nopolicy)."""
    ratios, costs = [], []
    for o in overheads:
        if o.ratio is None:
            ratios.append(f"{o.mode} -")
        elif o.round_min is None or o.round_max is None:
            ratios.append(f"{o.mode} {o.ratio:.2f}")
        else:
            ratios.append(f"{o.mode} {o.ratio:.2f} (rounds {o.round_min:.2f}-{o.round_max:.2f})")
        costs.append(f"{o.mode} -" if o.added_us is None else f"{o.mode} {o.added_us:+.0f} µs")
    return [
        f"{what} overhead: {SUBJECT}/{baseline} " + ", ".join(ratios),
        f"{what} cost per statement (1-client latency, {SUBJECT} - {baseline}): " + ", ".join(costs),
    ]


def format_machine(machine: Mapping[str, Any]) -> str:
    """One line naming what the figures depend on, so runs on different machines are not compared blindly
    (and, when recorded, the 1-minute load average before the bench and at its end)."""
    line = (
        f"machine: {machine.get('nproc', '?')} CPUs ({machine.get('cpu', '?')}), "
        f"PostgreSQL {machine.get('postgresql', '?')}, {machine.get('pgbench', '?')}, "
        f"{machine.get('pgbouncer', '?')}"
    )
    load = machine.get("load_1min")
    if isinstance(load, Mapping) and load:
        line += ", load " + " / ".join(f"{load[k]:.2f} {k}" for k in ("before", "after") if k in load)
    return line


def results_document(
    machine: Mapping[str, Any],
    settings: Mapping[str, Any],
    samples: Sequence[Sample],
    rows: Sequence[Row],
    verdict: Verdict,
    notes: Sequence[str],
    recording: Sequence[RecordingOverhead] = (),
    policy: Sequence[RecordingOverhead] = (),
) -> dict[str, Any]:
    """What ``--json`` writes: everything needed to compare runs later, no credentials."""
    return {
        "benchmark": (
            "pgbench -S: direct vs pgbouncer vs pcigate gateway (recording on, and off; policy, and none)"
        ),
        "machine": dict(machine),
        "settings": dict(settings),
        "floor": {
            "ratio": FLOOR_RATIO,
            "added_us": FLOOR_ADDED_US,
            "aim_ratio": AIM_RATIO,
            "status": verdict.status,
            "checks": [
                {**asdict(c), "ratio_ok": c.ratio_ok, "latency_ok": c.latency_ok} for c in verdict.checks
            ],
        },
        "results": [asdict(r) for r in rows],
        "recording_overhead": [asdict(o) for o in recording],
        "policy_overhead": [asdict(o) for o in policy],
        "runs": [asdict(s) for s in samples],
        "notes": list(notes),
    }


# ============================================================================================ harness


class BenchError(RuntimeError):
    """A set-up step failed; the message says which and, where it helps, what to do."""


@dataclass
class Target:
    name: str
    host: str
    port: int
    user: str
    password: str  # never printed; passed to pgbench and psql through PGPASSWORD

    def env(self) -> dict[str, str]:
        return pg_env(self.host, self.port, self.user, self.password, DATABASE)


def pg_env(host: str, port: int, user: str, password: str, database: str) -> dict[str, str]:
    """A clean libpq environment: nothing inherited from PG* variables, the same TLS setting everywhere.

    sslmode=disable for every target: the gateway offers TLS while the dev cluster does not, and libpq's
    default (prefer) would then measure TLS on one side only.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(
        {
            "PGHOST": host,
            "PGPORT": str(port),
            "PGUSER": user,
            "PGPASSWORD": password,
            "PGDATABASE": database,
            "PGSSLMODE": "disable",
            "PGGSSENCMODE": "disable",
            "PGAPPNAME": "pcigate-bench",
            "LC_ALL": "C",
            "LANG": "C",
        }
    )
    return env


def say(message: str) -> None:
    print(message, flush=True)


def pcigate_argv() -> list[str]:
    beside = Path(sys.executable).parent / "pcigate"
    return [str(beside)] if beside.is_file() else [sys.executable, "-m", "pcigate"]


def pcigate(*args: str, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*pcigate_argv(), *args], capture_output=True, text=True, check=False, timeout=timeout, cwd=ROOT
    )


def dev_token(home: Path, sub: str, *options: str) -> str:
    """A dev identity token from the stack in ``home`` (``pcigate token`` options after the subject)."""
    done = pcigate("token", "--home", str(home), "--sub", sub, *options)
    if done.returncode:
        raise BenchError(f"pcigate token failed: {done.stderr.strip()}")
    return done.stdout.strip()


def find_pgbench(explicit: str | None) -> str:
    if explicit:
        return explicit
    found = shutil.which("pgbench")
    if found:
        return found
    try:
        candidate = binaries.postgres_bindir() / "pgbench"
    except binaries.MissingBinaryError as exc:
        raise BenchError(f"no pgbench on PATH and none beside the dev PostgreSQL: {exc}") from exc
    if not candidate.is_file():
        raise BenchError("no pgbench on PATH nor in the embedded PostgreSQL; install postgresql-client")
    return str(candidate)


def version_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=10).stdout
    except OSError:
        return "?"
    return out.strip().splitlines()[0] if out.strip() else "?"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


# ----------------------------------------------------------------------------------------- dev stack


@dataclass
class Stack:
    home: Path
    started_by_us: bool
    status: dict[str, Any]
    gateway_error: str | None = None

    @property
    def secrets(self) -> Path:
        return self.home / "dev" / "secrets"

    @property
    def config_file(self) -> Path:
        return self.home / "dev" / "pcigate.yaml"

    def secret(self, name: str) -> str:
        return (self.secrets / name).read_text().strip()

    def postgres_address(self) -> tuple[str, int]:
        target = urllib.parse.urlsplit(self.status.get("target_dsn") or "")
        if not target.hostname or not target.port:
            raise BenchError("`pcigate dev status --json` names no target_dsn; is PostgreSQL up?")
        return target.hostname, target.port

    def gateway_address(self) -> tuple[str, int] | None:
        listen = (self.status.get("gateway") or {}).get("postgres")
        alive = self.status.get("services", {}).get("gateway", {}).get("alive")
        if not listen or not alive:
            return None
        host, port = listen.rsplit(":", 1)
        return host, int(port)


def gateway_target(stack: Stack, home: Path, notes: list[str]) -> Target | None:
    """The gateway as the bench identity (group payments-admins maps to pcigate_rw), or None with a note."""
    address = stack.gateway_address()
    if address is None:
        notes.append(f"gateway not measured: {stack.gateway_error or '`pcigate dev status` shows it down'}")
        return None
    done = pcigate("token", "--home", str(home), "--sub", BENCH_SUB, "--groups", BENCH_GROUP, "--ttl", "2h")
    if done.returncode != 0 or not done.stdout.strip():
        notes.append(f"gateway not measured: pcigate token failed: {done.stderr.strip()[:200]}")
        return None
    say(f"gateway: {address[0]}:{address[1]} as {BENCH_SUB} (group {BENCH_GROUP})")
    return Target(SUBJECT, address[0], address[1], BENCH_SUB, done.stdout.strip())


def recording_settings(config: Path) -> dict[str, Any]:
    """The effective ``recording`` settings of a config's first connection (defaults applied), as the
    gateway reads them; a config the gateway would refuse is a BenchError."""
    try:
        return load_config(config).connections[0].recording.model_dump()
    except ConfigError as exc:
        raise BenchError(f"{config}: {exc}") from exc


def describe_recording(settings: Mapping[str, Any]) -> str:
    if not settings.get("enabled"):
        return "recording off"
    return f"recording on, rows_per_statement {settings.get('rows_per_statement')}"


def norec_config(stack: Stack, workdir: Path) -> tuple[Path, int]:
    """The dev stack's pcigate.yaml for the bench's own gateway: ``recording.enabled: false`` on the
    connection, its own loopback port and spool (what tests/gateway_support.py's ``private_config`` does;
    a bench does not import the tests' helpers). Written with mode 0600, as the dev stack's."""

    def no_recording(config: dict[str, Any], conn: dict[str, Any]) -> None:
        conn["recording"] = {**(conn.get("recording") or {}), "enabled": False}

    return _second_config(stack, workdir, no_recording)


def _second_config(
    stack: Stack, workdir: Path, change: Callable[[dict[str, Any], dict[str, Any]], None]
) -> tuple[Path, int]:
    """The dev stack's pcigate.yaml with ``change`` made to it and its first connection, on a free loopback
    port and a spool of its own, written to ``workdir`` with mode 0600."""
    config = yaml.safe_load(stack.config_file.read_text())
    port = free_port()
    conn = config["connections"][0]
    conn["listen"] = f"127.0.0.1:{port}"
    change(config, conn)
    config["nats"]["spool_dir"] = str(workdir / "spool")
    path = workdir / "pcigate.yaml"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        yaml.safe_dump(config, fh)
    return path, port


def norec_target(stack: Stack, home: Path, services: list[Service], notes: list[str]) -> Target | None:
    """Start gateway-norec beside the dev stack (it joins ``services``, stopped at the end) and return it as
    the bench identity, or None with a note."""

    def check(path: Path) -> str:
        settings = recording_settings(path)
        if settings.get("enabled"):
            raise BenchError(f"{path} still has recording on")
        return describe_recording(settings)

    return second_gateway(NOREC, norec_config, check, stack, home, services, notes)


def nopolicy_config(stack: Stack, workdir: Path) -> tuple[Path, int]:
    """The dev stack's pcigate.yaml for gateway-nopolicy: the connection's policy emptied (no rules,
    ``default_action: allow``; its other keys kept), its own loopback port and spool, recording as the dev
    stack's. Written with mode 0600."""

    def no_rules(config: dict[str, Any], conn: dict[str, Any]) -> None:
        name = conn.get("policy", "default")
        config["policies"][name] = {**config["policies"][name], "default_action": "allow", "rules": []}

    return _second_config(stack, workdir, no_rules)


def describe_policy(config: Path) -> str:
    """The rules and default of a config's first connection's policy, as the gateway reads them; a config
    the gateway would refuse is a BenchError."""
    try:
        loaded = load_config(config)
    except ConfigError as exc:
        raise BenchError(f"{config}: {exc}") from exc
    policy = loaded.policies[loaded.connections[0].policy]
    return f"policy {len(policy.rules)} rules, default {policy.default_action}"


def nopolicy_target(stack: Stack, home: Path, services: list[Service], notes: list[str]) -> Target | None:
    """Start gateway-nopolicy beside the dev stack (it joins ``services``, stopped at the end) and return it
    as the bench identity, or None with a note."""

    def check(path: Path) -> str:
        described = describe_policy(path)
        if not described.startswith("policy 0 rules, default allow"):
            raise BenchError(f"{path} still has a policy: {described}")
        return f"{described}, {describe_recording(recording_settings(path))}"

    return second_gateway(NOPOLICY, nopolicy_config, check, stack, home, services, notes)


def second_gateway(
    name: str,
    make_config: Callable[[Stack, Path], tuple[Path, int]],
    check: Callable[[Path], str],
    stack: Stack,
    home: Path,
    services: list[Service],
    notes: list[str],
) -> Target | None:
    """A ``pcigate gateway`` of the bench's own beside the dev stack, from ``make_config``'s copy of its
    config once ``check`` passes on it (it says what differs, for the log): joined to ``services`` (stopped
    at the end) and returned as the bench identity, or None with a note."""
    if stack.gateway_address() is None:  # same code and config: it would fail alike, and compare to nothing
        notes.append(f"{name} not measured: the dev stack's gateway is not up")
        return None
    workdir = Path(tempfile.mkdtemp(prefix=f"pcigate-bench-{name.removeprefix('gateway-')}-"))
    try:
        path, port = make_config(stack, workdir)
        described = check(path)
        token = dev_token(home, BENCH_SUB, "--groups", BENCH_GROUP, "--ttl", "2h")
        gateway = start_gateway(name, path, port, workdir)
    except (BenchError, OSError, KeyError, TypeError, yaml.YAMLError) as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        why = f"the dev config has no {exc} section" if isinstance(exc, KeyError) else str(exc)
        notes.append(f"{name} not measured: {why}")
        return None
    services.append(gateway)
    say(f"{name}: 127.0.0.1:{port} as {BENCH_SUB}, {described} (pid {gateway.pid})")
    return Target(name, "127.0.0.1", port, BENCH_SUB, token)


def dev_status(home: Path) -> dict[str, Any]:
    done = pcigate("dev", "status", "--json", "--home", str(home))
    try:
        status = json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        raise BenchError(f"`pcigate dev status --json` printed no JSON: {done.stderr.strip()[:300]}") from exc
    if not isinstance(status, dict):
        raise BenchError("`pcigate dev status --json` printed no JSON object")
    return status


def stack_before(home: Path) -> Stack:
    """Whether a stack already runs in ``home``: one we did not start, we do not stop."""
    before = dev_status(home) if (home / "dev" / "state.json").exists() else {"running": False}
    return Stack(home, not before.get("running"), before)


def stack_up(stack: Stack) -> None:
    """``pcigate dev up``; a stack whose PostgreSQL came up but whose gateway did not is still usable."""
    say(f"dev stack: pcigate dev up --home {stack.home}")
    done = pcigate("dev", "up", "--json", "--home", str(stack.home))
    if done.returncode != 0:
        # First line: the reason; last line: usually the gateway log's last word (an exception).
        lines = [ln.strip() for ln in done.stderr.splitlines() if ln.strip()] or ["no output"]
        why = lines[0].removeprefix("pcigate: ")
        last = next((ln for ln in reversed(lines) if not ln.startswith("pcigate:")), "")
        stack.gateway_error = f"{why} {last}"[:300] if last and last != lines[0] else why[:300]
    stack.status = dev_status(stack.home)
    if not stack.status.get("services", {}).get("postgres", {}).get("alive"):
        raise BenchError(f"the dev stack's PostgreSQL is not up: {stack.gateway_error or 'see dev status'}")


def on_dev_stack(home: Path, keep: bool, measure: Callable[[Stack], _T]) -> _T:
    """``measure`` with the dev stack in ``home`` up and its gateway running; the stack is taken down
    afterwards if this started it (unless ``keep``). Raises BenchError when it cannot be used."""
    stack = stack_before(home)
    try:
        stack_up(stack)
        if stack.gateway_address() is None:
            raise BenchError(f"the gateway is not up: {stack.gateway_error}")
        return measure(stack)
    finally:
        if stack.started_by_us and not keep:
            stack_down(stack)


def stack_down(stack: Stack) -> None:
    done = pcigate("dev", "down", "--purge", "--home", str(stack.home), timeout=120)
    if done.returncode == 0:
        say(f"dev stack: stopped and purged {stack.home}")
    else:
        say(f"dev stack: `pcigate dev down --purge --home {stack.home}` failed: {done.stderr.strip()[:300]}")


def superuser(stack: Stack) -> tuple[str, int, str, str]:
    dsn = urllib.parse.urlsplit(stack.secret("postgres_superuser_dsn"))
    if not dsn.hostname or not dsn.username:
        raise BenchError("the stack's postgres_superuser_dsn secret is not a postgresql:// URL")
    return (
        dsn.hostname,
        dsn.port or 5432,
        urllib.parse.unquote(dsn.username),
        urllib.parse.unquote(dsn.password or ""),
    )


async def _pgbench_scale(host: str, port: int, user: str, password: str) -> int | None:
    conn = await asyncpg.connect(
        host=host, port=port, user=user, password=password, database=DATABASE, ssl=False
    )
    try:
        present = await conn.fetchval(
            "SELECT count(*) FROM unnest($1::text[]) t WHERE to_regclass('public.' || t) IS NOT NULL",
            list(PGBENCH_TABLES),
        )
        if present != len(PGBENCH_TABLES):
            return None
        scale = await conn.fetchval("SELECT count(*) FROM public.pgbench_branches")
        accounts = await conn.fetchval("SELECT count(*) FROM public.pgbench_accounts")
        return int(scale) if accounts == 100_000 * scale else None
    finally:
        await conn.close()


async def _grant(host: str, port: int, user: str, password: str) -> None:
    conn = await asyncpg.connect(
        host=host, port=port, user=user, password=password, database=DATABASE, ssl=False
    )
    try:
        tables = ", ".join(f"public.{t}" for t in PGBENCH_TABLES)
        await conn.execute(f"GRANT SELECT, INSERT, UPDATE ON {tables} TO {BENCH_ROLE}")
        await conn.execute(f"GRANT SELECT ON {tables} TO {READ_ONLY_ROLE}")
    finally:
        await conn.close()


def ensure_pgbench_tables(stack: Stack, pgbench: str, scale: int) -> None:
    """pgbench's tables in ``payments``, owned by the superuser, readable by the roles the targets use."""
    host, port, user, password = superuser(stack)
    current = asyncio.run(_pgbench_scale(host, port, user, password))
    if current == scale:
        say(f"pgbench tables: present at scale {scale}")
    else:
        say(f"pgbench tables: initializing scale {scale} (pgbench -i)")
        started = time.monotonic()
        env = pg_env(host, port, user, password, DATABASE)
        done = subprocess.run(
            [pgbench, "-i", "-s", str(scale), "-q"],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if done.returncode != 0:
            raise BenchError(f"pgbench -i failed: {done.stderr.strip()[-500:]}")
        say(f"pgbench tables: initialized in {time.monotonic() - started:.1f} s")
    asyncio.run(_grant(host, port, user, password))


# ----------------------------------------------------------------------------------------- pgbouncer


class Service(Protocol):
    """A process the bench started itself and stops at the end (pgbouncer, gateway-norec)."""

    @property
    def name(self) -> str: ...

    def stop(self) -> None: ...


def _terminate(proc: subprocess.Popen[bytes], within: float) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=within)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@dataclass
class Pgbouncer:
    proc: subprocess.Popen[bytes]
    workdir: Path
    port: int
    name: str = "pgbouncer"

    def stop(self) -> None:
        _terminate(self.proc, 10)
        shutil.rmtree(self.workdir, ignore_errors=True)  # it holds the role's password


@dataclass
class BenchGateway:
    """A ``pcigate gateway`` the bench runs itself; its config, spool and log are in ``workdir``."""

    name: str
    proc: subprocess.Popen[bytes]
    workdir: Path
    port: int

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, chars: int = 600) -> str:
        log = self.workdir / "gateway.log"
        return log.read_text(errors="replace")[-chars:].strip() if log.exists() else "(no log)"

    def stop(self) -> None:
        """SIGTERM: the gateway closes its sessions and its spool process hands over what it holds."""
        _terminate(self.proc, 60)
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_gateway(name: str, config: Path, port: int, workdir: Path, within: float = 30.0) -> BenchGateway:
    """``pcigate gateway --config`` in a child process, once it accepts connections on 127.0.0.1:``port``."""
    with open(workdir / "gateway.log", "wb") as log:
        proc = subprocess.Popen(
            [*pcigate_argv(), "gateway", "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    gateway = BenchGateway(name, proc, workdir, port)
    deadline = time.monotonic() + within
    while not can_connect("127.0.0.1", port):
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = gateway.log_tail()
            _terminate(proc, 10)
            raise BenchError(f"{name} did not start listening on 127.0.0.1:{port}: {tail}")
        time.sleep(0.05)
    return gateway


def _quote_auth(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def pgbouncer_config(workdir: Path, listen_port: int, pg_host: str, pg_port: int) -> str:
    return "\n".join(
        [
            "[databases]",
            f"{DATABASE} = host={pg_host} port={pg_port} dbname={DATABASE}",
            "",
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            f"listen_port = {listen_port}",
            "unix_socket_dir =",
            "auth_type = scram-sha-256",
            f"auth_file = {workdir / 'userlist.txt'}",
            "pool_mode = session",
            "max_client_conn = 100",
            "default_pool_size = 20",
            "server_tls_sslmode = disable",
            "client_tls_sslmode = disable",
            f"logfile = {workdir / 'pgbouncer.log'}",
            "",
        ]
    )


def start_pgbouncer(binary: str, pg_host: str, pg_port: int, password: str) -> Pgbouncer:
    """pgbouncer in session mode on a free loopback port; as root it runs as ``nobody`` (it refuses root)."""
    workdir = Path(tempfile.mkdtemp(prefix="pcigate-bench-pgbouncer-"))
    port = free_port()
    config = workdir / "pgbouncer.ini"
    auth = workdir / "userlist.txt"
    config.write_text(pgbouncer_config(workdir, port, pg_host, pg_port))
    fd = os.open(auth, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"{_quote_auth(BENCH_ROLE)} {_quote_auth(password)}\n")
    kwargs: dict[str, Any] = {}
    if os.geteuid() == 0:
        user = pwd.getpwnam(os.environ.get("PCIGATE_BENCH_PGBOUNCER_USER", "nobody"))
        for path in (workdir, config, auth):
            os.chown(path, user.pw_uid, user.pw_gid)
        kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    proc = subprocess.Popen(
        [binary, str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=workdir,
        **kwargs,
    )
    bouncer = Pgbouncer(proc, workdir, port)
    if not wait_for_port("127.0.0.1", port, timeout=15) or proc.poll() is not None:
        log = workdir / "pgbouncer.log"
        tail = log.read_text(errors="replace")[-600:] if log.exists() else "(no log)"
        bouncer.stop()
        raise BenchError(f"pgbouncer did not start listening on 127.0.0.1:{port}: {tail.strip()}")
    return bouncer


# ------------------------------------------------------------------------------------------- runs


def run_pgbench(
    pgbench: str, target: Target, mode: str, clients: int, seconds: int
) -> tuple[PgbenchResult, str]:
    threads = max(1, min(clients, os.cpu_count() or 1))
    argv = [pgbench, "-n", "-S", "-M", mode, "-c", str(clients), "-j", str(threads), "-T", str(seconds)]
    try:
        done = subprocess.run(
            argv, env=target.env(), capture_output=True, text=True, timeout=seconds + 120, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"pgbench against {target.name} did not finish within {seconds + 120} s") from exc
    text = done.stdout + "\n" + done.stderr
    try:
        result = parse_pgbench(text)
    except PgbenchOutputError as exc:
        raise BenchError(f"{target.name}, {mode}, {clients} client(s): {exc}") from exc
    if done.returncode != 0:
        raise BenchError(f"{target.name}, {mode}: pgbench exited {done.returncode}")
    return result, text


@dataclass
class Plan:
    rounds: int
    duration: int
    latency_duration: int
    warmup: int
    clients: int
    modes: list[str]
    targets: list[str]


@dataclass
class Outcome:
    samples: list[Sample] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    server_version: str | None = None


def measure(pgbench: str, targets: dict[str, Target], plan: Plan) -> Outcome:
    """Warm up, then the interleaved rounds; a target that fails is dropped (with a note), not the run."""
    out = Outcome()
    live = [t for t in plan.targets if t in targets]

    def attempt(name: str, mode: str, clients: int, seconds: int) -> PgbenchResult | None:
        try:
            result, text = run_pgbench(pgbench, targets[name], mode, clients, seconds)
        except BenchError as exc:
            note = f"{name} dropped: {exc}"
            out.notes.append(note)
            say(f"  ! {note}")
            live.remove(name)
            out.samples[:] = [s for s in out.samples if s.target != name]
            return None
        if name == REFERENCE and out.server_version is None:
            out.server_version = parse_server_version(text)
        return result

    say(f"warm-up: {plan.warmup} s per target and mode")
    for mode in plan.modes:
        for name in list(live):
            attempt(name, mode, plan.clients, plan.warmup)
    for rnd in range(plan.rounds):
        for mode in plan.modes:
            for name in rotated([t for t in plan.targets if t in live], rnd):
                if name not in live:
                    continue
                many = attempt(name, mode, plan.clients, plan.duration)
                if many is None:
                    continue
                one = attempt(name, mode, 1, plan.latency_duration)
                if one is None:
                    continue
                out.samples.append(Sample(rnd + 1, mode, name, plan.clients, many.tps, many.latency_ms))
                out.samples.append(Sample(rnd + 1, mode, name, 1, one.tps, one.latency_ms))
                say(
                    f"  round {rnd + 1}/{plan.rounds}  {mode:8} {name:16} {many.tps:8.0f} tps "
                    f"({plan.clients} clients)  {one.latency_ms:.3f} ms (1 client)"
                )
    return out


# ------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="pgbench -S against direct PostgreSQL, pgbouncer (session mode) and the pcigate gateway, "
        "interleaved; prints median TPS, ratios against direct and added 1-client latency."
    )
    p.add_argument(
        "--home", default=str(DEFAULT_HOME), help="dev stack state directory (default: %(default)s)"
    )
    p.add_argument("--rounds", type=int, default=3, help="rounds over every mode and target (default: 3)")
    p.add_argument("--duration", type=int, default=10, help="seconds per throughput run (default: 10)")
    p.add_argument("--latency-duration", type=int, default=5, help="seconds per 1-client run (default: 5)")
    p.add_argument(
        "--warmup", type=int, default=2, help="seconds of warm-up per target and mode (default: 2)"
    )
    p.add_argument("--quick", action="store_true", help="3 s runs and 1 s warm-up (a smoke run; noisier)")
    p.add_argument("--clients", type=int, default=8, help="pgbench clients for throughput (default: 8)")
    p.add_argument("--scale", type=int, default=10, help="pgbench scale factor (default: 10, ~150 MB)")
    p.add_argument("--targets", default=",".join(TARGETS), help="comma-separated subset of %(default)s")
    p.add_argument("--modes", default=",".join(MODES), help="comma-separated subset of %(default)s")
    p.add_argument("--pgbench", default=None, help="pgbench binary (default: PATH, then the embedded one)")
    p.add_argument("--keep", action="store_true", help="leave the dev stack (and the pgbench tables) up")
    p.add_argument("--check", action="store_true", help="exit 1 when the floor is not met or not measured")
    p.add_argument("--json", metavar="FILE", default=None, help="also write the results as JSON")
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.latency_duration, args.warmup = 3, 3, 1
    args.target_list = [t.strip() for t in args.targets.split(",") if t.strip()]
    args.mode_list = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not set(args.target_list) <= set(TARGETS) or REFERENCE not in args.target_list:
        p.error(f"--targets: choose from {', '.join(TARGETS)}; {REFERENCE} is the reference and must stay")
    if not args.mode_list or not set(args.mode_list) <= set(MODES):
        p.error(f"--modes: choose from {', '.join(MODES)}")
    if (
        min(args.rounds, args.duration, args.latency_duration, args.clients, args.scale) < 1
        or args.warmup < 0
    ):
        p.error("--rounds, --duration, --latency-duration, --clients and --scale must be >= 1")
    args.target_list = [t for t in TARGETS if t in args.target_list]  # report order
    args.mode_list = [m for m in MODES if m in args.mode_list]
    return args


@contextlib.contextmanager
def cleanup(stack_ref: list[Stack], services: Sequence[Service], keep: bool) -> Iterator[None]:
    """On the way out: stop the processes the bench started (before the stack they use), then the stack."""
    try:
        yield
    finally:
        for service in services:
            service.stop()
            say(f"{service.name}: stopped")
        for stack in stack_ref:
            release_stack(stack, keep)


def release_stack(stack: Stack, keep: bool) -> None:
    """Take down a stack this run started, unless ``keep``; leave one that was running before."""
    if keep:
        say(f"dev stack: left running (--keep); stop it: pcigate dev down --purge --home {stack.home}")
    elif stack.started_by_us:
        stack_down(stack)
    else:
        say(f"dev stack: was running before this run; left running ({stack.home})")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    home = Path(args.home).resolve()
    plan = Plan(
        args.rounds,
        args.duration,
        args.latency_duration,
        args.warmup,
        args.clients,
        args.mode_list,
        args.target_list,
    )
    notes: list[str] = []
    stacks: list[Stack] = []
    services: list[Service] = []
    recording: dict[str, Any] = {}
    policies: dict[str, str] = {}
    load_before = os.getloadavg()[0]
    try:
        pgbench = find_pgbench(args.pgbench)
        with cleanup(stacks, services, args.keep):
            stack = stack_before(home)
            stacks.append(stack)
            stack_up(stack)
            pg_host, pg_port = stack.postgres_address()
            password = stack.secret(BENCH_ROLE)
            targets = {REFERENCE: Target(REFERENCE, pg_host, pg_port, BENCH_ROLE, password)}
            ensure_pgbench_tables(stack, pgbench, args.scale)

            pgbouncer_bin = shutil.which("pgbouncer")
            if "pgbouncer" in plan.targets:
                if pgbouncer_bin is None:
                    notes.append("pgbouncer not installed: skipped (apt-get install pgbouncer)")
                else:
                    bouncer = start_pgbouncer(pgbouncer_bin, pg_host, pg_port, password)
                    services.append(bouncer)
                    targets["pgbouncer"] = Target(
                        "pgbouncer", "127.0.0.1", bouncer.port, BENCH_ROLE, password
                    )
                    say(f"pgbouncer: session pooling on 127.0.0.1:{bouncer.port}")

            if SUBJECT in plan.targets and (gateway := gateway_target(stack, home, notes)) is not None:
                targets[SUBJECT] = gateway
                recording[SUBJECT] = recording_settings(stack.config_file)
                say(f"{SUBJECT}: {describe_recording(recording[SUBJECT])} (the dev stack's config)")
            if NOREC in plan.targets and (norec := norec_target(stack, home, services, notes)) is not None:
                targets[NOREC] = norec
                recording[NOREC] = {"enabled": False}
            if NOPOLICY in plan.targets and (bare := nopolicy_target(stack, home, services, notes)):
                targets[NOPOLICY] = bare
                recording[NOPOLICY] = recording_settings(stack.config_file)  # as the dev stack's
                policies = {SUBJECT: describe_policy(stack.config_file), NOPOLICY: "policy 0 rules"}
            for note in notes:
                say(f"  ! {note}")

            outcome = measure(pgbench, targets, plan)
            notes.extend(outcome.notes)
            machine = {
                "nproc": os.cpu_count(),
                "cpu": cpu_model(),
                "kernel": platform.release(),
                "postgresql": outcome.server_version or "?",
                "pgbench": version_line([pgbench, "--version"]),
                "pgbouncer": version_line([pgbouncer_bin, "--version"]) if pgbouncer_bin else "not installed",
                "python": platform.python_version(),
                "load_1min": {"before": load_before, "after": os.getloadavg()[0]},
            }
    except BenchError as exc:
        print(f"pgbench_gateway: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("pgbench_gateway: interrupted", file=sys.stderr)
        return 130

    rows = summarize(outcome.samples, plan.targets, plan.modes, plan.clients)
    verdict = floor_verdict(rows, plan.modes)
    overheads = (
        recording_overhead(outcome.samples, rows, plan.modes, plan.clients) if NOREC in plan.targets else []
    )
    policy_costs = (
        recording_overhead(outcome.samples, rows, plan.modes, plan.clients, baseline=NOPOLICY)
        if NOPOLICY in plan.targets
        else []
    )
    settings = {
        **asdict(plan),
        "scale": args.scale,
        "query": "pgbench -S (select-only)",
        "sslmode": "disable",
        "role": BENCH_ROLE,
        "pgbouncer_pool_mode": "session",
        "measured_targets": sorted({s.target for s in outcome.samples}, key=plan.targets.index),
        "recording": recording,
        "policies": policies,
    }
    say("")
    say(format_machine(machine))
    say(
        f"pgbench -S, {plan.clients} clients, scale {args.scale}, {plan.rounds} round(s) x {plan.duration} s "
        f"(1-client: {plan.latency_duration} s), medians over rounds, sslmode=disable, role {BENCH_ROLE}"
    )
    if recording:
        say("; ".join(f"{name}: {describe_recording(recording[name])}" for name in recording))
    if policies:
        say("; ".join(f"{name}: {policies[name]}" for name in policies))
    say("")
    say(format_table(rows))
    say("")
    for line in format_verdict(verdict, rows):
        say(line)
    if overheads:
        say("")
        for line in format_recording(overheads):
            say(line)
    if policy_costs:
        say("")
        for line in format_recording(policy_costs, "policy", NOPOLICY):
            say(line)
    for note in notes:
        say(f"note: {note}")
    if args.json:
        doc = results_document(
            machine, settings, outcome.samples, rows, verdict, notes, overheads, policy_costs
        )
        Path(args.json).write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        say(f"results written to {args.json}")
    if args.check and not verdict.passed:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
