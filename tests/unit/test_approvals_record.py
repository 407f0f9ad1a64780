"""The rules a decision on a held statement must pass (pure): who may decide, binding to the statement,
quorum, single use, expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.approvals.record import Request, Requester, binding_of, judge
from schemas.models import Statement

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
ISS = "https://issuer.example"
SESSION = "019300a0-0000-7000-8000-0000000000aa"
BINDING = binding_of(SESSION, "ab" * 32)
STATEMENT = Statement.model_validate(
    {
        "text": "UPDATE cards SET exp_year = ? WHERE card_id = ?",
        "text_truncated": False,
        "masked_literals": 2,
        "fingerprint": "cd" * 32,
        "digest": {"key_id": "k1", "hmac_sha256": "ab" * 32},
        "parameters": None,
        "parameters_truncated": False,
        "kind": "dml",
        "objects": ["public.cards"],
    }
)


def request(**kw: Any) -> Request:
    fields: dict[str, Any] = {
        "id": "019300a0-0000-7000-8000-000000000001",
        "created": NOW,
        "expires": NOW + timedelta(minutes=5),
        "requester": Requester(
            sub="agent-7", iss=ISS, kind="agent", on_behalf_of="alice", groups=("agents",)
        ),
        "connection": "payments",
        "session_id": SESSION,
        "gateway": "gw-1",
        "statement": STATEMENT,
        "binding": BINDING,
        "rule": "cards-writes",
        "why": "rule cards-writes matched",
        "approver_groups": ("approvers", "leads"),
        "quorum": 1,
        "scope": "statement",
    }
    fields.update(kw)
    return Request(**fields)


def decide(req: Request, sub: str = "bob", groups: tuple[str, ...] = ("approvers",), **kw: Any) -> Any:
    args: dict[str, Any] = {
        "decision": "approve",
        "binding": BINDING,
        "reason": "ticket 42",
        "name": None,
        "now": NOW + timedelta(seconds=10),
        "channel": "cli",
    }
    args.update(kw)
    decision = args.pop("decision")
    binding = args.pop("binding")
    return judge(req, sub, ISS, groups, decision, binding, **args)


def test_an_approver_approves_once_and_the_record_says_so() -> None:
    result = decide(request())
    assert result.refused is None and result.final
    assert result.record.state == "approved" and result.record.decided == NOW + timedelta(seconds=10)
    (entry,) = result.record.approvals
    assert (entry.sub, entry.groups, entry.decision, entry.reason) == (
        "bob",
        ("approvers",),
        "approve",
        "ticket 42",
    )
    again = decide(result.record, sub="carol")
    assert again.refused == "not_pending"  # single use: a decided request takes no more decisions


def test_quorum_counts_distinct_approvers() -> None:
    first = decide(request(quorum=2))
    assert first.refused is None and not first.final and first.record.state == "pending"
    assert decide(first.record).refused == "already_counted"
    second = decide(first.record, sub="carol", groups=("leads", "other"))
    assert second.final and second.record.state == "approved"
    assert second.matched_groups == ("leads",)


def test_one_deny_ends_it() -> None:
    result = decide(request(quorum=3), decision="deny")
    assert result.final and result.record.state == "denied"


@pytest.mark.parametrize(
    ("kw", "refusal"),
    [
        ({"sub": "agent-7"}, "self_approval"),
        ({"sub": "alice"}, "principal_approval"),  # the human the agent acts for
        ({"groups": ("engineers",)}, "not_an_approver"),
        ({"binding": binding_of("session-2", "ab" * 32)}, "statement_mismatch"),  # replayed elsewhere
        ({"approver_kind": "agent"}, "not_a_person"),
        ({"approver_kind": "service"}, "not_a_person"),
        ({"now": NOW + timedelta(minutes=5)}, "expired"),
    ],
)
def test_decisions_that_do_not_count(kw: dict[str, Any], refusal: str) -> None:
    result = decide(request(), **kw)
    assert result.refused == refusal and result.record is None and result.message


def test_self_approval_only_where_configured() -> None:
    human = request(requester=Requester(sub="bob", iss=ISS, kind="human", groups=("approvers",)))
    assert decide(human).refused == "self_approval"
    assert decide(human, allow_self_approval=True).refused is None


def test_the_binding_depends_on_session_and_statement() -> None:
    assert binding_of("s", "a" * 64) != binding_of("t", "a" * 64) != binding_of("s", "b" * 64)
    assert len(binding_of("s", "a" * 64)) == 64


def test_records_are_validated() -> None:
    with pytest.raises(ValueError, match="extra"):
        Request.model_validate({**request().model_dump(), "state_override": "approved"})
