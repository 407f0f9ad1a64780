"""The policy as a session hook: each statement's facts against the connection's rules, before it runs.

``block`` refuses the statement with SQLSTATE 42501 and the rule's message (the session records
``command.blocked``); ``mask`` lets it run with every value of its results hidden (the masking hook reads
the note); ``allow`` lets it run, naming the deciding rule in its ``command.executed``.
``require_approval`` holds a statement for a person's decision (``approvals`` in the docs).
"""

from __future__ import annotations

import dataclasses
from typing import Final, Literal

from gateway.hooks import MASK_ALL, Hook, SessionInfo, StatementView, Verdict
from gateway.policy.engine import Decision, PolicyEngine, Requester
from gateway.policy.facts import Facts, FactsCache
from pcigate.config.models import Approvals, Policy

__all__ = ["PolicyHook", "PolicyRuntime"]

_MAX_PREPARED: Final = 1024


class PolicyRuntime:
    """One connection's policy: the engine and the statement facts cache its sessions share."""

    def __init__(self, policy: Policy, approvals: Approvals) -> None:
        self.engine = PolicyEngine(policy, approvals)
        self.facts = FactsCache()

    def hooks(self, session: SessionInfo) -> list[Hook]:
        return [PolicyHook(self, session)]


class PolicyHook(Hook):
    """See the module docstring. Keeps the facts of this session's PREPAREd statements for EXECUTE."""

    def __init__(self, runtime: PolicyRuntime, session: SessionInfo) -> None:
        self._runtime = runtime
        identity = session.identity
        self._who = Requester(frozenset(identity.groups), identity.kind)
        self._prepared: dict[str, Facts] = {}

    def statement(self, stmt: StatementView) -> Verdict | None:
        facts = self._facts(stmt.text, stmt.scs_on)
        decision = self._runtime.engine.decide(self._who, facts)
        stmt.rule = decision.rule
        stmt.notes["policy"] = decision
        if decision.action == "allow":
            return None
        if decision.action == "mask":
            stmt.notes[MASK_ALL] = True
            return None
        return _refusal(decision)

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


def _refusal(decision: Decision) -> Verdict:
    reason: Literal["policy_rule", "parse_error"]
    if decision.rule == "opaque":
        context, reason = decision.why, "parse_error"
    elif decision.rule == "default":
        context, reason = "no policy rule matched it", "policy_rule"
    else:
        context, reason = f"policy rule {decision.rule}", "policy_rule"
    if decision.action == "block":
        text = decision.message or "this statement is not allowed here"
        return Verdict("block", "42501", f"pcigate: {text} ({context})", rule=decision.rule, reason=reason)
    approval = decision.approval
    who = ", ".join(approval.groups) if approval and approval.groups else "no approver group is configured"
    return Verdict(
        "block",
        "42501",
        f"pcigate: this statement needs a person's approval ({context}; approvers: {who}); statement "
        "approvals are not available in this gateway version, so it was not run: ask an administrator "
        "to run it or to change the rule",
        rule=decision.rule,
        reason=reason,
    )
