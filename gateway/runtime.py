"""What every session of a listener shares: config, verifier, spool, TLS contexts, the vaulted
credentials, and the process-wide cancel-key registry and failed-login counter."""

from __future__ import annotations

import hmac
import logging
import secrets
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gateway.audit import DigestKey, SessionAudit, actor_of
from gateway.hooks import HookFactory
from gateway.identity import TokenVerifier, VerifiedIdentity
from gateway.spool_link import SpoolLink
from gateway.upstream import upstream_tls_context
from pcigate.config import Config, Connection, Identity, RoleMapping, resolve_secret
from schemas.models import Origin, Target

if TYPE_CHECKING:
    from gateway.approvals.access import AccessGate
    from gateway.session import PgSession

__all__ = ["CancelRegistry", "FailureTracker", "ListenerContext", "server_tls_context"]

log = logging.getLogger(__name__)


class CancelRegistry:
    """Gateway-issued cancel keys → sessions. The client only ever sees our keys; the upstream backend's
    pid and key stay inside the gateway."""

    def __init__(self) -> None:
        self._sessions: dict[int, tuple[bytes, PgSession]] = {}

    def register(self, session: PgSession) -> tuple[int, bytes]:
        while True:
            pid = secrets.randbelow(0x7FFF_FFFF) + 1
            if pid not in self._sessions:
                break
        key = secrets.token_bytes(4)
        self._sessions[pid] = (key, session)
        return pid, key

    def unregister(self, pid: int) -> None:
        self._sessions.pop(pid, None)

    async def cancel(self, pid: int, key: bytes) -> bool:
        entry = self._sessions.get(pid)
        if entry is None or not hmac.compare_digest(entry[0], key):
            log.info("cancel request with an unknown key ignored")
            return False
        await entry[1].cancel()
        return True

    def __len__(self) -> int:
        return len(self._sessions)


@dataclass
class FailureTracker:
    """Consecutive failed logins per (claimed subject, origin address), for ``auth.failed`` evidence.

    Bounded: entries older than ``window`` are dropped, and the table never exceeds ``max_entries``.
    """

    window: float = 1800.0
    max_entries: int = 10_000
    _entries: dict[tuple[str, str], tuple[int, float]] = field(default_factory=dict)

    def record(self, claimed_sub: str | None, addr: str) -> int:
        now = time.monotonic()
        key = (claimed_sub or "", addr)
        count, last = self._entries.get(key, (0, now))
        count = count + 1 if now - last < self.window else 1
        if len(self._entries) >= self.max_entries and key not in self._entries:
            cutoff = now - self.window
            self._entries = {k: v for k, v in self._entries.items() if v[1] >= cutoff}
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
        self._entries[key] = (count, now)
        return count

    def succeeded(self, sub: str, addr: str) -> None:
        self._entries.pop((sub, addr), None)


def server_tls_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["postgresql"])
    return ctx


@dataclass
class ListenerContext:
    config: Config
    connection: Connection
    verifier: TokenVerifier
    spool: SpoolLink
    cancels: CancelRegistry
    failures: FailureTracker
    digest_key: DigestKey
    hook_factory: HookFactory | None = None
    server_tls: ssl.SSLContext | None = None
    upstream_tls: ssl.SSLContext | None = None
    policy_version: str = ""
    access: AccessGate | None = None  # connections[].jit: sessions need a grant
    _passwords: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        config: Config,
        connection: Connection,
        *,
        verifier: TokenVerifier,
        spool: SpoolLink,
        cancels: CancelRegistry,
        failures: FailureTracker,
        digest_key: DigestKey,
        hook_factory: HookFactory | None = None,
    ) -> ListenerContext:
        """Resolve the connection's secrets and TLS now, so a bad reference fails at start, not at login."""
        tls = connection.tls
        server_tls = server_tls_context(str(tls.cert), str(tls.key)) if tls.cert and tls.key else None
        ctx = cls(
            config=config,
            connection=connection,
            verifier=verifier,
            spool=spool,
            cancels=cancels,
            failures=failures,
            digest_key=digest_key,
            hook_factory=hook_factory,
            server_tls=server_tls,
            upstream_tls=upstream_tls_context(connection.upstream.tls),
            policy_version=config.policy_version(),  # a hash of the whole policy: once, not per session
        )
        for role in connection.roles:
            ctx._passwords[role.user] = resolve_secret(role.password).strip()
        return ctx

    @property
    def identity_config(self) -> Identity:
        return self.config.identity

    def role_for(self, groups: Iterable[str]) -> RoleMapping | None:
        """First role mapping whose groups intersect the identity's (config order decides)."""
        mine = set(groups)
        for role in self.connection.roles:
            if mine.intersection(role.groups):
                return role
        return None

    def role_groups(self, user: str) -> frozenset[str]:
        return frozenset(g for r in self.connection.roles if r.user == user for g in r.groups)

    def password_for(self, role: RoleMapping) -> str:
        return self._passwords[role.user]

    def target(self, obj: str | None) -> Target:
        up = self.connection.upstream
        return Target(
            connection=self.connection.name,
            protocol="postgres",
            host=up.host,
            database=up.database,
            object=obj,
        )

    def session_audit(self, session_id: str, identity: VerifiedIdentity, origin: Origin) -> SessionAudit:
        return SessionAudit(
            session_id=session_id,
            actor=actor_of(identity),
            origin=origin,
            target=self.target(None),
            policy_version=self.policy_version,
            digest_key=self.digest_key,
        )
