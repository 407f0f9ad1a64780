"""The `pcigate ledger` command(s): argument parsing and exit codes; the work lives in ``evidence``.

- ``ledger proof EVENT_ID``: print a self-contained inclusion proof (``evidence.proofs`` bundle, JSON) of one
  event against the latest signed checkpoint. The read is recorded in the ledger (``ledger.read``) with the
  OS user as reader; if that record cannot be written, nothing is printed.
- ``ledger keys``: the log's public keys as verifier key strings (config only, no database).
- ``ledger check-proof FILE``: check a bundle offline against trusted keys.
- ``ledger prune --before YYYY-MM``: drop the payloads of closed months older than ``retention.audit``
  (leaf hashes and tree nodes stay), recorded as ``config.changed`` in the same transaction.

Exit codes: 0 success, 1 a runtime failure (unknown event, no checkpoint yet, database unreachable, a proof
that does not check), 2 bad usage or an invalid configuration. Heavy modules (asyncpg, evidence) are imported
by the command that needs them, so `pcigate --help` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import socket
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from evidence.api import LedgerReader, LogKey
    from pcigate.config import Config

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
CLIENT_APP = "pcigate-cli"
CONNECT_TIMEOUT_S = 10.0


def _err(message: str) -> None:
    print(f"pcigate: {message}", file=sys.stderr)


def _config(args: argparse.Namespace) -> tuple[int, Config | None]:
    from pcigate.cli import config_for

    return config_for(args)


def _log_keys(config: Config, *, need_current: bool) -> tuple[LogKey, ...]:
    """The current signing key's public half (from ``ledger.signing_key``) and ``ledger.trusted_keys``.

    Raises ConfigError (SecretError) when the signing key cannot be read and ``need_current`` is set or no
    earlier keys are listed; NoteError when a key is not an Ed25519 key.
    """
    from evidence.api import log_keys
    from pcigate.config import ConfigError, resolve_secret

    ledger = config.ledger
    try:
        pem: bytes | None = resolve_secret(ledger.signing_key, key="ledger.signing_key").encode()
    except ConfigError as exc:
        if need_current or not ledger.trusted_keys:
            raise
        _err(f"{exc}; trusting only ledger.trusted_keys")
        pem = None
    return log_keys(ledger.origin, pem, ledger.trusted_keys)


# ---------------------------------------------------------------------------------------------- keys


def cmd_ledger_keys(args: argparse.Namespace) -> int:
    import json

    from evidence.checkpoint import NoteError
    from pcigate.config import ConfigError

    code, config = _config(args)
    if config is None:
        return code
    try:
        keys = _log_keys(config, need_current=True)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except NoteError as exc:
        _err(str(exc))
        return EXIT_USAGE
    if args.json:
        out = {
            "origin": config.ledger.origin,
            "keys": [
                {"vkey": k.vkey, "name": k.name, "key_id": k.key_id, "current": k.current} for k in keys
            ],
        }
        print(json.dumps(out, indent=2))
        return EXIT_OK
    print(f"public keys of log {config.ledger.origin} (verifier key strings):")
    for k in keys:
        print(f"  {'current' if k.current else 'earlier'}  key id {k.key_id}  {k.vkey}")
    return EXIT_OK


# --------------------------------------------------------------------------------------------- proof


def _reader_actor(dsn: str, origin: str, client_app: str = CLIENT_APP) -> Any:
    """The CLI user as reader: OS user name at ``local:<hostname>``, reading the ledger database with the
    command ``client_app`` names."""
    from evidence.api import ServiceActor

    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no passwd entry and no LOGNAME/USER (containers)
        user = f"uid-{os.getuid()}"
    from pcigate.cli_evidence import database_name

    hostname = socket.gethostname() or "localhost"
    return ServiceActor(
        sub=user,
        iss=f"local:{hostname}",
        host=_database_host(dsn),  # the target: where the ledger lives
        database=database_name(dsn),
        log_origin=origin,
        kind="human",
        client_app=client_app,
    )


@contextlib.asynccontextmanager
async def open_reader(
    dsn: str,
    actor: Any,
    purpose: str | None,
    trusted_keys: Sequence[str] = (),
    *,
    connect_timeout: float = CONNECT_TIMEOUT_S,
) -> AsyncIterator[LedgerReader]:
    """A ledger reader on its own connection, recorded as ``actor`` reading for ``purpose``; the
    connection closes with the block."""
    import asyncpg

    from evidence.api import LedgerReader, Recorder

    conn = await asyncpg.connect(dsn, timeout=connect_timeout)
    try:
        yield LedgerReader(conn, Recorder(actor), purpose, trusted_keys=trusted_keys)
    finally:
        await conn.close()


def _database_host(dsn: str) -> str:
    """The host a libpq URL or key=value DSN names (``localhost`` when it names none)."""
    if "://" in dsn:
        return unquote(urlsplit(dsn).hostname or "") or "localhost"
    for part in dsn.split():
        key, _, value = part.partition("=")
        if key == "host" and value.strip("'"):
            return value.strip("'")
    return "localhost"


def _dsn(args: argparse.Namespace, config: Config) -> str:
    from pcigate.config import resolve_secret

    given: str | None = args.ledger_dsn
    if given is None:
        return resolve_secret(config.ledger.dsn, key="ledger.dsn")
    if given.startswith(("env:", "file:")):
        return resolve_secret(given, key="--ledger-dsn")
    return given


async def _proof(dsn: str, actor: Any, purpose: str | None, vkeys: list[str], event_id: str) -> str:
    async with open_reader(dsn, actor, purpose, vkeys) as reader:
        bundle = await reader.inclusion_proof(event_id)
    return bundle.to_json()


def cmd_ledger_proof(args: argparse.Namespace) -> int:
    import asyncio
    import uuid

    from evidence.api import EventNotFoundError, NotCoveredError, ReadError
    from evidence.checkpoint import NoteError
    from pcigate.config import ConfigError

    try:
        uuid.UUID(args.event_id)
    except ValueError:
        _err(f"not an event id (a UUID): {args.event_id!r}")
        return EXIT_USAGE
    code, config = _config(args)
    if config is None:
        return code
    try:
        vkeys = [k.vkey for k in _log_keys(config, need_current=False)]
        dsn = _dsn(args, config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except NoteError as exc:
        _err(str(exc))
        return EXIT_USAGE
    try:
        actor = _reader_actor(dsn, config.ledger.origin)
        text = asyncio.run(_proof(dsn, actor, args.purpose, vkeys, args.event_id))
    except (EventNotFoundError, NotCoveredError) as exc:
        _err(str(exc))
        return EXIT_FAILURE
    except ValueError as exc:  # a purpose the ledger.read record cannot carry
        _err(str(exc))
        return EXIT_USAGE
    except ReadError as exc:
        _err(str(exc))
        return EXIT_FAILURE
    except Exception as exc:  # unreachable database, authentication, no ledger tables: one line, no traceback
        _err(f"cannot read the ledger: {type(exc).__name__}: {_one_line(exc)}")
        return EXIT_FAILURE
    sys.stdout.buffer.write(text.encode("utf-8"))
    sys.stdout.flush()
    return EXIT_OK


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or "no details"


# ---------------------------------------------------------------------------------------- check-proof


def cmd_ledger_check_proof(args: argparse.Namespace) -> int:
    from evidence.api import check_bundle
    from evidence.checkpoint import NoteError
    from pcigate.config import ConfigError

    keys: list[str] = list(args.key)
    if not keys:
        code, config = _config(args)
        if config is None:
            _err("give the log's public key with --key VKEY (from `pcigate ledger keys`), or a config")
            return code
        try:
            keys = [k.vkey for k in _log_keys(config, need_current=False)]
        except ConfigError as exc:
            print(str(exc), file=sys.stderr)
            return EXIT_USAGE
        except NoteError as exc:
            _err(str(exc))
            return EXIT_USAGE
    try:
        data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as exc:
        _err(f"cannot read {args.file}: {exc.strerror}")
        return EXIT_USAGE
    try:
        result = check_bundle(data, keys)
    except NoteError as exc:  # a malformed --key
        _err(str(exc))
        return EXIT_USAGE
    if not result.ok:
        _err(f"the proof does NOT check: {result.problem}")
        return EXIT_FAILURE
    assert result.root is not None
    print(
        f"ok: event {result.event_id} is entry {result.leaf_index} of the tree of {result.tree_size} entries"
        f" (root {result.root.hex()}), checkpoint signed by {', '.join(result.verified_by)}"
    )
    return EXIT_OK


# -------------------------------------------------------------------------------------------- parser


# --------------------------------------------------------------------------------------------- prune


def _month_arg(text: str) -> Any:
    from datetime import date

    try:
        year, month = (int(part) for part in text.split("-"))
        return date(year, month, 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a month (YYYY-MM): {text!r}") from None


def _prune_cutoff(config: Config) -> Any:
    """The first month whose payloads must still be kept: nothing younger than ``retention.audit`` goes."""
    from datetime import UTC, date, datetime

    oldest_kept = datetime.now(UTC) - config.retention.audit
    return date(oldest_kept.year, oldest_kept.month, 1)


async def _prune(dsn: str, actor: Any, config: Config, before: Any, dry_run: bool) -> list[str]:
    import asyncpg

    from evidence.own_events import Recorder
    from evidence.store import LedgerStore

    conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT_S)
    try:
        store = LedgerStore(conn)
        months = [
            p for p in await store.partitions() if p.end_idx is not None and not p.pruned and p.month < before
        ]
        if not months:
            return [f"nothing to prune: no closed, unpruned month before {before:%Y-%m}"]
        first, last = months[0], months[-1]
        span = (
            f"{first.month:%Y-%m}..{last.month:%Y-%m} (entries {first.first_idx}-{(last.end_idx or 1) - 1})"
        )
        if dry_run:
            return [
                f"would prune the payloads of {p.month:%Y-%m}: entries {p.first_idx}-{(p.end_idx or 1) - 1}"
                for p in months
            ]
        digest = config.digest().removeprefix("sha256:")
        record = Recorder(actor).event(
            "config.changed",
            {
                "component": "cli",
                "trigger": "api",
                "hash_before": digest,
                "hash_after": digest,
                "changed_keys": ["ledger_entries.canonical"],
                "changed_keys_truncated": False,
                "policy_version_before": None,
                "policy_version_after": None,
            },
            message=f"payloads pruned for {span}; leaf hashes and tree nodes kept",
        )
        pruned = await store.prune(months, record.entry)
    finally:
        await conn.close()
    return [f"pruned the payloads of {pruned} entries, {span}; recorded as config.changed {record.event_id}"]


def cmd_ledger_prune(args: argparse.Namespace) -> int:
    import asyncio

    from pcigate.config import ConfigError

    code, config = _config(args)
    if config is None:
        return code
    keep_from = _prune_cutoff(config)
    if args.before > keep_from:
        _err(
            f"pruning before {args.before:%Y-%m} would drop payloads younger than retention.audit "
            f"({config.retention.audit.days}d, PCI DSS 10.5.1): the latest allowed is "
            f"--before {keep_from:%Y-%m}"
        )
        return EXIT_USAGE
    try:
        dsn = _dsn(args, config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    try:
        lines = asyncio.run(
            _prune(dsn, _reader_actor(dsn, config.ledger.origin), config, args.before, args.dry_run)
        )
    except Exception as exc:  # unreachable database, missing privileges: one line, no traceback
        _err(f"cannot prune the ledger: {type(exc).__name__}: {_one_line(exc)}")
        return EXIT_FAILURE
    for line in lines:
        print(line)
    return EXIT_OK


def _ledger_dsn_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ledger-dsn",
        dest="ledger_dsn",
        default=None,
        help="the ledger database: a DSN, or env:NAME / file:/path holding one (default: ledger.dsn)",
    )


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], config_opt: argparse.ArgumentParser
) -> None:
    """Add this module's subcommands to the top-level parser."""
    ledger = sub.add_parser(
        "ledger", help="read the evidence ledger: inclusion proofs, the log's public keys"
    )
    actions = ledger.add_subparsers(dest="ledger_command", metavar="ACTION", required=True)

    p = actions.add_parser(
        "proof",
        parents=[config_opt],
        help="print a self-contained inclusion proof (JSON) of one event; the read is recorded (ledger.read)",
    )
    p.add_argument("event_id", metavar="EVENT_ID", help="the event's id (UUID)")
    p.add_argument(
        "--purpose",
        default=None,
        help="why you read it, recorded with the read (e.g. an assessment reference)",
    )
    _ledger_dsn_option(p)
    p.set_defaults(handler=cmd_ledger_proof)

    p = actions.add_parser(
        "keys",
        parents=[config_opt],
        help="list the log's public keys (verifier key strings); needs no database",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=cmd_ledger_keys)

    p = actions.add_parser(
        "prune",
        parents=[config_opt],
        help="drop the payloads of whole months older than retention.audit; leaf hashes and tree nodes stay, "
        "so the ledger still verifies; recorded as config.changed",
    )
    p.add_argument(
        "--before",
        required=True,
        type=_month_arg,
        metavar="YYYY-MM",
        help="prune the closed months before this one",
    )
    p.add_argument("--dry-run", action="store_true", help="list what would be pruned, change nothing")
    _ledger_dsn_option(p)
    p.set_defaults(handler=cmd_ledger_prune)

    p = actions.add_parser(
        "check-proof",
        parents=[config_opt],
        help="check a proof bundle offline (exit 0 if it checks, 1 if not)",
    )
    p.add_argument("file", metavar="FILE", help="the bundle (JSON), or - for standard input")
    p.add_argument(
        "--key",
        action="append",
        default=[],
        metavar="VKEY",
        help="a trusted verifier key string (repeatable; default: the config's ledger keys)",
    )
    p.set_defaults(handler=cmd_ledger_check_proof)
