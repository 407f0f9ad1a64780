"""Statements that try to get a card number (or a transformation of one) past name-based column rules.

Every statement is valid PostgreSQL (15 and later) against the demo ``payments`` schema (``public.customers``,
``public.cards``, ``public.transactions``). They read only, except the ``RETURNING`` ones, which write
nothing that changes a row (``SET pan = pan``) or match no row. Entries with several statements (a cursor,
a prepared statement) are one simple-Query text, split the way the server splits it.

Every output column of every statement carries PAN-derived data, except where a ``*`` expands over a table
(there the ``pan`` column keeps its name, and the other columns are the table's own). The lineage unit test
checks the analyzer never calls such a column clear; the integration suite runs them through the gateway.
"""

from __future__ import annotations

BYPASS_CORPUS: list[tuple[str, str]] = [
    # renamed, cast, quoted
    ("rename", "SELECT pan AS x FROM public.cards"),
    ("rename_quoted", 'SELECT pan AS "Card Ref" FROM public.cards'),
    ("quoted_identifiers", 'SELECT "pan" AS "X" FROM "public"."cards"'),
    ("cast_varchar", "SELECT CAST(pan AS varchar) AS v FROM public.cards"),
    ("cast_numeric", "SELECT regexp_replace(pan, '[^0-9]', '', 'g')::numeric AS n FROM public.cards"),
    ("composite_field", "SELECT (c).pan AS x FROM public.cards c"),
    ("join_using", "SELECT c.pan AS ref FROM public.transactions t JOIN public.cards c USING (card_id)"),
    # transformed
    ("reverse", "SELECT reverse(pan) FROM public.cards"),
    ("substr_prefix", "SELECT substr(pan, 1, 8) AS head FROM public.cards"),
    ("split_columns", "SELECT substr(pan, 1, 8) AS a, substr(pan, 9, 11) AS b FROM public.cards"),
    (
        "split_rows",
        "SELECT substr(c.pan, i, 1) AS d FROM public.cards c, generate_series(1, 19) AS i "
        "ORDER BY c.card_id, i",
    ),
    ("concat_empty", "SELECT pan || '' AS p FROM public.cards"),
    ("base64", "SELECT encode(convert_to(pan, 'UTF8'), 'base64') FROM public.cards"),
    ("hex", "SELECT encode(pan::bytea, 'hex') FROM public.cards"),
    ("digits_shifted", "SELECT translate(pan, '0123456789', '1234567890') AS shifted FROM public.cards"),
    ("md5", "SELECT md5(pan) FROM public.cards"),
    ("format", "SELECT format('%s', pan) FROM public.cards"),
    ("concat_ws", "SELECT concat_ws('-', pan, pan) FROM public.cards"),
    ("lpad", "SELECT lpad(pan, 24, '0') FROM public.cards"),
    ("overlay", "SELECT overlay(pan placing '' from 1 for 0) FROM public.cards"),
    ("regexp_replace", "SELECT regexp_replace(pan, '([0-9])', '\\1 ', 'g') FROM public.cards"),
    ("lower", "SELECT lower(pan) FROM public.cards"),
    (
        "to_char",
        "SELECT to_char(regexp_replace(pan, '[^0-9]', '', 'g')::numeric, 'FM99999999999999999999') "
        "FROM public.cards",
    ),
    ("case", "SELECT CASE WHEN brand IS NOT NULL THEN pan ELSE pan END AS p FROM public.cards"),
    ("window_lag", "SELECT lag(pan) OVER (ORDER BY card_id) AS prev FROM public.cards"),
    ("char_array", "SELECT regexp_split_to_array(pan, '') AS digits FROM public.cards"),
    # aggregated, structured
    ("string_agg", "SELECT string_agg(pan, ',') FROM public.cards"),
    ("array_agg", "SELECT array_agg(pan ORDER BY card_id) FROM public.cards"),
    ("jsonb_build_object", "SELECT jsonb_build_object('p', pan) FROM public.cards"),
    ("array_constructor", "SELECT ARRAY[pan] FROM public.cards"),
    ("row_constructor", "SELECT ROW(pan) FROM public.cards"),
    ("array_subquery", "SELECT ARRAY(SELECT pan FROM public.cards ORDER BY card_id) AS all_pans"),
    ("xmlelement", "SELECT xmlelement(name p, pan) FROM public.cards"),
    # whole-row references
    ("row_to_json", "SELECT row_to_json(c) FROM public.cards c"),
    ("to_jsonb_row", "SELECT to_jsonb(c.*) FROM public.cards c"),
    ("row_as_text", "SELECT c::text FROM public.cards c"),
    ("whole_row", "SELECT c FROM public.cards c"),
    ("jsonb_each", "SELECT j.value FROM public.cards c, jsonb_each_text(to_jsonb(c)) AS j"),
    # scopes
    ("scalar_subquery", "SELECT (SELECT pan FROM public.cards ORDER BY card_id LIMIT 1) AS p"),
    ("cte", "WITH x AS (SELECT pan AS v FROM public.cards) SELECT v FROM x"),
    (
        "recursive_cte",
        "WITH RECURSIVE r(n, v) AS (SELECT 1, pan FROM public.cards UNION ALL "
        "SELECT n + 1, reverse(v) FROM r WHERE n < 2) SELECT v FROM r",
    ),
    ("union", "SELECT brand FROM public.cards UNION ALL SELECT pan FROM public.cards"),
    ("derived_table", "SELECT s.v FROM (SELECT pan AS v FROM public.cards) AS s"),
    ("column_alias_list", "SELECT c.e FROM public.cards AS c(a, b, d, f, e)"),
    ("lateral", "SELECT l.v FROM public.cards c, LATERAL (SELECT c.pan AS v) AS l"),
    ("lateral_values", "SELECT v.x FROM public.cards c, LATERAL (VALUES (c.pan)) AS v(x)"),
    (
        "unnest_ordinality",
        "SELECT u.d FROM public.cards c, unnest(string_to_array(c.pan, NULL)) WITH ORDINALITY AS u(d, i)",
    ),
    # whole tables
    ("table", "TABLE public.cards"),
    ("star", "SELECT * FROM public.cards"),
    ("star_subquery", "SELECT * FROM (SELECT pan FROM public.cards) AS s"),
    # data-modifying statements that return rows (and change nothing)
    ("update_returning", "UPDATE public.cards SET pan = pan WHERE card_id = 1 RETURNING pan AS x"),
    (
        "update_returning_reverse",
        "UPDATE public.cards SET pan = pan WHERE card_id = 1 RETURNING reverse(pan)",
    ),
    ("delete_returning", "DELETE FROM public.cards WHERE false RETURNING pan"),
    (
        "upsert_returning",
        "INSERT INTO public.cards (card_id, pan) SELECT card_id, pan FROM public.cards WHERE card_id = 1 "
        "ON CONFLICT (card_id) DO UPDATE SET pan = excluded.pan RETURNING pan AS x",
    ),
    # COPY, cursors, prepared statements, dynamic SQL
    ("copy_query", "COPY (SELECT reverse(pan) FROM public.cards) TO STDOUT"),
    ("copy_table", "COPY public.cards TO STDOUT"),
    ("copy_columns", "COPY public.cards (pan) TO STDOUT"),
    (
        "cursor",
        "BEGIN; DECLARE c CURSOR FOR SELECT reverse(pan) FROM public.cards; FETCH ALL FROM c; COMMIT",
    ),
    ("prepared", "PREPARE p AS SELECT pan AS x FROM public.cards; EXECUTE p; DEALLOCATE p"),
    ("query_to_xml", "SELECT query_to_xml('SELECT reverse(pan) FROM public.cards', true, false, '')"),
]
