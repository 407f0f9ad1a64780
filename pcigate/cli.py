"""The ``pcigate`` command line: argument parsing and exit codes only; the work lives elsewhere.

Exit codes: 0 success, 1 a runtime failure (a service unreachable, a stack part that would not start),
2 bad usage or an invalid configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pcigate import __version__

if TYPE_CHECKING:
    from pcigate.config import Config

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

DEMO_QUERY = "SELECT card_id, holder_name, brand FROM cards LIMIT 5"

Handler = Callable[[argparse.Namespace], int]


def _err(message: str) -> None:
    print(f"pcigate: {message}", file=sys.stderr)


# -------------------------------------------------------------------------------------------- dev stack


def _cli_name() -> str:
    argv0 = Path(sys.argv[0])
    try:
        return str(argv0.resolve().relative_to(Path.cwd())) if argv0.is_absolute() else str(argv0)
    except ValueError:
        return "pcigate"


def _psql() -> str:
    from pcigate.devstack import binaries

    if shutil.which("psql"):
        return "psql"
    try:
        candidate = binaries.postgres_bindir() / "psql"
    except binaries.MissingBinaryError:
        return "psql"
    return str(candidate) if candidate.exists() else "psql"


def cmd_dev_up(args: argparse.Namespace) -> int:
    from pcigate.devstack import stack
    from pcigate.devstack.layout import Layout

    layout = Layout.default(args.home)
    try:
        result = stack.up(layout)
    except Exception as exc:  # every failure here is reported, never a traceback
        _err(f"dev up failed: {exc}")
        _err(f"the state is in {layout.root}; `pcigate dev down` stops whatever did start")
        return EXIT_FAILURE
    if args.json:
        print(json.dumps(result.status, indent=2))
        return EXIT_OK
    st = result.status
    me = _cli_name()
    print("pcigate dev stack is up\n")
    for line in result.lines:
        print(f"  {line}")
    print(
        f"""
  config      {st["config"]}
  jwks        {st["jwks"]}  (issuer {st["issuer"]})

{_gateway_hint(st, me)}
Or the demo database directly (the stack's target, for comparison; it holds the vaulted password):
  {_psql()} "{st["target_dsn"]}" -c "{DEMO_QUERY}"

Things to try:
  {me} token --sub alice@example.com --groups engineers           # a dev identity (JWT)
  {me} token --sub bot@example.com --groups agents --kind agent --on-behalf-of alice@example.com
  {me} dev status --json                                          # live endpoints
  {me} config check {st["config"]}
  {me} nats init --config {st["config"]}                          # idempotent
  {me} dev down                                                   # stop what dev up started
"""
    )
    return EXIT_OK


def _gateway_hint(st: dict[str, object], me: str) -> str:
    gateway = st.get("gateway")
    listen = gateway.get("postgres") if isinstance(gateway, dict) else None
    if not isinstance(listen, str):
        return ""
    host, port = listen.rsplit(":", 1)
    return (
        "Through the gateway (your identity token is the password; the gateway logs in upstream with a\n"
        "vaulted role and records every statement):\n"
        f'  {_psql()} "host={host} port={port} dbname=payments user=alice@example.com '
        f'password=$({me} token --sub alice@example.com --groups engineers)" -c "{DEMO_QUERY}"\n'
    )


def cmd_dev_down(args: argparse.Namespace) -> int:
    from pcigate.devstack import stack
    from pcigate.devstack.layout import Layout

    try:
        for line in stack.down(Layout.default(args.home), purge=args.purge):
            print(line)
    except Exception as exc:
        _err(f"dev down failed: {exc}")
        return EXIT_FAILURE
    return EXIT_OK


def cmd_dev_status(args: argparse.Namespace) -> int:
    from pcigate.devstack import stack
    from pcigate.devstack.layout import Layout

    st = stack.status(Layout.default(args.home))
    if args.json:
        print(json.dumps(st, indent=2))
    else:
        print(f"dev stack {'running' if st['running'] else 'NOT running'}  ({st['state_dir']})")
        for name, svc in st["services"].items():
            owner = "managed" if svc["managed"] else "external"
            print(f"  {name:10} {'up' if svc['alive'] else 'DOWN':5} {owner}")
        for key in ("nats", "target_dsn", "ledger_dsn", "config", "jwks"):
            if st.get(key):
                print(f"  {key:10} {st[key]}")
    return EXIT_OK if st["running"] else EXIT_FAILURE


# ------------------------------------------------------------------------------------------------ token


def cmd_token(args: argparse.Namespace) -> int:
    from pcigate.devstack import issuer
    from pcigate.devstack.layout import Layout

    layout = Layout.default(args.home)
    if not layout.signing_key.exists():
        _err(f"no dev issuer in {layout.root}: run `pcigate dev up` first")
        return EXIT_FAILURE
    groups = tuple(g.strip() for item in args.groups for g in item.split(",") if g.strip())
    try:
        req = issuer.TokenRequest(
            sub=args.sub,
            groups=groups,
            kind=args.kind,
            on_behalf_of=args.on_behalf_of,
            name=args.name,
            ttl_seconds=issuer.parse_ttl(args.ttl),
        )
        print(issuer.mint(layout.signing_key, req))
    except ValueError as exc:
        _err(str(exc))
        return EXIT_USAGE
    return EXIT_OK


# ------------------------------------------------------------------------------------------ config, nats


def load_config_or_exit_code(path: str | None) -> tuple[int, object]:
    from pcigate.config import ConfigError, find_config, load_config

    try:
        return EXIT_OK, load_config(find_config(path))
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE, None


def config_for(args: argparse.Namespace) -> tuple[int, Config | None]:
    """A command's validated config (``--config``, else the usual search) or the exit code to return."""
    from pcigate.config import Config

    code, config = load_config_or_exit_code(getattr(args, "config", None))
    return code, config if isinstance(config, Config) else None


def cmd_config_check(args: argparse.Namespace) -> int:
    code, config = load_config_or_exit_code(args.file or args.config)
    if code == EXIT_OK:
        from pcigate.config import Config

        assert isinstance(config, Config)
        print(f"ok: {len(config.connections)} connection(s); config digest {config.digest()}")
    return code


def cmd_nats_init(args: argparse.Namespace) -> int:
    from pcigate.config import Config, ConfigError
    from pcigate.nats_provision import ProvisionError, provision_url
    from pcigate.settings import nats_connect_options, nats_servers, provision_settings

    code, config = load_config_or_exit_code(args.config)
    if code != EXIT_OK:
        return code
    assert isinstance(config, Config)
    servers = [args.url] if args.url else nats_servers(config)
    try:
        options = nats_connect_options(config)
    except ConfigError as exc:  # a missing or world-readable credentials file
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    try:
        report = asyncio.run(provision_url(servers, provision_settings(config), **options))
    except ProvisionError as exc:
        _err(str(exc))
        return EXIT_FAILURE
    except Exception as exc:  # unreachable server, auth, JetStream disabled: one line, no traceback
        _err(f"cannot provision NATS at {', '.join(servers)}: {exc}")
        return EXIT_FAILURE
    for line in report.lines():
        print(line)
    return EXIT_OK


# --------------------------------------------------------------------------------------------- gateway


def add_log_level(parser: argparse.ArgumentParser) -> None:
    """``--log-level`` of a long-running service (read by :func:`load_service_config`)."""
    parser.add_argument(
        "--log-level", default="info", choices=("debug", "info", "warning", "error"), help="default: info"
    )


def load_service_config(args: argparse.Namespace) -> tuple[int, object]:
    """A long-running service's config (``--config``), its log set to stderr at ``--log-level``."""
    import logging

    code, config = load_config_or_exit_code(args.config)
    if code == EXIT_OK:
        logging.basicConfig(
            level=getattr(logging, args.log_level.upper()),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
    return code, config


def cmd_gateway(args: argparse.Namespace) -> int:
    from pcigate.config import Config
    from pcigate.nats_provision import ProvisionError

    code, config = load_service_config(args)
    if code != EXIT_OK:
        return code
    assert isinstance(config, Config)
    from gateway.loop import loop_factory
    from gateway.server import GatewayStartError, run_gateway

    def ready(lines: list[str]) -> None:
        for line in lines:
            print(f"listening   {line}", flush=True)

    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(run_gateway(config, on_ready=ready))
    except GatewayStartError as exc:
        _err(str(exc))
        return EXIT_USAGE
    except ProvisionError as exc:
        _err(str(exc))
        return EXIT_FAILURE
    except KeyboardInterrupt:
        pass
    return EXIT_OK


# ---------------------------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pcigate",
        description="PCI DSS data-path gateway: verified identity, vaulted credentials, masking, approvals "
        "and a signed audit ledger.",
    )
    parser.add_argument("--version", action="version", version=f"pcigate {__version__}")
    parser.add_argument(
        "--config", default=None, help="pcigate.yaml to use (default: $PCIGATE_CONFIG, then ./pcigate.yaml)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    # --config is accepted after the subcommand too; SUPPRESS keeps an absent one from hiding the global.
    config_opt = argparse.ArgumentParser(add_help=False)
    config_opt.add_argument("--config", default=argparse.SUPPRESS, help="pcigate.yaml to use")
    home = argparse.ArgumentParser(add_help=False)
    home.add_argument(
        "--home", default=None, help="dev stack state directory (default: $PCIGATE_HOME or ./.pcigate)"
    )

    dev = sub.add_parser("dev", help="run the embedded development stack (PostgreSQL, NATS, demo data)")
    dev_sub = dev.add_subparsers(dest="dev_command", metavar="ACTION", required=True)
    p = dev_sub.add_parser("up", parents=[home], help="start the stack (harmless when it is already up)")
    p.add_argument("--json", action="store_true", help="print the live endpoints as JSON")
    p.set_defaults(handler=cmd_dev_up)
    p = dev_sub.add_parser("down", parents=[home], help="stop what `dev up` started, nothing else")
    p.add_argument("--purge", action="store_true", help="also delete the state directory and its data")
    p.set_defaults(handler=cmd_dev_down)
    p = dev_sub.add_parser("status", parents=[home], help="show live endpoints (exit 1 when not running)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=cmd_dev_status)

    p = sub.add_parser("token", parents=[home], help="mint a dev identity token (JWT) from the dev issuer")
    p.add_argument("--sub", required=True, help="subject, e.g. alice@example.com")
    p.add_argument("--groups", action="append", default=[], help="group(s), comma-separated or repeated")
    p.add_argument("--kind", choices=("human", "agent", "service"), default="human")
    p.add_argument("--on-behalf-of", dest="on_behalf_of", default=None, help="the human an agent acts for")
    p.add_argument("--name", default=None, help="display name (default: the subject)")
    p.add_argument("--ttl", default="15m", help="lifetime, e.g. 90s, 15m, 2h (max 24h; default 15m)")
    p.set_defaults(handler=cmd_token)

    nats_p = sub.add_parser("nats", help="NATS JetStream provisioning")
    nats_sub = nats_p.add_subparsers(dest="nats_command", metavar="ACTION", required=True)
    p = nats_sub.add_parser(
        "init", parents=[config_opt], help="create or verify the streams and KV bucket (idempotent)"
    )
    p.add_argument("--url", default=None, help="NATS URL (default: nats.url from the config)")
    p.set_defaults(handler=cmd_nats_init)

    p = sub.add_parser(
        "gateway",
        parents=[config_opt],
        help="run the data-path gateway (listeners for every configured connection) until SIGTERM",
    )
    add_log_level(p)
    p.set_defaults(handler=cmd_gateway)

    from pcigate import (
        cli_approvals,
        cli_evidence,
        cli_ledger,
        cli_replay,
        cli_report,
        cli_verify,
        cli_verify_pack,
    )

    for module in (
        cli_evidence,
        cli_verify,
        cli_ledger,
        cli_approvals,
        cli_report,
        cli_verify_pack,
        cli_replay,
    ):
        module.register(sub, config_opt)

    cfg = sub.add_parser("config", help="configuration tools")
    cfg_sub = cfg.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    p = cfg_sub.add_parser(
        "check", parents=[config_opt], help="validate a pcigate.yaml (exit 2 naming key and line on error)"
    )
    p.add_argument("file", nargs="?", default=None)
    p.set_defaults(handler=cmd_config_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.config:
        os.environ["PCIGATE_CONFIG"] = args.config
    handler: Handler = args.handler
    try:
        return handler(args)
    except BrokenPipeError:  # `pcigate ... | head`: the reader left; no traceback for that
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
