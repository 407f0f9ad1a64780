"""The `pcigate approvals` commands (list held statements, approve or deny one) and `pcigate approve`, the
approver console (``tui``).

- ``approvals list [--all] [--json]``: pending requests (``--all``: every request the bucket keeps).
- ``approvals approve ID --reason TEXT --token JWT`` / ``approvals deny ID --reason TEXT --token JWT``:
  the decision goes with your own identity token to the gateway holding the statement, which verifies it
  and says whether it counted. ``--token -`` reads the token from stdin; without ``--token``,
  ``$PCIGATE_TOKEN`` is used (a token on the command line is visible to other local users).

- ``approve [--token JWT | --token-file PATH]``: the live console; the token (default
  ``$PCIGATE_TOKEN``) is verified by a running gateway; without one, or not in an approver group, it only
  watches.

Exit codes: 0 the decision counted (or the list was read), 1 it did not count or NATS/the gateway is not
reachable, 2 bad usage or an invalid configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pcigate.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, config_for

if TYPE_CHECKING:
    from collections.abc import Callable

    from pcigate.approvals_client import ApprovalsClient, Listed
    from pcigate.config import Config
    from tui.ledger_source import LedgerSource

CLIENT_APP = "pcigate-cli"
CONSOLE_APP = "pcigate-approve"
_STATEMENT_WIDTH = 60


def _err(message: str) -> None:
    print(f"pcigate: {message}", file=sys.stderr)


def _client(config: Config) -> ApprovalsClient:
    from pcigate.approvals_client import ApprovalsClient
    from pcigate.settings import nats_connect_options, nats_servers

    return ApprovalsClient(nats_servers(config), **nats_connect_options(config))


def cmd_list(args: argparse.Namespace) -> int:
    from pcigate.approvals_client import ApprovalsError, effective_state
    from pcigate.natsconn import NatsUnavailableError

    code, config = config_for(args)
    if config is None:
        return code

    async def read() -> list[Listed]:
        async with _client(config) as client:
            return await client.requests()

    try:
        listed = asyncio.run(read())
    except (ApprovalsError, NatsUnavailableError) as exc:
        _err(str(exc))
        return EXIT_FAILURE
    now = datetime.now(UTC)
    rows = [
        x for x in listed if x.request is None or args.all or effective_state(x.request, now) == "pending"
    ]
    if args.json:
        out = []
        for x in rows:
            if x.request is None:
                out.append({"id": x.key, "problem": x.problem})
            else:
                out.append(
                    {**x.request.model_dump(mode="json"), "effective_state": effective_state(x.request, now)}
                )
        print(json.dumps(out, indent=2))
        return EXIT_OK
    if not rows:
        print("no pending approval requests" if not args.all else "no approval requests")
        return EXIT_OK
    print(f"{'ID':36}  {'STATE':9}  {'REQUESTER':28}  {'RULE':20}  {'OK':5}  {'EXPIRES IN':10}  STATEMENT")
    for x in rows:
        if x.request is None:
            print(f"{x.key[:36]:36}  {'invalid':9}  {x.problem}")
            continue
        r = x.request
        who = r.requester.sub + (f" for {r.requester.on_behalf_of}" if r.requester.on_behalf_of else "")
        left = int((r.expires - now).total_seconds())
        expires = f"{left // 60}m{left % 60:02d}s" if left > 0 else "-"
        text = " ".join(r.statement.text.split())
        if len(text) > _STATEMENT_WIDTH:
            text = text[: _STATEMENT_WIDTH - 1] + "…"
        print(
            f"{r.id:36}  {effective_state(r, now):9}  {who[:28]:28}  {r.rule[:20]:20}  "
            f"{r.approved}/{r.quorum:<3}  {expires:10}  {text}"
        )
    return EXIT_OK


def _token(args: argparse.Namespace) -> str | None:
    token = args.token
    if token == "-":  # noqa: S105 - the stdin marker, not a password
        token = sys.stdin.readline()
    elif token is None and getattr(args, "token_file", None):
        token = Path(args.token_file).read_text(encoding="utf-8")
    elif token is None:
        token = os.environ.get("PCIGATE_TOKEN")
    token = (token or "").strip()
    return token or None


def cmd_console(args: argparse.Namespace) -> int:
    from pcigate.settings import nats_connect_options, nats_servers

    if args.token == "-":  # noqa: S105 - the stdin marker, not a password
        _err("the console reads the keyboard: pass --token JWT, --token-file PATH or set PCIGATE_TOKEN")
        return EXIT_USAGE
    try:
        token = _token(args)
    except OSError as exc:
        _err(f"cannot read the token file: {exc.strerror or exc}")
        return EXIT_USAGE
    code, config = config_for(args)
    if config is None:
        return code
    from tui.app import ApproverApp

    ApproverApp(
        nats_servers(config),
        token,
        nats_options=nats_connect_options(config),
        open_ledger=lambda: _ledger_source(config),  # once the queue is drawn: the reader's imports cost
        ledger_origin=config.ledger.origin,
        sensitive=_sensitive(config),
    ).run()
    return EXIT_OK


def _sensitive(config: Config) -> Callable[[str, str], bool]:
    """Whether a connection's masking profile hides a column (by its name): the console marks it."""
    from pcigate.config.models import DEFAULT_MASKED_COLUMNS

    rules = {c.name: config.masking[c.masking].columns for c in config.connections}

    def check(connection: str, column: str) -> bool:
        return any(rule.matches(column) for rule in rules.get(connection, DEFAULT_MASKED_COLUMNS))

    return check


def _ledger_source(config: Config) -> tuple[LedgerSource | None, str | None]:
    """The ledger panel's reader, or why there is none (the console works without it)."""
    from evidence.checkpoint import NoteError
    from pcigate.cli_ledger import _log_keys, _reader_actor
    from pcigate.config import ConfigError, resolve_secret
    from tui.ledger_source import LedgerSource

    try:
        dsn = resolve_secret(config.ledger.dsn, key="ledger.dsn")
        keys = [k.vkey for k in _log_keys(config, need_current=False)]
    except (ConfigError, NoteError) as exc:
        return None, f"the ledger cannot be read from here: {exc}"
    actor = _reader_actor(dsn, config.ledger.origin, CONSOLE_APP)
    return LedgerSource(dsn, keys, actor), None


def _decide(args: argparse.Namespace, decision: Literal["approve", "deny"]) -> int:
    from pcigate.approvals_client import ApprovalsError
    from pcigate.natsconn import NatsUnavailableError
    from schemas.approvals import DecideReply

    token = _token(args)
    if token is None:
        _err("no token: pass --token JWT (or --token - to read it from stdin, or set PCIGATE_TOKEN)")
        return EXIT_USAGE
    reason = " ".join(args.reason.split())
    if not reason:
        _err("--reason must say why (it is recorded with your decision)")
        return EXIT_USAGE
    code, config = config_for(args)
    if config is None:
        return code

    async def send() -> DecideReply:
        async with _client(config) as client:
            request = await client.get(args.id)
            return await client.decide(
                request, decision, reason=reason[:1024], token=token, channel="cli", client_app=CLIENT_APP
            )

    try:
        reply = asyncio.run(send())
    except (ApprovalsError, NatsUnavailableError) as exc:
        _err(str(exc))
        return EXIT_FAILURE
    if reply.refused is not None:
        _err(f"your decision did not count ({reply.refused}): {reply.message}")
        return EXIT_FAILURE
    print(f"{reply.message} ({reply.approvals} of {reply.quorum} approvals; state {reply.state})")
    return EXIT_OK


def cmd_approve(args: argparse.Namespace) -> int:
    return _decide(args, "approve")


def cmd_deny(args: argparse.Namespace) -> int:
    return _decide(args, "deny")


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], config_opt: argparse.ArgumentParser
) -> None:
    """Add this module's subcommands to the top-level parser."""
    approvals = sub.add_parser("approvals", help="statements held for approval: list, approve, deny")
    actions = approvals.add_subparsers(dest="approvals_command", metavar="ACTION", required=True)
    p = actions.add_parser("list", parents=[config_opt], help="list pending approval requests")
    p.add_argument("--all", action="store_true", help="also decided, expired and withdrawn requests")
    p.add_argument("--json", action="store_true", help="machine-readable output (the records)")
    p.set_defaults(handler=cmd_list)
    for name, handler, verb in (("approve", cmd_approve, "approve"), ("deny", cmd_deny, "deny")):
        p = actions.add_parser(
            name, parents=[config_opt], help=f"{verb} a held statement with your own identity token"
        )
        p.add_argument(
            "id", metavar="ID", help="the request id (from the client's notice or `approvals list`)"
        )
        p.add_argument("--reason", required=True, help="why; recorded with your decision")
        p.add_argument(
            "--token",
            default=None,
            help="your OIDC token (JWT); '-' reads it from stdin; default $PCIGATE_TOKEN",
        )
        p.set_defaults(handler=handler)
    p = sub.add_parser(
        "approve",
        parents=[config_opt],
        help="the approver console: live queue of held statements, decide them",
    )
    who = p.add_mutually_exclusive_group()
    who.add_argument("--token", default=None, help="your OIDC token (JWT); default $PCIGATE_TOKEN")
    who.add_argument("--token-file", default=None, metavar="PATH", help="read your token from this file")
    p.set_defaults(handler=cmd_console)
