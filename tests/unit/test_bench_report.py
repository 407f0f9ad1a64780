"""The gateway benchmark's report: pgbench output parsing, medians, ratios, the table, the floor verdict and
the recording overhead (gateway, recording on, against gateway-norec).

The pgbench outputs below are real runs captured on the dev stack (pgbench 15 from Debian against the
embedded PostgreSQL 18, and the embedded pgbench 18), so a format change in pgbench shows up here first.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from bench import pgbench_gateway as pb

C8_SIMPLE = """\
pgbench (15.20 (Debian 15.20-0+deb12u1), server 18.6)
transaction type: <builtin: select only>
scaling factor: 10
query mode: simple
number of clients: 8
number of threads: 2
maximum number of tries: 1
duration: 3 s
number of transactions actually processed: 43145
number of failed transactions: 0 (0.000%)
latency average = 0.550 ms
initial connection time = 53.860 ms
tps = 14544.354973 (without initial connection time)
"""

C1_SIMPLE = """\
pgbench (15.20 (Debian 15.20-0+deb12u1), server 18.6)
transaction type: <builtin: select only>
scaling factor: 10
query mode: simple
number of clients: 1
number of threads: 1
maximum number of tries: 1
duration: 3 s
number of transactions actually processed: 37391
number of failed transactions: 0 (0.000%)
latency average = 0.080 ms
initial connection time = 6.845 ms
tps = 12491.639612 (without initial connection time)
"""

PG18_C8_PREPARED = """\
pgbench (18.6)
transaction type: <builtin: select only>
scaling factor: 10
query mode: prepared
number of clients: 8
number of threads: 2
maximum number of tries: 1
duration: 3 s
number of transactions actually processed: 98798
number of failed transactions: 0 (0.000%)
latency average = 0.239 ms
initial connection time = 60.770 ms
tps = 33408.549177 (without initial connection time)
"""

# Clients aborted mid-run (SELECT on pgbench_branches granted, on pgbench_accounts not); exit code 2.
ABORTED = """\
pgbench (15.20 (Debian 15.20-0+deb12u1), server 18.6)
pgbench: error: client 1 script 0 aborted in command 1 query 0: ERROR:  permission denied for table pgbench_accounts
pgbench: error: client 0 script 0 aborted in command 1 query 0: ERROR:  permission denied for table pgbench_accounts
transaction type: <builtin: select only>
scaling factor: 10
query mode: simple
number of clients: 2
number of threads: 1
maximum number of tries: 1
duration: 2 s
number of transactions actually processed: 0
number of failed transactions: 0 (NaN%)
pgbench: error: Run was aborted; the above results are incomplete.
"""  # noqa: E501

DENIED_AT_START = """\
pgbench (15.20 (Debian 15.20-0+deb12u1), server 18.6)
pgbench: error: could not count number of branches: ERROR:  permission denied for table pgbench_branches
"""

CONNECTION_REFUSED = """\
pgbench: error: connection to server at "127.0.0.1", port 1 failed: Connection refused
\tIs the server running on that host and accepting TCP/IP connections?
pgbench: error: could not create connection for setup
"""


# --------------------------------------------------------------------------------------------- parsing


def test_parse_eight_client_run() -> None:
    r = pb.parse_pgbench(C8_SIMPLE)
    assert r == pb.PgbenchResult(tps=14544.354973, latency_ms=0.550, transactions=43145, failed=0)


def test_parse_one_client_run_gives_latency() -> None:
    r = pb.parse_pgbench(C1_SIMPLE)
    assert r.latency_ms == 0.080
    assert r.tps == pytest.approx(12491.639612)


def test_parse_embedded_pgbench_18() -> None:
    r = pb.parse_pgbench(PG18_C8_PREPARED)
    assert (r.tps, r.latency_ms, r.transactions) == (33408.549177, 0.239, 98798)


def test_old_format_prefers_the_figure_without_connection_time() -> None:
    # pgbench <= 13 printed two tps lines (shape from its documentation, not a captured run).
    text = C8_SIMPLE.replace(
        "tps = 14544.354973 (without initial connection time)\n",
        "tps = 14000.1 (including connections establishing)\n"
        "tps = 14544.354973 (excluding connections establishing)\n",
    ).replace("number of failed transactions: 0 (0.000%)\n", "")
    assert pb.parse_pgbench(text).tps == 14544.354973


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (ABORTED, "permission denied for table pgbench_accounts"),
        (DENIED_AT_START, "could not count number of branches"),
        (CONNECTION_REFUSED, "Connection refused"),
        ("", "no tps/latency lines"),
        (C8_SIMPLE.replace("processed: 43145", "processed: 0"), "no transactions"),
        (C8_SIMPLE.replace("transactions: 0 (0.000%)", "transactions: 3 (0.007%)"), "3 failed transactions"),
        (C8_SIMPLE.replace("latency average = 0.550 ms\n", ""), "no tps/latency lines"),
    ],
)
def test_unusable_runs_are_rejected(text: str, reason: str) -> None:
    with pytest.raises(pb.PgbenchOutputError, match=reason):
        pb.parse_pgbench(text)


def test_server_version_from_banner() -> None:
    assert pb.parse_server_version(C8_SIMPLE) == "18.6"
    assert pb.parse_server_version(PG18_C8_PREPARED) == "18.6"
    assert pb.parse_server_version(CONNECTION_REFUSED) is None


# ------------------------------------------------------------------------------------- medians, order


def test_median() -> None:
    assert pb.median([3.0, 1.0, 2.0]) == 2.0
    assert pb.median([4.0, 1.0, 2.0, 3.0]) == 2.5
    with pytest.raises(ValueError, match="no values"):
        pb.median([])


def test_rotation_gives_every_target_each_position() -> None:
    targets = ["direct", "pgbouncer", "gateway"]
    firsts = [pb.rotated(targets, r)[0] for r in range(3)]
    assert sorted(firsts) == sorted(targets)
    assert pb.rotated(targets, 4) == ["pgbouncer", "gateway", "direct"]
    assert pb.rotated([], 2) == []


# --------------------------------------------------------------------------------------------- summary


def _samples(
    tps: dict[tuple[str, str], list[float]], lat: dict[tuple[str, str], list[float]]
) -> list[pb.Sample]:
    out = []
    for (mode, target), values in tps.items():
        out += [pb.Sample(i + 1, mode, target, 8, v, 0.5) for i, v in enumerate(values)]
    for (mode, target), values in lat.items():
        out += [pb.Sample(i + 1, mode, target, 1, 1000.0 / v, v) for i, v in enumerate(values)]
    return out


SAMPLES = _samples(
    {
        ("simple", "direct"): [20000.0, 18000.0, 22000.0],
        ("simple", "pgbouncer"): [13000.0, 12000.0, 12500.0],
        ("simple", "gateway"): [10000.0, 9000.0, 11000.0],
        ("prepared", "direct"): [40000.0, 40000.0, 38000.0],
        ("prepared", "gateway"): [16000.0, 17000.0, 15000.0],
    },
    {
        ("simple", "direct"): [0.080, 0.090, 0.085],
        ("simple", "pgbouncer"): [0.110, 0.100, 0.105],
        ("simple", "gateway"): [0.300, 0.250, 0.280],
        ("prepared", "direct"): [0.050, 0.046, 0.048],
        ("prepared", "gateway"): [0.260, 0.250, 0.255],
    },
)


def test_summary_medians_ratios_and_added_latency() -> None:
    rows = pb.summarize(SAMPLES, pb.TARGETS, pb.MODES, clients=8)
    by = {(r.mode, r.target): r for r in rows}
    assert [(r.mode, r.target) for r in rows] == [
        ("simple", "direct"),
        ("simple", "pgbouncer"),
        ("simple", "gateway"),
        ("prepared", "direct"),
        ("prepared", "gateway"),
    ]
    gw = by[("simple", "gateway")]
    assert (gw.tps, gw.tps_min, gw.tps_max, gw.runs) == (10000.0, 9000.0, 11000.0, 3)
    assert gw.ratio == pytest.approx(0.5)
    assert gw.latency_ms == 0.280
    assert gw.added_us == pytest.approx(195.0)
    assert by[("simple", "direct")].ratio == 1.0
    assert by[("simple", "direct")].added_us == 0.0
    assert by[("prepared", "gateway")].ratio == pytest.approx(0.4)
    assert by[("prepared", "gateway")].added_us == pytest.approx(207.0)


def test_summary_without_reference_has_no_ratios() -> None:
    only_gw = [s for s in SAMPLES if s.target == "gateway"]
    rows = pb.summarize(only_gw, pb.TARGETS, ["simple"], clients=8)
    assert len(rows) == 1
    assert rows[0].ratio is None and rows[0].added_us is None and rows[0].tps == 10000.0


def test_table() -> None:
    rows = pb.summarize(SAMPLES, pb.TARGETS, pb.MODES, clients=8)
    assert pb.format_table(rows) == "\n".join(
        [
            "mode      target     TPS(median)  spread  ratio  1-client latency  added",
            "simple    direct           20000    ±10%   1.00          0.085 ms",
            "simple    pgbouncer        12500     ±4%   0.62          0.105 ms  +20 µs",
            "simple    gateway          10000    ±10%   0.50          0.280 ms  +195 µs",
            "prepared  direct           40000     ±2%   1.00          0.048 ms",
            "prepared  gateway          16000     ±6%   0.40          0.255 ms  +207 µs",
        ]
    )


def test_table_marks_missing_figures() -> None:
    row = pb.Row("simple", "gateway", 0, None, None, None, None, 0.3, None)
    assert pb.format_table([row]).splitlines()[1].split() == [
        "simple",
        "gateway",
        "-",
        "-",
        "-",
        "0.300",
        "ms",
    ]


# --------------------------------------------------------------------------------------------- verdict


def _rows(ratio: float | None, added_us: float | None, modes: tuple[str, ...] = pb.MODES) -> list[pb.Row]:
    return [pb.Row(m, "gateway", 3, 1.0, 1.0, 1.0, ratio, 0.3, added_us) for m in modes]


@pytest.mark.parametrize(
    ("ratio", "added", "status"),
    [
        (0.52, 120.0, "met"),
        (0.45, 250.0, "met"),  # the floor itself passes
        (0.449, 120.0, "not met"),
        (0.60, 250.5, "not met"),
        (None, 120.0, "not measured"),
        (0.60, None, "not measured"),
    ],
)
def test_floor_verdict(ratio: float | None, added: float | None, status: str) -> None:
    verdict = pb.floor_verdict(_rows(ratio, added), pb.MODES)
    assert verdict.status == status
    assert verdict.passed is (status == "met")


def test_floor_must_hold_in_every_mode() -> None:
    rows = _rows(0.6, 100.0, ("simple",)) + _rows(0.40, 100.0, ("prepared",))
    assert pb.floor_verdict(rows, pb.MODES).status == "not met"
    assert pb.floor_verdict(rows, ["simple"]).status == "met"


def test_floor_not_measured_without_gateway_rows() -> None:
    rows = [r for r in pb.summarize(SAMPLES, pb.TARGETS, pb.MODES, 8) if r.target != "gateway"]
    verdict = pb.floor_verdict(rows, pb.MODES)
    assert verdict.status == "not measured" and not verdict.passed


def test_verdict_lines() -> None:
    rows = pb.summarize(SAMPLES, pb.TARGETS, pb.MODES, clients=8)
    lines = pb.format_verdict(pb.floor_verdict(rows, pb.MODES), rows)
    assert lines == [
        "floor (issue 3): gateway/direct >= 0.45 with auditing on, added 1-client latency <= 250 µs",
        "  simple    ratio 0.50 ok, added +195 µs ok",
        "  prepared  ratio 0.40 BELOW FLOOR, added +207 µs ok",
        "verdict: FLOOR NOT MET",
        "aim: gateway/direct >= 0.65 (pgbouncer's level): "
        "simple 0.50 below, pgbouncer 0.62; prepared 0.40 below",
    ]


def test_verdict_lines_when_gateway_missing() -> None:
    lines = pb.format_verdict(pb.floor_verdict([], ["simple"]), [])
    assert lines[1:3] == ["  simple    not measured", "verdict: FLOOR NOT MEASURED"]


# ------------------------------------------------------------------------------------------- documents


def test_results_document_round_trips_as_json() -> None:
    rows = pb.summarize(SAMPLES, pb.TARGETS, pb.MODES, clients=8)
    verdict = pb.floor_verdict(rows, pb.MODES)
    machine = {
        "nproc": 2,
        "cpu": "AMD EPYC",
        "postgresql": "18.6",
        "pgbench": "pgbench 15",
        "pgbouncer": "1.18",
    }
    doc = json.loads(json.dumps(pb.results_document(machine, {"rounds": 3}, SAMPLES, rows, verdict, ["n"])))
    assert doc["floor"]["status"] == "not met"
    assert doc["floor"]["checks"][1] == {
        "mode": "prepared",
        "ratio": pytest.approx(0.4),
        "added_us": pytest.approx(207.0),
        "ratio_ok": False,
        "latency_ok": True,
    }
    assert len(doc["runs"]) == len(SAMPLES) and len(doc["results"]) == 5
    assert doc["notes"] == ["n"]


# ---------------------------------------------------------------------------------- recording overhead

SAMPLES_REC = SAMPLES + _samples(
    {
        ("simple", "gateway-norec"): [11000.0, 10000.0, 12000.0],
        ("prepared", "gateway-norec"): [20000.0, 19000.0, 21000.0],
    },
    {
        ("simple", "gateway-norec"): [0.260, 0.240, 0.250],
        ("prepared", "gateway-norec"): [0.200, 0.210, 0.220],
    },
)


def test_norec_is_a_target_of_its_own_against_direct() -> None:
    rows = pb.summarize(SAMPLES_REC, pb.TARGETS, pb.MODES, clients=8)
    by = {(r.mode, r.target): r for r in rows}
    assert [r.target for r in rows if r.mode == "simple"] == [*pb.TARGETS[:3], "gateway-norec"]
    assert by[("simple", "gateway-norec")].ratio == pytest.approx(0.55)
    assert by[("prepared", "gateway-norec")].added_us == pytest.approx(162.0)
    table = pb.format_table(rows).splitlines()
    assert " ".join(table[4].split()) == "simple gateway-norec 11000 ±9% 0.55 0.250 ms +165 µs"
    # the floor stays about the product's default, the gateway with recording on
    without = [r for r in rows if r.target != pb.NOREC]
    assert pb.floor_verdict(rows, pb.MODES) == pb.floor_verdict(without, pb.MODES)


def test_recording_overhead_ratios_rounds_and_cost_per_statement() -> None:
    rows = pb.summarize(SAMPLES_REC, pb.TARGETS, pb.MODES, clients=8)
    simple, prepared = pb.recording_overhead(SAMPLES_REC, rows, pb.MODES, clients=8)
    assert simple.mode == "simple" and simple.ratio == pytest.approx(10000 / 11000)
    assert simple.round_min == pytest.approx(0.9) and simple.round_max == pytest.approx(11000 / 12000)
    assert simple.added_us == pytest.approx(30.0)
    assert prepared.ratio == pytest.approx(0.8) and prepared.added_us == pytest.approx(45.0)
    assert pb.format_recording([simple, prepared]) == [
        "recording overhead: gateway/gateway-norec simple 0.91 (rounds 0.90-0.92), "
        "prepared 0.80 (rounds 0.71-0.89)",
        "recording cost per statement (1-client latency, gateway - gateway-norec): "
        "simple +30 µs, prepared +45 µs",
    ]


def test_recording_overhead_not_measured_shows_dashes() -> None:
    only_simple = [s for s in SAMPLES_REC if not (s.target == pb.NOREC and s.mode == "prepared")]
    rows = pb.summarize(only_simple, pb.TARGETS, pb.MODES, clients=8)
    overheads = pb.recording_overhead(only_simple, rows, pb.MODES, clients=8)
    assert overheads[1] == pb.RecordingOverhead("prepared", None, None, None, None)
    lines = pb.format_recording(overheads)
    assert lines[0].endswith("simple 0.91 (rounds 0.90-0.92), prepared -")
    assert lines[1].endswith("simple +30 µs, prepared -")
    assert pb.format_recording(pb.recording_overhead([], [], ["simple"], 8)) == [
        "recording overhead: gateway/gateway-norec simple -",
        "recording cost per statement (1-client latency, gateway - gateway-norec): simple -",
    ]


def test_results_document_carries_the_recording_overhead() -> None:
    rows = pb.summarize(SAMPLES_REC, pb.TARGETS, pb.MODES, clients=8)
    overheads = pb.recording_overhead(SAMPLES_REC, rows, pb.MODES, clients=8)
    verdict = pb.floor_verdict(rows, pb.MODES)
    doc = json.loads(json.dumps(pb.results_document({}, {}, SAMPLES_REC, rows, verdict, [], overheads)))
    assert [o["mode"] for o in doc["recording_overhead"]] == ["simple", "prepared"]
    assert doc["recording_overhead"][1]["ratio"] == pytest.approx(0.8)
    assert doc["recording_overhead"][1]["added_us"] == pytest.approx(45.0)
    assert pb.results_document({}, {}, [], [], verdict, [])["recording_overhead"] == []


def test_targets_option_takes_gateway_norec() -> None:
    args = pb.parse_args(["--targets", "gateway-norec,direct,gateway"])
    assert args.target_list == ["direct", "gateway", "gateway-norec"]  # report order
    assert pb.parse_args([]).target_list == list(pb.TARGETS)
    with pytest.raises(SystemExit):
        pb.parse_args(["--targets", "direct,gateway-off"])


@pytest.mark.parametrize("recording", [None, {"rows_per_statement": 7}, {"enabled": True}])
def test_norec_config_switches_recording_off_on_its_own_port_and_spool(
    tmp_path: Path, recording: dict[str, object] | None
) -> None:
    home = tmp_path / "home"
    (home / "dev").mkdir(parents=True)
    connection: dict[str, object] = {"name": "payments", "listen": "127.0.0.1:15432", "upstream": {"port": 5}}
    if recording is not None:
        connection["recording"] = recording
    dev = {"nats": {"url": "nats://127.0.0.1:4222", "spool_dir": "/dev-spool"}, "connections": [connection]}
    (home / "dev" / "pcigate.yaml").write_text(yaml.safe_dump(dev))
    work = tmp_path / "work"
    work.mkdir()
    path, port = pb.norec_config(pb.Stack(home, False, {}), work)
    config = yaml.safe_load(path.read_text())
    conn = config["connections"][0]
    assert conn["listen"] == f"127.0.0.1:{port}" and port != 15432
    assert conn["recording"] == {**(recording or {}), "enabled": False}  # other recording keys kept
    assert conn["upstream"] == {"port": 5} and config["nats"]["url"] == "nats://127.0.0.1:4222"
    assert config["nats"]["spool_dir"] == str(work / "spool")
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_recording_is_described_for_the_header() -> None:
    assert pb.describe_recording({"enabled": True, "rows_per_statement": 100}) == (
        "recording on, rows_per_statement 100"
    )
    assert pb.describe_recording({"enabled": False}) == "recording off"


def test_machine_line() -> None:
    machine = {
        "nproc": 2,
        "cpu": "AMD EPYC",
        "postgresql": "18.6",
        "pgbench": "pgbench 15",
        "pgbouncer": "1.18",
    }
    assert pb.format_machine(machine) == "machine: 2 CPUs (AMD EPYC), PostgreSQL 18.6, pgbench 15, 1.18"


def test_machine_line_with_load() -> None:
    machine = {"nproc": 2, "cpu": "AMD EPYC", "load_1min": {"before": 0.41, "after": 2.893}}
    assert pb.format_machine(machine).endswith(", load 0.41 before / 2.89 after")
