"""The just-in-time approval contract: the request record in KV ``PCIGATE_APPROVALS`` and the decision
messages approvers' tools (``pcigate approvals``, the console) send to the gateway that holds a statement.

A record holds no clear card data (its statement is the audit trail's masked copy) and no credential. A
decision travels with the approver's token to ``pcigate.approvals.decide.<gateway>`` (request/reply); only
that gateway verifies it, judges it and writes the outcome with compare-and-swap. Everyone else only reads
the bucket, so a record is evidence of what a gateway decided, never an instruction to one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict

from schemas.models import (
    Addr,
    ApproverGroups,
    Groups,
    Label,
    Label128,
    Label512,
    Origin,
    Quorum,
    Sha256Hex,
    Statement,
    Text,
    Uuid7,
)

__all__ = [
    "DECIDE_SUBJECT_PREFIX",
    "KV_BUCKET",
    "MAX_DECIDE_BYTES",
    "WHOAMI_QUEUE",
    "WHOAMI_SUBJECT",
    "Approver",
    "DecideReply",
    "DecideRequest",
    "Refusal",
    "Request",
    "Requester",
    "State",
    "WhoAmIReply",
    "WhoAmIRequest",
    "decide_subject",
]

KV_BUCKET: Final = "PCIGATE_APPROVALS"
DECIDE_SUBJECT_PREFIX: Final = "pcigate.approvals.decide."
MAX_DECIDE_BYTES: Final = 64 * 1024  # a token plus a reason; anything larger is refused unread
# Any running gateway answers (queue group): who a token says, as the gateways verify it.
WHOAMI_SUBJECT: Final = "pcigate.approvals.whoami"
WHOAMI_QUEUE: Final = "pcigate-gateways"

State = Literal["pending", "approved", "denied", "expired", "withdrawn"]
Refusal = Literal[
    "invalid_request",
    "invalid_token",
    "unknown_request",
    "not_pending",
    "expired",
    "statement_mismatch",
    "self_approval",
    "principal_approval",
    "not_a_person",
    "not_an_approver",
    "already_counted",
    "unavailable",
]
Channel = Literal["tui", "cli", "api"]
Token = Annotated[str, Strict(), Field(min_length=1, max_length=32 * 1024)]
GatewayId = Annotated[str, Strict(), Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


def decide_subject(gateway: str) -> str:
    """Where decisions on the requests a gateway holds go (the record's ``gateway``)."""
    return DECIDE_SUBJECT_PREFIX + gateway


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Requester(_Record):
    sub: Label
    iss: Label512
    name: Label | None = None
    kind: Literal["human", "agent", "service"]
    on_behalf_of: Label | None = None
    groups: Groups = ()


class Approver(_Record):
    """One counted decision: who, in which approver groups, why, when, through what."""

    sub: Label
    iss: Label512
    name: Label | None = None
    groups: ApproverGroups
    decision: Literal["approve", "deny"]
    reason: Text
    at: datetime
    channel: Channel


class Request(_Record):
    """A held statement, or a request for access (scope ``access``). ``binding``: SHA-256 over the session
    and the statement's keyed digest (text and parameters), so a decision made for one statement can never
    release another."""

    id: Uuid7
    state: State = "pending"
    created: datetime
    expires: datetime
    requester: Requester
    origin: Origin | None = None
    connection: Label
    database: Label | None = None
    session_id: Uuid7
    gateway: GatewayId
    statement: Statement
    # schema.table.column the statement touches, as the policy read it (``schema.table.*``: all of a table's)
    columns: Annotated[tuple[Label512, ...], Field(max_length=64)] = ()
    binding: Sha256Hex
    rule: Label
    why: Text
    policy_version: Label128 | None = None
    approver_groups: ApproverGroups
    quorum: Quorum
    # access: a just-in-time grant to open sessions on the connection; ``statement`` then describes it
    scope: Literal["statement", "session", "access"]
    session_for_seconds: Annotated[int, Strict(), Field(ge=1, le=7 * 86400)] | None = None
    approvals: tuple[Approver, ...] = ()
    decided: datetime | None = None

    @property
    def approved(self) -> int:
        """How many counted decisions approve (quorum counts these; one deny ends the request)."""
        return sum(1 for a in self.approvals if a.decision == "approve")


class DecideRequest(_Record):
    """An approver's decision on one request, bound to the statement its record showed them."""

    id: Uuid7
    decision: Literal["approve", "deny"]
    binding: Sha256Hex
    reason: Text
    token: Token
    channel: Channel
    # Where the approver's tool runs, as it claims (the gateway cannot see through NATS).
    origin_addr: Addr | None = None
    client_app: Label | None = None


class DecideReply(_Record):
    """What the gateway did with a decision. ``refused``: why it does not count (None: it counts)."""

    refused: Refusal | None
    message: Text
    state: State | None = None
    approvals: int = 0
    quorum: int = 0


class WhoAmIRequest(_Record):
    """An approver's tool asks a gateway to verify its user's token before it offers to decide."""

    token: Token
    origin_addr: Addr | None = None
    client_app: Label | None = None


class WhoAmIReply(_Record):
    """The token's verified identity, and the approver groups it is in (``approver_groups``: every group
    any of the gateway's rules or defaults names as approvers). ``refused`` set: it did not verify."""

    refused: Literal["invalid_request", "invalid_token"] | None
    message: Text
    sub: Label | None = None
    iss: Label512 | None = None
    name: Label | None = None
    kind: Literal["human", "agent", "service"] | None = None
    groups: Groups = ()
    approver_groups: Groups = ()
    expires: datetime | None = None

    @property
    def can_decide(self) -> bool:
        """A person in an approver group: the gateway may count their decisions (it still judges each)."""
        return self.refused is None and self.kind == "human" and bool(self.approver_groups)
