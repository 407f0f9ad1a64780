"""`pcigate report`: a PDF evidence pack for a period, read from the ledger through ``evidence.api``.

Exit codes: 0 the pack was written and its integrity verified; 1 the ledger could not be read, or the pack
was written but its integrity did not verify (the pack says why, on its cover); 2 bad usage or an invalid
configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING

from pcigate.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, config_for

if TYPE_CHECKING:
    from evidence.api import LedgerReader
    from pcigate.config import Config
    from reports.read import Integrity

CLIENT_APP = "pcigate-report"
CONNECT_TIMEOUT_S = 15.0


def _day(value: str) -> datetime:
    """``YYYY-MM-DD`` (midnight UTC) or an ISO 8601 time with its offset."""
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time(), UTC)
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD) or ISO 8601 time: {value!r}") from None
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give the time's UTC offset: {value!r}")
    return parsed.astimezone(UTC)


class _Progress:
    """Events read so far, on one line of stderr when it is a terminal."""

    def __init__(self) -> None:
        self.read = 0
        self._tty = sys.stderr.isatty()

    def __call__(self, count: int) -> None:
        self.read += count
        if self._tty:
            bar = "#" * min(30, self.read // 10_000) + "." * max(0, 30 - self.read // 10_000)
            print(f"\rreading the ledger [{bar}] {self.read:,} events", end="", file=sys.stderr, flush=True)

    def done(self) -> None:
        if self._tty:
            print(file=sys.stderr)


async def _build(config: Config, args: argparse.Namespace, progress: _Progress) -> tuple[bytes, Integrity]:

    from evidence.api import missing_10_2_2
    from pcigate import __version__
    from pcigate.cli_ledger import _log_keys, _reader_actor, open_reader
    from pcigate.config import resolve_secret
    from reports.pack import pack_files
    from reports.read import Period, read_integrity, read_period
    from reports.render import pdf_date, render_html, render_pdf
    from reports.summary import Summary

    dsn = resolve_secret(config.ledger.dsn, key="ledger.dsn")
    keys = [k.vkey for k in _log_keys(config, need_current=False)]
    actor = _reader_actor(dsn, config.ledger.origin, CLIENT_APP)
    period = Period(args.since, args.until, frozenset(args.connection or ()))
    purpose = f"evidence pack {args.since:%Y-%m-%d} to {args.until:%Y-%m-%d}"
    async with open_reader(dsn, actor, purpose, keys, connect_timeout=CONNECT_TIMEOUT_S) as reader:
        summary = Summary(complete=lambda e: not missing_10_2_2(e))
        with _without_cycle_collector():
            first, last = await read_period(reader, period, summary, progress)
        if last is not None:  # a period reaching now: its newest events are signed at the next checkpoint
            await _until_signed(reader, last, 3 * config.ledger.checkpoint_interval.total_seconds())
        integrity = await read_integrity(reader, first, last, summary.samples)
        head = await reader.events(limit=100)  # the oldest entries: which still has its payload (10.5.1)
        oldest = next((r.time for r in head if r.event is not None), None)
    origin = config.ledger.origin
    files, digest = pack_files(
        integrity, period, origin=origin, keys=keys, generator=f"pcigate {__version__}"
    )
    html = render_html(
        summary, integrity, period, origin=origin, keys=keys, version=__version__, oldest_available=oldest,
        manifest_sha256=digest,
    )  # fmt: skip
    return render_pdf(html, files, pdf_date(integrity, period)), integrity


@contextlib.contextmanager
def _without_cycle_collector() -> Iterator[None]:
    """Reading holds a page of 10,000 decoded events at a time: the cycle collector would walk them (and
    every module loaded) again and again, tripling the time. They are trees, freed by reference counting."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()


async def _until_signed(reader: LedgerReader, index: int, within: float) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        latest = await reader.latest_checkpoint()
        if latest is not None and latest.size > index:
            return
        await asyncio.sleep(1.0)


def cmd_report(args: argparse.Namespace) -> int:
    import asyncpg

    from evidence.api import ReadError
    from evidence.checkpoint import NoteError
    from pcigate.config import ConfigError

    if args.until <= args.since:
        print("pcigate: --to must be after --from", file=sys.stderr)
        return EXIT_USAGE
    try:
        import reports.render  # noqa: F401 - WeasyPrint loads the system's Pango here
    except OSError as exc:
        print(
            f"pcigate: WeasyPrint cannot load its system libraries ({exc}); install Pango "
            "(Debian: apt install libpango-1.0-0 libpangoft2-1.0-0)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    code, config = config_for(args)
    if config is None:
        return code
    progress = _Progress()
    try:
        pdf, integrity = asyncio.run(_build(config, args, progress))
    except (ConfigError, NoteError) as exc:
        progress.done()
        print(f"pcigate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ReadError, OSError, TimeoutError, asyncpg.PostgresError) as exc:
        progress.done()
        print(f"pcigate: the ledger could not be read: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    progress.done()
    out = Path(args.out)
    out.write_bytes(pdf)
    print(f"wrote {out} ({len(pdf):,} bytes, {progress.read:,} events)")
    if not integrity.verified:
        print(
            f"pcigate: the pack's integrity did not verify: {'; '.join(integrity.problems)}", file=sys.stderr
        )
        return EXIT_FAILURE
    return EXIT_OK


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], config_opt: argparse.ArgumentParser
) -> None:
    """Add this module's subcommands to the top-level parser."""
    p = sub.add_parser(
        "report",
        parents=[config_opt],
        help="write a PDF evidence pack for a period: summary, PCI DSS control matrix, approvals, integrity",
    )
    p.add_argument("--from", dest="since", type=_day, required=True, metavar="DATE", help="start (UTC day)")
    p.add_argument("--to", dest="until", type=_day, required=True, metavar="DATE", help="end, excluded")
    p.add_argument("--connection", action="append", metavar="NAME", help="only this connection (repeatable)")
    p.add_argument("--out", required=True, metavar="PACK.pdf", help="where to write the pack")
    p.set_defaults(handler=cmd_report)
