"""One client session: the only place that owns the client and upstream transports.

The handshake (TLS, token, upstream login) is a coroutine; after it, bytes flow through two callbacks
(:meth:`PgSession._from_client`, :meth:`PgSession._from_upstream`) that frame messages with the pure codec,
keep the statement bookkeeping, call hooks, and forward untouched messages as the bytes received.

The audit rule: every statement gets an *intent* record in the spool before it goes upstream. A statement
that may change data or privileges is held until its intent is durable; a read may start at once, but
nothing upstream answers reaches the client until every intent sent so far is durable. When the statement
completes, its ``command.executed`` event (same id) follows. If the spool cannot accept, the statement is
refused with SQLSTATE 58030 and never reaches upstream.

Responses are matched to requests with a FIFO of what each request will produce (PostgreSQL answers in
order; after an error it skips to the next Sync), so a refused statement is swapped upstream for a harmless
one that fails the same way, and its ErrorResponse for ours: the client and server stay in step, in
pipelines too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from gateway import audit
from gateway.approvals.access import AccessGate, AccessRefusedError, Grant
from gateway.endpoint import Endpoint, PeerClosedError
from gateway.hooks import (
    ALLOW,
    HookChain,
    PendingStatement,
    RowHandler,
    SessionInfo,
    StatementView,
    Verdict,
    apply_row_handlers,
)
from gateway.identity import AuthFailure, VerifiedIdentity, unverified_claims
from gateway.pgwire import messages as m
from gateway.pgwire import startup as st
from gateway.pgwire.messages import Buf
from gateway.policy.fastpath import call_text
from gateway.recording import SessionRecorder
from gateway.result_limits import Breach, ResultBudget
from gateway.spool_waits import SpoolUnavailable
from gateway.sqltext import audit_text, named_statement, split_statements
from gateway.upstream import UpstreamConnection, UpstreamError, cancel_upstream, connect_upstream
from schemas.ids import format_utc, new_event_id
from schemas.models import (
    Actor,
    AuthFailedData,
    CommandBlocked,
    CommandBlockedData,
    Envelope,
    Origin,
    RecordingChunk,
    SessionClosedData,
    SessionOpenedData,
    Statement,
)

if TYPE_CHECKING:
    from gateway.runtime import ListenerContext

__all__ = ["PgSession"]

log = logging.getLogger(__name__)

NEWEST_MINOR: Final = 0  # we speak protocol 3.0 to clients and upstream
HANDSHAKE_TIMEOUT: Final = 30.0
_SUBJECT_EXECUTED: Final = audit.subject_for("command.executed")

# Startup parameters passed upstream; everything else is dropped (and the client told), because options
# like `options=-c role=...` or `replication` would let a client reach around the gateway's policy.
FORWARDED_PARAMS: Final = frozenset(
    {
        "application_name",
        "client_encoding",
        "datestyle",
        "intervalstyle",
        "timezone",
        "extra_float_digits",
        "statement_timeout",
        "lock_timeout",
        "idle_in_transaction_session_timeout",
        "default_transaction_read_only",
        "default_transaction_isolation",
        "bytea_output",
        "geqo",
        "jit",
    }
)

# Expected responses, one FIFO entry per request that produces one.
K_PARSE: Final = 1
K_BIND: Final = 2
K_DESCRIBE: Final = 3
K_EXECUTE: Final = 4
K_CLOSE: Final = 5
K_SYNC: Final = 6
K_QUERY: Final = 7
K_FUNC: Final = 8

_D = m.DATA_ROW
_C = m.COMMAND_COMPLETE
_Z = m.READY_FOR_QUERY
_E = m.ERROR_RESPONSE
_T = m.ROW_DESCRIPTION

REFUSED_QUERY: Final = m.query("pcigate statement refused")  # fails with 42601 and runs nothing
RESERVED: Final = (
    "pcigate\x1f"  # statement and portal names the gateway keeps for itself (clients' are refused)
)
REFUSED_PORTAL: Final = RESERVED + "refused"  # never bound: Execute or Bind naming it fails upstream


class SessionEnd(Exception):  # noqa: N818 - a control-flow signal, not an error
    """End the session: ``reason`` is the session.closed reason, ``fatal`` the bytes for the client."""

    def __init__(self, reason: str, fatal: bytes | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fatal = fatal


def fatal(sqlstate: str, message: str, hint: str | None = None) -> bytes:
    return m.error_response("FATAL", sqlstate, message, hint=hint)


@dataclass(slots=True)
class Running:
    """A statement between its intent and its completion."""

    view: StatementView
    event_id: str
    draft: str  # the event's parts fixed at the start (SessionAudit.command_draft)
    started_ns: int = 0


@dataclass(slots=True)
class Prepared:
    text: str
    oids: list[int]
    fields: list[m.FieldDesc] | None = None  # from a Describe of the statement (all in text format)


@dataclass(slots=True)
class Portal:
    text: str
    params: list[bytes | None] | None
    formats: list[int]
    oids: list[int]
    prepared: Prepared | None = None
    result_formats: list[int] = field(default_factory=list)
    described: list[m.FieldDesc] | None = None  # from a Describe of the portal (with the real formats)

    def fields(self) -> list[m.FieldDesc] | None:
        """The columns its Execute returns, in the formats Bind asked for; None when never described."""
        if self.described is not None:
            return self.described
        if self.prepared is None or self.prepared.fields is None:
            return None
        rf = self.result_formats
        return [
            dataclasses.replace(f, format=(rf[0] if len(rf) == 1 else rf[i]) if rf else 0)
            for i, f in enumerate(self.prepared.fields)
        ]


@dataclass(slots=True)
class Expect:
    kind: int
    stmts: list[Running] = field(default_factory=list)
    idx: int = 0
    refused: bytes | None = None  # our ErrorResponse to send instead of upstream's
    failed: bool = False
    row_hooks: tuple[RowHandler, ...] = ()
    portal: Portal | None = None  # K_EXECUTE: its rows are planned from the portal's fields
    planned: bool = False
    described: Prepared | Portal | None = None  # K_DESCRIBE: what the RowDescription describes


@dataclass(slots=True)
class Cut:
    """A statement whose results passed a result limit: the rest of them is withheld, the statement is
    cancelled upstream, and the client's next requests wait until both sides agree again."""

    entry: Expect  # whose results are withheld
    error: bytes  # what the client gets instead of the statement's completion
    message: str
    until: Expect | None  # the entry whose ReadyForQuery ends the cut (None: no ReadyForQuery is coming)
    ready: asyncio.Future[None]
    completed: bool = False  # it completed upstream before the cancel: upstream's transaction did not fail
    task: asyncio.Task[None] | None = None


class PgSession:
    """See the module docstring."""

    def __init__(self, ctx: ListenerContext, client: Endpoint) -> None:
        self.ctx = ctx
        self.client = client
        self.upstream: UpstreamConnection | None = None
        self.session_id = new_event_id()
        self.opened_ns = time.monotonic_ns()
        peer = client.transport.get_extra_info("peername") if client.transport else None
        self.client_addr: str = peer[0] if isinstance(peer, tuple) else "local"
        self.client_port: int | None = peer[1] if isinstance(peer, tuple) else None
        self.client_app: str | None = None
        self.identity: VerifiedIdentity | None = None
        self.audit: audit.SessionAudit | None = None
        self.hooks = HookChain()
        self.recording: SessionRecorder | None = None  # fed the statements and events hooks do not see
        self.info: SessionInfo | None = None
        self.cancel_pid = 0
        self.cancel_key = b""
        self.tls = False
        self.privileged = False
        # relay state
        self._max_msg = ctx.connection.limits.max_message_bytes
        self._max_stmt = ctx.connection.limits.max_statement_bytes
        self._cbuf = b""
        self._ubuf = b""
        self._expect: deque[Expect] = deque()
        self._prepared: dict[str, Prepared] = {}
        self._portals: dict[str, Portal] = {}
        self._sequence = 0
        self._resp_gate = 0
        # After an error in the extended protocol the server ignores every message up to the next Sync;
        # true while that applies to messages the client has not sent yet when the error arrived.
        self._skipping = False
        self._refused_portals: set[str] = set()  # portals whose Bind we refused, until the next Sync
        self._last_seq = 0  # this session's newest audit record
        self._held_up: bytes | bytearray | None = None
        self._client_backlog: list[bytes] = []
        self._backlog_bytes = 0
        self._wait: asyncio.Task[None] | None = None  # a hook's wait before judging a held statement
        self._scs = True  # standard_conforming_strings, as upstream last reported it
        self._held_down: deque[tuple[int, bytes | bytearray]] = deque()
        self._down_waiting = False
        self._done: asyncio.Future[str] | None = None
        self._copy_hooks_out = False
        self._budget: ResultBudget | None = None  # None: this identity kind's results are not bounded
        self._cut: Cut | None = None
        self._grant: Grant | None = None  # connections[].jit: the grant this session is open in
        self._last_activity = time.monotonic()
        self._idle_handle: asyncio.TimerHandle | None = None
        # totals for session.closed
        self.bytes_from_client = 0
        self.bytes_to_client = 0
        self.statements = 0
        self.statements_blocked = 0
        self.rows = 0
        self.masked_values = 0

    # ============================================================================ handshake

    async def run(self) -> None:
        reason = "client_closed"
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT) as deadline:
                opened = await self._handshake(deadline)
            if not opened:
                return
            reason = await self._relay()
        except SessionEnd as end:
            reason = end.reason
            if end.fatal is not None:
                self.client.write(end.fatal)
        except m.ProtocolError as exc:
            reason = "protocol_error"
            self.client.write(fatal(exc.sqlstate, f"pcigate: invalid protocol input: {exc.message}"))
        except TimeoutError:
            reason = "protocol_error"
            self.client.write(fatal("08006", "pcigate: the client did not complete the login in time"))
        except PeerClosedError:
            reason = "client_closed"
        except Exception:
            log.exception("session %s failed", self.session_id)
            reason = "protocol_error"
            self.client.write(fatal("XX000", "pcigate: internal gateway error; the session was closed"))
        finally:
            if self._wait is not None:
                self._wait.cancel()
            if self._cut is not None and self._cut.task is not None:
                self._cut.task.cancel()
            await self._finish(reason)

    async def _handshake(self, deadline: asyncio.Timeout) -> bool:
        ctx = self.ctx
        client = self.client
        tls_offered = False
        while True:
            packet = st.parse_startup_packet(await client.read_startup_packet(), newest_minor=NEWEST_MINOR)
            if isinstance(packet, st.SslRequest):
                if tls_offered or self.tls:
                    raise m.ProtocolError("duplicate SSLRequest")
                tls_offered = True
                if ctx.server_tls is None:
                    client.write(b"N")
                    continue
                client.write(b"S")
                await client.start_tls(ctx.server_tls, server_side=True, hostname=None)
                self.tls = True
            elif isinstance(packet, st.GssEncRequest):
                client.write(b"N")  # no GSSAPI encryption: libpq then tries SSL or plain as configured
            elif isinstance(packet, st.CancelRequest):
                await ctx.cancels.cancel(packet.pid, packet.key)
                return False
            else:
                break
        startup = packet
        params = startup.params
        self.client_app = _label(params.get("application_name"))
        if ctx.connection.tls_required and not self.tls:
            raise SessionEnd(
                "protocol_error",
                fatal(
                    "28000",
                    "pcigate: this listener requires TLS",
                    "connect with sslmode=require or verify-full",
                ),
            )
        negotiation = st.negotiation_needed(startup, NEWEST_MINOR)
        if negotiation is not None:
            client.write(negotiation)
        if params.get("replication", "false").lower() not in ("false", "off", "no", "0"):
            raise SessionEnd(
                "protocol_error", fatal("0A000", "pcigate: replication connections are not supported")
            )
        database = params.get("database") or params.get("user", "")
        if database != ctx.connection.upstream.database:
            raise SessionEnd(
                "protocol_error",
                fatal(
                    "3D000",
                    f'pcigate: database "{_printable(database)}" is not served here',
                    f'this listener serves database "{ctx.connection.upstream.database}"',
                ),
            )
        client.write(m.authentication_cleartext_password())
        limit = ctx.identity_config.max_token_bytes
        try:
            typ, body = await client.read_message(limit + 64)
        except m.MessageTooLarge:
            await self._auth_failed(
                AuthFailure(
                    "credential_malformed",
                    f"pcigate: the token is larger than this gateway accepts ({limit} bytes)",
                    detail="password message over identity.max_token_bytes",
                ),
                oversized=True,
            )
        if typ != m.PASSWORD:
            raise m.ProtocolError("expected a password message")
        token = m.parse_password(body).decode("utf-8", "replace").strip()
        identity = await self._verify(token)
        role = ctx.role_for(identity.groups)
        if role is None:
            await self._auth_failed(
                AuthFailure(
                    "no_group_grants_connection",
                    f'pcigate: none of your groups may use connection "{ctx.connection.name}"',
                    claimed_sub=identity.sub,
                    claimed_iss=identity.iss,
                    jti=identity.jti,
                ),
                identity=identity,
            )
            return False
        self.identity = identity
        self._budget = ResultBudget.for_kind(ctx.connection.limits.results, identity.kind)
        ctx.failures.succeeded(identity.sub, self.client_addr)  # "consecutive" failures end here
        self.audit = ctx.session_audit(self.session_id, identity, self._origin())
        self.info = SessionInfo(
            session_id=self.session_id,
            identity=identity,
            connection=ctx.connection.name,
            database=ctx.connection.upstream.database,
            upstream_role=role.user,
            client_addr=self.client_addr,
            client_port=self.client_port,
            client_app=self.client_app,
            tls=self.tls,
            emit=self._emit_hook_event,
            notify=self._notify,
            audit=self.audit,
            observe=self._observe_event,
        )
        self.hooks = HookChain(ctx.hook_factory(self.info) if ctx.hook_factory else ())
        self.recording = next((h for h in self.hooks.hooks if isinstance(h, SessionRecorder)), None)
        verdict = self.hooks.authenticated(self.info)
        if verdict.action != "allow":
            raise SessionEnd("policy_terminated", fatal(verdict.sqlstate, verdict.message))
        out: list[bytes] = [m.authentication_ok()]
        if ctx.access is not None and ctx.access.applies_to(identity):
            self._write_client(out.pop())  # before the notices of a wait for access
            self._grant = await self._enter_grant(ctx.access, identity, role.user, deadline)
        forwarded = {k: v for k, v in params.items() if k.lower() in FORWARDED_PARAMS}
        ignored = sorted(
            k for k in params if k.lower() not in FORWARDED_PARAMS and k not in ("user", "database")
        )
        try:
            self.upstream = await connect_upstream(
                ctx.connection.upstream,
                role.user,
                ctx.password_for(role),
                forwarded,
                tls_context=ctx.upstream_tls,
            )
        except UpstreamError as exc:
            log.error("session %s: %s", self.session_id, exc)
            raise SessionEnd("upstream_closed", fatal(exc.sqlstate, exc.client_message)) from None
        up = self.upstream
        self.privileged = up.parameters.get("is_superuser") == "on"
        # Where statements end depends on it (a role or database default may turn it off); kept current
        # from the server's ParameterStatus reports.
        self._scs = up.parameters.get("standard_conforming_strings", "on") == "on"
        _check_encoding(up.parameters.get("client_encoding", "UTF8"))
        self.cancel_pid, self.cancel_key = ctx.cancels.register(self)
        out += [m.parameter_status(k, v) for k, v in up.parameters.items()]
        out.append(m.backend_key_data(self.cancel_pid, self.cancel_key))
        out += up.notices
        if ignored:
            out.append(
                m.notice_response(
                    "NOTICE",
                    "01000",
                    "pcigate: startup parameters not passed to the database: " + ", ".join(ignored),
                )
            )
        self._emit_session_opened(role.user, identity)
        out.append(m.ready_for_query(b"I"))
        self._write_client(b"".join(out))
        log.info(
            "session %s opened: %s (%s) from %s:%s as %s",
            self.session_id,
            identity.sub,
            identity.kind,
            self.client_addr,
            self.client_port,
            role.user,
        )
        return True

    async def _enter_grant(
        self, gate: AccessGate, identity: VerifiedIdentity, role: str, deadline: asyncio.Timeout
    ) -> Grant:
        """Wait (without the login's deadline) for the identity's grant to this connection. The client
        says nothing until its session opens: a message or a close now means it gave up."""
        assert self.audit is not None
        deadline.reschedule(None)
        entering = asyncio.ensure_future(gate.enter(identity, self.audit, role, self._notify))
        gone = asyncio.ensure_future(self.client.read_message(64))
        try:
            await asyncio.wait((entering, gone), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (entering, gone):
                if not task.done():
                    task.cancel()
        if not entering.done() or entering.cancelled():
            raise SessionEnd("client_closed")
        try:
            grant = entering.result()
        except AccessRefusedError as exc:
            raise SessionEnd("policy_terminated", fatal(exc.sqlstate, exc.message)) from None
        deadline.reschedule(asyncio.get_running_loop().time() + HANDSHAKE_TIMEOUT)
        return grant

    def revoke(self, message: str) -> None:
        """The grant this session opened in has ended."""
        self._end("access_revoked", fatal("57P01", message, "reconnect to ask for access again"))

    def _emit_hook_event(
        self, event: type[Envelope], data: object, *, rule: str | None = None, pci: Sequence[str] = ()
    ) -> str:
        """A hook's event, appended like a statement's completion (it shares the next flush); without a
        spool the session ends, as for any record it cannot keep."""
        assert self.audit is not None
        subject, event_id, payload = self.audit.hook_event(event, data, rule=rule, pci=pci)
        try:
            self._last_seq = self.ctx.spool.append_event(subject, event_id, payload, lazy=True)
        except SpoolUnavailable as exc:
            raise SessionEnd("protocol_error", fatal("58030", _spool_message(exc), _SPOOL_HINT)) from None
        if self.recording is not None and event is not RecordingChunk:  # a chunk's own hash: in the ledger
            self.recording.record_event(payload)
        return event_id

    def _observe_event(self, payload: bytes) -> None:
        if self.recording is not None:
            self.recording.record_event(payload)

    async def _verify(self, token: str) -> VerifiedIdentity:
        if not token:
            failure = AuthFailure(
                "credential_missing", "pcigate: no token: send your OIDC token as the password"
            )
        else:
            try:
                return await self.ctx.verifier.verify(token)
            except AuthFailure as exc:
                failure = exc
        await self._auth_failed(failure, token=token)
        raise AssertionError("unreachable: _auth_failed raises")

    async def _auth_failed(
        self,
        failure: AuthFailure,
        *,
        token: str = "",
        identity: VerifiedIdentity | None = None,
        oversized: bool = False,
    ) -> None:
        ctx = self.ctx
        count = ctx.failures.record(failure.claimed_sub, self.client_addr)
        if identity is not None:
            actor = audit.actor_of(identity)
        else:
            actor = _claimed_actor(failure, token, ctx.identity_config.issuer, ctx)
        event_id, payload = audit.auth_failed_event(
            actor=actor,
            origin=self._origin(),
            target=ctx.target(None),
            sqlstate=failure.sqlstate,
            message=_label(failure.client_message.removeprefix("pcigate: ")[:1024])
            or "authentication failed",
            data=AuthFailedData(
                reason=failure.reason,
                auth_method="oidc_token" if token or identity or oversized else None,
                claimed_identity_source="token_claims" if failure.claimed_sub else "none",
                token_jti=failure.jti,
                consecutive_failures=count,
                lockout_until=None,
            ),
            policy_version=ctx.policy_version,
        )
        try:
            seq = ctx.spool.append_event(audit.subject_for("auth.failed"), event_id, payload)
            await ctx.spool.wait_durable(seq)
        except SpoolUnavailable as exc:
            log.error("auth.failed event could not be spooled: %s", exc.reason)
        log.warning(
            "authentication failed from %s:%s: %s", self.client_addr, self.client_port, failure.reason
        )
        message = failure.client_message
        raise SessionEnd(
            "protocol_error",
            fatal(failure.sqlstate, message if message.startswith("pcigate") else f"pcigate: {message}"),
        )

    def _origin(self) -> Origin:
        return Origin(addr=_addr(self.client_addr), port=self.client_port, client_app=self.client_app)

    def _emit_session_opened(self, role: str, identity: VerifiedIdentity) -> None:
        assert self.audit is not None
        sslobj = self.client.ssl_object()
        version = sslobj.version() if sslobj is not None else None
        cipher = sslobj.cipher() if sslobj is not None else None
        matched = tuple(g for g in identity.groups if g in self.ctx.role_groups(role))
        event_id, payload = self.audit.session_opened(
            SessionOpenedData(
                auth_method="oidc_token",
                token_jti=identity.jti,
                token_expires_at=format_utc(identity.expires_at),
                amr=identity.amr,
                tls_version=version if version in ("TLSv1.2", "TLSv1.3") else None,
                tls_cipher=cipher[0] if cipher else None,
                upstream_role=role,
                matched_groups=matched,
                idle_timeout_s=min(86400, int(self.ctx.connection.limits.idle_timeout.total_seconds())),
            )
        )
        try:
            self._last_seq = self.ctx.spool.append_event(
                audit.subject_for("session.opened"), event_id, payload, lazy=True
            )
        except SpoolUnavailable as exc:
            raise SessionEnd(
                "protocol_error",
                fatal("58030", f"pcigate: the audit spool cannot accept records ({exc.reason})", _SPOOL_HINT),
            ) from None

    # ============================================================================ relay

    async def _relay(self) -> str:
        assert self.upstream is not None
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        if self._grant is not None:
            if self._grant.ended:
                return "access_revoked"
            self._grant.sessions.add(self)
        up = self.upstream.endpoint
        up.relay(self._from_upstream, self._upstream_lost, self.client.pause_reading, self._upstream_drained)
        self.client.relay(self._from_client, self._client_lost, up.pause_reading, self._client_drained)
        self._arm_idle_timer()
        return await self._done

    def _end(self, reason: str, fatal_bytes: bytes | None = None) -> None:
        if self._done is not None and not self._done.done():
            if fatal_bytes is not None:
                self.client.write(fatal_bytes)
            self._done.set_result(reason)

    def _write_client(self, data: bytes) -> None:
        self.bytes_to_client += len(data)
        self.client.write(data)

    def _client_drained(self) -> None:
        if self.upstream is not None:
            self.upstream.endpoint.resume_reading()

    def _upstream_drained(self) -> None:
        if self._held_up is None and self._wait is None:
            self.client.resume_reading()

    def _client_lost(self, exc: Exception | None) -> None:
        self._end("client_closed")

    def _upstream_lost(self, exc: Exception | None) -> None:
        self._end("upstream_closed")

    # --------------------------------------------------------------------------- client -> upstream

    def _from_client(self, data: bytes) -> None:
        self.bytes_from_client += len(data)
        self._last_activity = time.monotonic()
        if self._held_up is not None or self._wait is not None or self._client_backlog or self._cut:
            self._client_backlog.append(data)
            self._backlog_bytes += len(data)
            if self._backlog_bytes > self._max_msg:
                self.client.pause_reading()  # enough waiting: the rest stays in the client's socket
            return
        self._guarded(self._process_client, data)

    def _guarded(self, process: Callable[[bytes], None], data: bytes) -> None:
        """Run client-side processing; bad input or a session-ending condition ends this session only."""
        try:
            process(data)
        except m.ProtocolError as exc:
            self._end(
                "protocol_error", fatal(exc.sqlstate, f"pcigate: invalid protocol input: {exc.message}")
            )
        except SessionEnd as end:
            self._end(end.reason, end.fatal)

    def _process_client(self, data: bytes) -> None:
        buf = self._cbuf + data if self._cbuf else data
        msgs, end = m.scan(buf, 0, self._max_msg)
        self._cbuf = buf[end:]
        if not msgs:
            return
        parts: list[bytes | bytearray] | None = None
        last = 0
        gate = 0  # highest intent seq that must be durable before this batch goes upstream
        sent = 0  # highest intent seq in this batch
        expect = self._expect
        waits = self.hooks.wants_waits
        for typ, s, e in msgs:
            replacement: bytes | None = None
            if self._skipping and typ not in _NOT_SKIPPED:
                self._skipped(typ, buf, s, e)
                # The server would ignore it (it skips to Sync): not sent at all, so that if the skip was
                # ours and the server is not skipping after all, nothing unjudged runs.
                parts, last = _splice(parts, buf, last, s, e, b"")
                continue
            if waits and typ in _JUDGED:
                wait = self._wait_before(typ, buf, s, e)
                if wait is not None:
                    # This message and all after it wait; what came before goes on now.
                    self._client_backlog.insert(0, bytes(buf[s:]))
                    self._cbuf = b""
                    end = s
                    self._hold_for(wait)
                    break
            if typ == m.QUERY:
                replacement, seq, write = self._on_query(buf, s, e)
                if seq:
                    sent = seq
                    if write:
                        gate = seq
            elif typ == m.BIND:
                replacement = self._on_bind(buf, s, e)
            elif typ == m.EXECUTE:
                replacement, seq, write = self._on_execute(buf, s, e)
                if seq:
                    sent = seq
                    if write:
                        gate = seq
            elif typ == m.PARSE:
                replacement = self._on_parse(buf, s, e)
            elif typ == m.SYNC:
                self._skipping = False
                self._refused_portals.clear()
                expect.append(Expect(K_SYNC))
            elif typ == m.DESCRIBE:
                kind, name = m.parse_describe(m.message_body(buf, s, e))
                _client_name(name)
                target = self._prepared.get(name) if kind == "S" else self._portals.get(name)
                expect.append(Expect(K_DESCRIBE, described=target))
            elif typ == m.CLOSE:
                kind, name = m.parse_close(m.message_body(buf, s, e))
                _client_name(name)
                if kind == "S":
                    self._prepared.pop(name, None)
                else:
                    self._portals.pop(name, None)
                expect.append(Expect(K_CLOSE))
            elif typ in (m.COPY_DATA, m.COPY_DONE, m.COPY_FAIL, m.FLUSH):
                if typ == m.COPY_DATA and self.hooks.wants_copy_data:
                    body = bytes(m.message_body(buf, s, e))
                    new = self.hooks.copy_data(self._current_stmt(), body)
                    if new is not body:
                        replacement = m.frame(m.COPY_DATA, new)
            elif typ == m.TERMINATE:
                if self.upstream is not None:
                    self.upstream.endpoint.write(m.terminate())
                raise SessionEnd("client_closed")
            elif typ == m.FUNCTION_CALL:
                replacement, seq = self._on_function_call(buf, s, e)
                if seq:
                    sent = gate = seq
            else:
                raise m.ProtocolError(f"unexpected message type {chr(typ)!r} from the client")
            if replacement is not None:
                parts, last = _splice(parts, buf, last, s, e, replacement)
        out = _joined(buf, end, parts, last)
        self._resp_gate = max(self._resp_gate, sent)
        if not out:
            return
        if gate and self.ctx.spool.durable_seq < gate:
            self._held_up = out
            self.client.pause_reading()
            self.ctx.spool.when_durable(gate, self._release_up)
        else:
            assert self.upstream is not None
            self.upstream.endpoint.write(out)

    def _release_up(self, error: SpoolUnavailable | None) -> None:
        held, self._held_up = self._held_up, None
        if error is not None:
            self._end("protocol_error", fatal("58030", _spool_message(error), _SPOOL_HINT))
            return
        assert self.upstream is not None and held is not None
        self.upstream.endpoint.write(held)
        self._drain_backlog()

    def _drain_backlog(self) -> None:
        """Client bytes that arrived while a batch was held or a statement waited: one batch now, judged
        and gated like any other; then read from the client again if nothing holds it back."""
        if (
            self._held_up is not None
            or self._wait is not None
            or self._cut is not None
            or self._done is None
            or self._done.done()
        ):
            return
        backlog, self._client_backlog = self._client_backlog, []
        self._backlog_bytes = 0
        if backlog:
            self._guarded(self._process_client, b"".join(backlog))
        if self._held_up is None and self._wait is None and not self.client.closed:
            assert self.upstream is not None
            if not self.upstream.endpoint.write_paused:
                self.client.resume_reading()

    def _wait_before(self, typ: int, buf: bytes, s: int, e: int) -> Awaitable[None] | None:
        """What a hook wants to wait for before the statements of this Query, Bind or Execute are judged."""
        body = m.message_body(buf, s, e)
        scs_on = self._scs_settled()
        pending: list[PendingStatement]
        if typ == m.QUERY:
            if len(body) - 1 > self._max_stmt:
                return None  # refused as too long when it is judged
            texts = split_statements(m.parse_query(body), standard_conforming_strings=self._scs)
            pending = [PendingStatement(text, scs_on=scs_on) for text in texts]
        elif typ == m.BIND:
            bind = m.parse_bind(body)
            prepared = self._prepared.get(bind.statement)
            if prepared is None:
                return None
            pending = [_bound(prepared, bind, scs_on)]
        else:
            portal = self._portals.get(m.parse_execute(body).portal)
            if portal is None:
                return None
            pending = [
                PendingStatement(
                    portal.text, portal.params, portal.formats, portal.oids or (), "extended", scs_on
                )
            ]
        for stmt in pending:
            wait = self.hooks.wait_before(stmt)
            if wait is not None:
                return wait
        return None

    def _scs_settled(self) -> bool:
        """standard_conforming_strings is on as the server last reported it, and no statement that could
        change it is still running."""
        return self._scs and not any(x.kind in _RUNS for x in self._expect)

    def _notify(self, message: str) -> None:
        """A notice to the client between whole messages (the relay only ever writes whole ones)."""
        if not self.client.closed:
            notice = m.notice_response("NOTICE", "00000", message)
            self.bytes_to_client += len(notice)
            self.client.write(notice)

    def _hold_for(self, wait: Awaitable[None]) -> None:
        """Hold what the client sends until ``wait`` is over (a hook bounds it), then go on. Reading goes
        on (up to a message's worth of backlog): a client that disconnects while its statement waits for a
        person ends the session, which withdraws the request, instead of leaving it to be approved and run
        for nobody."""

        async def waiting() -> None:
            try:
                await wait
            except Exception:  # the hook's trouble: the statement is judged as things stand
                log.exception("session %s: waiting before a statement failed", self.session_id)
            finally:
                self._wait = None
                self._drain_backlog()

        self._wait = asyncio.ensure_future(waiting())

    def _on_query(self, buf: bytes, s: int, e: int) -> tuple[bytes | None, int, bool]:
        body = m.message_body(buf, s, e)
        if len(body) - 1 > self._max_stmt:
            return self._refuse_query(_too_long(len(body) - 1, self._max_stmt)), 0, False
        sql = m.parse_query(body)
        texts = split_statements(sql, standard_conforming_strings=self._scs)
        if (
            "\\" in sql
            and self._expect
            and texts != split_statements(sql, standard_conforming_strings=not self._scs)
        ):
            # Statements still in flight may change standard_conforming_strings before this one is read,
            # and where this one's statements end depends on it: it is not run on a guess.
            return self._refuse_query(fatal_free("42601", _SCS_IN_FLIGHT, _SCS_HINT)), 0, False
        entry = Expect(K_QUERY)
        seq = 0
        write = False
        for text in texts:
            try:
                running, verdict, seq_i = self._begin(text, None, [], "simple")
            except SpoolUnavailable as exc:
                self._abandon(entry)
                return self._refuse_query(fatal_free("58030", _spool_message(exc), _SPOOL_HINT)), 0, False
            if verdict.action != "allow":
                self._abandon(entry)
                return self._refuse_query(_blocked(verdict)), 0, False
            assert running is not None
            entry.stmts.append(running)
            seq = seq_i
            write = write or not running.view.info.read_only
        now = time.perf_counter_ns()
        for r in entry.stmts:
            r.started_ns = now
        self._expect.append(entry)
        return None, seq, write

    def _skipped(self, typ: int, buf: bytes, s: int, e: int) -> None:
        """A message the server ignores (it is skipping to Sync): nothing of it runs and nothing answers.
        Statements it would have run are recorded as not run."""
        body = m.message_body(buf, s, e)
        todo: list[tuple[str, Portal | None, str]] = []
        if typ == m.QUERY:
            texts = split_statements(m.parse_query(body), standard_conforming_strings=self._scs)
            todo = [(text, None, "simple") for text in texts]
        elif typ == m.EXECUTE:
            name = m.parse_execute(body).portal
            portal = self._portals.get(name) if name not in self._refused_portals else None
            if portal is not None:
                todo = [(portal.text, portal, "extended")]
        elif typ == m.FUNCTION_CALL:
            todo = [(_function_text(body), None, "function")]
        for text, portal, protocol in todo:
            try:
                if portal is None:
                    running, _, _ = self._begin(text, None, [], protocol)
                else:
                    running, _, _ = self._begin(text, portal.params, portal.formats, protocol, portal.oids)
            except SpoolUnavailable:
                return  # nothing runs anyway; the next statement that would run is refused
            if running is not None:
                self._complete(running, "failure", code="not_run", message=_NOT_RUN)

    def _refuse_query(self, error: bytes) -> bytes:
        self._expect.append(Expect(K_QUERY, refused=error))
        return REFUSED_QUERY

    def _on_parse(self, buf: bytes, s: int, e: int) -> bytes | None:
        msg = m.parse_parse(m.message_body(buf, s, e))
        _client_name(msg.name)
        if len(msg.query) > self._max_stmt:
            # The Parse fails upstream the same way a too-long statement would fail there.
            self._expect.append(
                Expect(K_PARSE, refused=fatal_free("54000", *_too_long_text(len(msg.query), self._max_stmt)))
            )
            return m.parse("", "pcigate statement refused")
        if self.hooks.wants_parses:
            pending = PendingStatement(msg.query, protocol="extended", scs_on=self._scs_settled())
            verdict = self.hooks.parse(pending)
            if verdict.action != "allow":
                return self._refuse_parse(msg.name, msg.query, verdict)
        self._prepared[msg.name] = Prepared(msg.query, msg.param_oids)
        self._expect.append(Expect(K_PARSE))
        return None

    def _refuse_parse(self, name: str, text: str, verdict: Verdict) -> bytes:
        """A blocked statement stops at its Parse: recorded like any refusal, and replaced by a Parse that
        fails upstream (its error becomes ours), so the server and the client both skip to Sync."""
        refusal = self._refusal(text, None, [], None, verdict)
        if not name:  # a Parse of the unnamed statement drops the one before it, even when it fails
            self._prepared.pop("", None)
        self._expect.append(Expect(K_PARSE, refused=refusal))
        return m.parse(name, "pcigate statement refused")

    def _on_bind(self, buf: bytes, s: int, e: int) -> bytes | None:
        msg = m.parse_bind(m.message_body(buf, s, e))
        _client_name(msg.portal)
        prepared = self._prepared.get(_client_name(msg.statement))
        if prepared is None:
            # Unknown here: never prepared, or prepared by SQL PREPARE (whose text this session cannot
            # bind to what runs). Refused, so nothing runs unjudged; the server would say 26000 too.
            return self._failing_bind(msg.portal, fatal_free("26000", *_unknown_statement(msg.statement)))
        if self.hooks.wants_binds:
            verdict = self.hooks.bind(_bound(prepared, msg, self._scs_settled()))
            if verdict.action != "allow":
                return self._refuse_bind(msg, prepared, verdict)
        self._portals[msg.portal] = Portal(
            prepared.text,
            msg.params or None,
            msg.param_formats,
            prepared.oids,
            prepared,
            msg.result_formats,
        )
        self._expect.append(Expect(K_BIND))
        return None

    def _forget_statement(self, name: str | None) -> None:
        """SQL and the extended protocol share the names of prepared statements: once SQL frees or creates
        one, what this session kept under that name may not be what runs, so a Bind of it is refused."""
        if name == "*":
            self._prepared.clear()
        elif name is not None:
            self._prepared.pop(name, None)

    def _refuse_bind(self, msg: m.BindMsg, prepared: Prepared, verdict: Verdict) -> bytes:
        """A statement refused at its Bind (a person did not approve it): recorded like any refusal, and
        replaced by a Bind that fails upstream (its error becomes ours), so the statement is never planned
        and both sides skip to Sync; the session skips what follows as the server will."""
        refusal = self._refusal(prepared.text, msg.params or None, msg.param_formats, prepared.oids, verdict)
        return self._failing_bind(msg.portal, refusal)

    def _failing_bind(self, portal: str, refusal: bytes) -> bytes:
        """A Bind that fails upstream in place of the client's (its error becomes ``refusal``). The portals
        stay as they were: a failed Bind changes none. Both sides skip to Sync, and the skipped Execute of
        ``portal`` is not recorded again."""
        self._refused_portals.add(portal)
        self._expect.append(Expect(K_BIND, refused=refusal))
        self._skipping = True
        return m.bind(REFUSED_PORTAL, REFUSED_PORTAL, [])

    def _refusal(
        self,
        text: str,
        params: list[bytes | None] | None,
        formats: list[int],
        oids: list[int] | None,
        verdict: Verdict,
    ) -> bytes:
        """Record a statement refused before it reached the server (``command.blocked``); the client's
        ErrorResponse, or 58030 when the record cannot be kept."""
        sa = audit.statement_audit(text)
        self._sequence += 1
        view = StatementView(self._sequence, text, sa.info, params, formats, "extended")
        view.approval_id = verdict.approval_id
        self.statements_blocked += 1
        try:
            self._record_blocked(view, sa, params, formats, oids, verdict)
        except SpoolUnavailable as exc:
            return fatal_free("58030", _spool_message(exc), _SPOOL_HINT)
        return _blocked(verdict)

    def _on_execute(self, buf: bytes, s: int, e: int) -> tuple[bytes | None, int, bool]:
        msg = m.parse_execute(m.message_body(buf, s, e))
        portal = self._portals.get(_client_name(msg.portal))
        if portal is None:
            # Unknown here: never bound, or a cursor opened by SQL DECLARE (read it with FETCH, which is
            # judged and audited). Refused, so nothing runs unjudged; the server would say 34000 too.
            message = f"pcigate: portal {msg.portal!r} is not known to the gateway, so it was not executed"
            hint = "bind it with a Bind message on this connection; read a cursor declared in SQL with FETCH"
            self._expect.append(Expect(K_EXECUTE, refused=fatal_free("34000", message, hint)))
            return m.execute(REFUSED_PORTAL), 0, False
        try:
            running, verdict, seq = self._begin(
                portal.text, portal.params, portal.formats, "extended", portal.oids
            )
        except SpoolUnavailable as exc:
            self._expect.append(
                Expect(K_EXECUTE, refused=fatal_free("58030", _spool_message(exc), _SPOOL_HINT))
            )
            return m.execute(REFUSED_PORTAL), 0, False
        if verdict.action != "allow" or running is None:
            self._expect.append(Expect(K_EXECUTE, refused=_blocked(verdict)))
            return m.execute(REFUSED_PORTAL), 0, False
        running.started_ns = time.perf_counter_ns()
        self._expect.append(Expect(K_EXECUTE, stmts=[running], portal=portal))
        return None, seq, not running.view.info.read_only

    def _on_function_call(self, buf: bytes, s: int, e: int) -> tuple[bytes | None, int]:
        text = _function_text(m.message_body(buf, s, e))
        try:
            running, verdict, seq = self._begin(text, None, [], "function")
        except SpoolUnavailable as exc:
            self._expect.append(Expect(K_FUNC, refused=fatal_free("58030", _spool_message(exc), _SPOOL_HINT)))
            return REFUSED_QUERY, 0
        if verdict.action != "allow" or running is None:
            self._expect.append(Expect(K_FUNC, refused=_blocked(verdict)))
            return REFUSED_QUERY, 0
        running.started_ns = time.perf_counter_ns()
        self._expect.append(Expect(K_FUNC, stmts=[running]))
        return None, seq

    def _begin(
        self,
        text: str,
        params: list[bytes | None] | None,
        formats: list[int],
        protocol: str,
        oids: list[int] | None = None,
    ) -> tuple[Running | None, Verdict, int]:
        """Hooks, then the intent record; raises SpoolUnavailable when the record cannot be made."""
        sa = audit.statement_audit(text)
        if sa.info.first_keyword in _NAMING:  # DEALLOCATE, PREPARE, DISCARD: forget what the name held
            self._forget_statement(named_statement(text))
        self._sequence += 1
        view = StatementView(self._sequence, text, sa.info, params, formats, protocol)  # type: ignore[arg-type]
        view.scs_on = self._scs_settled()
        verdict = self.hooks.statement(view) if self.hooks.wants_statements else ALLOW
        assert self.audit is not None
        if verdict.action != "allow":
            self.statements_blocked += 1
            self._record_blocked(view, sa, params, formats, oids, verdict)
            return None, verdict, 0
        event_id = view.event_id = new_event_id()
        statement_json = self.audit.statement_json(text, sa, params, formats, oids or ())
        draft = self.audit.command_draft(
            event_id=event_id, statement_json=statement_json, objects=sa.info.objects, sequence=view.sequence
        )
        intent = self.audit.command_intent(draft, privileged=self.privileged, rule=view.rule)
        seq = self._last_seq = self.ctx.spool.append_intent(_SUBJECT_EXECUTED, event_id, intent)
        if self.recording is not None:
            self.recording.record_statement(view.sequence, event_id, statement_json)
        return Running(view, event_id, draft), verdict, seq

    def _record_blocked(  # noqa: PLR0917 - _begin's arguments, passed on
        self,
        view: StatementView,
        sa: audit.StatementAudit,
        params: Sequence[bytes | None] | None,
        formats: Sequence[int],
        oids: Sequence[int] | None,
        verdict: Verdict,
        *,
        limit: str | None = None,
    ) -> None:
        """The ``command.blocked`` event of a refused statement (masked text and parameters, like every
        statement's record); raises SpoolUnavailable when it cannot be kept."""
        assert self.audit is not None
        statement = self.audit.statement_json(view.text, sa, params, formats, oids or ())
        data = CommandBlockedData(
            statement=Statement.model_validate_json(statement),
            sequence=view.sequence,
            reason=verdict.reason,
            limit=limit,
            chd_access=view.chd_access,
            privileged=self.privileged,
            approval_id=view.approval_id,
        )
        message = verdict.message or "statement refused by policy"
        subject, event_id, payload = self.audit.hook_event(
            CommandBlocked, data, rule=verdict.rule, result="blocked", code=verdict.sqlstate, message=message
        )
        self._last_seq = self.ctx.spool.append_event(subject, event_id, payload, lazy=True)
        if self.recording is not None:
            self.recording.record_event(payload, view.sequence)

    def _abandon(self, entry: Expect) -> None:
        """Statements of a refused Query whose intents were written: they did not run."""
        for running in entry.stmts:
            self._complete(running, "failure", code="not_run", message=_NOT_RUN)

    def _current_stmt(self) -> StatementView | None:
        if not self._expect:
            return None
        entry = self._expect[0]
        if entry.idx < len(entry.stmts):
            return entry.stmts[entry.idx].view
        return None

    # --------------------------------------------------------------------------- upstream -> client

    def _from_upstream(self, data: bytes) -> None:
        try:
            out = self._process_upstream(data)
        except m.ProtocolError as exc:
            log.error("session %s: invalid data from upstream: %s", self.session_id, exc.message)
            self._end("upstream_closed", fatal("08P01", "pcigate: the database sent invalid protocol data"))
            return
        except SessionEnd as end:
            self._end(end.reason, end.fatal)
            return
        if not out:
            return
        if self._held_down or self.ctx.spool.durable_seq < self._resp_gate:
            self._held_down.append((self._resp_gate, out))
            if not self._down_waiting:
                self._down_waiting = True
                self.ctx.spool.when_durable(self._held_down[0][0], self._release_down)
            return
        self.bytes_to_client += len(out)
        self.client.write(out)

    def _release_down(self, error: SpoolUnavailable | None) -> None:
        self._down_waiting = False
        if error is not None:
            self._held_down.clear()
            self._end("protocol_error", fatal("58030", _spool_message(error), _SPOOL_HINT))
            return
        durable = self.ctx.spool.durable_seq
        held = self._held_down
        chunks: list[bytes | bytearray] = []
        while held and held[0][0] <= durable:
            chunks.append(held.popleft()[1])
        if chunks:
            data = b"".join(chunks)
            self.bytes_to_client += len(data)
            self.client.write(data)
        if held:
            self._down_waiting = True
            self.ctx.spool.when_durable(held[0][0], self._release_down)

    def _process_upstream(self, data: bytes) -> bytes | bytearray:
        buf: bytes | bytearray = self._ubuf + data if self._ubuf else data
        msgs, end = m.scan(buf, 0, 1 << 30)
        self._ubuf = bytes(buf[end:])
        parts: list[bytes | bytearray] | None = None
        last = 0
        expect = self._expect
        hooked = self.hooks.wants_row_descriptions
        rows: list[tuple[int, int]] = []  # a run of DataRows for the row handlers, sent on together
        run: tuple[RowHandler, ...] | None = None  # the handlers of that run (None: not yet looked up)
        copies: list[tuple[int, int]] = []  # a run of COPY TO's CopyData, likewise
        copy_hooked = self.hooks.wants_copy_out
        budget = self._budget  # result limits count whole runs: rows are collected for them too
        for typ, s, e in msgs:
            replacement: bytes | None = None
            if typ == _D:
                if run is None:
                    run = self._row_handlers(expect[0]) if hooked and expect else ()
                if run or budget is not None:
                    rows.append((s, e))
                continue
            if rows:
                buf, parts, last = self._result_out(buf, rows, bool(run), self._on_data_rows, parts, last)
                rows = []
            run = None
            if typ == _COPY_DATA and (copy_hooked or budget is not None):
                copies.append((s, e))
                continue
            if copies:
                buf, parts, last = self._result_out(buf, copies, copy_hooked, self._on_copy_out, parts, last)
                copies = []
            if typ == m.COPY_DONE and budget is not None and self._cutting() is not None:
                # a cut statement's COPY ends in our error, not in CopyDone
                parts, last = _splice(parts, buf, last, s, e, b"")
                continue
            if typ == _C:
                replacement = self._on_command_complete(buf, s, e)
            elif typ == _Z:
                replacement = self._on_ready(buf[e - 1])
            elif typ == _T:
                if self.hooks.wants_row_descriptions:
                    self._on_row_description(buf, s, e)
                if expect and expect[0].kind == K_DESCRIBE:
                    expect.popleft()
            elif typ == _E:
                replacement = self._on_error(buf, s, e)
            elif typ in _POP_ONE:
                if expect:
                    expect.popleft()
            elif typ == m.EMPTY_QUERY_RESPONSE:
                if expect and expect[0].kind == K_EXECUTE:
                    expect.popleft()
            elif typ == m.PORTAL_SUSPENDED:
                replacement = self._on_suspended()
            elif typ == _S:
                name, value = m.parse_parameter_status(m.message_body(buf, s, e))
                if name == "standard_conforming_strings":
                    self._scs = value == "on"
                elif name == "client_encoding":
                    _check_encoding(value)
            elif typ in _PASS:
                if typ in _HOOKED_SERVER and self.hooks.wants_server_messages:
                    replacement = self._on_server_message(typ, buf, s, e)
            else:
                raise m.ProtocolError(f"unexpected message type {chr(typ)!r} from upstream")
            if replacement is not None:
                parts, last = _splice(parts, buf, last, s, e, replacement)
            if budget is not None and typ in _RESULT_ENDS:
                budget.statement_ended()
        if rows:
            buf, parts, last = self._result_out(buf, rows, bool(run), self._on_data_rows, parts, last)
        if copies:
            buf, parts, last = self._result_out(buf, copies, copy_hooked, self._on_copy_out, parts, last)
        return _joined(buf, end, parts, last)

    def _on_row_description(self, buf: Buf, s: int, e: int) -> None:
        fields = m.parse_row_description(m.message_body(buf, s, e))
        if not self._expect:
            return
        entry = self._expect[0]
        if entry.kind == K_DESCRIBE:
            # Describe announces the rows of later Executes: of this portal, or of portals bound from this
            # statement (in the formats their Bind asks for). They are planned when their rows arrive.
            if isinstance(entry.described, Portal):
                entry.described.described = fields
            elif entry.described is not None:
                entry.described.fields = fields
            return
        stmt = entry.stmts[entry.idx].view if entry.idx < len(entry.stmts) else None
        entry.row_hooks = self.hooks.row_description(stmt, fields)
        entry.planned = True

    def _row_handlers(self, entry: Expect) -> tuple[RowHandler, ...]:
        """The handlers of the rows now arriving for ``entry``; an Execute's are planned at its first row
        (its RowDescription came with an earlier Describe, or never)."""
        if not entry.planned:
            entry.planned = True
            fields = entry.portal.fields() if entry.portal is not None else None
            if fields is None:
                # Rows whose columns nobody described: they cannot be checked, so they do not pass.
                raise SessionEnd(
                    "protocol_error",
                    fatal(
                        "42501",
                        "pcigate: result rows arrived for a statement that was never described, so they "
                        "cannot be checked for card data; the session was closed",
                        "send Describe for the statement or portal before Execute (every standard "
                        "driver does)",
                    ),
                )
            stmt = entry.stmts[0].view if entry.stmts else None
            entry.row_hooks = self.hooks.row_description(stmt, fields)
        return entry.row_hooks

    def _on_data_rows(
        self,
        buf: bytes | bytearray,
        rows: list[tuple[int, int]],
        parts: list[bytes | bytearray] | None,
        last: int,
    ) -> tuple[bytearray, list[bytes | bytearray] | None, int]:
        """Hand a run of rows to the result's handlers; the buffer becomes writable (one copy per received
        buffer) because they mask in place where a value keeps its length."""
        if type(buf) is not bytearray:
            buf = bytearray(buf)
        return buf, *_spliced(
            apply_row_handlers(self._expect[0].row_hooks, buf, rows), buf, rows, parts, last
        )

    def _on_copy_out(
        self,
        buf: bytes | bytearray,
        copies: list[tuple[int, int]],
        parts: list[bytes | bytearray] | None,
        last: int,
    ) -> tuple[bytearray, list[bytes | bytearray] | None, int]:
        """A run of COPY TO's CopyData through the hooks, in place like rows (one copy per buffer)."""
        if type(buf) is not bytearray:
            buf = bytearray(buf)
        new = self.hooks.copy_out(self._current_stmt(), buf, copies)
        return buf, *_spliced(new, buf, copies, parts, last)

    # --------------------------------------------------------------------------- result limits

    def _result_out(  # noqa: PLR0917 - hot path: plain positional call
        self,
        buf: bytes | bytearray,
        spans: list[tuple[int, int]],
        handled: bool,
        handle: Callable[
            [bytes | bytearray, list[tuple[int, int]], list[bytes | bytearray] | None, int],
            tuple[bytearray, list[bytes | bytearray] | None, int],
        ],
        parts: list[bytes | bytearray] | None,
        last: int,
    ) -> tuple[bytes | bytearray, list[bytes | bytearray] | None, int]:
        """A run of rows (or COPY TO lines) on its way out: what the result limits admit goes through the
        handlers (when ``handled``); the rest is withheld."""
        kept = len(spans) if self._budget is None else self._admitted(self._budget, spans)
        if kept == len(spans):
            return handle(buf, spans, parts, last) if handled else (buf, parts, last)
        withheld_from, withheld_to = spans[kept][0], spans[-1][1]
        if kept and handled:
            buf, parts, last = handle(buf, spans[:kept], parts, last)
        parts, last = _splice(parts, buf, last, withheld_from, withheld_to, b"")
        return buf, parts, last

    def _admitted(self, budget: ResultBudget, spans: list[tuple[int, int]]) -> int:
        """How many of a run of (adjacent) messages the result limits let through; past a limit the
        statement is cut. One check for the whole run unless it reaches a limit."""
        if self._cutting() is not None:
            return 0
        if budget.admit_run(len(spans), spans[-1][1] - spans[0][0]):
            return len(spans)
        for i, (s, e) in enumerate(spans):
            breach = budget.admit(e - s)
            if breach is not None and breach.scope == "statement":
                stmt = self._current_stmt()
                if stmt is not None and stmt.approval_id is not None:
                    budget.lift_statement_limits()  # a person approved it: only the session limits bind it
                    breach = budget.admit(e - s)
            if breach is not None:
                self._start_cut(breach)
                return i
        return len(spans)

    def _cutting(self) -> Cut | None:
        """The cut that the responses now arriving (``_expect[0]``'s) belong to, if any."""
        cut = self._cut
        return cut if cut is not None and self._expect and cut.entry is self._expect[0] else None

    def _start_cut(self, breach: Breach) -> None:
        """Withhold the rest of the current statement's results and cancel it upstream. Its failure (our
        54000 in place of the cancel's error) keeps both sides in step; until its ReadyForQuery has passed
        and the cancel request has been delivered, the client's next requests wait, so a late cancel
        cannot hit them. Past a session limit the session ends instead."""
        expect = self._expect
        if not expect:
            raise m.ProtocolError("result rows arrived for no request")
        entry = expect[0]
        running = entry.stmts[entry.idx] if entry.idx < len(entry.stmts) else None
        limit = breach.describe()
        if breach.scope == "session":
            message = (
                f"pcigate: this session's results reached the limit of {limit}; the connection was closed"
            )
            self._record_limit(entry, running, breach, message)
            raise SessionEnd("policy_terminated", fatal("54000", message, _LIMIT_SESSION_HINT))
        message = (
            f"pcigate: the result of this statement passed the limit of {limit}; the rows after that were "
            "withheld and the statement was stopped"
        )
        self._record_limit(entry, running, breach, message)
        if running is None or self._cut is not None:  # a second cut in one pipeline: not worth the risk
            raise SessionEnd("policy_terminated", fatal("54000", message + _CLOSED_AFTER_CUT, _LIMIT_HINT))
        entry.refused = error = fatal_free("54000", message, _LIMIT_HINT)
        until = entry if entry.kind == K_QUERY else next((x for x in expect if x.kind == K_SYNC), None)
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if until is None:
            ready.set_result(None)
        cut = self._cut = Cut(entry, error, message, until, ready)
        self.client.pause_reading()
        cut.task = asyncio.ensure_future(self._settle_cut(cut))

    def _record_limit(self, entry: Expect, running: Running | None, breach: Breach, message: str) -> None:
        self.statements_blocked += 1
        if running is None:
            return
        view = running.view
        verdict = Verdict("block", "54000", message, reason="limit_exceeded")
        oids = entry.portal.oids if entry.portal is not None else None
        try:
            self._record_blocked(
                view,
                audit.statement_audit(view.text),
                view.params,
                view.param_formats,
                oids,
                verdict,
                limit=breach.label,
            )
        except SpoolUnavailable as exc:
            raise SessionEnd("protocol_error", fatal("58030", _spool_message(exc), _SPOOL_HINT)) from None

    def _cut_completed(self, entry: Expect) -> bytes:
        """The cut statement completed upstream before the cancel reached it. Our error can stand in for
        its completion only where nothing ran or will run on the strength of it: a statement that changes
        nothing, the last of its request, nothing sent behind it. Otherwise the session ends."""
        cut = self._cut
        assert cut is not None
        expect = self._expect
        running = entry.stmts[entry.idx] if entry.idx < len(entry.stmts) else None
        if entry.kind == K_QUERY:
            alone = entry.idx == len(entry.stmts) - 1 and len(expect) == 1
        else:
            alone = len(expect) == 2 and expect[1] is cut.until
        if running is None or not alone or not running.view.info.read_only:
            raise SessionEnd(
                "policy_terminated", fatal("54000", cut.message + _CLOSED_AFTER_CUT, _LIMIT_HINT)
            )
        cut.completed = True
        if entry.kind == K_QUERY:
            entry.idx += 1
            entry.failed = True
        else:
            expect.popleft()
        self._complete(running, "failure", code="54000", message=cut.message)
        return cut.error

    def _cut_ready(self, status: int) -> bytes | None:
        """The ReadyForQuery that ends a cut. Where the statement completed upstream inside a transaction
        block, the client saw it fail and takes the transaction as failed: upstream's is failed too (by a
        query that cannot parse) and that one's ReadyForQuery goes to the client instead of this one."""
        cut = self._cut
        assert cut is not None and self.upstream is not None
        if cut.completed and status == _IN_TRANSACTION:
            cut.completed = False
            cut.until = abort = Expect(K_QUERY, refused=b"")
            self._expect.append(abort)
            self.upstream.endpoint.write(REFUSED_QUERY)
            return b""
        if not cut.ready.done():
            cut.ready.set_result(None)
        return None

    async def _settle_cut(self, cut: Cut) -> None:
        try:
            await self._cancel_upstream()
        except OSError as exc:
            log.warning("session %s: cancelling a cut statement failed: %s", self.session_id, exc)
        try:
            await cut.ready
        finally:
            if self._cut is cut:
                self._cut = None
            self._drain_backlog()

    def _on_server_message(self, typ: int, buf: Buf, s: int, e: int) -> bytes | None:
        new = self.hooks.server_message(self._current_stmt(), typ, bytes(m.message_body(buf, s, e)))
        return None if new is None else m.frame(typ, new)

    def _on_command_complete(self, buf: Buf, s: int, e: int) -> bytes | None:
        expect = self._expect
        if not expect:
            return None
        entry = expect[0]
        if self._cutting() is not None:
            return self._cut_completed(entry)
        tag = m.parse_command_complete(m.message_body(buf, s, e))
        if entry.kind == K_QUERY:
            if entry.idx < len(entry.stmts):
                running = entry.stmts[entry.idx]
                entry.idx += 1
                self._complete(running, "success", tag=tag)
            entry.row_hooks = ()
            entry.planned = False
        elif entry.kind == K_EXECUTE:
            expect.popleft()
            if entry.stmts:
                self._complete(entry.stmts[0], "success", tag=tag)
        return None

    def _on_suspended(self) -> bytes | None:
        if self._expect and self._expect[0].kind == K_EXECUTE:
            if self._cutting() is not None:
                return self._cut_completed(self._expect[0])
            entry = self._expect.popleft()
            if entry.stmts:
                self._complete(entry.stmts[0], "success", tag=None, suspended=True)
        return None

    def _on_error(self, buf: Buf, s: int, e: int) -> bytes | None:
        """Track the failure; the message to send instead (ours, or upstream's with values masked)."""
        replacement = self._track_error(buf, s, e)
        if replacement is None and self.hooks.wants_server_messages:
            replacement = self._on_server_message(_E, buf, s, e)
        return replacement

    def _track_error(self, buf: Buf, s: int, e: int) -> bytes | None:
        expect = self._expect
        fields = m.parse_error_fields(m.message_body(buf, s, e))
        if fields.get("S") in ("FATAL", "PANIC") or not expect:
            return None
        entry = expect[0]
        if entry.kind == K_SYNC:
            return None  # e.g. a deferred constraint failing at the implicit commit of Sync
        current = entry.stmts[entry.idx] if entry.idx < len(entry.stmts) else None
        if self.hooks.wants_errors:
            self.hooks.error(current.view if current else None, fields)
        code = fields.get("C")
        message = fields.get("M")
        cut = self._cutting()
        if cut is not None:
            code, message = "54000", cut.message  # most likely our cancel
        if entry.kind in (K_QUERY, K_FUNC):
            entry.failed = True
            if current is not None:
                entry.idx += 1
                self._complete(current, "failure", code=code, message=message)
            return entry.refused
        # Extended protocol: the server skips everything up to the next Sync. An error at Parse or Bind
        # (planning folds constants, so 1/$1 with 0 fails at Bind) is the failure of the Execute it prepared.
        replacement = entry.refused
        expect.popleft()
        failed = current
        not_run: list[Running] = []
        while expect and expect[0].kind != K_SYNC:
            for running in expect.popleft().stmts:
                if failed is None and replacement is None:
                    failed = running
                else:
                    not_run.append(running)
        # no Sync sent yet: what the client sends until it is skipped upstream too
        self._skipping = not expect
        if failed is not None:
            self._complete(failed, "failure", code=code, message=message)
        for running in not_run:
            self._complete(running, "failure", code="not_run", message=_NOT_RUN)
        return replacement

    def _on_ready(self, status: int) -> bytes | None:
        expect = self._expect
        if not expect:
            return None
        entry = expect.popleft()
        if entry.kind in (K_QUERY, K_FUNC):
            for running in entry.stmts[entry.idx :]:
                if entry.failed:
                    self._complete(running, "failure", code="not_run", message=_NOT_RUN)
                else:
                    self._complete(running, "success", tag=None)
        # K_SYNC: nothing else to do. Anything else at the front means we lost track: say so loudly.
        elif entry.kind != K_SYNC:
            log.error(
                "session %s: response tracking out of step (%s before ReadyForQuery)",
                self.session_id,
                entry.kind,
            )
        if self._cut is not None and entry is self._cut.until:
            return self._cut_ready(status)
        return None

    def _complete(
        self,
        running: Running,
        result: audit.Result,
        *,
        tag: str | None = None,
        code: str | None = None,
        message: str | None = None,
        suspended: bool = False,
    ) -> None:
        assert self.audit is not None
        view = running.view
        rows = m.command_tag_rows(tag) if tag else None
        if result == "success":
            self.statements += 1
            if rows:
                self.rows += rows
            if tag is not None and self.hooks.wants_completions:
                self.hooks.command_complete(view, tag, rows)
        self.masked_values += view.masked_values
        duration = (time.perf_counter_ns() - running.started_ns) / 1e6 if running.started_ns else 0.0
        payload = self.audit.command_result(
            running.draft,
            outcome=result,
            code=code if code and _CODE.fullmatch(code) else None,
            message=_masked_message(message),
            command_tag=(tag[:64] if tag else None) if not suspended else "PORTAL SUSPENDED",
            rows=rows,
            duration_ms=duration,
            chd_access=view.chd_access,
            privileged=self.privileged,
            masked_values=view.masked_values,
            approval_id=view.approval_id,
            rule=view.rule,
        )
        try:
            # nobody waits for a completion: it shares the flush of the next statement's intent
            self._last_seq = self.ctx.spool.append_event(
                _SUBJECT_EXECUTED, running.event_id, payload, lazy=True
            )
        except SpoolUnavailable as exc:
            # The intent is durable: recovery reports this statement as interrupted. Stop here.
            raise SessionEnd("protocol_error", fatal("58030", _spool_message(exc), _SPOOL_HINT)) from None

    # ============================================================================ idle and close

    def _arm_idle_timer(self) -> None:
        timeout = self.ctx.connection.limits.idle_timeout.total_seconds()
        loop = asyncio.get_running_loop()
        self._idle_handle = loop.call_later(timeout, self._check_idle, timeout)

    def _check_idle(self, timeout: float) -> None:
        idle_for = time.monotonic() - self._last_activity
        if idle_for >= timeout and not self._expect and self._wait is None:
            self._end(
                "idle_timeout",
                fatal("57P05", "pcigate: terminating connection due to idle-session timeout", "reconnect"),
            )
            return
        loop = asyncio.get_running_loop()
        self._idle_handle = loop.call_later(max(1.0, timeout - idle_for), self._check_idle, timeout)

    async def _finish(self, reason: str) -> None:
        if self._grant is not None:
            self._grant.sessions.discard(self)
        if self._idle_handle is not None:
            self._idle_handle.cancel()
        if self.cancel_pid:
            self.ctx.cancels.unregister(self.cancel_pid)
        up = self.upstream
        if up is not None:
            if self._expect and not up.endpoint.closed:
                await self._cancel_upstream()  # a client gone mid-query must not leave it running upstream
            if not up.endpoint.closed:
                up.endpoint.write(m.terminate())
            up.endpoint.close()
        self.client.close()
        if self.audit is not None and self.identity is not None:
            for entry in self._expect:
                for running in entry.stmts[entry.idx :]:
                    try:
                        self._complete(
                            running, "failure", code="session_closed", message=_CLOSED_MID_STATEMENT
                        )
                    except SessionEnd:
                        break
            self._expect.clear()
            if self.info is not None:
                self.hooks.close(self.info, reason)
            event_id, payload = self.audit.session_closed(
                SessionClosedData(
                    reason=reason,
                    duration_ms=round((time.monotonic_ns() - self.opened_ns) / 1e6, 3),
                    statements=self.statements,
                    statements_blocked=self.statements_blocked,
                    rows=self.rows,
                    bytes_from_client=self.bytes_from_client,
                    bytes_to_client=self.bytes_to_client,
                    masked_values=self.masked_values,
                ),
                failed=reason not in ("client_closed", "idle_timeout", "gateway_shutdown"),
            )
            try:
                self.ctx.spool.append_event(audit.subject_for("session.closed"), event_id, payload, lazy=True)
            except SpoolUnavailable as exc:
                log.error("session %s: session.closed could not be spooled: %s", self.session_id, exc.reason)
            log.info(
                "session %s closed (%s): %d statements, %d rows",
                self.session_id,
                reason,
                self.statements,
                self.rows,
            )

    def audit_lost(self, durable_seq: int, reason: str) -> bool:
        """The spool process died and records after ``durable_seq`` are gone: if one of them is ours, a
        statement of ours may be waiting to run or answer on it, so the session ends. True if it did."""
        if self._last_seq <= durable_seq:
            return False
        error = fatal("58030", f"pcigate: {reason}", _SPOOL_HINT)
        if self._done is not None:
            self._end("protocol_error", error)
        else:
            self.client.write(error)
            self.client.close()
        return True

    async def cancel(self) -> None:
        """A client's CancelRequest: a statement held before judging stops waiting (a held approval
        request is withdrawn); what runs upstream gets the CancelRequest forwarded."""
        if self._wait is not None:
            self._wait.cancel()
        await self._cancel_upstream()

    async def _cancel_upstream(self) -> None:
        up = self.upstream
        if up is not None:
            await cancel_upstream(
                self.ctx.connection.upstream,
                up.backend_pid,
                up.backend_key,
                tls_context=self.ctx.upstream_tls,
            )


# ================================================================================ helpers

_SPOOL_HINT: Final = (
    "the gateway cannot make audit records durable; retry later or contact the gateway operator"
)
_NOT_RUN: Final = "not run: an earlier statement in the same request failed"
_CLOSED_MID_STATEMENT: Final = "the session ended before the statement completed"
_NOT_SKIPPED: Final = frozenset({m.SYNC, m.TERMINATE, m.FLUSH, m.COPY_DATA, m.COPY_DONE, m.COPY_FAIL})
_COPY_DATA: Final = m.COPY_DATA
_RESULT_ENDS: Final = frozenset({_C, _E, m.PORTAL_SUSPENDED, m.EMPTY_QUERY_RESPONSE, _Z})
_IN_TRANSACTION: Final = ord("T")
_LIMIT_HINT: Final = (
    "ask for fewer rows (LIMIT, or a cursor fetched in pieces), or ask the gateway operator to raise "
    "limits.results for your identity kind on this connection"
)
_LIMIT_SESSION_HINT: Final = (
    "open a new connection, or ask the gateway operator to raise limits.results for your identity kind"
)
_CLOSED_AFTER_CUT: Final = (
    "; it had already completed on the database, and what was sent after it cannot be kept consistent "
    "with the failure you see, so the connection was closed (a change it made outside a transaction "
    "block stands)"
)
_S: Final = m.PARAMETER_STATUS
_RUNS: Final = frozenset({K_QUERY, K_EXECUTE, K_FUNC})
# The messages a hook may hold: a Query or an Execute runs statements; a Bind plans one (with its parameters)
_JUDGED: Final = frozenset({m.QUERY, m.BIND, m.EXECUTE})
_NAMING: Final = frozenset({"deallocate", "prepare", "discard"})  # SQL that frees or creates statement names
_POP_ONE: Final = frozenset({m.PARSE_COMPLETE, m.BIND_COMPLETE, m.CLOSE_COMPLETE, m.NO_DATA})
# Server messages a hook may rewrite (they can carry values) or must see (COPY begins and ends).
_HOOKED_SERVER: Final = frozenset(
    {
        m.NOTICE_RESPONSE,
        m.NOTIFICATION_RESPONSE,
        m.FUNCTION_CALL_RESPONSE,
        m.COPY_OUT_RESPONSE,
        m.COPY_BOTH_RESPONSE,
        m.COPY_DONE,
    }
)
_PASS: Final = frozenset(
    {
        m.NOTICE_RESPONSE,
        m.NOTIFICATION_RESPONSE,
        m.PARAMETER_STATUS,
        m.PARAMETER_DESCRIPTION,
        m.COPY_IN_RESPONSE,
        m.COPY_OUT_RESPONSE,
        m.COPY_BOTH_RESPONSE,
        m.COPY_DATA,  # when no hook takes COPY TO's data
        m.COPY_DONE,
        m.FUNCTION_CALL_RESPONSE,
    }
)


def _splice(  # noqa: PLR0917 - hot path: plain positional call, no per-batch object
    parts: list[bytes | bytearray] | None,
    buf: bytes | bytearray,
    last: int,
    start: int,
    end: int,
    replacement: bytes,
) -> tuple[list[bytes | bytearray], int]:
    """Record that ``buf[start:end]`` goes out as ``replacement``; untouched bytes stay one slice."""
    if parts is None:
        parts = []
    parts.append(buf[last:start])
    parts.append(replacement)
    return parts, end


def _spliced(
    new: list[bytes | None] | None,
    buf: bytearray,
    spans: list[tuple[int, int]],
    parts: list[bytes | bytearray] | None,
    last: int,
) -> tuple[list[bytes | bytearray] | None, int]:
    """Splice a handler's replacement messages (None: in place or unchanged) into the output."""
    if new is not None:
        for (s, e), msg in zip(spans, new, strict=True):
            if msg is not None:
                parts, last = _splice(parts, buf, last, s, e, msg)
    return parts, last


def _joined(
    buf: bytes | bytearray, end: int, parts: list[bytes | bytearray] | None, last: int
) -> bytes | bytearray:
    """The bytes to forward: the received buffer itself when nothing was replaced (the common case)."""
    if parts is None:
        return buf[:end] if end != len(buf) else buf
    parts.append(buf[last:end])
    return b"".join(parts)


def fatal_free(sqlstate: str, message: str, hint: str | None = None) -> bytes:
    """A non-fatal ErrorResponse: the statement fails, the session goes on."""
    return m.error_response("ERROR", sqlstate, message, hint=hint)


def _client_name(name: str) -> str:
    """A statement or portal name from the client; the gateway's own names are refused (ends the session)."""
    if name.startswith(RESERVED):
        raise m.ProtocolError(
            "statement and portal names starting with 'pcigate\\x1f' are reserved by the gateway"
        )
    return name


def _bound(prepared: Prepared, bind: m.BindMsg, scs_on: bool) -> PendingStatement:
    """The statement a Bind is about to plan, with its parameters, as hooks judge it."""
    return PendingStatement(
        prepared.text, bind.params or None, bind.param_formats, prepared.oids or (), "extended", scs_on
    )


def _unknown_statement(name: str) -> tuple[str, str]:
    return (
        f"pcigate: prepared statement {name!r} is not known to the gateway, so it was not bound",
        "prepare it with a Parse message on this connection (a statement prepared with SQL PREPARE runs "
        "through SQL EXECUTE, and DEALLOCATE or DISCARD ALL forget a name)",
    )


def _function_text(body: bytes | memoryview) -> str:
    """What the audit trail records for a fast-path FunctionCall (it has no SQL text)."""
    return call_text(int.from_bytes(body[:4], "big") if len(body) >= 4 else 0)


def _blocked(verdict: Verdict) -> bytes:
    return fatal_free(verdict.sqlstate, verdict.message or "pcigate: statement refused by policy")


# Client encodings in which a multibyte character can hold the byte of a quote or a backslash: the
# gateway's lexer, which reads statements as UTF-8, would not end strings where the server does.
_UNSAFE_ENCODINGS: Final = frozenset({"SJIS", "BIG5", "GBK", "GB18030", "UHC", "JOHAB"})


def _check_encoding(name: str) -> None:
    if name.upper() in _UNSAFE_ENCODINGS:
        raise SessionEnd(
            "protocol_error",
            fatal(
                "22023",
                f"pcigate: client_encoding {name} is not supported: one of its characters can hold the byte "
                "of a quote or backslash, so the gateway could not read statements the way the server does",
                "use client_encoding UTF8 (the client converts)",
            ),
        )


_SCS_IN_FLIGHT: Final = (
    "pcigate: where the statements of this query end depends on standard_conforming_strings, which "
    "statements still running may change; it was not run"
)
_SCS_HINT: Final = "send it again once the earlier statements have completed, or use E'' strings"


def _spool_message(error: SpoolUnavailable) -> str:
    return f"pcigate: statement refused: its audit record cannot be made durable ({error.reason})"


def _too_long_text(size: int, limit: int) -> tuple[str, str]:
    return (
        f"pcigate: statement of {size} bytes exceeds the limit of {limit} bytes",
        "split the statement, or ask the gateway operator to raise limits.max_statement_bytes",
    )


def _too_long(size: int, limit: int) -> bytes:
    return fatal_free("54000", *_too_long_text(size, limit))


# The envelope's outcome.code pattern: upstream codes that do not fit are left out of the event.
_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _masked_message(message: str | None) -> str | None:
    if not message:
        return None
    text, _, _ = audit_text(message, 1024)
    return text or None


def _printable(value: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in value)[:64]


def _label(value: str | None) -> str | None:
    """A value for a schema label (1..256 chars, no control or bidi characters), or None."""
    if not value:
        return None
    cleaned = "".join(c for c in value if c.isprintable() and c not in _BIDI)[:256]
    return cleaned or None


_BIDI: Final = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _addr(addr: str) -> str:
    return addr.split("%", 1)[0] if addr.count("%") == 1 and len(addr.split("%", 1)[1]) > 16 else addr


def _claimed_actor(failure: AuthFailure, token: str, issuer: str, ctx: ListenerContext) -> Actor:
    """Who the failed attempt claimed to be: unverified, and labelled so in the event's data."""
    claims = unverified_claims(token) if token else {}
    name = claims.get(ctx.identity_config.claims.name)
    return Actor(
        sub=failure.claimed_sub or "unknown",
        iss=failure.claimed_iss or issuer,
        name=_label(name) if isinstance(name, str) else None,
        groups=(),
        kind=ctx.identity_config.default_kind,
        on_behalf_of=None,
    )
