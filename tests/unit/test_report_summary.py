"""The evidence pack's summary (pure): counts, approval latency, gaps, 10.2.2 completeness, samples and
the control matrix, folded from ledger entries one at a time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from evidence.api import missing_10_2_2
from reports.summary import SAMPLES_PER_REQUIREMENT, WHAT_CHARS, Summary

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def event(
    etype: str, data: dict[str, Any] | None = None, *, kind: str = "human", **kw: Any
) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": f"id-{etype}",
        "type": etype,
        "time": "2026-12-01T09:00:00Z",
        "actor": {"sub": f"{kind}-1", "kind": kind},
        "origin": {"addr": "10.0.0.7"},
        "target": {"host": "db.internal", "object": None},
        "outcome": {"result": "success"},
        "data": data or {},
    }
    base.update(kw)
    return base


def summary() -> Summary:
    return Summary(complete=lambda e: not missing_10_2_2(e))


def test_counts_latency_gaps_and_completeness() -> None:
    s = summary()
    entries: list[tuple[str, timedelta, tuple[str, ...], dict[str, Any] | None]] = [
        ("session.opened", timedelta(0), ("8.2.2", "8.6.1"), event("session.opened", kind="agent")),
        ("command.executed", timedelta(seconds=1), ("10.2.1.1", "7.2.6"), event("command.executed")),
        (
            "command.blocked",
            timedelta(seconds=2),
            ("10.2.1.4",),
            event("command.blocked", outcome={"result": "blocked"}),
        ),
        (
            "approval.requested",
            timedelta(seconds=3),
            ("7.2.3",),
            event("approval.requested", {"request_id": "r1"}),
        ),
        (
            "approval.decided",
            timedelta(seconds=10),
            ("7.2.3",),
            event("approval.decided", {"request_id": "r1", "decision": "approve", "final": True}),
        ),
        (
            "approval.requested",
            timedelta(seconds=11),
            ("7.2.3",),
            event("approval.requested", {"request_id": "r2"}),
        ),
        (
            "approval.expired",
            timedelta(minutes=5),
            ("7.2.3",),
            event("approval.expired", {"request_id": "r2"}),
        ),
        ("masking.applied", timedelta(minutes=6), ("3.4.1",), event("masking.applied", {"total_values": 12})),
        (
            "audit.gap",
            timedelta(minutes=7),
            ("10.7.2",),
            event("audit.gap", {"first_missing": 5, "last_missing": 7}),
        ),
        ("command.executed", timedelta(days=1), ("10.2.1.1",), event("command.executed", origin=None)),
        ("command.executed", timedelta(days=1, seconds=1), ("10.2.1.1",), None),  # payload pruned
    ]
    for index, (etype, offset, pci, payload) in enumerate(entries):
        s.add(index, etype, T0 + offset, pci, payload)
    assert s.events == 11 and s.pruned == 1 and s.incomplete == 1
    assert s.by_type["command.executed"] == 3 and s.per_day == {"2026-12-01": 9, "2026-12-02": 2}
    assert s.identities["agent"] == {"agent-1"} and s.identities["human"] == {"human-1"}
    assert dict(s.approvals) == {"requested": 2, "approved": 1, "expired": 1}
    assert s.approval_latency == {7.0: 1} and s.latency_percentile(50) == 7.0
    assert s.latency_histogram() == {"< 10 s": 1, "10 s to 1 min": 0, "1 to 5 min": 0, "5 to 15 min": 0,
                                     "15 min to 1 h": 0, ">= 1 h": 0}  # fmt: skip
    assert s.gaps == [(5, 7)] and s.masked_values == 12
    assert round(s.completeness, 2) == 90.0  # 9 of the 10 inspected
    assert [x.index for x in s.samples["10.2.1.1"]] == [1, 9]  # not 10: a pruned payload cannot be proven
    assert [(d.request_id, d.decision, d.latency_s) for d in s.register] == [
        ("r1", "approve", 7.0),
        ("r2", "expired", 289.0),
    ]
    assert [(f.index, f.type) for f in s.exceptions] == [
        (2, "command.blocked"),
        (6, "approval.expired"),
        (8, "audit.gap"),
    ]
    assert s.sessions == 1


def test_samples_are_bounded() -> None:
    s = summary()
    for i in range(100):
        s.add(i, "command.executed", T0, ("10.2.1.1",), event("command.executed"))
    assert len(s.samples["10.2.1.1"]) == SAMPLES_PER_REQUIREMENT


def test_a_sample_says_who_and_what_in_one_short_line() -> None:
    s = summary()
    long = "SELECT   pan\n  FROM cards WHERE note = '" + "x" * 300 + "'"
    agent = {"sub": "agent-7", "kind": "agent", "on_behalf_of": "alice@example.com"}
    s.add(
        0,
        "command.executed",
        T0,
        ("10.2.1.1",),
        event("command.executed", {"statement": {"text": long}}, actor=agent),
    )
    s.add(1, "command.blocked", T0, ("10.2.1.4",), event("command.blocked", {"reason": "rule no-drop"}))
    (ran,) = s.samples["10.2.1.1"]
    assert ran.who == "agent-7 → alice@example.com" and ran.what.startswith("SELECT pan FROM cards WHERE")
    assert len(ran.what) == WHAT_CHARS and ran.what.endswith("…")
    assert s.samples["10.2.1.4"][0].what == "rule no-drop"


def test_latency_percentiles_are_nearest_rank_over_a_bounded_histogram() -> None:
    s = summary()
    for i in range(1, 101):  # 1.0 s .. 100.0 s, each once
        s.add(2 * i, "approval.requested", T0, (), event("approval.requested", {"request_id": f"r{i}"}))
        decided = event("approval.decided", {"request_id": f"r{i}", "decision": "approve", "final": True})
        s.add(2 * i + 1, "approval.decided", T0 + timedelta(seconds=i), (), decided)
    assert s.latency_percentile(50) == 50.0 and s.latency_percentile(95) == 95.0
    assert s.latency_percentile(100) == 100.0 and summary().latency_percentile(50) is None
    histogram = s.latency_histogram()
    assert histogram["< 10 s"] == 9 and histogram["10 s to 1 min"] == 50 and histogram["1 to 5 min"] == 41


def test_the_control_matrix() -> None:
    s = summary()
    s.add(0, "command.executed", T0, ("10.2.1.1", "10.2.2"), event("command.executed"))
    rows = {r.control.requirement: r for r in s.matrix(integrity_verified=True, oldest_available=T0)}
    assert rows["10.2.1.1"].status == "evidenced" and rows["10.2.1.1"].count == 1
    assert rows["10.2.1.7"].status == "no activity"
    assert rows["10.2.2"].status == "met" and "100.00%" in rows["10.2.2"].note
    assert (
        rows["10.3.2"].status == "met" and rows["10.7.2"].status == "met" and rows["10.5.1"].status == "met"
    )
    s.add(1, "audit.gap", T0, ("10.7.2",), event("audit.gap", {"first_missing": 1, "last_missing": 1}))
    s.add(2, "command.executed", T0 - timedelta(days=30), ("10.2.1.1",), None)  # pruned, a month old
    s.add(3, "command.executed", T0, (), event("command.executed", target=None))  # no target: incomplete
    rows = {r.control.requirement: r for r in s.matrix(integrity_verified=False, oldest_available=T0)}
    assert rows["10.7.2"].status == "attention" and rows["10.3.2"].note.startswith("NOT VERIFIED")
    assert rows["10.5.1"].status == "attention" and rows["10.2.2"].status == "attention"
    assert {r.status for r in summary().matrix(integrity_verified=None, oldest_available=None)} >= {
        "not assessed"
    }
