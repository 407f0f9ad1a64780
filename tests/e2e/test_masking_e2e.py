"""Card data masking end to end: psql, psycopg (text and binary), asyncpg (binary) and COPY against the demo
``public.cards`` table through the gateway, and the evidence it leaves (``masking.applied``,
``sad.detected``). No clear test PAN, and no CVV, may reach a client or the audit stream."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import uuid

import asyncpg
import psycopg
import pytest

from pcigate.devstack import binaries
from pcigate.devstack.testcards import TEST_PANS
from tests.gateway_support import GatewayEndpoint, events_for

pytestmark = pytest.mark.e2e

PANS = [p for group in TEST_PANS.values() for p in group]
MASKED = re.compile(r"^[0-9]{6}\*+[0-9]{4}$")


def connect(gw: GatewayEndpoint, **kw: object) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(gw.dsn(gw.token(groups=("payments-admins",))), connect_timeout=10, **kw)  # type: ignore[arg-type]


def assert_clean(blob: str) -> None:
    """No published test PAN in ``blob``, nor its reverse."""
    for pan in PANS:
        assert pan not in blob, "a clear PAN reached the client"
        assert pan[::-1] not in blob, "a reversed PAN reached the client"


def psql_path() -> str:
    return shutil.which("psql") or str(binaries.postgres_bindir() / "psql")


def test_psql_select_masks_pan_and_hides_cvv(gateway: GatewayEndpoint) -> None:
    token = gateway.token(groups=("payments-admins",))
    env = {**os.environ, "PGPASSWORD": token, "PGSSLMODE": "disable"}
    cmd = [
        psql_path(),
        "-h", gateway.host, "-p", str(gateway.port), "-U", "alice@example.com", "-d", gateway.database,
        "-At", "-F", "|", "-c", "SELECT card_id, pan, cvv, brand FROM public.cards ORDER BY card_id LIMIT 50",
    ]  # fmt: skip
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=True).stdout
    rows = [line.split("|") for line in out.splitlines()]
    assert len(rows) == 50
    for _card_id, pan, cvv, _brand in rows:
        assert MASKED.match(pan), pan[:6]
        assert cvv == ""  # NULL
    assert_clean(out)


def test_demo_select_star_from_cards_shows_no_card_data(gateway: GatewayEndpoint) -> None:
    """Issue 5's "done when": the demo ``SELECT * FROM cards`` through the gateway, every row."""
    token = gateway.token(groups=("payments-admins",))
    env = {**os.environ, "PGPASSWORD": token, "PGSSLMODE": "disable"}
    cmd = [
        psql_path(), "-X", "-h", gateway.host, "-p", str(gateway.port), "-U", "alice@example.com",
        "-d", gateway.database, "-c", "SELECT * FROM cards",
    ]  # fmt: skip
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=True).stdout
    lines = out.splitlines()
    header = [h.strip() for h in lines[0].split("|")]
    rows = [[v.strip() for v in line.split("|")] for line in lines[2:] if line.count("|") == len(header) - 1]
    assert len(rows) >= 10_000
    pan, cvv = header.index("pan"), header.index("cvv")
    assert all(MASKED.match(r[pan]) for r in rows)
    assert all(r[cvv] == "" for r in rows)
    assert_clean(out)


def test_psycopg_text_and_binary(gateway: GatewayEndpoint) -> None:
    with connect(gateway) as conn:
        text_rows = conn.execute(
            "SELECT pan, cvv, holder_name FROM cards ORDER BY card_id LIMIT 20"
        ).fetchall()
        cur = conn.cursor(binary=True)
        cur.execute("SELECT pan, cvv FROM cards WHERE card_id = %s", (1,))
        binary_rows = cur.fetchall()
    for pan, cvv, _holder in text_rows:
        assert isinstance(pan, str) and MASKED.match(pan) and cvv is None
    assert binary_rows and MASKED.match(str(binary_rows[0][0])) and binary_rows[0][1] is None
    assert_clean(repr(text_rows) + repr(binary_rows))


def test_asyncpg_binary_prepared_and_numeric(gateway: GatewayEndpoint) -> None:
    async def run() -> tuple[list[asyncpg.Record], list[asyncpg.Record], object]:
        conn = await asyncpg.connect(
            gateway.url(gateway.token(groups=("payments-admins",))), ssl=False, timeout=10
        )
        try:
            rows = await conn.fetch("SELECT card_id, pan, cvv FROM cards ORDER BY card_id LIMIT 20")
            stmt = await conn.prepare("SELECT pan AS x FROM cards WHERE card_id = $1")
            again = [await stmt.fetchrow(i) for i in (1, 2, 3)]  # Bind/Execute without a new Describe
            numeric = await conn.fetchval("SELECT pan::bigint FROM cards WHERE card_id = 1")
            return rows, [r for r in again if r is not None], numeric
        finally:
            await conn.close()

    rows, again, numeric = asyncio.run(run())
    assert all(MASKED.match(r["pan"]) and r["cvv"] is None for r in rows)
    assert len(again) == 3 and all(MASKED.match(r["x"]) for r in again)
    assert numeric is None  # a card number in a number column has no masked form: NULL
    assert_clean(repr(rows) + repr(again) + repr(numeric))


def test_copy_to_stdout_text_csv_binary(gateway: GatewayEndpoint) -> None:
    with connect(gateway) as conn, conn.cursor() as cur:
        chunks: dict[str, bytes] = {}
        for name, sql in (
            ("text", "COPY (SELECT card_id, pan, cvv FROM cards ORDER BY card_id LIMIT 30) TO STDOUT"),
            (
                "csv",
                "COPY (SELECT card_id, pan, cvv FROM cards ORDER BY card_id LIMIT 30) TO STDOUT"
                " WITH (FORMAT csv)",
            ),
            ("columns", "COPY cards (card_id, pan, cvv) TO STDOUT"),
            ("binary", "COPY (SELECT card_id, pan FROM cards LIMIT 30) TO STDOUT WITH (FORMAT binary)"),
        ):
            with cur.copy(sql) as copy:
                chunks[name] = b"".join(bytes(b) for b in copy)
    text_lines = chunks["text"].decode().splitlines()
    assert len(text_lines) == 30
    for line in text_lines:
        _card_id, pan, cvv = line.split("\t")
        assert MASKED.match(pan) and cvv == "\\N"
    for line in chunks["csv"].decode().splitlines():
        _card_id, pan, cvv = line.split(",")
        assert MASKED.match(pan) and cvv == ""
    assert_clean(chunks["columns"].decode())
    assert_clean(chunks["binary"].decode("latin-1"))
    assert_clean(chunks["text"].decode() + chunks["csv"].decode())


def test_table_created_after_the_catalog_was_read(gateway: GatewayEndpoint) -> None:
    """A table made outside the gateway since its catalog was read: ``COPY t TO STDOUT`` names no columns,
    so it could only be refused; the statement waits for a fresh catalog instead, then runs masked."""
    table = f"late_cards_{uuid.uuid4().hex[:8]}"
    admin = superuser(gateway)
    try:
        with connect(gateway) as conn:
            conn.execute("SELECT 1").fetchall()  # the session and the catalog exist before the table
            admin.execute(f"CREATE TABLE public.{table} (id int, pan text)")
            admin.execute(f"INSERT INTO public.{table} VALUES (1, %s), (2, %s)", (PANS[0], PANS[1]))
            admin.execute(f"GRANT SELECT ON public.{table} TO PUBLIC")
            with conn.cursor() as cur, cur.copy(f"COPY public.{table} TO STDOUT") as copy:
                copied = b"".join(bytes(b) for b in copy).decode()
            selected = conn.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()
    finally:
        admin.execute(f"DROP TABLE IF EXISTS public.{table}")
        admin.close()
    lines = [line.split("\t") for line in copied.splitlines()]
    assert [row[0] for row in lines] == ["1", "2"]
    assert all(MASKED.match(pan) for _id, pan in lines)
    assert [MASKED.match(str(pan)) is not None for _id, pan in selected] == [True, True]
    assert_clean(copied + repr(selected))


def superuser(gateway: GatewayEndpoint) -> psycopg.Connection[tuple[object, ...]]:
    """A direct connection upstream, past the gateway and its policy (for fixtures only)."""
    url = gateway.layout.secret("postgres_superuser_dsn").read_text().strip()
    return psycopg.connect(
        psycopg.conninfo.make_conninfo(url, dbname=gateway.database), autocommit=True, connect_timeout=10
    )


def test_errors_and_notices_are_masked(gateway: GatewayEndpoint) -> None:
    pan = PANS[0]
    with superuser(gateway) as admin:  # a DO block is opaque to the policy: the notice comes from a function
        admin.execute(
            "CREATE OR REPLACE FUNCTION public.pcigate_test_notice(v text) RETURNS void LANGUAGE plpgsql "
            "AS $$ BEGIN RAISE NOTICE 'card %', v; END $$"
        )
    with connect(gateway) as conn:
        conn.execute("CREATE TEMP TABLE t (pan text PRIMARY KEY)")
        conn.execute("INSERT INTO t VALUES (%s)", (pan,))
        with pytest.raises(psycopg.errors.UniqueViolation) as caught:
            conn.execute("INSERT INTO t VALUES (%s)", (pan,))
        conn.rollback()
        notices: list[str] = []
        conn.add_notice_handler(lambda d: notices.append(f"{d.message_primary} {d.message_detail}"))
        conn.execute("SELECT public.pcigate_test_notice(%s)", (pan,))
    detail = str(caught.value.diag.message_detail)
    assert "Key (pan)=(" in detail
    assert_clean(detail + str(caught.value) + " ".join(notices))
    assert notices and "411111" in notices[0]


def test_statement_with_track_data_is_blocked(gateway: GatewayEndpoint) -> None:
    track2 = f";{PANS[0]}=2912101000000000000?"
    with connect(gateway) as conn:
        conn.execute("CREATE TEMP TABLE t (x text)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as caught:
            conn.execute("INSERT INTO t VALUES (%s)", (track2,))
    assert "track data" in str(caught.value)


def test_masking_and_sad_events(gateway: GatewayEndpoint) -> None:
    marker = f"masking-{uuid.uuid4().hex[:8]}"
    with connect(gateway, application_name=marker) as conn:
        conn.execute("SELECT pan, cvv FROM cards ORDER BY card_id LIMIT 5").fetchall()

    def mine(e: dict[str, object]) -> bool:
        origin = e.get("origin")
        return (
            isinstance(origin, dict)
            and origin.get("client_app") == marker
            and e["type"]
            in (
                "masking.applied",
                "sad.detected",
            )
        )

    events = events_for(gateway.nats_url, mine, 2)
    by_type = {e["type"]: e for e in events}
    applied = by_type["masking.applied"]["data"]
    assert applied["total_values"] == 10 and applied["surface"] == "result_set"
    methods = {(loc["ordinal"], loc["method"]) for loc in applied["locations"]}
    assert methods == {(0, "first6_last4"), (1, "null")}
    sad = by_type["sad.detected"]
    assert sad["data"]["kind"] == "cvv" and sad["data"]["count"] == 5
    assert "3.3.1.2" in sad["pci"]
    assert_clean(json.dumps(events))
