"""The result budget: which row first breaks which limit, and what a statement's end resets."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.result_limits import Breach, ResultBudget
from pcigate.config.models import ResultLimit


def test_no_budget_without_a_bound() -> None:
    assert ResultBudget.for_kind({}, "agent") is None
    assert ResultBudget.for_kind({"agent": ResultLimit()}, "agent") is None
    assert ResultBudget.for_kind({"agent": ResultLimit(statement_rows=5)}, "human") is None


def test_statement_rows_admit_up_to_the_limit_then_reset() -> None:
    budget = ResultBudget.for_kind({"agent": ResultLimit(statement_rows=3)}, "agent")
    assert budget is not None
    assert [budget.admit(10) for _ in range(3)] == [None, None, None]
    breach = budget.admit(10)
    assert breach == Breach("statement", "rows", 3, "agent")
    assert breach.label == "results.agent.statement_rows=3"
    assert breach.describe() == "3 rows per statement for agent identities"
    assert budget.admit(10) is not None  # still over: a refused row is not counted, the rest still is
    budget.statement_ended()
    assert budget.admit(10) is None
    assert (budget.total_rows, budget.total_bytes) == (4, 40)


def test_a_session_limit_wins_over_a_statement_limit() -> None:
    budget = ResultBudget.for_kind(
        {"service": ResultLimit(statement_bytes=100, session_bytes=150)}, "service"
    )
    assert budget is not None
    assert budget.admit(90) is None
    budget.statement_ended()
    assert budget.admit(90) == Breach("session", "bytes", 150, "service")


@given(
    sizes=st.lists(st.integers(min_value=5, max_value=500), max_size=60),
    rows=st.integers(min_value=1, max_value=20),
    nbytes=st.integers(min_value=1, max_value=5000),
)
def test_what_is_admitted_never_passes_a_limit(sizes: list[int], rows: int, nbytes: int) -> None:
    budget = ResultBudget(ResultLimit(statement_rows=rows, session_bytes=nbytes), "agent")
    admitted: list[int] = []
    for size in sizes:  # the session stops asking at the first refusal: the statement is cut there
        if budget.admit(size) is not None:
            break
        admitted.append(size)
    assert len(admitted) <= rows and sum(admitted) <= nbytes
    # the first refusal is exactly where the next row would have passed a limit
    if len(admitted) < len(sizes):
        nxt = sizes[len(admitted)]
        assert len(admitted) + 1 > rows or sum(admitted) + nxt > nbytes


def test_an_approved_statement_is_bound_by_the_session_limits_only() -> None:
    budget = ResultBudget(ResultLimit(statement_rows=2, session_rows=5), "agent")
    assert budget.admit(1) is None and budget.admit(1) is None
    assert budget.admit(1) is not None
    budget.lift_statement_limits()
    assert [budget.admit(1) for _ in range(3)] == [None, None, None]
    assert budget.admit(1) == Breach("session", "rows", 5, "agent")
    budget.statement_ended()  # the next statement is bound again
    budget = ResultBudget(ResultLimit(statement_rows=1), "agent")
    budget.lift_statement_limits()
    budget.statement_ended()
    assert budget.admit(1) is None and budget.admit(1) is not None


@given(
    runs=st.lists(st.lists(st.integers(min_value=5, max_value=300), min_size=1, max_size=20), max_size=20),
    rows=st.integers(min_value=1, max_value=50),
    nbytes=st.integers(min_value=1, max_value=8000),
    session=st.booleans(),
)
def test_a_run_is_admitted_whole_exactly_when_row_by_row_would_admit_it(
    runs: list[list[int]], rows: int, nbytes: int, session: bool
) -> None:
    limit = (
        ResultLimit(session_rows=rows, session_bytes=nbytes)
        if session
        else ResultLimit(statement_rows=rows, statement_bytes=nbytes)
    )
    whole, single = ResultBudget(limit, "agent"), ResultBudget(limit, "agent")
    for run in runs:
        fits = whole.admit_run(len(run), sum(run))
        each = [single.admit(size) for size in run]
        assert fits == all(b is None for b in each)
        if not fits:
            break
        assert (whole.total_rows, whole.total_bytes) == (single.total_rows, single.total_bytes)
        whole.statement_ended()
        single.statement_ended()
