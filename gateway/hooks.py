"""Named hook points where policy features (masking, guardrails, approvals, limits, recording) plug into a
PostgreSQL session, without the session or the codec knowing any policy.

A feature is a :class:`Hook` subclass that overrides only the points it needs. The session asks
:class:`HookChain` which points are implemented and skips the rest, so a point nobody uses costs nothing
on the hot path (a data row is decoded only when some hook asked for the rows of that result).

Hooks run on the event loop, synchronously: they must be quick and must not block. A hook that raises
ends the session (fail closed) — a broken policy never lets a statement through.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from gateway.identity import VerifiedIdentity
    from gateway.pgwire.messages import FieldDesc
    from gateway.sqltext import StatementInfo

__all__ = [
    "ALLOW",
    "Hook",
    "HookChain",
    "HookFactory",
    "SessionInfo",
    "StatementView",
    "Verdict",
]


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """What a hook may know about the session: who, from where, to what."""

    session_id: str
    identity: VerifiedIdentity
    connection: str
    database: str
    upstream_role: str
    client_addr: str
    client_port: int | None
    client_app: str | None
    tls: bool


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


@dataclass(frozen=True, slots=True)
class Verdict:
    """A statement hook's decision. ``block`` refuses the statement with ``sqlstate`` and ``message``
    (shown to the client, so it must say what to do and never echo values)."""

    action: Literal["allow", "block"]
    sqlstate: str = "42501"
    message: str = ""
    rule: str | None = None


ALLOW = Verdict("allow")


class Hook:
    """Base class of session hooks; every method is a no-op. Override only what you need."""

    def authenticated(self, session: SessionInfo) -> Verdict | None:
        """The identity is verified and upstream is connected. A ``block`` verdict ends the session."""
        return None

    def statement(self, stmt: StatementView) -> Verdict | None:
        """Before a statement is sent upstream; ``None`` means no opinion (allow)."""
        return None

    def row_description(self, stmt: StatementView | None, fields: Sequence[FieldDesc]) -> bool:
        """A result set starts. Return True to receive its rows through :meth:`data_row`."""
        return False

    def data_row(self, stmt: StatementView | None, values: list[bytes | None]) -> list[bytes | None] | None:
        """One row of a result this hook asked for; return a replacement row, or None to keep it."""
        return None

    def copy_data(self, stmt: StatementView | None, outgoing: bool, data: bytes) -> bytes | None:
        """COPY payload (``outgoing``: server to client); return replacement bytes, or None to keep it."""
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
        "_close",
        "_command_complete",
        "_copy_data",
        "_data_row",
        "_error",
        "_row_description",
        "_statement",
        "hooks",
    )

    def __init__(self, hooks: Sequence[Hook] = ()) -> None:
        self.hooks = tuple(hooks)
        self._authenticated = [h for h in self.hooks if _overrides(h, "authenticated")]
        self._statement = [h for h in self.hooks if _overrides(h, "statement")]
        self._row_description = [h for h in self.hooks if _overrides(h, "row_description")]
        self._data_row = [h for h in self.hooks if _overrides(h, "data_row")]
        self._copy_data = [h for h in self.hooks if _overrides(h, "copy_data")]
        self._command_complete = [h for h in self.hooks if _overrides(h, "command_complete")]
        self._error = [h for h in self.hooks if _overrides(h, "error")]
        self._close = [h for h in self.hooks if _overrides(h, "close")]

    @property
    def wants_statements(self) -> bool:
        return bool(self._statement)

    @property
    def wants_row_descriptions(self) -> bool:
        return bool(self._row_description)

    @property
    def wants_copy_data(self) -> bool:
        return bool(self._copy_data)

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

    def statement(self, stmt: StatementView) -> Verdict:
        """The first non-allow verdict wins; every hook sees the statement until then."""
        for hook in self._statement:
            verdict = hook.statement(stmt)
            if verdict is not None and verdict.action != "allow":
                return verdict
        return ALLOW

    def row_description(self, stmt: StatementView | None, fields: Sequence[FieldDesc]) -> tuple[Hook, ...]:
        """Which hooks want the rows of this result (empty: rows pass through undecoded)."""
        return tuple(
            h for h in self._row_description if h.row_description(stmt, fields) and _overrides(h, "data_row")
        )

    def copy_data(self, stmt: StatementView | None, outgoing: bool, data: bytes) -> bytes:
        for hook in self._copy_data:
            replaced = hook.copy_data(stmt, outgoing, data)
            if replaced is not None:
                data = replaced
        return data

    def command_complete(self, stmt: StatementView, tag: str, rows: int | None) -> None:
        for hook in self._command_complete:
            hook.command_complete(stmt, tag, rows)

    def error(self, stmt: StatementView | None, fields: dict[str, str]) -> None:
        for hook in self._error:
            hook.error(stmt, fields)

    def close(self, session: SessionInfo, reason: str) -> None:
        for hook in self._close:
            hook.close(session, reason)


def apply_row_hooks(
    hooks: Sequence[Hook], stmt: StatementView | None, values: list[bytes | None]
) -> list[bytes | None] | None:
    """Run the interested hooks over one row; the replacement row, or None when nothing changed."""
    changed: list[bytes | None] | None = None
    for hook in hooks:
        replaced = hook.data_row(stmt, values if changed is None else changed)
        if replaced is not None:
            changed = replaced
    return changed
