"""Named hook points where policy features (masking, guardrails, approvals, limits, recording) plug into a
PostgreSQL session, without the session or the codec knowing any policy.

A feature is a :class:`Hook` subclass that overrides only the points it needs. The session asks
:class:`HookChain` which points are implemented and skips the rest, so a point nobody uses costs nothing
on the hot path (a data row is decoded only when some hook asked for the rows of that result).

Hooks run on the event loop, synchronously: they must be quick and must not block. A hook that raises
ends the session (fail closed) — a broken policy never lets a statement through.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal, Protocol

if TYPE_CHECKING:
    from gateway.audit import SessionAudit
    from gateway.identity import VerifiedIdentity
    from gateway.pgwire.messages import FieldDesc
    from gateway.sqltext import StatementInfo
    from schemas.models import Envelope

__all__ = [
    "ALLOW",
    "EventSink",
    "Hook",
    "HookChain",
    "HookFactory",
    "PendingStatement",
    "RowHandler",
    "SessionInfo",
    "StatementView",
    "Verdict",
]


class EventSink(Protocol):
    """Appends one audit event of the session (the envelope's session parts are filled in) to the spool.

    Raises when the event cannot be recorded; the session then ends (no evidence, no result)."""

    def __call__(
        self, event: type[Envelope], data: object, *, rule: str | None = None, pci: Sequence[str] = ()
    ) -> str: ...


def _no_events(
    event: type[Envelope], data: object, *, rule: str | None = None, pci: Sequence[str] = ()
) -> str:
    raise RuntimeError("this session records no hook events")


def _no_notices(message: str) -> None:
    raise RuntimeError("this session cannot notify its client")


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """What a hook may know about the session: who, from where, to what; ``emit`` records an event."""

    session_id: str
    identity: VerifiedIdentity
    connection: str
    database: str
    upstream_role: str
    client_addr: str
    client_port: int | None
    client_app: str | None
    tls: bool
    emit: EventSink = field(default=_no_events, compare=False, repr=False)
    # Sends the client a NoticeResponse now, between whole messages (a held statement says why it waits).
    notify: Callable[[str], None] = field(default=_no_notices, compare=False, repr=False)
    # The session's event builder: envelope parts and masked, digested statement records.
    audit: SessionAudit | None = field(default=None, compare=False, repr=False)
    # Shows the session's recorder an event of this session that another component appended (the approval
    # service records approval.* itself, to wait until they are durable).
    observe: Callable[[bytes], None] = field(default=lambda _payload: None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class PendingStatement:
    """A statement about to be judged, as ``wait_before`` sees it. Raw text and parameters, for policy
    decisions only, like :class:`StatementView`'s."""

    text: str
    params: Sequence[bytes | None] | None = None
    param_formats: Sequence[int] = ()
    param_oids: Sequence[int] = ()
    protocol: Literal["simple", "extended", "function"] = "simple"
    scs_on: bool = False


@dataclass(slots=True)
class StatementView:
    """One statement as it passes through the session.

    ``text`` and ``params`` are the raw values, for policy decisions only: a hook must never log or
    emit them (they may hold card data); the audit trail gets masked copies. Hooks may set
    ``chd_access`` and add to ``masked_values``; both end up in the statement's ``command.executed``.
    """

    sequence: int
    text: str
    info: StatementInfo
    params: Sequence[bytes | None] | None
    param_formats: Sequence[int]
    protocol: Literal["simple", "extended", "function"]
    chd_access: bool = False
    masked_values: int = 0
    approval_id: str | None = None
    rule: str | None = None
    notes: dict[str, object] = field(default_factory=dict)
    event_id: str | None = None  # its command.executed, once the intent is recorded
    # The server reported standard_conforming_strings on, and nothing running could have changed it since:
    # a backslash in a '...' string is then just a character to the policy.
    scs_on: bool = False


@dataclass(frozen=True, slots=True)
class Verdict:
    """A statement hook's decision. ``block`` refuses the statement with ``sqlstate`` and ``message``
    (shown to the client, so it must say what to do and never echo values)."""

    action: Literal["allow", "block"]
    sqlstate: str = "42501"
    message: str = ""
    rule: str | None = None
    # why, for the command.blocked event (schemas: CommandBlockedData.reason)
    reason: Literal[
        "policy_rule",
        "parse_error",
        "sad_detected",
        "limit_exceeded",
        "approval_denied",
        "approval_expired",
        "policy_unavailable",
    ] = "policy_rule"
    approval_id: str | None = None  # the approval request whose outcome this is, for command.blocked


ALLOW = Verdict("allow")

MASK_ALL: Final = "mask_all"
"""``StatementView.notes`` key a policy sets (to True) when every value a statement returns must be hidden."""
MASK_COLUMNS: Final = "mask_columns"
"""``StatementView.notes`` key a policy sets to a tuple of (rule name, column rules) pairs (policy rules'
``mask.columns``): applied on top of the masking profile, by name and through lineage, the stricter
action winning."""


class RowHandler(Protocol):
    """Takes the rows of one result set, a received buffer at a time."""

    def data_rows(self, buf: bytearray, spans: Sequence[tuple[int, int]]) -> list[bytes | None] | None:
        """``buf[s:e]`` of each span is one whole DataRow message. A handler may rewrite a row in place
        when its length stays (no copy, the common case of masking); it returns a replacement message per
        row whose length changes (None: keep what is in ``buf``), or None when there is none."""
        ...


class Hook:
    """Base class of session hooks; every method is a no-op. Override only what you need."""

    def authenticated(self, session: SessionInfo) -> Verdict | None:
        """The identity is verified and upstream is connected. A ``block`` verdict ends the session."""
        return None

    def wait_before(self, stmt: PendingStatement) -> Awaitable[None] | None:
        """Something to wait for before ``stmt`` can be judged (a fresher catalog, a person's decision),
        or None. The session holds that statement and everything the client sent after it, waits, then
        asks again before judging, so a hook must answer None the second time or the session waits on.
        A client's CancelRequest cancels the wait."""
        return None

    def parse(self, stmt: PendingStatement) -> Verdict | None:
        """A statement is being prepared (an extended-protocol Parse). A ``block`` verdict refuses it here,
        so a statement that can never run does not reach the server at all (PostgreSQL analyses it at
        Parse and plans it at Bind). Its Execute still goes through :meth:`statement`."""
        return None

    def bind(self, stmt: PendingStatement) -> Verdict | None:
        """A prepared statement is bound to its parameters (an extended-protocol Bind), after
        :meth:`wait_before` was asked about it with the same parameters. A ``block`` verdict refuses it
        here, before PostgreSQL plans it (planning folds IMMUTABLE functions); nothing of it runs, and the
        server skips to the next Sync."""
        return None

    def statement(self, stmt: StatementView) -> Verdict | None:
        """Before a statement is sent upstream; ``None`` means no opinion (allow)."""
        return None

    def row_description(self, stmt: StatementView | None, fields: Sequence[FieldDesc]) -> RowHandler | None:
        """A result set starts (``fields`` carry the formats the rows will come in). Return a handler to
        receive its rows, or None to let them pass undecoded."""
        return None

    def copy_data(self, stmt: StatementView | None, data: bytes) -> bytes | None:
        """COPY FROM STDIN payload from the client; return replacement bytes, or None to keep it. (Data of
        COPY TO goes to :meth:`copy_out`.)"""
        return None

    def copy_out(
        self, stmt: StatementView | None, buf: bytearray, spans: Sequence[tuple[int, int]]
    ) -> list[bytes | None] | None:
        """A run of CopyData messages of a COPY TO STDOUT (``buf[s:e]`` whole messages, one row each as
        PostgreSQL sends them), like :meth:`RowHandler.data_rows`: rewrite in place where the length stays,
        return a replacement message where it does not (None: keep), or None when there is none."""
        return None

    def server_message(self, stmt: StatementView | None, mtype: int, body: bytes) -> bytes | None:
        """A server message that can carry data the client should not see — ErrorResponse,
        NoticeResponse, NotificationResponse, FunctionCallResponse — or that starts or ends a COPY
        (CopyOutResponse, CopyBothResponse, CopyDone). Return a replacement body, or None to keep it."""
        return None

    def command_complete(self, stmt: StatementView, tag: str, rows: int | None) -> None:
        """A statement finished successfully upstream."""

    def error(self, stmt: StatementView | None, fields: dict[str, str]) -> None:
        """Upstream reported an error (``fields`` by protocol field code), for the statement if known."""

    def close(self, session: SessionInfo, reason: str) -> None:
        """The session ended (``reason`` as in ``session.closed``)."""


HookFactory = Callable[[SessionInfo], Sequence[Hook]]
"""Builds the hooks of one session (hooks may keep per-session state)."""


def _overrides(hook: Hook, name: str) -> bool:
    return getattr(type(hook), name) is not getattr(Hook, name)


class HookChain:
    """The hooks of one session, with per-point lists so unused points cost nothing."""

    __slots__ = (
        "_authenticated",
        "_bind",
        "_close",
        "_command_complete",
        "_copy_data",
        "_copy_out",
        "_error",
        "_parse",
        "_row_description",
        "_server_message",
        "_statement",
        "_wait_before",
        "hooks",
    )

    def __init__(self, hooks: Sequence[Hook] = ()) -> None:
        self.hooks = tuple(hooks)
        self._authenticated = [h for h in self.hooks if _overrides(h, "authenticated")]
        self._wait_before = [h for h in self.hooks if _overrides(h, "wait_before")]
        self._statement = [h for h in self.hooks if _overrides(h, "statement")]
        self._parse = [h for h in self.hooks if _overrides(h, "parse")]
        self._bind = [h for h in self.hooks if _overrides(h, "bind")]
        self._row_description = [h for h in self.hooks if _overrides(h, "row_description")]
        self._server_message = [h for h in self.hooks if _overrides(h, "server_message")]
        self._copy_data = [h for h in self.hooks if _overrides(h, "copy_data")]
        self._copy_out = [h for h in self.hooks if _overrides(h, "copy_out")]
        self._command_complete = [h for h in self.hooks if _overrides(h, "command_complete")]
        self._error = [h for h in self.hooks if _overrides(h, "error")]
        self._close = [h for h in self.hooks if _overrides(h, "close")]

    @property
    def wants_waits(self) -> bool:
        return bool(self._wait_before)

    @property
    def wants_statements(self) -> bool:
        return bool(self._statement)

    @property
    def wants_parses(self) -> bool:
        return bool(self._parse)

    @property
    def wants_binds(self) -> bool:
        return bool(self._bind)

    @property
    def wants_row_descriptions(self) -> bool:
        return bool(self._row_description)

    @property
    def wants_copy_data(self) -> bool:
        return bool(self._copy_data)

    @property
    def wants_copy_out(self) -> bool:
        return bool(self._copy_out)

    @property
    def wants_server_messages(self) -> bool:
        return bool(self._server_message)

    @property
    def wants_completions(self) -> bool:
        return bool(self._command_complete)

    @property
    def wants_errors(self) -> bool:
        return bool(self._error)

    def authenticated(self, session: SessionInfo) -> Verdict:
        for hook in self._authenticated:
            verdict = hook.authenticated(session)
            if verdict is not None and verdict.action != "allow":
                return verdict
        return ALLOW

    def wait_before(self, stmt: PendingStatement) -> Awaitable[None] | None:
        """The first thing a hook wants to wait for before ``stmt`` is judged."""
        for hook in self._wait_before:
            wait = hook.wait_before(stmt)
            if wait is not None:
                return wait
        return None

    def parse(self, stmt: PendingStatement) -> Verdict:
        for hook in self._parse:
            verdict = hook.parse(stmt)
            if verdict is not None and verdict.action != "allow":
                return verdict
        return ALLOW

    def bind(self, stmt: PendingStatement) -> Verdict:
        for hook in self._bind:
            verdict = hook.bind(stmt)
            if verdict is not None and verdict.action != "allow":
                return verdict
        return ALLOW

    def statement(self, stmt: StatementView) -> Verdict:
        """The first non-allow verdict wins; every hook sees the statement until then."""
        for hook in self._statement:
            verdict = hook.statement(stmt)
            if verdict is not None and verdict.action != "allow":
                return verdict
        return ALLOW

    def row_description(
        self, stmt: StatementView | None, fields: Sequence[FieldDesc]
    ) -> tuple[RowHandler, ...]:
        """The handlers that want the rows of this result (empty: rows pass through undecoded)."""
        handlers = (h.row_description(stmt, fields) for h in self._row_description)
        return tuple(handler for handler in handlers if handler is not None)

    def server_message(self, stmt: StatementView | None, mtype: int, body: bytes) -> bytes | None:
        changed: bytes | None = None
        for hook in self._server_message:
            replaced = hook.server_message(stmt, mtype, body if changed is None else changed)
            if replaced is not None:
                changed = replaced
        return changed

    def copy_data(self, stmt: StatementView | None, data: bytes) -> bytes:
        for hook in self._copy_data:
            replaced = hook.copy_data(stmt, data)
            if replaced is not None:
                data = replaced
        return data

    def copy_out(
        self, stmt: StatementView | None, buf: bytearray, spans: Sequence[tuple[int, int]]
    ) -> list[bytes | None] | None:
        """COPY TO data through every ``copy_out`` hook, each seeing what the previous one left."""
        return apply_row_handlers([_CopyOut(hook, stmt) for hook in self._copy_out], buf, spans)

    def command_complete(self, stmt: StatementView, tag: str, rows: int | None) -> None:
        for hook in self._command_complete:
            hook.command_complete(stmt, tag, rows)

    def error(self, stmt: StatementView | None, fields: dict[str, str]) -> None:
        for hook in self._error:
            hook.error(stmt, fields)

    def close(self, session: SessionInfo, reason: str) -> None:
        for hook in self._close:
            hook.close(session, reason)


class _CopyOut:
    """A hook's ``copy_out`` as a row handler of one statement's CopyData."""

    __slots__ = ("hook", "stmt")

    def __init__(self, hook: Hook, stmt: StatementView | None) -> None:
        self.hook = hook
        self.stmt = stmt

    def data_rows(self, buf: bytearray, spans: Sequence[tuple[int, int]]) -> list[bytes | None] | None:
        return self.hook.copy_out(self.stmt, buf, spans)


def reframe(
    buf: bytes | bytearray, spans: Sequence[tuple[int, int]], replaced: Sequence[bytes | None]
) -> tuple[bytearray, list[tuple[int, int]]]:
    """The rows as they now stand (a replacement, else ``buf[s:e]``), in one new writable buffer."""
    rows = [r if r is not None else buf[s:e] for r, (s, e) in zip(replaced, spans, strict=True)]
    bounds: list[tuple[int, int]] = []
    pos = 0
    for r in rows:
        bounds.append((pos, pos + len(r)))
        pos += len(r)
    return bytearray().join(rows), bounds


def apply_row_handlers(
    handlers: Sequence[RowHandler], buf: bytearray, spans: Sequence[tuple[int, int]]
) -> list[bytes | None] | None:
    """Run each handler over a run of rows, the next one seeing the rows the previous one replaced."""
    changed: list[bytes | None] | None = None
    for handler in handlers:
        if changed is not None:  # re-frame the rows as they now stand
            buf, spans = reframe(buf, spans, changed)
            replaced = handler.data_rows(buf, spans)
            if replaced is not None:
                changed = [n if n is not None else c for n, c in zip(replaced, changed, strict=True)]
        else:
            changed = handler.data_rows(buf, spans)
    return changed
