"""The gateway's audit events, built as JSON bytes ready for the spool.

``command.executed`` is built on every statement, so it is assembled from pre-serialized pieces (the
session's actor/origin, a statement's masked text cached by its exact text) instead of through pydantic
(~30 µs per event). Tests validate what this module emits against the JSON Schema files, so the fast path
cannot drift from the contract. Rare events (session and auth) go through the pydantic models.

Nothing here ever serializes raw SQL text or parameter values: text goes through
:func:`gateway.sqltext.audit_text` and parameters through :func:`gateway.sqltext.mask_parameter` first.
"""

from __future__ import annotations

import hmac
import json
import json.encoder
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from gateway.identity import VerifiedIdentity
from gateway.sqltext import StatementInfo, analyze, audit_text, mask_parameter
from schemas.ids import new_event_id
from schemas.models import (
    SCHEMA_VERSION,
    Actor,
    AuthFailed,
    AuthFailedData,
    Envelope,
    Origin,
    Outcome,
    Policy,
    SessionClosed,
    SessionClosedData,
    SessionOpened,
    SessionOpenedData,
    Target,
)
from schemas.registry import pci_requirements

__all__ = [
    "MAX_AUDITED_PARAMETERS",
    "SUBJECT_PREFIX",
    "DigestKey",
    "SessionAudit",
    "StatementAudit",
    "actor_of",
    "auth_failed_event",
    "fast_utc_now",
    "statement_audit",
    "subject_for",
]

SUBJECT_PREFIX: Final = "pcigate.audit."
MAX_AUDITED_PARAMETERS: Final = 128
_CACHE_LIMIT: Final = 8192

_dumps = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode
# the C string escaper behind json.dumps, without the encoder's per-call setup (~1 µs each, ~10 per statement)
_escape: Final[Callable[[str], str]] = json.encoder.encode_basestring_ascii


def _jstr(value: str | None) -> str:
    """JSON for a string or null, exactly as ``_dumps`` writes it."""
    return "null" if value is None else _escape(value)


def _jlist(values: Sequence[str | None]) -> str:
    return "[" + ",".join(["null" if v is None else _escape(v) for v in values]) + "]"


_last_second = -1
_second_prefix = ""


def fast_utc_now() -> str:
    """The envelope's timestamp (RFC 3339, UTC, microseconds) in ~0.5 µs: strftime once per second."""
    global _last_second, _second_prefix  # noqa: PLW0603 - a per-process formatting cache
    ns = time.time_ns()
    second, micros = divmod(ns // 1000, 1_000_000)
    if second != _last_second:
        _second_prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _last_second = second
    return f"{_second_prefix}.{micros:06d}Z"


def subject_for(event_type: str) -> str:
    """``pcigate.audit.<type>``: SIEMs can subscribe to one type, the ledger to ``pcigate.audit.>``."""
    return SUBJECT_PREFIX + event_type


@dataclass(frozen=True, slots=True)
class DigestKey:
    """The HMAC key for statement digests (PCI DSS 3.5.1.1) and its id."""

    key_id: str
    key: bytes

    def digest(self, text: str, params: Sequence[bytes | None] | None) -> str:
        """HMAC-SHA256 over the exact statement and parameters.

        Input: the UTF-8 text, then per parameter a 0x00 byte and either ``N`` (SQL NULL) or a 4-byte
        big-endian length and the value — unambiguous, so two different statements never share an input.
        """
        data = text.encode("utf-8", "surrogateescape")
        if params:
            parts = [data]
            for value in params:
                if value is None:
                    parts.append(b"\x00N")
                else:
                    parts.append(b"\x00" + len(value).to_bytes(4, "big"))
                    parts.append(value)
            data = b"".join(parts)
        # one-shot C path: a third of the cost of an hmac.HMAC object fed piece by piece
        return hmac.digest(self.key, data, "sha256").hex()


@dataclass(frozen=True, slots=True)
class StatementAudit:
    """What the audit trail says about a statement's text, computed once per distinct exact text."""

    info: StatementInfo
    static_json: str  # the statement object's members that depend only on the text, without braces
    masked_literals: int


_statement_cache: dict[str, StatementAudit] = {}


def statement_audit(text: str) -> StatementAudit:
    """Analysis and masked text of ``text``; cached by exact text (prepared statements repeat it)."""
    cached = _statement_cache.get(text)
    if cached is not None:
        return cached
    info = analyze(text)
    masked, truncated, count = audit_text(text)
    static = (
        f'"text":{_jstr(masked)},"text_truncated":{"true" if truncated else "false"},'
        f'"masked_literals":{count},"fingerprint":"{info.fingerprint}",'
        f'"kind":"{info.kind}","objects":{_jlist(info.objects)}'
    )
    result = StatementAudit(info, static, count)
    if len(_statement_cache) >= _CACHE_LIMIT:
        _statement_cache.clear()  # simple and bounded; the hot set refills within milliseconds
    _statement_cache[text] = result
    return result


# Binary parameters whose type the Parse message named and whose text form we can render exactly; the text
# still goes through PAN masking (a 16-digit card number fits in an int8).
_INT_OIDS: Final = {20: 8, 21: 2, 23: 4, 26: 4}  # int8, int2, int4, oid
_FLOAT_OIDS: Final = {700: ">f", 701: ">d"}
_BOOL_OID: Final = 16


def _binary_as_text(value: bytes, oid: int) -> bytes | None:
    size = _INT_OIDS.get(oid)
    if size is not None and len(value) == size:
        return str(int.from_bytes(value, "big", signed=oid != 26)).encode()
    fmt = _FLOAT_OIDS.get(oid)
    if fmt is not None and len(value) == struct.calcsize(fmt):
        return repr(struct.unpack(fmt, value)[0]).encode()
    if oid == _BOOL_OID and len(value) == 1:
        return b"true" if value != b"\x00" else b"false"
    return None


def _parameters_json(
    params: Sequence[bytes | None] | None, formats: Sequence[int], oids: Sequence[int] = ()
) -> tuple[str, bool]:
    if params is None:
        return "null", False
    truncated = len(params) > MAX_AUDITED_PARAMETERS
    out: list[str | None] = []
    nformats, noids = len(formats), len(oids)
    for i, raw in enumerate(params[:MAX_AUDITED_PARAMETERS]):
        # Bind: no format codes = all text; one = applies to all; else one per parameter.
        binary = (formats[0] if nformats == 1 else formats[i] if nformats > 1 else 0) == 1
        value = raw
        if binary and raw is not None and i < noids:
            as_text = _binary_as_text(raw, oids[i])
            if as_text is not None:
                value, binary = as_text, False
        masked, cut, _ = mask_parameter(value, binary=binary)
        truncated = truncated or cut
        out.append(masked)
    return _jlist(out), truncated


Result = Literal["success", "failure", "blocked", "pending"]

_INTERRUPTED_OUTCOME: Final = (
    '{"result":"failure","code":"interrupted","message":"the gateway stopped before the statement '
    'completed; it may or may not have run upstream"}'
)


class SessionAudit:
    """Builds one session's events; the envelope's fixed parts are serialized once per session."""

    __slots__ = (
        "_actor",
        "_digest_key",
        "_origin",
        "_pci_executed",
        "_policy_version",
        "_session_json",
        "_target_prefix",
        "actor",
        "origin",
        "session_id",
        "target",
    )

    def __init__(
        self,
        *,
        session_id: str | None,
        actor: Actor,
        origin: Origin,
        target: Target,
        policy_version: str,
        digest_key: DigestKey,
    ) -> None:
        self.session_id = session_id
        self.actor = actor
        self.origin = origin
        self.target = target
        self._digest_key = digest_key
        self._policy_version = policy_version
        self._actor = actor.model_dump_json()
        self._origin = origin.model_dump_json()
        t = target
        self._target_prefix = (
            f'{{"connection":{_dumps(t.connection)},"protocol":"{t.protocol}","host":{_dumps(t.host)},'
            f'"database":{_dumps(t.database)},"object":'
        )
        self._pci_executed = _dumps(list(pci_requirements("command.executed")))
        self._session_json = _jstr(session_id)

    # --- command.executed (hot path) ----------------------------------------------------------------

    def statement_json(
        self,
        text: str,
        audit: StatementAudit,
        params: Sequence[bytes | None] | None,
        param_formats: Sequence[int] = (),
        param_oids: Sequence[int] = (),
    ) -> str:
        """The ``statement`` object: masked text and parameters, fingerprint and keyed digest."""
        params_json, params_cut = _parameters_json(params, param_formats, param_oids)
        digest = self._digest_key.digest(text, params)
        return (
            f'{{{audit.static_json},"digest":{{"key_id":"{self._digest_key.key_id}",'
            f'"hmac_sha256":"{digest}"}},"parameters":{params_json},'
            f'"parameters_truncated":{"true" if params_cut else "false"}}}'
        )

    def command_draft(
        self, *, event_id: str, statement_json: str, objects: Sequence[str], sequence: int
    ) -> str:
        """The parts of a statement's ``command.executed`` fixed when it starts, serialized once for both
        its intent and its completion (``time`` is when the gateway received the statement)."""
        obj = _jstr(objects[0]) if objects else "null"
        return (
            f'{{"id":"{event_id}","type":"command.executed","schema_version":"{SCHEMA_VERSION}",'
            f'"time":"{fast_utc_now()}","actor":{self._actor},"origin":{self._origin},'
            f'"target":{self._target_prefix}{obj}}},"session_id":{self._session_json},'
            f'"pci":{self._pci_executed},"data":{{"statement":{statement_json},"sequence":{sequence},'
        )

    def command_intent(self, draft: str, *, privileged: bool, rule: str | None) -> bytes:
        """The intent's payload: the event a crash leaves behind (outcome ``interrupted``)."""
        return self.command_result(draft, outcome=None, privileged=privileged, rule=rule)

    def command_result(
        self,
        draft: str,
        *,
        outcome: Result | None,
        code: str | None = None,
        message: str | None = None,
        command_tag: str | None = None,
        rows: int | None = None,
        duration_ms: float = 0.0,
        chd_access: bool = False,
        privileged: bool = False,
        masked_values: int = 0,
        approval_id: str | None = None,
        rule: str | None = None,
    ) -> bytes:
        """The ``command.executed`` event for a draft; ``outcome=None`` is the intent's fallback."""
        if outcome is None:
            outcome_json = _INTERRUPTED_OUTCOME
        else:
            outcome_json = f'{{"result":"{outcome}","code":{_jstr(code)},"message":{_jstr(message)}}}'
        return (
            f'{draft}"command_tag":{_jstr(command_tag)},"rows":{"null" if rows is None else rows},'
            f'"duration_ms":{round(duration_ms, 3)},"chd_access":{"true" if chd_access else "false"},'
            f'"privileged":{"true" if privileged else "false"},"masked_values":{masked_values},'
            f'"approval_id":{_jstr(approval_id)}}},"outcome":{outcome_json},'
            f'"policy":{{"version":"{self._policy_version}","rule":{_jstr(rule)}}}}}'
        ).encode()

    # --- session events (rare: validated through the models) --------------------------------------

    def session_opened(self, data: SessionOpenedData) -> tuple[str, bytes]:
        _, event_id, payload = self.hook_event(SessionOpened, data)
        return event_id, payload

    def hook_event(
        self,
        event: type[Envelope],
        data: object,
        *,
        rule: str | None = None,
        result: Result = "success",
        pci: Sequence[str] = (),
        code: str | None = None,
        message: str | None = None,
        actor: Actor | None = None,
        origin: Origin | None = None,
    ) -> tuple[str, str, bytes]:
        """A policy hook's event of this session (masking, SAD, approvals): ``(subject, id, payload)``,
        validated through its model because these are rare next to ``command.executed``. ``actor`` and
        ``origin`` default to the session's (an approver's decision on it names the approver)."""
        event_type = str(event.model_fields["type"].default)
        built = event(
            id=new_event_id(),
            type=event_type,
            schema_version=SCHEMA_VERSION,
            time=fast_utc_now(),
            actor=actor or self.actor,
            origin=origin or self.origin,
            target=self.target,
            session_id=self.session_id,
            outcome=Outcome(result=result, code=code, message=message),
            policy=Policy(version=self._policy_version, rule=rule),
            pci=tuple(dict.fromkeys((*pci_requirements(event_type), *pci))),
            data=data,
        )
        return subject_for(event_type), built.id, built.model_dump_json().encode()

    def session_closed(self, data: SessionClosedData, *, failed: bool) -> tuple[str, bytes]:
        outcome = Outcome(
            result="failure" if failed else "success",
            code=data.reason if failed else None,
            message=None,
        )
        event = SessionClosed(
            id=new_event_id(),
            schema_version=SCHEMA_VERSION,
            time=fast_utc_now(),
            actor=self.actor,
            origin=self.origin,
            target=self.target,
            session_id=self.session_id,
            outcome=outcome,
            policy=Policy(version=self._policy_version, rule=None) if self._policy_version else None,
            pci=pci_requirements("session.closed"),
            data=data,
        )
        return event.id, event.model_dump_json().encode()


def actor_of(identity: VerifiedIdentity) -> Actor:
    """The envelope's actor for a verified identity."""
    return Actor(
        sub=identity.sub,
        iss=identity.iss,
        name=identity.name,
        groups=identity.groups,
        kind=identity.kind,
        on_behalf_of=identity.on_behalf_of,
    )


def auth_failed_event(
    *,
    actor: Actor,
    origin: Origin,
    target: Target,
    sqlstate: str,
    message: str,
    data: AuthFailedData,
    policy_version: str,
) -> tuple[str, bytes]:
    """An ``auth.failed`` event; ``actor`` is the claimed (unverified) identity. The policy version says
    which policy refused it, like every other event's."""
    event = AuthFailed(
        id=new_event_id(),
        schema_version=SCHEMA_VERSION,
        time=fast_utc_now(),
        actor=actor,
        origin=origin,
        target=target,
        session_id=None,
        outcome=Outcome(result="failure", code=sqlstate, message=message),
        policy=Policy(version=policy_version, rule=None) if policy_version else None,
        pci=pci_requirements("auth.failed"),
        data=data,
    )
    return event.id, event.model_dump_json().encode()
