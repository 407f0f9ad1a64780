"""Just-in-time access (``connections[].jit``): a session opens only inside a grant a person approved.

An identity the connection's ``jit`` applies to and that holds no grant asks for one: an approval request
of scope ``access`` through the gateway's :class:`ApprovalService`, shared by every connection of that
identity that arrives while it is pending. Its sessions wait after AuthenticationOk (a notice says for
what). Approved: ``access.granted`` is made durable, then the sessions open, and so do later ones of that
identity until the grant ends. When it ends, ``access.revoked`` is recorded and every session in it ends
(``session.closed`` reason ``access_revoked``). Grants live in the gateway process: a restart ends them
along with their sessions, and access must be asked for again (fail closed).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final, Literal, Protocol

from gateway.approvals.record import binding_of
from gateway.approvals.service import ApprovalService, Outcome, Ticket
from gateway.audit import SessionAudit, statement_audit
from gateway.policy.engine import ApprovalSpec
from gateway.spool_waits import SpoolUnavailable
from pcigate.config.durations import format_duration
from schemas.ids import format_utc, new_event_id
from schemas.models import (
    AccessGranted,
    AccessGrantedData,
    AccessRevoked,
    AccessRevokedData,
    Actor,
    Envelope,
    Grantee,
    Origin,
    Statement,
)

if TYPE_CHECKING:
    from gateway.identity import VerifiedIdentity
    from gateway.spool_link import SpoolLink
    from pcigate.config.models import Approvals, Connection, JitAccess

__all__ = ["AccessGate", "AccessRefusedError", "Grant"]

log = logging.getLogger(__name__)

RULE: Final = "jit-access"  # the rule name access requests carry
_LOCAL: Final = Origin(addr="local", port=None, client_app=None)


class Holder(Protocol):
    """A session inside a grant."""

    def revoke(self, message: str) -> None: ...


class AccessRefusedError(Exception):
    """No grant: the session does not open. ``message`` is for the client."""

    def __init__(self, sqlstate: str, message: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message


@dataclass(eq=False)
class Grant:
    grant_id: str
    approval_id: str
    grantee: Grantee
    role: str
    until: float  # epoch seconds
    audit: SessionAudit  # the asking session's: events about the grant name the grantee as actor
    sessions: set[Holder] = field(default_factory=set)
    ended: bool = False
    timer: asyncio.TimerHandle | None = None


@dataclass(eq=False)
class _Asking:
    """One pending access request and the sessions waiting on it."""

    task: asyncio.Task[Grant] = field(init=False)
    notices: dict[int, Callable[[str], None]] = field(default_factory=dict)
    last_notice: str | None = None

    def notify(self, message: str) -> None:
        self.last_notice = message
        for notify in list(self.notices.values()):
            notify(message)


class AccessGate:
    """One connection's grants."""

    def __init__(
        self,
        connection: Connection,
        defaults: Approvals,
        service: ApprovalService,
        spool: SpoolLink,
        *,
        issuer: str,
    ) -> None:
        assert connection.jit is not None
        self.jit: JitAccess = connection.jit
        self._connection = connection
        self._defaults = defaults
        self._service = service
        self._spool = spool
        self._grants: dict[tuple[str, str], Grant] = {}
        # who ends a grant that lapses: the gateway itself
        self._gateway = Actor(
            sub=f"pcigate-gateway/{service.gateway_id}",
            iss=issuer,
            name=None,
            groups=(),
            kind="service",
            on_behalf_of=None,
        )
        self._asking: dict[tuple[str, str], _Asking] = {}

    def applies_to(self, identity: VerifiedIdentity) -> bool:
        return self.jit.applies_to(identity.kind, identity.groups)

    async def enter(
        self, identity: VerifiedIdentity, audit: SessionAudit, role: str, notify: Callable[[str], None]
    ) -> Grant:
        """The identity's grant: the one it holds, or one a person approves now (this waits). Raises
        :class:`AccessRefusedError`; cancelled, it stops waiting (the last waiter withdraws the request)."""
        key = (identity.iss, identity.sub)
        grant = self._grants.get(key)
        if grant is not None and not grant.ended:
            return grant
        asking = self._asking.get(key)
        if asking is None:
            asking = self._asking[key] = _Asking()
            asking.task = asyncio.ensure_future(self._ask(key, identity, audit, role, asking))
            asking.task.add_done_callback(lambda _: self._forget(key, asking))
        elif asking.last_notice is not None:
            notify(asking.last_notice)
        token = id(notify)
        asking.notices[token] = notify
        try:
            return await asyncio.shield(asking.task)
        except asyncio.CancelledError:
            asking.notices.pop(token, None)
            if not asking.notices:
                asking.task.cancel()  # nobody waits any more: the request is withdrawn
            raise

    def _forget(self, key: tuple[str, str], asking: _Asking) -> None:
        if self._asking.get(key) is asking:
            del self._asking[key]

    async def _ask(
        self,
        key: tuple[str, str],
        identity: VerifiedIdentity,
        audit: SessionAudit,
        role: str,
        asking: _Asking,
    ) -> Grant:
        service = self._service
        conn = self._connection
        spec = self._spec()
        if not spec.groups:
            raise AccessRefusedError(
                "28000",
                f"pcigate: connection {conn.name} needs just-in-time access, but no approver group is "
                "configured, so nobody can approve it: ask an administrator to set jit.approval.groups or "
                "approvals.approver_groups",
            )
        text = (
            f"-- pcigate: access to connection {conn.name} (database {conn.upstream.database}) as {role} "
            f"for {format_duration(self.jit.grant)}"
        )
        statement = Statement.model_validate_json(
            audit.statement_json(text, statement_audit(text), None, (), ())
        )
        request_id = new_event_id()
        ticket = Ticket(
            request_id=request_id,
            audit=audit,
            connection=conn.name,
            database=conn.upstream.database,
            statement=statement,
            binding=binding_of(audit.session_id or request_id, statement.digest.hmac_sha256),
            rule=RULE,
            why=f"connection {conn.name} opens sessions only inside a grant a person approved",
            spec=spec,
            notify=asking.notify,
        )
        outcome = await service.hold(ticket)
        if outcome.state != "approved":
            raise AccessRefusedError(*_refusal(outcome))
        until = outcome.until or time.time() + self.jit.grant.total_seconds()
        grantee = Grantee(kind="identity", id=identity.sub, iss=identity.iss)
        grant = Grant(new_event_id(), outcome.request_id, grantee, role, until, audit)
        data = AccessGrantedData(
            grant_id=grant.grant_id,
            grantee=grantee,
            privileges=("connect",),
            role=role,
            valid_from=_utc(time.time()),
            valid_until=_utc(until),
            mechanism="jit_approval",
            approval_id=outcome.request_id,
            justification=outcome.reason,
            ticket=None,
        )
        try:
            seq = self._append(audit, AccessGranted, data, outcome.approver)  # actor: who granted it
            await self._spool.wait_durable(seq)
        except SpoolUnavailable as exc:
            raise AccessRefusedError(
                "58030",
                f"pcigate: access was approved, but the gateway cannot record the grant ({exc.reason})",
            ) from None
        self._grants[key] = grant
        delay = max(0.0, until - time.time())
        grant.timer = asyncio.get_running_loop().call_later(delay, self._expire, key, grant)
        log.info("access to %s granted to %s until %s", conn.name, identity.sub, _utc(until))
        return grant

    def _spec(self) -> ApprovalSpec:
        approval, defaults = self.jit.approval, self._defaults
        return ApprovalSpec(
            groups=approval.groups or defaults.approver_groups,
            quorum=approval.quorum or defaults.default_quorum,
            timeout=approval.timeout or defaults.default_timeout,
            scope="access",
            session_for=self.jit.grant,
        )

    def _expire(self, key: tuple[str, str], grant: Grant) -> None:
        sessions = self._revoke(key, grant, "expired")
        message = (
            f"pcigate: your just-in-time access to connection {self._connection.name} ended at "
            f"{_utc(grant.until)}; the session was closed"
        )
        for session in sessions:
            session.revoke(message)

    def _revoke(
        self, key: tuple[str, str], grant: Grant, reason: Literal["expired", "termination"]
    ) -> list[Holder]:
        """End the grant and record ``access.revoked``; the sessions it held, for the caller to end."""
        grant.ended = True
        if grant.timer is not None:
            grant.timer.cancel()
        if self._grants.get(key) is grant:
            del self._grants[key]
        sessions = list(grant.sessions)
        grant.sessions.clear()
        data = AccessRevokedData(
            grant_id=grant.grant_id,
            grantee=grant.grantee,
            privileges=("connect",),
            role=grant.role,
            reason=reason,
            sessions_terminated=len(sessions),
            ticket=None,
        )
        try:
            self._append(grant.audit, AccessRevoked, data, self._gateway, _LOCAL)
        except SpoolUnavailable as exc:  # the sessions end all the same
            log.error("access.revoked could not be recorded: %s", exc.reason)
        return sessions

    def _append(
        self,
        audit: SessionAudit,
        event: type[Envelope],
        data: object,
        actor: Actor | None,
        origin: Origin | None = None,
    ) -> int:
        subject, event_id, payload = audit.hook_event(event, data, rule=RULE, actor=actor, origin=origin)
        return self._spool.append_event(subject, event_id, payload)

    def close(self) -> None:
        """The gateway stops: grants live in this process, so each ends here, recorded as ended by
        ``termination`` (the spool still takes records; the gateway flushes it after this)."""
        for key, grant in list(self._grants.items()):
            for session in self._revoke(key, grant, "termination"):
                session.revoke(
                    f"pcigate: the gateway is stopping; your just-in-time access to connection "
                    f"{self._connection.name} ended with it"
                )
        for asking in self._asking.values():
            asking.task.cancel()


def _utc(epoch: float) -> str:
    return format_utc(datetime.fromtimestamp(epoch, UTC))


def _refusal(outcome: Outcome) -> tuple[str, str]:
    if outcome.state == "unavailable":
        return "58000", f"pcigate: access needs a person's approval and {outcome.message}; retry later"
    if outcome.state == "withdrawn":
        return "57014", f"pcigate: the access request was withdrawn ({outcome.message})"
    return "28000", f"pcigate: access not granted: {outcome.message}"
