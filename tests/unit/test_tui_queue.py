"""The console's queue model (pure): what is pending, what left and how, filter, sort, formatting."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from schemas.approvals import Requester
from tests.unit.test_approvals_record import ISS, NOW, STATEMENT, request
from tui.queue import Queue, duration, entry, one_line, requester_label


def rid(n: int) -> str:
    return f"019300a0-0000-7000-8000-{n:012d}"


def test_new_updated_left_and_traces() -> None:
    q = Queue()
    first = request(id=rid(1))
    assert q.update(first, NOW) == "new"
    assert q.update(first, NOW) == "unchanged"
    counted = first.model_copy(update={"quorum": 2})
    assert q.update(counted, NOW) == "updated" and q.get(first.id) == counted
    assert q.update(counted.model_copy(update={"state": "approved"}), NOW) == "left"
    assert len(q) == 0
    (trace,) = q.traces
    assert (trace.state, trace.request.id) == ("approved", first.id)
    # a late duplicate of the final record, or of an older pending one, does not bring it back as new
    assert q.update(counted.model_copy(update={"state": "approved"}), NOW) == "unchanged"
    assert q.update(first, NOW) == "unchanged" and len(q) == 1


def test_expiry_is_local_and_traces_fade() -> None:
    q = Queue(trace_for=timedelta(minutes=1))
    soon = request(id=rid(1), expires=NOW + timedelta(seconds=10))
    later = request(id=rid(2), expires=NOW + timedelta(minutes=10))
    for r in (soon, later):
        q.update(r, NOW)
    assert q.expire(NOW + timedelta(seconds=10)) == [soon.id]
    assert [t.state for t in q.traces] == ["expired"]
    assert q.expire(NOW + timedelta(minutes=2)) == []
    assert q.traces == []
    # a record that arrives already past its expiry (its gateway is gone) is not pending
    assert q.update(request(id=rid(3), expires=NOW - timedelta(seconds=1)), NOW) == "unchanged"


def test_filter_and_sorts() -> None:
    q = Queue()
    a = request(id=rid(1), created=NOW, expires=NOW + timedelta(minutes=9), connection="reporting")
    b = request(
        id=rid(2),
        created=NOW + timedelta(seconds=5),
        expires=NOW + timedelta(minutes=3),
        requester=Requester(sub="carol@example.com", iss=ISS, kind="human"),
    )
    for r in (a, b):
        q.update(r, NOW)
    assert [r.id for r in q.rows()] == [b.id, a.id]  # soonest expiry first
    assert q.next_sort() == "age" and [r.id for r in q.rows()] == [a.id, b.id]
    assert q.next_sort() == "requester" and [r.id for r in q.rows()] == [a.id, b.id]  # agent-7 < carol
    assert q.next_sort() == "connection" and [r.id for r in q.rows()] == [b.id, a.id]
    assert q.next_sort() == "expires"
    q.filter = "CAROL"
    assert [r.id for r in q.rows()] == [b.id]
    q.filter = "reporting"
    assert [r.id for r in q.rows()] == [a.id]
    q.filter = "update cards"  # the masked statement's text
    assert len(q.rows()) == 2


def test_formatting() -> None:
    assert [duration(s) for s in (-3, 0, 59, 60, 245, 3600, 7620, 90000)] == [
        "0s", "0s", "59s", "1m00s", "4m05s", "1h00m", "2h07m", "1d01h",
    ]  # fmt: skip
    assert one_line("UPDATE cards\n   SET x = ?\tWHERE y = ?", 100) == "UPDATE cards SET x = ? WHERE y = ?"
    assert one_line("SELECT " + "x, " * 50, 20) == "SELECT x, x, x, x, …"
    assert requester_label(request()) == "⚙ agent-7 → alice"
    person = request(requester=Requester(sub="carol", iss=ISS, name="Carol", kind="human"))
    assert requester_label(person) == "☺ Carol"
    assert STATEMENT.text in request().statement.text


@given(
    st.lists(st.tuples(st.integers(0, 20), st.sampled_from(["pending", "approved", "denied"])), max_size=60)
)
def test_the_queue_holds_exactly_the_latest_pending_records(writes: list[tuple[int, str]]) -> None:
    q = Queue()
    latest: dict[str, str] = {}
    for n, state in writes:
        r = request(id=rid(n), state=state)
        q.update(r, NOW)
        latest[r.id] = state
    assert {r.id for r in q.rows()} == {i for i, s in latest.items() if s == "pending"}


def test_an_entry_is_two_lines_that_fit() -> None:
    text = entry(request(), NOW + timedelta(seconds=30), 80)
    first, second = text.plain.split("\n")
    assert first.split() == ["4m30s", "30s", "0/1", "⚙", "agent-7", "→", "alice", "payments", "cards-writes"]
    assert second.strip() == STATEMENT.text and len(second) <= 80
    long = request(statement=STATEMENT.model_copy(update={"text": "SELECT " + "col, " * 40 + "x FROM t"}))
    assert entry(long, NOW, 60).plain.split("\n")[1].endswith("…")
