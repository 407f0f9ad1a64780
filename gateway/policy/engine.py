"""A connection's policy, evaluated: the first rule whose match applies decides; none does, the default.

A rule's match is three-valued against a statement. Identity (groups, kind), time, command and the
keyword conditions are always known; the statement's classes, tables, columns, functions, row limit and
the structural conditions (``no_where``, ``dangerous_function``, COPY targets) are unknown for an *opaque*
statement (see :mod:`gateway.policy.facts`). Walking the rules in order, a rule that matches decides, a
rule that cannot match is skipped, and a rule that might match an opaque statement stops the walk with
``opaque_action``: what the rule would have decided cannot be known, so it is neither assumed nor skipped.
An opaque statement no rule can match also gets ``opaque_action``, never ``default_action``.

A statement can be of several classes and touch several tables, columns and functions. A rule that stops or
holds it (``block``, ``require_approval``) applies when any of them is one it lists; ``allow`` only when all
of them are. Else "allow reads" would let ``WITH x AS (DELETE ... RETURNING *) SELECT ...`` run (a read,
and a write), and "allow reading reports.*" a join with cards. ``mask`` hides what a statement returns
when any of it matches, but lets it run only if the statement is of no class but those it lists: a mask
on reads that matches ``UPDATE ... RETURNING`` leaves the write to the rules after it, and whatever of
them lets it run, its results stay hidden.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import Final, Literal, get_args
from zoneinfo import ZoneInfo

from gateway.policy.facts import Facts
from pcigate.config.models import Approvals, Condition, Policy, Rule, RuleMatch, StatementClass, TimeWindow

__all__ = ["ApprovalSpec", "Decision", "PolicyEngine", "Requester"]

Action = Literal["allow", "block", "require_approval", "mask"]

# Conditions read from the statement's first keywords: known even when its structure is not.
_KEYWORD_CONDITIONS: Final[frozenset[Condition]] = frozenset(
    {"alter_system", "set_role", "set_session_authorization", "create_extension", "search_path"}
)
_DAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_ALL: Final[tuple[StatementClass, ...]] = get_args(StatementClass)
_SESSION_FOR: Final = timedelta(hours=1)  # scope session without session_for


@dataclass(frozen=True, slots=True)
class Requester:
    """Who runs the statement, as far as rules can tell."""

    groups: frozenset[str]
    kind: Literal["human", "agent", "service"]


@dataclass(frozen=True, slots=True)
class ApprovalSpec:
    """Who may approve a held statement, how many, for how long, covering what."""

    groups: tuple[str, ...]
    quorum: int
    timeout: timedelta
    scope: Literal["statement", "session", "access"]
    session_for: timedelta | None = None  # scope session or access: how long the approval covers


@dataclass(frozen=True, slots=True)
class Decision:
    """What the policy says about one statement. ``rule``: the deciding rule's name, ``default`` or
    ``opaque``; ``why``: one line for the client and the evidence (names, never values)."""

    action: Action
    rule: str
    why: str
    message: str | None = None
    approval: ApprovalSpec | None = None
    # The mask rules that matched on the way: whatever lets the statement run (allow, an approval), its
    # results are masked by them (see the module doc). Always set when ``action`` is ``mask``.
    masks: tuple[Rule, ...] = ()


class PolicyEngine:
    """One policy, compiled once per connection and shared by its sessions (it keeps no session state)."""

    def __init__(
        self, policy: Policy, approvals: Approvals, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.policy = policy
        self._approvals = approvals
        self._clock = clock
        self._zones = {r.match.time.tz: ZoneInfo(r.match.time.tz) for r in policy.rules if r.match.time}
        self._rules = {r.name: r for r in policy.rules}

    def explain(self, decision: Decision, who: Requester, facts: Facts) -> str:
        """``decision.why`` with what its rule matched on, for the person deciding a held statement: the
        requester's kind and groups, the statement's classes, tables, columns, functions, conditions. Names
        from the config and the statement, never values. Off the hot path: only a held statement asks."""
        rule = self._rules.get(decision.rule)
        if rule is None:
            return decision.why
        parts = _matched_on(rule.match, who, facts)
        if not parts:
            return decision.why
        head = f"rule {rule.name} matched"
        return decision.why.replace(head, f"{head} ({'; '.join(parts)})", 1)

    def decide(self, who: Requester, facts: Facts) -> Decision:
        now = self._clock()
        masks: list[Rule] = []  # mask rules that matched part of the statement (see the module doc)
        for rule in self.policy.rules:
            verdict = self._matches(rule.match, who, facts, now, every=rule.action == "allow")
            if verdict is None:
                return self._opaque(facts, f"rule {rule.name} may apply, but {facts.opaque}")
            if verdict and rule.action == "mask" and not facts.classes <= set(rule.match.statements or _ALL):
                masks.append(rule)
            elif verdict:
                return self._decision(rule, tuple(masks))
        if facts.opaque is not None:
            return self._opaque(facts, facts.opaque)
        action = self.policy.default_action
        if action == "allow" and masks:
            return self._finish(
                "mask", "default", f"no rule matched; rule {masks[0].name} masks it", None, None, tuple(masks)
            )
        return self._finish(action, "default", "no rule matched", None, None, tuple(masks))

    # ---------------------------------------------------------------------------------------------

    def _opaque(self, facts: Facts, why: str) -> Decision:
        return self._finish(self.policy.opaque_action, "opaque", why, None, None)

    def _decision(self, rule: Rule, masks: tuple[Rule, ...] = ()) -> Decision:
        why = f"rule {rule.name} matched"
        if rule.action == "allow" and masks:
            why = f"{why}; rule {masks[0].name} masks it"
            return self._finish("mask", rule.name, why, rule.message, rule, masks)
        if rule.action == "mask":
            masks = (*masks, rule)
        return self._finish(rule.action, rule.name, why, rule.message, rule, masks)

    def _finish(  # noqa: PLR0917 - a decision's parts
        self,
        action: Action,
        rule: str,
        why: str,
        message: str | None,
        source: Rule | None,
        masks: tuple[Rule, ...] = (),
    ) -> Decision:
        if action == "block":
            return Decision(action, rule, why, message)
        if action != "require_approval":
            return Decision(action, rule, why, message, masks=masks)
        spec = source.approval if source is not None else None
        defaults = self._approvals
        approval = ApprovalSpec(
            groups=(spec.groups if spec and spec.groups else defaults.approver_groups),
            quorum=(spec.quorum if spec and spec.quorum else defaults.default_quorum),
            timeout=(spec.timeout if spec and spec.timeout else defaults.default_timeout),
            scope=spec.scope if spec else "statement",
            session_for=(
                (spec.session_for or _SESSION_FOR) if spec is not None and spec.scope == "session" else None
            ),
        )
        return Decision(action, rule, why, message, approval, masks)

    def _matches(self, m: RuleMatch, who: Requester, facts: Facts, now: float, *, every: bool) -> bool | None:
        """True, False, or None: it might, but the statement is opaque to what the rule asks. ``every``:
        the statement's classes, tables, columns and functions must all be listed, not just one."""
        if m.groups and who.groups.isdisjoint(m.groups):
            return False
        if m.kinds and who.kind not in m.kinds:
            return False
        if m.time is not None and not self._in_window(m.time, now):
            return False
        if m.commands and not any(_starts(facts.command, c) for c in m.commands):
            return False
        unknown = False
        if m.conditions:
            if any(c in facts.conditions for c in m.conditions):
                pass
            elif facts.opaque is not None and not _KEYWORD_CONDITIONS.issuperset(m.conditions):
                unknown = True
            else:
                return False
        structural = m.statements or m.tables or m.columns or m.functions or m.rows_over is not None
        if structural and facts.opaque is not None:
            return None
        if m.statements and not _listed(facts.classes, m.statements, lambda c, p: c == p, every):
            return False
        if m.tables and not _listed(facts.tables, m.tables, lambda t, p: _name_match(t, p, 2), every):
            return False
        if m.columns and not _listed(
            facts.columns, m.columns, lambda c, p: _column_match(c, p, every), every
        ):
            return False
        if m.functions and not _listed(
            facts.functions, m.functions, lambda f, p: _function_match(f, p, every), every
        ):
            return False
        if m.rows_over is not None and not _may_exceed(facts, m.rows_over):
            return False
        return None if unknown else True

    def _in_window(self, window: TimeWindow, now: float) -> bool:
        local = datetime.fromtimestamp(now, self._zones[window.tz])
        clock = f"{local.hour:02d}:{local.minute:02d}"
        inside = _DAYS[local.weekday()] in window.days and window.start <= clock < window.end
        return inside != window.outside


def _matched_on(m: RuleMatch, who: Requester, facts: Facts) -> list[str]:
    """Each key of a match and what of the requester and the statement it matched."""
    parts: list[str] = []
    if m.kinds:
        parts.append(f"kind {who.kind}")
    if m.groups:
        parts.append(_names("group", who.groups.intersection(m.groups)))
    if m.commands:
        parts.append(_names("command", {c for c in m.commands if _starts(facts.command, c)}))
    if m.conditions:
        parts.append(_names("condition", facts.conditions.intersection(m.conditions)))
    if m.statements:
        parts.append(_names("class", facts.classes.intersection(m.statements)))
    named: list[tuple[str, frozenset[str], tuple[str, ...], Callable[[str, str], bool]]] = [
        ("table", facts.tables, m.tables, lambda t, p: _name_match(t, p, 2)),
        ("column", facts.columns, m.columns, lambda c, p: _column_match(c, p, False)),
        ("function", facts.functions, m.functions, lambda f, p: _function_match(f, p, False)),
    ]
    for key, items, patterns, hit in named:
        if patterns:
            parts.append(_names(key, {i for i in items if any(hit(i, p) for p in patterns)}))
    if m.rows_over is not None:
        parts.append(f"may return more than {m.rows_over} rows")
    if m.time is not None:
        w = m.time
        where = "outside" if w.outside else "inside"
        parts.append(f"{where} {','.join(w.days)} {w.start}-{w.end} {w.tz}")
    return [p for p in parts if p]


def _names(key: str, names: set[str] | frozenset[str], shown: int = 3) -> str:
    if not names:
        return ""
    ordered = sorted(names)
    more = f" and {len(ordered) - shown} more" if len(ordered) > shown else ""
    return f"{key}{'s' if len(ordered) > 1 else ''} {', '.join(ordered[:shown])}{more}"


def _listed(
    items: frozenset[str], patterns: tuple[str, ...], hit: Callable[[str, str], bool], every: bool
) -> bool:
    """One of the statement's items is listed; with ``every``, it has some and each of them is."""
    listed = (any(hit(item, p) for p in patterns) for item in items)
    return bool(items) and all(listed) if every else any(listed)


def _starts(command: str, prefix: str) -> bool:
    return command == prefix or command.startswith(prefix + " ")


def _name_match(name: str, pattern: str, parts: int) -> bool:
    """``pattern`` with fewer dot-separated parts than ``parts`` matches any leading parts."""
    missing = parts - (pattern.count(".") + 1)
    full = ".".join(["*"] * missing + [pattern]) if missing > 0 else pattern
    return fnmatchcase(name, full)


def _function_match(name: str, pattern: str, every: bool) -> bool:
    """A function called without its schema (``pg_read_file(...)``) resolves along the search_path: it may
    be any schema's. So it may match a pattern on its name alone (through ``*.name`` it matched nothing: a
    ``functions: [pg_read_file]`` rule missed every plain call); it surely matches (``every``) only a
    pattern that allows any schema."""
    if "." in name:
        return _name_match(name, pattern, 2)
    schema, _, bare = pattern.rpartition(".")
    return fnmatchcase(name, bare) and (not every or schema in ("", "*"))


def _column_match(column: str, pattern: str, every: bool) -> bool:
    """A column, or ``schema.table.*`` (every column of a table a ``*`` reads), against a pattern. A star
    may match any pattern on a column of its table; it surely matches (``every``) only one for all of them."""
    if column.endswith(".*") and not every:
        table_pattern = pattern.rsplit(".", 1)[0] if pattern.count(".") >= 1 else "*"
        return _name_match(column[:-2], table_pattern, 2)
    return _name_match(column, pattern, 3)


def _may_exceed(facts: Facts, limit: int) -> bool:
    """Whether the statement may return more than ``limit`` rows to the client."""
    if facts.classes.isdisjoint(("read", "copy_out")):
        return False
    return facts.row_limit is None or facts.row_limit > limit
