"""Statement splitting and classification against a real PostgreSQL, on adversarial Query strings.

For every string of the corpus the server itself says where its statements are: the session runs with
``debug_print_parse`` on and ``client_min_messages = log``, so before it runs a statement the server sends
that statement's parse tree, whose top-level ``:stmt_location`` / ``:stmt_len`` are the byte range of the
statement in the Query string. libpq reads ahead and calls its notice handler out of order with the
results, so the test lets psycopg's libpq connect and authenticate, then speaks the simple-query protocol
on the socket itself and sees every message in wire order: a statement's parse tree, then its
CommandComplete or ErrorResponse.

What is compared, for ``split_statements(sql, standard_conforming_strings=...)`` and each string:

1. An EmptyQueryResponse (and only that) when the split is ``[]``.
2. The text of every statement the server parsed and began to run equals the split's statement at that
   index (both stripped of surrounding whitespace, and compared from their first token: PostgreSQL 18
   starts a statement after the comments in front of it, earlier releases right after the ``;`` before
   it): the count and the order and the text.
3. When the server ran everything without an error, the split has exactly as many statements.
4. Replaying the split's statements one Query at a time on a fresh session gives the same command tags,
   rows and error (SQLSTATE, message, position mapped back into the whole string) as the whole string.
5. When the server stopped at an error in a statement it never began to run (a syntax error anywhere
   makes it reject the whole string; an error in parse analysis stops it at that statement), the error's
   position lies in one of the split's statements, at the ``;`` ending it or at the end of the input
   (never in what the split took for whitespace, comments or empty statements), and that statement fails
   with the same error at the same position: run alone as the text from its start to the next statement's
   (a syntax error, or analysis of the first statement), or after the statements before it (an analysis
   error later on). So the split of a rejected string lexes like the server up to the point of failure.
6. ``analyze(statement).kind`` and ``.first_keyword`` agree with the server's command tag.

Each corpus entry also records what the server answers (``expect``), so a case that stops testing what it
documents (say a new release accepting it) fails instead of passing silently. A second test puts 200 more
strings together at random (fixed seed) from the same kinds of pieces. All objects are temporary and every
string runs on fresh sessions, so nothing outlives a case. The server is the test stack's PostgreSQL (the
``dev_stack`` fixture starts it on a free port), as its superuser; the tests fail rather than skip without it.
"""

from __future__ import annotations

import os
import random
import re
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from psycopg import pq

from gateway.sqltext import analyze, split_statements, split_statements_counted
from pcigate.devstack.layout import Layout

pytestmark = pytest.mark.integration

_WS = " \t\n\r\f\v"
_TREE_LOCATION = re.compile(r":stmt_location\s+(-?\d+)\s+:stmt_len\s+(\d+)")
_TRAILING_WS = re.compile(r'[ \t\n\r\f\v]+"$')


# ------------------------------------------------------------------------------------------- corpus


@dataclass(frozen=True)
class Case:
    sql: str
    expect: str  # what the server answers: "3" statements completed, "1+E" one then an error, "E", "empty"
    scs: bool = True  # standard_conforming_strings of the session
    note: str = ""
    min_version: int = 0  # server_version_num the behaviour needs


C = Case
_F = "CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql"

CORPUS: list[Case] = [
    # ---- statement separation, empty statements, trailing statements
    C("SELECT 'a'; SELECT 'b'", "2", note="two"),
    C("SELECT 'a';;SELECT 'b';", "2", note="empty-between"),
    C(";SELECT 'a';;;SELECT 'b'", "2", note="leading-semicolon"),
    C(";;", "empty", note="only-semicolons"),
    C("", "empty", note="empty-string"),
    C("  \n\t\f ", "empty", note="only-whitespace"),
    C("-- only ; a comment", "empty", note="only-line-comment"),
    C("/* ; */ ; /* ; /* ; */ ; */", "empty", note="only-block-comments"),
    C("SELECT 'no semicolon at the end'", "1", note="trailing-no-semicolon"),
    C("SELECT 'a' -- ; trailing", "1", note="trailing-comment"),
    C("SELECT 'a'; -- ;\n SELECT 'b' -- ;", "2", note="comment-between"),
    C("; ".join(f"SELECT 's{i}'" for i in range(20)), "20", note="twenty"),
    C("SELECT (1); (SELECT 2); ((SELECT 3))", "3", note="parenthesized"),
    C("SELECT 1;\fSELECT 2\f", "2", note="form-feed"),
    C("SELECT 1;\vSELECT 2", "2", note="vertical-tab", min_version=160000),
    # ---- single-quoted strings, both settings of standard_conforming_strings
    C("SELECT 'a;b'; SELECT 'c'", "2", note="semicolon-in-string"),
    C("SELECT 'it''s; ok'; SELECT ''';'''", "2", note="doubled-quotes"),
    C("SELECT 'a'\n'b;c'; SELECT 2", "2", note="continuation"),
    C("SELECT 'a' -- c ; ' \n  'b;'; SELECT 2", "2", note="continuation-over-comment"),
    C("SELECT 'a' 'b;'; SELECT 2", "E", note="no-continuation-without-newline"),
    C(r"SELECT 'a\'; SELECT 2; --'", "2", note="backslash-plain-scs-on"),
    C(r"SELECT 'a\'; SELECT 2; --'", "1", scs=False, note="backslash-plain-scs-off"),
    C(r"SELECT 'a\\'; SELECT 'b'", "2", scs=False, note="double-backslash-scs-off"),
    C(r"SELECT 'x\'y', 'a''b\'\'c'; SELECT 2", "2", scs=False, note="escaped-quotes-scs-off"),
    C(r"SELECT '\\'; SELECT '\'", "2", note="backslashes-scs-on"),
    C(r"SELECT N'a\'; SELECT 2; --'", "1", scs=False, note="national-scs-off"),
    C(r"SELECT N'a\'; SELECT 2", "2", note="national-scs-on"),
    C("SELECT 'a'\n'\\'; SELECT 2; --'", "1", scs=False, note="continuation-scs-off"),
    C(r"SELECT 'a' AS e; SELECT 'b\'", "2", note="e-alias-then-plain"),
    C("SELECT 'a;b'; SELECT 'c'", "2", scs=False, note="semicolon-in-string-scs-off"),
    # ---- E'' strings
    C(r"SELECT E'\';'; SELECT 2", "2", note="e-escaped-quote"),
    C(r"SELECT E'\\'; SELECT 'x'", "2", note="e-escaped-backslash"),
    C(r"SELECT e'a\\\';b'; SELECT 2", "2", note="e-backslashes-then-quote"),
    C(r"SELECT E'\x3B', E'\073', E'\u003B'; SELECT 2", "2", note="e-numeric-escapes"),
    C("SELECT E'a'\n'\\';'; SELECT 2", "2", note="e-continuation-keeps-escapes"),
    C("SELECT E'a' -- c\n '\\';'; SELECT 2", "2", note="e-continuation-over-comment"),
    C(r"SELECT E'\\\\' AS x; SELECT ';'", "2", note="e-four-backslashes"),
    C(r"SELECT E'\'' || ';'; SELECT 2", "2", note="e-quote-then-concat"),
    C(r"SELECT text E'\';'; SELECT 2", "2", note="typed-e-literal"),
    C(r"SELECT E'\';'; SELECT 2", "2", scs=False, note="e-escaped-quote-scs-off"),
    # ---- bit and hex strings
    C("SELECT B'10', X'1F';", "1", note="bit-hex"),
    C("SELECT B'1'\n'0' AS b; SELECT X'A'\n'B' AS x", "2", note="bit-hex-continuation"),
    C("SELECT B'1'\n'0' AS b; SELECT X'A'\n'B' AS x", "2", scs=False, note="bit-hex-continuation-scs-off"),
    # the continuation of a bit string takes no backslash escapes, even with the setting off
    C("SELECT B'1'\n'\\' AS b; SELECT 'y'; -- '", "E", scs=False, note="bit-continuation-backslash-scs-off"),
    # ---- Unicode escapes
    C(r"SELECT U&'\0041;'; SELECT U&'d!0061t;' UESCAPE '!'; SELECT 3", "3", note="unicode-strings"),
    C('SELECT 1 AS U&"a;\\0042""c"; SELECT 2', "2", note="unicode-identifier"),
    C("SELECT U&'a;b' UESCAPE ';'; SELECT 2", "E", note="uescape-semicolon"),
    C("SELECT U&'x;'; SELECT 2", "E", scs=False, note="unicode-string-scs-off"),
    # ---- quoted identifiers
    C('SELECT 1 AS "a;""b"; SELECT 2 AS ";"', "2", note="identifier-semicolon"),
    C('SELECT 1 AS "--", 2 AS "/*"; SELECT 3 AS "*/"', "2", note="identifier-comment-marks"),
    C('SELECT 1 AS "a\\"; SELECT 2', "2", scs=False, note="identifier-backslash-scs-off"),
    C('SELECT 1 AS "$$"; SELECT $$"$$', "2", note="identifier-dollars"),
    C('SELECT 1 AS """"; SELECT 2', "2", note="identifier-only-quote"),
    C('SELECT 1 AS "x""y;" -- "\n; SELECT 2', "2", note="identifier-then-comment"),
    # ---- dollar quotes
    C("SELECT $$a;b$$; SELECT $a$c;$$;d$a$", "2", note="dollar"),
    C("SELECT $x$ $$ ; $y$ ; $x$, 'z'; SELECT 2", "2", note="dollar-inner-tags"),
    C("SELECT $a$x$b$;$b$x$a$; SELECT 2", "2", note="dollar-nested-tags"),
    C("SELECT $a$;$A$;$a$; SELECT 2", "2", note="dollar-tag-case"),
    C("SELECT $é$;$é$; SELECT 2", "2", note="dollar-non-ascii-tag"),
    C("SELECT $_1$;$_1$; SELECT 2", "2", note="dollar-digit-tag"),
    C("SELECT $a$$$;$$$a$; SELECT 2", "2", note="dollar-dollars-inside"),
    C("SELECT $$$$; SELECT $a$$a$", "2", note="dollar-empty"),
    C("SELECT 1 AS a$b; SELECT 2 AS c$$", "2", note="identifier-with-dollar"),
    C("SELECT 1 AS x$a$; SELECT 2 AS y$a$", "2", note="identifier-like-tag"),
    C("SELECT $a$ -- $a$; SELECT 2", "2", note="dollar-holds-line-comment"),
    C("SELECT $a$ /* $a$; SELECT 2 -- */", "2", note="dollar-holds-block-comment"),
    C("SELECT $$'$$; SELECT '$$'", "2", note="dollar-and-quote"),
    C(r"SELECT $$\$$; SELECT 2", "2", scs=False, note="dollar-backslash-scs-off"),
    C("SELECT $1; SELECT 2", "E", note="parameter-in-simple-query"),
    # ---- comments
    C("SELECT /* /* */ ; */ 'a'; SELECT 2", "2", note="nested-comment"),
    C("SELECT /*/ ; */ 'a'; SELECT 2", "2", note="comment-slash"),
    C("SELECT /**/ 'a'; /* ;/* ; */*/ SELECT 2", "2", note="comment-stars"),
    C("SELECT 'a' /* -- */; SELECT 2", "2", note="block-holds-dashes"),
    C("SELECT 'a' -- /* \n; SELECT 2 -- */", "2", note="line-holds-block-start"),
    C("SELECT 1 +-- c ;\n 2; SELECT 3", "2", note="operator-then-line-comment"),
    C("SELECT 2 */* c ; */ 3; SELECT 4", "2", note="operator-then-block-comment"),
    C("SELECT 1 /* ' */; SELECT '/*'; SELECT 3 -- '", "3", note="quote-in-comment"),
    C("SELECT 1 -- c\r; SELECT 2", "2", note="carriage-return-ends-comment"),
    C("SELECT 1 ---; \n; SELECT 2", "2", note="three-dashes"),
    C("SELECT 1 /* a */* 2; SELECT 3", "2", note="comment-then-star"),
    C("SELECT 1; /* unterminated ; SELECT 2", "E", note="unterminated-comment"),
    C("SELECT 1; /* a /* b */ SELECT 2", "E", note="unterminated-nested-comment"),
    # ---- parentheses: rule actions
    C(
        "CREATE TEMP TABLE t (a int); CREATE TEMP TABLE u (a int); CREATE RULE r AS ON INSERT TO t DO ALSO"
        " (INSERT INTO u VALUES (NEW.a); INSERT INTO u VALUES (NEW.a + 1)); INSERT INTO t VALUES (1);"
        " SELECT count(*) FROM u",
        "5",
        note="rule-actions",
    ),
    C(
        "CREATE TEMP TABLE t (a int); CREATE RULE r AS ON UPDATE TO t"
        " DO INSTEAD (SELECT ';'; NOTIFY n, ';)'); SELECT 1",
        "3",
        note="rule-actions-literals",
    ),
    C("SELECT (1; SELECT 2)", "E", note="semicolon-in-parentheses"),
    C("SELECT 1); SELECT (2", "E", note="unbalanced-parentheses"),
    # ---- SQL-standard function bodies
    C(f"{_F} BEGIN ATOMIC SELECT 1; SELECT 2; END; SELECT pg_temp.f()", "2", note="atomic"),
    C(
        "CREATE OR REPLACE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql BEGIN ATOMIC"
        " SELECT CASE WHEN true THEN 1 ELSE 0 END; END; SELECT pg_temp.f()",
        "2",
        note="atomic-case",
    ),
    C(f"{_F} BEGIN ATOMIC SELECT 1 AS case; END; SELECT 'after'", "2", note="atomic-case-alias"),
    C(
        f"{_F} BEGIN ATOMIC SELECT 1 AS end; SELECT 2 AS case; END; SELECT 'after'; SELECT pg_temp.f()",
        "3",
        note="atomic-end-alias",
    ),
    C(
        f"{_F} BEGIN ATOMIC SELECT 1 AS x FROM (SELECT 1 AS case) s; END; SELECT 2",
        "2",
        note="atomic-case-col",
    ),
    C(
        f"{_F} SET begin.atomic = 1 RETURN 1; SELECT 'after'; SELECT pg_temp.f()",
        "3",
        note="set-begin-atomic",
    ),
    C(f"{_F} SET search_path = begin, atomic RETURN 1; SELECT 'after'", "2", note="set-begin-comma-atomic"),
    C("create procedure pg_temp.p() begin atomic select 1; end; call pg_temp.p()", "2", note="procedure"),
    C(
        "CREATE/**/OR/**/REPLACE/**/FUNCTION pg_temp.f() RETURNS int LANGUAGE sql"
        " BEGIN/**/ATOMIC/**/SELECT 1;/**/END/**/; SELECT 2",
        "2",
        note="atomic-comments",
    ),
    C(f"{_F} BEGIN ATOMIC ; ; SELECT 1; ; END; SELECT 2", "2", note="atomic-empty-statements"),
    C(f"{_F} BEGIN ATOMIC (SELECT 1); END; SELECT 2", "2", note="atomic-parenthesized"),
    C(
        "CREATE FUNCTION pg_temp.f(begin int, atomic int) RETURNS int LANGUAGE sql RETURN begin + atomic;"
        " SELECT pg_temp.f(1, 2)",
        "2",
        note="begin-atomic-parameters",
    ),
    C(f"{_F} RETURN CASE WHEN true THEN 1 END; SELECT pg_temp.f()", "2", note="return-case"),
    C(f"{_F} AS $$ SELECT 1; $$; SELECT pg_temp.f()", "2", note="dollar-body"),
    C(
        "CREATE FUNCTION pg_temp.f() RETURNS text LANGUAGE sql BEGIN ATOMIC"
        " SELECT 'x;' || $$;$$ || E'\\';' -- ;\n ; END; SELECT pg_temp.f()",
        "2",
        note="atomic-literals",
    ),
    C(
        f"{_F} BEGIN ATOMIC CREATE FUNCTION pg_temp.g() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END;"
        " SELECT 1; END; SELECT 'after'",
        "E",
        note="atomic-nested",
    ),
    C(
        "CREATE TEMP TABLE begin (atomic int); SELECT atomic FROM begin; SELECT 1 AS end",
        "3",
        note="not-routine",
    ),
    C("BEGIN ATOMIC; SELECT 1", "E", note="top-level-begin-atomic"),
    # ---- transaction control and other statement kinds
    C("BEGIN; SELECT 1; END", "3", note="begin-end"),
    C("START TRANSACTION; SELECT 1; COMMIT", "3", note="start-commit"),
    C("SET application_name = 'a;b'; SHOW application_name; RESET application_name", "3", note="session"),
    C("DO $$ BEGIN PERFORM 1; PERFORM ';'; END $$; SELECT 2", "2", note="do-block"),
    C("CREATE TEMP TABLE t AS SELECT 1 AS a; TABLE t; VALUES (1), (2)", "3", note="ctas-table-values"),
    C(
        "WITH x AS (SELECT 1) SELECT * FROM x; CREATE TEMP TABLE t (a int);"
        " WITH i AS (INSERT INTO t VALUES (1) RETURNING a) SELECT a FROM i; INSERT INTO t VALUES (2);"
        " UPDATE t SET a = 3 WHERE a = 2; DELETE FROM t WHERE a = 3",
        "6",
        note="dml",
    ),
    C("LISTEN ch; NOTIFY ch, 'a;b'; UNLISTEN ch", "3", note="listen-notify"),
    C("PREPARE p AS SELECT ';'; EXECUTE p; DEALLOCATE p", "3", note="prepare-execute"),
    C("BEGIN; DECLARE c CURSOR FOR SELECT ';'; FETCH c; CLOSE c; COMMIT", "5", note="cursor"),
    C("SELECT 1 AS a INTO TEMP TABLE s; SELECT * FROM s", "2", note="select-into"),
    C("CREATE TEMP VIEW v AS SELECT ';' AS x; SELECT * FROM v; DROP VIEW v", "3", note="view"),
    C(
        "CREATE TEMP TABLE t (a int); TRUNCATE t; ALTER TABLE t ADD COLUMN b text DEFAULT ';'; DROP TABLE t",
        "4",
        note="ddl",
    ),
    C("EXPLAIN (COSTS OFF) SELECT ';'", "1", note="explain"),
    C("BEGIN; SAVEPOINT s; RELEASE SAVEPOINT s; ABORT", "4", note="savepoint-abort"),
    C("BEGIN; SET TRANSACTION READ ONLY; SET LOCAL ROLE NONE; RESET ROLE; COMMIT", "5", note="set-role"),
    C("SET SESSION AUTHORIZATION DEFAULT; SHOW role", "2", note="session-authorization"),
    C(
        "CREATE TEMP TABLE t (a int); COMMENT ON TABLE t IS ';'; GRANT SELECT ON t TO PUBLIC;"
        " REVOKE SELECT ON t FROM PUBLIC; ANALYZE t; BEGIN; LOCK TABLE t IN SHARE MODE; COMMIT; DISCARD TEMP",
        "9",
        note="dcl-utility",
    ),
    C(
        "CREATE TEMP TABLE t (a int); MERGE INTO t USING (SELECT 1 AS a) s ON t.a = s.a"
        " WHEN NOT MATCHED THEN INSERT VALUES (s.a);"
        " WITH d AS (DELETE FROM t RETURNING a) SELECT count(*) FROM d",
        "3",
        note="merge",
        min_version=150000,
    ),
    # ---- errors: what ran, and where the server stopped
    C("SELECT 1; SELECT 1/0; SELECT 3", "1+E", note="runtime-error"),
    C("SELECT 1; SELECT nosuchcolumn; SELECT 3", "1+E", note="analysis-error"),
    C("SELECT 1; SELEC 2; SELECT 3", "E", note="syntax-error"),
    C("SELECT 1; SELECT 'unterminated", "E", note="unterminated-string"),
    C('SELECT 1; SELECT "unterminated', "E", note="unterminated-identifier"),
    C("SELECT 1; SELECT $q$ unterminated", "E", note="unterminated-dollar"),
    C("SELECT 1; SELECT (", "E", note="end-of-input"),
    C("SELECT 1; SELECT 1E'x'", "E", note="number-junk"),
    # ---- numbers, non-ASCII
    C("SELECT 1e3; SELECT .5; SELECT 1.e2", "3", note="numbers"),
    C("SELECT 'é' AS é$; SELECT 1 AS x\u00a0; SELECT 'ü;'", "3", note="non-ascii"),
]


def _case_id(i: int, case: Case) -> str:
    return f"{i:03d}-{case.note}"


# ----------------------------------------------------------------------------- the server, on the wire


@dataclass(frozen=True)
class Answer:
    """The server's answer to one statement of a Query."""

    tag: str | None = None  # CommandComplete
    rows: tuple[tuple[bytes | None, ...], ...] = ()
    error: tuple[str, str, int | None] | None = None  # SQLSTATE, message, position (1-based, characters)
    empty: bool = False  # EmptyQueryResponse
    # byte range of the statement in the Query, from its parse tree (the server began to run it)
    stmt: tuple[int, int] | None = field(default=None, compare=False)


def _fields(payload: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in payload.split(b"\0"):
        if part:
            out[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return out


class Wire:
    """One session. libpq connects and authenticates; then the test speaks the simple-query protocol on
    the socket itself, so it sees every message in the order the server sent it."""

    def __init__(self, conninfo: str) -> None:
        self._pg = pq.PGconn.connect(conninfo.encode())
        if self._pg.status != pq.ConnStatus.OK:
            message = self._pg.get_error_message()
            self._pg.finish()
            raise ConnectionError(message)
        self._sock = socket.socket(fileno=os.dup(self._pg.socket))
        self._sock.settimeout(15)
        self._buf = b""

    def close(self) -> None:
        self._sock.close()
        self._pg.finish()

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self._buf += chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def _messages(self) -> Iterator[tuple[bytes, bytes]]:
        while True:
            head = self._read(5)
            (length,) = struct.unpack("!I", head[1:])
            yield head[:1], self._read(length - 4)

    def query(self, sql: str) -> list[Answer]:
        body = sql.encode() + b"\0"
        self._sock.sendall(b"Q" + struct.pack("!I", len(body) + 4) + body)
        answers: list[Answer] = []
        rows: list[tuple[bytes | None, ...]] = []
        stmt: tuple[int, int] | None = None
        for typ, payload in self._messages():
            if typ == b"N":
                f = _fields(payload)
                # the first parse tree after the previous answer is the statement's own; later ones are
                # of statements it runs (functions, DO); the last location in a tree is its top level
                if f.get("M") == "parse tree:" and stmt is None:
                    found = _TREE_LOCATION.findall(f.get("D", ""))
                    assert found, f
                    stmt = (int(found[-1][0]), int(found[-1][1]))
            elif typ == b"T":
                rows = []
            elif typ == b"D":
                (count,) = struct.unpack("!H", payload[:2])
                pos = 2
                row: list[bytes | None] = []
                for _ in range(count):
                    (size,) = struct.unpack("!i", payload[pos : pos + 4])
                    pos += 4
                    if size < 0:
                        row.append(None)
                    else:
                        row.append(payload[pos : pos + size])
                        pos += size
                rows.append(tuple(row))
            elif typ == b"C":
                answers.append(Answer(tag=payload.rstrip(b"\0").decode(), rows=tuple(rows), stmt=stmt))
                rows, stmt = [], None
            elif typ == b"E":
                f = _fields(payload)
                position = int(f["P"]) if "P" in f else None
                answers.append(Answer(error=(f["C"], f["M"], position), stmt=stmt))
                rows, stmt = [], None
            elif typ == b"I":
                answers.append(Answer(empty=True))
            elif typ == b"Z":
                return answers
            elif typ in (b"G", b"H", b"W"):
                raise AssertionError("COPY is not supported by this test")
            # S ParameterStatus, A NotificationResponse: nothing to compare
        raise AssertionError("unreachable: the messages end only with the connection")

    def ok(self, sql: str) -> None:
        answers = self.query(sql)
        assert all(a.error is None for a in answers), (sql, answers)


def _conninfo(url: str) -> str:
    """libpq key/value conninfo for a ``postgresql://`` URL (the stack's superuser DSN): plain TCP, so the
    socket carries the protocol itself (no TLS), and the password given, so there is no prompt."""
    u = urlsplit(url)
    parts = {
        "host": u.hostname or "127.0.0.1",
        "port": str(u.port or 5432),
        "user": unquote(u.username or "postgres"),
        "dbname": (u.path or "/postgres").lstrip("/") or "postgres",
    }
    if u.password:
        parts["password"] = unquote(u.password)
    conninfo = " ".join(f"{k}='{v}'" for k, v in parts.items())
    return f"{conninfo} sslmode=disable connect_timeout=5"


@dataclass(frozen=True)
class Server:
    conninfo: str
    version: int

    def session(self, scs: bool) -> Wire:
        wire = Wire(self.conninfo)
        wire.query("SET lc_messages = 'C'")  # English messages where the role may set it (superuser)
        wire.ok(
            "SET debug_pretty_print = off; SET debug_print_parse = on; SET client_min_messages = log;"
            " SET escape_string_warning = off; SET check_function_bodies = on;"
            f" SET standard_conforming_strings = {'on' if scs else 'off'}"
        )
        return wire


@pytest.fixture(scope="module")
def server(dev_stack: dict[str, Any], test_layout: Layout) -> Server:
    """The test stack's PostgreSQL, as its superuser: the one ``dev_stack`` started on a free port (or the
    server PCIGATE_DEV_POSTGRES_DSN names, which the stack then uses). Never skipped: a corpus that found no
    server would pass without comparing anything, so no server, or one too old, fails the tests."""
    assert dev_stack["running"], dev_stack
    conninfo = _conninfo(test_layout.secret("postgres_superuser_dsn").read_text().strip())
    with Wire(conninfo) as wire:
        answers = wire.query("SHOW server_version_num")
    version = int(answers[0].rows[0][0] or b"0")
    assert version >= 140000, f"PostgreSQL {version} has no BEGIN ATOMIC bodies; the corpus needs 14 or later"
    return Server(conninfo, version)


# ------------------------------------------------------------------------------------------ checks


def _summary(answers: list[Answer]) -> str:
    if [a.empty for a in answers] == [True]:
        return "empty"
    done = sum(1 for a in answers if a.tag is not None)
    if answers and answers[-1].error is not None:
        return f"{done}+E" if done else "E"
    return str(done)


def _spans(sql: str, pieces: list[str]) -> list[tuple[int, int]]:
    """Where each statement of the split lies in ``sql`` (character offsets)."""
    spans: list[tuple[int, int]] = []
    cursor = 0
    for piece in pieces:
        start = sql.find(piece, cursor)
        assert start >= 0, f"split gave back text that is not in the string, in order: {piece!r}"
        spans.append((start, start + len(piece)))
        cursor = start + len(piece)
    return spans


def _server_text(sql: str, stmt: tuple[int, int]) -> str:
    data = sql.encode()
    loc, length = stmt
    return data[loc : loc + length if length else None].decode().strip(_WS)


def _from_first_token(text: str) -> str:
    """``text`` less the whitespace and complete comments (``--`` to the end of the line, ``/* */`` nested)
    in front of its first token. PostgreSQL 18 starts a statement's ``stmt_location`` at its first token;
    up to 17 it starts right after the ``;`` before it, so with the comments in between. Where a statement
    starts is compared from its first token; where it ends, exactly. An unterminated comment stays."""
    i = 0
    while True:
        while i < len(text) and text[i] in _WS:
            i += 1
        if text.startswith("--", i):
            end = text.find("\n", i)
            if end < 0:
                return text[i:]
            i = end + 1
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while depth and j < len(text):
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            if depth:
                return text[i:]
            i = j
        else:
            return text[i:]


def _at_end(message: str) -> bool:
    return message.endswith("at end of input")


def _holder(position: int, spans: list[tuple[int, int]], sql: str) -> int | None:
    """The statement of the split that holds an error's 1-based character position: the error is in its
    text, at the ``;`` that ends it (the grammar wanted more), or at the end of the input after the last
    one. None: the server failed in text the split took for whitespace, comments or empty statements."""
    index = position - 1
    for i, (start, end) in enumerate(spans):
        if start <= index < end:
            return i
        rest = sql[end:index]
        if index >= end and not rest.strip(_WS):
            if index < len(sql) and sql[index] == ";":
                return i
            if index >= len(sql) and i == len(spans) - 1:
                return i
    return None


def _absolute(answer: Answer, start: int) -> Answer:
    """An answer to one statement run alone, its error position moved to the whole string."""
    if answer.error is None:
        return answer
    code, message, position = answer.error
    return replace(answer, error=(code, message, None if position is None else position + start))


def _comparable(answer: Answer) -> Answer:
    """An answer, less what differs only because a statement of the split is stripped of whitespace: the
    position of an error at the end of the input, and the trailing whitespace an unterminated literal
    quotes in its message (``at or near "'x  "``)."""
    if answer.error is None:
        return answer
    code, message, position = answer.error
    if _at_end(message):
        position = None
    return replace(answer, error=(code, _TRAILING_WS.sub('"', message), position))


def _replay(server: Server, scs: bool, pieces: list[str], spans: list[tuple[int, int]]) -> list[Answer]:
    """Each statement as a Query of its own on a fresh session, until one fails."""
    out: list[Answer] = []
    with server.session(scs) as wire:
        for piece, (start, _) in zip(pieces, spans, strict=True):
            answers = wire.query(piece)
            assert len(answers) == 1, (piece, answers)
            out.append(_absolute(answers[0], start))
            if answers[0].error is not None:
                break
    return out


_DML = frozenset({"insert", "update", "delete", "merge"})
# command tag → (kinds analyze may give, first keywords analyze may give)
_TAGS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "SELECT": (frozenset({"dql"}), frozenset({"select", "values", "table", "with"})),
    "INSERT": (frozenset({"dml"}), frozenset({"insert", "with"})),
    "UPDATE": (frozenset({"dml"}), frozenset({"update", "with"})),
    "DELETE": (frozenset({"dml"}), frozenset({"delete", "with"})),
    "MERGE": (frozenset({"dml"}), frozenset({"merge", "with"})),
    "CREATE": (frozenset({"ddl"}), frozenset({"create"})),
    "ALTER": (frozenset({"ddl"}), frozenset({"alter"})),
    "DROP": (frozenset({"ddl"}), frozenset({"drop"})),
    "TRUNCATE": (frozenset({"ddl"}), frozenset({"truncate"})),
    "BEGIN": (frozenset({"tcl"}), frozenset({"begin"})),
    "START": (frozenset({"tcl"}), frozenset({"start"})),
    "COMMIT": (frozenset({"tcl"}), frozenset({"commit", "end"})),
    "ROLLBACK": (frozenset({"tcl"}), frozenset({"rollback", "abort"})),
    "SET": (frozenset({"session"}), frozenset({"set"})),
    "RESET": (frozenset({"session"}), frozenset({"reset"})),
    "SHOW": (frozenset({"session"}), frozenset({"show"})),
    "LISTEN": (frozenset({"session"}), frozenset({"listen"})),
    "UNLISTEN": (frozenset({"session"}), frozenset({"unlisten"})),
    "NOTIFY": (frozenset({"session"}), frozenset({"notify"})),
    "PREPARE": (frozenset({"session"}), frozenset({"prepare"})),
    "DEALLOCATE": (frozenset({"session"}), frozenset({"deallocate"})),
    "SAVEPOINT": (frozenset({"tcl"}), frozenset({"savepoint"})),
    "RELEASE": (frozenset({"tcl"}), frozenset({"release"})),
    "GRANT": (frozenset({"dcl"}), frozenset({"grant"})),
    "REVOKE": (frozenset({"dcl"}), frozenset({"revoke"})),
    "COMMENT": (frozenset({"ddl"}), frozenset({"comment"})),
    "DISCARD": (frozenset({"session"}), frozenset({"discard"})),
    "ANALYZE": (frozenset({"utility"}), frozenset({"analyze", "analyse"})),
    "LOCK": (frozenset({"utility"}), frozenset({"lock"})),
    "DO": (frozenset({"call"}), frozenset({"do"})),
    "CALL": (frozenset({"call"}), frozenset({"call"})),
    "EXPLAIN": (frozenset({"utility"}), frozenset({"explain"})),
    "DECLARE": (frozenset({"utility"}), frozenset({"declare"})),
    "FETCH": (frozenset({"utility"}), frozenset({"fetch"})),
    "CLOSE": (frozenset({"utility"}), frozenset({"close"})),
}


def _expected_class(tag: str, first: str, text: str) -> tuple[frozenset[str], frozenset[str]]:
    word = tag.split(maxsplit=1)[0]
    assert word in _TAGS, f"command tag {tag!r} has no expected kind here: add it to _TAGS"
    kinds, firsts = _TAGS[word]
    if word in ("SET", "RESET"):  # the tag is the same for every setting
        setting = re.match(r"\w+\s+(?:(?:session|local)\s+)?(\w+)", text.lower())
        name = setting.group(1) if setting else ""
        if name in ("role", "authorization", "session_authorization"):
            return frozenset({"dcl"}), firsts
        if word == "SET" and name in ("transaction", "constraints"):
            return frozenset({"tcl"}), firsts
    if word == "SELECT":
        lowered = text.lower()
        if first == "execute":  # EXECUTE answers with its statement's tag; analyze calls it session
            return frozenset({"session"}), frozenset({"execute"})
        if first == "create":  # CREATE TABLE ... AS
            return frozenset({"ddl"}), frozenset({"create"})
        if first == "with" and any(re.search(rf"\b{w}\b", lowered) for w in _DML):
            return frozenset({"dml"}), firsts  # a data-modifying WITH
        if re.search(r"\binto\b", lowered):  # SELECT ... INTO creates a table
            return frozenset({"ddl"}), firsts
    return kinds, firsts


def _check_case(server: Server, case: Case) -> None:
    sql, scs = case.sql, case.scs
    with server.session(scs) as wire:
        answers = wire.query(sql)
    assert _summary(answers) == case.expect, f"the corpus case no longer does what it says: {answers}"

    pieces, _ = split_statements_counted(sql, standard_conforming_strings=scs)
    assert split_statements(sql, standard_conforming_strings=scs) == pieces
    spans = _spans(sql, pieces)
    where = f"\nsql: {sql!r}\nsplit: {pieces!r}\nserver: {answers!r}"

    # 1. nothing to run
    if case.expect == "empty":
        assert pieces == [], "the server saw no statement" + where
        return
    assert pieces, "the server saw a statement" + where

    # 2. the statements the server began to run: count, order and text
    for i, answer in enumerate(answers):
        if answer.stmt is not None:
            assert i < len(pieces), f"the server ran statement {i}; the split has fewer" + where
            server_text = _server_text(sql, answer.stmt)
            assert _from_first_token(pieces[i]) == _from_first_token(server_text), (
                f"statement {i} differs" + where
            )

    last = answers[-1]
    if last.error is None:
        # 3. everything ran: as many statements as the server's
        assert len(pieces) == len(answers), "the server ran a different number of statements" + where
        # 4. run alone, each statement answers as it did in the whole string
        assert _replay(server, scs, pieces, spans) == answers, "a statement runs differently alone" + where
    elif last.stmt is not None:
        # an error while running a statement the server parsed (and compared above)
        replay = _replay(server, scs, pieces[: len(answers)], spans[: len(answers)])
        assert [_comparable(a) for a in replay] == [_comparable(a) for a in answers], (
            "a statement runs differently alone" + where
        )
    else:
        # 5. an error in a statement the server never began to run
        done = len(answers) - 1
        position = last.error[2]
        if done == 0 and position is not None:
            # a syntax error (the server rejects the whole text, so nothing ran), or parse analysis of the
            # first statement: the statement that holds the error fails alone with it, run as the text
            # from its start to the next statement's (so with its ; and the exact trailing text)
            index = _holder(position, spans, sql)
            assert index is not None, "the server failed at text the split holds in no statement" + where
            start = spans[index][0]
            end = spans[index + 1][0] if index + 1 < len(spans) else len(sql)
            with server.session(scs) as wire:
                alone = wire.query(sql[start:end])
            got = [_absolute(a, start) for a in alone]
            assert got == [last], f"statement {index} fails differently alone: {got!r}" + where
        else:
            # parse analysis failed in a later statement (or without a position): the same statement of
            # the split fails, after the ones before it answered as they did in the whole text
            if position is not None:
                assert _holder(position, spans, sql) == done, (
                    "the server failed in another statement than the split's" + where
                )
            replay = _replay(server, scs, pieces[: done + 1], spans[: done + 1])
            assert [_comparable(a) for a in replay] == [_comparable(a) for a in answers], (
                "a statement runs differently alone" + where
            )

    # 6. classification, against the command tags
    wrong: list[str] = []
    for piece, answer in zip(pieces, answers, strict=False):
        if answer.tag is None:
            continue
        info = analyze(piece)
        kinds, firsts = _expected_class(answer.tag, info.first_keyword, piece)
        if info.kind not in kinds or info.first_keyword not in firsts:
            wrong.append(f"{piece!r}: tag {answer.tag!r}, analyze {info.kind}/{info.first_keyword}")
    assert not wrong, "analyze disagrees with the server:\n" + "\n".join(wrong)


@pytest.mark.parametrize("case", CORPUS, ids=[_case_id(i, c) for i, c in enumerate(CORPUS)])
def test_split_agrees_with_postgres(server: Server, case: Case) -> None:
    if server.version < case.min_version:
        pytest.skip(f"needs server_version_num {case.min_version}, the server has {server.version}")
    _check_case(server, case)


# ------------------------------------------------------------------------------- generated strings
# Valid-looking Query strings put together at random (fixed seed) from the corpus' adversarial pieces, for
# the combinations no one wrote down: literals and comments holding ; and quotes, aliases named case, end,
# begin and atomic, routine bodies among other statements, separators with empty statements and comments.

_LITERALS = [
    "'a;b'",
    r"E'\';'",
    r"e'\\'",
    "$$;$$",
    "$a$ $$ ; $b$ $a$",
    r"U&'\0041;'",
    "B'1'\n'0'",
    "X'F'",
    "1 /* ; /* ; */ */",
    "'x' -- ; c\n",
    "'x'\n'y;'",
    "E'a'\n'\\';'",
    "$é$;$é$",
    "1",
    "(2)",
    "((3))",
    "CASE WHEN true THEN 1 END",
    "'--'",
    "'/*'",
    '"x;""y"',
    "1e3",
    ".5",
    "'\"'",
    "$x$'$x$",
    "1 --x\r+2",
    "2 */* ; */ 3",
]
_LITERALS_ON = [r"'a\'", r"'\\'", r"N'\'"]
_LITERALS_OFF = [r"'a\''", r"'a\\'", r"N'\''", r"'\";'"]
_ALIASES = [
    "",
    " AS case",
    " AS end",
    " AS begin",
    " AS atomic",
    ' AS "end"',
    " AS x$",
    " AS é",
    " x",
    " AS a$b$",
]
_SEPARATORS = [";", ";;", "; -- ;\n", " /* ; */ ;", ";\n", " ;\t"]
_BEGINS = ["BEGIN ATOMIC", "begin /* c */ atomic", "BEGIN--x\nATOMIC"]


def _generated(rnd: random.Random, scs: bool) -> str:
    literals = _LITERALS + (_LITERALS_ON if scs else _LITERALS_OFF)

    def select() -> str:
        items = [rnd.choice(literals) + rnd.choice(_ALIASES) for _ in range(rnd.randint(1, 3))]
        return "SELECT " + ", ".join(items)

    parts: list[str] = []
    for i in range(rnd.randint(1, 5)):
        r = rnd.random()
        if r < 0.25:
            body = " ".join(select() + rnd.choice(_SEPARATORS) for _ in range(rnd.randint(0, 3)))
            replace_ = rnd.choice(["", "OR REPLACE "])
            option = rnd.choice(["", " SET search_path = begin, atomic", " SET begin.atomic = 1"])
            parts.append(
                f"CREATE {replace_}FUNCTION pg_temp.f{i}() RETURNS int LANGUAGE sql{option}"
                f" {rnd.choice(_BEGINS)} {body} {rnd.choice(['END', 'end', 'End'])}"
            )
        elif r < 0.3:
            parts.append(
                f"CREATE FUNCTION pg_temp.g{i}(begin int, atomic int) RETURNS int LANGUAGE sql"
                " RETURN begin + atomic"
            )
        else:
            parts.append(select())
    text = "".join(p + rnd.choice(_SEPARATORS) + rnd.choice(["", " ", "\n"]) for p in parts)
    return text.rstrip(_WS).rstrip(";") if rnd.random() < 0.3 else text


def test_generated_strings_agree_with_postgres(server: Server) -> None:
    rnd = random.Random(20240611)
    failures: list[str] = []
    several = 0
    for _ in range(200):
        scs = rnd.random() < 0.5
        sql = _generated(rnd, scs)
        with server.session(scs) as wire:
            answers = wire.query(sql)
        several += sum(1 for a in answers if a.tag is not None) >= 2
        try:
            _check_case(server, Case(sql, _summary(answers), scs=scs))
        except AssertionError as exc:
            failures.append(f"standard_conforming_strings={scs}: {exc}")
    assert not failures, f"{len(failures)} disagreements, the first:\n" + "\n\n".join(failures[:3])
    assert several >= 50, "the generator should make strings the server runs several statements of"


def test_corpus_is_large_and_covers_both_settings() -> None:
    assert len(CORPUS) >= 60
    assert sum(1 for c in CORPUS if not c.scs) >= 10
    assert len({c.note for c in CORPUS}) == len(CORPUS), "every case needs a note of its own"
