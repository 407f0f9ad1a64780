"""The `pcigate verify` command(s): argument parsing and exit codes; the work lives in ``evidence``.

Exit codes: 0 the ledger verified, 1 damage found or the database could not be read, 2 bad usage (no
trusted key, an unreadable --checkpoint file, an invalid config).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from evidence.checkpoint import NoteVerifier
    from evidence.verify import VerifyReport

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
_CONNECT_TIMEOUT = 15.0


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], config_opt: argparse.ArgumentParser
) -> None:
    """Add this module's subcommands to the top-level parser."""
    p = sub.add_parser(
        "verify",
        parents=[config_opt],
        help="check the whole ledger offline: every entry, the Merkle tree and the signed checkpoints",
        description="Read the ledger (a copy is fine: nothing is written) and check every entry's hash and "
        "event id, the stored Merkle tree, and every signed checkpoint against trusted public keys only. "
        "Exit 0 when all holds, 1 on damage (naming the first damaged index) or when the database "
        "cannot be read, 2 on bad usage. See docs/verify.md.",
    )
    p.add_argument(
        "--ledger-dsn",
        dest="ledger_dsn",
        metavar="DSN",
        default=None,
        help="the ledger database (default: ledger.dsn of the config; with this option the config is "
        "optional)",
    )
    p.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="FILE",
        help="a signed checkpoint kept outside the database (repeatable); the ledger must hold its tree",
    )
    p.add_argument(
        "--key",
        action="append",
        default=[],
        metavar="VKEY",
        help="a trusted verifier key <name>+<8 hex>+<base64> (repeatable); the config's signing key and "
        "ledger.trusted_keys are trusted too. Keys stored in the database never are.",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--allow-pending",
        dest="allow_pending",
        action="store_true",
        help="entries after the last signed checkpoint are reported as pending instead of failing",
    )
    p.set_defaults(handler=cmd_verify)


def _err(message: str) -> None:
    print(f"pcigate: {message}", file=sys.stderr)


def _config_named(args: argparse.Namespace) -> bool:
    """Whether the user points at a config (with --ledger-dsn, an auditor may have none)."""
    from pcigate.config import CONFIG_ENV

    return bool(getattr(args, "config", None) or os.environ.get(CONFIG_ENV) or Path("pcigate.yaml").is_file())


def _trusted_and_ledger(args: argparse.Namespace) -> tuple[int, list[NoteVerifier], str | None, str | None]:
    """(exit code, trusted keys, DSN, origin) from the options and, when there is one, the config."""
    from evidence.checkpoint import NoteError, NoteSigner, NoteVerifier, load_signing_key
    from pcigate.cli import load_config_or_exit_code
    from pcigate.config import Config, ConfigError, resolve_secret

    trusted: list[NoteVerifier] = []
    for vkey in args.key:
        try:
            trusted.append(NoteVerifier.parse(vkey))
        except NoteError as exc:
            _err(f"--key {vkey!r}: {exc}")
            return EXIT_USAGE, [], None, None
    dsn: str | None = args.ledger_dsn
    origin: str | None = None
    if dsn is None or _config_named(args):
        code, config = load_config_or_exit_code(getattr(args, "config", None))
        if code != EXIT_OK:
            return code, [], None, None
        assert isinstance(config, Config)
        ledger = config.ledger
        origin = ledger.origin
        try:
            if dsn is None:
                dsn = resolve_secret(ledger.dsn, key="ledger.dsn")
        except ConfigError as exc:
            print(str(exc), file=sys.stderr)
            return EXIT_USAGE, [], None, None
        trusted.extend(NoteVerifier.parse(vkey) for vkey in ledger.trusted_keys)
        try:
            pem = resolve_secret(ledger.signing_key, key="ledger.signing_key")
            trusted.append(NoteSigner(origin, load_signing_key(pem.encode())).verifier)
        except ConfigError as exc:  # an auditor's copy of the config may lack the private key
            if not trusted:
                print(str(exc), file=sys.stderr)
                return EXIT_USAGE, [], None, None
            _err(f"{exc}; trusting only --key and ledger.trusted_keys")
        except NoteError as exc:
            _err(f"ledger.signing_key: {exc}")
            return EXIT_USAGE, [], None, None
    unique = list({(v.name, v.key_id, v.public_key): v for v in trusted}.values())
    if not unique:
        _err(
            "no trusted key: pass --key <name>+<key id>+<key> (`pcigate ledger keys` prints the log's keys) "
            "or a config whose ledger.signing_key is readable; keys stored in the database are never trusted"
        )
        return EXIT_USAGE, [], None, None
    return EXIT_OK, unique, dsn, origin


class _Bar:
    """A one-line progress bar on a terminal's stderr, redrawn at most ten times a second."""

    def __init__(self) -> None:
        self.drawn = 0.0
        self.width = 0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.drawn < 0.1 and done < total:
            return
        self.drawn = now
        share = done / total if total else 1.0
        filled = min(30, int(30 * share))
        line = f"verifying [{'#' * filled}{'.' * (30 - filled)}] {done:,}/{total:,} entries {share:4.0%}"
        self.width = max(self.width, len(line))
        sys.stderr.write("\r" + line)
        sys.stderr.flush()

    def clear(self) -> None:
        if self.width:
            sys.stderr.write("\r" + " " * self.width + "\r")
            sys.stderr.flush()


async def _verify(
    dsn: str,
    *,
    trusted: list[NoteVerifier],
    origin: str | None,
    notes: list[bytes],
    allow_pending: bool,
    bar: _Bar | None,
) -> VerifyReport:
    import asyncpg

    from evidence.verify import verify_ledger

    conn = await asyncpg.connect(dsn, timeout=_CONNECT_TIMEOUT)
    try:
        return await verify_ledger(
            conn, trusted, origin=origin, external=notes, allow_pending=allow_pending, progress=bar
        )
    finally:
        await conn.close()


def _summary(report: VerifyReport) -> str:
    d = report.damage
    if d is not None:
        return f"FAILED at index {d.index}: {d.kind}: {d.detail}"
    pending = (
        f", {report.pending:,} pending (not yet covered by a signed checkpoint)" if report.pending else ""
    )
    return (
        f"ok: {report.entries:,} entries, {report.checkpoints:,} signed checkpoints verified, tree size "
        f"{report.entries:,}, root {report.root.hex()}, {report.pruned:,} pruned{pending}, "
        f"{report.seconds:.2f} s"
    )


def cmd_verify(args: argparse.Namespace) -> int:
    import asyncio
    import json

    from gateway.loop import loop_factory

    code, trusted, dsn, origin = _trusted_and_ledger(args)
    if code != EXIT_OK:
        return code
    assert dsn is not None
    notes: list[bytes] = []
    for path in args.checkpoint:
        try:
            notes.append(Path(path).read_bytes())
        except OSError as exc:
            _err(f"--checkpoint {path}: {exc.strerror or exc}")
            return EXIT_USAGE
    bar = _Bar() if sys.stderr.isatty() else None
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            report = runner.run(
                _verify(
                    dsn,
                    trusted=trusted,
                    origin=origin,
                    notes=notes,
                    allow_pending=args.allow_pending,
                    bar=bar,
                )
            )
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # unreachable, refused, not a ledger: one line, no traceback
        if bar is not None:
            bar.clear()
        message = (str(exc).strip().splitlines() or [type(exc).__name__])[0].replace(dsn, "<dsn>")
        _err(f"cannot verify the ledger: {message}")
        return EXIT_FAILURE
    if bar is not None:
        bar.clear()
    print(json.dumps(report.as_json()) if args.json else _summary(report))
    return EXIT_OK if report.ok else EXIT_FAILURE
