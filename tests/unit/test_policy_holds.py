"""How the policy hook holds a statement for approval and uses the outcome: once, for that statement in
that session, with the request's id; a refusal ends the rest of its Query's holds; a session-scope approval
covers the rule for its time; an unused outcome is forgotten after the request's timeout. The approval
service here is a stand-in that answers at once (the real one runs in tests/e2e/test_approvals_e2e.py)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.approvals.service import Outcome, Ticket
from gateway.hooks import MASK_ALL, MASK_COLUMNS, PendingStatement, SessionInfo, StatementView
from gateway.identity import VerifiedIdentity
from gateway.policy import hook as policy_hook
from gateway.policy.hook import PolicyRuntime
from gateway.sqltext import analyze
from pcigate.config.models import Approvals, Policy
from tests.unit.test_audit_events import session_audit

UPDATE = "UPDATE cards SET exp_year = 2031 WHERE card_id = 7"
RULES: dict[str, Any] = {
    "default_action": "allow",
    "rules": [
        {"name": "card-writes", "match": {"statements": ["write"], "tables": ["public.cards"]},
         "action": "require_approval", "approval": {"timeout": "60s"}},
        {"name": "txn-session", "match": {"statements": ["write"], "tables": ["public.transactions"]},
         "action": "require_approval", "approval": {"scope": "session", "session_for": "2m"}},
    ],
}  # fmt: skip


class Answers:
    """Stands in for ApprovalService.hold: each hold gets the next scripted state."""

    def __init__(self, *states: str) -> None:
        self.states = list(states)
        self.tickets: list[Ticket] = []

    async def hold(self, ticket: Ticket) -> Outcome:
        self.tickets.append(ticket)
        state = self.states.pop(0)
        until = datetime.now(UTC).timestamp() + 120 if ticket.spec.scope == "session" else None
        return Outcome(
            state, ticket.request_id, f"request {ticket.request_id} {state}", ticket.spec.scope, until
        )  # type: ignore[arg-type]


def policy_hook_with(answers: Answers, rules: dict[str, Any] = RULES) -> policy_hook.PolicyHook:
    runtime = PolicyRuntime(Policy.model_validate(rules), Approvals(approver_groups=("approvers",)))
    runtime.approvals = answers  # type: ignore[assignment]
    identity = VerifiedIdentity(
        sub="alice@example.com", iss="https://issuer.example", name=None, groups=("payments-admins",),
        kind="human", on_behalf_of=None, jti=None, expires_at=datetime(2030, 1, 1, tzinfo=UTC), amr=(),
    )  # fmt: skip
    audit = session_audit()
    assert audit.session_id is not None
    info = SessionInfo(
        audit.session_id, identity, "payments", "payments", "pcigate_rw", "127.0.0.1", 5000, None, False,
        notify=lambda _: None, audit=audit,
    )  # fmt: skip
    return policy_hook.PolicyHook(runtime, info)


def holds(hook: policy_hook.PolicyHook, text: str) -> bool:
    """Whether the hook would hold ``text`` now (the wait is not run)."""
    wait = hook.wait_before(PendingStatement(text, scs_on=True))
    if wait is None:
        return False
    wait.close()  # type: ignore[attr-defined]
    return True


def view(text: str, seq: int = 1) -> StatementView:
    return StatementView(seq, text, analyze(text), None, [], "simple", scs_on=True)


def wait_and_judge(hook: policy_hook.PolicyHook, text: str) -> Any:
    """What the session does: wait while the hook holds, then judge."""
    pending = PendingStatement(text, scs_on=True)
    while (wait := hook.wait_before(pending)) is not None:
        asyncio.run(wait)  # type: ignore[arg-type]
    stmt = view(text)
    return hook.statement(stmt), stmt


def test_an_approval_runs_its_statement_once() -> None:
    answers = Answers("approved", "denied")
    hook = policy_hook_with(answers)
    verdict, stmt = wait_and_judge(hook, UPDATE)
    (ticket,) = answers.tickets
    assert verdict is None and stmt.approval_id == ticket.request_id and stmt.rule == "card-writes"
    assert ticket.why == "rule card-writes matched (class write; table public.cards)"  # for the approver
    assert ticket.statement.text.startswith("UPDATE cards") and len(ticket.binding) == 64
    verdict, stmt = wait_and_judge(hook, UPDATE)  # the same statement again: a new request
    assert len(answers.tickets) == 2
    assert verdict.sqlstate == "42501" and verdict.reason == "approval_denied"
    assert stmt.approval_id == answers.tickets[1].request_id


def test_statements_the_policy_does_not_hold_never_wait() -> None:
    hook = policy_hook_with(Answers())
    assert hook.wait_before(PendingStatement("SELECT * FROM cards", scs_on=True)) is None
    assert hook.statement(view("SELECT * FROM cards")) is None


@pytest.mark.parametrize(
    ("state", "sqlstate", "reason"),
    [("expired", "42501", "approval_expired"), ("withdrawn", "57014", "policy_rule"),
     ("unavailable", "58000", "policy_unavailable")],
)  # fmt: skip
def test_outcomes_that_do_not_run(state: str, sqlstate: str, reason: str) -> None:
    verdict, _ = wait_and_judge(policy_hook_with(Answers(state)), UPDATE)
    assert (verdict.sqlstate, verdict.reason) == (sqlstate, reason)


def test_after_a_refusal_the_rest_of_the_query_is_not_held() -> None:
    answers = Answers("denied")
    hook = policy_hook_with(answers)
    first = PendingStatement(UPDATE, scs_on=True)
    second = PendingStatement("UPDATE cards SET cvv = cvv WHERE card_id = 7", scs_on=True)
    asyncio.run(hook.wait_before(first))  # type: ignore[arg-type]
    assert hook.wait_before(first) is None and hook.wait_before(second) is None
    assert hook.statement(view(UPDATE)) is not None  # the session refuses the Query here
    assert holds(hook, second.text)  # a later message is held again


def test_a_session_scope_approval_covers_its_rule_for_its_time(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = Answers("approved")
    hook = policy_hook_with(answers)
    txn = "UPDATE transactions SET status = 'x' WHERE txn_id = %d"
    verdict, stmt = wait_and_judge(hook, txn % 1)
    request_id = answers.tickets[0].request_id
    assert verdict is None and stmt.approval_id == request_id
    verdict, stmt = wait_and_judge(hook, txn % 2)
    assert verdict is None and stmt.approval_id == request_id and len(answers.tickets) == 1
    assert holds(hook, UPDATE)  # another rule is not covered
    later = datetime.now(UTC).timestamp() + 121
    monkeypatch.setattr(policy_hook.time, "time", lambda: later)
    assert holds(hook, txn % 3)


def test_an_unused_outcome_is_forgotten_after_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = Answers("approved", "approved")
    hook = policy_hook_with(answers)
    pending = PendingStatement(UPDATE, scs_on=True)
    asyncio.run(hook.wait_before(pending))  # type: ignore[arg-type]
    assert hook.wait_before(pending) is None  # decided, not yet used
    now = policy_hook.time.monotonic()
    monkeypatch.setattr(policy_hook.time, "monotonic", lambda: now + timedelta(seconds=61).total_seconds())
    assert holds(hook, UPDATE)  # its Query never ran it: a new decision is needed


def test_a_failing_approval_service_refuses_the_statement_once() -> None:
    class Broken(Answers):
        async def hold(self, ticket: Ticket) -> Outcome:
            self.tickets.append(ticket)
            raise RuntimeError("bug")

    broken = Broken()
    hook = policy_hook_with(broken)
    verdict, _ = wait_and_judge(hook, UPDATE)  # would loop forever if the failure left no outcome
    assert (verdict.sqlstate, verdict.reason) == ("58000", "policy_unavailable")
    assert len(broken.tickets) == 1


def test_an_approved_statement_runs_masked_by_the_mask_rules_it_matched() -> None:
    """A mask rule on reads does not let ``UPDATE ... RETURNING`` run, but once a person approves it, what
    it returns is masked by that rule all the same."""
    mask_reads = {
        "name": "mask-card-reads",
        "match": {"statements": ["read"], "tables": ["public.cards"]},
        "action": "mask",
        "mask": {"columns": [{"match": "exp_year", "action": "full"}]},
    }
    rules = {**RULES, "rules": [mask_reads, *RULES["rules"]]}
    returning = f"{UPDATE} RETURNING exp_year"
    verdict, stmt = wait_and_judge(policy_hook_with(Answers("approved"), rules), returning)
    assert verdict is None and stmt.rule == "card-writes"
    ((rule, columns),) = stmt.notes[MASK_COLUMNS]
    assert rule == "mask-card-reads" and [(c.match, c.action) for c in columns] == [("exp_year", "full")]
    assert MASK_ALL not in stmt.notes
    hide_all = {**mask_reads, "mask": None}
    rules = {**RULES, "rules": [hide_all, *RULES["rules"]]}
    verdict, stmt = wait_and_judge(policy_hook_with(Answers("approved"), rules), returning)
    assert verdict is None and stmt.notes[MASK_ALL] is True
    verdict, stmt = wait_and_judge(policy_hook_with(Answers("approved")), returning)
    assert MASK_ALL not in stmt.notes and MASK_COLUMNS not in stmt.notes  # no mask rule: the profile only


def test_a_refused_outcome_refuses_the_bind_and_an_approved_one_waits_for_the_execute() -> None:
    answers = Answers("denied", "approved")
    hook = policy_hook_with(answers)
    params: list[bytes | None] = [b"7"]
    pending = PendingStatement(UPDATE, params, [0], (), "extended", True)
    asyncio.run(hook.wait_before(pending))  # type: ignore[arg-type]
    verdict = hook.bind(pending)
    assert verdict is not None and verdict.reason == "approval_denied"
    assert verdict.approval_id == answers.tickets[0].request_id and verdict.rule == "card-writes"
    assert hook.bind(pending) is None  # used once
    assert holds(hook, UPDATE) is True  # and the next statement is held again, not refused for the last
    asyncio.run(hook.wait_before(pending))  # type: ignore[arg-type]
    assert hook.bind(pending) is None  # approved: it binds ...
    assert hook.wait_before(pending) is None  # ... and its Execute does not wait again ...
    stmt = StatementView(1, UPDATE, analyze(UPDATE), params, [0], "extended", scs_on=True)
    assert hook.statement(stmt) is None and stmt.approval_id == answers.tickets[1].request_id  # ... runs
