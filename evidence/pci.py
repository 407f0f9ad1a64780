"""Which PCI DSS v4.0.1 requirements a ledger entry evidences, and the 10.2.2 field-completeness check.

Producers put a type's default requirements into ``pci`` (``schemas.pci_requirements``); the ledger adds
what only the event's content shows — a statement that touched cardholder data (10.2.1.1), one run with
administrative rights (10.2.1.2), a refused or denied attempt (10.2.1.4), a CREATE/DROP (10.2.1.7), an
agent or service account working for a person (8.2.2, 8.6.1) — and what holds for every entry because
the ledger keeps it: integrity-protected, centrally retained audit records (10.3.2 to 10.3.4). The rules
are the table ``RULES`` below; docs/ledger.md prints the same table for auditors (a test keeps them equal).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeGuard

from schemas import pci_requirements

__all__ = ["ALWAYS", "RULES", "Rule", "markdown_table", "missing_10_2_2", "requirements"]

Event = Mapping[str, Any]

ALWAYS: Final = ("10.2.2", "10.3.2", "10.3.3", "10.3.4")
"""Every ledger entry: its 10.2.2 details are recorded, and it is protected from change (Merkle tree and
signed checkpoints, 10.3.2), held off the producing system (10.3.3) and change-detectable (10.3.4)."""


def _is_map(value: object) -> TypeGuard[Mapping[str, Any]]:
    """``isinstance(value, Mapping)``, with the common case (a dict) spared the ABC machinery."""
    return type(value) is dict or isinstance(value, Mapping)


def _data(event: Event) -> Mapping[str, Any]:
    data = event.get("data")
    return data if _is_map(data) else {}


def _outcome(event: Event) -> str:
    outcome = event.get("outcome")
    return str(outcome.get("result")) if _is_map(outcome) else ""


def _kind(event: Event) -> str:
    statement = _data(event).get("statement")
    return str(statement.get("kind")) if _is_map(statement) else ""


def _actor(event: Event) -> Mapping[str, Any]:
    actor = event.get("actor")
    return actor if _is_map(actor) else {}


@dataclass(frozen=True, slots=True)
class Rule:
    """``requirements`` apply to events of ``event_type`` (``*``: any) for which ``when`` holds."""

    event_type: str
    when: str  # the condition, in words, as docs/ledger.md prints it
    test: Callable[[Event], bool]
    requirements: tuple[str, ...]


RULES: Final[tuple[Rule, ...]] = (
    Rule(
        "command.executed",
        "data.chd_access is true",
        lambda e: _data(e).get("chd_access") is True,
        ("10.2.1.1", "7.2.6"),
    ),
    Rule(
        "command.executed",
        "data.privileged is true",
        lambda e: _data(e).get("privileged") is True,
        ("10.2.1.2",),
    ),
    Rule("command.executed", "statement kind is ddl", lambda e: _kind(e) == "ddl", ("10.2.1.7",)),
    Rule(
        "command.executed",
        "outcome code 42501 (insufficient privilege)",
        lambda e: _is_map(e.get("outcome")) and e["outcome"].get("code") == "42501",
        ("10.2.1.4",),
    ),
    Rule(
        "command.executed",
        "statement masked literals or parameters",
        lambda e: (
            bool(_data(e).get("masked_values"))
            or bool((_data(e).get("statement") or {}).get("masked_literals"))
        ),
        ("3.5.1",),
    ),
    Rule("command.blocked", "always", lambda e: True, ("10.2.1.4", "7.2.6")),
    Rule("auth.failed", "always", lambda e: True, ("10.2.1.4",)),
    Rule(
        "session.opened",
        "actor acts on behalf of a person",
        lambda e: bool(_actor(e).get("on_behalf_of")),
        ("8.2.2",),
    ),
    Rule(
        "session.opened",
        "actor kind is agent or service",
        lambda e: _actor(e).get("kind") in ("agent", "service"),
        ("8.6.1",),
    ),
    Rule("ledger.stopped", "outcome is failure", lambda e: _outcome(e) == "failure", ("10.7.2",)),
    Rule("*", "outcome is blocked", lambda e: _outcome(e) == "blocked", ("10.2.1.4",)),
)


def requirements(event: Event) -> tuple[str, ...]:
    """The requirement ids to store with ``event``: its own ``pci``, its type's defaults, ``RULES`` and
    ``ALWAYS``; sorted numerically, each once."""
    event_type = str(event.get("type", ""))
    found: set[str] = set(_base(event_type))
    own = event.get("pci")
    if isinstance(own, list):
        found.update(str(p) for p in own)
    for rule in _rules_for(event_type):
        if rule.test(event):
            found.update(rule.requirements)
    return tuple(sorted(found, key=_numeric_order))


@functools.lru_cache(maxsize=64)
def _base(event_type: str) -> frozenset[str]:
    """ALWAYS and the type's schema defaults (an unknown type is quarantined before this matters)."""
    found = set(ALWAYS)
    with contextlib.suppress(KeyError, FileNotFoundError):
        found.update(pci_requirements(event_type))
    return frozenset(found)


@functools.lru_cache(maxsize=64)
def _rules_for(event_type: str) -> tuple[Rule, ...]:
    return tuple(rule for rule in RULES if rule.event_type in (event_type, "*"))


@functools.lru_cache(maxsize=512)
def _numeric_order(requirement: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else 0 for p in requirement.split("."))


def missing_10_2_2(event: Event) -> list[str]:
    """The PCI DSS 10.2.2 details an event lacks (empty: complete): user identification, type of event,
    date and time, success or failure, origination, identity of the affected data or component."""
    missing: list[str] = []
    if not _actor(event).get("sub"):
        missing.append("user identification (actor.sub)")
    if not event.get("type"):
        missing.append("type of event (type)")
    if not event.get("time"):
        missing.append("date and time (time)")
    if _outcome(event) not in ("success", "failure", "blocked", "pending"):
        missing.append("success or failure indication (outcome.result)")
    origin = event.get("origin")
    if not (_is_map(origin) and origin.get("addr")):
        missing.append("origination of event (origin.addr)")
    target = event.get("target")
    if not (_is_map(target) and (target.get("host") or target.get("object"))):
        missing.append("identity of affected data or component (target)")
    return missing


def markdown_table() -> str:
    """``RULES`` and ``ALWAYS`` as the Markdown table docs/ledger.md carries."""
    lines = ["| event type | when | adds |", "|---|---|---|"]
    lines.append(f"| any | always | {', '.join(ALWAYS)} |")
    lines.append(
        "| any | always | its type's defaults (`x-pci-requirements` of the schema) and its own `pci` |"
    )
    for rule in RULES:
        kind = "any" if rule.event_type == "*" else f"`{rule.event_type}`"
        lines.append(f"| {kind} | {rule.when} | {', '.join(rule.requirements)} |")
    return "\n".join(lines) + "\n"
