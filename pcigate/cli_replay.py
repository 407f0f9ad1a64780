"""`pcigate replay`: list recorded sessions and play one back, each chunk checked against the ledger.

``pcigate replay --list [--since DATE] [--json]`` reads the sessions from the ledger (through
``evidence.api``: the read is recorded as ``ledger.read``). ``pcigate replay SESSION_ID [--speed N |
--no-timing]`` reads the session's ``recording.chunk`` events from the ledger and its chunks from stream
``PCIGATE_RECORDINGS``, and shows the session as its client saw it. A chunk that is missing, changed or
not in the ledger stops the replay with an error naming it (exit 1).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from pcigate.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, config_for

if TYPE_CHECKING:
    from evidence.api import LedgerReader
    from pcigate.config import Config
    from pcigate.replay import Attested

CLIENT_APP: Final = "pcigate-replay"
STREAM: Final = "PCIGATE_RECORDINGS"
SESSION_TYPES: Final = ("session.opened", "session.closed", "recording.chunk")
MAX_PAUSE_S: Final = 3.0  # a replay never sits longer than this on one idle gap, whatever the speed
FETCH_TIMEOUT_S: Final = 5.0


@dataclass(slots=True)
class SessionRow:
    session_id: str
    sub: str | None = None
    kind: str | None = None
    on_behalf_of: str | None = None
    connection: str | None = None
    started: datetime | None = None
    duration_ms: float | None = None
    statements: int | None = None
    chunks: int = 0
    final: bool = False

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["started"] = None if self.started is None else self.started.isoformat()
        return out


async def _reader(config: Config, purpose: str) -> tuple[Any, LedgerReader]:
    import asyncpg

    from evidence.api import LedgerReader, Recorder
    from pcigate.cli_ledger import _reader_actor
    from pcigate.config import resolve_secret

    dsn = resolve_secret(config.ledger.dsn, key="ledger.dsn")
    actor = dataclasses.replace(_reader_actor(dsn, config.ledger.origin), client_app=CLIENT_APP)
    conn = await asyncpg.connect(dsn, timeout=15)
    return conn, LedgerReader(conn, Recorder(actor), purpose)


async def _sessions(config: Config, since: datetime) -> list[SessionRow]:
    from evidence.api import MAX_LIMIT

    conn, reader = await _reader(config, "list recorded sessions")
    rows: dict[str, SessionRow] = {}
    try:
        after: int | None = None
        while True:
            page = await reader.events(types=SESSION_TYPES, since=since, after_index=after, limit=MAX_LIMIT)
            for record in page:
                event = record.event
                if event is None or record.session_id is None:
                    continue
                row = rows.setdefault(record.session_id, SessionRow(record.session_id))
                data = event.get("data") or {}
                if record.type == "session.opened":
                    actor = event.get("actor") or {}
                    target = event.get("target") or {}
                    row.sub, row.kind = actor.get("sub"), actor.get("kind")
                    row.on_behalf_of = actor.get("on_behalf_of")
                    row.connection, row.started = target.get("connection"), record.time
                elif record.type == "session.closed":
                    row.duration_ms, row.statements = data.get("duration_ms"), data.get("statements")
                else:
                    row.chunks += 1
                    row.final = row.final or bool(data.get("final"))
            if page.next_after is None:
                break
            after = page.next_after
    finally:
        await conn.close()
    return [r for r in rows.values() if r.started is not None]


async def _attested(config: Config, session_id: str) -> tuple[list[Attested], str]:
    from evidence.api import MAX_LIMIT

    conn, reader = await _reader(config, f"replay of session {session_id}")
    found: list[Attested] = []
    database = ""
    try:
        after: int | None = None
        while True:
            page = await reader.events(
                types=SESSION_TYPES, session_id=session_id, after_index=after, limit=MAX_LIMIT
            )
            for record in page:
                data = (record.event or {}).get("data") or {}
                if record.type == "recording.chunk":
                    found.append(_attested_chunk(data, record.index))
                elif record.type == "session.opened":
                    database = str(((record.event or {}).get("target") or {}).get("database") or "")
            if page.next_after is None:
                break
            after = page.next_after
    finally:
        await conn.close()
    return found, database


async def _stored(config: Config, session_id: str) -> dict[int, bytes]:
    """The session's chunks in the recordings stream, by the sequence number of their message id."""
    import nats
    from nats.js.api import ConsumerConfig, DeliverPolicy

    from pcigate.replay import ChunkProblemError
    from pcigate.settings import nats_connect_options, nats_servers
    from schemas.recording import subject

    nc = await nats.connect(nats_servers(config), **nats_connect_options(config))
    try:
        js = nc.jetstream()
        wanted = subject(session_id)
        info = await js.stream_info(STREAM, subjects_filter=wanted)
        count = (info.state.subjects or {}).get(wanted, 0)
        chunks: dict[int, bytes] = {}
        if not count:
            return chunks
        sub = await js.subscribe(
            wanted,
            stream=STREAM,
            ordered_consumer=True,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
        )
        try:
            for _ in range(count):
                msg = await sub.next_msg(timeout=FETCH_TIMEOUT_S)
                mid = (msg.headers or {}).get("Nats-Msg-Id", "")
                head, _, tail = mid.rpartition(".")
                if head != session_id or not tail.isdigit():
                    raise ChunkProblemError(f"a message on {wanted} has a foreign message id {mid!r}")
                seq = int(tail)
                if chunks.get(seq, msg.data) != msg.data:
                    raise ChunkProblemError(f"two different chunks claim number {seq} ({mid}): one is forged")
                chunks[seq] = msg.data
        finally:
            await sub.unsubscribe()
        return chunks
    finally:
        await nc.close()


def _attested_chunk(data: dict[str, Any], index: int) -> Attested:
    from pcigate.replay import Attested

    seq, size, final = int(data["seq"]), int(data["bytes"]), bool(data["final"])
    return Attested(seq, str(data["sha256"]), size, str(data["msg_id"]), final, index)


def _since(value: str) -> datetime:
    from pcigate.cli_report import _day

    return _day(value)


def _print_sessions(rows: list[SessionRow], as_json: bool) -> None:
    if as_json:
        print(json.dumps([r.to_json() for r in rows], ensure_ascii=False))
        return
    if not rows:
        print("no sessions in the period")
        return
    head = f"{'session':36}  {'started (UTC)':19}  {'duration':>9}  {'stmts':>5}  {'chunks':>6}"
    print(f"{head}  connection  identity")
    for r in rows:
        started = r.started.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if r.started else "-"
        duration = f"{r.duration_ms / 1000:.1f} s" if r.duration_ms is not None else "open"
        statements = "-" if r.statements is None else str(r.statements)
        chunks = f"{r.chunks}{'' if r.final or r.duration_ms is None else '!'}"
        who = f"{r.sub} ({r.kind})" + (f" for {r.on_behalf_of}" if r.on_behalf_of else "")
        print(f"{r.session_id:36}  {started:19}  {duration:>9}  {statements:>5}  {chunks:>6}  "
              f"{r.connection or '-':10}  {who}")  # fmt: skip


def _play(lines: Iterator[Any], speed: float | None) -> None:
    previous = 0.0
    for line in lines:
        if speed is not None and line.t > previous:
            time.sleep(min(MAX_PAUSE_S, (line.t - previous) / 1000 / speed))
        previous = max(previous, line.t)
        print(line.text, flush=speed is not None)


def cmd_replay(args: argparse.Namespace) -> int:
    import asyncpg

    from evidence.api import ReadError
    from pcigate.config import ConfigError
    from pcigate.replay import ChunkProblemError, lines, verified_chunks

    if bool(args.list) == bool(args.session_id):
        print("pcigate: give a SESSION_ID to play, or --list", file=sys.stderr)
        return EXIT_USAGE
    if args.speed is not None and args.speed <= 0:
        print("pcigate: --speed must be positive", file=sys.stderr)
        return EXIT_USAGE
    code, config = config_for(args)
    if config is None:
        return code
    try:
        if args.list:
            since = args.since or datetime.now(UTC) - timedelta(days=7)
            _print_sessions(asyncio.run(_sessions(config, since)), args.json)
            return EXIT_OK
        attested, _ = asyncio.run(_attested(config, args.session_id))
        stored = asyncio.run(_stored(config, args.session_id))
    except ChunkProblemError as exc:
        print(f"pcigate: replay stopped: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except ConfigError as exc:
        print(f"pcigate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ReadError, OSError, TimeoutError, asyncpg.PostgresError) as exc:
        print(f"pcigate: the recording could not be read: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:  # nats-py's errors share no base class but Exception; say which, no traceback
        print(
            f"pcigate: the recordings stream could not be read: {type(exc).__name__}: {exc}", file=sys.stderr
        )
        return EXIT_FAILURE
    if not attested and not stored:
        print(f"pcigate: no recording of session {args.session_id}", file=sys.stderr)
        return EXIT_FAILURE
    speed = None if args.no_timing else (args.speed or 1.0)
    try:
        _play(lines(verified_chunks(args.session_id, attested, stored)), speed)
    except ChunkProblemError as exc:
        print(f"pcigate: replay stopped: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if not any(a.final for a in attested):
        print("pcigate: the recording has no final chunk yet: the session is open, or its gateway stopped",
              file=sys.stderr)  # fmt: skip
    return EXIT_OK


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], config_opt: argparse.ArgumentParser
) -> None:
    """Add this module's subcommand to the top-level parser."""
    p = sub.add_parser(
        "replay",
        parents=[config_opt],
        help="list recorded sessions, or play one back with every chunk checked against the ledger",
    )
    p.add_argument("session_id", nargs="?", metavar="SESSION_ID", help="the session to play")
    p.add_argument("--list", action="store_true", help="list recorded sessions")
    p.add_argument(
        "--since", type=_since, metavar="DATE", help="with --list: from this day (default: 7 days)"
    )
    p.add_argument("--json", action="store_true", help="with --list: one JSON array")
    timing = p.add_mutually_exclusive_group()
    timing.add_argument("--speed", type=float, metavar="N", help="play N times faster (default 1)")
    timing.add_argument("--no-timing", action="store_true", help="print everything at once")
    p.set_defaults(handler=cmd_replay)
