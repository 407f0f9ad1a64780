"""An approval request as it lives in KV ``PCIGATE_APPROVALS``, and the rules a decision must pass.

The record holds no clear card data (the statement is the audit trail's masked copy) and no credential:
a decision is sent with the approver's token to a gateway (``pcigate.approvals.decide``), which verifies
it, applies :func:`judge` and writes the outcome with compare-and-swap. Anyone may read the bucket; a
record is only ever trusted after it validates here, and only the gateway that holds the statement acts
on it — and only if its ``binding`` still matches the statement it holds.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Approver", "Judgement", "Request", "Requester", "binding_of", "judge"]

State = Literal["pending", "approved", "denied", "expired", "withdrawn"]
Refusal = Literal[
    "not_pending",
    "expired",
    "statement_mismatch",
    "self_approval",
    "principal_approval",
    "not_an_approver",
    "already_counted",
]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Requester(_Record):
    sub: str
    iss: str
    name: str | None = None
    kind: Literal["human", "agent", "service"]
    on_behalf_of: str | None = None
    groups: tuple[str, ...] = ()


class Approver(_Record):
    """One counted decision: who, in which approver groups, why, when, through what."""

    sub: str
    iss: str
    name: str | None = None
    groups: tuple[str, ...]
    decision: Literal["approve", "deny"]
    reason: str
    at: datetime
    channel: Literal["tui", "cli", "api"]


class Request(_Record):
    """A held statement. ``binding``: SHA-256 over the session and the statement's keyed digest (text and
    parameters), so a decision made for one statement can never release another."""

    id: str
    state: State = "pending"
    created: datetime
    expires: datetime
    requester: Requester
    connection: str
    session_id: str
    gateway: str = Field(description="the gateway instance holding the statement")
    statement: dict[str, Any]  # schemas.models.Statement, masked
    binding: str
    rule: str
    why: str
    approver_groups: tuple[str, ...]
    quorum: int
    scope: Literal["statement", "session"]
    approvals: tuple[Approver, ...] = ()
    decided: datetime | None = None


def binding_of(session_id: str, digest_hmac: str) -> str:
    return hashlib.sha256(f"pcigate-approval\n{session_id}\n{digest_hmac}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Judgement:
    """What a decision does to a request: the new record, or why it does not count."""

    refused: Refusal | None
    message: str
    record: Request | None = None
    matched_groups: tuple[str, ...] = ()

    @property
    def final(self) -> bool:
        return self.record is not None and self.record.state != "pending"


def judge(  # noqa: PLR0917 - every input a decision depends on, explicit
    request: Request,
    approver_sub: str,
    approver_iss: str,
    approver_groups: tuple[str, ...],
    decision: Literal["approve", "deny"],
    binding: str,
    *,
    reason: str,
    name: str | None,
    now: datetime,
    channel: Literal["tui", "cli", "api"],
    allow_self_approval: bool = False,
) -> Judgement:
    """Apply one verified approver's decision to a request (pure: the caller verified the token)."""
    if request.state != "pending":
        return Judgement("not_pending", f"request {request.id} is already {request.state}")
    if now >= request.expires:
        return Judgement("expired", f"request {request.id} expired at {request.expires.isoformat()}")
    if binding != request.binding:
        return Judgement(
            "statement_mismatch", "the decision was made for another statement than this request's"
        )
    who = request.requester
    if approver_sub == who.sub and approver_iss == who.iss and not allow_self_approval:
        return Judgement("self_approval", "a requester cannot decide their own request")
    if who.on_behalf_of is not None and approver_sub == who.on_behalf_of:
        return Judgement(
            "principal_approval", "the person an agent acts for cannot decide the agent's request"
        )
    matched = tuple(g for g in approver_groups if g in request.approver_groups)
    if not matched:
        groups = ", ".join(request.approver_groups) or "none configured"
        return Judgement("not_an_approver", f"only members of {groups} can decide this request")
    if any(a.sub == approver_sub and a.iss == approver_iss for a in request.approvals):
        return Judgement("already_counted", "this approver's decision on this request already counts")
    entry = Approver(
        sub=approver_sub,
        iss=approver_iss,
        name=name,
        groups=matched,
        decision=decision,
        reason=reason,
        at=now,
        channel=channel,
    )
    approvals = (*request.approvals, entry)
    approved = sum(1 for a in approvals if a.decision == "approve")
    if decision == "deny":
        state: State = "denied"
    else:
        state = "approved" if approved >= request.quorum else "pending"
    record = request.model_copy(
        update={"approvals": approvals, "state": state, "decided": now if state != "pending" else None}
    )
    done = {
        "denied": "denied",
        "approved": "approved",
        "pending": f"{approved} of {request.quorum} approvals",
    }
    return Judgement(None, f"request {request.id}: {done[state]}", record, matched)
