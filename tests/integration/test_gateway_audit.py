"""The gateway's audit trail, read back from JetStream: one command.executed per statement with masked text
and parameters, session totals, and the durability rules (NATS outage; spool that cannot write)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from psycopg import pq

from pcigate.devstack import binaries, procs
from pcigate.devstack.natsserver import NatsServer
from pcigate.devstack.ports import free_port
from pcigate.devstack.testcards import luhn_valid
from tests.gateway_support import GatewayEndpoint, events_for, private_config, start_gateway

pytestmark = pytest.mark.integration

PAN = "4111111111111111"  # Visa test number
_DIGIT_RUN = re.compile(r"\d[\d -]{11,}\d")
# What the gateway generates itself: event ids (UUIDs) and SHA-256 / HMAC hex. Their digits can line up
# into a Luhn-valid run by chance (each stack has its own digest key, so a run of CI failed on an HMAC).
_GENERATED = re.compile(
    r"(?<![0-9a-f])(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{64})(?![0-9a-f])"
)


def assert_no_pan(text: str) -> None:
    for run in _DIGIT_RUN.findall(_GENERATED.sub(" ", text)):
        digits = re.sub(r"\D", "", run)
        assert not (13 <= len(digits) <= 19 and luhn_valid(digits)), f"clear PAN-like run in {text[:200]!r}"


def admin(gw: GatewayEndpoint, sub: str) -> psycopg.Connection[tuple[Any, ...]]:
    return psycopg.connect(gw.dsn(gw.token(sub=sub, groups=("payments-admins",))), autocommit=True)


def test_every_statement_is_recorded_masked(gateway: GatewayEndpoint) -> None:
    sub = f"audit-{uuid.uuid4().hex[:8]}@example.com"
    with admin(gateway, sub) as conn:
        conn.execute(f"SELECT '{PAN}' AS pan, 1 AS n")  # a literal PAN: simple protocol via no params
        conn.execute("SELECT %s::text AS pan, %s::int AS n", (PAN, 7))
        conn.execute("SELECT card_id FROM cards ORDER BY card_id LIMIT 5")
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("SELECT * FROM no_such_table")
        conn.execute("SELECT 1; SELECT 2")  # psycopg sends this as one simple Query
    # the results with a column named pan also leave masking.applied events (test_masking_e2e.py)
    kinds = ("session.opened", "command.executed", "session.closed")
    events = events_for(gateway.nats_url, lambda e: e["actor"]["sub"] == sub and e["type"] in kinds, 8)
    types = [e["type"] for e in events]
    assert types[0] == "session.opened" and types[-1] == "session.closed"
    executed = [e for e in events if e["type"] == "command.executed"]
    assert [e["data"]["sequence"] for e in executed] == list(range(1, len(executed) + 1))
    assert len(executed) == 6
    for e in executed:
        assert_no_pan(json.dumps(e))
        assert e["session_id"] == events[0]["session_id"]
        assert e["target"]["connection"] == "payments" and e["target"]["database"] == "payments"
        assert len(e["data"]["statement"]["fingerprint"]) == 64
        assert e["data"]["statement"]["digest"]["key_id"] == "dev1"
    literal, bound, limited, failed, one, two = executed
    assert "411111******1111" in literal["data"]["statement"]["text"]
    assert literal["data"]["statement"]["masked_literals"] == 1
    assert literal["data"]["statement"]["parameters"] is None
    assert bound["data"]["statement"]["parameters"] == ["411111******1111", "7"]
    assert limited["data"]["rows"] == 5 and limited["data"]["command_tag"] == "SELECT 5"
    assert limited["data"]["statement"]["kind"] == "dql" and limited["data"]["statement"]["objects"] == [
        "cards"
    ]
    assert failed["outcome"] == {
        "result": "failure",
        "code": "42P01",
        "message": failed["outcome"]["message"],
    }
    assert one["data"]["statement"]["text"] == "SELECT 1" and two["data"]["statement"]["text"] == "SELECT 2"
    # the same statement with other values has the same fingerprint, a different keyed digest
    assert literal["data"]["statement"]["digest"] != bound["data"]["statement"]["digest"]
    closed = events[-1]
    assert closed["data"]["statements"] == 5 and closed["data"]["reason"] == "client_closed"
    # every event names the policy in force, session.closed included (a rule only where one decided)
    versions = {e["policy"]["version"] for e in events}
    assert len(versions) == 1 and versions.pop().startswith("sha256:")
    assert closed["policy"]["rule"] is None
    assert closed["data"]["bytes_from_client"] > 0 and closed["data"]["bytes_to_client"] > 0


def test_extended_protocol_failure_marks_the_rest_not_run(gateway: GatewayEndpoint) -> None:
    sub = f"pipe-{uuid.uuid4().hex[:8]}@example.com"
    with admin(gateway, sub) as conn, pytest.raises(psycopg.errors.DivisionByZero), conn.pipeline():
        conn.execute("SELECT %s::int", (1,))
        conn.execute("SELECT 1 / %s::int", (0,))
        conn.execute("SELECT %s::int", (3,))
    executed = events_for(
        gateway.nats_url, lambda e: e["actor"]["sub"] == sub and e["type"] == "command.executed", 3
    )
    outcomes = [(e["outcome"]["result"], e["outcome"]["code"]) for e in executed]
    assert outcomes == [("success", None), ("failure", "22012"), ("failure", "not_run")]


def _results_until(pgconn: Any, status: Any) -> list[Any]:
    """Read pipeline results (libpq, non-blocking) until one with ``status``."""
    got: list[Any] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pgconn.consume_input()
        while not pgconn.is_busy():
            res = pgconn.get_result()
            if res is None:
                break
            got.append(res.status)
            if res.status == status:
                return got
        time.sleep(0.01)
    raise AssertionError(f"no {status} in {got}")


def test_statements_sent_after_an_extended_protocol_error_are_not_run(gateway: GatewayEndpoint) -> None:
    # The client sees the error before it sends the next statement: the server ignores that one (it skips to
    # Sync), so the gateway must record it as not run and keep following the conversation.
    sub = f"skip-{uuid.uuid4().hex[:8]}@example.com"
    with admin(gateway, sub) as conn:
        pgconn = conn.pgconn
        pgconn.enter_pipeline_mode()
        pgconn.send_query_params(b"SELECT 1 / $1::int", [b"0"])
        pgconn.send_flush_request()
        while pgconn.flush():
            pass
        assert _results_until(pgconn, pq.ExecStatus.FATAL_ERROR)[-1] == pq.ExecStatus.FATAL_ERROR
        pgconn.send_query_params(b"SELECT $1::int", [b"3"])
        pgconn.pipeline_sync()
        while pgconn.flush():
            pass
        seen = _results_until(pgconn, pq.ExecStatus.PIPELINE_SYNC)
        assert pq.ExecStatus.PIPELINE_ABORTED in seen
        pgconn.exit_pipeline_mode()
        assert conn.execute("SELECT 5").fetchone() == (5,)
    executed = events_for(
        gateway.nats_url, lambda e: e["actor"]["sub"] == sub and e["type"] == "command.executed", 3
    )
    outcomes = [(e["outcome"]["result"], e["outcome"]["code"]) for e in executed]
    assert outcomes == [("failure", "22012"), ("failure", "not_run"), ("success", None)]


# --- durability: a private gateway with its own NATS and spool -----------------------------------------


class PrivateGateway:
    def __init__(self, config: Path, gw: GatewayEndpoint, nats: NatsServer) -> None:
        self.config = config
        self.nats = nats
        cfg = yaml.safe_load(config.read_text())
        host, port = cfg["connections"][0]["listen"].rsplit(":", 1)
        self.endpoint = GatewayEndpoint(host, int(port), "payments", gw.layout, nats.url)
        self.proc: subprocess.Popen[str] | None = None
        self.nats_pid: int | None = None

    def start(self) -> None:
        self.proc = start_gateway(self.config, self.endpoint.host, self.endpoint.port)

    def stop(self) -> str:
        assert self.proc is not None
        spool = self.spool_pid()
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=60)
        assert spool is None or not Path(f"/proc/{spool}").exists(), "the spool process outlived the gateway"
        return out

    def spool_pid(self) -> int | None:
        """The gateway's audit spool process (``gateway.spool_service``), if it runs."""
        assert self.proc is not None
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        for pid in children.read_text().split() if children.exists() else ():
            with contextlib.suppress(OSError):
                if b"gateway.spool_service" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return int(pid)
        return None

    def wait_spool_pid(self, not_this: int | None = None, timeout: float = 20.0) -> int:
        deadline = time.monotonic() + timeout
        while True:
            pid = self.spool_pid()
            if pid is not None and pid != not_this:
                return pid
            assert time.monotonic() < deadline, "no audit spool process"
            time.sleep(0.05)

    def start_nats(self) -> None:
        self.nats_pid = self.nats.start()

    def stop_nats(self) -> None:
        assert self.nats_pid is not None
        procs.terminate(self.nats_pid, self.nats.marker)
        self.nats_pid = None


@pytest.fixture
def private_gateway(
    dev_stack: dict[str, Any], gateway: GatewayEndpoint, tmp_path: Path
) -> Iterator[PrivateGateway]:
    nats = NatsServer(binaries.nats_server_binary(), tmp_path / "nats", free_port(), free_port())
    config, _ = private_config(dev_stack["config"], tmp_path, nats_url=nats.url)
    pg = PrivateGateway(config, gateway, nats)
    pg.start_nats()
    try:
        yield pg
    finally:
        if pg.proc is not None and pg.proc.poll() is None:
            pg.proc.kill()
            pg.proc.wait()
        if pg.nats_pid is not None:
            pg.stop_nats()


def test_statements_run_during_a_nats_outage_and_every_event_arrives(private_gateway: PrivateGateway) -> None:
    pg = private_gateway
    pg.start()
    sub = f"outage-{uuid.uuid4().hex[:8]}@example.com"
    gw = pg.endpoint
    pg.stop_nats()
    with admin(gw, sub) as conn:
        for i in range(50):
            assert conn.execute("SELECT %s::int", (i,)).fetchone() == (i,)
        conn.execute("CREATE TEMP TABLE o (i int)")
        conn.execute("INSERT INTO o SELECT generate_series(1, 10)")
    pg.start_nats()
    events = events_for(gw.nats_url, lambda e: e["actor"]["sub"] == sub, 54, timeout=30)
    executed = [e for e in events if e["type"] == "command.executed"]
    assert len(executed) == 52
    assert len({e["id"] for e in events}) == len(events)  # exactly once
    assert events[0]["type"] == "session.opened"
    pg.stop()


def test_spool_that_cannot_write_refuses_statements(private_gateway: PrivateGateway) -> None:
    pg = private_gateway
    pg.start()
    gw = pg.endpoint
    sub = f"spool-{uuid.uuid4().hex[:8]}@example.com"
    table = f"spool_probe_{uuid.uuid4().hex[:8]}"
    conn = admin(gw, sub)
    conn.execute(f"CREATE TABLE {table} (i int)")
    spool = pg.wait_spool_pid()
    # Every write the spool process makes to a file now fails with EFBIG, like a dead disk would.
    resource.prlimit(spool, resource.RLIMIT_FSIZE, (1, resource.RLIM_INFINITY))
    try:
        with pytest.raises(psycopg.Error) as err:
            conn.execute(f"INSERT INTO {table} VALUES (1)")  # a write: must never reach upstream
        assert err.value.sqlstate == "58030"
        assert "audit" in str(err.value)
        conn.close()
        with pytest.raises(psycopg.OperationalError) as err2:
            admin(gw, sub).execute("SELECT 1")
        assert "audit" in str(err2.value)
    finally:
        resource.prlimit(spool, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    # The spool recovers once it can write again; the refused INSERT never ran.
    deadline = time.monotonic() + 15
    while True:
        try:
            with admin(gw, sub) as again:
                assert again.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
                again.execute(f"DELETE FROM {table} WHERE true")  # the dev policy refuses DROP
            break
        except psycopg.OperationalError:
            assert time.monotonic() < deadline, "the spool did not recover"
            time.sleep(0.5)
    pg.stop()


def test_a_crashed_spool_process_is_restarted_and_nothing_durable_is_lost(
    private_gateway: PrivateGateway,
) -> None:
    pg = private_gateway
    pg.start()
    gw = pg.endpoint
    sub = f"crash-{uuid.uuid4().hex[:8]}@example.com"
    with admin(gw, sub) as conn:
        for i in range(20):
            assert conn.execute("SELECT %s::int", (i,)).fetchone() == (i,)
    time.sleep(0.2)  # completion and session.closed events share a flush within ~2 ms: let them land
    first = pg.wait_spool_pid()
    os.kill(first, signal.SIGKILL)
    second = pg.wait_spool_pid(not_this=first)
    assert pg.proc is not None and pg.proc.poll() is None  # the gateway itself carries on
    deadline = time.monotonic() + 20
    while True:  # refused (58030) until the new spool process has recovered the directory
        try:
            with admin(gw, sub) as conn:
                assert conn.execute("SELECT 42").fetchone() == (42,)
            break
        except psycopg.Error as exc:
            assert "audit" in str(exc), exc
            assert time.monotonic() < deadline, "statements were not accepted again"
            time.sleep(0.2)
    # Everything answered before the crash was durable, so every one of its events reaches JetStream.
    events = events_for(gw.nats_url, lambda e: e["actor"]["sub"] == sub, 20 + 1 + 2 + 2, timeout=30)
    executed = [e for e in events if e["type"] == "command.executed"]
    assert [e["data"]["statement"]["parameters"] for e in executed[:20]] == [[str(i)] for i in range(20)]
    assert all(e["outcome"]["result"] == "success" for e in executed[:21])
    out = pg.stop()
    assert "audit spool process exited unexpectedly" in out
    assert "audit spool process restarted" in out
    assert second != first


def test_an_answer_waiting_on_a_lost_record_is_never_sent(private_gateway: PrivateGateway) -> None:
    pg = private_gateway
    pg.start()
    gw = pg.endpoint
    conn = admin(gw, f"lost-{uuid.uuid4().hex[:8]}@example.com")
    assert conn.execute("SELECT 1").fetchone() == (1,)
    spool = pg.wait_spool_pid()
    os.kill(spool, signal.SIGSTOP)  # the record of the next statement is written to the pipe, never synced
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["row"] = conn.execute("SELECT 7").fetchone()
        except psycopg.Error as exc:
            outcome["error"] = exc

    waiter = threading.Thread(target=run)
    waiter.start()
    waiter.join(1.0)
    assert waiter.is_alive()  # ran upstream, but the answer waits for its record
    os.kill(spool, signal.SIGKILL)
    waiter.join(20)
    assert not waiter.is_alive()
    assert "row" not in outcome
    error = outcome["error"]
    assert isinstance(error, psycopg.Error)
    assert error.sqlstate == "58030"
    assert "audit spool process exited" in str(error)
    conn.close()
    pg.wait_spool_pid(not_this=spool)
    pg.stop()
