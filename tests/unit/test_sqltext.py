"""Statement splitting, normalization and analysis: agree with PostgreSQL's lexer where it matters, and
never call a statement read-only when it could write."""

from __future__ import annotations

import hashlib
import re
from dataclasses import FrozenInstanceError

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gateway import sqltext
from gateway.sqltext import (
    KINDS,
    StatementInfo,
    analyze,
    fingerprint,
    normalize,
    normalize_ex,
    split_statements,
    split_statements_counted,
)

# ------------------------------------------------------------------------------ a reference lexer
# Written independently of the module, character by character after PostgreSQL's scan.l (PG 16 number
# syntax), to check the regular-expression lexer against. One deliberate choice both share: a literal
# prefix (E'', B'', X'', N'', U&'', U&"") counts only when the character before it is not an identifier
# character, so "1e'x'" is a number then a plain string (PostgreSQL 15+ rejects it, older releases read an
# E-string; either way the statement is a syntax error).

WS = " \t\n\r\f\v"
OPS = "~!@#^&|`?+-*/%<>="


def ident_start(c: str) -> bool:
    return not c.isascii() or c.isalpha() or c == "_"


def ident_char(c: str) -> bool:
    return ident_start(c) or c in "0123456789$"


def digit(c: str) -> bool:
    return len(c) == 1 and c in "0123456789"


def string_end(sql: str, j: int, quote: str, backslash: bool) -> int:
    """End of a quoted body starting at ``j`` (after the opening quote); doubled quotes escape."""
    n = len(sql)
    while j < n:
        c = sql[j]
        if backslash and c == "\\":
            j += 2
            continue
        if c == quote:
            if j + 1 < n and sql[j + 1] == quote:
                j += 2
                continue
            return j + 1
        j += 1
    return n


def continuation(sql: str, j: int) -> int | None:
    """After a closed string at ``j``: where its continuation's body starts, if one follows
    (scan.l: horiz_whitespace* newline special_whitespace* quote)."""
    n = len(sql)
    if j > n or sql[j - 1] != "'":
        return None

    def comment_end(k: int) -> int:
        while k < n and sql[k] not in "\n\r":
            k += 1
        return k

    while j < n and (sql[j] in " \t\f" or sql.startswith("--", j)):
        j = comment_end(j) if sql[j] == "-" else j + 1
    if j >= n or sql[j] not in "\n\r":
        return None
    j += 1
    while j < n:
        if sql[j] in WS:
            j += 1
        elif sql.startswith("--", j):
            k = comment_end(j)
            if k >= n:
                return None
            j = k + 1
        else:
            break
    return j + 1 if j < n and sql[j] == "'" else None


def digits_end(sql: str, j: int, ok: str) -> int | None:
    """End of digits from ``ok`` with single underscores between them, starting at ``j``."""
    n = len(sql)
    if j >= n or sql[j] not in ok:
        return None
    j += 1
    while j < n:
        if sql[j] in ok:
            j += 1
        elif sql[j] == "_" and j + 1 < n and sql[j + 1] in ok:
            j += 2
        else:
            break
    return j


def number_end(sql: str, i: int) -> int:
    n = len(sql)
    if sql[i] == "0" and i + 1 < n:
        for marks, ok in (("xX", "0123456789abcdefABCDEF"), ("oO", "01234567"), ("bB", "01")):
            if sql[i + 1] in marks:
                j = i + 2
                if j < n and sql[j] == "_":
                    j += 1
                end = digits_end(sql, j, ok)
                if end is not None:
                    return end
    start = digits_end(sql, i + 1 if sql[i] == "." else i, "0123456789")
    assert start is not None
    j = start
    if sql[i] != "." and j < n and sql[j] == "." and not (j + 1 < n and sql[j + 1] == "."):
        j += 1
        j = digits_end(sql, j, "0123456789") or j
    if j < n and sql[j] in "eE":
        k = j + 1
        if k < n and sql[k] in "+-":
            k += 1
        end = digits_end(sql, k, "0123456789")
        if end is not None:
            j = end
    return j


def ref_lex(sql: str, scs: bool = True) -> list[tuple[str, str]]:
    toks: list[tuple[str, str]] = []
    n = len(sql)
    i = 0
    while i < n:
        c = sql[i]
        nxt = sql[i + 1] if i + 1 < n else ""
        after_ident = i > 0 and ident_char(sql[i - 1])
        if c in WS:
            j = i
            while j < n and sql[j] in WS:
                j += 1
            kind = "ws"
        elif sql.startswith("--", i):
            j = i
            while j < n and sql[j] not in "\n\r":
                j += 1
            kind = "comment"
        elif sql.startswith("/*", i):
            j, depth = i + 2, 1
            while j < n:
                if sql.startswith("/*", j):
                    depth += 1
                    j += 2
                elif sql.startswith("*/", j):
                    depth -= 1
                    j += 2
                    if depth == 0:
                        break
                else:
                    j += 1
            kind = "comment" if depth == 0 else "open_comment"  # unterminated: the server rejects it
            j = min(j, n)
        elif not after_ident and c in "eE" and nxt == "'":
            j = min(string_end(sql, i + 2, "'", True), n)
            while (k := continuation(sql, j)) is not None:  # E'a'<newline>'\' ...' is one E-string
                j = min(string_end(sql, k, "'", True), n)
            kind = "lit"
        elif not after_ident and c in "bBxX" and nxt == "'":
            k = sql.find("'", i + 2)
            j, kind = (k + 1 if k >= 0 else n), "lit"
            # a continuation stays in the bit string: no backslash escapes (with the setting on, a new
            # plain string would end at the same quote)
            while not scs and (k := continuation(sql, j)) is not None:
                k = sql.find("'", k)
                j = k + 1 if k >= 0 else n
        elif not after_ident and c in "nN" and nxt == "'":
            j, kind = min(string_end(sql, i + 2, "'", not scs), n), "plain"
        elif not after_ident and c in "uU" and sql[i + 1 : i + 3] == "&'":
            j, kind = string_end(sql, i + 3, "'", False), "lit"
        elif not after_ident and c in "uU" and sql[i + 1 : i + 3] == '&"':
            j, kind = string_end(sql, i + 3, '"', False), "qi"
        elif c == "'":
            j, kind = min(string_end(sql, i + 1, "'", not scs), n), "plain"
        elif c == '"':
            j, kind = string_end(sql, i + 1, '"', False), "qi"
        elif c == "$":
            j = i + 1
            if j < n and digit(sql[j]):
                while j < n and digit(sql[j]):
                    j += 1
                kind = "param"
            else:
                if j < n and ident_start(sql[j]):
                    j += 1
                    while j < n and (ident_start(sql[j]) or digit(sql[j])):
                        j += 1
                if j < n and sql[j] == "$":
                    delim = sql[i : j + 1]
                    k = sql.find(delim, j + 1)
                    j, kind = (k + len(delim) if k >= 0 else n), "lit"
                else:
                    j, kind = i + 1, "other"
        elif ident_start(c):
            j = i + 1
            while j < n and ident_char(sql[j]):
                j += 1
            kind = "word"
        elif digit(c) or (c == "." and digit(nxt)):
            j, kind = number_end(sql, i), "lit"
        elif c in OPS:
            j = i
            while j < n and sql[j] in OPS and not sql.startswith("--", j) and not sql.startswith("/*", j):
                j += 1
            kind = "op"
        elif c in ";()":
            j, kind = i + 1, c
        else:
            j, kind = i + 1, "other"
        toks.append((kind, sql[i:j]))
        i = j
    return toks


def ascii_lower(text: str) -> str:
    return "".join(ch.lower() if "A" <= ch <= "Z" else ch for ch in text)


def ref_normalize(sql: str) -> tuple[str, bool]:
    toks = ref_lex(sql)
    out: list[str] = []
    scs_dependent = False

    def last() -> str:
        return out[-1][-1] if out and out[-1] else " "

    for i, (kind, text) in enumerate(toks):
        if kind in ("ws", "comment", "open_comment"):
            if last() != " ":
                out.append(" ")
        elif kind in ("lit", "plain"):
            scs_dependent = scs_dependent or (kind == "plain" and "\\" in text)
            piece = " ?" if last() in OPS else "?"
            if i + 1 < len(toks) and toks[i + 1][1][0] in OPS:
                piece += " "
            out.append(piece)
        elif kind in ("qi", "param"):
            out.append(text)
        else:
            out.append(ascii_lower(text))
    return "".join(out).strip(" ").rstrip("; "), scs_dependent


def ref_routine(stmt: list[tuple[str, str]]) -> bool:
    """Do the tokens of a statement so far begin CREATE [OR REPLACE] FUNCTION|PROCEDURE?"""
    words: list[str] = []
    for kind, text in stmt[:4]:
        if kind != "word":
            break
        words.append(text)
    return words[:2] in (["create", "function"], ["create", "procedure"]) or words in (
        ["create", "or", "replace", "function"],
        ["create", "or", "replace", "procedure"],
    )


def ref_split(sql: str, scs: bool = True) -> tuple[list[str], int]:
    """gram.y: statements end at ``;`` outside parentheses and outside ``BEGIN ATOMIC (stmt ;)* END``
    routine bodies, where BEGIN and ATOMIC are adjacent tokens at depth 0 of CREATE [OR REPLACE]
    FUNCTION|PROCEDURE and END closes the body only where a body statement would begin."""
    toks = ref_lex(sql, scs)
    out: list[str] = []
    empty = 0
    pos = start = 0
    content = False
    depth = bodies = 0
    stmt: list[tuple[str, str]] = []  # significant tokens of the current statement (in its body)
    for kind, text in toks:
        end = pos + len(text)
        if kind == ";" and depth == 0:
            if bodies == 0:
                if content:
                    out.append(sql[start:pos].strip(WS))
                else:
                    empty += 1
                start = end
                content = False
            stmt = []
            pos = end
            continue
        if kind not in ("ws", "comment"):
            content = True
            if kind == "open_comment":
                pos = end
                continue
            if kind == "(":
                depth += 1
            elif kind == ")":
                depth = max(depth - 1, 0)
            token = (kind, ascii_lower(text) if kind == "word" else text)
            if bodies and not stmt and token == ("word", "end"):
                bodies -= 1
                stmt = [("closed", "")]  # the statement holding the body goes on, without another body
            else:
                stmt.append(token)
                begins = token == ("word", "atomic") and depth == 0 and stmt[-2:-1] == [("word", "begin")]
                if begins and ref_routine(stmt):
                    bodies += 1
                    stmt = []
        pos = end
    if content:
        out.append(sql[start:].strip(WS))
    elif sql[start:].strip(WS) or not (out or empty):
        empty += 1
    return out, empty


FRAGMENTS = [
    "'",
    '"',
    "'\n'",
    "' --x\n  '",
    "\n --'\n'",
    "''",
    '""',
    "$",
    "$$",
    "$a$",
    "$A$",
    "$a1$",
    "$1",
    "$12",
    "E'",
    "e'",
    "x'",
    "X'",
    "b'",
    "B'",
    "n'",
    "N'",
    "U&'",
    'u&"',
    "U&",
    "\\",
    "\\'",
    "--",
    "/*",
    "*/",
    "\n",
    "\r",
    " ",
    "  ",
    "\t",
    "\f",
    "\v",
    ";",
    ";",
    "(",
    ")",
    "0",
    "1",
    "42",
    ".",
    "..",
    "5",
    "_",
    "a",
    "e",
    "E",
    "b",
    "x",
    "o",
    "n",
    "u",
    "&",
    "=",
    "-",
    "+",
    "?",
    "*",
    "/",
    "<",
    ">",
    "|",
    "é",
    "Ä",
    "\x00",
    "\x1c",
    "1e5",
    "1e",
    "0x1F",
    "0xg",
    "0b101",
    "0o17",
    "1_000",
    "1.5",
    ".5",
    "t1",
    "a$b",
    "select",
    "SELECT",
    "create",
    "function",
    "or",
    "replace",
    "procedure",
    "begin",
    "atomic",
    "case",
    "end",
    "from",
    "nextval",
    "::",
    ",",
]
SQLISH = st.lists(st.sampled_from(FRAGMENTS), max_size=30).map("".join)


@settings(max_examples=1500)
@given(SQLISH)
def test_normalize_agrees_with_the_reference_lexer(sql: str) -> None:
    assert normalize_ex(sql) == ref_normalize(sql)


@settings(max_examples=1500)
@given(SQLISH, st.booleans())
def test_split_agrees_with_the_reference_lexer(sql: str, scs: bool) -> None:
    assert split_statements_counted(sql, standard_conforming_strings=scs) == ref_split(sql, scs)


SIMPLE_FRAGMENTS = [*FRAGMENTS, "$1", " $2 ", "a.5", "1.2.3", "'it''s'", "'x'", "= 'a'", "'b'1", "e1'", "U&"]


@settings(max_examples=2000)
@given(st.lists(st.sampled_from(SIMPLE_FRAGMENTS), max_size=30).map("".join))
def test_hot_path_equals_full_lexer(sql: str) -> None:
    simple = sqltext._normalize_simple(sql)
    if simple is not None:
        assert simple == sqltext._normalize_full(sql)[0]
        assert not sqltext._normalize_full(sql)[1]


@settings(max_examples=500)
@given(st.text(max_size=60))
def test_arbitrary_text_never_breaks_the_lexer(sql: str) -> None:
    assert normalize_ex(sql) == ref_normalize(sql)
    assert split_statements_counted(sql) == ref_split(sql)
    info = analyze(sql)
    assert info.kind in KINDS


# ------------------------------------------------------------------------------------------ split


@pytest.mark.parametrize(
    ("sql", "statements", "empty"),
    [
        # PostgreSQL: two CommandCompletes, nothing for the empty statement between the semicolons.
        ("SELECT 1;;SELECT 2", ["SELECT 1", "SELECT 2"], 1),
        # ... and a single EmptyQueryResponse for these.
        ("", [], 1),
        ("   ", [], 1),
        (";", [], 1),
        (" ; ; ", [], 2),
        ("-- only a comment", [], 1),
        ("/* a */ ; /* b */", [], 2),
        ("SELECT 1", ["SELECT 1"], 0),
        ("SELECT 1;", ["SELECT 1"], 0),
        ("  SELECT 1 ;  \n", ["SELECT 1"], 0),
        ("SELECT 1; -- trailing", ["SELECT 1"], 1),
        ("/* tag */ SELECT 1; SELECT 2 -- x", ["/* tag */ SELECT 1", "SELECT 2 -- x"], 0),
    ],
)
def test_split_counts(sql: str, statements: list[str], empty: int) -> None:
    assert split_statements_counted(sql) == (statements, empty)
    assert split_statements(sql) == statements


@pytest.mark.parametrize(
    ("sql", "statements"),
    [
        ("SELECT 'a;b'; SELECT 2", ["SELECT 'a;b'", "SELECT 2"]),
        ("SELECT 'it''s;'; SELECT 2", ["SELECT 'it''s;'", "SELECT 2"]),
        ("SELECT E'\\';'; SELECT 2", ["SELECT E'\\';'", "SELECT 2"]),
        ("SELECT e'\\\\'; SELECT 2", ["SELECT e'\\\\'", "SELECT 2"]),
        ("SELECT U&'\\0041;'; SELECT 2", ["SELECT U&'\\0041;'", "SELECT 2"]),
        ('SELECT "a;""b"; SELECT 2', ['SELECT "a;""b"', "SELECT 2"]),
        ("SELECT $$;$$; SELECT 2", ["SELECT $$;$$", "SELECT 2"]),
        ("SELECT $fn$ $x$ ; $fn$; SELECT 2", ["SELECT $fn$ $x$ ; $fn$", "SELECT 2"]),
        ("SELECT $a$;$b$;$a$; SELECT 2", ["SELECT $a$;$b$;$a$", "SELECT 2"]),
        ("SELECT 1 -- ;\n; SELECT 2", ["SELECT 1 -- ;", "SELECT 2"]),
        ("SELECT /* ; /* ; */ ; */ 1; SELECT 2", ["SELECT /* ; /* ; */ ; */ 1", "SELECT 2"]),
        ("SELECT a$b; SELECT $1; SELECT 2", ["SELECT a$b", "SELECT $1", "SELECT 2"]),
        ("SELECT x'1F'; SELECT b'01'", ["SELECT x'1F'", "SELECT b'01'"]),
        # the server parses the whole message: semicolons inside parentheses do not end a statement
        (
            "CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); INSERT INTO b VALUES (2));"
            " SELECT 3",
            [
                "CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); "
                "INSERT INTO b VALUES (2))",
                "SELECT 3",
            ],
        ),
        # SQL-standard function bodies hold semicolons
        (
            "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; "
            "SELECT CASE WHEN true THEN 1 END; END; SELECT 2",
            [
                "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; "
                "SELECT CASE WHEN true THEN 1 END; END",
                "SELECT 2",
            ],
        ),
        (
            "create procedure p() begin atomic insert into t values (1); end; begin; commit",
            ["create procedure p() begin atomic insert into t values (1); end", "begin", "commit"],
        ),
        ("BEGIN; SELECT 1; END", ["BEGIN", "SELECT 1", "END"]),
        (
            "CREATE FUNCTION begin() RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql; SELECT 2",
            ["CREATE FUNCTION begin() RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql", "SELECT 2"],
        ),
    ],
)
def test_split_respects_quotes_comments_and_bodies(sql: str, statements: list[str]) -> None:
    assert split_statements(sql) == statements


@pytest.mark.parametrize(
    "sql",
    ["SELECT 'unterminated; DELETE FROM t", 'SELECT "x; DELETE', "SELECT $a$ ; DELETE", "SELECT /* ; DELETE"],
)
def test_unterminated_quote_or_comment_keeps_the_rest_in_the_last_statement(sql: str) -> None:
    assert split_statements("SELECT 0; " + sql) == ["SELECT 0", sql]


@pytest.mark.parametrize(
    ("sql", "statements"),
    [
        # E'a'<newline>'\' , ' is one string a' , — so the DELETE is a statement of its own
        ("SELECT E'a'\n'\\' , 'b; DELETE FROM t; --'", ["SELECT E'a'\n'\\' , 'b", "DELETE FROM t"]),
        (
            "SELECT e'a' -- note\n \n '\\' , 'b; DELETE FROM t",
            ["SELECT e'a' -- note\n \n '\\' , 'b", "DELETE FROM t"],
        ),
        # no continuation without a newline, or across a block comment or a vertical tab
        ("SELECT E'a' '\\' , 'b; DELETE FROM t; --'", ["SELECT E'a' '\\' , 'b; DELETE FROM t; --'"]),
        (
            "SELECT E'a' /* c */\n'\\' , 'b; DELETE FROM t; --'",
            ["SELECT E'a' /* c */\n'\\' , 'b; DELETE FROM t; --'"],
        ),
        ("SELECT E'a'\v\n'\\' , 'b; DELETE FROM t; --'", ["SELECT E'a'\v\n'\\' , 'b; DELETE FROM t; --'"]),
        # a plain string continues as a plain string
        ("SELECT 'a'\n'\\' , 'b; DELETE FROM t; --'", ["SELECT 'a'\n'\\' , 'b; DELETE FROM t; --'"]),
    ],
)
def test_string_continuation_keeps_the_escapes_of_its_start(sql: str, statements: list[str]) -> None:
    assert split_statements(sql) == statements


def test_split_follows_standard_conforming_strings() -> None:
    sql = "SELECT 'a\\'; SELECT 2; --'"
    assert split_statements(sql) == ["SELECT 'a\\'", "SELECT 2"]
    assert split_statements(sql, standard_conforming_strings=False) == [sql]


def test_bit_string_continuation_takes_no_backslash_escapes() -> None:
    # scan.l goes back to the bit string's own state after a continuation, even with the setting off
    for prefix in ("B'1'", "x'F'"):
        sql = f"SELECT {prefix}\n'\\' AS b; DELETE FROM t; -- '"
        expected = [f"SELECT {prefix}\n'\\' AS b", "DELETE FROM t"]
        assert split_statements(sql, standard_conforming_strings=False) == expected
        assert split_statements(sql) == expected


_F = "CREATE FUNCTION f() RETURNS int LANGUAGE sql"


@pytest.mark.parametrize(
    ("sql", "statements"),
    [
        # gram.y: BEGIN ATOMIC (stmt ;)* END: the body ends at an END that begins a statement, whatever
        # CASE or END came inside its statements (CASE and END are column labels after AS or a dot)
        (
            f"{_F} BEGIN ATOMIC SELECT 1 AS case; END; DROP TABLE t",
            [f"{_F} BEGIN ATOMIC SELECT 1 AS case; END"],
        ),
        (
            f"{_F} BEGIN ATOMIC SELECT s.case FROM s; END; DROP TABLE t",
            [f"{_F} BEGIN ATOMIC SELECT s.case FROM s; END"],
        ),
        (
            f"{_F} BEGIN ATOMIC SELECT 1 AS end; SELECT 2; END; DROP TABLE t",
            [f"{_F} BEGIN ATOMIC SELECT 1 AS end; SELECT 2; END"],
        ),
        (
            f"{_F} BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; end; DROP TABLE t",
            [f"{_F} BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; end"],
        ),
        (f"{_F} BEGIN ATOMIC ; ; END; DROP TABLE t", [f"{_F} BEGIN ATOMIC ; ; END"]),
        (f"{_F} BEGIN ATOMIC /* c */ END; DROP TABLE t", [f"{_F} BEGIN ATOMIC /* c */ END"]),
        (
            f"{_F} BEGIN ATOMIC SELECT 1; /* ; */ End -- ;\n; DROP TABLE t",
            [f"{_F} BEGIN ATOMIC SELECT 1; /* ; */ End -- ;"],
        ),
        (f"{_F} BEGIN ATOMIC (SELECT 1); END; DROP TABLE t", [f"{_F} BEGIN ATOMIC (SELECT 1); END"]),
        # a body statement may be CREATE FUNCTION with a body of its own (the server parses it)
        (
            f"{_F} BEGIN ATOMIC {_F} BEGIN ATOMIC SELECT 1; END; SELECT 2; END; DROP TABLE t",
            [f"{_F} BEGIN ATOMIC {_F} BEGIN ATOMIC SELECT 1; END; SELECT 2; END"],
        ),
        # BEGIN and ATOMIC must be adjacent tokens: these hold no body
        (f"{_F} SET begin.atomic = 1 RETURN 1; DROP TABLE t", [f"{_F} SET begin.atomic = 1 RETURN 1"]),
        (
            f"{_F} SET search_path = begin, atomic RETURN 1; DROP TABLE t",
            [f"{_F} SET search_path = begin, atomic RETURN 1"],
        ),
        (
            "CREATE FUNCTION f(begin int, atomic int) RETURNS int LANGUAGE sql RETURN begin + atomic;"
            " DROP TABLE t",
            ["CREATE FUNCTION f(begin int, atomic int) RETURNS int LANGUAGE sql RETURN begin + atomic"],
        ),
        # ... comments between them are fine
        (
            f"{_F} BEGIN /* c */ ATOMIC SELECT 1; END; DROP TABLE t",
            [f"{_F} BEGIN /* c */ ATOMIC SELECT 1; END"],
        ),
        (
            f"{_F} BEGIN -- c\n ATOMIC SELECT 1; END; DROP TABLE t",
            [f"{_F} BEGIN -- c\n ATOMIC SELECT 1; END"],
        ),
        # the head must be consecutive words
        ("CREATE OR REPLACE PROCEDURE p() BEGIN ATOMIC SELECT 1; END; DROP TABLE t", None),
        ("CREATE TABLE begin (atomic int); DROP TABLE t", ["CREATE TABLE begin (atomic int)"]),
    ],
)
def test_routine_bodies_end_where_the_grammar_ends_them(sql: str, statements: list[str] | None) -> None:
    if statements is None:
        statements = [sql[: sql.index("; DROP")]]
    assert split_statements(sql) == [*statements, "DROP TABLE t"]
    assert split_statements(sql, standard_conforming_strings=False) == [*statements, "DROP TABLE t"]


@pytest.mark.parametrize(
    ("sql", "statements"),
    [
        # the server rejects the whole text at the unterminated comment: it is a statement, not an empty one
        ("SELECT 1; /* unterminated ; SELECT 2", ["SELECT 1", "/* unterminated ; SELECT 2"]),
        ("SELECT 1; /* a /* b */ SELECT 2", ["SELECT 1", "/* a /* b */ SELECT 2"]),
        ("/* x", ["/* x"]),
        ("SELECT 1; /* closed */", ["SELECT 1"]),
    ],
)
def test_unterminated_comment_is_a_statement(sql: str, statements: list[str]) -> None:
    assert split_statements(sql) == statements
    assert split_statements_counted(sql)[1] == (1 if sql.endswith("*/") else 0)


ATOM = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_ =<>+*.,\n\t", min_size=1, max_size=15)


@given(st.lists(ATOM.filter(lambda s: s.strip(" \t\n")), min_size=1, max_size=6))
def test_split_gives_back_joined_statements(parts: list[str]) -> None:
    statements = [p.strip(" \t\n") for p in parts]
    assume(not any(re.search(r"\b(create|begin)\b", s) for s in statements))
    assert split_statements(";".join(parts)) == statements
    assert split_statements(" ; ".join(parts) + ";") == statements


# ---------------------------------------------------------------------------------------- normalize


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;",
            "select abalance from pgbench_accounts where aid = ?",
        ),
        ("SELECT  a,\n\tb FROM T  -- comment\nWHERE x=1", "select a, b from t where x= ?"),
        (
            "select 'it''s', E'a\\'b', $$x$$, $t$ y $t$, B'101', X'1F', N'n', U&'\\0041'",
            "select ?, ?, ?, ?, ?, ?, ?, ?",
        ),
        ("select 1e5, .5, 0x1F, 0o17, 0b101, 1_000, 1.5e-3, 12.", "select ?, ?, ?, ?, ?, ?, ?, ?"),
        ("SELECT $1, $2::int FROM t WHERE a = $3", "select $1, $2::int from t where a = $3"),
        (
            'SELECT "MixedCase", "a""b", U&"d\\0061t" FROM "S"."T"',
            'select "MixedCase", "a""b", U&"d\\0061t" from "S"."T"',
        ),
        ("SELECT * FROM t WHERE a IN (1, 2, 3)", "select * from t where a in (?, ?, ?)"),
        ("SELECT /* a /* nested */ b */ 1", "select ?"),
        ("SELECT x FROM t1 WHERE t1.c2 = a1.5", "select x from t1 where t1.c2 = a1?"),
        ("SELECT 1.2.3", "select ? ?"),
        ("SELECT -1, a-1, a>=-1", "select - ?, a- ?, a>=- ?"),
        ("SELECT 'a'||'b'", "select ? || ?"),
        ("SELECT data ? 'k', data ?| array['a']", "select data ? ?, data ?| array[?]"),
        ("SELECT ÄBC, Äbc FROM ÉTÉ", "select Äbc, Äbc from ÉtÉ"),
        ("select 1;;", "select ?"),
        ("SELECT 1; SELECT 2", "select ?; select ?"),
        ("  ", ""),
    ],
)
def test_normalize_examples(sql: str, expected: str) -> None:
    assert normalize(sql) == expected


def test_normalize_folds_ascii_only() -> None:
    # PostgreSQL folds only A-Z in UTF-8 databases: Äx and äx are different tables.
    assert normalize("SELECT * FROM Äx") != normalize("SELECT * FROM äx")
    assert normalize("SELECT * FROM AX") == normalize("SELECT * FROM ax")


def test_fingerprint_is_sha256_of_normalized_text() -> None:
    sql = "SELECT abalance FROM pgbench_accounts WHERE aid = 48213"
    assert fingerprint(sql) == hashlib.sha256(normalize(sql).encode()).hexdigest()
    assert analyze(sql).fingerprint == fingerprint(sql)


@settings(max_examples=800)
@given(SQLISH)
def test_normalize_is_idempotent(sql: str) -> None:
    once = normalize(sql)
    assert normalize(once) == once


@settings(max_examples=300)
@given(st.text(max_size=80))
def test_normalize_is_idempotent_on_any_text(sql: str) -> None:
    once = normalize(sql)
    assert normalize(once) == once


def literal_values() -> st.SearchStrategy[str]:
    text = st.text(alphabet="ab ;'\\$\"-*/é0123456789", max_size=8)
    return st.one_of(
        st.integers(0, 10**12).map(str),
        st.floats(min_value=0, max_value=1e9, allow_nan=False).map(repr),
        st.sampled_from(["1e5", ".5", "0x1F", "0b1", "0o7", "1_000", "12.", "3.25e-2"]),
        text.map(lambda s: "'" + s.replace("'", "''") + "'"),
        text.map(lambda s: "E'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"),
        text.filter(lambda s: "$q$" not in s and not s.endswith("$")).map(lambda s: f"$q${s}$q$"),
        text.filter(lambda s: "$$" not in s and not s.endswith("$")).map(lambda s: f"$${s}$$"),
        st.sampled_from(["B'0101'", "X'FF'", "N'x'", "U&'\\0041'"]),
    )


TEMPLATES = [
    "SELECT * FROM t WHERE a = {} AND b IN ({}, {})",
    "INSERT INTO t (a, b) VALUES ({}, {})",
    "UPDATE t SET a = {} WHERE b={}",
    "SELECT {}||{} FROM t WHERE c>={}",
    "SELECT f({},{}) -- {}\n FROM t",
]


@settings(max_examples=500)
@given(
    st.sampled_from(TEMPLATES),
    st.lists(literal_values(), min_size=3, max_size=3),
    st.lists(literal_values(), min_size=3, max_size=3),
)
def test_fingerprint_ignores_literal_values(template: str, a: list[str], b: list[str]) -> None:
    first, second = template.format(*a), template.format(*b)
    assert fingerprint(first) == fingerprint(second)
    one, two = analyze(first), analyze(second)
    assert (one.fingerprint, one.kind, one.objects, one.first_keyword) == (
        two.fingerprint,
        two.kind,
        two.objects,
        two.first_keyword,
    )
    if not (one.scs_dependent or two.scs_dependent):  # a backslash in a plain string: see below
        assert one == two


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("SELECT * FROM a", "SELECT * FROM b"),
        ('SELECT * FROM "T"', "SELECT * FROM t"),
        ("SELECT a FROM t", "SELECT a, b FROM t"),
        ("SELECT 1 FROM t WHERE a = $1", "SELECT 1 FROM t WHERE a = $2"),
        ("SELECT x ?| y", "SELECT x ? | y"),
    ],
)
def test_fingerprint_tells_different_statements_apart(a: str, b: str) -> None:
    assert fingerprint(a) != fingerprint(b)


# ---------------------------------------------------------------------------------------- read_only


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT abalance FROM pgbench_accounts WHERE aid = 48213",
        "select count(*), max(a), coalesce(b, 0), lower(c) from t where a in (1, 2)"
        " and exists (select 1 from u)",
        "SELECT * FROM t FOR UPDATE",
        "SELECT * FROM t FOR NO KEY UPDATE SKIP LOCKED",
        "SELECT * FROM t FOR SHARE",
        "VALUES (1, 'a'), (2, 'b')",
        "TABLE accounts",
        "(SELECT 1) UNION ALL (SELECT 2)",
        "WITH a AS (SELECT 1 AS x) SELECT x FROM a",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) SELECT * FROM r",
        "WITH a(x) AS MATERIALIZED (SELECT 1), b AS NOT MATERIALIZED (SELECT 2) SELECT * FROM a, b",
        "SELECT x::numeric(10,2), CAST(y AS varchar(10)), z::pg_catalog.numeric(5) FROM t",
        "SELECT extract(epoch FROM ts), substring(a FROM 1 FOR 2), trim(both 'x' FROM b) FROM t",
        "SELECT count(*) FILTER (WHERE a) OVER (PARTITION BY b ORDER BY c) FROM t",
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY a) FROM t",
        "SELECT pg_catalog.count(*), pg_catalog.now() FROM t",
        'SELECT "count"(*) FROM t',
        "SELECT a = -1, b <> -2, c->>'k', d @> '{}', e ? 'k', f || 'x' FROM t",
        "SELECT * FROM t TABLESAMPLE SYSTEM (10) REPEATABLE (1)",
        "SELECT * FROM (VALUES (1)) AS v(a)",
        "SELECT 1 +++ 2",  # PostgreSQL reads + + +: a user operator name cannot end in +
        "SHOW search_path",
        "SHOW ALL",
        "FETCH 10 FROM c",
        "FETCH ALL IN c",
        "MOVE NEXT IN c",
        "CLOSE c",
        "CLOSE ALL",
        "DECLARE c CURSOR FOR SELECT * FROM t",
        "DECLARE c BINARY INSENSITIVE NO SCROLL CURSOR WITH HOLD FOR SELECT * FROM t FOR UPDATE",
        "EXPLAIN SELECT * FROM t",
        "EXPLAIN (FORMAT JSON, COSTS OFF) SELECT count(*) FROM t",
        "EXPLAIN DELETE FROM t",  # planned, not run
        "EXPLAIN EXECUTE p(1)",
        "SELECT * FROM t WHERE a LIKE ('%' || b) AND c NOT ILIKE ('x')",
        "BEGIN",
        "BEGIN ISOLATION LEVEL SERIALIZABLE",
        "START TRANSACTION READ ONLY",
        "ROLLBACK",
        "ROLLBACK TO SAVEPOINT a",
        "ABORT",
        "SAVEPOINT a",
        "RELEASE SAVEPOINT a",
        "RELEASE a",
        "select 1;",
        "SELECT E'a\\\\b'",
    ],
)
def test_read_only(sql: str) -> None:
    assert analyze(sql).read_only, sql


@pytest.mark.parametrize(
    "sql",
    [
        # functions with side effects, however they are spelled
        "SELECT nextval('s')",
        "SELECT NEXTVAL('s')",
        "SELECT setval('s', 1)",
        "SELECT pg_catalog.set_config('role', 'admin', false)",
        "SELECT set_config('session_authorization', 'x', false)",
        "select lo_import('/etc/passwd')",
        "SELECT \"nextval\"('s')",
        "SELECT nextval/* hidden */('s')",
        "SELECT nextval -- hidden\n ('s')",
        "SELECT nextval\n\t('s')",
        "SELECT public.count(*) FROM t",  # not the built-in
        "SELECT myschema.lower('x')",
        "SELECT pg_catalog.pg_sleep(10)",
        "SELECT dblink_exec('dbname=x', 'DELETE FROM t')",
        "SELECT query_to_xml('DELETE FROM t', true, true, '')",
        "SELECT * FROM generate_series(1, 3) g, LATERAL my_func(g)",
        "SELECT a.b.c(1)",
        'SELECT "COUNT"(*) FROM t',
        "SELECT U&\"nextval\"('s')",
        'SELECT "coalesce"(1, 2)',  # quoted, it is a function call, and pg_catalog has no coalesce()
        'SELECT "current_timestamp"()',
        "SELECT pg_catalog.trim('x')",
        "SELECT filter(1)",  # an unreserved keyword can name a user function
        "SELECT over(1)",
        "SELECT cube(1)",
        "SELECT 1 WHERE nextval('s') > 0",
        "VALUES (nextval('s'))",
        "TABLE t; SELECT nextval('s')",
        "SELECT * FROM t WHERE a = (SELECT nextval('s'))",
        "SELECT coalesce(nextval('s'), 0)",
        "SELECT 1 OPERATOR(pg_catalog.+) 2",
        "SELECT 1 <=> 2",
        "SELECT x ?# y",
        # writes hidden in a query
        "WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x",
        "WITH x AS (UPDATE t SET a = 1 RETURNING *) SELECT 1",
        "WITH x AS (INSERT INTO t VALUES (1) RETURNING *) SELECT 1",
        "WITH x AS (MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE) SELECT 1",
        "SELECT * INTO t FROM x",
        "SELECT * INTO TEMP t FROM x",
        "WITH a AS (SELECT 1) SELECT * INTO t FROM a",
        "SELECT 1; DELETE FROM t",
        "SELECT update FROM t",
        "DECLARE c CURSOR FOR SELECT nextval('s')",
        "DECLARE c CURSOR FOR WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x",
        "DECLARE c CURSOR FOR INSERT INTO t VALUES (1)",
        "DECLARE c",
        "EXPLAIN ANALYZE DELETE FROM t",
        "EXPLAIN ANALYSE SELECT nextval('s')",
        "EXPLAIN (ANALYZE) DELETE FROM t",
        "EXPLAIN (ANALYZE TRUE, BUFFERS) UPDATE t SET a = 1",
        "EXPLAIN (FORMAT JSON, ANALYZE) SELECT 1",
        "EXPLAIN SELECT nextval('s')",
        'EXPLAIN ("analyze") DELETE FROM t',  # option names may be quoted identifiers
        'EXPLAIN ("ANALYZE" on) DELETE FROM t',
        'EXPLAIN (U&"\\0061nalyze") DELETE FROM t',
        "SELECT like('x')",
        "SELECT * FROM t WHERE like('x')",
        "EXPLAIN CREATE TABLE t AS SELECT 1 INTO x",
        # statements that write, or change session state or identity
        "INSERT INTO t VALUES (1)",
        "UPDATE t SET a = 1",
        "DELETE FROM t",
        "MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE",
        "COPY t FROM STDIN",
        "COPY (SELECT 1) TO STDOUT",
        "CALL p()",
        "DO $$BEGIN PERFORM 1; END$$",
        "COMMIT",
        "END",
        "COMMIT PREPARED 'x'",
        "ROLLBACK PREPARED 'x'",
        "PREPARE TRANSACTION 'x'",
        "START",
        "SET ROLE admin",
        "SET SESSION AUTHORIZATION admin",
        "SET search_path = evil, pg_catalog",
        "SET standard_conforming_strings = off",
        "RESET ALL",
        "DISCARD ALL",
        "LISTEN c",
        "NOTIFY c",
        "LOAD 'x'",
        "PREPARE p AS SELECT 1",
        "EXECUTE p",
        "DEALLOCATE p",
        "CREATE TABLE t (a int)",
        "DROP TABLE t",
        "TRUNCATE t",
        "GRANT SELECT ON t TO x",
        "REVOKE SELECT ON t FROM x",
        "VACUUM t",
        "ANALYZE t",
        "CLUSTER t",
        "CHECKPOINT",
        "LOCK TABLE t",
        "REFRESH MATERIALIZED VIEW v",
        "SECURITY LABEL ON TABLE t IS 'x'",
        "something unknown",
        "",
        "-- nothing",
        "(",
    ],
)
def test_not_read_only(sql: str) -> None:
    assert not analyze(sql).read_only, sql


def test_plain_string_with_backslash_is_not_read_only() -> None:
    # With standard_conforming_strings off the server reads "'a\' , '" as one string and runs the DELETE.
    sql = "SELECT 'a\\' , 'b; DELETE FROM t; --'"
    info = analyze(sql)
    assert info.scs_dependent and not info.read_only
    assert normalize_ex(sql) == ("select ? , ?", True)
    assert not analyze("SELECT N'a\\'").read_only
    assert analyze("SELECT E'a\\\\'").read_only  # E'' strings mean the same either way
    clean = analyze("SELECT 'x' , 'y'")
    assert clean.read_only and not clean.scs_dependent
    assert clean.fingerprint == info.fingerprint  # same normalized text, different cache slot


def test_cache_hit_is_the_same_answer() -> None:
    sqltext.clear_cache()
    first = analyze("SELECT * FROM accounts WHERE id = 1")
    second = analyze("SELECT * FROM accounts WHERE id = 2")
    assert first is second
    assert sqltext._analyze_cached.cache_info().hits >= 1


def test_long_statements_are_cached_too() -> None:
    sqltext.clear_cache()
    long_sql = "SELECT " + ", ".join(f"col_{i}" for i in range(2000)) + " FROM t WHERE a = 1"
    first = analyze(long_sql)
    assert analyze(long_sql.replace("= 1", "= 2")) is first
    assert sqltext._analyze_cached_big.cache_info().hits == 1


def test_statement_info_is_frozen() -> None:
    info = analyze("SELECT 1")
    with pytest.raises(FrozenInstanceError):
        info.read_only = False  # type: ignore[misc]
    assert isinstance(info, StatementInfo)


# --------------------------------------------------------------------------------------------- kind


@pytest.mark.parametrize(
    ("sql", "kind", "first"),
    [
        ("SELECT 1", "dql", "select"),
        ("(SELECT 1)", "dql", "select"),
        ("VALUES (1)", "dql", "values"),
        ("TABLE t", "dql", "table"),
        ("WITH a AS (SELECT 1) SELECT * FROM a", "dql", "with"),
        ("WITH a AS (DELETE FROM t RETURNING 1) SELECT * FROM a", "dml", "with"),
        ("SELECT * INTO t FROM u", "ddl", "select"),
        ("INSERT INTO t VALUES (1)", "dml", "insert"),
        ("UPDATE t SET a = 1", "dml", "update"),
        ("DELETE FROM t", "dml", "delete"),
        ("MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE", "dml", "merge"),
        ("CREATE TABLE t (a int)", "ddl", "create"),
        ("ALTER TABLE t ADD b int", "ddl", "alter"),
        ("DROP INDEX i", "ddl", "drop"),
        ("TRUNCATE t", "ddl", "truncate"),
        ("COMMENT ON TABLE t IS 'x'", "ddl", "comment"),
        ("REINDEX TABLE t", "ddl", "reindex"),
        ("GRANT SELECT ON t TO u", "dcl", "grant"),
        ("REVOKE ALL ON t FROM u", "dcl", "revoke"),
        ("CREATE ROLE r", "dcl", "create"),
        ("CREATE USER u", "dcl", "create"),
        ("ALTER ROLE r SUPERUSER", "dcl", "alter"),
        ("DROP USER u", "dcl", "drop"),
        ("ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO u", "dcl", "alter"),
        ("REASSIGN OWNED BY a TO b", "dcl", "reassign"),
        ("DROP OWNED BY a", "dcl", "drop"),
        ("SET ROLE r", "dcl", "set"),
        ("SET LOCAL ROLE r", "dcl", "set"),
        ("SET SESSION AUTHORIZATION u", "dcl", "set"),
        ("RESET ROLE", "dcl", "reset"),
        ("RESET SESSION AUTHORIZATION", "dcl", "reset"),
        ('SET "role" = admin', "dcl", "set"),
        ('SET "ROLE" TO admin', "dcl", "set"),
        ("SET session_authorization = admin", "dcl", "set"),
        ("SECURITY LABEL ON TABLE t IS 'x'", "dcl", "security"),
        ("BEGIN", "tcl", "begin"),
        ("START TRANSACTION", "tcl", "start"),
        ("COMMIT", "tcl", "commit"),
        ("END", "tcl", "end"),
        ("ROLLBACK", "tcl", "rollback"),
        ("ABORT", "tcl", "abort"),
        ("SAVEPOINT a", "tcl", "savepoint"),
        ("RELEASE a", "tcl", "release"),
        ("PREPARE TRANSACTION 'x'", "tcl", "prepare"),
        ("COMMIT PREPARED 'x'", "tcl", "commit"),
        ("ROLLBACK PREPARED 'x'", "tcl", "rollback"),
        ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", "tcl", "set"),
        ("SET CONSTRAINTS ALL DEFERRED", "tcl", "set"),
        ("SET search_path = x", "session", "set"),
        ("SET SESSION statement_timeout = 1", "session", "set"),
        ("RESET ALL", "session", "reset"),
        ("SHOW x", "session", "show"),
        ("DISCARD ALL", "session", "discard"),
        ("LISTEN c", "session", "listen"),
        ("UNLISTEN *", "session", "unlisten"),
        ("NOTIFY c, 'x'", "session", "notify"),
        ("LOAD 'x'", "session", "load"),
        ("PREPARE p AS SELECT 1", "session", "prepare"),
        ("EXECUTE p", "session", "execute"),
        ("DEALLOCATE ALL", "session", "deallocate"),
        ("COPY t FROM STDIN", "copy", "copy"),
        ("CALL p()", "call", "call"),
        ("DO $$ BEGIN END $$", "call", "do"),
        ("VACUUM t", "utility", "vacuum"),
        ("ANALYZE t", "utility", "analyze"),
        ("EXPLAIN SELECT 1", "utility", "explain"),
        ("CLUSTER t", "utility", "cluster"),
        ("CHECKPOINT", "utility", "checkpoint"),
        ("LOCK t", "utility", "lock"),
        ("FETCH c", "utility", "fetch"),
        ("MOVE c", "utility", "move"),
        ("CLOSE c", "utility", "close"),
        ("DECLARE c CURSOR FOR SELECT 1", "utility", "declare"),
        ("frobnicate", "other", "frobnicate"),
        ("", "other", ""),
        ('"quoted" thing', "other", ""),
        ("/* c */ SELECT 1", "dql", "select"),
    ],
)
def test_kind(sql: str, kind: str, first: str) -> None:
    info = analyze(sql)
    assert (info.kind, info.first_keyword) == (kind, first)


# ------------------------------------------------------------------------------------------ objects


@pytest.mark.parametrize(
    ("sql", "objects"),
    [
        ("SELECT abalance FROM pgbench_accounts WHERE aid = 1", ["pgbench_accounts"]),
        ("SELECT * FROM Public.Accounts a JOIN s.T2 b ON a.id = b.id", ["public.accounts", "s.t2"]),
        ('SELECT * FROM "Sch"."My Table", "lower"', ['"Sch"."My Table"', "lower"]),
        ("SELECT * FROM a, b x, c AS y WHERE 1 = 1", ["a", "b", "c"]),
        ("SELECT * FROM a LEFT JOIN b USING (id) CROSS JOIN c", ["a", "b", "c"]),
        ("SELECT * FROM (SELECT * FROM inner_t) s, outer_t", ["inner_t", "outer_t"]),
        ("SELECT * FROM ONLY t1, LATERAL f(t1.a) g", ["t1"]),
        ("SELECT * FROM generate_series(1, 3) g", []),
        ("SELECT extract(epoch FROM ts), trim(both 'x' FROM b) FROM t WHERE a IS DISTINCT FROM b", ["t"]),
        ("SELECT * FROM t WHERE a IN (SELECT b FROM u) AND EXISTS (SELECT 1 FROM v)", ["t", "u", "v"]),
        ("WITH w AS (SELECT * FROM base) SELECT * FROM w JOIN other ON true", ["base", "other"]),
        ("INSERT INTO s.t (a, b) SELECT a, b FROM u", ["s.t", "u"]),
        ("UPDATE ONLY t AS x SET a = 1 FROM u WHERE u.id = x.id", ["t", "u"]),
        ("DELETE FROM t USING u, v WHERE t.a = u.a", ["t", "u", "v"]),
        ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET a = s.a", ["t", "s"]),
        ("SELECT * INTO newt FROM old", ["newt", "old"]),
        ("TABLE t", ["t"]),
        ("COPY t (a) FROM STDIN", ["t"]),
        ("COPY (SELECT * FROM a JOIN b ON true) TO STDOUT", ["a", "b"]),
        ("TRUNCATE TABLE a, b RESTART IDENTITY", ["a", "b"]),
        ("LOCK TABLE a, b IN SHARE MODE", ["a", "b"]),
        ("LOCK a", ["a"]),
        ("DROP TABLE IF EXISTS a, s.b CASCADE", ["a", "s.b"]),
        ("CREATE TABLE IF NOT EXISTS public.t (a int REFERENCES u (id))", ["public.t", "u"]),
        ("CREATE UNLOGGED TABLE t AS SELECT * FROM u", ["t", "u"]),
        ("ALTER TABLE IF EXISTS ONLY t ADD CONSTRAINT c FOREIGN KEY (a) REFERENCES u(b)", ["t", "u"]),
        ("CREATE VIEW v AS SELECT * FROM t", ["v", "t"]),
        ("CREATE INDEX i ON t (a)", ["t"]),
        ("GRANT SELECT, UPDATE ON t, u TO alice", ["t", "u"]),
        ("REVOKE ALL ON TABLE t FROM bob", ["t"]),
        ("GRANT USAGE ON SCHEMA s TO alice", []),
        ("VACUUM (VERBOSE) t", ["t"]),
        ("SET search_path FROM CURRENT", []),
        ("FETCH NEXT FROM c", []),
        ("SELECT * FROM t FOR UPDATE OF t", ["t"]),
        ("SELECT 1", []),
        ("SELECT * FROM a; SELECT * FROM b", ["a", "b"]),
        ("SELECT * FROM t, t, T", ["t"]),
    ],
)
def test_objects(sql: str, objects: list[str]) -> None:
    assert list(analyze(sql).objects) == objects


def test_objects_never_hold_a_pan_or_control_characters() -> None:
    info = analyze('SELECT * FROM t4111111111111111, "x\x01\u202ey"')
    assert info.objects == ("t411111******1111", '"x\ufffd\ufffdy"')


def test_objects_are_bounded() -> None:
    many = ", ".join(f"t{i}" for i in range(300))
    info = analyze(f"SELECT * FROM {many}")
    assert len(info.objects) == 128
    long_name = '"' + "x" * 1000 + '"'
    assert all(len(o) <= 512 for o in analyze(f"SELECT * FROM {long_name}").objects)


# --------------------------------------------------------------------------------------- robustness


@settings(max_examples=300)
@given(SQLISH)
def test_analyze_any_text(sql: str) -> None:
    info = analyze(sql)
    assert info.kind in KINDS
    assert len(info.fingerprint) == 64
    assert len(info.objects) <= 128 and len(set(info.objects)) == len(info.objects)
    assert all(0 < len(o) <= 512 for o in info.objects)
    assert not any(re.search(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]", o) for o in info.objects)
    if info.read_only:
        assert info.kind in ("dql", "session", "utility", "tcl")
