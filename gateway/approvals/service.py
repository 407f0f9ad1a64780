"""The gateway's side of just-in-time approval: hold a statement, take decisions on it, expire it.

One service per gateway process. A held statement becomes a request record in KV ``PCIGATE_APPROVALS``
(create-if-absent) and an ``approval.requested`` event; the session waits on :meth:`ApprovalService.hold`.
Decisions arrive by request/reply on ``pcigate.approvals.decide.<gateway id>`` — only this process holds
the statement, so only it judges: it verifies the approver's own token (never stored), applies
:func:`gateway.approvals.record.judge`, makes the ``approval.decided`` event durable, writes the record
with compare-and-swap and only then lets the statement go on. A record changed by anyone else fails the
CAS, and the statement is refused (fail closed). A timer expires the request (``approval.expired``); a
client's cancel withdraws it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal

import nats.errors
import nats.js.errors
from pydantic import BaseModel, ValidationError

from gateway.approvals.record import Judgement, judge
from gateway.audit import actor_of, auth_failed_event, subject_for
from gateway.identity import AuthFailure, TokenVerifier, VerifiedIdentity
from gateway.sqlmask import mask_text, sanitize
from pcigate.natsconn import NatsUnavailableError, connect_once
from schemas.approvals import (
    KV_BUCKET,
    MAX_DECIDE_BYTES,
    WHOAMI_QUEUE,
    WHOAMI_SUBJECT,
    DecideReply,
    DecideRequest,
    Refusal,
    Request,
    Requester,
    WhoAmIReply,
    WhoAmIRequest,
    decide_subject,
)
from schemas.ids import format_utc
from schemas.models import (
    Actor,
    ApprovalDecided,
    ApprovalDecidedData,
    ApprovalExpired,
    ApprovalExpiredData,
    ApprovalRequested,
    ApprovalRequestedData,
    AuthFailedData,
    Envelope,
    Origin,
    Principal,
    Statement,
    Target,
)

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js.kv import KeyValue

    from gateway.audit import Result, SessionAudit
    from gateway.policy.engine import ApprovalSpec
    from gateway.spool_link import SpoolLink

__all__ = ["ApprovalService", "Outcome", "Ticket"]

log = logging.getLogger(__name__)

_FINISHED_KEPT: Final = 4096  # decided requests remembered, so late decisions are refused with evidence
_RECONNECT_EVERY: Final = 2.0
_CLIENT_APP: Final = "pcigate-gateway"
_NOT_LABEL: Final = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")  # LABEL_PATTERN


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a hold ended. ``message`` is for the client: it says what happened and never echoes values."""

    state: Literal["approved", "denied", "expired", "withdrawn", "unavailable"]
    request_id: str
    message: str
    scope: Literal["statement", "session", "access"] = "statement"
    until: float | None = None  # scope session or access: epoch seconds the approval covers until
    approver: Actor | None = None  # approved or denied: whose decision was final, and why
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Ticket:
    """What a session hands over to hold one statement."""

    request_id: str
    audit: SessionAudit  # the session's events; its actor is the requester
    connection: str
    database: str
    statement: Statement  # the audit trail's masked copy, with its keyed digest
    binding: str
    rule: str
    why: str
    spec: ApprovalSpec
    notify: Callable[[str], None]
    columns: tuple[str, ...] = ()  # schema.table.column the policy saw it touch
    observe: Callable[[bytes], None] = lambda _payload: None  # the session's recorder sees its events


@dataclass(slots=True)
class _Hold:
    ticket: Ticket
    request: Request
    revision: int
    future: asyncio.Future[Outcome]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    timer: asyncio.TimerHandle | None = None


class ApprovalUnavailableError(Exception):
    """The approval path (NATS, KV or the audit spool) cannot take this step now."""


class ApprovalService:
    """See the module docstring."""

    def __init__(
        self,
        servers: list[str],
        connect_options: dict[str, Any],
        verifier: TokenVerifier,
        spool: SpoolLink,
        *,
        issuer: str,
        allow_self_approval: bool = False,
        approver_groups: frozenset[str] = frozenset(),
        policy_version: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.gateway_id = "gw-" + uuid.uuid4().hex[:16]
        self._servers = servers
        self._options = connect_options
        self._verifier = verifier
        self._spool = spool
        self._allow_self = allow_self_approval
        self._issuer = issuer  # for auth.failed of a token that names none
        self._approver_groups = approver_groups  # every group a rule or default names (for whoami)
        self._policy_version = policy_version  # for auth.failed, like every other event
        self._clock = clock
        self._holds: dict[str, _Hold] = {}
        self._finished: OrderedDict[str, _Hold] = OrderedDict()
        self._nc: Client | None = None
        self._kv: KeyValue | None = None
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ lifecycle

    async def start(self, within: float = 5.0) -> None:
        """Connect in the background; wait up to ``within`` s for it (statements held before then are
        refused as unavailable, never let through)."""
        self._task = asyncio.get_running_loop().create_task(self._keep_connected())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), within)

    @property
    def ready(self) -> bool:
        return self._kv is not None and self._nc is not None and self._nc.is_connected

    async def stop(self) -> None:
        """Withdraw what is still held (their sessions are ending), then disconnect."""
        for hold in list(self._holds.values()):
            await self._finish(hold, "withdrawn", "the gateway is shutting down; the request was withdrawn")
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._background):
            task.cancel()
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()

    async def _keep_connected(self) -> None:
        while True:
            lost = asyncio.Event()

            async def on_lost(lost: asyncio.Event = lost) -> None:
                lost.set()

            nc: Client | None = None
            try:
                nc = await connect_once(
                    self._servers, closed_cb=on_lost, disconnected_cb=on_lost, **self._options
                )
                kv = await nc.jetstream().key_value(KV_BUCKET)
                await nc.subscribe(decide_subject(self.gateway_id), cb=self._on_decide)
                await nc.subscribe(WHOAMI_SUBJECT, queue=WHOAMI_QUEUE, cb=self._on_whoami)
                self._nc, self._kv = nc, kv
                self._ready.set()
                log.info("approvals: taking decisions on %s", decide_subject(self.gateway_id))
                await lost.wait()
                log.warning("approvals: NATS connection lost; held statements wait, new ones are refused")
            except asyncio.CancelledError:
                raise
            except (NatsUnavailableError, nats.errors.Error, OSError) as exc:
                log.warning("approvals: NATS not usable (%s); retrying", exc)
            finally:
                self._ready.clear()
                self._kv = None
                if nc is not None:
                    with contextlib.suppress(Exception):
                        await nc.close()
                self._nc = None
            await asyncio.sleep(_RECONNECT_EVERY)

    # ------------------------------------------------------------------ holding a statement

    async def hold(self, ticket: Ticket) -> Outcome:
        """Hold ``ticket``'s statement until it is decided, expires or this task is cancelled (the client
        cancelled: the request is withdrawn)."""
        spec = ticket.spec
        now = self._now()
        request = Request(
            id=ticket.request_id,
            created=now,
            expires=now + spec.timeout,
            requester=Requester.model_validate(ticket.audit.actor.model_dump()),  # the session's actor
            origin=ticket.audit.origin,
            connection=ticket.connection,
            database=ticket.database,
            session_id=ticket.audit.session_id or ticket.request_id,
            gateway=self.gateway_id,
            statement=ticket.statement,
            columns=_columns(ticket.columns),
            binding=ticket.binding,
            rule=ticket.rule,
            why=_shown(ticket.why, 1024),
            approver_groups=spec.groups,
            quorum=spec.quorum,
            scope=spec.scope,
            session_for_seconds=int(spec.session_for.total_seconds()) if spec.session_for else None,
        )
        loop = asyncio.get_running_loop()
        hold = _Hold(ticket, request, 0, loop.create_future())
        # Registered and locked before the record is visible: a decision sent the moment it appears waits
        # for the revision instead of finding no such request.
        self._holds[request.id] = hold
        try:
            async with hold.lock:
                try:
                    hold.revision = await self._open(ticket, request)
                except ApprovalUnavailableError as exc:
                    del self._holds[request.id]
                    why = f"the approval service is unavailable ({exc})"
                    return Outcome("unavailable", ticket.request_id, why)
                delay = max(0.0, (request.expires - self._now()).total_seconds())
                hold.timer = loop.call_later(delay, self._expiry_due, hold)
            ticket.notify(_held_notice(request))
            return await asyncio.shield(hold.future)
        except asyncio.CancelledError:
            self._spawn(self._finish(hold, "withdrawn", "the client cancelled the statement"))
            raise

    async def _open(self, ticket: Ticket, request: Request) -> int:
        kv = self._kv
        if kv is None or not self.ready:
            raise ApprovalUnavailableError("NATS is not reachable from the gateway")
        data = ApprovalRequestedData(
            request_id=request.id,
            statement=request.statement,
            approver_groups=request.approver_groups,
            quorum=request.quorum,
            expires_at=format_utc(request.expires),
            scope="once" if request.scope == "statement" else "session",
            max_executions=1 if request.scope == "statement" else None,
            chd_access=False,
            privileged=False,
            justification=None,
            ticket=None,
        )
        await self._record(ticket, ApprovalRequested, data, result="pending", message=request.why)
        try:
            return await kv.create(request.id, request.model_dump_json().encode())
        except (nats.errors.Error, OSError) as exc:
            raise ApprovalUnavailableError(
                f"the request could not be stored: {exc.__class__.__name__}"
            ) from None

    async def _record(
        self,
        ticket: Ticket,
        event: type[Envelope],
        data: object,
        *,
        result: Result,
        code: str | None = None,
        message: str | None = None,
        actor: VerifiedIdentity | None = None,
        origin: Origin | None = None,
    ) -> None:
        """Append an event of the held statement's session and wait until it is durable."""
        subject, event_id, payload = ticket.audit.hook_event(
            event,
            data,
            rule=ticket.rule,
            result=result,
            code=code,
            message=message,
            actor=actor_of(actor) if actor is not None else None,
            origin=origin,
        )
        await self._durable(subject, event_id, payload)
        ticket.observe(payload)

    async def _durable(self, subject: str, event_id: str, payload: bytes) -> None:
        """Append one event to the audit spool and wait until it is durable: no evidence, no effect."""
        try:
            seq = self._spool.append_event(subject, event_id, payload)
            await self._spool.wait_durable(seq)
        except Exception as exc:  # SpoolUnavailable and friends
            raise ApprovalUnavailableError(f"the audit record could not be made durable: {exc}") from None

    # ------------------------------------------------------------------ decisions

    async def _on_decide(self, msg: Msg) -> None:
        # nats-py runs a subscription's callbacks one at a time: decisions on different requests must not
        # wait for each other's fsync and KV write (each request has its own lock).
        failed = DecideReply(refused="unavailable", message="the gateway could not process the decision")
        self._spawn(self._answer(msg, self._decide, failed))

    async def _on_whoami(self, msg: Msg) -> None:
        failed = WhoAmIReply(refused="invalid_request", message="the gateway could not verify the token")
        self._spawn(self._answer(msg, self._who, failed))

    async def _answer(
        self, msg: Msg, handle: Callable[[bytes], Awaitable[BaseModel]], failed: BaseModel
    ) -> None:
        try:
            reply = await handle(msg.data)
        except Exception:
            log.exception("approvals: answering on %s failed", msg.subject)
            reply = failed
        if msg.reply:
            with contextlib.suppress(Exception):
                await msg.respond(reply.model_dump_json().encode())

    async def _who(self, raw: bytes) -> WhoAmIReply:
        """Verify an approver's tool's token and say who it is; one that does not verify is a failed access
        attempt, recorded like a decision's."""
        try:
            if len(raw) > MAX_DECIDE_BYTES:
                raise ValueError("too large")
            req = WhoAmIRequest.model_validate_json(raw)
        except ValueError:  # pydantic's ValidationError included
            return WhoAmIReply(refused="invalid_request", message="the request is not valid")
        origin = Origin(addr=req.origin_addr or "local", port=None, client_app=req.client_app or _CLIENT_APP)
        try:
            who = await self._verifier.verify(req.token)
        except AuthFailure as exc:
            await self._auth_failed(exc, origin, None, "approver console sign-in")
            return WhoAmIReply(refused="invalid_token", message=f"your token does not verify: {exc.reason}")
        return WhoAmIReply(
            refused=None,
            message=f"signed in as {who.name or who.sub}",
            sub=who.sub,
            iss=who.iss,
            name=who.name,
            kind=who.kind,
            groups=who.groups,
            approver_groups=tuple(g for g in who.groups if g in self._approver_groups),
            expires=who.expires_at,
        )

    async def _decide(self, raw: bytes) -> DecideReply:
        if len(raw) > MAX_DECIDE_BYTES:
            return DecideReply(refused="invalid_request", message="the decision message is too large")
        try:
            req = DecideRequest.model_validate_json(raw)
        except ValidationError:
            return DecideReply(refused="invalid_request", message="the decision message is not valid")
        hold = self._holds.get(req.id) or self._finished.get(req.id)
        origin = Origin(addr=req.origin_addr or "local", port=None, client_app=req.client_app or _CLIENT_APP)
        try:
            approver = await self._verifier.verify(req.token)
        except AuthFailure as exc:
            log.warning("approvals: decision on %s with an unverifiable token (%s)", req.id, exc.reason)
            await self._auth_failed(exc, origin, hold, f"approval request {req.id}")
            return DecideReply(refused="invalid_token", message=f"your token does not verify: {exc.reason}")
        if hold is None:
            return DecideReply(refused="unknown_request", message=f"this gateway holds no request {req.id}")
        reason = sanitize(mask_text(req.reason)[0])[:1024]
        async with hold.lock:
            verdict = judge(
                hold.request,
                approver.sub,
                approver.iss,
                approver.groups,
                req.decision,
                req.binding,
                reason=reason,
                name=approver.name,
                now=self._now(),
                channel=req.channel,
                approver_kind=approver.kind,
                allow_self_approval=self._allow_self,
            )
            try:
                await self._record_decision(hold, verdict, req, reason, approver, origin)
                if verdict.record is None:
                    return _reply(verdict, hold.request)
                if verdict.final:
                    state = verdict.record.state
                    await self._store(hold, verdict.record)
                    self._settle(hold, _final_outcome(verdict.record, approver, reason))
                    log.info("approvals: request %s %s by %s", hold.request.id, state, approver.sub)
                else:
                    await self._store(hold, verdict.record)
            except ApprovalUnavailableError as exc:
                if verdict.record is not None:  # a decision we could not make stick refuses the statement
                    self._settle(hold, Outcome("unavailable", hold.request.id, f"approval failed ({exc})"))
                return DecideReply(refused="unavailable", message=str(exc), state=hold.request.state)
            return _reply(verdict, hold.request)

    async def _auth_failed(self, failure: AuthFailure, origin: Origin, hold: _Hold | None, obj: str) -> None:
        """An approver's token that does not verify is a failed access attempt (PCI DSS 10.2.1.4), attributed
        to whom it claims to be; recorded before the refusal is answered."""
        event_id, payload = auth_failed_event(
            actor=Actor(
                sub=failure.claimed_sub or "unknown",
                iss=failure.claimed_iss or self._issuer,
                name=None,
                groups=(),
                kind="human",
                on_behalf_of=None,
            ),
            origin=origin,
            target=Target(
                connection=hold.ticket.connection if hold is not None else None,
                protocol="nats",
                host=self.gateway_id,
                database=hold.ticket.database if hold is not None else None,
                object=obj,
            ),
            sqlstate=failure.sqlstate,
            message=f"a token that does not verify ({obj})",
            data=AuthFailedData(
                reason=failure.reason,
                auth_method="oidc_token",
                claimed_identity_source="token_claims" if failure.claimed_sub else "none",
                token_jti=failure.jti,
                consecutive_failures=1,
                lockout_until=None,
            ),
            policy_version=self._policy_version,
        )
        try:
            await self._durable(subject_for("auth.failed"), event_id, payload)
        except ApprovalUnavailableError as exc:  # the refusal stands either way
            log.error("approvals: auth.failed for %s not recorded: %s", obj, exc)

    async def _record_decision(  # noqa: PLR0917 - one decision's parts
        self,
        hold: _Hold,
        verdict: Judgement,
        req: DecideRequest,
        reason: str,
        approver: VerifiedIdentity,
        origin: Origin,
    ) -> None:
        request = verdict.record or hold.request
        statement = request.statement
        who = request.requester
        data = ApprovalDecidedData(
            request_id=request.id,
            decision=req.decision,
            reason=reason,
            requester=Principal(sub=who.sub, iss=who.iss, name=who.name),
            # a refused decision matched no group: the groups the request needed
            approver_groups_matched=verdict.matched_groups or request.approver_groups,
            statement_fingerprint=statement.fingerprint,
            statement_digest=statement.digest,
            approvals=request.approved,
            quorum=request.quorum,
            final=verdict.final,
            channel=req.channel,
        )
        if verdict.refused is not None:
            await self._record(
                hold.ticket,
                ApprovalDecided,
                data,
                result="failure",
                code=verdict.refused,
                message=verdict.message,
                actor=approver,
                origin=origin,
            )
        else:
            await self._record(
                hold.ticket, ApprovalDecided, data, result="success", actor=approver, origin=origin
            )

    async def _store(self, hold: _Hold, record: Request) -> None:
        """Compare-and-swap the record; a revision someone else wrote means the bucket was tampered
        with, and nothing that depends on it counts."""
        kv = self._kv
        if kv is None:
            raise ApprovalUnavailableError("NATS is not reachable from the gateway")
        try:
            hold.revision = await kv.update(
                hold.request.id, record.model_dump_json().encode(), last=hold.revision
            )
        except nats.js.errors.KeyWrongLastSequenceError:
            log.error("approvals: request %s was changed outside this gateway; refusing it", hold.request.id)
            raise ApprovalUnavailableError("the request record was changed outside the gateway") from None
        except (nats.errors.Error, OSError) as exc:
            raise ApprovalUnavailableError(
                f"the request could not be stored: {exc.__class__.__name__}"
            ) from None
        hold.request = record

    # ------------------------------------------------------------------ endings

    def _expiry_due(self, hold: _Hold) -> None:
        self._spawn(self._expire(hold))

    async def _expire(self, hold: _Hold) -> None:
        async with hold.lock:
            if hold.future.done():
                return
            request = hold.request
            message = f"request {request.id} expired at {format_utc(request.expires)} without a decision"
            try:
                record = request.model_copy(update={"state": "expired", "decided": self._now()})
                who = request.requester
                data = ApprovalExpiredData(
                    request_id=request.id,
                    requester=Principal(sub=who.sub, iss=who.iss, name=who.name),
                    statement_fingerprint=request.statement.fingerprint,
                    expires_at=format_utc(request.expires),
                    approvals=request.approved,
                    quorum=request.quorum,
                )
                await self._record(
                    hold.ticket, ApprovalExpired, data, result="failure", code="expired", message=message
                )
                await self._store(hold, record)
            except Exception:  # the statement is refused either way; a held one must never wait on
                log.exception("approvals: expiry of %s not fully recorded", request.id)
            finally:
                self._settle(hold, Outcome("expired", request.id, message))

    async def _finish(self, hold: _Hold, state: Literal["withdrawn"], message: str) -> None:
        async with hold.lock:
            if hold.future.done():
                return
            record = hold.request.model_copy(update={"state": state, "decided": self._now()})
            if hold.revision:  # else the record was never written
                with contextlib.suppress(ApprovalUnavailableError):
                    await self._store(hold, record)
            self._settle(hold, Outcome(state, hold.request.id, message))

    def _settle(self, hold: _Hold, outcome: Outcome) -> None:
        if hold.timer is not None:
            hold.timer.cancel()
        if not hold.future.done():
            hold.future.set_result(outcome)
        rid = hold.request.id
        self._holds.pop(rid, None)
        self._finished[rid] = hold
        while len(self._finished) > _FINISHED_KEPT:
            self._finished.popitem(last=False)

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    @property
    def pending(self) -> int:
        return len(self._holds)


def _final_outcome(record: Request, approver: VerifiedIdentity, reason: str) -> Outcome:
    who = approver.name or approver.sub
    if record.state == "approved":
        until = None
        if record.scope != "statement" and record.session_for_seconds and record.decided is not None:
            until = (record.decided + timedelta(seconds=record.session_for_seconds)).timestamp()
        return Outcome(
            "approved",
            record.id,
            f"request {record.id} approved by {who}",
            record.scope,
            until,
            actor_of(approver),
            reason,
        )
    message = f"request {record.id} was denied by {who}: {reason}"
    return Outcome("denied", record.id, message, approver=actor_of(approver), reason=reason)


def _reply(verdict: Judgement, request: Request) -> DecideReply:
    record = verdict.record or request
    refused: Refusal | None = verdict.refused
    return DecideReply(
        refused=refused,
        message=verdict.message,
        state=record.state,
        approvals=record.approved,
        quorum=record.quorum,
    )


def _columns(columns: tuple[str, ...]) -> tuple[str, ...]:
    """Column names as a record may show them."""
    shown = (_shown(c, 512) for c in columns)
    return tuple(dict.fromkeys(c for c in shown if c))[:64]


def _shown(text: str, limit: int) -> str:
    """Names (identifiers, a rule's explanation) as a record may show them: identifiers can hold anything,
    card numbers and control characters included."""
    return _NOT_LABEL.sub("\ufffd", mask_text(text)[0])[:limit]


def _held_notice(request: Request) -> str:
    groups = ", ".join(request.approver_groups)
    if request.scope == "access":
        what, withdraw = f"access to connection {request.connection} needs approval", "close the connection"
    else:
        what, withdraw = f"statement held for approval (rule {request.rule})", "cancel the statement"
    return (
        f"pcigate: {what}: request {request.id}; approvers: {groups} ({request.quorum} needed); expires "
        f"{format_utc(request.expires)}. An approver runs `pcigate approvals approve {request.id} --reason "
        f"TEXT --token JWT`; {withdraw} to withdraw the request."
    )
