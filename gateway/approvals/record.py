"""The rules a decision on a held statement must pass, as a pure function of the request record
(:mod:`schemas.approvals`) and one verified approver.

The gateway that holds the statement verifies the approver's token, applies :func:`judge` and writes the
outcome with compare-and-swap; nothing here does I/O, so every rule is tested on its own.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from schemas.approvals import Approver, Channel, Refusal, Request, Requester, State

__all__ = ["Approver", "Judgement", "Request", "Requester", "binding_of", "judge"]


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
    channel: Channel,
    approver_kind: Literal["human", "agent", "service"] = "human",
    allow_self_approval: bool = False,
) -> Judgement:
    """Apply one verified approver's decision to a request (pure: the caller verified the token)."""
    if request.state == "expired" or (request.state == "pending" and now >= request.expires):
        return Judgement("expired", f"request {request.id} expired at {request.expires.isoformat()}")
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
    if approver_kind != "human":
        return Judgement(
            "not_a_person", f"only a person can decide a request; this token is a {approver_kind}'s"
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
