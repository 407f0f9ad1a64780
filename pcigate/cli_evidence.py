"""The ``pcigate evidence`` command: wires the configuration into ``evidence.service`` and runs it."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import sys
from urllib.parse import urlsplit

from pcigate import __version__
from pcigate.config import Config

SERVICE_SUB = "svc-pcigate-evidence"


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], config_opt: argparse.ArgumentParser
) -> None:
    """Add this module's subcommands to the top-level parser."""
    from pcigate.cli import add_log_level

    p = sub.add_parser(
        "evidence",
        parents=[config_opt],
        help="run the evidence service: fold the audit stream into the signed ledger until SIGTERM",
    )
    add_log_level(p)
    p.set_defaults(handler=cmd_evidence)


def database_name(dsn: str) -> str | None:
    """The database a libpq URL or key=value DSN names, for the events' ``target.database``."""
    if "://" in dsn:
        name = urlsplit(dsn).path.lstrip("/")
        return name or None
    for part in dsn.split():
        key, _, value = part.partition("=")
        if key == "dbname" and value:
            return value.strip("'")
    return None


def build_service(config: Config) -> object:
    """The service the configuration describes; raises SecretError/NoteError for unusable secrets."""
    from evidence.checkpoint import NoteSigner, load_signing_key
    from evidence.own_events import Recorder, ServiceActor
    from evidence.service import EvidenceService, ServiceSettings
    from pcigate.config import resolve_secret
    from pcigate.settings import nats_connect_options, nats_servers

    ledger = config.ledger
    dsn = resolve_secret(ledger.dsn, key="ledger.dsn")
    key = load_signing_key(resolve_secret(ledger.signing_key, key="ledger.signing_key").encode())
    host = socket.gethostname()
    actor = ServiceActor(
        sub=SERVICE_SUB,
        iss=config.identity.issuer,
        host=host,
        database=database_name(dsn),
        log_origin=ledger.origin,
    )
    settings = ServiceSettings(
        origin=ledger.origin,
        checkpoint_every=ledger.checkpoint_every,
        checkpoint_interval=ledger.checkpoint_interval.total_seconds(),
        software_version=__version__,
    )
    return EvidenceService(
        settings,
        dsn=dsn,
        signer=NoteSigner(ledger.origin, key),
        recorder=Recorder(actor),
        nats_servers=nats_servers(config),
        nats_options=nats_connect_options(config),
    )


async def _run(config: Config) -> None:
    from evidence.service import EvidenceService
    from pcigate.nats_provision import provision_url
    from pcigate.settings import nats_connect_options, nats_servers, provision_settings

    service = build_service(config)
    assert isinstance(service, EvidenceService)
    async with asyncio.timeout(30):
        report = await provision_url(
            nats_servers(config), provision_settings(config), **nats_connect_options(config)
        )
    for line in report.lines():
        logging.getLogger("pcigate.evidence").info("nats init: %s", line)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def ready(line: str) -> None:
        print(f"evidence    {line}", flush=True)

    await service.run(stop, on_ready=ready)


def cmd_evidence(args: argparse.Namespace) -> int:
    from evidence.checkpoint import NoteError
    from gateway.loop import loop_factory
    from pcigate.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, load_service_config
    from pcigate.config import SecretError
    from pcigate.nats_provision import ProvisionError

    code, config = load_service_config(args)
    if code != EXIT_OK:
        return code
    assert isinstance(config, Config)
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(_run(config))
    except (SecretError, NoteError) as exc:
        print(f"pcigate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ProvisionError as exc:
        print(f"pcigate: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        pass
    except Exception as exc:
        print(f"pcigate: the evidence service stopped: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK
