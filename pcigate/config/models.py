"""The typed, frozen model of ``pcigate.yaml``.

Every section validates itself with pydantic (``extra="forbid"``: a typo is an error, not a silently
ignored key). Checks that span fields raise :class:`IssuesError`, which carries the exact sub-key of each
problem so the loader can point at the right line. Defaults are the safe choice; sections that have no
safe default (``identity``, ``nats``, ``connections``, ``ledger``) are required.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from datetime import timedelta
from difflib import get_close_matches
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import rfc8785
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from evidence.checkpoint import NoteError, NoteVerifier
from pcigate.config.addresses import (
    HostPort,
    check_host,
    check_url,
    is_loopback,
    is_wildcard,
    parse_host_port,
)
from pcigate.config.durations import format_duration, parse_duration
from pcigate.config.errors import Loc, format_key
from pcigate.config.secrets import check_secret_ref

__all__ = [
    "DEFAULT_MASKED_COLUMNS",
    "JWS_ALGORITHMS",
    "Approvals",
    "ClaimNames",
    "ColumnRule",
    "Config",
    "Connection",
    "Gateway",
    "Identity",
    "IdentityKind",
    "IssuesError",
    "JitAccess",
    "JitApproval",
    "Ledger",
    "Limits",
    "ListenTls",
    "MaskingProfile",
    "Nats",
    "Policy",
    "ResultLimit",
    "Retention",
    "RoleMapping",
    "Rule",
    "RuleApproval",
    "RuleMask",
    "Upstream",
    "UpstreamTls",
]


class IssuesError(ValueError):
    """Cross-field problems, each at a key path relative to the model that raised them.

    Pydantic only knows the location of the validator; this lets ``verify-full without ca`` point at
    ``upstream.tls.ca`` instead of at the whole ``tls`` mapping.
    """

    def __init__(self, issues: Iterable[tuple[Loc, str]], nested: Sequence[ErrorDetails] = ()) -> None:
        self.issues: tuple[tuple[Loc, str], ...] = tuple(issues)
        # Pydantic errors of the wrapped value, when a wrap validator reports issues alongside them.
        self.nested: tuple[ErrorDetails, ...] = tuple(nested)
        super().__init__("; ".join(f"{format_key(loc)}: {msg}" for loc, msg in self.issues))


def _raise_if(issues: Sequence[tuple[Loc, str]]) -> None:
    if issues:
        raise IssuesError(issues)


def _validate_with(
    handler: ValidatorFunctionWrapHandler, value: object, issues: list[tuple[Loc, str]]
) -> Any:
    """Run the inner validation and report ``issues`` (found on the raw value) together with its errors.

    Checks across list items (unique names, clashing addresses) read the raw items, so they are reported
    in the same run as problems inside an item instead of only after every item is otherwise valid.
    """
    try:
        validated = handler(value)
    except ValidationError as exc:
        if not issues:
            raise
        raise IssuesError(issues, nested=exc.errors()) from None
    _raise_if(issues)
    return validated


def _raw_str(item: object, key: str, default: str | None = None) -> str | None:
    value = item.get(key, default) if isinstance(item, dict) else None
    return value if isinstance(value, str) else None


class _Model(BaseModel):
    # hide_input_in_errors: a pydantic error must never print a value that could be a secret.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


# --- scalar types -----------------------------------------------------------------------------------------


def _between(lo: int, hi: int) -> AfterValidator:
    def check(value: int) -> int:
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo} and {hi}")
        return value

    return AfterValidator(check)


def _duration_between(lo: timedelta, hi: timedelta) -> AfterValidator:
    def check(value: timedelta) -> timedelta:
        if not lo <= value <= hi:
            raise ValueError(f"must be between {format_duration(lo)} and {format_duration(hi)}")
        return value

    return AfterValidator(check)


def _duration_at_least(lo: timedelta, why: str) -> AfterValidator:
    def check(value: timedelta) -> timedelta:
        if value < lo:
            raise ValueError(f"must be at least {format_duration(lo)} ({why})")
        return value

    return AfterValidator(check)


def _seconds(value: timedelta) -> int:
    return int(value.total_seconds())


Duration = Annotated[timedelta, PlainValidator(parse_duration), PlainSerializer(_seconds, return_type=int)]
"""``30s``/``15m``/``2h``/``7d`` or integer seconds; serialized as integer seconds."""

PositiveDuration = Annotated[Duration, _duration_between(timedelta(seconds=1), timedelta(days=36500))]

_NAME = re.compile(r"[a-z][a-z0-9_-]{0,62}")


def _check_name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(
            "must be a lowercase name: a letter, then letters, digits, '_' or '-' (at most 63 characters)"
        )
    return value


_T = TypeVar("_T")


def _at_least_one(items: tuple[_T, ...]) -> tuple[_T, ...]:
    if not items:
        raise ValueError("must not be empty")
    return items


# Not Field(min_length=1): on tuples pydantic also reports "too short" when an item fails validation.
_NON_EMPTY = AfterValidator(_at_least_one)


def _non_empty(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def _abs_path(value: object) -> Path:
    if isinstance(value, Path):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError("must be an absolute path (a string starting with /)")
    if not value.startswith("/") or "\0" in value:
        raise ValueError("must be an absolute path starting with / (relative paths are ambiguous)")
    return Path(value)


Name = Annotated[StrictStr, AfterValidator(_check_name)]
Text = Annotated[StrictStr, AfterValidator(_non_empty)]
AbsPath = Annotated[Path, PlainValidator(_abs_path), PlainSerializer(str, return_type=str)]
SecretRef = Annotated[str, PlainValidator(check_secret_ref)]
"""``env:NAME`` or ``file:/absolute/path``; resolve with :func:`pcigate.config.resolve_secret`."""
Port = Annotated[StrictInt, _between(1, 65535)]
Host = Annotated[StrictStr, AfterValidator(check_host)]
Address = Annotated[HostPort, PlainValidator(parse_host_port), PlainSerializer(str, return_type=str)]
"""A ``host:port`` string, parsed into :class:`HostPort`."""


def _check_version(value: object) -> int:
    if isinstance(value, bool) or value != 1:
        raise ValueError("must be 1: the only config format version this pcigate understands")
    return 1


def _names_nearby(name: str, known: Iterable[str]) -> str:
    known = sorted(known)
    close = get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    listed = ", ".join(known) if known else "none"
    return f"(defined: {listed}){hint}"


# --- identity ---------------------------------------------------------------------------------------------

JWS_ALGORITHMS: tuple[str, ...] = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA")
JwsAlgorithm = Literal["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]


def _reject_weak_algorithm(value: object) -> object:
    if isinstance(value, str) and (value.lower() == "none" or value.upper().startswith("HS")):
        raise ValueError(
            f"{value} is never accepted (unsigned or shared-secret tokens can be forged by anyone who can "
            f"verify them); allowed: {', '.join(JWS_ALGORITHMS)}"
        )
    return value


_HTTP = frozenset({"https"})
_HTTP_LOOPBACK = frozenset({"http"})


def _check_https_url(value: str) -> str:
    return check_url(value, _HTTP, loopback_schemes=_HTTP_LOOPBACK)


def _check_jwks(value: str) -> str:
    if value.startswith("file:"):
        if not value.startswith("file:/") or value.startswith("file://"):
            raise ValueError("file: JWKS needs an absolute path like file:/etc/pcigate/jwks.json")
        return value
    return _check_https_url(value)


class ClaimNames(_Model):
    """Which token claims carry the actor fields of the event envelope (IdPs name them differently)."""

    groups: Text = "groups"
    kind: Text = "kind"
    on_behalf_of: Text = "on_behalf_of"
    name: Text = "name"


class Identity(_Model):
    """How client tokens (OIDC JWTs presented as the password) are verified."""

    issuer: Annotated[StrictStr, AfterValidator(_check_https_url)]
    audience: Text
    jwks: Annotated[StrictStr, AfterValidator(_check_jwks)]
    jwks_refresh: Annotated[Duration, _duration_between(timedelta(seconds=30), timedelta(days=1))] = (
        timedelta(minutes=10)
    )
    algorithms: Annotated[
        tuple[Annotated[JwsAlgorithm, BeforeValidator(_reject_weak_algorithm)], ...], _NON_EMPTY
    ] = ("ES256", "RS256", "EdDSA")
    leeway: Annotated[Duration, _duration_between(timedelta(0), timedelta(minutes=5))] = timedelta(seconds=30)
    max_token_bytes: Annotated[StrictInt, _between(512, 65536)] = 8192
    claims: ClaimNames = ClaimNames()
    default_kind: Literal["human", "agent", "service"] = "human"

    @field_validator("algorithms")
    @classmethod
    def _unique_algorithms(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        _raise_if(
            [((i,), f"{alg} is listed twice") for i, alg in enumerate(value) if alg in value[:i]],
        )
        return value


# --- nats -------------------------------------------------------------------------------------------------

_NATS_SCHEMES = frozenset({"nats", "tls", "ws", "wss"})


def _check_nats_url(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a URL string like nats://127.0.0.1:4222")
    return check_url(value, _NATS_SCHEMES)


def _one_or_many_urls(value: object) -> object:
    # A single URL is checked here so its error points at `nats.url`, not at a `nats.url[0]` nobody wrote.
    return [_check_nats_url(value)] if isinstance(value, str) else value


class Nats(_Model):
    """The JetStream connection and the durable local spool the audit publisher writes through."""

    url: Annotated[
        tuple[Annotated[StrictStr, AfterValidator(_check_nats_url)], ...],
        BeforeValidator(_one_or_many_urls),
        _NON_EMPTY,
    ]
    credentials: SecretRef | None = None
    tls_ca: AbsPath | None = None
    spool_dir: AbsPath = Path("/var/lib/pcigate/spool")
    spool_max_bytes: Annotated[StrictInt, _between(1 << 20, 1 << 40)] = 1 << 30
    max_in_flight: Annotated[StrictInt, _between(1, 65536)] = 256
    duplicate_window: PositiveDuration = timedelta(minutes=2)
    publish_retry_horizon: PositiveDuration = timedelta(minutes=1)
    replicas: Annotated[StrictInt, _between(1, 5)] = 1

    @model_validator(mode="after")
    def _window_covers_retries(self) -> Nats:
        # A retry after the window closes would be stored twice: the audit trail would lie.
        if self.duplicate_window < self.publish_retry_horizon:
            raise IssuesError(
                [
                    (
                        ("duplicate_window",),
                        f"must be >= publish_retry_horizon ({format_duration(self.publish_retry_horizon)}), "
                        "or a retried publish could be stored twice",
                    )
                ]
            )
        return self


# --- connections ------------------------------------------------------------------------------------------


def _only_postgres(value: object) -> object:
    if value == "mysql":
        raise ValueError("mysql is not supported yet; supported: postgres")
    return value


class ListenTls(_Model):
    """TLS for client connections. ``require: null`` means: required unless the listener is loopback."""

    cert: AbsPath | None = None
    key: AbsPath | None = None
    require: StrictBool | None = None

    @model_validator(mode="after")
    def _pair(self) -> ListenTls:
        if self.cert is not None and self.key is None:
            raise IssuesError([(("key",), "required when cert is set: TLS needs both cert and key")])
        if self.key is not None and self.cert is None:
            raise IssuesError([(("cert",), "required when key is set: TLS needs both cert and key")])
        return self


class UpstreamTls(_Model):
    """TLS from the gateway to the database, with libpq's ``sslmode`` names."""

    mode: Literal["disable", "prefer", "require", "verify-ca", "verify-full"] = "require"
    ca: AbsPath | None = None

    @model_validator(mode="after")
    def _verify_needs_ca(self) -> UpstreamTls:
        if self.mode.startswith("verify-") and self.ca is None:
            raise IssuesError(
                [(("ca",), f"required when mode is {self.mode}: the CA bundle that signs the server cert")]
            )
        return self


class Upstream(_Model):
    """The database the gateway connects to on the client's behalf."""

    host: Host
    port: Port = 5432
    database: Text
    tls: UpstreamTls = UpstreamTls()


class RoleMapping(_Model):
    """Members of any of ``groups`` use the vaulted upstream ``user``/``password``; first match wins."""

    groups: Annotated[tuple[Text, ...], _NON_EMPTY]
    user: Text
    password: SecretRef


_ResultCount = Annotated[StrictInt, _between(1, 1 << 62)] | None


class ResultLimit(_Model):
    """What one kind of identity's statements may return to the client (data rows and COPY TO lines, and
    their bytes as the database sent them); unset: no bound."""

    statement_rows: _ResultCount = None  # rows of one statement (one Execute of a portal, one FETCH)
    statement_bytes: _ResultCount = None
    session_rows: _ResultCount = None
    session_bytes: _ResultCount = None


IdentityKind = Literal["human", "agent", "service"]


def _agent_rows() -> dict[IdentityKind, ResultLimit]:
    return {"agent": ResultLimit(statement_rows=1000)}


class Limits(_Model):
    """Per-connection resource limits; the defaults are safe for interactive and agent use."""

    max_message_bytes: Annotated[StrictInt, _between(1024, 1 << 30)] = 16 << 20
    max_statement_bytes: Annotated[StrictInt, _between(64, 1 << 30)] = 1 << 20
    idle_timeout: Annotated[Duration, _duration_between(timedelta(seconds=1), timedelta(days=7))] = timedelta(
        minutes=30
    )
    # Not set for a kind: no bound. The default keeps an agent from reading a whole table by accident.
    results: dict[IdentityKind, ResultLimit] = Field(default_factory=_agent_rows)

    @model_validator(mode="after")
    def _statement_fits_message(self) -> Limits:
        if self.max_statement_bytes > self.max_message_bytes:
            raise IssuesError(
                [(("max_statement_bytes",), f"must be <= max_message_bytes ({self.max_message_bytes})")]
            )
        return self


class Recording(_Model):
    """Session recording (``docs/recording.md``): on unless switched off, since a PCI data path records what
    every session did and was shown."""

    enabled: StrictBool = True
    # rows of each statement written into the recording; the rest are counted (0: metadata only)
    rows_per_statement: Annotated[StrictInt, _between(0, 100_000)] = 100


class JitApproval(_Model):
    """Who approves access; unset fields fall back to the ``approvals`` section."""

    groups: tuple[Text, ...] = ()
    quorum: Annotated[StrictInt, _between(1, 10)] | None = None
    timeout: Annotated[Duration, _duration_between(timedelta(seconds=1), timedelta(days=7))] | None = None


class JitAccess(_Model):
    """Sessions open only inside a grant a person approved (just-in-time access): the first connection
    waits for the approval, later ones within ``grant`` open at once, and every session ends with it."""

    grant: Annotated[Duration, _duration_between(timedelta(seconds=5), timedelta(days=1))] = timedelta(
        hours=1
    )
    # who needs a grant: identities of one of ``kinds`` and in one of ``groups`` (empty: any)
    kinds: tuple[IdentityKind, ...] = ()
    groups: tuple[Text, ...] = ()
    approval: JitApproval = JitApproval()

    def applies_to(self, kind: str, groups: Iterable[str]) -> bool:
        if self.kinds and kind not in self.kinds:
            return False
        return not self.groups or not set(self.groups).isdisjoint(groups)


class Connection(_Model):
    """One listener: clients connect here, the gateway connects upstream with a vaulted role."""

    name: Name
    protocol: Annotated[Literal["postgres"], BeforeValidator(_only_postgres)] = "postgres"
    listen: Address
    tls: ListenTls = ListenTls()
    upstream: Upstream
    roles: Annotated[tuple[RoleMapping, ...], _NON_EMPTY]
    policy: Name = "default"
    masking: Name = "default"
    limits: Limits = Limits()
    jit: JitAccess | None = None  # None: no grant needed
    recording: Recording = Recording()

    @property
    def tls_required(self) -> bool:
        """Whether clients must use TLS: explicit ``tls.require``, else everything but loopback."""
        return self.tls.require if self.tls.require is not None else not is_loopback(self.listen.host)

    @model_validator(mode="after")
    def _tls_when_required(self) -> Connection:
        # Clients send their identity token as the password: off-host, that must not travel in clear.
        if self.tls_required and self.tls.cert is None:
            why = "tls.require is true" if self.tls.require else f"listen {self.listen} is not loopback"
            raise IssuesError(
                [(("tls", "cert"), f"required: {why}, so clients must use TLS; set tls.cert and tls.key")]
            )
        return self


# --- policies and masking ---------------------------------------------------------------------------------


def _check_command(value: str) -> str:
    words = value.lower().split()
    if not words or not all(w.isalpha() for w in words) or len(words) > 3:
        raise ValueError("must be one to three keywords, like drop, truncate or alter system")
    return " ".join(words)


class RuleApproval(_Model):
    """Who approves a held statement; unset fields fall back to the ``approvals`` section."""

    groups: tuple[Text, ...] = ()
    quorum: Annotated[StrictInt, _between(1, 10)] | None = None
    timeout: Annotated[Duration, _duration_between(timedelta(seconds=1), timedelta(days=7))] | None = None
    scope: Literal["statement", "session"] = "statement"
    # scope session: how long one approval covers the statements this rule holds in that session
    session_for: Annotated[Duration, _duration_between(timedelta(minutes=1), timedelta(days=1))] | None = None

    @model_validator(mode="after")
    def _session_for_needs_session_scope(self) -> RuleApproval:
        if self.session_for is not None and self.scope != "session":
            raise IssuesError([(("session_for",), "only allowed with scope: session")])
        return self


StatementClass = Literal[
    "read", "write", "ddl", "dcl", "utility", "copy_out", "copy_in", "function_call", "transaction"
]
Condition = Literal[
    "no_where",
    "dangerous_function",
    "copy_program",
    "copy_file",
    "alter_system",
    "set_role",
    "set_session_authorization",
    "create_extension",
    "search_path",
]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_CLOCK = re.compile(r"(?:[01]\d|2[0-3]):[0-5]\d|24:00")
_PATTERN = re.compile(r"[A-Za-z0-9_$*?\[\]!.-]+")


def _check_clock(value: str) -> str:
    if not _CLOCK.fullmatch(value):
        raise ValueError("must be a time of day HH:MM (00:00 to 24:00)")
    return value


def _check_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}: use an IANA name like UTC or Europe/Berlin") from None
    return value


def _pattern_check(shape: str) -> AfterValidator:
    parts = shape.count(".") + 1

    def check(value: str) -> str:
        if not _PATTERN.fullmatch(value) or not 1 <= len(value.split(".")) <= parts:
            raise ValueError(
                f"must be a name pattern like {shape}: shell wildcards * ? [...]; with fewer parts, the "
                "missing leading ones match anything"
            )
        return value.lower()

    return AfterValidator(check)


class TimeWindow(_Model):
    """A weekly time window: ``days`` between ``start`` and ``end`` in ``tz``; ``outside`` inverts it."""

    days: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    start: Annotated[StrictStr, AfterValidator(_check_clock)] = "00:00"
    end: Annotated[StrictStr, AfterValidator(_check_clock)] = "24:00"
    tz: Annotated[StrictStr, AfterValidator(_check_zone)] = "UTC"
    outside: StrictBool = False

    @model_validator(mode="after")
    def _ordered(self) -> TimeWindow:
        if self.start >= self.end:
            why = f"must be after start ({self.start}); a window does not wrap midnight"
            raise IssuesError([(("end",), why)])
        return self


class RuleMatch(_Model):
    """When a rule applies: every key given must match (AND); within a key's list, any entry (OR).

    An empty match applies to every statement. Tables and columns are shell patterns matched against
    schema-qualified names, case-insensitively; an unqualified name in a statement is taken as ``public``."""

    groups: tuple[Text, ...] = ()
    kinds: tuple[Literal["human", "agent", "service"], ...] = ()
    statements: tuple[StatementClass, ...] = ()
    commands: tuple[Annotated[StrictStr, AfterValidator(_check_command)], ...] = ()
    tables: tuple[Annotated[StrictStr, _pattern_check("schema.table")], ...] = ()
    columns: tuple[Annotated[StrictStr, _pattern_check("schema.table.column")], ...] = ()
    functions: tuple[Annotated[StrictStr, _pattern_check("schema.function")], ...] = ()
    conditions: tuple[Condition, ...] = ()
    rows_over: Annotated[StrictInt, _between(0, 1_000_000_000)] | None = None
    time: TimeWindow | None = None


def _null_action(value: object) -> object:
    # YAML reads a bare `null` as None; here it names the action "replace with SQL NULL".
    return "null" if value is None else value


def _check_column_match(value: str) -> str:
    if len(value) >= 2 and value.startswith("/") and value.endswith("/"):
        try:
            re.compile(value[1:-1])
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from None
    elif not value.strip():
        raise ValueError("must be a column name or /regex/")
    return value


class ColumnRule(_Model):
    """Mask columns matching a plain name (case-insensitive) or a ``/regex/`` (searched, case-insensitive)."""

    match: Annotated[StrictStr, AfterValidator(_check_column_match)]
    action: Annotated[Literal["bin_last4", "last4", "full", "null"], BeforeValidator(_null_action)]

    def matches(self, column: str) -> bool:
        """Whether this rule applies to ``column``; defined here so every component agrees."""
        if len(self.match) >= 2 and self.match.startswith("/") and self.match.endswith("/"):
            return re.search(self.match[1:-1], column, re.IGNORECASE) is not None
        return self.match.casefold() == column.casefold()


class RuleMask(_Model):
    """What a ``mask`` rule hides: these column rules on top of the connection's masking profile, the
    stricter action winning, so a rule can only hide more. A rule without it hides every value."""

    columns: Annotated[tuple[ColumnRule, ...], _NON_EMPTY]


class Rule(_Model):
    """A policy rule: the first one whose ``match`` applies decides."""

    name: Name
    match: RuleMatch
    action: Literal["allow", "block", "require_approval", "mask"]
    message: Text | None = None
    approval: RuleApproval | None = None
    mask: RuleMask | None = None

    @model_validator(mode="after")
    def _settings_of_their_action(self) -> Rule:
        if self.approval is not None and self.action != "require_approval":
            raise IssuesError(
                [(("approval",), f"only allowed with action: require_approval (not {self.action})")]
            )
        if self.mask is not None and self.action != "mask":
            raise IssuesError([(("mask",), f"only allowed with action: mask (not {self.action})")])
        return self


class Policy(_Model):
    """Ordered rules, then ``default_action``; statements the parser cannot see into get ``opaque_action``."""

    default_action: Literal["allow", "block", "require_approval"] = "require_approval"
    opaque_action: Literal["require_approval", "block"] = "require_approval"
    rules: tuple[Rule, ...] = ()

    @field_validator("rules", mode="wrap")
    @classmethod
    def _unique_rule_names(cls, value: object, handler: ValidatorFunctionWrapHandler) -> tuple[Rule, ...]:
        seen: dict[str, int] = {}
        issues: list[tuple[Loc, str]] = []
        for i, item in enumerate(value if isinstance(value, list) else []):
            name = _raw_str(item, "name")
            if name is None or not _NAME.fullmatch(name):
                continue
            if name in seen:
                issues.append(((i, "name"), f"duplicate rule name; first used by rules[{seen[name]}]"))
            seen.setdefault(name, i)
        rules: tuple[Rule, ...] = _validate_with(handler, value, issues)
        return rules


DEFAULT_MASKED_COLUMNS: tuple[ColumnRule, ...] = (
    *(
        ColumnRule(match=name, action="bin_last4")
        for name in ("pan", "card_number", "cc_number", "primary_account_number")
    ),
    # Sensitive authentication data (PCI DSS 3.3.1): never shown, not even its length.
    *(
        ColumnRule(match=name, action="null")
        for name in (
            "cvv",
            "cvc",
            "cvv2",
            "cid",
            "security_code",
            "track1",
            "track2",
            "track_data",
            "pin_block",
        )
    ),
)


class MaskingProfile(_Model):
    """Column rules plus content detection (PAN-shaped digits in any column)."""

    columns: tuple[ColumnRule, ...] = DEFAULT_MASKED_COLUMNS
    detect_content: StrictBool = True
    bin8: StrictBool = False
    # Relation (`schema.name` or `name`) -> its output columns that carry card data ("*": all). A view's
    # body is invisible to the lineage analysis, so a column it computes from a PAN needs naming here.
    views: dict[Text, Annotated[tuple[Text, ...], _NON_EMPTY]] = Field(default_factory=dict)
    # A result column computed from a sensitive column (reverse(pan), md5(pan), ...): hidden in full, or the
    # statement is refused. Where lineage cannot be determined for a statement: refused (fail closed), or
    # every column the analysis could not place is hidden in full.
    derived: Literal["mask", "block"] = "mask"
    unknown_lineage: Literal["block", "mask"] = "block"


class Approvals(_Model):
    """Just-in-time approval defaults. No approver groups (the default) means nothing can be approved."""

    approver_groups: tuple[Text, ...] = ()
    default_timeout: Annotated[Duration, _duration_between(timedelta(seconds=1), timedelta(days=7))] = (
        timedelta(minutes=15)
    )
    default_quorum: Annotated[StrictInt, _between(1, 10)] = 1
    allow_self_approval: StrictBool = False


# --- ledger and retention ---------------------------------------------------------------------------------


def _check_origin(value: str) -> str:
    # C2SP tlog-checkpoint: a schema-less URL, no spaces, no '+', one line.
    if not value or "://" in value or any(c.isspace() or c == "+" or not c.isprintable() for c in value):
        raise ValueError(
            "must be a schema-less URL like example.com/ledger: no scheme, spaces, '+' or control characters"
        )
    return value


def _check_vkey(value: str) -> str:
    try:
        NoteVerifier.parse(value)
    except NoteError as exc:
        raise ValueError(str(exc)) from None
    return value


class Ledger(_Model):
    """The append-only evidence ledger and its signed checkpoints."""

    dsn: SecretRef
    origin: Annotated[StrictStr, AfterValidator(_check_origin)]
    signing_key: SecretRef
    checkpoint_every: Annotated[StrictInt, _between(1, 1_000_000)] = 1000
    checkpoint_interval: Annotated[Duration, _duration_between(timedelta(seconds=1), timedelta(hours=1))] = (
        timedelta(seconds=10)
    )
    # Public keys of earlier signing keys (verifier key strings): after a rotation, checkpoints they signed
    # still verify. The current signing key's public half is always trusted and need not be listed.
    trusted_keys: tuple[Annotated[StrictStr, AfterValidator(_check_vkey)], ...] = ()


_KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _check_key_id(value: str) -> str:
    if not _KEY_ID.fullmatch(value):
        raise ValueError("must be 1-64 characters: letters, digits, '.', '_' or '-', starting alphanumeric")
    return value


class Gateway(_Model):
    """Settings of the gateway process as a whole (per-listener settings live in ``connections``)."""

    # Keyed HMAC-SHA256 over exact statements and parameters (PCI DSS 3.5.1.1): binds approvals and lets
    # auditors correlate statements without the audit trail revealing values. No default: a shared,
    # well-known key would make every digest guessable.
    digest_key: SecretRef | None = None
    digest_key_id: Annotated[StrictStr, AfterValidator(_check_key_id)] = "k1"
    shutdown_grace: Annotated[Duration, _duration_between(timedelta(0), timedelta(hours=1))] = timedelta(
        seconds=30
    )


class Retention(_Model):
    """How long evidence is kept; PCI DSS 10.5.1 sets the floors."""

    audit: Annotated[Duration, _duration_at_least(timedelta(days=365), "PCI DSS 10.5.1: 12 months")] = (
        timedelta(days=400)
    )
    online: Annotated[
        Duration, _duration_at_least(timedelta(days=90), "PCI DSS 10.5.1: 3 months immediately available")
    ] = timedelta(days=90)
    # None: as long as ``audit``. A recording is audit evidence whose hashes the ledger keeps for ``audit``:
    # a chunk gone before its hash would make a replay fail for want of evidence, not for tampering.
    recordings: PositiveDuration | None = None

    @model_validator(mode="after")
    def _online_within_audit(self) -> Retention:
        issues: list[tuple[tuple[str, ...], str]] = []
        if self.online > self.audit:
            issues.append((("online",), f"must be <= audit ({format_duration(self.audit)})"))
        if self.recordings is not None and self.recordings < self.audit:
            issues.append((
                ("recordings",),
                f"must be >= audit ({format_duration(self.audit)}): recordings are kept as long as the "
                "ledger keeps their hashes; leave it out to follow audit",
            ))  # fmt: skip
        if issues:
            raise IssuesError(issues)
        return self

    @property
    def recordings_kept(self) -> timedelta:
        """How long the recordings stream keeps chunks: ``recordings``, else ``audit``."""
        return self.audit if self.recordings is None else self.recordings


# --- the whole file ---------------------------------------------------------------------------------------


def _default_policies() -> dict[str, Policy]:
    return {"default": Policy()}


def _default_masking() -> dict[str, MaskingProfile]:
    return {"default": MaskingProfile()}


def _sha256(value: Any) -> str:
    return "sha256:" + hashlib.sha256(rfc8785.dumps(value)).hexdigest()


class Config(_Model):
    """A validated ``pcigate.yaml``. Build it with :func:`pcigate.config.load_config`."""

    # Field order matters: `connections` comes last so its validator can check references against the
    # policies and masking profiles that validated (info.data), while still reporting everything at once.
    version: Annotated[int, PlainValidator(_check_version)]
    identity: Identity
    nats: Nats
    policies: dict[Name, Policy] = Field(default_factory=_default_policies)
    masking: dict[Name, MaskingProfile] = Field(default_factory=_default_masking)
    approvals: Approvals = Approvals()
    gateway: Gateway = Gateway()
    ledger: Ledger
    retention: Retention = Retention()
    connections: Annotated[tuple[Connection, ...], _NON_EMPTY]

    @field_validator("connections", mode="wrap")
    @classmethod
    def _connections_consistent(
        cls, value: object, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> tuple[Connection, ...]:
        issues = _connection_clashes(value, info.data) if isinstance(value, list) else []
        conns: tuple[Connection, ...] = _validate_with(handler, value, issues)
        return conns

    def digest(self) -> str:
        """``sha256:<hex>`` of the RFC 8785 canonical JSON of the whole validated config."""
        return _sha256(self.model_dump(mode="json"))

    def policy_version(self) -> str:
        """``sha256:<hex>`` over what decides a verdict: policies, masking, approvals, and per connection
        its name, protocol, policy, masking, limits, jit and role groups/users.

        Events and the verdict cache carry this, so restarting with a new NATS URL or a rotated secret
        reference does not look like a policy change, while any change to who may do what does.
        """
        dumped = self.model_dump(mode="json")
        return _sha256(
            {
                "policies": dumped["policies"],
                "masking": dumped["masking"],
                "approvals": dumped["approvals"],
                "connections": [
                    {
                        "name": c["name"],
                        "protocol": c["protocol"],
                        "policy": c["policy"],
                        "masking": c["masking"],
                        "limits": c["limits"],
                        "jit": c["jit"],
                        "roles": [{"groups": r["groups"], "user": r["user"]} for r in c["roles"]],
                    }
                    for c in dumped["connections"]
                ],
            }
        )

    def approver_groups(self) -> frozenset[str]:
        """Every group that approves something: the defaults, any rule's and any connection's ``jit``."""
        groups = set(self.approvals.approver_groups)
        for policy in self.policies.values():
            for rule in policy.rules:
                if rule.approval is not None:
                    groups.update(rule.approval.groups)
        for conn in self.connections:
            if conn.jit is not None:
                groups.update(conn.jit.approval.groups)
        return frozenset(groups)


def _raw_address(item: object) -> HostPort | None:
    try:
        return parse_host_port(_raw_str(item, "listen"))
    except ValueError:
        return None  # reported by the connection's own validation


def _connection_clashes(items: list[Any], validated: dict[str, Any]) -> list[tuple[Loc, str]]:
    """Duplicate names, clashing listen addresses and dangling policy/masking names, from raw items."""
    issues: list[tuple[Loc, str]] = []
    names: dict[str, int] = {}
    listens: list[tuple[int, HostPort]] = []
    for i, item in enumerate(items):
        name = _raw_str(item, "name")
        if name is not None and _NAME.fullmatch(name):
            if name in names:
                issues.append(
                    ((i, "name"), f"duplicate connection name; first used by connections[{names[name]}]")
                )
            names.setdefault(name, i)
        listen = _raw_address(item)
        if listen is not None:
            for j, other in listens:
                if _addresses_clash(listen, other):
                    issues.append(((i, "listen"), f"{listen} clashes with connections[{j}].listen ({other})"))
                    break
            listens.append((i, listen))
        for key, section in (("policy", "policies"), ("masking", "masking")):
            ref = _raw_str(item, key, "default")
            defined: dict[str, Any] | None = validated.get(section)
            if ref is not None and defined is not None and _NAME.fullmatch(ref) and ref not in defined:
                issues.append(((i, key), f"no {section} entry named {ref!r} {_names_nearby(ref, defined)}"))
    return issues


def _addresses_clash(a: HostPort, b: HostPort) -> bool:
    if a.port != b.port:
        return False
    return a.host.lower() == b.host.lower() or is_wildcard(a.host) or is_wildcard(b.host)
