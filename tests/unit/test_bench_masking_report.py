"""The masking SELECT benchmark's pure parts: PAN classification, byte and CPU counters, medians, ratios,
the table, the floor verdict and the JSON document. No I/O: the harness is exercised by running the bench."""

from __future__ import annotations

import json
import struct

import pytest

from bench import masking_select as ms
from pcigate.devstack.testcards import TEST_PANS

ALL_PANS = [p for group in TEST_PANS.values() for p in group]


# ----------------------------------------------------------------------------------------- counters


def test_tcp_bytes_received_reads_the_u64_at_offset_128() -> None:
    info = bytearray(232)
    struct.pack_into("=Q", info, 120, 7)  # tcpi_bytes_acked, next to it: must not be read
    struct.pack_into("=Q", info, 128, 87_654_321_012)
    assert ms.tcp_bytes_received(bytes(info)) == 87_654_321_012


def test_tcp_bytes_received_of_an_old_kernels_short_buffer_is_none() -> None:
    assert ms.tcp_bytes_received(b"\x00" * 104) is None
    assert ms.tcp_bytes_received(b"") is None


# a real line, with a process name holding a space and a parenthesis
STAT = (
    "7898 (python -m (gw)) S 1 7898 7898 0 -1 4194560 31234 0 0 0 812 95 0 0 20 0 3 0 123456 "
    "178016256 16284 18446744073709551615 1 1 0 0 0 0 0 16781312 16386 0 0 0 17 1 0 0 0 0 0"
)


def test_proc_stat_cpu_adds_utime_and_stime() -> None:
    assert ms.proc_stat_cpu(STAT, 100) == pytest.approx(9.07)


def test_proc_stat_ppid() -> None:
    assert ms.proc_stat_ppid(STAT) == 1


# ----------------------------------------------------------------------------------------- masking check


@pytest.mark.parametrize("pan", ALL_PANS)
def test_every_published_test_number_is_clear(pan: str) -> None:
    assert ms.classify_pan(pan) == "clear"


@pytest.mark.parametrize(
    "value",
    [
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "card 4242424242424242 on file",
        "x5555555555554444",
        "0004111111111111111",  # glued to other digits
    ],
)
def test_a_pan_in_a_longer_value_is_clear(value: str) -> None:
    assert ms.classify_pan(value) == "clear"


@pytest.mark.parametrize(
    "value",
    [
        "411111******1111",
        "************1111",
        "378282*****0005",
        "tok_8f1c2a",
        "",
        None,
        "4111111111111112",  # fails Luhn, not a published number
        "4000123412341239",  # a format-preserving token that fails Luhn
        "123456",
    ],
)
def test_masked_truncated_tokenized_or_nulled_is_masked(value: str | None) -> None:
    assert ms.classify_pan(value) == "masked"


def test_scrub_hides_long_digit_runs_only() -> None:
    assert ms.scrub('invalid input: "4111 1111 1111 1111" in row 12') == 'invalid input: "[digits]" in row 12'
    assert ms.scrub("COPY refused (42501); use SELECT") == "COPY refused (42501); use SELECT"


def test_pan_shape_prints_no_digit() -> None:
    assert ms.pan_shape("411111******1111") == "######******####"
    assert ms.pan_shape(None) == "NULL"
    assert not any(ch.isdigit() for ch in ms.pan_shape("4111111111111111"))


def test_masking_status() -> None:
    masked = ms.MaskCheck("psql", "masked", "######******####")
    clear = ms.MaskCheck("asyncpg", "clear")
    error = ms.MaskCheck("copy", "error", detail="InsufficientPrivilegeError 42501")
    assert ms.masking_status([masked, masked]) == "active"
    assert ms.masking_status([masked, error]) == "active"
    assert ms.masking_status([clear, clear, error]) == "not active"
    assert ms.masking_status([masked, clear]) == "partial"
    assert ms.masking_status([error]) == "unknown"
    assert ms.masking_status([]) == "unknown"


def test_masking_lines_warn_prominently_unless_active() -> None:
    checks = [ms.MaskCheck("psql", "clear"), ms.MaskCheck("copy", "clear")]
    lines = ms.masking_lines("not active", checks)
    assert lines[0] == lines[-1] and set(lines[0]) == {"!"}
    assert any("masking: NOT ACTIVE (pan returned in clear)" in line for line in lines)
    assert len({len(line) for line in lines}) == 1  # a box
    active = ms.masking_lines("active", [ms.MaskCheck("psql", "masked", "######******####")])
    assert active == ["masking: ACTIVE (pan masked: psql masked (######******####))"]
    assert "UNKNOWN" in "\n".join(ms.masking_lines("unknown", []))
    refused = ms.MaskCheck("copy", "error", detail="InsufficientPrivilegeError 42501: pcigate: refused")
    text = "\n".join(ms.masking_lines("unknown", [refused]))
    assert "copy error (InsufficientPrivilegeError 42501)" in text and "refused" not in text


# ----------------------------------------------------------------------------------------- summary


def _s(
    rnd: int, client: str, target: str, secs: float, nbytes: int | None, table: str = ms.CARDS
) -> ms.Sample:
    return ms.Sample(
        rnd,
        client,
        table,
        target,
        secs,
        nbytes,
        1000,
        client_cpu=secs / 2,
        server_cpu=None if client == "psql" else 0.4,
        gateway_cpu=0.3 if target == "gateway" else 0.0,
    )


SAMPLES = [
    _s(1, "discard", "direct", 1.0, 80_000_000),
    _s(1, "discard", "gateway", 1.2, 80_000_000),
    _s(2, "discard", "gateway", 1.4, 80_000_002),
    _s(2, "discard", "direct", 1.1, 80_000_000),
    _s(3, "discard", "direct", 0.9, 80_000_000),
    _s(3, "discard", "gateway", 1.3, 80_000_004),
    _s(1, "psql", "direct", 2.0, None),
    _s(1, "psql", "gateway", 3.0, None),
    _s(1, "copy", "direct", 0.5, 64_000_000, ms.ORDERS),
]


def test_summarize_medians_ratio_and_mbps() -> None:
    rows = ms.summarize(SAMPLES, ms.CLIENTS, ms.TABLES)
    discard = next(r for r in rows if r.client == "discard")
    assert discard.runs == 3
    assert discard.direct_s == pytest.approx(1.0)
    assert discard.gateway_s == pytest.approx(1.3)
    # the rounds' own ratios: 1.2/1.0, 1.4/1.1, 1.3/0.9
    assert discard.ratio == pytest.approx(1.4 / 1.1)
    assert discard.ratio_min == pytest.approx(1.2)
    assert discard.ratio_max == pytest.approx(1.3 / 0.9)
    assert discard.ratio_of_medians == pytest.approx(1.3)
    assert discard.direct_spread == pytest.approx(0.1)  # (1.1 - 0.9) / 2 / 1.0
    assert discard.bytes_gateway == 80_000_002
    assert discard.mbps_direct == pytest.approx(80.0)
    assert discard.mbps_gateway == pytest.approx(80_000_002 / 1.3 / 1e6)
    assert discard.client_cpu_direct == pytest.approx(0.5)
    assert discard.client_cpu_gateway == pytest.approx(0.65)
    assert discard.server_cpu_gateway == pytest.approx(0.4)
    assert discard.gateway_cpu == pytest.approx(0.3)


def test_summarize_pairs_only_rounds_where_both_targets_ran() -> None:
    samples = [
        _s(1, "copy", "direct", 1.0, None),
        _s(2, "copy", "direct", 10.0, None),  # its gateway run failed: no pair
        _s(1, "copy", "gateway", 1.5, None),
        _s(3, "copy", "gateway", 9.0, None),  # no direct run in round 3
    ]
    (row,) = ms.summarize(samples, ["copy"], [ms.CARDS])
    assert row.runs == 1 and row.ratio == pytest.approx(1.5)
    assert row.ratio_of_medians == pytest.approx(5.25 / 5.5)


def test_summarize_psql_borrows_the_discard_clients_bytes() -> None:
    rows = ms.summarize(SAMPLES, ms.CLIENTS, ms.TABLES)
    psql = next(r for r in rows if r.client == "psql")
    assert psql.bytes_direct == 80_000_000
    assert psql.mbps_direct == pytest.approx(40.0)
    assert psql.ratio == pytest.approx(1.5)
    assert psql.server_cpu_direct is None
    assert ms.summarize(SAMPLES, ["psql"], [ms.CARDS], bytes_from={})[0].mbps_direct is None


def test_summarize_takes_bytes_but_no_time_from_the_warm_up() -> None:
    samples = [
        _s(0, "discard", "direct", 99.0, 70_000_000),
        _s(0, "discard", "gateway", 99.0, 70_000_001),
        _s(1, "psql", "direct", 2.0, None),
        _s(1, "psql", "gateway", 2.2, None),
    ]
    rows = ms.summarize(samples, ["psql", "discard"], [ms.CARDS])
    assert [r.client for r in rows] == ["psql"]  # discard ran in no timed round
    assert rows[0].bytes_gateway == 70_000_001 and rows[0].mbps_direct == pytest.approx(35.0)
    assert rows[0].ratio == pytest.approx(1.1)


def test_select_sql() -> None:
    assert ms.select_sql(ms.CARDS) == "SELECT * FROM public.bench_cards"
    assert ms.select_sql(ms.ORDERS, named=True, tail=" LIMIT 1") == (
        "SELECT order_id, customer, amount, status, created_at FROM public.bench_orders LIMIT 1"
    )


def test_summarize_one_sided_and_missing_cells() -> None:
    rows = ms.summarize(SAMPLES, ms.CLIENTS, ms.TABLES)
    assert [(r.client, r.table) for r in rows] == [
        ("psql", ms.CARDS),
        ("discard", ms.CARDS),
        ("copy", ms.ORDERS),
    ]
    copy = rows[-1]
    assert copy.gateway_s is None and copy.ratio is None and copy.runs == 0 and copy.gateway_cpu is None
    assert copy.ratio_min is None and copy.ratio_of_medians is None


def test_format_table() -> None:
    table = ms.format_table(ms.summarize(SAMPLES, ms.CLIENTS, ms.TABLES))
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["client", "table", "direct", "s"]
    assert lines[0].endswith("CPU s: client  server  gateway")
    discard = next(line for line in lines if line.startswith("discard")).split()
    assert discard[2:9] == ["1.000", "±10%", "1.300", "±8%", "1.27", "1.20-1.44", "80"]
    assert discard[-4:] == ["80.0", "0.65", "0.40", "0.30"]
    copy = next(line for line in lines if line.startswith("copy"))
    assert copy.split()[4] == "-"  # gateway seconds
    assert ms.format_table([]).startswith("client")


# ----------------------------------------------------------------------------------------- verdict


def _row(client: str, ratio: float | None, table: str = ms.CARDS) -> ms.Row:
    return ms.Row(
        client=client,
        table=table,
        runs=3,
        direct_s=1.0,
        direct_spread=0.0,
        gateway_s=ratio,
        gateway_spread=0.0,
        ratio=ratio,
        ratio_min=ratio,
        ratio_max=ratio,
        bytes_direct=None,
        bytes_gateway=None,
        mbps_direct=None,
        mbps_gateway=None,
    )


def test_floor_met_everywhere_with_masking_passes() -> None:
    rows = [_row("psql", 1.1), _row("copy", 1.9)]
    v = ms.floor_verdict(rows, ["psql", "copy"], "active")
    assert v.status == "met" and v.passed
    assert [c.aim_ok for c in v.checks] == [True, False]


def test_floor_met_without_masking_does_not_pass() -> None:
    v = ms.floor_verdict([_row("psql", 1.1)], ["psql"], "not active")
    assert v.status == "met" and not v.passed
    assert not ms.floor_verdict([_row("psql", 1.1)], ["psql"], "partial").passed


def test_one_client_above_the_floor_fails() -> None:
    v = ms.floor_verdict([_row("psql", 1.1), _row("copy", 2.01)], ["psql", "copy"], "active")
    assert v.status == "not met" and not v.passed


def test_a_client_not_measured_fails_closed() -> None:
    v = ms.floor_verdict([_row("psql", 1.1), _row("copy", None)], ["psql", "copy"], "active")
    assert v.status == "not measured"
    assert ms.floor_verdict([_row("psql", 1.1)], ["psql", "copy"], "active").status == "not measured"
    assert ms.floor_verdict([], [], "active").status == "not measured"


def test_a_measured_miss_is_not_met_even_with_a_gap() -> None:
    v = ms.floor_verdict([_row("psql", 5.0), _row("copy", None)], ["psql", "copy"], "active")
    assert v.status == "not met"


def test_the_orders_table_does_not_decide_the_floor() -> None:
    rows = [_row("psql", 1.1), _row("psql", 5.0, ms.ORDERS)]
    assert ms.floor_verdict(rows, ["psql"], "active").status == "met"


def test_format_verdict() -> None:
    rows = [_row("psql", 1.1), _row("copy", 2.5), _row("psql", 1.02, ms.ORDERS)]
    lines = ms.format_verdict(ms.floor_verdict(rows, ["psql", "copy", "asyncpg"], "unknown"), rows)
    text = "\n".join(lines)
    assert "1.10  ok, aim met" in text
    assert "2.50  ABOVE FLOOR, above aim" in text
    assert "asyncpg  not measured" in text
    assert "no card column, no candidate (should cost next to nothing): psql 1.02" in text
    assert lines[-1] == "verdict: FLOOR NOT MET -- but masking UNKNOWN: these are not figures with masking"
    gap = ms.format_verdict(ms.floor_verdict(rows[:1], ["psql", "asyncpg"], "unknown"), rows[:1])
    assert gap[-1] == "verdict: FLOOR NOT MEASURED"
    met = ms.format_verdict(ms.floor_verdict(rows[:1], ["psql"], "not active"), rows[:1])
    assert met[-1].startswith("verdict: FLOOR MET -- but masking NOT ACTIVE")
    assert ms.format_verdict(ms.floor_verdict(rows[:1], ["psql"], "active"), rows[:1])[-1] == (
        "verdict: FLOOR MET"
    )


# ----------------------------------------------------------------------------------------- document, args


def test_results_document_is_json_and_holds_no_secret_or_card_value() -> None:
    rows = ms.summarize(SAMPLES, ms.CLIENTS, ms.TABLES)
    checks = [ms.MaskCheck("psql", "clear"), ms.MaskCheck("copy", "masked", "######******####")]
    verdict = ms.floor_verdict(rows, ["discard"], ms.masking_status(checks))
    doc = ms.results_document({"nproc": 2}, {"rows": 1_000_000}, SAMPLES, rows, verdict, checks, ["a note"])
    text = json.dumps(doc)
    assert json.loads(text)["floor"]["status"] == "met"
    assert doc["floor"]["passed"] is False
    assert doc["masking"]["status"] == "partial"
    assert len(doc["runs"]) == len(SAMPLES)
    assert not any(pan in text for pan in ALL_PANS)
    assert "password" not in text


def test_format_machine() -> None:
    line = ms.format_machine({"nproc": 2, "postgresql": "18.6", "source": "abc1234"})
    assert line.startswith("machine: 2 CPUs") and "PostgreSQL 18.6" in line and "abc1234" in line


def test_parse_args_defaults_and_quick() -> None:
    full = ms.parse_args([])
    assert (full.rows, full.rounds) == (ms.FULL_ROWS, ms.DEFAULT_ROUNDS)
    assert full.client_list == list(ms.CLIENTS) and full.table_list == list(ms.TABLES)
    quick = ms.parse_args(["--quick"])
    assert (quick.rows, quick.rounds) == (ms.QUICK_ROWS, 1)
    assert ms.parse_args(["--quick", "--rounds", "2"]).rounds == 2
    picked = ms.parse_args(["--clients", "copy,psql", "--tables", "orders"])
    assert picked.client_list == ["psql", "copy"] and picked.table_list == [ms.ORDERS]


@pytest.mark.parametrize("argv", [["--clients", "jdbc"], ["--tables", "users"], ["--rows", "0"]])
def test_parse_args_refuses(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        ms.parse_args(argv)


def test_target_order_alternates_from_cell_to_cell_and_round_to_round() -> None:
    firsts = [ms.rotated(ms.TARGETS, rnd + cell)[0] for rnd in (1, 2) for cell in (1, 2)]
    assert firsts == ["direct", "gateway", "gateway", "direct"]


def test_a_cell_far_above_the_floor_is_settled() -> None:
    assert ms.settled(1.0, 10.5)
    assert not ms.settled(1.0, 9.9)
    assert not ms.settled(None, 50.0)
    assert not ms.settled(1.0, None)
