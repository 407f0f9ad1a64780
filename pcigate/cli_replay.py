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
import json
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from pcigate.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, config_for
from pcigate.replay import ChunkProblemError

if TYPE_CHECKING:
    from pcigate.config import Config
    from pcigate.recordings import SessionRow
    from pcigate.replay import Attested

CLIENT_APP: Final = "pcigate-replay"
MAX_PAUSE_S: Final = 3.0  # a replay never sits longer than this on one idle gap, whatever the speed


def _ledger(config: Config) -> tuple[str, Any]:
    """The ledger's DSN and the CLI user as its reader."""
    from pcigate.cli_ledger import _reader_actor
    from pcigate.config import resolve_secret

    dsn = resolve_secret(config.ledger.dsn, key="ledger.dsn")
    return dsn, _reader_actor(dsn, config.ledger.origin, CLIENT_APP)


async def _sessions(config: Config, since: datetime) -> list[SessionRow]:
    from pcigate.cli_ledger import open_reader
    from pcigate.recordings import list_sessions

    async with open_reader(*_ledger(config), "list recorded sessions") as reader:
        return await list_sessions(reader, since)


async def _recording(config: Config, session_id: str) -> tuple[list[Attested], dict[int, bytes]]:
    import nats

    from pcigate.cli_ledger import open_reader
    from pcigate.recordings import attested_chunks, stored_chunks
    from pcigate.settings import nats_connect_options, nats_servers

    async with open_reader(*_ledger(config), f"replay of session {session_id}") as reader:
        attested = await attested_chunks(reader, session_id)
    nc = await nats.connect(nats_servers(config), **nats_connect_options(config))
    try:
        return attested, await stored_chunks(nc, session_id)
    finally:
        await nc.close()


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
    from pcigate.replay import lines, verified_chunks

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
        attested, stored = asyncio.run(_recording(config, args.session_id))
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
