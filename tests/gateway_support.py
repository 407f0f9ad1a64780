"""Helpers the gateway's integration and end-to-end tests share: tokens, DSNs, and reading audit events
back from JetStream."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
from nats.js.api import ConsumerConfig, DeliverPolicy

from pcigate.devstack.issuer import TokenRequest, mint
from pcigate.devstack.layout import Layout
from pcigate.devstack.ports import can_connect
from schemas.registry import validate

AUDIT_STREAM = "PCIGATE_AUDIT"


@dataclass(frozen=True)
class GatewayEndpoint:
    host: str
    port: int
    database: str
    layout: Layout
    nats_url: str

    def token(
        self, sub: str = "alice@example.com", groups: tuple[str, ...] = ("engineers",), **kw: Any
    ) -> str:
        return mint(self.layout.signing_key, TokenRequest(sub=sub, groups=groups, **kw))

    def dsn(self, token: str | None = None, *, sslmode: str = "disable", **extra: str) -> str:
        token = token if token is not None else self.token()
        parts = {
            "host": self.host,
            "port": str(self.port),
            "dbname": self.database,
            "user": "alice@example.com",
            "password": token,
            "sslmode": sslmode,
            **extra,
        }
        return " ".join(f"{k}='{v}'" for k, v in parts.items())

    def url(self, token: str | None = None) -> str:
        token = token if token is not None else self.token()
        return f"postgresql://alice%40example.com:{token}@{self.host}:{self.port}/{self.database}"


def endpoint_from_status(status: dict[str, Any], layout: Layout) -> GatewayEndpoint:
    host, port = status["gateway"]["postgres"].rsplit(":", 1)
    return GatewayEndpoint(host, int(port), "payments", layout, status["nats"])


async def audit_events(
    nats_url: str,
    predicate: Callable[[dict[str, Any]], bool],
    *,
    until: Callable[[list[dict[str, Any]]], bool],
    within: float = 15.0,
    subject: str = "pcigate.audit.>",
) -> list[dict[str, Any]]:
    """Events on the audit stream matching ``predicate``, read until ``until(events)`` holds.

    Every event read is validated against the JSON Schema contract: a gateway that emits an invalid event
    fails the test that reads it.
    """
    nc = await nats.connect(nats_url, max_reconnect_attempts=1, connect_timeout=5)
    try:
        js = nc.jetstream()
        sub = await js.subscribe(
            subject,
            stream=AUDIT_STREAM,
            ordered_consumer=True,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
        )
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + within
        while time.monotonic() < deadline and not until(found):
            try:
                msg = await sub.next_msg(timeout=max(0.05, min(1.0, deadline - time.monotonic())))
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            event = json.loads(msg.data)
            if predicate(event):
                validate(event)
                assert msg.headers is not None and msg.headers.get("Nats-Msg-Id") == event["id"]
                found.append(event)
        await sub.unsubscribe()
        return found
    finally:
        await nc.close()


def events_for(
    nats_url: str, predicate: Callable[[dict[str, Any]], bool], count: int, timeout: float = 15.0
) -> list[dict[str, Any]]:
    """Synchronous wrapper: at least ``count`` matching events (or whatever arrived by the timeout)."""
    return asyncio.run(
        audit_events(nats_url, predicate, until=lambda found: len(found) >= count, within=timeout)
    )


def start_gateway(config: Path, host: str, port: int, within: float = 20.0) -> subprocess.Popen[str]:
    """``pcigate gateway --config`` in a child process, once it accepts connections on ``host:port``."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pcigate", "gateway", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + within
    while not can_connect(host, port):
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return proc
