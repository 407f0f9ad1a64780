"""Fast-path FunctionCalls through the gateway, sent by libpq itself: psql's large-object commands work and
are judged by function name (a ``functions:`` rule refuses them), what they read is masked, and a call by
any other OID is refused as opaque instead of passing as an unnamed ``SELECT``."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pcigate.devstack import binaries
from tests.e2e.test_approvals_e2e import unique
from tests.e2e.test_masking_e2e import psql_path
from tests.gateway_support import GatewayEndpoint, events_for, private_gateway

pytestmark = pytest.mark.e2e

VISA_TEST_PAN = "4111111111111111"  # Visa's published test number
PG_BACKEND_PID = 2026  # a built-in function the gateway does not resolve by OID
PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_FATAL_ERROR = 1, 2, 7
CONNECTION_OK = 0
NO_LO_WRITES = [
    {
        "name": "no-large-object-writes",
        "match": {"functions": ["lowrite"]},
        "action": "block",
        "message": "large objects are read-only here",
    }
]


class LibPQ:
    """The few libpq calls a FunctionCall needs: psycopg has no PQfn, and its bundled libpq's handles must
    not cross into another copy of the library, so this loads one and uses it alone."""

    def __init__(self) -> None:
        bundled = binaries.postgres_bindir().parent / "lib" / "libpq.so.5"
        name = str(bundled) if bundled.exists() else ctypes.util.find_library("pq")
        assert name, "no libpq found (the embedded PostgreSQL wheel bundles one)"
        lib = ctypes.CDLL(name)
        vp, cp, ci = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
        for fn, res, args in [
            ("PQconnectdb", vp, [cp]),
            ("PQstatus", ci, [vp]),
            ("PQerrorMessage", cp, [vp]),
            ("PQfn", vp, [vp, ci, ctypes.POINTER(ci), ctypes.POINTER(ci), ci, vp, ci]),
            ("PQexec", vp, [vp, cp]),
            ("PQresultStatus", ci, [vp]),
            ("PQresultErrorField", cp, [vp, ci]),
            ("PQgetvalue", cp, [vp, ci, ci]),
            ("PQclear", None, [vp]),
            ("PQfinish", None, [vp]),
        ]:
            getattr(lib, fn).restype = res
            getattr(lib, fn).argtypes = args
        self.lib = lib

    def connect(self, dsn: str) -> int:
        conn = self.lib.PQconnectdb(dsn.encode())
        assert self.lib.PQstatus(conn) == CONNECTION_OK, self.lib.PQerrorMessage(conn)
        return int(conn)

    def fn(self, conn: int, oid: int) -> tuple[int, str, str]:
        """A FunctionCall of ``oid`` without arguments: (status, SQLSTATE, message)."""
        out, length = ctypes.c_int(0), ctypes.c_int(0)
        res = self.lib.PQfn(conn, oid, ctypes.byref(out), ctypes.byref(length), 1, None, 0)
        try:
            status = self.lib.PQresultStatus(res)
            field = self.lib.PQresultErrorField
            return status, (field(res, ord("C")) or b"").decode(), (field(res, ord("M")) or b"").decode()
        finally:
            self.lib.PQclear(res)

    def scalar(self, conn: int, sql: str) -> str:
        res = self.lib.PQexec(conn, sql.encode())
        try:
            assert self.lib.PQresultStatus(res) == PGRES_TUPLES_OK, self.lib.PQerrorMessage(conn)
            return (self.lib.PQgetvalue(res, 0, 0) or b"").decode()
        finally:
            self.lib.PQclear(res)


def psql(gw: GatewayEndpoint, sub: str, *commands: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PGPASSWORD": gw.token(sub=sub), "PGSSLMODE": "disable"}
    argv = [psql_path(), "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", gw.host, "-p", str(gw.port)]
    argv += ["-U", sub, "-d", gw.database]
    for command in commands:
        argv += ["-c", command]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_psql_large_objects_round_trip_and_what_they_read_is_masked(
    gateway: GatewayEndpoint, tmp_path: Path
) -> None:
    sub = unique("lo")
    source, exported = tmp_path / "in.txt", tmp_path / "out.txt"
    source.write_text(f"invoice 42 paid with {VISA_TEST_PAN} on 2026-01-05\n")
    imported = psql(gateway, sub, f"\\lo_import {source}")
    assert imported.returncode == 0, imported.stderr
    oid = imported.stdout.split()[-1]
    try:
        run = psql(gateway, sub, f"\\lo_export {oid} {exported}")
        assert run.returncode == 0, run.stderr
        text = exported.read_text()
        assert text.startswith("invoice 42 paid with ") and text.endswith(" on 2026-01-05\n")
        assert VISA_TEST_PAN not in text and len(text) == len(source.read_text())  # masked in place
    finally:
        assert psql(gateway, sub, f"SELECT lo_unlink({oid})").returncode == 0
    calls = events_for(
        gateway.nats_url,
        lambda e: (
            e["type"] == "command.executed" and e["actor"]["sub"] == sub and "fast-path" in str(e["data"])
        ),
        4,
    )
    texts = {e["data"]["statement"]["text"] for e in calls}
    assert "/* fast-path function call */ SELECT pg_catalog.lo_open()" in texts
    assert any("lowrite" in t or "loread" in t for t in texts)


def test_a_call_by_an_unresolved_oid_is_refused_and_the_session_goes_on(gateway: GatewayEndpoint) -> None:
    sub = unique("fastpath")
    pq = LibPQ()
    conn = pq.connect(gateway.dsn(gateway.token(sub=sub)))
    try:
        status, sqlstate, message = pq.fn(conn, PG_BACKEND_PID)
        assert (status, sqlstate) == (PGRES_FATAL_ERROR, "42501"), message
        assert "names its function by OID only" in message and "call the function in a query" in message
        assert pq.scalar(conn, "SELECT 1") == "1"
    finally:
        pq.lib.PQfinish(conn)
    (event,) = events_for(
        gateway.nats_url, lambda e: e["type"] == "command.blocked" and e["actor"]["sub"] == sub, 1
    )
    assert event["policy"]["rule"] == "opaque"
    assert event["data"]["statement"]["text"].endswith(f"pcigate_function_oid_{PG_BACKEND_PID}()")


@pytest.fixture(scope="module")
def no_lo_writes(
    dev_stack: dict[str, Any], gateway: GatewayEndpoint, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayEndpoint]:
    with private_gateway(dev_stack["config"], gateway, tmp_path_factory.mktemp("lo"), NO_LO_WRITES) as gw:
        yield gw


def test_a_rule_on_a_function_name_refuses_its_fast_path_call(
    no_lo_writes: GatewayEndpoint, tmp_path: Path
) -> None:
    sub = unique("lo-rule")
    source = tmp_path / "in.txt"
    source.write_text("quarterly report\n")
    run = psql(no_lo_writes, sub, f"\\lo_import {source}")
    assert run.returncode != 0
    assert "large objects are read-only here (policy rule no-large-object-writes)" in run.stderr
    (event,) = events_for(
        no_lo_writes.nats_url, lambda e: e["type"] == "command.blocked" and e["actor"]["sub"] == sub, 1
    )
    assert event["policy"]["rule"] == "no-large-object-writes"
    assert event["data"]["statement"]["text"].endswith("SELECT pg_catalog.lowrite()")
