"""Names of prepared statements and portals through the gateway, with libpq's own calls: the gateway's
reserved names are refused to clients; a Bind of a statement the session did not Parse (a SQL PREPARE, or
a name SQL DEALLOCATE freed and PREPARE reused) is refused with 26000 instead of running text the gateway
never judged; the session goes on after each refusal."""

from __future__ import annotations

import pytest
from psycopg import pq

from tests.e2e.test_approvals_e2e import connect, unique
from tests.gateway_support import GatewayEndpoint, events_for

pytestmark = pytest.mark.e2e


def test_a_reserved_name_ends_the_connection(gateway: GatewayEndpoint) -> None:
    with connect(gateway, unique("names")) as conn:
        result = conn.pgconn.prepare(b"pcigate\x1frefused", b"SELECT 1")
        assert result.status == pq.ExecStatus.FATAL_ERROR
        message = (result.error_message + conn.pgconn.error_message).decode()  # libpq keeps the FATAL here
        assert "reserved by the gateway" in message, message
        assert conn.pgconn.status == pq.ConnStatus.BAD  # the gateway ended it


def test_a_statement_prepared_in_sql_cannot_be_bound(gateway: GatewayEndpoint) -> None:
    sub = unique("names")
    with connect(gateway, sub) as conn:
        conn.execute("PREPARE cards_by_id AS SELECT card_id, pan FROM cards WHERE card_id = 1")
        result = conn.pgconn.exec_prepared(b"cards_by_id", [])
        assert result.status == pq.ExecStatus.FATAL_ERROR
        assert result.error_field(pq.DiagnosticField.SQLSTATE) == b"26000"
        assert b"not known to the gateway" in (result.error_field(pq.DiagnosticField.MESSAGE_PRIMARY) or b"")
        # SQL EXECUTE runs it, judged and recorded as the statement it prepared
        row = conn.execute("EXECUTE cards_by_id").fetchone()
        assert row is not None and row[0] == 1 and "******" in row[1]  # masked like any read of pan
        assert conn.execute("SELECT 1").fetchone() == (1,)
    executed = events_for(
        gateway.nats_url, lambda e: e["type"] == "command.executed" and e["actor"]["sub"] == sub, 4
    )
    assert any(e["data"]["statement"]["text"].startswith("EXECUTE cards_by_id") for e in executed)


def test_a_name_sql_reused_is_forgotten(gateway: GatewayEndpoint) -> None:
    with connect(gateway, unique("names")) as conn:
        assert conn.pgconn.prepare(b"s1", b"SELECT 1").status == pq.ExecStatus.COMMAND_OK
        first = conn.pgconn.exec_prepared(b"s1", [])
        assert first.status == pq.ExecStatus.TUPLES_OK and first.get_value(0, 0) == b"1"
        conn.execute("DEALLOCATE s1")
        conn.execute("PREPARE s1 AS SELECT pan FROM cards WHERE card_id = 1")
        # The gateway last saw s1 as SELECT 1: binding it now would run what it never judged.
        result = conn.pgconn.exec_prepared(b"s1", [])
        assert result.status == pq.ExecStatus.FATAL_ERROR
        assert result.error_field(pq.DiagnosticField.SQLSTATE) == b"26000"
        assert conn.execute("SELECT 2").fetchone() == (2,)
