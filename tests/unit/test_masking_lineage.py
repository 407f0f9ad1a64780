"""Lineage of result columns: every way around name-based card-data rules is seen, plain queries stay clear.

Pure: SQL text in, verdicts out. Only published test card numbers appear."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gateway.masking.lineage import (
    Lineage,
    LineageAnalyzer,
    OutputColumn,
    SensitiveSpec,
    analyze,
    stricter,
)
from gateway.sqltext import split_statements
from pcigate.config.models import DEFAULT_MASKED_COLUMNS, ColumnRule, MaskingProfile
from tests.masking_corpus import BYPASS_CORPUS

SCHEMA: dict[str, tuple[str, ...]] = {
    "public.customers": ("customer_id", "full_name", "email", "country", "created_at"),
    "public.cards": ("card_id", "customer_id", "holder_name", "brand", "pan", "cvv", "exp_month", "exp_year"),
    "public.transactions": (
        "txn_id",
        "card_id",
        "amount_cents",
        "currency",
        "merchant",
        "status",
        "created_at",
    ),
}
CLEAR_DEMO_COLUMNS = {c for cols in SCHEMA.values() for c in cols} - {"pan", "cvv"}
BARE = SensitiveSpec(DEFAULT_MASKED_COLUMNS)
CATALOG = SensitiveSpec(DEFAULT_MASKED_COLUMNS, schema=SCHEMA)
PAN = "4111111111111111"


def shape(lineage: Lineage) -> tuple[str, ...] | str | None:
    """Actions per column (``*rel`` for a star marker), ``unknown`` or None (no rows)."""
    if lineage.unknown is not None:
        return "unknown"
    if lineage.columns is None:
        return None
    return tuple(f"*{c.star}" if c.star is not None else c.action for c in lineage.columns)


def columns(sql: str, spec: SensitiveSpec = BARE) -> tuple[OutputColumn, ...]:
    lineage = analyze(sql, spec)
    assert lineage.unknown is None, lineage.unknown
    assert lineage.columns is not None
    return lineage.columns


# ------------------------------------------------------------------------------- no over-masking


@pytest.mark.parametrize(
    ("sql", "expected", "sensitive"),
    [
        ("SELECT card_id, brand FROM cards", ("clear", "clear"), False),
        (
            "SELECT c.card_id, c.exp_month FROM public.cards AS c WHERE c.brand = 'visa'",
            ("clear", "clear"),
            False,
        ),
        (
            "SELECT u.full_name, t.amount_cents FROM customers u "
            "JOIN cards c ON c.customer_id = u.customer_id "
            "JOIN transactions t ON t.card_id = c.card_id WHERE t.status = 'settled'",
            ("clear", "clear"),
            False,
        ),
        ("SELECT brand, count(*) FROM cards GROUP BY brand ORDER BY 2 DESC", ("clear", "clear"), False),
        (
            "SELECT c.card_id FROM cards c "
            "WHERE EXISTS (SELECT * FROM transactions t WHERE t.card_id = c.card_id)",
            ("clear",),
            False,
        ),
        ("SELECT my_func(card_id), upper(brand) FROM cards", ("clear", "clear"), False),
        (f"VALUES (1, '{PAN}')", ("clear", "clear"), False),
        ("SELECT 1", ("clear",), False),
        ("SELECT count(pan) FROM cards", ("clear",), True),
        (
            "SELECT count(DISTINCT pan), count(*) FILTER (WHERE pan LIKE '4%') FROM cards",
            ("clear", "clear"),
            True,
        ),
        ("SELECT pan IS NULL, pan IS NOT NULL, pan = $1, pan IN ('a', 'b') FROM cards", ("clear",) * 4, True),
        ("SELECT EXISTS (SELECT 1 FROM cards WHERE pan = $1)", ("clear",), True),
        ("SELECT card_id FROM cards WHERE pan = $1", ("clear",), True),
        ("SELECT card_id FROM cards ORDER BY pan", ("clear",), True),
        ("SELECT row_number() OVER (PARTITION BY pan ORDER BY card_id) FROM cards", ("clear",), True),
        ("SELECT card_id FROM cards c JOIN customers u ON c.pan = u.email", ("clear",), True),
        ("SELECT set_config('app.user', 'x', false)", ("clear",), False),
        ("SELECT 'pan' AS label, $$ cvv $$ AS note FROM customers", ("clear", "clear"), False),
    ],
)
def test_clear_columns_stay_clear(sql: str, expected: tuple[str, ...], sensitive: bool) -> None:
    lineage = analyze(sql, BARE)
    assert shape(lineage) == expected
    assert lineage.sensitive is sensitive
    assert not any(c.derived for c in lineage.columns or ())


def test_exists_reads_no_select_list() -> None:
    """``EXISTS (SELECT * ...)`` returns a boolean: the star inside touches nothing, with the catalog too."""
    sql = "SELECT card_id FROM cards c WHERE EXISTS (SELECT * FROM cards d WHERE d.card_id = c.card_id)"
    lineage = analyze(sql, CATALOG)
    assert shape(lineage) == ("clear",)
    assert not lineage.sensitive


# ------------------------------------------------------------------------- bare references keep actions


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT pan FROM cards", "bin_last4"),
        ("SELECT pan AS x FROM cards", "bin_last4"),
        ("SELECT c.pan AS x FROM public.cards AS c", "bin_last4"),
        ("SELECT public.cards.pan FROM public.cards", "bin_last4"),
        ('SELECT "PAN" FROM cards', "bin_last4"),
        ("SELECT PAN FROM CARDS", "bin_last4"),
        ("SELECT pan::text AS t FROM cards", "bin_last4"),
        ("SELECT CAST(pan AS varchar) FROM cards", "bin_last4"),
        ('SELECT pan COLLATE "C" FROM cards', "bin_last4"),
        ("SELECT ((pan)) FROM cards", "bin_last4"),
        ("SELECT (c).pan FROM cards c", "bin_last4"),
        ("SELECT (cards.*).pan FROM cards", "bin_last4"),
        ("SELECT cvv AS x FROM cards", "null"),
        ("SELECT card_number FROM wallet", "bin_last4"),
        ("SELECT (SELECT pan FROM cards LIMIT 1)", "bin_last4"),
        ("SELECT (SELECT pan FROM cards c WHERE c.card_id = t.card_id) FROM transactions t", "bin_last4"),
        ("WITH x AS (SELECT pan AS p FROM cards) SELECT p FROM x", "bin_last4"),
        ("WITH x(p) AS (SELECT pan FROM cards) SELECT x.p FROM x", "bin_last4"),
        ("SELECT s.v FROM (SELECT pan AS v FROM cards) AS s", "bin_last4"),
        ("SELECT s.v FROM (SELECT pan FROM cards) AS s(v)", "bin_last4"),
        ("SELECT l.v FROM cards c, LATERAL (SELECT c.pan AS v) l", "bin_last4"),
        ("SELECT v.x FROM cards c, LATERAL (VALUES (c.pan)) AS v(x)", "bin_last4"),
        ("SELECT brand FROM cards UNION SELECT pan FROM cards", "bin_last4"),
        ("SELECT pan FROM cards EXCEPT SELECT brand FROM cards", "bin_last4"),
        ("(SELECT pan FROM cards) INTERSECT (SELECT pan FROM cards ORDER BY 1)", "bin_last4"),
        ("SELECT x.pan FROM (SELECT * FROM cards) x", "bin_last4"),
        ("SELECT pan FROM cards, generate_series(1, 2) g", "bin_last4"),
        ("SELECT pan FROM cards c JOIN customers u USING (customer_id)", "bin_last4"),
        ("SELECT ct.pan FROM cards ct WHERE ct.card_id = 1 FOR UPDATE", "bin_last4"),
    ],
)
def test_bare_reference_keeps_the_rule_action(sql: str, expected: str) -> None:
    (col,) = columns(sql)
    assert col.action == expected
    assert not col.derived
    assert col.sources


def test_output_names_are_what_the_server_reports() -> None:
    cols = columns('SELECT pan AS "Ref", Pan, pan::text, (c).pan, substr(pan, 1, 2) FROM cards c')
    assert [c.name for c in cols] == ["Ref", "pan", "pan", "pan", None]


def test_rules_from_the_profile_decide_actions() -> None:
    rules = (ColumnRule(match="acct", action="last4"), ColumnRule(match="/^sec_/", action="null"))
    spec = SensitiveSpec(rules)
    assert shape(analyze("SELECT acct AS a, sec_code, pan, reverse(acct) FROM t", spec)) == (
        "last4",
        "null",
        "clear",
        "full",
    )
    # The first matching rule wins, as for name rules on the wire.
    first = SensitiveSpec((ColumnRule(match="pan", action="last4"), ColumnRule(match="/pan/", action="full")))
    assert shape(analyze("SELECT pan AS x FROM cards", first)) == ("last4",)


# ------------------------------------------------------------------------- computed values are full


@pytest.mark.parametrize(
    "expr",
    [
        "reverse(pan)",
        "substr(pan, 1, 8)",
        "substring(pan from 9 for 8)",
        "left(pan, 6)",
        "right(pan, 4)",
        "pan || ''",
        "encode(pan::bytea, 'base64')",
        "encode(convert_to(pan, 'UTF8'), 'hex')",
        "translate(pan, '0123456789', '1234567890')",
        "string_agg(pan, ',')",
        "array_agg(pan)",
        "(array_agg(pan))[1]",
        "max(pan)",
        "md5(pan)",
        "format('%s', pan)",
        "concat_ws('-', brand, pan)",
        "lpad(pan, 20, '0')",
        "overlay(pan placing 'x' from 1 for 2)",
        "regexp_replace(pan, '([0-9])', '\\1 ', 'g')",
        "lower(pan)",
        "upper(pan)",
        "to_char(pan::numeric, 'FM9999999999999999999')",
        "jsonb_build_object('p', pan)",
        "ARRAY[pan]",
        "ROW(pan)",
        "ARRAY(SELECT pan FROM cards)",
        "pan::numeric",
        "CAST(pan AS bigint)",
        "pan::varchar(8)",
        "pan::char",
        "pan::bigint + 0",
        "lag(pan) OVER (ORDER BY card_id)",
        "CASE WHEN brand = 'visa' THEN pan END",
        "CASE WHEN substr(pan, 1, 1) = '4' THEN 'visa' END",
        "substr(pan, 1, 1) = '4'",
        "coalesce(pan, '')",
        "my_func(pan)",
        "xmlelement(name x, pan)",
        "regexp_split_to_array(pan, '')",
        "sum(length(pan))",
        "pan(c)",  # functional notation for c.pan
        "to_jsonb(c) ->> 'pan'",
        "unnest(ARRAY[pan, brand])",
        "(SELECT string_agg(x, '') FROM unnest(string_to_array(pan, NULL)) AS x)",
    ],
)
def test_expressions_over_a_pan_are_full(expr: str) -> None:
    (col,) = columns(f"SELECT {expr} FROM cards c")
    assert (col.action, col.derived) == ("full", True)
    assert col.sources in (("cards.pan",), ("cards.*",))


@pytest.mark.parametrize("expr", ["cvv || ''", "pan || cvv", "md5(cvv)", "concat(pan, cvv)"])
def test_expressions_over_sad_are_null(expr: str) -> None:
    (col,) = columns(f"SELECT {expr} FROM cards")
    assert col.action == "null"
    assert col.derived


def test_split_across_rows_and_columns() -> None:
    assert shape(analyze("SELECT substr(pan, i, 1) FROM cards, generate_series(1, 16) i", BARE)) == ("full",)
    assert shape(analyze("SELECT substr(pan, 1, 8), substr(pan, 9, 8) FROM cards", BARE)) == ("full", "full")
    unnest = "SELECT u.d FROM cards c, unnest(string_to_array(c.pan, NULL)) WITH ORDINALITY AS u(d, i)"
    assert shape(analyze(unnest, BARE)) == ("full",)


def test_derivation_survives_scopes() -> None:
    assert shape(analyze("SELECT p FROM (SELECT reverse(pan) AS p FROM cards) s", BARE)) == ("full",)
    assert shape(analyze("WITH x AS (SELECT md5(pan) AS pan FROM cards) SELECT pan FROM x", BARE)) == (
        "full",
    )
    assert shape(analyze("SELECT pan FROM cards UNION ALL SELECT reverse(pan) FROM cards", BARE)) == ("full",)
    recursive = (
        "WITH RECURSIVE r(n, p) AS (SELECT 1, pan FROM cards UNION ALL "
        "SELECT n + 1, reverse(p) FROM r WHERE n < 3) SELECT n, p FROM r"
    )
    assert shape(analyze(recursive, BARE)) == ("clear", "full")


def test_recursive_ctes_in_any_order() -> None:
    sql = "WITH RECURSIVE a AS (SELECT * FROM b), b AS (SELECT reverse(pan) AS x FROM cards) SELECT x FROM a"
    assert shape(analyze(sql, BARE)) == ("full",)


def test_a_non_recursive_cte_does_not_see_itself() -> None:
    # The inner `cards` is the table, not the CTE being defined.
    sql = "WITH cards AS (SELECT 'x' AS pan UNION ALL SELECT pan FROM cards) SELECT pan FROM cards"
    assert shape(analyze(sql, BARE)) == ("bin_last4",)


def test_ambiguous_names_take_every_candidate() -> None:
    # `pan` could be in either relation: the sensitive candidate decides.
    (col,) = columns("SELECT x FROM (SELECT 1 AS x) a, (SELECT pan AS x FROM cards) b")
    assert col.action == "bin_last4"


# ------------------------------------------------------------------------------------ whole rows


@pytest.mark.parametrize(
    "expr",
    [
        "row_to_json(c)",
        "to_jsonb(c)",
        "to_jsonb(c.*)",
        "c::text",
        "c",
        "(c.*)::text",
        "json_agg(c)",
        "brand(c)",
    ],
)
def test_whole_row_without_catalog_is_full(expr: str) -> None:
    (col,) = columns(f"SELECT {expr} FROM cards c")
    assert (col.action, col.sources, col.derived) == ("full", ("cards.*",), True)


def test_whole_row_with_catalog() -> None:
    (col,) = columns("SELECT row_to_json(c) FROM cards c", CATALOG)
    assert (col.action, col.sources) == ("null", ("cards.cvv", "cards.pan"))  # cvv is SAD: null wins
    (clear,) = columns("SELECT row_to_json(u) FROM customers u", CATALOG)
    assert clear.action == "clear"
    # jsonb_each over a whole row: every value column carries it.
    assert shape(analyze("SELECT j.value FROM cards c, jsonb_each_text(to_jsonb(c)) j", CATALOG)) == ("null",)
    assert shape(analyze("SELECT cards FROM cards", CATALOG)) == ("null",)
    assert shape(analyze("SELECT x FROM cards c, LATERAL row_to_json(c) x", CATALOG)) == ("null",)


# ------------------------------------------------------------------------------------------ stars


def test_star_without_catalog_is_a_marker() -> None:
    lineage = analyze("SELECT * FROM cards", BARE)
    assert lineage.columns == (OutputColumn("clear", star="cards"),)
    assert shape(analyze("TABLE cards", BARE)) == ("*cards",)
    assert shape(analyze("SELECT c.* FROM cards c", BARE)) == ("*cards",)
    assert shape(analyze("SELECT (c.*) FROM cards c", BARE)) == ("*cards",)
    # Adjacent markers are one: the wire applies the names to everything they cover.
    assert shape(analyze("SELECT * FROM cards, customers", BARE)) == ("*cards,customers",)
    assert shape(analyze("SELECT *, reverse(pan) FROM cards", BARE)) == ("*cards", "full")
    assert shape(analyze("SELECT * FROM generate_series(1, 3) g", BARE)) == ("*g",)


def test_star_with_catalog_is_expanded() -> None:
    cols = columns("SELECT * FROM cards", CATALOG)
    assert [c.name for c in cols] == list(SCHEMA["public.cards"])
    assert [c.action for c in cols] == ["clear"] * 4 + ["bin_last4", "null", "clear", "clear"]
    # USING columns come first, once; then the rest of each side (as PostgreSQL orders them).
    joined = columns("SELECT * FROM customers u JOIN cards c USING (customer_id)", CATALOG)
    assert [c.name for c in joined][:3] == ["customer_id", "full_name", "email"]
    assert len(joined) == 5 + 8 - 1
    natural = columns("SELECT * FROM cards NATURAL JOIN customers", CATALOG)
    assert natural[0].name == "customer_id" and len(natural) == 12


def test_star_over_a_subquery_is_expanded_from_its_projection() -> None:
    assert shape(analyze("SELECT * FROM (SELECT pan AS x, brand FROM cards) s", BARE)) == (
        "bin_last4",
        "clear",
    )
    assert shape(analyze("SELECT s.* FROM (SELECT reverse(pan) FROM cards) s", BARE)) == ("full",)
    assert shape(analyze("SELECT * FROM (VALUES (1, 'a')) v(a, b)", BARE)) == ("clear", "clear")


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT *, reverse(pan), * FROM cards",  # where the computed column sits is not known
        "SELECT * FROM cards c, LATERAL unnest(ARRAY[c.pan]) u",  # * over a computed relation
        "SELECT * FROM customers UNION ALL SELECT * FROM cards",  # names of one, values of the other
        "SELECT a FROM cards AS c(a, b, d, f, e)",
        "SELECT * FROM cards AS c(a)",
        "SELECT a FROM (SELECT * FROM cards) AS x(a, b)",
        "COPY cards TO STDOUT",
        "COPY (SELECT * FROM cards) TO STDOUT",
    ],
)
def test_what_needs_the_catalog_is_unknown_without_it(sql: str) -> None:
    lineage = analyze(sql, BARE)
    assert lineage.unknown is not None
    assert lineage.columns is None


def test_column_alias_list_with_catalog() -> None:
    assert shape(analyze("SELECT e, a FROM cards AS c(a, b, d, f, e)", CATALOG)) == ("bin_last4", "clear")
    assert shape(analyze("SELECT c.pan FROM cards AS c(a)", CATALOG)) == ("bin_last4",)


# ------------------------------------------------------------------------------------- statements


def test_data_modifying_statements() -> None:
    assert shape(analyze("UPDATE cards SET pan = pan WHERE card_id = 1 RETURNING pan AS x", BARE)) == (
        "bin_last4",
    )
    # RETURNING shows what was written.
    assert shape(analyze("UPDATE cards SET brand = reverse(pan) RETURNING brand", BARE)) == ("full",)
    assert shape(analyze("UPDATE cards SET pan = reverse(pan) RETURNING pan", BARE)) == ("full",)
    assert shape(analyze("DELETE FROM cards WHERE false RETURNING *", BARE)) == ("*cards",)
    assert shape(analyze("DELETE FROM cards WHERE false RETURNING *", CATALOG))[4:6] == ("bin_last4", "null")  # type: ignore[index]
    upsert = (
        "INSERT INTO cards AS c (card_id, pan) VALUES (1, $1) ON CONFLICT (card_id) "
        "DO UPDATE SET holder_name = excluded.pan RETURNING holder_name"
    )
    assert shape(analyze(upsert, BARE)) == ("bin_last4",)
    moved = "INSERT INTO customers (customer_id, email) SELECT card_id, md5(pan) FROM cards RETURNING email"
    assert shape(analyze(moved, BARE)) == ("full",)
    cte = "WITH d AS (DELETE FROM cards WHERE false RETURNING pan) SELECT * FROM d"
    assert shape(analyze(cte, BARE)) == ("bin_last4",)
    # RETURNING * of a written row: names decide, unless a column now holds another column's value.
    assert shape(analyze("UPDATE cards SET pan = pan, brand = 'x' RETURNING *", BARE)) == ("*cards",)
    assert analyze("UPDATE cards SET brand = pan RETURNING *", BARE).unknown is not None
    assert analyze("INSERT INTO cards SELECT * FROM cards RETURNING *", BARE).unknown is not None
    merge = (
        "MERGE INTO cards c USING (SELECT 1 AS id) s ON c.card_id = s.id "
        "WHEN MATCHED THEN UPDATE SET brand = c.pan"
    )
    assert analyze(merge, BARE) == Lineage(None, True)
    plain = analyze(f"INSERT INTO cards (card_id, pan) VALUES (1, '{PAN}')", BARE)
    assert plain == Lineage(None, True)  # writes a sensitive column
    assert analyze("INSERT INTO customers (customer_id) VALUES (1)", BARE) == Lineage(None, False)


def test_copy() -> None:
    assert shape(analyze("COPY (SELECT reverse(pan) FROM cards) TO STDOUT", BARE)) == ("full",)
    assert shape(analyze("COPY cards (card_id, pan) TO STDOUT WITH (FORMAT csv)", BARE)) == (
        "clear",
        "bin_last4",
    )
    assert shape(analyze("COPY public.cards TO STDOUT", CATALOG)) == shape(analyze("TABLE cards", CATALOG))
    assert analyze("COPY (SELECT pan FROM cards) TO '/tmp/out'", BARE) == Lineage(None, True)
    assert analyze("COPY customers FROM STDIN", BARE) == Lineage(None, False)


def test_cursors_and_prepared_statements() -> None:
    declared = analyze("DECLARE c BINARY NO SCROLL CURSOR WITH HOLD FOR SELECT reverse(pan) FROM cards", BARE)
    assert shape(declared) == ("full",)
    assert declared.defines == ("cursor", "c")
    fetched = analyze("FETCH FORWARD 5 FROM c", BARE)
    assert (fetched.uses, fetched.columns) == (("cursor", "c"), None)
    assert fetched.unknown is not None  # a session that does not remember the DECLARE fails closed
    prepared = analyze("PREPARE p(bigint) AS SELECT pan AS x FROM cards WHERE card_id = $1", BARE)
    assert (shape(prepared), prepared.defines) == (("bin_last4",), ("statement", "p"))
    executed = analyze("EXECUTE p(1)", BARE)
    assert (executed.uses, executed.unknown is not None) == (("statement", "p"), True)
    # A parameter computed from card data would come back as the prepared statement's `$1`.
    smuggled = analyze("EXECUTE p((SELECT reverse(pan) FROM cards LIMIT 1))", BARE)
    assert smuggled.unknown is not None and smuggled.uses is None
    assert analyze('DECLARE "Cur" CURSOR FOR SELECT 1', BARE).defines == ("cursor", "Cur")
    assert analyze("PREPARE TRANSACTION 'x'", BARE) == Lineage(None, False)


def test_statements_without_rows() -> None:
    assert analyze("CREATE TABLE t AS SELECT pan FROM cards", BARE) == Lineage(None, True)
    assert analyze("SELECT pan INTO TEMP t FROM cards", BARE) == Lineage(None, True)
    assert analyze("CREATE VIEW v AS SELECT reverse(pan) AS r FROM cards", BARE) == Lineage(None, True)
    assert analyze("CREATE TABLE t (id int)", BARE) == Lineage(None, False)
    for sql in ("BEGIN", "COMMIT", "SET search_path = public", "SHOW search_path", "CLOSE c", "LISTEN x"):
        assert analyze(sql, BARE) == Lineage(None, False), sql
    assert analyze("", BARE) == Lineage(None, False)
    assert analyze("-- nothing", BARE) == Lineage(None, False)


def test_explain_shows_plans_not_values() -> None:
    plain = analyze("EXPLAIN (ANALYZE, VERBOSE) SELECT reverse(pan) FROM cards", BARE)
    assert (shape(plain), plain.sensitive) == (("clear",), True)
    assert analyze("EXPLAIN SELECT 1", BARE) == Lineage((OutputColumn("clear", name="QUERY PLAN"),), False)
    # With ANALYZE the statement runs: what it would keep for later still counts.
    assert analyze("EXPLAIN ANALYZE SELECT pg_notify('c', reverse(pan)) FROM cards", BARE).unknown is not None


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT query_to_xml('select reverse(pan) from cards', true, false, '')",
        "SELECT pg_catalog.table_to_xml('cards', true, false, '')",
        "SELECT * FROM dblink('dbname=payments', 'select pan from cards') AS t(p text)",
        "SELECT set_config('x.y', reverse(pan), false) FROM cards",
        "SELECT pg_notify('chan', reverse(pan)) FROM cards",
        "SELECT pan FROM cards; SELECT 1",
        'SELECT U&"p\\0061n" FROM cards',
        "DO $$ BEGIN RAISE NOTICE '%', (SELECT reverse(pan) FROM cards LIMIT 1); END $$",
        "SELECT OPERATOR(pg_catalog.||)(pan, '') FROM cards",
        "SELECT * FROM v_cards",  # a configured view of unknown columns
    ],
)
def test_fail_closed(sql: str) -> None:
    spec = SensitiveSpec(DEFAULT_MASKED_COLUMNS, views={"public.v_cards": ("card_ref",)})
    lineage = analyze(sql, spec)
    assert lineage.unknown is not None
    assert lineage.sensitive


def test_opaque_statements_that_name_nothing_sensitive_pass_to_content_detection() -> None:
    for sql in (
        "SELECT OPERATOR(pg_catalog.||)(brand, '') FROM customers",
        "DO $$ BEGIN END $$",
        "CALL p(1)",
    ):
        assert analyze(sql, BARE) == Lineage(None, False), sql
    # With the catalog, a table that holds card data counts as sensitive by name: whole rows hide there.
    opaque = analyze("SELECT OPERATOR(pg_catalog.||)(c::text, '') FROM cards c", CATALOG)
    assert opaque.unknown is not None


def test_configured_views() -> None:
    spec = SensitiveSpec(
        DEFAULT_MASKED_COLUMNS, views={"public.v_cards": ("card_ref",), "reports.all_secret": ("*",)}
    )
    assert shape(analyze("SELECT card_ref, brand, pan FROM v_cards", spec)) == ("full", "clear", "bin_last4")
    assert shape(analyze("SELECT x, y FROM reports.all_secret", spec)) == ("full", "full")
    assert shape(analyze("SELECT v FROM v_cards v", spec)) == ("full",)
    with_schema = SensitiveSpec(
        DEFAULT_MASKED_COLUMNS,
        views={"public.v_cards": ("card_ref",)},
        schema={"public.v_cards": ("id", "card_ref")},
    )
    assert shape(analyze("SELECT * FROM public.v_cards", with_schema)) == ("clear", "full")
    # The catalog's sampled values are a view of every column's contents.
    assert shape(analyze("SELECT most_common_vals FROM pg_stats WHERE attname = 'pan'", BARE)) == ("full",)


def test_reasons_and_sources_never_hold_card_numbers() -> None:
    for sql in (
        f'FETCH ALL FROM "{PAN}"',
        f'COPY "{PAN}" TO STDOUT',
        f'SELECT a FROM "{PAN}" AS t(a)',
        f"SELECT pan FROM cards WHERE pan = '{PAN}'; SELECT '{PAN}'",
        f"SELECT query_to_xml('select ''{PAN}''', true, false, '')",
    ):
        lineage = analyze(sql, BARE)
        assert lineage.unknown is not None, sql
        assert PAN not in lineage.unknown
    spec = SensitiveSpec((ColumnRule(match="/^p/", action="full"),))
    (col,) = columns(f'SELECT "p{PAN}" FROM "t{PAN}"', spec)
    assert col.action == "full"
    assert not any(PAN in s for s in col.sources)
    assert PAN not in repr(col)


# ---------------------------------------------------------------------------------------- sqlglot quirks


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT E'it\\'s', pan FROM cards", ("clear", "bin_last4")),
        ("SELECT 'a\\', pan FROM cards --'", ("clear", "bin_last4")),  # a plain string ends at the quote
        ("SELECT $x$ pan $$ $x$, pan FROM cards", ("clear", "bin_last4")),
        ("SELECT /* /* */ pan */ 1 FROM cards", ("clear",)),  # nested comments
        ("SELECT pan::text::varchar FROM cards", ("bin_last4",)),
        ("SELECT pan FROM cards FETCH FIRST 1 ROWS ONLY", ("bin_last4",)),
        ("/* lead */ DECLARE c CURSOR FOR SELECT pan FROM cards", ("bin_last4",)),
        ("SELECT pan FROM ONLY cards;", ("bin_last4",)),
    ],
)
def test_lexical_forms(sql: str, expected: tuple[str, ...]) -> None:
    assert shape(analyze(sql, BARE)) == expected


# -------------------------------------------------------------------------------------------- properties

QUOTED = st.text(st.characters(codec="ascii", exclude_characters='"\x00'), min_size=1, max_size=20)


@settings(max_examples=60, deadline=None)
@given(column=QUOTED, table=QUOTED)
def test_any_alias_keeps_the_lineage(column: str, table: str) -> None:
    q = column.replace('"', "")
    sql = f'SELECT "{table}"."{q}" FROM (SELECT reverse(pan) AS "{q}", pan AS x FROM cards) AS "{table}"'
    (col,) = columns(sql)
    assert (col.action, col.name) == ("full", q)
    (bare,) = columns(f'SELECT x AS "{q}" FROM (SELECT pan AS x FROM cards) AS "{table}"')
    assert bare.action == "bin_last4"


@settings(max_examples=60, deadline=None)
@given(name=st.from_regex(r"f_[a-z0-9_]{1,12}", fullmatch=True), extra=st.sampled_from(["", ", 1", ", 'x'"]))
def test_an_unknown_function_of_a_pan_is_never_clear(name: str, extra: str) -> None:
    assert shape(analyze(f"SELECT {name}(pan{extra}) FROM cards", BARE)) == ("full",)
    assert shape(analyze(f"SELECT {name}(brand{extra}) FROM cards", BARE)) == ("clear",)


# ----------------------------------------------------------------------------------------------- corpus


def corpus_pieces() -> list[tuple[str, str]]:
    return [(cid, piece) for cid, sql in BYPASS_CORPUS for piece in split_statements(sql)]


def test_the_corpus_is_large_and_distinct() -> None:
    ids = [cid for cid, _ in BYPASS_CORPUS]
    assert len(ids) >= 35
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("spec", [BARE, CATALOG], ids=["no-catalog", "catalog"])
@pytest.mark.parametrize(("cid", "sql"), BYPASS_CORPUS, ids=[cid for cid, _ in BYPASS_CORPUS])
def test_no_corpus_statement_passes_clear(cid: str, sql: str, spec: SensitiveSpec) -> None:
    """Each statement that returns rows has no PAN-carrying column called clear (unknown fails closed).

    A clear column is allowed only where a ``*`` expanded a demo table's own non-card column, or as a
    marker (the RowDescription names then decide, and ``pan`` keeps its name).
    """
    caught = False
    for piece in split_statements(sql):
        head = piece.split(None, 1)[0].upper()
        if head in ("BEGIN", "COMMIT", "DEALLOCATE"):
            continue
        lineage = analyze(piece, spec)
        if lineage.unknown is not None:
            caught = True
            continue
        assert lineage.columns is not None, piece
        for col in lineage.columns:
            assert col.action != "clear" or col.star is not None or col.name in CLEAR_DEMO_COLUMNS, (
                piece,
                col,
            )
        caught = caught or any(c.action != "clear" or c.star is not None for c in lineage.columns)
    assert caught, cid


# ------------------------------------------------------------------------------------------- the API


def test_analyzer_caches_by_text() -> None:
    analyzer = LineageAnalyzer(CATALOG, cache_size=8)
    first = analyzer.analyze("SELECT pan FROM cards")
    assert analyzer.analyze("SELECT pan FROM cards") is first
    long = "SELECT pan FROM cards WHERE " + " OR ".join(f"card_id = {i}" for i in range(3000))
    assert shape(analyzer.analyze(long)) == ("bin_last4",)  # longer than the cache keeps: analyzed anyway
    assert analyzer.column_action("CVV") == "null"


def test_spec_from_profile_and_config_views() -> None:
    profile = MaskingProfile.model_validate({"views": {"public.v_cards": ["card_ref"], "secret": ["*"]}})
    spec = SensitiveSpec.from_profile(profile, SCHEMA)
    assert spec.rules == DEFAULT_MASKED_COLUMNS
    assert isinstance(spec.views, Mapping) and spec.views["secret"] == ("*",)
    assert MaskingProfile().views == {}
    bad: object
    for bad in ({"": ["x"]}, {"v": []}, {"v": [""]}, {"v": "x"}):
        with pytest.raises(ValidationError):
            MaskingProfile.model_validate({"views": bad})


def test_stricter() -> None:
    assert stricter("clear", "bin_last4") == "bin_last4"
    assert stricter("null", "full") == "null"
    assert stricter("last4", "bin_last4") == "last4"
