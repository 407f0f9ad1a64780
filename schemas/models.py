"""Typed models of the v1 event contract.

The JSON Schema files in ``schemas/json`` are the contract that consumers outside Python (SIEMs) read;
these models are the same contract for Python producers and consumers. Tests walk both and fail on
any difference, so a field cannot be added to one without the other.

The models never invent evidence: no field has a default except the ``type`` literal, so an event
that lacks its time, actor or outcome is refused rather than completed with the consumer's values.
Scalars are strict (no ``"5"`` for 5, no ``5.0`` for an integer, no bytes for text) so that the models
accept exactly what the schema files accept.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Any, Final, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict, TypeAdapter, ValidationError

from schemas.errors import EventInvalid, render_path, safe_name
from schemas.ids import TIME_PATTERN, parse_utc

__all__ = [
    "EVENT_MODELS",
    "EVENT_TYPES",
    "SCHEMA_VERSION",
    "AccessGranted",
    "AccessGrantedData",
    "AccessRevoked",
    "AccessRevokedData",
    "Actor",
    "AnyEvent",
    "ApprovalDecided",
    "ApprovalDecidedData",
    "ApprovalExpired",
    "ApprovalExpiredData",
    "ApprovalRequested",
    "ApprovalRequestedData",
    "AuditGap",
    "AuditGapData",
    "AuthFailed",
    "AuthFailedData",
    "CommandBlocked",
    "CommandBlockedData",
    "CommandExecuted",
    "CommandExecutedData",
    "ConfigChanged",
    "ConfigChangedData",
    "Envelope",
    "FieldLocation",
    "Grantee",
    "KeyedDigest",
    "LedgerRead",
    "LedgerReadData",
    "LedgerStarted",
    "LedgerStartedData",
    "LedgerStopped",
    "LedgerStoppedData",
    "MaskLocation",
    "MaskingApplied",
    "MaskingAppliedData",
    "Origin",
    "Outcome",
    "Policy",
    "Principal",
    "ReadFilter",
    "RecordingChunk",
    "RecordingChunkData",
    "SadDetected",
    "SadDetectedData",
    "SessionClosed",
    "SessionClosedData",
    "SessionOpened",
    "SessionOpenedData",
    "Statement",
    "Target",
    "parse_event",
]

SCHEMA_VERSION: Final = "1.1"
"""The ``schema_version`` producers of this package write.

v1 is additive-only, so consumers accept every ``1.<minor>`` (events written as ``"1.0"`` stay valid);
1.1 added ``recording.chunk``.
"""

# Patterns are byte-for-byte those of the schema files (a test compares them).
LABEL_PATTERN: Final = r"^[^\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]+$"
"""Single-line text: no control characters, no bidi overrides (they disguise text on screen)."""
TEXT_PATTERN: Final = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"
"""Multi-line text: tabs and newlines allowed, other control characters not."""
UUID7_PATTERN: Final = r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
SHA256_PATTERN: Final = r"^[0-9a-f]{64}$"
PCI_REQUIREMENT_PATTERN: Final = r"^(?:[1-9]|1[0-2]|A[1-3])(?:\.[0-9]{1,2}){1,3}$"
EVENT_TYPE_PATTERN: Final = r"^[a-z]+\.[a-z_]+$"
_KEY_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_CODE_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_SESSION_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
_ADDR_PATTERN: Final = (
    r"^(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[0-9A-Fa-f:.]{2,45}(?:%[0-9A-Za-z_.-]{1,16})?|local)$"
)
_KEY_PATH_PATTERN: Final = r"^[A-Za-z0-9_][A-Za-z0-9_.\[\]-]{0,255}$"
_SIGNING_KEY_ID_PATTERN: Final = r"^[0-9a-f]{8}$"
_MAX_SAFE_INT: Final = 2**53 - 1  # RFC 8785 cannot canonicalize larger integers

_T = TypeVar("_T")


def _unique(items: tuple[_T, ...]) -> tuple[_T, ...]:
    """Refuse duplicates (JSON Schema ``uniqueItems``) while keeping order, which hashing needs."""
    if len(set(items)) != len(items):
        raise ValueError("items must be unique")
    return items


def _calendar_date(value: str) -> str:
    """Refuse pattern-shaped but impossible instants such as February 30 (``format: date-time``)."""
    parse_utc(value)
    return value


def _text(min_length: int | None, max_length: int, pattern: str) -> Any:
    return Field(min_length=min_length, max_length=max_length, pattern=pattern)


# --- scalar types -------------------------------------------------------------------------------
Label64 = Annotated[str, Strict(), _text(1, 64, LABEL_PATTERN)]
Label128 = Annotated[str, Strict(), _text(1, 128, LABEL_PATTERN)]
Label = Annotated[str, Strict(), _text(1, 256, LABEL_PATTERN)]
Label512 = Annotated[str, Strict(), _text(1, 512, LABEL_PATTERN)]
Text256 = Annotated[str, Strict(), _text(1, 256, TEXT_PATTERN)]
Text = Annotated[str, Strict(), _text(1, 1024, TEXT_PATTERN)]
StatementText = Annotated[str, Strict(), _text(1, 16384, TEXT_PATTERN)]
ParameterText = Annotated[str, Strict(), _text(None, 1024, TEXT_PATTERN)]
Uuid7 = Annotated[str, Strict(), _text(36, 36, UUID7_PATTERN)]
Timestamp = Annotated[
    str,
    Strict(),
    Field(min_length=27, max_length=27, pattern=TIME_PATTERN, json_schema_extra={"format": "date-time"}),
    AfterValidator(_calendar_date),
]
Sha256Hex = Annotated[str, Strict(), _text(64, 64, SHA256_PATTERN)]
PciRequirement = Annotated[str, Strict(), _text(3, 12, PCI_REQUIREMENT_PATTERN)]
EventTypeName = Annotated[str, Strict(), _text(3, 64, EVENT_TYPE_PATTERN)]
SchemaVersion = Annotated[str, Strict(), _text(3, 8, r"^1\.[0-9]+$")]
KeyId = Annotated[str, Strict(), _text(1, 64, _KEY_ID_PATTERN)]
Code = Annotated[str, Strict(), _text(1, 64, _CODE_PATTERN)]
SessionId = Annotated[str, Strict(), _text(1, 128, _SESSION_ID_PATTERN)]
Addr = Annotated[str, Strict(), _text(1, 64, _ADDR_PATTERN)]
KeyPath = Annotated[str, Strict(), _text(1, 256, _KEY_PATH_PATTERN)]
SigningKeyId = Annotated[str, Strict(), _text(8, 8, _SIGNING_KEY_ID_PATTERN)]

Count = Annotated[int, Strict(), Field(ge=0, le=_MAX_SAFE_INT)]
Ordinal = Annotated[int, Strict(), Field(ge=1, le=_MAX_SAFE_INT)]
Port = Annotated[int, Strict(), Field(ge=0, le=65535)]
Quorum = Annotated[int, Strict(), Field(ge=1, le=10)]
IdleTimeout = Annotated[int, Strict(), Field(ge=1, le=86400)]
Millis = Annotated[float, Strict(), Field(ge=0, le=_MAX_SAFE_INT, allow_inf_nan=False)]
Flag = Annotated[bool, Strict()]


def _unique_list(max_items: int, min_items: int | None = None) -> Any:
    return Field(min_length=min_items, max_length=max_items, json_schema_extra={"uniqueItems": True})


Groups = Annotated[tuple[Label, ...], _unique_list(256), AfterValidator(_unique)]
ApproverGroups = Annotated[tuple[Label, ...], _unique_list(32, 1), AfterValidator(_unique)]
PciList = Annotated[tuple[PciRequirement, ...], _unique_list(32, 1), AfterValidator(_unique)]
ObjectNames = Annotated[tuple[Label512, ...], _unique_list(128), AfterValidator(_unique)]
Privileges = Annotated[
    tuple[Literal["connect", "read", "write", "ddl", "admin", "unmask"], ...],
    _unique_list(6, 1),
    AfterValidator(_unique),
]
Parameters = Annotated[tuple[ParameterText | None, ...], Field(max_length=128)]

StatementKind = Literal[
    "dql", "dml", "ddl", "dcl", "tcl", "session", "copy", "call", "utility", "shell", "http", "other"
]
Surface = Literal[
    "result_set", "statement_text", "parameters", "error_message", "notice", "copy_data", "recording"
]
AuthMethod = Literal["oidc_token", "ssh_certificate", "mtls_certificate"]


class _Closed(BaseModel):
    """Base of every object in the contract.

    Unknown fields are errors (that is how stray values stay out of the audit trail), instances are
    immutable, and validation errors do not quote their input (it may hold card data).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


# --- shared objects -----------------------------------------------------------------------------
class KeyedDigest(_Closed):
    """HMAC-SHA256 under a producer-held key (PCI DSS 3.5.1.1): binds exact values, reveals nothing."""

    key_id: KeyId
    hmac_sha256: Sha256Hex


class Principal(_Closed):
    """An identity an event refers to other than its actor (the requester of an approval)."""

    sub: Label
    iss: Label512
    name: Label | None


class Statement(_Closed):
    """A statement as seen by the gateway, with literals and parameters already masked."""

    text: StatementText
    text_truncated: Flag
    masked_literals: Count
    fingerprint: Sha256Hex
    digest: KeyedDigest
    parameters: Parameters | None
    parameters_truncated: Flag
    kind: StatementKind
    objects: ObjectNames


class Actor(_Closed):
    """Who acted (PCI DSS 10.2.2 user identification)."""

    sub: Label
    iss: Label512
    name: Label | None
    groups: Groups
    kind: Literal["human", "agent", "service"]
    on_behalf_of: Label | None


class Origin(_Closed):
    """Where the action came from (PCI DSS 10.2.2 origination)."""

    addr: Addr
    port: Port | None
    client_app: Label | None


class Target(_Closed):
    """What was acted on (PCI DSS 10.2.2 affected data, component, resource or service)."""

    connection: Label | None
    protocol: Literal["postgres", "mysql", "ssh", "http", "nats", "ledger", "pcigate"]
    host: Label
    database: Label | None
    object: Label512 | None


class Outcome(_Closed):
    """Result of the action (PCI DSS 10.2.2 success or failure)."""

    result: Literal["success", "failure", "blocked", "pending"]
    code: Code | None
    message: Text | None


class Policy(_Closed):
    """Policy version and rule that decided the action."""

    version: Label
    rule: Label | None


class Envelope(_Closed):
    """Fields every event carries; subclasses fix ``type`` and ``data``."""

    id: Uuid7
    type: EventTypeName
    schema_version: SchemaVersion
    time: Timestamp
    actor: Actor
    origin: Origin
    target: Target
    session_id: SessionId | None
    outcome: Outcome
    policy: Policy | None
    pci: PciList
    data: _Closed


# --- data of each event type --------------------------------------------------------------------
class SessionOpenedData(_Closed):
    """``session.opened`` data: how the session was authenticated and what it may do."""

    auth_method: AuthMethod
    token_jti: Label | None
    token_expires_at: Timestamp | None
    amr: Annotated[tuple[Label64, ...], _unique_list(16), AfterValidator(_unique)]
    tls_version: Literal["TLSv1.2", "TLSv1.3"] | None
    tls_cipher: Label128 | None
    upstream_role: Label | None
    matched_groups: Groups
    idle_timeout_s: IdleTimeout | None


class SessionClosedData(_Closed):
    """``session.closed`` data: why the session ended and what it did."""

    reason: Literal[
        "client_closed",
        "idle_timeout",
        "max_duration",
        "credential_expired",
        "access_revoked",
        "upstream_closed",
        "gateway_shutdown",
        "protocol_error",
        "policy_terminated",
    ]
    duration_ms: Millis
    statements: Count
    statements_blocked: Count
    rows: Count
    bytes_from_client: Count
    bytes_to_client: Count
    masked_values: Count


class AuthFailedData(_Closed):
    """``auth.failed`` data: why authentication failed."""

    reason: Literal[
        "credential_missing",
        "credential_malformed",
        "signature_invalid",
        "issuer_untrusted",
        "audience_mismatch",
        "credential_expired",
        "credential_not_yet_valid",
        "key_unknown",
        "jwks_unavailable",
        "mfa_required",
        "no_group_grants_connection",
        "connection_unknown",
        "locked_out",
        "rate_limited",
    ]
    auth_method: AuthMethod | None
    claimed_identity_source: Literal["token_claims", "protocol_user", "none"]
    token_jti: Label | None
    consecutive_failures: Ordinal
    lockout_until: Timestamp | None


class CommandExecutedData(_Closed):
    """``command.executed`` data: what ran and what it returned."""

    statement: Statement
    sequence: Ordinal
    command_tag: Label64 | None
    rows: Count | None
    duration_ms: Millis
    chd_access: Flag
    privileged: Flag
    masked_values: Count
    approval_id: Uuid7 | None


class CommandBlockedData(_Closed):
    """``command.blocked`` data: what was refused and why."""

    statement: Statement
    sequence: Ordinal
    reason: Literal[
        "policy_rule",
        "approval_denied",
        "approval_expired",
        "limit_exceeded",
        "parse_error",
        "sad_detected",
        "policy_unavailable",
        "audit_unavailable",
    ]
    limit: Label128 | None
    chd_access: Flag
    privileged: Flag
    approval_id: Uuid7 | None


class MaskLocation(_Closed):
    """Where values were masked, by what and how; counts only, never values."""

    table: Label512 | None
    column: Label | None
    ordinal: Count | None
    detector: Literal["column_policy", "lineage", "pan_luhn", "track_format", "pan_pattern", "custom_rule"]
    method: Literal["first6_last4", "first8_last4", "last4", "redact", "hmac_token", "null"]
    count: Ordinal


class MaskingAppliedData(_Closed):
    """``masking.applied`` data: where values were masked, how, and how many."""

    command_event_id: Uuid7 | None
    statement_fingerprint: Sha256Hex | None
    surface: Surface
    locations: Annotated[tuple[MaskLocation, ...], Field(min_length=1, max_length=256)]
    locations_truncated: Flag
    total_values: Ordinal


class FieldLocation(_Closed):
    """A column or field, as precisely as the producer knows it."""

    table: Label512 | None
    column: Label | None
    ordinal: Count | None


class SadDetectedData(_Closed):
    """``sad.detected`` data: what kind of data was found, where, and what was done."""

    kind: Literal["cvv", "track1", "track2", "pin_block"]
    surface: Surface
    location: FieldLocation | None
    detector: Literal["column_policy", "track_format", "cvv_pattern", "pin_block_format", "custom_rule"]
    action: Literal["redacted", "statement_blocked", "session_terminated"]
    count: Ordinal
    command_event_id: Uuid7 | None
    statement_fingerprint: Sha256Hex | None


class ApprovalRequestedData(_Closed):
    """``approval.requested`` data: what is held, who may approve it, and for how long."""

    request_id: Uuid7
    statement: Statement
    approver_groups: ApproverGroups
    quorum: Quorum
    expires_at: Timestamp
    scope: Literal["once", "fingerprint", "session"]
    max_executions: Ordinal | None
    chd_access: Flag
    privileged: Flag
    justification: Text | None
    ticket: Label128 | None


class ApprovalDecidedData(_Closed):
    """``approval.decided`` data: the decision and what it applies to."""

    request_id: Uuid7
    decision: Literal["approve", "deny"]
    reason: Text
    requester: Principal
    approver_groups_matched: ApproverGroups
    statement_fingerprint: Sha256Hex
    statement_digest: KeyedDigest
    approvals: Count
    quorum: Quorum
    final: Flag
    channel: Literal["tui", "cli", "api"]


class ApprovalExpiredData(_Closed):
    """``approval.expired`` data: the request that expired."""

    request_id: Uuid7
    requester: Principal
    statement_fingerprint: Sha256Hex
    expires_at: Timestamp
    approvals: Count
    quorum: Quorum


class Grantee(_Closed):
    """An identity or a whole group that receives or loses access."""

    kind: Literal["identity", "group"]
    id: Label
    iss: Label512 | None


class AccessGrantedData(_Closed):
    """``access.granted`` data: what was granted, to whom, for how long and on what authority."""

    grant_id: Uuid7
    grantee: Grantee
    privileges: Privileges
    role: Label | None
    valid_from: Timestamp
    valid_until: Timestamp | None
    mechanism: Literal["config", "jit_approval", "break_glass", "api"]
    approval_id: Uuid7 | None
    justification: Text | None
    ticket: Label128 | None


class AccessRevokedData(_Closed):
    """``access.revoked`` data: what was removed, from whom and why."""

    grant_id: Uuid7 | None
    grantee: Grantee
    privileges: Privileges
    role: Label | None
    reason: Literal["expired", "manual", "termination", "access_review", "policy_change", "approval_revoked"]
    sessions_terminated: Count
    ticket: Label128 | None


class LedgerStartedData(_Closed):
    """``ledger.started`` data: which ledger, in what state, consuming what."""

    log_origin: Label
    initialized: Flag
    tree_size: Count
    root_hash: Sha256Hex
    signing_key_id: SigningKeyId
    stream: Label128
    consumer: Label128
    resume_after_sequence: Count
    software_version: Label64


class LedgerStoppedData(_Closed):
    """``ledger.stopped`` data: which ledger, in what state, and why it stopped."""

    log_origin: Label
    reason: Literal["shutdown", "paused", "maintenance", "error"]
    clean: Flag
    tree_size: Count
    root_hash: Sha256Hex
    last_sequence: Count


class ReadFilter(_Closed):
    """The selection a ledger reader applied (what they looked for is itself evidence)."""

    types: Annotated[tuple[EventTypeName, ...], _unique_list(32), AfterValidator(_unique)]
    since: Timestamp | None
    until: Timestamp | None
    actor_sub: Label | None
    requirement: PciRequirement | None


class LedgerReadData(_Closed):
    """``ledger.read`` data: what was read."""

    log_origin: Label
    operation: Literal[
        "events", "inclusion_proof", "consistency_proof", "checkpoint", "export", "evidence_pack", "verify"
    ]
    first_index: Count | None
    last_index: Count | None
    tree_size: Count | None
    filter: ReadFilter | None
    results: Count
    purpose: Text256 | None


class AuditGapData(_Closed):
    """``audit.gap`` data: where the gap is and what is known of its cause."""

    stream: Label128
    subject: Label | None
    first_missing: Ordinal
    last_missing: Ordinal
    detected_by: Literal["evidence_consumer", "publisher", "verifier"]
    cause: Literal[
        "unknown", "invalid_event", "stream_limit", "spool_overflow", "publisher_restart", "sequence_reset"
    ]
    producer: Label | None
    last_event_id: Uuid7 | None


class ConfigChangedData(_Closed):
    """``config.changed`` data: what changed, by hash and by key path."""

    component: Literal["gateway", "evidence", "cli", "tui", "reports"]
    trigger: Literal["startup", "reload", "file_watch", "api"]
    hash_before: Sha256Hex | None
    hash_after: Sha256Hex
    changed_keys: Annotated[tuple[KeyPath, ...], _unique_list(512), AfterValidator(_unique)]
    changed_keys_truncated: Flag
    policy_version_before: Label | None
    policy_version_after: Label | None


class RecordingChunkData(_Closed):
    """``recording.chunk`` data: which chunk of the recording, where it went, its hash, what it holds."""

    seq: Ordinal
    sha256: Sha256Hex
    bytes: Count
    subject: Label
    msg_id: Label
    records: Count
    first_sequence: Ordinal | None
    last_sequence: Ordinal | None
    rows_recorded: Count
    rows_omitted: Count
    final: Flag
    format: Literal["pcigate-recording/1"]


# --- events -------------------------------------------------------------------------------------
class SessionOpened(Envelope):
    """A client session was authenticated and connected upstream."""

    type: Literal["session.opened"] = "session.opened"
    data: SessionOpenedData


class SessionClosed(Envelope):
    """A client session ended."""

    type: Literal["session.closed"] = "session.closed"
    data: SessionClosedData


class AuthFailed(Envelope):
    """An identity could not be verified or may not use the connection."""

    type: Literal["auth.failed"] = "auth.failed"
    data: AuthFailedData


class CommandExecuted(Envelope):
    """A statement ran upstream."""

    type: Literal["command.executed"] = "command.executed"
    data: CommandExecutedData


class CommandBlocked(Envelope):
    """A statement was refused before reaching the data store."""

    type: Literal["command.blocked"] = "command.blocked"
    data: CommandBlockedData


class MaskingApplied(Envelope):
    """Values were masked; locations and counts only."""

    type: Literal["masking.applied"] = "masking.applied"
    data: MaskingAppliedData


class SadDetected(Envelope):
    """Sensitive authentication data was found and stopped."""

    type: Literal["sad.detected"] = "sad.detected"
    data: SadDetectedData


class ApprovalRequested(Envelope):
    """A statement was held for just-in-time approval."""

    type: Literal["approval.requested"] = "approval.requested"
    data: ApprovalRequestedData


class ApprovalDecided(Envelope):
    """An approver approved or denied a held statement."""

    type: Literal["approval.decided"] = "approval.decided"
    data: ApprovalDecidedData


class ApprovalExpired(Envelope):
    """An approval request expired without quorum."""

    type: Literal["approval.expired"] = "approval.expired"
    data: ApprovalExpiredData


class AccessGranted(Envelope):
    """Access to a connection was granted or elevated."""

    type: Literal["access.granted"] = "access.granted"
    data: AccessGrantedData


class AccessRevoked(Envelope):
    """Access to a connection was removed."""

    type: Literal["access.revoked"] = "access.revoked"
    data: AccessRevokedData


class LedgerStarted(Envelope):
    """The evidence service started (or created) a ledger."""

    type: Literal["ledger.started"] = "ledger.started"
    data: LedgerStartedData


class LedgerStopped(Envelope):
    """The evidence service stopped or paused a ledger."""

    type: Literal["ledger.stopped"] = "ledger.stopped"
    data: LedgerStoppedData


class LedgerRead(Envelope):
    """Someone read the ledger."""

    type: Literal["ledger.read"] = "ledger.read"
    data: LedgerReadData


class AuditGap(Envelope):
    """Audit records are missing or were rejected."""

    type: Literal["audit.gap"] = "audit.gap"
    data: AuditGapData


class ConfigChanged(Envelope):
    """A component loaded a different configuration."""

    type: Literal["config.changed"] = "config.changed"
    data: ConfigChangedData


class RecordingChunk(Envelope):
    """A chunk of a session recording was published; the ledger holds its SHA-256 (since 1.1)."""

    type: Literal["recording.chunk"] = "recording.chunk"
    data: RecordingChunkData


AnyEvent = Annotated[
    SessionOpened
    | SessionClosed
    | AuthFailed
    | CommandExecuted
    | CommandBlocked
    | MaskingApplied
    | SadDetected
    | ApprovalRequested
    | ApprovalDecided
    | ApprovalExpired
    | AccessGranted
    | AccessRevoked
    | LedgerStarted
    | LedgerStopped
    | LedgerRead
    | AuditGap
    | ConfigChanged
    | RecordingChunk,
    Field(discriminator="type"),
]
"""Any v1 event, told apart by ``type``."""

EVENT_MODELS: Final[Mapping[str, type[Envelope]]] = MappingProxyType(
    {
        "session.opened": SessionOpened,
        "session.closed": SessionClosed,
        "auth.failed": AuthFailed,
        "command.executed": CommandExecuted,
        "command.blocked": CommandBlocked,
        "masking.applied": MaskingApplied,
        "sad.detected": SadDetected,
        "approval.requested": ApprovalRequested,
        "approval.decided": ApprovalDecided,
        "approval.expired": ApprovalExpired,
        "access.granted": AccessGranted,
        "access.revoked": AccessRevoked,
        "ledger.started": LedgerStarted,
        "ledger.stopped": LedgerStopped,
        "ledger.read": LedgerRead,
        "audit.gap": AuditGap,
        "config.changed": ConfigChanged,
        "recording.chunk": RecordingChunk,
    }
)
"""Event type name → model class."""

EVENT_TYPES: Final[tuple[str, ...]] = tuple(EVENT_MODELS)
"""Every v1 event type name."""

_ANY_EVENT: TypeAdapter[AnyEvent] = TypeAdapter(AnyEvent)

_PYDANTIC_PHRASES: Final[Mapping[str, str]] = {
    "missing": "missing",
    "extra_forbidden": "unexpected property",
    "union_tag_not_found": "missing",
    "union_tag_invalid": "unknown event type",
    "model_type": "wrong type (expected object)",
    "dict_type": "wrong type (expected object)",
    "string_type": "wrong type (expected string)",
    "int_type": "wrong type (expected integer)",
    "float_type": "wrong type (expected number)",
    "finite_number": "wrong type (expected number)",
    "bool_type": "wrong type (expected boolean)",
    "tuple_type": "wrong type (expected array)",
    "value_error": "invalid value",
    "literal_error": "not one of the allowed values",
    "string_pattern_mismatch": "does not match the required format",
    "string_too_short": "too short",
    "string_too_long": "too long",
    "too_short": "too few items",
    "too_long": "too many items",
    "greater_than_equal": "below minimum",
    "less_than_equal": "above maximum",
    "json_invalid": "not valid JSON",
}


def _pydantic_reason(exc: ValidationError) -> str:
    """First error as ``path: rule``, from locations and codes only: pydantic messages can quote input."""
    error = exc.errors(include_url=False, include_context=False, include_input=False)[0]
    loc = list(error["loc"])
    if loc and loc[0] in EVENT_MODELS:
        loc = loc[1:]  # the discriminated union prefixes the tag
    kind = error["type"]
    if kind in ("union_tag_not_found", "union_tag_invalid") and not loc:
        loc = ["type"]
    if kind == "extra_forbidden" and loc:
        return f"{render_path(loc[:-1])}: unexpected property {safe_name(loc[-1])}"
    return f"{render_path(loc)}: {_PYDANTIC_PHRASES.get(kind, kind.replace('_', ' '))}"


def parse_event(obj: Mapping[str, Any] | bytes | str) -> AnyEvent:
    """Parse a decoded event (a mapping) or its JSON text into its typed model.

    Raises :class:`schemas.EventInvalid` whose reason names the failing path, never a value; the
    pydantic error (which can quote the input) is not chained to it.
    """
    if not isinstance(obj, bytes | str | Mapping):
        raise EventInvalid("(event): not a JSON object")
    try:
        if isinstance(obj, bytes | str):
            return _ANY_EVENT.validate_json(obj)
        return _ANY_EVENT.validate_python(dict(obj))
    except ValidationError as exc:
        reason = _pydantic_reason(exc)
    raise EventInvalid(reason)
