"""The approval round-trip benchmark's pure parts: percentiles, the summary table and the verdict against
issue 6's aims. No I/O: the harness is exercised by running the bench."""

from __future__ import annotations

import pytest

from bench import approval_roundtrip as ar


def test_nearest_rank_percentiles() -> None:
    values = [float(v) for v in range(1, 201)]  # 1..200
    assert ar.percentile(values, 50) == 100.0
    assert ar.percentile(values, 99) == 198.0
    assert ar.percentile(values, 100) == 200.0
    assert ar.percentile([7.0], 99) == 7.0
    assert ar.percentile([3.0, 1.0, 2.0], 0) == 1.0  # unsorted input, lowest rank is the minimum
    with pytest.raises(ValueError, match="no values"):
        ar.percentile([], 50)


def test_summary_is_in_milliseconds_and_the_table_shows_it() -> None:
    row = ar.summarize("decision sent -> client has result", [0.001 * i for i in range(1, 101)])
    assert (row.count, row.p50_ms, row.p99_ms, row.max_ms) == (
        100,
        pytest.approx(50),
        pytest.approx(99),
        pytest.approx(100),
    )
    table = ar.format_table([row])
    assert table.splitlines()[0].split() == [
        "measure",
        "n",
        "p50",
        "ms",
        "p90",
        "ms",
        "p99",
        "ms",
        "max",
        "ms",
    ]
    assert "decision sent -> client has result" in table and "50.00" in table


def test_the_verdict_names_each_aim() -> None:
    fast = ar.Summary("rt", 200, 4.0, 6.0, 12.0, 30.0)
    assert ar.verdict(fast) == "aim p50 <= 20 ms: met (4.00); aim p99 <= 100 ms: met (12.00)"
    slow = ar.Summary("rt", 200, 25.0, 60.0, 150.0, 300.0)
    assert ar.verdict(slow).count("NOT met") == 2
