"""evidence.pci: the requirement ids an entry evidences, and the 10.2.2 completeness check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evidence.pci import ALWAYS, markdown_table, missing_10_2_2, requirements

DOC = Path(__file__).resolve().parents[2] / "docs" / "ledger.md"


def _event(event_type: str, **overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": event_type,
        "time": "2026-11-22T08:00:00.000000Z",
        "actor": {"sub": "alice@example.com", "kind": "human", "on_behalf_of": None},
        "origin": {"addr": "127.0.0.1"},
        "target": {"host": "db.example"},
        "outcome": {"result": "success", "code": None},
        "pci": [],
        "data": {},
    }
    event.update(overrides)
    return event


def test_docs_carry_the_rules_table() -> None:
    assert markdown_table() in DOC.read_text()


def test_every_entry_gets_the_type_defaults_and_the_ledger_protections() -> None:
    got = requirements(_event("session.closed"))
    assert set(ALWAYS) <= set(got) and "8.2.8" in got
    assert list(got) == sorted(got, key=lambda r: [int(p) for p in r.split(".")])


def test_content_adds_requirements() -> None:
    plain = requirements(_event("command.executed", data={"statement": {"kind": "dql"}}))
    assert "7.2.6" not in plain and "10.2.1.7" not in plain and "3.5.1" not in plain
    chd = requirements(_event("command.executed", data={"chd_access": True, "statement": {"kind": "dql"}}))
    assert {"10.2.1.1", "7.2.6"} <= set(chd)
    masked = requirements(_event("command.executed", data={"statement": {"masked_literals": 2}}))
    assert "3.5.1" in masked
    ddl = requirements(_event("command.executed", data={"statement": {"kind": "ddl"}, "privileged": True}))
    assert {"10.2.1.7", "10.2.1.2"} <= set(ddl)
    denied = requirements(_event("command.executed", outcome={"result": "failure", "code": "42501"}))
    assert "10.2.1.4" in denied
    agent = _event(
        "session.opened", actor={"sub": "bot", "kind": "agent", "on_behalf_of": "alice@example.com"}
    )
    assert {"8.2.2", "8.6.1"} <= set(requirements(agent))
    assert "10.7.2" in requirements(_event("ledger.stopped", outcome={"result": "failure", "code": "crash"}))
    assert "10.2.1.4" in requirements(_event("approval.decided", outcome={"result": "blocked", "code": None}))


def test_the_events_own_pci_is_kept() -> None:
    assert "12.10.1" in requirements(_event("config.changed", pci=["12.10.1"]))


def test_10_2_2_completeness() -> None:
    assert missing_10_2_2(_event("auth.failed")) == []
    bare = _event("auth.failed", actor={}, origin={}, target={}, outcome={"result": "maybe"})
    assert missing_10_2_2(bare) == [
        "user identification (actor.sub)",
        "success or failure indication (outcome.result)",
        "origination of event (origin.addr)",
        "identity of affected data or component (target)",
    ]
