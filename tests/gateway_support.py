"""Helpers the gateway's integration and end-to-end tests share: tokens, DSNs, and reading audit events
back from JetStream."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import nats
import yaml
from nats.js.api import ConsumerConfig, DeliverPolicy

from pcigate.approvals_client import ApprovalsClient, ApprovalsError, effective_state
from pcigate.devstack.issuer import TokenRequest, mint
from pcigate.devstack.layout import Layout
from pcigate.devstack.ports import can_connect, free_port
from schemas.approvals import DecideReply, Request
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


class AutoApprover:
    """Approves every pending request of one requester as soon as it appears, for tests about what a
    statement does once approved (masking of its results, say). Use with ``with``."""

    def __init__(
        self, gw: GatewayEndpoint, requester: str, approver: str = "auto-approver@example.com"
    ) -> None:
        self._gw = gw
        self._requester = requester
        self._token = gw.token(sub=approver, groups=("approvers",))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._future: concurrent.futures.Future[None] | None = None
        self._watching = asyncio.Event()
        self._stop = asyncio.Event()
        self.approved: list[str] = []
        self.errors: list[str] = []

    async def _run(self) -> None:
        seen: set[str] = set()
        async with ApprovalsClient([self._gw.nats_url]) as client:
            self._loop.call_soon(self._watching.set)
            while not self._stop.is_set():  # a fresh snapshot each time: simple, and nothing is missed
                for listed in await client.requests():
                    request = listed.request
                    if request is None or request.id in seen or request.requester.sub != self._requester:
                        continue
                    if effective_state(request) != "pending":
                        continue
                    seen.add(request.id)
                    try:
                        reply = await client.decide(
                            request, "approve", reason="test: approved automatically", token=self._token,
                            channel="api", client_app="pcigate-tests",
                        )  # fmt: skip
                    except ApprovalsError as exc:  # a stale record whose gateway is gone, say: go on
                        self.errors.append(str(exc))
                        continue
                    if reply.refused is None:
                        self.approved.append(request.id)
                    else:
                        self.errors.append(f"{request.id}: {reply.refused} {reply.message}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), 0.05)

    def __enter__(self) -> AutoApprover:
        self._thread.start()
        self._future = asyncio.run_coroutine_threadsafe(self._run(), self._loop)
        ready = asyncio.run_coroutine_threadsafe(self._watching.wait(), self._loop)
        ready.result(timeout=20)  # a request made before the watch is in place would wait on
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        if self._future is not None:
            self._future.result(timeout=30)  # its NATS connection closed on its own loop
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


async def _pending(nats_url: str, sub: str, count: int, within: float) -> list[Request]:
    deadline = time.monotonic() + within
    async with ApprovalsClient([nats_url]) as client:
        while True:
            found = [
                x.request
                for x in await client.requests()
                if x.request is not None and x.request.requester.sub == sub and x.request.state == "pending"
            ]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.05)


def pending_requests(gw: GatewayEndpoint, sub: str, count: int = 1, within: float = 20.0) -> list[Request]:
    """The pending approval requests of ``sub``, once there are ``count`` of them (else the test fails)."""
    found = asyncio.run(_pending(gw.nats_url, sub, count, within))
    assert len(found) >= count, f"{len(found)} pending requests of {sub}, expected {count}"
    return found


def decide(
    gw: GatewayEndpoint,
    request: Request,
    token: str,
    decision: Literal["approve", "deny"] = "approve",
    reason: str = "checked the change ticket",
) -> DecideReply:
    """Send one decision as an approver's tool does and return the gateway's answer."""

    async def send() -> DecideReply:
        async with ApprovalsClient([gw.nats_url]) as client:
            return await client.decide(
                request, decision, reason=reason, token=token, channel="api", client_app="pcigate-tests"
            )

    return asyncio.run(send())


def private_config(
    dev_config: str,
    tmp: Path,
    *,
    nats_url: str | None = None,
    rules: Sequence[dict[str, Any]] = (),
    connection: Mapping[str, Any] | None = None,
) -> tuple[Path, int]:
    """The dev stack's config for a gateway of its own: its own spool and loopback port (returned), and
    optionally another NATS, more policy rules after the dev stack's and keys of its connection."""
    config = yaml.safe_load(Path(dev_config).read_text())
    if nats_url is not None:
        config["nats"]["url"] = nats_url
    config["nats"]["spool_dir"] = str(tmp / "spool")
    port = free_port()
    config["connections"][0]["listen"] = f"127.0.0.1:{port}"
    config["connections"][0].update(connection or {})
    config["policies"]["default"]["rules"] += list(rules)
    path = tmp / "pcigate.yaml"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path, port


@contextlib.contextmanager
def private_gateway(
    dev_config: str,
    base: GatewayEndpoint,
    tmp: Path,
    rules: list[dict[str, Any]],
    connection: Mapping[str, Any] | None = None,
) -> Iterator[GatewayEndpoint]:
    """A gateway of its own (same PostgreSQL and NATS as the dev stack, its own port and spool) whose
    default policy has ``rules`` after the dev stack's, and whose connection has ``connection``'s keys."""
    path, port = private_config(dev_config, tmp, rules=rules, connection=connection)
    with _running(path, port, base) as gw:
        yield gw


@contextlib.contextmanager
def _running(path: Path, port: int, base: GatewayEndpoint) -> Iterator[GatewayEndpoint]:
    """``pcigate gateway --config path`` listening on ``port`` until the block ends (then stopped)."""
    proc = start_gateway(path, "127.0.0.1", port)
    try:
        yield GatewayEndpoint("127.0.0.1", port, "payments", base.layout, base.nats_url)
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


@contextlib.contextmanager
def private_policy_gateway(
    dev_config: str,
    base: GatewayEndpoint,
    tmp: Path,
    *,
    before: Sequence[dict[str, Any]] = (),
    after: Sequence[dict[str, Any]] = (),
    policy: Mapping[str, Any] | None = None,
) -> Iterator[tuple[GatewayEndpoint, Path]]:
    """As :func:`private_gateway`, for rules the dev stack's would decide first (ALTER SYSTEM, say): the
    default policy has the rules ``before``, then the dev stack's, then ``after``, and the keys of ``policy``
    (``opaque_action: block``, say). Yields the gateway and its config file (for its policy version)."""
    path, port = private_config(dev_config, tmp, rules=after)
    config = yaml.safe_load(path.read_text())
    default = config["policies"]["default"]
    default["rules"] = [*before, *default["rules"]]
    default.update(policy or {})
    path.write_text(yaml.safe_dump(config))
    with _running(path, port, base) as gw:
        yield gw, path
