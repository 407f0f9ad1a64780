"""``pcigate gateway``: listeners for every configured connection, and the audit spool process.

Start order is fail-closed: the digest key, every vaulted credential and TLS file, the JWKS source and the
spool process (``gateway.spool_service``, which also publishes to NATS) must all be usable before the first
port opens. NATS being down is not fatal — that is what the spool is for — but is logged, and the spool
process keeps retrying.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.approvals.access import AccessGate
from gateway.approvals.service import ApprovalService
from gateway.audit import DigestKey
from gateway.endpoint import Endpoint
from gateway.hooks import Hook, HookFactory, SessionInfo
from gateway.identity import TokenVerifier
from gateway.jwks import jwks_source
from gateway.masking import rowwalk
from gateway.masking.catalog import CatalogCache
from gateway.masking.hook import MaskingPolicy
from gateway.policy.hook import PolicyRuntime
from gateway.recording import RecordingPolicy
from gateway.runtime import CancelRegistry, FailureTracker, ListenerContext
from gateway.session import PgSession
from gateway.spool_link import SpoolLink
from gateway.spool_waits import SpoolUnavailable
from pcigate.config import Config, SecretError, resolve_secret
from pcigate.nats_provision import ProvisionError, provision_url
from pcigate.settings import nats_connect_options, nats_servers, provision_settings

__all__ = ["Gateway", "GatewayStartError", "digest_key_from", "run_gateway"]

log = logging.getLogger(__name__)

MIN_DIGEST_KEY_BYTES = 32


class GatewayStartError(RuntimeError):
    """The gateway refuses to start; the message names the setting and what to do."""


def digest_key_from(config: Config) -> DigestKey:
    ref = config.gateway.digest_key
    if ref is None:
        raise GatewayStartError(
            "gateway.digest_key is not set: the gateway needs an HMAC key (>= 32 bytes) for statement "
            "digests; create one (e.g. `head -c 32 /dev/urandom | base64 > key; chmod 600 key`) and "
            "reference it as file:/path"
        )
    try:
        key = resolve_secret(ref).strip().encode()
    except SecretError as exc:
        raise GatewayStartError(f"gateway.digest_key: {exc}") from None
    if len(key) < MIN_DIGEST_KEY_BYTES:
        raise GatewayStartError(f"gateway.digest_key must be at least {MIN_DIGEST_KEY_BYTES} bytes")
    return DigestKey(config.gateway.digest_key_id, key)


class _ClientEndpoint(Endpoint):
    """The client side: each accepted connection starts its session."""

    def __init__(self, gateway: Gateway, ctx: ListenerContext) -> None:
        super().__init__()
        self._gateway = gateway
        self._ctx = ctx

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._gateway.start_session(PgSession(self._ctx, self))


@dataclass
class Gateway:
    """A running gateway; :meth:`start` opens everything, :meth:`stop` closes it in order."""

    config: Config
    hook_factory: HookFactory | None = None
    spool: SpoolLink | None = None
    servers: list[asyncio.Server] = field(default_factory=list)
    sessions: dict[asyncio.Task[None], PgSession] = field(default_factory=dict)
    contexts: list[ListenerContext] = field(default_factory=list)
    catalogs: list[CatalogCache] = field(default_factory=list)
    approvals: ApprovalService | None = None

    async def start(self) -> list[str]:
        """Start the spool process, then listen; returns lines describing what listens where."""
        config = self.config
        loop = asyncio.get_running_loop()
        digest_key = digest_key_from(config)
        verifier = TokenVerifier(config.identity, jwks_source(config.identity))
        if not rowwalk.NATIVE:
            log.warning(
                "masking runs its pure-Python row walk (gateway/masking/_rowwalk.c is not built), which is "
                "~10x slower on card columns: reinstall with a C compiler (`pip install -e .`)"
            )
        await self._provision()
        spool = SpoolLink(
            config.model_dump(mode="json"),
            max_bytes=config.nats.spool_max_bytes,
            spool_dir=str(config.nats.spool_dir),
        )
        try:
            await spool.start()
        except (SpoolUnavailable, OSError) as exc:
            raise GatewayStartError(f"audit spool: {exc}") from None
        spool.on_lost = self._spool_lost
        self.spool = spool
        self.approvals = ApprovalService(
            nats_servers(config),
            nats_connect_options(config),
            verifier,
            spool,
            issuer=config.identity.issuer,
            allow_self_approval=config.approvals.allow_self_approval,
            approver_groups=config.approver_groups(),
            policy_version=config.policy_version(),
        )
        await self.approvals.start()
        cancels, failures = CancelRegistry(), FailureTracker()
        lines = []
        for conn in config.connections:
            try:
                ctx = ListenerContext.build(
                    config,
                    conn,
                    verifier=verifier,
                    spool=spool,
                    cancels=cancels,
                    failures=failures,
                    digest_key=digest_key,
                )
            except (SecretError, OSError, ValueError) as exc:
                raise GatewayStartError(f"connection {conn.name}: {exc}") from None
            ctx.hook_factory = await self._hooks_for(ctx)
            if conn.jit is not None:
                ctx.access = AccessGate(
                    conn, config.approvals, self.approvals, spool, issuer=config.identity.issuer
                )
            self.contexts.append(ctx)
            host, port = conn.listen.host, conn.listen.port
            try:
                server = await loop.create_server(
                    lambda ctx=ctx: _ClientEndpoint(self, ctx),  # type: ignore[misc]
                    host,
                    port,
                    reuse_address=True,
                    backlog=1024,
                )
            except OSError as exc:
                raise GatewayStartError(
                    f"connection {conn.name}: cannot listen on {conn.listen}: {exc}"
                ) from None
            self.servers.append(server)
            tls = "TLS required" if conn.tls_required else ("TLS offered" if ctx.server_tls else "no TLS")
            lines.append(
                f"{conn.name}: postgres on {conn.listen} -> {conn.upstream.host}:{conn.upstream.port}/"
                f"{conn.upstream.database} ({tls})"
            )
        return lines

    async def _hooks_for(self, ctx: ListenerContext) -> HookFactory:
        """The policy, then masking, always run (neither is optional in a PCI data path), then the session
        recorder unless the connection switched it off; test hooks come after them."""
        conn = ctx.connection
        role = conn.roles[0]
        catalog = CatalogCache(conn.upstream, role.user, ctx.password_for(role), ctx.upstream_tls)
        await catalog.start()
        self.catalogs.append(catalog)
        masking = MaskingPolicy(self.config.masking[conn.masking], catalog)
        policy = PolicyRuntime(self.config.policies[conn.policy], self.config.approvals, self.approvals)
        spool = ctx.spool
        recording = RecordingPolicy(
            enabled=conn.recording.enabled,
            rows_per_statement=conn.recording.rows_per_statement,
            append=lambda subject, msg_id, data: spool.append_event(subject, msg_id, data, lazy=True),
        )
        extra = self.hook_factory

        def hooks(info: SessionInfo) -> list[Hook]:
            # the recorder after masking: it records what the client is shown
            own = [*policy.hooks(info), *masking.hooks(info), *recording.hooks(info)]
            return [*own, *(extra(info) if extra is not None else ())]

        return hooks

    async def _provision(self) -> None:
        try:
            async with asyncio.timeout(10):
                await provision_url(
                    nats_servers(self.config),
                    provision_settings(self.config),
                    **nats_connect_options(self.config),
                )
        except ProvisionError:
            raise
        except Exception as exc:
            # The spool holds events until NATS is back; the publisher retries.
            log.warning("NATS streams not verified at start (%s); events wait in the spool", exc)

    def start_session(self, session: PgSession) -> None:
        task = asyncio.get_running_loop().create_task(session.run())
        self.sessions[task] = session
        task.add_done_callback(self._session_done)

    def _session_done(self, task: asyncio.Task[None]) -> None:
        self.sessions.pop(task, None)

    def _spool_lost(self, durable_seq: int, reason: str) -> None:
        """The spool process died: records after ``durable_seq`` are gone, so their statements must not
        answer or run; sessions waiting on one are ended."""
        ended = sum(session.audit_lost(durable_seq, reason) for session in list(self.sessions.values()))
        if ended:
            log.error("ended %d session(s) whose audit records were lost with the spool process", ended)

    async def stop(self, grace: float | None = None) -> None:
        """Stop listening, give sessions ``grace`` seconds, then end them; flush the spool to NATS."""
        for server in self.servers:
            server.close()
        if grace is None:
            grace = self.config.gateway.shutdown_grace.total_seconds()
        if self.approvals is not None:
            await self.approvals.stop()  # held statements are withdrawn and refused; nothing new is held
        for ctx in self.contexts:
            if ctx.access is not None:
                ctx.access.close()  # grants end now, recorded, and their sessions with them
        if self.sessions:
            _, pending = await asyncio.wait(set(self.sessions), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
        for catalog in self.catalogs:
            await catalog.stop()
        if self.spool is not None:
            await self.spool.close()  # the spool process drains to NATS (bounded) before it exits


async def run_gateway(
    config: Config,
    *,
    hook_factory: HookFactory | None = None,
    on_ready: Callable[[list[str]], None] | None = None,
) -> None:
    """Run until SIGTERM or SIGINT."""
    gateway = Gateway(config, hook_factory=hook_factory)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        lines = await gateway.start()
        if on_ready is not None:
            on_ready(lines)
        await stop.wait()
        log.info("shutting down")
    finally:
        await gateway.stop()
