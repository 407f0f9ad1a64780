"""The policy as a session hook: each statement's facts against the connection's rules, before it runs.

``block`` refuses the statement with SQLSTATE 42501 and the rule's message (the session records
``command.blocked``); ``mask`` lets it run with every value of its results hidden, or with its rule's
``mask.columns`` on top of the masking profile (the masking hook reads the notes); ``allow`` lets it run,
naming the deciding rule in its ``command.executed``. Whatever runs is masked by every mask rule it matched.
``require_approval`` holds the statement (``wait_before``) until a person decides it through the
gateway's :class:`~gateway.approvals.service.ApprovalService`: approved, it runs unchanged with the
request's id in its ``command.executed``; denied, expired or withdrawn, it is refused like a block.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Sequence
from typing import Final, Literal

from gateway.approvals.record import binding_of
from gateway.approvals.service import ApprovalService, Outcome, Ticket
from gateway.audit import statement_audit
from gateway.hooks import MASK_ALL, MASK_COLUMNS, Hook, PendingStatement, SessionInfo, StatementView, Verdict
from gateway.policy.engine import Decision, PolicyEngine, Requester
from gateway.policy.facts import Facts, FactsCache
from gateway.policy.fastpath import fast_path_facts
from pcigate.config.models import Approvals, Policy, Rule
from schemas.ids import new_event_id
from schemas.models import Statement

__all__ = ["PolicyHook", "PolicyRuntime"]

log = logging.getLogger(__name__)

_MAX_PREPARED: Final = 1024
_Key = tuple[str, tuple[bytes | None, ...] | None]


class PolicyRuntime:
    """One connection's policy: the engine and the statement facts cache its sessions share."""

    def __init__(self, policy: Policy, approvals: Approvals, service: ApprovalService | None = None) -> None:
        self.engine = PolicyEngine(policy, approvals)
        self.facts = FactsCache()
        self.approvals = service  # None: statements that need approval are refused

    def mask(self, stmt: StatementView, masks: Sequence[Rule]) -> None:
        """Notes for the masking hook: hide every value, or only what the rules' columns name."""
        if any(r.mask is None for r in masks):
            stmt.notes[MASK_ALL] = True
        else:
            stmt.notes[MASK_COLUMNS] = tuple((r.name, r.mask.columns) for r in masks if r.mask is not None)

    def hooks(self, session: SessionInfo) -> list[Hook]:
        return [PolicyHook(self, session)]


class PolicyHook(Hook):
    """See the module docstring. Keeps the facts of this session's PREPAREd statements for EXECUTE."""

    def __init__(self, runtime: PolicyRuntime, session: SessionInfo) -> None:
        self._runtime = runtime
        identity = session.identity
        self._who = Requester(frozenset(identity.groups), identity.kind)
        self._prepared: dict[str, Facts] = {}
        self._session = session
        # Decided holds, each used once by the statement it held; one whose Query was refused for another
        # reason stays usable by the same statement in this session until the request's timeout has passed
        # once more, then it is forgotten (and the statement sent again waits for a new decision).
        self._outcomes: dict[_Key, tuple[Outcome, float, str]] = {}  # outcome, forget after, rule
        self._grants: dict[str, Outcome] = {}  # scope session: approved rules, by rule name
        self._refusing = False  # a statement of the message being judged will be refused: hold no more

    def wait_before(self, stmt: PendingStatement) -> Awaitable[None] | None:
        service = self._runtime.approvals
        if service is None or self._refusing:
            return None
        facts = self._facts(stmt.text, stmt.scs_on)
        decision = self._runtime.engine.decide(self._who, facts)
        if decision.action != "require_approval" or decision.approval is None or not decision.approval.groups:
            return None  # refused or let through when judged
        key = _key(stmt.text, stmt.params)
        outcome = self._outcome(key, keep=True)
        if outcome is not None:
            self._refusing = outcome.state != "approved"
            return None
        if self._granted(decision.rule) is not None:
            return None
        why = self._runtime.engine.explain(decision, self._who, facts)
        return self._hold(
            service, key, stmt, dataclasses.replace(decision, why=why), tuple(sorted(facts.columns))
        )

    async def _hold(
        self,
        service: ApprovalService,
        key: _Key,
        stmt: PendingStatement,
        decision: Decision,
        columns: tuple[str, ...],
    ) -> None:
        assert decision.approval is not None
        request_id = new_event_id()
        # Whatever happens, the statement leaves with an outcome: without one it would be held again.
        outcome = Outcome("unavailable", request_id, "the approval service failed (see the gateway log)")
        try:
            outcome = await service.hold(self._ticket(request_id, stmt, decision, columns))
        except asyncio.CancelledError:
            outcome = Outcome("withdrawn", request_id, "the client cancelled the statement")
            raise
        except Exception:
            log.exception("holding a statement for approval failed")
        finally:
            forget = time.monotonic() + decision.approval.timeout.total_seconds()
            self._outcomes[key] = (outcome, forget, decision.rule)
            self._refusing = outcome.state != "approved"

    def _ticket(
        self, request_id: str, stmt: PendingStatement, decision: Decision, columns: tuple[str, ...]
    ) -> Ticket:
        session = self._session
        audit = session.audit
        assert audit is not None and decision.approval is not None
        described = Statement.model_validate_json(
            audit.statement_json(
                stmt.text, statement_audit(stmt.text), stmt.params, stmt.param_formats, stmt.param_oids
            )
        )
        return Ticket(
            request_id=request_id,
            audit=audit,
            connection=session.connection,
            database=session.database,
            statement=described,
            binding=binding_of(session.session_id, described.digest.hmac_sha256),
            rule=decision.rule,
            why=decision.why,
            spec=decision.approval,
            notify=session.notify,
            observe=session.observe,
            columns=columns,
        )

    def parse(self, stmt: PendingStatement) -> Verdict | None:
        """A statement the policy blocks is refused at its Parse already. Only ``block`` (what needs approval
        is held at its Bind, where its parameters are known), judged on facts that do not change the
        session's view of PREPAREd names."""
        facts = self._runtime.facts.facts(stmt.text, scs_on=stmt.scs_on)
        if facts.executes is not None:
            return None  # EXECUTE name: judged at its Execute, with the session's PREPARE
        decision = self._runtime.engine.decide(self._who, facts)
        return _refusal(decision) if decision.action == "block" else None

    def statement(self, stmt: StatementView) -> Verdict | None:
        self._refusing = False
        if stmt.protocol == "function":
            facts = fast_path_facts(stmt.text)
        else:
            facts = self._facts(stmt.text, stmt.scs_on)
        decision = self._runtime.engine.decide(self._who, facts)
        stmt.rule = decision.rule
        stmt.notes["policy"] = decision
        if decision.action == "block" or (
            decision.action == "require_approval" and self._runtime.approvals is None
        ):
            return _refusal(decision)
        if decision.action == "require_approval":
            refused = self._approved(stmt, decision)
            if refused is not None:
                return refused
        if decision.masks:  # what runs (allowed, or approved) is masked by every mask rule it matched
            self._runtime.mask(stmt, decision.masks)
        return None

    def _approved(self, stmt: StatementView, decision: Decision) -> Verdict | None:
        """None (it runs, with its approval's id) or the refusal of a statement that needed approval."""
        outcome = self._outcome(_key(stmt.text, stmt.params), keep=False)
        if outcome is None:
            grant = self._granted(decision.rule)
            if grant is not None:
                stmt.approval_id = grant.request_id
                return None
            if decision.approval is None or not decision.approval.groups:
                return _refusal(decision)
            # Only Query, Bind and Execute messages can wait; a FunctionCall (or a statement the server skips)
            # that needs approval is refused.
            return Verdict(
                "block",
                "42501",
                f"pcigate: this statement needs a person's approval ({_context(decision)}) and cannot be "
                "held in this form; send it as a query",
                rule=decision.rule,
            )
        stmt.approval_id = outcome.request_id
        if outcome.state == "approved":
            if outcome.scope == "session" and outcome.until is not None:
                self._grants[decision.rule] = outcome
            return None
        return _not_approved(outcome, decision.rule)

    def bind(self, stmt: PendingStatement) -> Verdict | None:
        """A held statement that was not approved is refused at its Bind, before PostgreSQL plans it; one
        that was binds, and its Execute uses the approval (see :meth:`statement`)."""
        key = _key(stmt.text, stmt.params)
        found = self._outcomes.get(key)
        if found is None or found[0].state == "approved":
            return None
        self._refusing = False  # the server skips the rest up to Sync: nothing more of it is judged
        outcome = self._outcome(key, keep=False)
        if outcome is None:  # gone stale just now: its Execute is judged (and held) afresh
            return None
        return _not_approved(outcome, found[2])

    def _outcome(self, key: _Key, *, keep: bool) -> Outcome | None:
        now = time.monotonic()
        for stale in [k for k, (_, until, _) in self._outcomes.items() if until <= now]:
            del self._outcomes[stale]
        found = self._outcomes.get(key) if keep else self._outcomes.pop(key, None)
        return found[0] if found is not None else None

    def _granted(self, rule: str) -> Outcome | None:
        grant = self._grants.get(rule)
        if grant is None:
            return None
        if grant.until is None or time.time() >= grant.until:
            del self._grants[rule]
            return None
        return grant

    def _facts(self, text: str, scs_on: bool) -> Facts:
        facts = self._runtime.facts.facts(text, scs_on=scs_on)
        if facts.prepares is not None:
            self._prepared.pop(facts.prepares, None)
            self._prepared[facts.prepares] = facts
            if len(self._prepared) > _MAX_PREPARED:
                self._prepared.pop(next(iter(self._prepared)))
        elif facts.executes is not None:
            prepared = self._prepared.get(facts.executes)
            if prepared is not None:
                return dataclasses.replace(prepared, command=facts.command, prepares=None)
        return facts


def _not_approved(outcome: Outcome, rule: str) -> Verdict:
    """The refusal of a held statement whose request ended without an approval."""
    if outcome.state == "withdrawn":
        return Verdict(
            "block",
            "57014",
            f"pcigate: canceling statement: {outcome.message} (request {outcome.request_id} withdrawn)",
            rule=rule,
            approval_id=outcome.request_id,
        )
    if outcome.state == "unavailable":
        return Verdict(
            "block",
            "58000",
            f"pcigate: this statement needs a person's approval and {outcome.message}; it was not run: "
            "retry later or contact the gateway operator",
            rule=rule,
            reason="policy_unavailable",
            approval_id=outcome.request_id,
        )
    reason: Literal["approval_denied", "approval_expired"] = (
        "approval_denied" if outcome.state == "denied" else "approval_expired"
    )
    message = f"pcigate: {outcome.message}; the statement was not run"
    return Verdict("block", "42501", message, rule=rule, reason=reason, approval_id=outcome.request_id)


def _key(text: str, params: Sequence[bytes | None] | None) -> _Key:
    return text, tuple(params) if params is not None else None


def _context(decision: Decision) -> str:
    if decision.rule == "opaque":
        return decision.why
    if decision.rule == "default":
        return "no policy rule matched it"
    return f"policy rule {decision.rule}"


def _refusal(decision: Decision) -> Verdict:
    context = _context(decision)
    reason: Literal["policy_rule", "parse_error"] = (
        "parse_error" if decision.rule == "opaque" else "policy_rule"
    )
    if decision.action == "block":
        text = decision.message or "this statement is not allowed here"
        return Verdict("block", "42501", f"pcigate: {text} ({context})", rule=decision.rule, reason=reason)
    approval = decision.approval
    if approval is not None and approval.groups:
        # no approval service in this process (it only runs inside `pcigate gateway`)
        return Verdict(
            "block",
            "42501",
            f"pcigate: this statement needs a person's approval ({context}; approvers: "
            f"{', '.join(approval.groups)}), and approvals are not available here, so it was not run",
            rule=decision.rule,
            reason=reason,
        )
    return Verdict(
        "block",
        "42501",
        f"pcigate: this statement needs a person's approval ({context}), but no approver group is "
        "configured, so nobody can approve it and it was not run: ask an administrator to set "
        "approvals.approver_groups or the rule's approval.groups",
        rule=decision.rule,
        reason=reason,
    )
