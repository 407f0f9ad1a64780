"""``pcigate report`` over a 1,000,000-event ledger: wall time and peak memory (issue 8's benchmark).

1. Uses the dev stack's PostgreSQL (``pcigate dev up --home .pcigate-bench`` when it is not running, as
   bench/pgbench_gateway.py does) and makes a scratch schema in its ledger database.
2. Fills it with ``--events`` contract-valid events whose times are spread evenly over ``--days`` days
   ending at midnight UTC today: sessions of mostly ``command.executed`` with ``masking.applied`` after
   card reads, ``command.blocked``, approvals requested and decided (the same request id), ``session.opened``
   and ``closed``, ``auth.failed`` between sessions. They are appended straight to ``LedgerStore`` (no
   NATS), with a checkpoint signed by a fresh Ed25519 key every 50,000 entries and at the end.
3. Writes a pcigate.yaml (the dev stack's, its ``ledger`` section pointing at the scratch schema, the bench
   key and its origin) and runs ``python -m pcigate report`` over the whole period twice, timing each run
   and taking its peak RSS from ``wait4``. It prints events, pages, PDF bytes, seconds, events/s, peak RSS
   and whether the two packs are byte-identical.

Floor (issue 8): <= 300 s for 1,000,000 events. Aims: <= 60 s and a peak RSS <= 500 MB. The verdict takes
the slower run, and is NOT MEASURED for a smaller ledger. Exit code 0 when the report ran, 1 when it failed,
and with ``--check`` also when the floor is not met or not measured; 2 when the stack could not be used.

    .venv/bin/python bench/report_pack.py [--events 1000000] [--days 30] [--check] [--json FILE] [--keep]
    .venv/bin/python bench/report_pack.py --events 20000            # quick: about 20 s

The scratch schema and the work directory (config, key, PDFs) are removed at the end, and a stack this run
started is purged, unless ``--keep``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any, Final

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pypdf import PdfReader

from bench.evidence_throughput import scratch_schema
from bench.pgbench_gateway import ROOT, BenchError, Stack, release_stack, say, stack_before, stack_up
from evidence.checkpoint import NoteSigner
from evidence.entries import SUBJECT_PREFIX, to_entry
from evidence.store import LedgerStore, NewEntry
from schemas import format_utc, new_event_id
from tests.unit.test_schemas import examples

ORIGIN: Final = "bench.pcigate/report-ledger"
FLOOR_S: Final = 300.0
AIM_S: Final = 60.0
AIM_MB: Final = 500.0
REFERENCE_EVENTS: Final = 1_000_000
CHECKPOINT_EVERY: Final = 50_000
CHUNK: Final = 10_000
MB: Final = 1_000_000  # MB are 10^6 bytes


# ============================================================================================ the traffic


@dataclass(frozen=True, slots=True)
class Identity:
    actor: dict[str, Any]
    addr: str
    client_app: str
    upstream_role: str


@dataclass(frozen=True, slots=True)
class Statement:
    """One kind of statement a session runs; ``weight`` out of the catalogue's total."""

    text: str
    kind: str
    table: str
    rule: str
    weight: int
    chd: bool = False
    privileged: bool = False
    masked_literals: int = 0
    parameters: tuple[str, ...] | None = None
    pan_ordinal: int | None = None  # the masked column's position (0-based) in the result
    tag: str = "SELECT"

    def data(self) -> dict[str, Any]:
        """The event's ``data.statement``."""
        return {
            "text": self.text,
            "text_truncated": False,
            "masked_literals": self.masked_literals,
            "fingerprint": hashlib.sha256(self.text.encode()).hexdigest(),
            "digest": {
                "key_id": "stmt-2026-11",
                "hmac_sha256": hashlib.sha256(b"bench-digest-key:" + self.text.encode()).hexdigest(),
            },
            "parameters": None if self.parameters is None else list(self.parameters),
            "parameters_truncated": False,
            "kind": self.kind,
            "objects": [self.table],
        }


CATALOGUE: Final = (
    Statement(
        "SELECT id, pan, expiry FROM public.cards WHERE pan = '411111******1111'",
        "dql", "public.cards", "dba-read-cards-masked", 6, chd=True, masked_literals=1, pan_ordinal=1,
    ),
    Statement(
        "SELECT card_id, brand, pan FROM public.cards WHERE customer_id = $1",
        "dql", "public.cards", "dba-read-cards-masked", 6, chd=True, parameters=("8841",), pan_ordinal=2,
    ),
    Statement(
        "SELECT order_id, amount, status FROM public.orders WHERE customer_id = $1",
        "dql", "public.orders", "orders-read", 40, parameters=("8841",),
    ),
    Statement(
        "SELECT count(*) FROM public.orders WHERE created_at > $1",
        "dql", "public.orders", "orders-read", 25, parameters=("2026-11-01",),
    ),
    Statement(
        "UPDATE public.orders SET status = $1 WHERE order_id = $2",
        "dml", "public.orders", "orders-write", 14, parameters=("shipped", "120331"), tag="UPDATE",
    ),
    Statement(
        "INSERT INTO public.refunds (order_id, amount) VALUES ($1, $2)",
        "dml", "public.refunds", "orders-write", 8, parameters=("120331", "19.90"), tag="INSERT 0",
    ),
    Statement(
        "CREATE INDEX CONCURRENTLY orders_status ON public.orders (status)",
        "ddl", "public.orders", "dba-ddl", 1, privileged=True, tag="CREATE INDEX",
    ),
)  # fmt: skip
AGENT_CATALOGUE: Final = tuple(s for s in CATALOGUE if s.kind == "dql")
DROP: Final = Statement("DROP TABLE public.orders_2019", "ddl", "public.orders_2019", "no-destruction", 0)
FIRST: Final = ("Dana", "Lee", "Sam", "Ari", "Noor", "Kim", "Jo", "Ravi", "Mia", "Tom", "Eva", "Ola")
LAST: Final = ("Okafor", "Marsh", "Novak", "Silva", "Berg", "Tanaka", "Quinn", "Adler", "Haddad", "Roy")


def identities(rng: random.Random, iss: str) -> tuple[list[Identity], list[Identity], list[Identity]]:
    """40 engineers, 6 agents acting for one of them, 3 approvers."""

    def person(i: int, groups: list[str]) -> dict[str, Any]:
        sub = f"00u{rng.getrandbits(28):07x}"
        name = f"{FIRST[i % len(FIRST)]} {LAST[i * 7 % len(LAST)]}"
        return {"sub": sub, "iss": iss, "name": name, "groups": groups, "kind": "human", "on_behalf_of": None}

    humans = [
        Identity(person(i, ["payments-dba"]), f"10.20.3.{10 + i}", "psql", "payments_ro") for i in range(40)
    ]
    agents = [
        Identity(
            {
                "sub": f"agent-{name}",
                "iss": iss,
                "name": name.replace("-", " ").capitalize(),
                "groups": ["support-agents"],
                "kind": "agent",
                "on_behalf_of": humans[i].actor["sub"],
            },
            f"10.20.9.{2 + i}",
            f"{name}/2.3",
            "payments_ro",
        )
        for i, name in enumerate(
            ("billing-assistant", "refund-bot", "fraud-triage", "ops-copilot", "report-writer", "ci-migrator")
        )
    ]
    approvers = [Identity(person(40 + i, ["payments-leads"]), f"10.20.4.{31 + i}", "pcigate-approve", "")
                 for i in range(3)]  # fmt: skip
    return humans, agents, approvers


class Traffic:
    """Events in time order, spread evenly over ``[since, since + days)`` for a ledger of ``n``: the
    ledger's start, then sessions (opened, statements, closed) with failed logins between them. Iterate
    and take ``n`` (``islice``): the times are laid out for exactly that many."""

    def __init__(self, n: int, since: datetime, days: int, signer: NoteSigner, seed: int = 8) -> None:
        self.n = n
        self.since = since
        self.span_us = days * 86_400 * 1_000_000
        self.step = max(1, self.span_us // n)
        self.rng = random.Random(seed)
        self.signer = signer
        self.ex = examples()
        self.i = 0
        iss = self.ex["session.opened"]["actor"]["iss"]
        self.humans, self.agents, self.approvers = identities(self.rng, iss)

    def _time(self) -> datetime:
        """The next event's time: strictly in its slot, so times rise with the ledger index."""
        us = self.i * self.span_us // self.n + self.rng.randrange(self.step)
        self.i += 1
        return self.since + timedelta(microseconds=us)

    def _event(
        self,
        event_type: str,
        who: Identity,
        *,
        session: str | None,
        port: int | None,
        table: str | None = None,
        data: dict[str, Any] | None = None,
        outcome: dict[str, Any] | None = None,
        rule: str | None = None,
        at: datetime | None = None,
    ) -> dict[str, Any]:
        template = self.ex[event_type]
        when = self._time() if at is None else at
        event = dict(template)
        event["id"] = new_event_id()
        event["time"] = format_utc(when)
        event["actor"] = who.actor
        event["origin"] = {"addr": who.addr, "port": port, "client_app": who.client_app}
        event["target"] = {**template["target"], "object": table}
        event["session_id"] = session
        event["data"] = {**template["data"], **(data or {})}
        if outcome is not None:
            event["outcome"] = outcome
        if rule is not None:
            event["policy"] = {**template["policy"], "rule": rule}
        return event

    def __iter__(self) -> Iterator[dict[str, Any]]:
        yield self._started()
        while True:
            yield from self._session()
            if self.rng.random() < 0.3:
                yield self._auth_failed()

    def _started(self) -> dict[str, Any]:
        template = self.ex["ledger.started"]
        event = dict(template)
        event["id"] = new_event_id()
        event["time"] = format_utc(self._time())
        event["data"] = {
            **template["data"],
            "log_origin": ORIGIN,
            "initialized": True,
            "tree_size": 0,
            "root_hash": hashlib.sha256(b"").hexdigest(),
            "signing_key_id": f"{self.signer.verifier.key_id:08x}",
        }
        return event

    def _auth_failed(self) -> dict[str, Any]:
        who = self.rng.choice(self.humans)
        actor = {**who.actor, "groups": []}
        failed = Identity(actor, who.addr, who.client_app, who.upstream_role)
        data = {"token_jti": f"AT.{self.rng.getrandbits(40):010x}", "consecutive_failures": 1}
        return self._event(
            "auth.failed", failed, session=None, port=self.rng.randrange(32768, 61000), data=data
        )

    def _session(self) -> Iterator[dict[str, Any]]:
        rng = self.rng
        agent = rng.random() < 0.2
        who = rng.choice(self.agents if agent else self.humans)
        session, port = new_event_id(), rng.randrange(32768, 61000)
        opened = self._time()
        yield self._event(
            "session.opened",
            who,
            session=session,
            port=port,
            at=opened,
            data={
                "token_jti": f"AT.{rng.getrandbits(40):010x}",
                "token_expires_at": format_utc(opened + timedelta(hours=1)),
                "upstream_role": who.upstream_role,
                "matched_groups": who.actor["groups"],
            },
        )
        stats = Counter[str]()
        for seq in range(1, rng.randint(10, 150) + 1):
            r = rng.random()
            if r < 0.012:
                stats["blocked"] += 1
                yield self._blocked(who, session, port, seq)
            elif r < 0.018 and not agent:
                yield from self._approval(who, session, port, seq, stats)
            else:
                statement = rng.choices(
                    AGENT_CATALOGUE if agent else CATALOGUE,
                    weights=[s.weight for s in (AGENT_CATALOGUE if agent else CATALOGUE)],
                )[0]
                rows = rng.randint(0, 200) if statement.kind == "dql" else 1 if statement.kind == "dml" else 0
                command = self._executed(who, session, port, seq, statement, rows)
                stats["statements"] += 1
                stats["rows"] += rows
                yield command
                if statement.pan_ordinal is not None and rows:
                    stats["masked"] += rows
                    yield self._masked(who, session, port, statement, command["id"], rows)
        closed = self._time()
        yield self._event(
            "session.closed",
            who,
            session=session,
            port=port,
            at=closed,
            data={
                "reason": rng.choice(("client_closed", "client_closed", "idle_timeout")),
                "duration_ms": round((closed - opened).total_seconds() * 1000, 1),
                "statements": stats["statements"] + stats["blocked"],
                "statements_blocked": stats["blocked"],
                "rows": stats["rows"],
                "bytes_from_client": 90 * (stats["statements"] + stats["blocked"]),
                "bytes_to_client": 60 * stats["rows"] + 40 * stats["statements"],
                "masked_values": stats["masked"],
            },
        )

    def _executed(
        self,
        who: Identity,
        session: str,
        port: int,
        seq: int,
        statement: Statement,
        rows: int,
        approval_id: str | None = None,
    ) -> dict[str, Any]:
        tag = f"{statement.tag} {rows}" if statement.kind != "ddl" else statement.tag
        return self._event(
            "command.executed",
            who,
            session=session,
            port=port,
            table=statement.table,
            rule=statement.rule,
            data={
                "statement": statement.data(),
                "sequence": seq,
                "command_tag": tag,
                "rows": rows,
                "duration_ms": round(self.rng.lognormvariate(0.5, 1.0), 3),
                "chd_access": statement.chd,
                "privileged": statement.privileged,
                "masked_values": rows if statement.pan_ordinal is not None else 0,
                "approval_id": approval_id,
            },
        )

    def _masked(
        self, who: Identity, session: str, port: int, statement: Statement, command_id: str, rows: int
    ) -> dict[str, Any]:
        location = {
            "table": statement.table,
            "column": "pan",
            "ordinal": statement.pan_ordinal,
            "detector": "column_policy",
            "method": "first6_last4",
            "count": rows,
        }
        return self._event(
            "masking.applied",
            who,
            session=session,
            port=port,
            table=statement.table,
            data={
                "command_event_id": command_id,
                "statement_fingerprint": hashlib.sha256(statement.text.encode()).hexdigest(),
                "locations": [location],
                "total_values": rows,
            },
        )

    def _blocked(self, who: Identity, session: str, port: int, seq: int) -> dict[str, Any]:
        template = self.ex["command.blocked"]
        if who.actor["kind"] == "agent":  # the example: an agent trying to delete card rows
            return self._event(
                "command.blocked",
                who,
                session=session,
                port=port,
                table="public.cards",
                data={"sequence": seq},
            )
        outcome = {
            **template["outcome"],
            "message": "blocked by rule no-destruction: DROP, TRUNCATE and ALTER SYSTEM do not run through "
            "the gateway",
        }
        data = {"statement": DROP.data(), "sequence": seq, "chd_access": False}
        return self._event(
            "command.blocked",
            who,
            session=session,
            port=port,
            table=DROP.table,
            data=data,
            outcome=outcome,
            rule=DROP.rule,
        )

    def _approval(
        self, who: Identity, session: str, port: int, seq: int, stats: Counter[str]
    ) -> Iterator[dict[str, Any]]:
        """A held card write, its decision (the same request id) and, when approved, the write."""
        rng = self.rng
        request_id = new_event_id()
        requested = self._time()
        held = self.ex["approval.requested"]["data"]["statement"]
        yield self._event(
            "approval.requested",
            who,
            session=session,
            port=port,
            table="public.cards",
            at=requested,
            data={"request_id": request_id, "expires_at": format_utc(requested + timedelta(minutes=15))},
        )
        approve = rng.random() < 0.85
        approver = rng.choice(self.approvers)
        requester = {k: who.actor[k] for k in ("sub", "iss", "name")}
        yield self._event(
            "approval.decided",
            approver,
            session=None,
            port=None,
            table="public.cards",
            data={
                "request_id": request_id,
                "decision": "approve" if approve else "deny",
                "reason": f"matches INC-{rng.randrange(1000, 9999)}" if approve else "no ticket for it",
                "requester": requester,
            },
        )
        if approve:
            statement = Statement(
                held["text"], "dml", "public.cards", "chd-writes-need-approval", 0, chd=True
            )
            command = self._executed(who, session, port, seq, statement, 1, approval_id=request_id)
            command["data"]["statement"] = held
            command["data"]["command_tag"] = "UPDATE 1"
            stats["statements"] += 1
            stats["rows"] += 1
            yield command


# ================================================================================================= fill


@dataclass
class Fill:
    events: int
    seconds: float
    checkpoints: int
    by_type: dict[str, int] = field(default_factory=dict)

    @property
    def per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


async def fill_period(dsn: str, n: int, since: datetime, days: int, signer: NoteSigner) -> Fill:
    """Append ``n`` events of :class:`Traffic` straight to the store, signing a checkpoint every
    ``CHECKPOINT_EVERY`` entries and at the end. Every event must be valid (``to_entry`` a NewEntry)."""
    conn = await asyncpg.connect(dsn)
    try:
        store = LedgerStore(conn)
        await store.create_schema()
        if await store.size():
            raise BenchError("the scratch schema's ledger is not empty")
        t0 = time.perf_counter()
        by_type: Counter[str] = Counter()
        chunk: list[NewEntry] = []
        size = 0
        for event in islice(Traffic(n, since, days, signer), n):
            payload = json.dumps(event).encode()
            entry = to_entry(
                payload, stream_seq=None, subject=SUBJECT_PREFIX + event["type"], msg_id=event["id"]
            )
            if not isinstance(entry, NewEntry):
                raise BenchError(f"the bench made an invalid {event['type']} event: {entry.reason}")
            by_type[entry.event_type] += 1
            chunk.append(entry)
            if len(chunk) == CHUNK:
                before, size = size, (await store.append(chunk)).size
                chunk = []
                if size // CHECKPOINT_EVERY > before // CHECKPOINT_EVERY:
                    await store.checkpoint(signer, ORIGIN)
                print(f"\r  filling: {size:,}/{n:,}", end="", file=sys.stderr, flush=True)
        if chunk:
            size = (await store.append(chunk)).size
        await store.checkpoint(signer, ORIGIN)  # covers the last entry (a no-op when one already does)
        checkpoints = int(await conn.fetchval("SELECT count(*) FROM ledger_checkpoints"))
        print(file=sys.stderr)
        if size != n:
            raise BenchError(f"the ledger holds {size} entries, not {n}")
        return Fill(n, time.perf_counter() - t0, checkpoints, dict(by_type.most_common()))
    finally:
        await conn.close()


# ========================================================================================== the report


def write_config(dev_config: Path, workdir: Path, dsn: str, key: Ed25519PrivateKey) -> Path:
    """The dev stack's pcigate.yaml with its ledger section on the scratch schema and the bench's key."""
    doc = yaml.safe_load(dev_config.read_text())
    secrets = {
        "ledger_dsn": dsn.encode(),
        "ledger-signing.key": key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    }
    for name, value in secrets.items():
        fd = os.open(workdir / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(value)
    doc["ledger"] = {
        **doc["ledger"],
        "dsn": f"file:{workdir / 'ledger_dsn'}",
        "origin": ORIGIN,
        "signing_key": f"file:{workdir / 'ledger-signing.key'}",
        "trusted_keys": [],
    }
    path = workdir / "pcigate.yaml"
    path.write_text("# bench/report_pack.py: the dev stack's config, its ledger on a scratch schema\n"
                    + yaml.safe_dump(doc, sort_keys=False))  # fmt: skip
    return path


@dataclass
class Run:
    exit_code: int
    seconds: float
    max_rss_mb: float
    cpu_s: float
    pdf_bytes: int
    pages: int | None
    events_read: int | None
    stderr_tail: str

    def events_per_s(self, events: int) -> float:
        return events / self.seconds if self.seconds else 0.0


def run_report(config: Path, since: datetime, until: datetime, out: Path) -> Run:
    """``python -m pcigate report`` as a child; its wall time, and peak RSS and CPU from ``wait4``."""
    argv = [
        sys.executable, "-m", "pcigate", "report", "--config", str(config),
        "--from", f"{since:%Y-%m-%d}", "--to", f"{until:%Y-%m-%d}", "--out", str(out),
    ]  # fmt: skip
    out.unlink(missing_ok=True)
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        said = stdout.read().decode(errors="replace")
        err = stderr.read().decode(errors="replace")
    read = re.search(r"([\d,]+) events\)", said)
    pages: int | None = None
    if out.exists():
        try:
            pages = len(PdfReader(out).pages)
        except Exception as exc:  # a broken PDF is a finding, not a crash
            err += f"\nbench: pypdf cannot read {out}: {exc}"
    return Run(
        exit_code=proc.returncode,
        seconds=seconds,
        max_rss_mb=usage.ru_maxrss * 1024 / MB,  # kilobytes on Linux
        cpu_s=usage.ru_utime + usage.ru_stime,
        pdf_bytes=out.stat().st_size if out.exists() else 0,
        pages=pages,
        events_read=int(read.group(1).replace(",", "")) if read else None,
        stderr_tail="\n".join(err.strip().splitlines()[-40:]),
    )


REPORT_CODE: Final = ("reports", "pcigate/cli_report.py", "evidence/api.py")


def code_digest() -> str:
    """SHA-256 over the report's code and templates: a pack compared with one made by other code says
    nothing about reproducibility (they are being worked on while benches run)."""
    h = hashlib.sha256()
    for top in REPORT_CODE:
        base = ROOT / top
        for path in sorted([base] if base.is_file() else base.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                h.update(f"{path.relative_to(ROOT)}\0".encode() + path.read_bytes())
    return h.hexdigest()


def commit() -> dict[str, Any]:
    """HEAD, and whether the report's code differs from it."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT, check=False)
        return done.stdout.strip()

    head, dirty = git("rev-parse", "--short", "HEAD"), git("status", "--porcelain", "--", *REPORT_CODE)
    return {"head": head or None, "report_code_modified": bool(dirty)}


def compare_packs(a: Path, b: Path) -> dict[str, Any]:
    """Byte-identical? If not, where they first differ and whether their pages' text is the same."""
    if not (a.exists() and b.exists()):
        return {"byte_identical": None}
    x, y = a.read_bytes(), b.read_bytes()
    if x == y:
        return {"byte_identical": True}
    first = next((i for i, (p, q) in enumerate(zip(x, y, strict=False)) if p != q), min(len(x), len(y)))
    try:
        text = [[page.extract_text() for page in PdfReader(p).pages] for p in (a, b)]
        same_text: bool | None = text[0] == text[1]
    except Exception:
        same_text = None
    return {"byte_identical": False, "first_difference": first, "text_identical": same_text}


# ============================================================================================ verdicts


def verdict(events: int, runs: Sequence[Run]) -> tuple[list[str], dict[str, Any]]:
    """Floor and aim lines over the slower run. They judge a ledger of at least 1M events only: a
    smaller one's seconds do not scale (start-up and rendering are a large fixed part)."""
    floor = f"floor (issue 8): report over {REFERENCE_EVENTS:,} events <= {FLOOR_S:.0f} s"
    aim = f"aim: <= {AIM_S:.0f} s and peak RSS <= {AIM_MB:.0f} MB"
    if not runs or any(r.exit_code != 0 for r in runs):
        return [f"{floor}: NOT MEASURED (the report failed)"], {"floor_met": None, "aim_met": None}
    seconds = max(r.seconds for r in runs)
    rss = max(r.max_rss_mb for r in runs)
    judged: dict[str, Any] = {"seconds": seconds, "max_rss_mb": rss, "floor_met": None, "aim_met": None}
    if events < REFERENCE_EVENTS:
        why = f"NOT MEASURED (a ledger of {events:,} events; run with --events {REFERENCE_EVENTS})"
        return [f"{floor}: {why}", f"{aim}: {why}"], judged
    judged["floor_met"] = floor_met = seconds <= FLOOR_S
    judged["aim_met"] = aim_met = seconds <= AIM_S and rss <= AIM_MB
    return [
        f"{floor}: {'MET' if floor_met else 'NOT MET'} ({seconds:.1f} s, the slower run)",
        f"{aim}: {'MET' if aim_met else 'NOT MET'} "
        f"({seconds:.1f} s {'within' if seconds <= AIM_S else 'over'}, {rss:.0f} MB "
        f"{'within' if rss <= AIM_MB else 'over'})",
    ], judged


def print_figures(fill: Fill, runs: Sequence[Run], same: dict[str, Any]) -> None:
    mix = ", ".join(f"{t} {c / fill.events:.1%}" for t, c in fill.by_type.items())
    print(
        f"ledger: {fill.events:,} events, {fill.checkpoints} signed checkpoint(s), filled in "
        f"{fill.seconds:.1f} s ({fill.per_s:,.0f} events/s, store only)"
    )
    print(f"  mix: {mix}")
    print(f"{'run':>3}  {'seconds':>8}  {'events/s':>9}  {'CPU s':>7}  {'peak RSS MB':>11}  {'pages':>5}  "
          f"{'PDF bytes':>11}  {'read':>10}  exit")  # fmt: skip
    for i, r in enumerate(runs, 1):
        pages = "-" if r.pages is None else str(r.pages)
        read = "-" if r.events_read is None else f"{r.events_read:,}"
        print(
            f"{i:>3}  {r.seconds:>8.1f}  {r.events_per_s(fill.events):>9,.0f}  {r.cpu_s:>7.1f}  "
            f"{r.max_rss_mb:>11.1f}  {pages:>5}  {r.pdf_bytes:>11,}  {read:>10}  {r.exit_code}"
        )
    if same.get("byte_identical") is None:
        print("reproducible: not compared (a pack is missing)")
    elif same["byte_identical"]:
        print("reproducible: the two packs are byte-identical")
    else:
        text = {True: "identical", False: "different", None: "not compared"}[same.get("text_identical")]
        print(
            f"reproducible: NO, the packs differ from byte {same['first_difference']:,} "
            f"(their pages' text: {text})"
        )
    if same.get("code_changed_during_runs"):
        print(
            "  (but reports/, pcigate/cli_report.py or evidence/api.py changed while the report ran: "
            "this comparison says nothing)"
        )


# ================================================================================================= main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=REFERENCE_EVENTS, help="ledger size (default 1M)")
    parser.add_argument("--days", type=int, default=30, help="the period the events span, ending today")
    parser.add_argument("--home", default=".pcigate-bench", help="dev stack state directory")
    parser.add_argument("--json", default=None, metavar="FILE", help="write the figures here")
    parser.add_argument("--check", action="store_true", help="exit 1 unless the floor is met")
    parser.add_argument("--keep", action="store_true", help="keep the schema, work directory and stack")
    args = parser.parse_args(argv)
    if args.events < 1 or args.days < 1:
        parser.error("--events and --days must be at least 1")
    return args


async def make_schema(ledger_dsn: str) -> tuple[str, str]:
    """A scratch schema in the ledger database: its name and a DSN whose search_path is it."""
    admin = await asyncpg.connect(ledger_dsn)
    try:
        return await scratch_schema(admin, ledger_dsn)
    finally:
        await admin.close()


async def drop_schema(ledger_dsn: str, schema: str) -> None:
    admin = await asyncpg.connect(ledger_dsn)
    try:
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
    finally:
        await admin.close()


def measure(stack: Stack, args: argparse.Namespace, workdir: Path) -> tuple[int, dict[str, Any]]:
    ledger_dsn = stack.status.get("ledger_dsn")
    if not ledger_dsn:
        raise BenchError("`pcigate dev status --json` names no ledger_dsn")
    until = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    since = until - timedelta(days=args.days)
    schema, dsn = asyncio.run(make_schema(ledger_dsn))
    say(f"scratch schema {schema} in the ledger database; period {since:%Y-%m-%d} to {until:%Y-%m-%d}")
    try:
        key = Ed25519PrivateKey.generate()
        signer = NoteSigner(ORIGIN, key)
        fill = asyncio.run(fill_period(dsn, args.events, since, args.days, signer))
        config = write_config(Path(stack.status.get("config") or stack.home / "dev" / "pcigate.yaml"),
                              workdir, dsn, key)  # fmt: skip
        runs: list[Run] = []
        digests = [code_digest()]
        for i in (1, 2):
            say(f"report run {i}: pcigate report --from {since:%Y-%m-%d} --to {until:%Y-%m-%d}")
            runs.append(run_report(config, since, until, workdir / f"pack-{i}.pdf"))
            digests.append(code_digest())
            if runs[-1].exit_code != 0:
                print(
                    f"the report failed (exit {runs[-1].exit_code}):\n{runs[-1].stderr_tail}", file=sys.stderr
                )
                break
        same = compare_packs(workdir / "pack-1.pdf", workdir / "pack-2.pdf")
        same["code_changed_during_runs"] = len(set(digests)) > 1
    finally:
        if args.keep:
            say(f"kept scratch schema {schema} and {workdir}")
        else:
            asyncio.run(drop_schema(ledger_dsn, schema))
    print_figures(fill, runs, same)
    lines, judged = verdict(args.events, runs)
    for line in lines:
        print(line)
    figures = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "node": platform.node()},
        "commit": commit(),
        "settings": {"events": args.events, "days": args.days, "from": f"{since:%Y-%m-%d}",
                     "to": f"{until:%Y-%m-%d}", "checkpoint_every": CHECKPOINT_EVERY},
        "fill": {**asdict(fill), "events_per_s": fill.per_s},
        "runs": [{**asdict(r), "events_per_s": r.events_per_s(args.events)} for r in runs],
        "reproducible": same,
        "verdict": judged,
    }  # fmt: skip
    if any(r.exit_code != 0 for r in runs):
        return 1, figures
    return (1 if args.check and not judged["floor_met"] else 0), figures


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    home = Path(args.home).resolve()
    workdir = Path(tempfile.mkdtemp(prefix="pcigate-report-bench-"))
    stack: Stack | None = None
    code, figures = 2, dict[str, Any]()
    try:
        stack = stack_before(home)
        if stack.started_by_us:
            stack_up(stack)
        code, figures = measure(stack, args, workdir)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        if stack is not None:
            release_stack(stack, args.keep)
    if args.json and figures:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str))
    return code


if __name__ == "__main__":
    sys.exit(main())
