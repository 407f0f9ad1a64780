"""The dev stack's policy end to end: psql (simple protocol) and psycopg (extended protocol) through the
gateway; refused statements never reach PostgreSQL, the client gets 42501 with the rule's message, and a
``command.blocked`` event names the rule, with the statement masked like every statement's record."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import psycopg
import pytest

from gateway.policy.facts import statement_facts
from pcigate.config import load_config
from tests.e2e.test_masking_e2e import psql_path, superuser
from tests.gateway_support import (
    GatewayEndpoint,
    audit_events,
    decide,
    events_for,
    pending_requests,
    private_policy_gateway,
)

pytestmark = pytest.mark.e2e

ADMINS = ("payments-admins",)


def connect(gw: GatewayEndpoint, sub: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(gw.dsn(gw.token(sub=sub, groups=ADMINS)), connect_timeout=10, autocommit=True)


def blocked_events(gw: GatewayEndpoint, sub: str, count: int) -> list[dict[str, object]]:
    return events_for(
        gw.nats_url,
        lambda e: e["type"] == "command.blocked" and e["actor"]["sub"] == sub,
        count,
    )


def test_destructive_statements_are_refused_with_psql(gateway: GatewayEndpoint) -> None:
    sub = f"policy-{uuid.uuid4().hex[:8]}@example.com"
    env = {**os.environ, "PGPASSWORD": gateway.token(sub=sub, groups=ADMINS), "PGSSLMODE": "disable"}
    base = [psql_path(), "-h", gateway.host, "-p", str(gateway.port), "-U", sub, "-d", gateway.database]
    for sql in ("DROP TABLE cards", "TRUNCATE public.cards", "ALTER SYSTEM SET work_mem = '8MB'"):
        run = subprocess.run(
            [*base, "-X", "-v", "ON_ERROR_STOP=1", "-c", sql],
            check=False,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode != 0
        assert "DROP, TRUNCATE and ALTER SYSTEM do not run through the gateway" in run.stderr
        assert "policy rule no-destruction" in run.stderr
    out = subprocess.run(
        [*base, "-X", "-At", "-c", "SELECT count(*) > 0 FROM cards"], env=env, capture_output=True, text=True,
        timeout=60, check=True,
    ).stdout  # fmt: skip
    assert out.strip() == "t"  # the table is still there, and reads are allowed
    events = blocked_events(gateway, sub, 3)
    assert len(events) == 3
    for event in events:
        outcome = event["outcome"]
        assert outcome["result"] == "blocked" and outcome["code"] == "42501"  # type: ignore[index]
        assert "policy rule no-destruction" in outcome["message"]  # type: ignore[index]
        assert event["policy"]["rule"] == "no-destruction"  # type: ignore[index]
        assert event["policy"]["version"].startswith("sha256:")  # type: ignore[index]
        assert event["data"]["reason"] == "policy_rule"  # type: ignore[index]
    texts = sorted(e["data"]["statement"]["text"].split()[0].lower() for e in events)  # type: ignore[index]
    assert texts == ["alter", "drop", "truncate"]


def test_refusal_inside_a_transaction_behaves_like_an_error_with_psycopg(gateway: GatewayEndpoint) -> None:
    sub = f"policy-{uuid.uuid4().hex[:8]}@example.com"
    with connect(gateway, sub) as conn:
        conn.autocommit = False
        assert conn.execute("SELECT count(*) FROM cards WHERE card_id = %s", (1,)).fetchone() == (1,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as err:
            conn.execute("DROP TABLE cards")
        assert "policy rule no-destruction" in str(err.value)
        # like any error: the transaction is aborted until ROLLBACK, then the session goes on
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("SELECT 1")
        conn.rollback()
        assert conn.execute("SELECT 1").fetchone() == (1,)
        conn.commit()
    (event,) = blocked_events(gateway, sub, 1)
    assert event["data"]["statement"]["text"].lower().startswith("drop table")  # type: ignore[index]


def test_opaque_statements_wait_for_a_person(gateway: GatewayEndpoint) -> None:
    """The dev policy's opaque_action is require_approval: a DO block is held, and denied here."""
    sub = f"policy-{uuid.uuid4().hex[:8]}@example.com"
    with connect(gateway, sub) as conn, ThreadPoolExecutor(1) as pool:
        run = pool.submit(conn.execute, "DO $$ BEGIN PERFORM 1; END $$")
        (request,) = pending_requests(gateway, sub)
        assert request.rule == "opaque" and "DO runs a code block the gateway cannot see into" in request.why
        bob = gateway.token(sub="bob@example.com", groups=("approvers",))
        reply = decide(gateway, request, bob, "deny", reason="not without reading it")
        assert reply.refused is None
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as err:
            run.result(timeout=30)
    assert "was denied by bob@example.com: not without reading it" in str(err.value)
    (event,) = blocked_events(gateway, sub, 1)
    assert event["policy"]["rule"] == "opaque"  # type: ignore[index]
    assert event["data"]["reason"] == "approval_denied"  # type: ignore[index]


def test_statement_boundaries_follow_standard_conforming_strings(gateway: GatewayEndpoint) -> None:
    """With standard_conforming_strings off (here a role default, which the gateway learns from the
    server), ``'x\\''`` is the string ``x'``: the DROP after it is a statement of its own, which the gateway
    must see, instead of reading one long SELECT. (A SET of it in the session is itself held by the policy
    as opaque, and so is a backslash in a plain string.)"""
    sub = f"policy-{uuid.uuid4().hex[:8]}@example.com"
    with superuser(gateway) as admin:
        admin.execute("ALTER ROLE pcigate_ro SET standard_conforming_strings = off")
        admin.execute("ALTER ROLE pcigate_ro SET escape_string_warning = off")
        try:
            token = gateway.token(sub=sub, groups=("engineers",))  # engineers use pcigate_ro
            with psycopg.connect(gateway.dsn(token), connect_timeout=10, autocommit=True) as conn:
                assert conn.pgconn.parameter_status(b"standard_conforming_strings") == b"off"
                with ThreadPoolExecutor(1) as pool:  # simple protocol
                    run = pool.submit(conn.pgconn.exec_, b"SELECT 'x\\''; DROP TABLE cards; --'")
                    # the opaque SELECT waits for a person, ended where the server ends it
                    (request,) = pending_requests(gateway, sub)
                    held = request.statement.text.lower()
                    assert held.startswith("select") and "drop" not in held
                    decide(
                        gateway, request, gateway.token(sub="bob@example.com", groups=("approvers",)), "deny"
                    )
                    result = run.result(timeout=30)
                assert result.error_field(psycopg.pq.DiagnosticField.SQLSTATE) == b"42501"
                assert conn.execute("SELECT count(*) > 0 FROM cards").fetchone() == (True,)
        finally:
            admin.execute("ALTER ROLE pcigate_ro RESET standard_conforming_strings")
            admin.execute("ALTER ROLE pcigate_ro RESET escape_string_warning")
    # The backslash string itself is held as opaque; what matters is where the gateway ended it: the
    # refused statement is the SELECT alone, not one long SELECT that swallowed the DROP.
    (event,) = blocked_events(gateway, sub, 1)
    text = event["data"]["statement"]["text"].lower()  # type: ignore[index]
    assert text.startswith("select") and "drop" not in text


def test_client_encodings_the_lexer_cannot_follow_are_refused(gateway: GatewayEndpoint) -> None:
    """In SJIS a character's second byte may be a backslash or quote: statements could end where the
    gateway does not see them end. Such sessions are refused; a startup search_path is not passed on."""
    token = gateway.token(sub="enc@example.com", groups=ADMINS)
    with pytest.raises(psycopg.OperationalError) as err:
        psycopg.connect(gateway.dsn(token, client_encoding="SJIS"), connect_timeout=10)
    assert "client_encoding SJIS is not supported" in str(err.value)

    async def search_path() -> str:
        conn = await asyncpg.connect(gateway.url(token), ssl=False, server_settings={"search_path": "evil"})
        try:
            return str(await conn.fetchval("SELECT current_setting('search_path')"))
        finally:
            await conn.close()

    assert asyncio.run(search_path()) != "evil"


# --- every kind of rule, through psql (simple protocol) and psycopg (extended), on a gateway of its own ---
#
# Each case runs through both clients; a refused one must come back as SQLSTATE 42501 with the rule's
# message, leave no trace (its ``then`` statement, run next in the same session, and its ``probe``, run
# directly against PostgreSQL as the superuser, must say true), and be recorded as ``command.blocked`` naming
# the rule and the gateway's policy version, with no ``command.executed`` of it. The fixture lets the
# upstream role do what the refused statements would do (SET ROLE to a probe role, COPY TO PROGRAM, ALTER
# SYSTEM SET work_mem, create a trusted extension as the database owner), so "it did not run" is the
# gateway's doing (SET SESSION AUTHORIZATION is the exception: only a superuser could).

PROBE = "public.pcigate_policy_probe"  # a table only these tests write: (tag text)
PROBE_CALL = "public.pcigate_policy_probe_add"  # a procedure that inserts its argument into PROBE
PROBE_ROLE = "pcigate_policy_probe_role"  # pcigate_rw may SET ROLE to it while the module runs
PROBE_EXTENSION = "tcn"  # a trusted extension: the database owner (pcigate_rw) may create it
PROGRAM_FILE = f"/tmp/pcigate-policy-probe-{uuid.uuid4().hex[:12]}"  # what COPY TO PROGRAM would create
AGENT_PRINCIPAL = "carol@example.com"


def _tagged(tag: str, present: bool) -> str:
    return f"SELECT {'' if present else 'NOT '}EXISTS (SELECT FROM {PROBE} WHERE tag = '{tag}')"


# decided before the dev stack's rules (its no-destruction would take ALTER SYSTEM)
BEFORE_RULES: list[dict[str, object]] = [
    {"name": "no-alter-system", "match": {"conditions": ["alter_system"]}, "action": "block",
     "message": "ALTER SYSTEM changes the server for every database"},
]  # fmt: skip

KIND_RULES: list[dict[str, object]] = [
    {"name": "engineers-no-customers", "match": {"groups": ["engineers"], "tables": ["public.customers"]},
     "action": "block", "message": "engineers do not read customer records"},
    {"name": "no-cvv", "match": {"columns": ["public.cards.cvv"]}, "action": "block"},
    {"name": "no-server-files", "match": {"functions": ["pg_read_file"]}, "action": "block"},
    {"name": "where-required", "match": {"statements": ["write"], "conditions": ["no_where"]},
     "action": "block"},
    {"name": "night-shift", "match": {"groups": ["night-shift"], "time": {}}, "action": "block",
     "message": "no access in this time window"},
    {"name": "day-shift", "match": {"groups": ["day-shift"], "time": {"outside": True}}, "action": "block"},
    {"name": "auditors-masked", "match": {"groups": ["auditors"], "tables": ["public.transactions"]},
     "action": "mask"},
    {"name": "ci-reads", "match": {"groups": ["ci"], "statements": ["read"]}, "action": "allow"},
    {"name": "ci-nothing-else", "match": {"groups": ["ci"]}, "action": "block"},
    # kinds and rows_over
    {"name": "services-only-read", "match": {"kinds": ["service"], "statements": ["write", "copy_in"]},
     "action": "block", "message": "service identities only read"},
    {"name": "agents-read-little", "match": {"kinds": ["agent"], "tables": ["public.transactions"],
     "rows_over": 20}, "action": "block", "message": "agents read at most 20 transactions at a time"},
    # conditions
    {"name": "no-programs", "match": {"conditions": ["copy_program"]}, "action": "block",
     "message": "COPY ... PROGRAM runs a program on the database server"},
    {"name": "no-set-role", "match": {"conditions": ["set_role"]}, "action": "block"},
    {"name": "no-session-authorization", "match": {"conditions": ["set_session_authorization"]},
     "action": "block", "message": "sessions keep the identity they logged in with"},
    {"name": "no-extensions", "match": {"conditions": ["create_extension"]}, "action": "block",
     "message": "extensions are installed by migrations"},
    # statement classes (each for a group of its own, so that they do not decide each other's cases)
    {"name": "no-bulk-loads", "match": {"groups": ["no-copy-in"], "statements": ["copy_in"]},
     "action": "block"},
    {"name": "no-exports", "match": {"groups": ["no-copy-out"], "statements": ["copy_out"]},
     "action": "block", "message": "no bulk exports"},
    {"name": "no-calls", "match": {"groups": ["no-calls"], "statements": ["function_call"]},
     "action": "block"},
    {"name": "autocommit-only", "match": {"groups": ["no-transactions"], "statements": ["transaction"]},
     "action": "block", "message": "explicit transactions hold locks; run statements one at a time"},
    {"name": "no-ddl", "match": {"groups": ["no-ddl"], "statements": ["ddl"]}, "action": "block"},
    {"name": "no-dcl", "match": {"groups": ["no-dcl"], "statements": ["dcl"]}, "action": "block",
     "message": "privileges are granted by migrations"},
]  # fmt: skip

# Zones far from UTC; the fixture picks one where it is now between 03:00 and 21:00, so that a window of an
# hour either side of now, and "today", hold for the whole module whatever the time of day.
WINDOW_ZONES = ("Asia/Kathmandu", "Pacific/Kiritimati", "America/St_Johns", "Pacific/Marquesas")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def window_rules(now: datetime) -> list[dict[str, object]]:
    """Time windows around ``now`` in a zone of :data:`WINDOW_ZONES`: the hours around now there (which in
    UTC, at the same clock times, do not hold now), and every day but today there (and its inverse)."""
    zone = next(z for z in WINDOW_ZONES if 3 <= now.astimezone(ZoneInfo(z)).hour < 21)
    local = now.astimezone(ZoneInfo(zone))
    start, end = (
        (local - timedelta(hours=1)).strftime("%H:%M"),
        (local + timedelta(hours=1)).strftime("%H:%M"),
    )
    today = DAYS[local.weekday()]
    others = [d for d in DAYS if d != today]
    return [
        {"name": "window-here", "match": {"groups": ["window-here"],
         "time": {"tz": zone, "days": [today], "start": start, "end": end}},
         "action": "block", "message": "not during the maintenance window"},
        {"name": "window-utc", "match": {"groups": ["window-utc"],
         "time": {"tz": "UTC", "days": DAYS, "start": start, "end": end}}, "action": "block"},
        {"name": "window-other-days", "match": {"groups": ["window-other-days"],
         "time": {"tz": zone, "days": others}}, "action": "block"},
        {"name": "window-not-other-days", "match": {"groups": ["window-not-other-days"],
         "time": {"tz": zone, "days": others, "outside": True}}, "action": "block"},
    ]  # fmt: skip


@dataclass(frozen=True)
class Case:
    groups: tuple[str, ...]
    sql: str
    rule: str | None  # the rule that refuses it ("opaque": opaque_action); None: it runs
    kind: str = "human"
    then: str | None = None  # run next in the same session (after a refusal too): must return true
    probe: str | None = None  # run as the superuser after both clients: must return true
    stdin: str | None = None  # COPY ... FROM STDIN: the rows


ADMIN = ("payments-admins",)  # upstream role pcigate_rw, the owner of the payments database
PROGRAM = f"COPY (SELECT 1) TO PROGRAM 'touch {PROGRAM_FILE}'"
NO_FILE = f"SELECT pg_stat_file('{PROGRAM_FILE}', true) IS NULL"
AUTO_CONF = (
    "SELECT NOT EXISTS (SELECT FROM pg_file_settings WHERE name = 'work_mem' "
    "AND sourcefile LIKE '%postgresql.auto.conf')"
)
EXPORT = "COPY (SELECT txn_id FROM transactions ORDER BY txn_id LIMIT 3) TO STDOUT"

CASES = [
    Case(("engineers",), "SELECT full_name FROM customers LIMIT 1", "engineers-no-customers"),
    Case(("payments-admins",), "SELECT full_name FROM customers LIMIT 1", None),
    Case(("engineers",), "SELECT cvv FROM cards LIMIT 1", "no-cvv"),
    Case(("engineers",), "SELECT brand FROM cards LIMIT 1", None),
    Case(("engineers",), "SELECT pg_read_file('/etc/hostname')", "no-server-files"),
    # refused before PostgreSQL sees it, in either protocol: else its Parse would fail with 42P01
    Case(("engineers",), "SELECT pg_read_file('/etc/hostname') FROM no_such_table", "no-server-files"),
    Case(("payments-admins",), "UPDATE transactions SET status = status", "where-required"),
    Case(("payments-admins",), "UPDATE transactions SET status = status WHERE txn_id = 1", None),
    Case(("engineers", "night-shift"), "SELECT 1", "night-shift"),
    Case(("engineers", "day-shift"), "SELECT 1", None),
    Case(("ci",), "SELECT count(*) FROM transactions", None),
    Case(("ci",), "SET work_mem = '8MB'", "ci-nothing-else",
         then="SELECT current_setting('work_mem') <> '8MB'"),
    # kinds
    Case(ADMIN, f"INSERT INTO {PROBE} (tag) VALUES ('service')", "services-only-read", kind="service",
         then=_tagged("service", False)),
    Case(ADMIN, f"INSERT INTO {PROBE} (tag) VALUES ('human')", None, then=_tagged("human", True)),
    # rows_over
    Case(("agents",), "SELECT txn_id FROM transactions ORDER BY txn_id LIMIT 21", "agents-read-little",
         kind="agent"),
    Case(("agents",), "SELECT txn_id FROM transactions ORDER BY txn_id LIMIT 20", None, kind="agent"),
    # conditions
    Case(ADMIN, PROGRAM, "no-programs", probe=NO_FILE),
    Case(ADMIN, f"SET ROLE {PROBE_ROLE}", "no-set-role", then="SELECT current_user = 'pcigate_rw'"),
    Case(ADMIN, "SET SESSION AUTHORIZATION pcigate_ro", "no-session-authorization",
         then="SELECT session_user = 'pcigate_rw' AND current_user = 'pcigate_rw'"),
    Case(ADMIN, f"CREATE EXTENSION {PROBE_EXTENSION}", "no-extensions",
         then=f"SELECT NOT EXISTS (SELECT FROM pg_extension WHERE extname = '{PROBE_EXTENSION}')"),
    Case(ADMIN, "ALTER SYSTEM SET work_mem = '8MB'", "no-alter-system", probe=AUTO_CONF),
    # statement classes
    Case((*ADMIN, "no-copy-in"), f"COPY {PROBE} (tag) FROM STDIN", "no-bulk-loads", stdin="copy-in\n",
         then=_tagged("copy-in", False)),
    Case(ADMIN, f"COPY {PROBE} (tag) FROM STDIN", None, stdin="copy-in-ok\n",
         then=_tagged("copy-in-ok", True)),
    Case(("engineers", "no-copy-out"), EXPORT, "no-exports"),
    Case(("engineers",), EXPORT, None),
    Case((*ADMIN, "no-calls"), f"CALL {PROBE_CALL}('call')", "no-calls", then=_tagged("call", False)),
    Case(ADMIN, f"CALL {PROBE_CALL}('call-ok')", None, then=_tagged("call-ok", True)),
    Case((*ADMIN, "no-transactions"), "BEGIN", "autocommit-only",
         then="SELECT now() = statement_timestamp()"),
    Case(ADMIN, "BEGIN", None, then="SELECT now() < statement_timestamp()"),
    Case((*ADMIN, "no-ddl"), "CREATE TABLE public.pcigate_policy_probe_no (x int)", "no-ddl",
         then="SELECT to_regclass('public.pcigate_policy_probe_no') IS NULL"),
    Case(ADMIN, "CREATE TABLE IF NOT EXISTS public.pcigate_policy_probe_ok (x int)", None,
         then="SELECT to_regclass('public.pcigate_policy_probe_ok') IS NOT NULL"),
    Case((*ADMIN, "no-dcl"), f"GRANT INSERT ON {PROBE} TO pcigate_ro", "no-dcl",
         then=f"SELECT NOT has_table_privilege('pcigate_ro', '{PROBE}', 'INSERT')"),
    # opaque statements, with opaque_action: block: refused at once, not held
    Case(ADMIN, f"DO $$ BEGIN INSERT INTO {PROBE} (tag) VALUES ('do'); END $$", "opaque",
         then=_tagged("do", False)),
    # time windows computed around now (window_rules)
    Case(("engineers", "window-here"), "SELECT 1", "window-here"),
    Case(("engineers", "window-utc"), "SELECT 1", None),
    Case(("engineers", "window-other-days"), "SELECT 1", None),
    Case(("engineers", "window-not-other-days"), "SELECT 1", "window-not-other-days"),
]  # fmt: skip


@pytest.fixture(scope="module")
def probe_objects(gateway: GatewayEndpoint) -> Iterator[None]:
    """The probe table, procedure and role, and the privileges that let pcigate_rw do what the refused
    statements would do; all taken back at the end."""
    cleanup = [
        "ALTER SYSTEM RESET work_mem",
        "REVOKE ALTER SYSTEM ON PARAMETER work_mem FROM pcigate_rw",
        "REVOKE pg_execute_server_program FROM pcigate_rw",
        f"DROP EXTENSION IF EXISTS {PROBE_EXTENSION}",
        "DROP TABLE IF EXISTS public.pcigate_policy_probe_no, public.pcigate_policy_probe_ok",
        f"DROP PROCEDURE IF EXISTS {PROBE_CALL}(text)",
        f"DROP TABLE IF EXISTS {PROBE}",
        f"DROP ROLE IF EXISTS {PROBE_ROLE}",
    ]
    with superuser(gateway) as admin:
        for sql in cleanup:  # what an interrupted run may have left
            admin.execute(sql)
        admin.execute(f"CREATE TABLE {PROBE} (tag text NOT NULL)")
        admin.execute(f"ALTER TABLE {PROBE} OWNER TO pcigate_rw")
        admin.execute(f"GRANT SELECT ON {PROBE} TO pcigate_ro")
        body = f"INSERT INTO {PROBE} (tag) VALUES (t)"
        admin.execute(f"CREATE PROCEDURE {PROBE_CALL}(t text) LANGUAGE sql AS $$ {body} $$")
        admin.execute(f"ALTER PROCEDURE {PROBE_CALL}(text) OWNER TO pcigate_rw")
        admin.execute(f"CREATE ROLE {PROBE_ROLE} NOLOGIN")
        admin.execute(f"GRANT {PROBE_ROLE} TO pcigate_rw")
        admin.execute("GRANT pg_execute_server_program TO pcigate_rw")
        admin.execute("GRANT ALTER SYSTEM ON PARAMETER work_mem TO pcigate_rw")
        try:
            yield
        finally:
            for sql in cleanup:
                admin.execute(sql)
            admin.execute("SELECT pg_reload_conf()")
            if os.path.exists(PROGRAM_FILE):
                os.unlink(PROGRAM_FILE)


@dataclass(frozen=True)
class KindsGateway:
    gw: GatewayEndpoint
    policy_version: str  # of its config, as its events carry it


@pytest.fixture(scope="module")
def kinds(
    dev_stack: dict[str, Any],
    gateway: GatewayEndpoint,
    probe_objects: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[KindsGateway]:
    """A gateway with :data:`BEFORE_RULES`, the dev stack's rules, :data:`KIND_RULES` and the time windows
    around now, whose opaque statements are refused (``opaque_action: block``) instead of held."""
    rules = [*KIND_RULES, *window_rules(datetime.now(UTC))]
    with private_policy_gateway(
        dev_stack["config"], gateway, tmp_path_factory.mktemp("kinds"), before=BEFORE_RULES, after=rules,
        policy={"opaque_action": "block"},
    ) as (gw, path):  # fmt: skip
        version = load_config(path).policy_version()
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", version), version
        assert version != load_config(Path(dev_stack["config"])).policy_version()
        sub = f"kinds-{uuid.uuid4().hex[:8]}@example.com"
        with connect(gw, sub) as conn:
            conn.execute("SELECT 1")
        (executed,) = command_events(gw, sub, executed=1)
        assert executed["policy"]["version"] == version  # what this gateway's events carry
        yield KindsGateway(gw, version)


@pytest.fixture(scope="module")
def kinds_gateway(kinds: KindsGateway) -> GatewayEndpoint:
    return kinds.gw


def command_events(
    gw: GatewayEndpoint, sub: str, *, blocked: int = 0, executed: int = 0
) -> list[dict[str, Any]]:
    """``sub``'s command.blocked and command.executed events, once there are as many as given of each."""

    def enough(found: list[dict[str, Any]]) -> bool:
        kinds = [e["type"] for e in found]
        return kinds.count("command.blocked") >= blocked and kinds.count("command.executed") >= executed

    return asyncio.run(
        audit_events(
            gw.nats_url,
            lambda e: e["type"] in ("command.blocked", "command.executed") and e["actor"]["sub"] == sub,
            until=enough,
        )
    )


def expected_message(case: Case) -> str:
    """The primary message of the ErrorResponse that refuses ``case``."""
    if case.rule == "opaque":
        return "pcigate: this statement is not allowed here"  # then the reason, see the test
    rules = [*BEFORE_RULES, *KIND_RULES, *window_rules(datetime.now(UTC))]  # messages do not vary with now
    rule = next(r for r in rules if r["name"] == case.rule)
    text = rule.get("message") or "this statement is not allowed here"
    return f"pcigate: {text} (policy rule {case.rule})"


def run_psql(gw: GatewayEndpoint, token: str, sub: str, case: Case) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PGPASSWORD": token, "PGSSLMODE": "disable"}
    argv = [psql_path(), "-X", "-q", "-At", "-v", "VERBOSITY=verbose", "-h", gw.host, "-p", str(gw.port),
            "-U", sub, "-d", gw.database, "-c", case.sql]  # fmt: skip
    if case.then is not None:
        argv += ["-c", case.then]  # the same session; psql goes on after an error without ON_ERROR_STOP
    return subprocess.run(
        argv, env=env, input=case.stdin or "", capture_output=True, text=True, timeout=60, check=False
    )


def run_psycopg(gw: GatewayEndpoint, token: str, case: Case) -> tuple[list[str], bool | None]:
    """The errors (``SQLSTATE message``) of running the case (COPY: with ``copy()``, the only way psycopg
    runs one, in the simple protocol; a refused COPY also in the extended one), and its ``then``."""
    errors: list[str] = []
    with psycopg.connect(gw.dsn(token), connect_timeout=10, autocommit=True) as conn:
        if not case.sql.startswith("COPY"):
            attempts = ["extended"]
        elif case.rule is None:
            attempts = ["copy"]  # a COPY that runs: psycopg runs it only through copy()
        else:
            attempts = ["copy", "extended"]  # refused in both protocols (in the extended one at its Parse)
        for how in attempts:
            try:
                if how == "copy":
                    with conn.cursor() as cur, cur.copy(case.sql) as copy:
                        if case.stdin is not None:
                            copy.write(case.stdin)
                        else:
                            assert [bytes(b) for b in copy], "COPY TO returned no data"
                else:
                    conn.execute(case.sql, prepare=True)  # the extended protocol: Parse/Bind/Execute
            except psycopg.Error as exc:
                assert exc.diag.message_primary is not None
                errors.append(f"{exc.sqlstate} {exc.diag.message_primary}")
        then = conn.execute(case.then).fetchone() if case.then is not None else None
    return errors, None if then is None else bool(then[0])


@pytest.mark.parametrize("case", CASES, ids=[f"{c.rule or 'allowed'}-{i}" for i, c in enumerate(CASES)])
def test_each_kind_of_rule_decides_with_psql_and_psycopg(kinds: KindsGateway, case: Case) -> None:
    gw = kinds.gw
    sub = f"kinds-{uuid.uuid4().hex[:8]}@example.com"
    principal = {"on_behalf_of": AGENT_PRINCIPAL} if case.kind == "agent" else {}
    token = gw.token(sub=sub, groups=case.groups, kind=case.kind, **principal)
    simple = run_psql(gw, token, sub, case)
    errors, then = run_psycopg(gw, token, case)
    if case.then is not None:
        assert simple.stdout.splitlines()[-1:] == ["t"], (simple.stdout, simple.stderr)
        assert then is True
    if case.probe is not None:
        with superuser(gw) as admin:
            assert admin.execute(case.probe).fetchone() == (True,), case.probe
    if case.rule is None:
        assert "ERROR" not in simple.stderr, simple.stderr
        assert errors == []
        return

    message = expected_message(case)
    assert f"ERROR:  42501: {message}" in simple.stderr, simple.stderr
    extra = [line for line in simple.stdout.splitlines() if line != "t"]
    assert extra == [], "a refused statement returned rows"
    assert errors and all(e.startswith(f"42501 {message}") for e in errors), errors
    if case.rule == "opaque":  # the reason the gateway cannot see into it
        reason = statement_facts(case.sql).opaque
        assert reason is not None and reason in simple.stderr and all(reason in e for e in errors)
    refused = 1 + len(errors)  # psql's, and psycopg's
    events = command_events(gw, sub, blocked=refused, executed=2 if case.then else 0)
    blocked = [e for e in events if e["type"] == "command.blocked"]
    assert len(blocked) == refused
    for event in blocked:
        assert event["policy"] == {"version": kinds.policy_version, "rule": case.rule}
        assert event["outcome"]["result"] == "blocked" and event["outcome"]["code"] == "42501"
        assert message in event["outcome"]["message"]
        assert event["data"]["reason"] == ("parse_error" if case.rule == "opaque" else "policy_rule")
        assert event["data"]["statement"]["text"] == case.sql
    executed = [e for e in events if e["type"] == "command.executed"]
    assert all(e["data"]["statement"]["text"] == case.then for e in executed)  # only the follow-up ran
    assert all(e["policy"]["version"] == kinds.policy_version for e in executed)


def test_a_mask_rule_hides_every_value_it_returns(kinds_gateway: GatewayEndpoint) -> None:
    gw = kinds_gateway
    token = gw.token(sub="auditor@example.com", groups=("engineers", "auditors"))
    with psycopg.connect(gw.dsn(token), connect_timeout=10, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT merchant, amount_cents FROM transactions ORDER BY txn_id LIMIT 3"
        ).fetchall()
        assert len(rows) == 3
        assert all(
            m is not None and "*" in m and not any(c.isalnum() for c in m) and a is None for m, a in rows
        )
        plain = conn.execute("SELECT brand FROM cards ORDER BY card_id LIMIT 1").fetchone()
        assert plain is not None and plain[0].isalpha()  # what the rule does not name is not masked


def test_a_mask_rule_hides_every_value_it_returns_with_psql(kinds: KindsGateway) -> None:
    gw = kinds.gw
    sub = f"auditor-{uuid.uuid4().hex[:8]}@example.com"
    env = {
        **os.environ,
        "PGPASSWORD": gw.token(sub=sub, groups=("engineers", "auditors")),
        "PGSSLMODE": "disable",
    }
    argv = [psql_path(), "-X", "-At", "-F", "|", "-h", gw.host, "-p", str(gw.port), "-U", sub,
            "-d", gw.database,
            "-c", "SELECT merchant, amount_cents FROM transactions ORDER BY txn_id LIMIT 3",
            "-c", "SELECT brand FROM cards ORDER BY card_id LIMIT 1"]  # fmt: skip
    run = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=True)
    *masked, brand = run.stdout.splitlines()
    assert len(masked) == 3
    for line in masked:
        merchant, amount = line.split("|")
        assert "*" in merchant and not any(c.isalnum() for c in merchant)
        assert amount == ""  # a number masked is NULL
    assert brand.isalpha()  # what the rule does not name is not masked
    (executed, _) = command_events(gw, sub, executed=2)
    assert executed["policy"] == {"version": kinds.policy_version, "rule": "auditors-masked"}
    (applied,) = events_for(
        gw.nats_url,
        lambda e: e["type"] == "masking.applied" and e["actor"]["sub"] == sub,
        1,
    )
    assert {loc["detector"] for loc in applied["data"]["locations"]} == {"custom_rule"}
    assert applied["data"]["command_event_id"] == executed["id"]
