"""The policy engine: the first rule that matches decides; every key of a match must hold and any entry of
a key's list will do; an opaque statement is decided only by rules that need nothing it hides, and
otherwise gets the policy's opaque_action, never its default_action."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.policy.engine import ApprovalSpec, Decision, PolicyEngine, Requester
from gateway.policy.facts import Facts, statement_facts
from pcigate.config.models import Approvals, Policy

AGENT = Requester(frozenset({"agents"}), "agent")
HUMAN = Requester(frozenset({"dba", "payments"}), "human")
SERVICE = Requester(frozenset(), "service")
MONDAY_9_UTC = datetime(2024, 1, 1, 9, 0, tzinfo=UTC).timestamp()  # 2024-01-01 is a Monday


def engine(
    rules: list[dict[str, Any]],
    *,
    default: str = "allow",
    opaque: str = "block",
    approvals: dict[str, Any] | None = None,
    clock: Callable[[], float] = lambda: MONDAY_9_UTC,
) -> PolicyEngine:
    policy = Policy.model_validate({"default_action": default, "opaque_action": opaque, "rules": rules})
    return PolicyEngine(policy, Approvals.model_validate(approvals or {}), clock=clock)


def rule(name: str, action: str = "block", **match: Any) -> dict[str, Any]:
    return {"name": name, "match": match, "action": action}


def decide(e: PolicyEngine, sql: str | Facts, who: Requester = AGENT) -> Decision:
    return e.decide(who, statement_facts(sql) if isinstance(sql, str) else sql)


def matches(sql: str | Facts, who: Requester = AGENT, **match: Any) -> bool:
    """Whether a lone rule with this match applies (block) or not (default allow)."""
    decision = decide(engine([rule("r", **match)]), sql, who)
    assert decision.rule in ("r", "default"), decision
    return decision.rule == "r"


# ------------------------------------------------------------------------------------------ order


def test_first_matching_rule_decides() -> None:
    e = engine(
        [
            rule("no-drop", commands=["drop"]),
            rule("reads", "allow", statements=["read"]),
            rule("also-reads", "require_approval", statements=["read"]),
        ],
        default="block",
    )
    assert decide(e, "DROP TABLE cards") == Decision("block", "no-drop", "rule no-drop matched")
    assert decide(e, "SELECT 1").rule == "reads"
    assert decide(e, "SELECT 1").action == "allow"
    assert decide(e, "INSERT INTO t VALUES (1)") == Decision("block", "default", "no rule matched")


def test_order_matters() -> None:
    narrow = rule("cards", "block", tables=["cards"])
    broad = rule("reads", "allow", statements=["read"])
    assert decide(engine([narrow, broad]), "SELECT * FROM cards").action == "block"
    assert decide(engine([broad, narrow]), "SELECT * FROM cards").action == "allow"


def test_an_empty_match_applies_to_everything() -> None:
    e = engine([rule("all", "mask")], default="block")
    for sql in ("SELECT 1", "DELETE FROM cards", "BEGIN", "COPY cards TO STDOUT"):
        assert decide(e, sql).action == "mask"


def test_default_action_when_nothing_matches() -> None:
    for default in ("allow", "block", "require_approval"):
        d = decide(engine([rule("x", commands=["drop"])], default=default), "SELECT 1")
        assert (d.action, d.rule) == (default, "default")


def test_message_is_carried() -> None:
    e = engine([{"name": "r", "match": {}, "action": "block", "message": "ask the DBA"}])
    assert decide(e, "SELECT 1").message == "ask the DBA"


# ------------------------------------------------------------------------------------------ each key


def test_groups() -> None:
    assert matches("SELECT 1", AGENT, groups=["agents"])
    assert matches("SELECT 1", HUMAN, groups=["nobody", "dba"])
    assert not matches("SELECT 1", HUMAN, groups=["agents"])
    assert not matches("SELECT 1", SERVICE, groups=["agents"])


def test_kinds() -> None:
    assert matches("SELECT 1", AGENT, kinds=["agent"])
    assert matches("SELECT 1", SERVICE, kinds=["human", "service"])
    assert not matches("SELECT 1", HUMAN, kinds=["agent", "service"])


@pytest.mark.parametrize(
    ("sql", "classes", "expected"),
    [
        ("SELECT 1", ["read"], True),
        ("SELECT 1", ["write", "ddl"], False),
        ("DELETE FROM t WHERE id = 1 RETURNING id", ["read"], True),
        ("DELETE FROM t WHERE id = 1 RETURNING id", ["write"], True),
        ("WITH x AS (DELETE FROM t RETURNING 1) SELECT 1", ["write"], True),
        ("EXPLAIN ANALYZE DELETE FROM t", ["write"], True),
        ("EXPLAIN DELETE FROM t", ["write"], False),
        ("COPY t TO STDOUT", ["copy_out"], True),
        ("COPY t TO STDOUT", ["copy_in", "read"], False),
        ("BEGIN", ["transaction"], True),
        ("SET ROLE admin", ["dcl"], True),
        ("CALL p()", ["function_call"], True),
    ],
)
def test_statements(sql: str, classes: list[str], expected: bool) -> None:
    assert matches(sql, statements=classes) is expected


@pytest.mark.parametrize(
    ("sql", "commands", "expected"),
    [
        ("DROP TABLE cards", ["drop"], True),
        ("drop table cards", ["DROP"], True),
        ("DROP TABLE cards", ["drop table"], True),
        ("DROP TABLE cards", ["drop view"], False),
        ("DROP TABLE cards", ["dro"], False),  # whole keywords only
        ("/* c */ TRUNCATE cards", ["drop", "truncate"], True),
        ("ALTER SYSTEM SET work_mem = '1GB'", ["alter system"], True),
        ("ALTER TABLE cards ADD x int", ["alter system"], False),
        ("SET ROLE admin", ["set role"], True),
        ("SELECT 1", ["drop"], False),
    ],
)
def test_commands(sql: str, commands: list[str], expected: bool) -> None:
    assert matches(sql, commands=commands) is expected


@pytest.mark.parametrize(
    ("sql", "tables", "expected"),
    [
        ("SELECT * FROM cards", ["public.cards"], True),
        ("SELECT * FROM cards", ["cards"], True),  # fewer parts: any schema
        ("SELECT * FROM billing.cards", ["cards"], True),
        ("SELECT * FROM cards", ["*.cards"], True),
        ("SELECT * FROM cards", ["public.*"], True),
        ("SELECT * FROM cards", ["*"], True),
        ("SELECT * FROM cards", ["c?rds"], True),
        ("SELECT * FROM cards", ["card[sz]"], True),
        ("SELECT * FROM billing.cards", ["public.cards"], False),
        ("SELECT * FROM billing.cards", ["public.*"], False),
        ("SELECT * FROM mycards", ["cards"], False),
        ("SELECT * FROM cards_archive", ["cards"], False),
        ("SELECT * FROM cards_archive", ["cards*"], True),
        ('SELECT * FROM "Cards"', ["cards"], True),  # names are compared in lower case
        ("SELECT * FROM orders JOIN cards ON true", ["cards"], True),  # any table of the statement
        ("SELECT * FROM orders", ["cards", "orders"], True),  # any pattern
        ("SELECT 1", ["*"], False),  # no table at all
        ("WITH cards AS (SELECT * FROM cards) SELECT * FROM cards", ["public.cards"], True),
        ("WITH cards AS (SELECT 1) DELETE FROM cards", ["public.cards"], True),
    ],
)
def test_tables(sql: str, tables: list[str], expected: bool) -> None:
    assert matches(sql, tables=tables) is expected


@pytest.mark.parametrize(
    ("sql", "columns", "expected"),
    [
        ("SELECT pan FROM cards", ["public.cards.pan"], True),
        ("SELECT pan FROM cards", ["cards.pan"], True),
        ("SELECT pan FROM cards", ["pan"], True),
        ("SELECT pan FROM cards", ["*.pan"], True),
        ("SELECT pan FROM cards", ["public.cards.*"], True),
        ("SELECT pan FROM cards", ["p?n"], True),
        ("SELECT pan FROM cards", ["orders.pan"], False),
        ("SELECT pan FROM cards", ["billing.cards.pan"], False),
        ("SELECT brand FROM cards", ["pan"], False),
        # a star (or a whole-row reference, or COPY of the table) reads every column: it may be pan
        ("SELECT * FROM cards", ["pan"], True),
        ("SELECT * FROM cards", ["cards.pan"], True),
        ("SELECT * FROM cards", ["public.cards.pan"], True),
        ("SELECT * FROM cards", ["*.*.pan"], True),
        ("SELECT * FROM cards", ["orders.pan"], False),
        ("SELECT * FROM cards", ["billing.cards.pan"], False),
        ("SELECT c FROM cards c", ["cards.pan"], True),
        ("SELECT row_to_json(c) FROM cards c", ["cards.pan"], True),
        ("SELECT p FROM cards AS c(p)", ["cards.pan"], True),
        ("COPY cards TO STDOUT", ["cards.pan"], True),
        ("COPY cards (brand) TO STDOUT", ["cards.pan"], False),
        ("SELECT c.pan FROM cards c WHERE EXISTS (SELECT 1 FROM orders c)", ["cards.pan"], True),
    ],
)
def test_columns(sql: str, columns: list[str], expected: bool) -> None:
    assert matches(sql, columns=columns) is expected


@pytest.mark.parametrize(
    ("sql", "functions", "expected"),
    [
        ("SELECT pg_read_file('/x')", ["pg_read_file"], True),
        ("SELECT pg_read_file('/x')", ["pg_catalog.pg_read_file"], True),  # unqualified: may be any schema
        ("SELECT pg_read_file('/x')", ["pg_*"], True),
        ("SELECT pg_catalog.pg_read_file('/x')", ["pg_read_file"], True),
        ("SELECT pg_catalog.pg_read_file('/x')", ["pg_catalog.pg_read_file"], True),
        ("SELECT pg_catalog.pg_read_file('/x')", ["pg_catalog.*"], True),
        ("SELECT pg_catalog.pg_read_file('/x')", ["*.pg_read_file"], True),
        ("SELECT pg_catalog.pg_read_file('/x')", ["public.pg_read_file"], False),
        ("SELECT pg_catalog.lower('x')", ["evil.*"], False),
        ("SELECT evil.lower('x')", ["evil.*"], True),
        ("SELECT evil.lower('x')", ["lower"], True),
        ("SELECT lower('x')", ["upper"], False),
        ("SELECT now()", ["now"], True),
        ("CALL refresh_stats()", ["refresh_stats"], True),
        ("CALL ops.refresh_stats()", ["ops.*"], True),
        ("CALL ops.refresh_stats()", ["public.refresh_stats"], False),
        ("SELECT 1", ["*"], False),
    ],
)
def test_functions(sql: str, functions: list[str], expected: bool) -> None:
    assert matches(sql, functions=functions) is expected


@pytest.mark.parametrize(
    ("sql", "conditions", "expected"),
    [
        ("DELETE FROM cards", ["no_where"], True),
        ("DELETE FROM cards WHERE id = 1", ["no_where"], False),
        ("SELECT pg_read_file('/x')", ["no_where", "dangerous_function"], True),
        ("COPY cards TO PROGRAM 'x'", ["copy_program"], True),
        ("COPY cards TO PROGRAM 'x'", ["copy_file"], False),
        ("SET ROLE admin", ["set_role"], True),
        ("SET LOCAL SESSION AUTHORIZATION admin", ["set_session_authorization"], True),
        ("SET SCHEMA 'evil'", ["search_path"], True),
        ("SELECT 1", ["no_where", "dangerous_function", "set_role"], False),
    ],
)
def test_conditions(sql: str, conditions: list[str], expected: bool) -> None:
    assert matches(sql, conditions=conditions) is expected


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT * FROM cards LIMIT 100", False),
        ("SELECT * FROM cards LIMIT 99", False),
        ("SELECT * FROM cards FETCH FIRST 100 ROWS ONLY", False),
        ("SELECT * FROM cards LIMIT 0", False),
        ("SELECT * FROM cards LIMIT 101", True),
        ("SELECT * FROM cards", True),
        ("SELECT * FROM cards LIMIT ALL", True),
        ("SELECT * FROM cards LIMIT $1", True),
        ("SELECT * FROM (SELECT * FROM cards LIMIT 5) s", True),
        ("SELECT * FROM cards ORDER BY brand FETCH FIRST 5 ROWS WITH TIES", True),
        ("COPY cards TO STDOUT", True),
        ("COPY (SELECT * FROM cards LIMIT 5) TO STDOUT", True),  # no top-level query: no known bound
        ("DELETE FROM cards WHERE id = 1 RETURNING pan", True),  # returns rows: a read too
        ("DECLARE c CURSOR FOR SELECT * FROM cards LIMIT 100", False),
        ("DECLARE c CURSOR FOR SELECT * FROM cards", True),
        # only reads and COPY TO return rows to the client
        ("DELETE FROM cards WHERE id = 1", False),
        ("COPY cards FROM STDIN", False),
        ("BEGIN", False),
        ("EXPLAIN SELECT * FROM cards", False),
    ],
)
def test_rows_over(sql: str, expected: bool) -> None:
    assert matches(sql, rows_over=100) is expected


def test_rows_over_zero() -> None:
    assert not matches("SELECT * FROM cards LIMIT 0", rows_over=0)
    assert matches("SELECT * FROM cards LIMIT 1", rows_over=0)


# ------------------------------------------------------------------------------------------ combined


def test_keys_combine_with_and_entries_with_or() -> None:
    match = {"kinds": ["agent"], "statements": ["read", "copy_out"], "tables": ["cards"], "rows_over": 100}
    assert matches("SELECT * FROM cards", AGENT, **match)
    assert matches("COPY cards TO STDOUT", AGENT, **match)
    assert not matches("SELECT * FROM cards", HUMAN, **match)  # kind
    assert not matches("SELECT * FROM cards LIMIT 10", AGENT, **match)  # rows
    assert not matches("SELECT * FROM orders", AGENT, **match)  # table
    assert not matches("DELETE FROM cards", AGENT, **match)  # class


def test_every_key_must_hold() -> None:
    full = {
        "groups": ["agents"],
        "kinds": ["agent"],
        "statements": ["read"],
        "commands": ["select"],
        "tables": ["public.cards"],
        "columns": ["cards.pan"],
        "functions": ["lower"],
        "conditions": ["dangerous_function"],
        "rows_over": 10,
    }
    sql = "SELECT lower(pan), pg_read_file('/x') FROM cards LIMIT 50"
    assert matches(sql, AGENT, **full)
    for key, miss in [
        ("groups", ["dba"]),
        ("kinds", ["human"]),
        ("statements", ["write"]),
        ("commands", ["with"]),
        ("tables", ["orders"]),
        ("columns", ["cards.brand"]),
        ("functions", ["upper"]),
        ("conditions", ["no_where"]),
        ("rows_over", 50),
    ]:
        assert not matches(sql, AGENT, **{**full, key: miss}), key


# ------------------------------------------------------------------------------------------ allow covers all


@pytest.mark.parametrize(
    ("sql", "match", "expected"),
    [
        ("SELECT * FROM cards", {"statements": ["read"]}, True),
        ("DELETE FROM cards WHERE id = 1 RETURNING id", {"statements": ["read"]}, False),
        ("DELETE FROM cards WHERE id = 1 RETURNING id", {"statements": ["read", "write"]}, True),
        ("WITH x AS (DELETE FROM cards RETURNING *) SELECT * FROM x", {"statements": ["read"]}, False),
        ("EXPLAIN (ANALYZE) WITH x AS (DELETE FROM t RETURNING 1) SELECT 1", {"statements": ["read"]}, False),
        ("SELECT * INTO loot FROM cards", {"statements": ["read"]}, False),
        ("CREATE TABLE loot AS SELECT * FROM cards", {"statements": ["read"]}, False),
        ("INSERT INTO loot SELECT * FROM cards", {"statements": ["read"]}, False),
        ("COPY (DELETE FROM cards RETURNING *) TO STDOUT", {"statements": ["copy_out", "read"]}, False),
        ("SELECT * FROM reports.daily", {"tables": ["reports.*"]}, True),
        ("SELECT * FROM reports.daily r JOIN cards c ON true", {"tables": ["reports.*"]}, False),
        ("SELECT * FROM reports.daily WHERE id IN (SELECT id FROM cards)", {"tables": ["reports.*"]}, False),
        ("SELECT 1", {"tables": ["*"]}, False),  # a rule on tables lets through only what has some
        ("SELECT brand, id FROM cards", {"columns": ["cards.brand", "cards.id"]}, True),
        ("SELECT brand, pan FROM cards", {"columns": ["cards.brand", "cards.id"]}, False),
        ("SELECT * FROM cards", {"columns": ["cards.brand"]}, False),  # the star may be pan
        ("SELECT * FROM cards", {"columns": ["cards.*"]}, True),
        ("SELECT c FROM cards c", {"columns": ["cards.brand", "cards.c"]}, False),  # the whole row
        ("SELECT lower(brand) FROM cards", {"functions": ["lower"]}, True),
        ("SELECT lower(brand) FROM cards", {"functions": ["*.lower"]}, True),
        ("SELECT lower(brand) FROM cards", {"functions": ["pg_catalog.lower"]}, False),  # schema unknown
        ("SELECT pg_catalog.lower(brand) FROM cards", {"functions": ["pg_catalog.lower"]}, True),
        ("SELECT lower(brand), pg_read_file('/x') FROM cards", {"functions": ["lower"]}, False),
    ],
)
def test_an_allow_rule_must_cover_all_of_the_statement(
    sql: str, match: dict[str, Any], expected: bool
) -> None:
    d = decide(engine([rule("r", "allow", **match)], default="block"), sql)
    assert (d.rule == "r") is expected


def test_a_mask_rule_hides_what_any_part_of_the_statement_returns() -> None:
    for sql, match in [
        ("SELECT * FROM reports.daily r JOIN cards c ON true", {"tables": ["cards"]}),
        ("SELECT brand, pan FROM cards", {"columns": ["cards.pan"]}),
        ("SELECT * FROM cards", {"columns": ["cards.pan"]}),
        ("SELECT lower(brand), pg_read_file('/x') FROM cards", {"functions": ["pg_read_file"]}),
        ("SELECT * FROM cards", {"statements": ["read"], "tables": ["cards"]}),
        ("DELETE FROM cards WHERE id = 1 RETURNING pan", {"tables": ["cards"]}),  # no statements: all
    ]:
        d = decide(engine([rule("r", "mask", **match)], default="block"), sql)
        assert (d.action, d.rule, d.why, [m.name for m in d.masks]) == (
            "mask",
            "r",
            "rule r matched",
            ["r"],
        ), sql


def test_a_mask_rule_lets_run_only_the_classes_it_lists() -> None:
    mask_reads = rule("mask-reads", "mask", statements=["read"], tables=["cards"])
    update = "UPDATE cards SET brand = brand WHERE true RETURNING pan"  # a read of pan, and a write
    # The write is not the mask rule's to allow: the rules after it (here the default) decide ...
    assert decide(engine([mask_reads], default="block"), update) == Decision(
        "block", "default", "no rule matched"
    )
    held = decide(engine([mask_reads, rule("held", "require_approval", statements=["write"])]), update)
    assert (held.action, held.rule) == ("require_approval", "held")
    assert [m.name for m in held.masks] == ["mask-reads"]  # approved, it runs masked
    # ... and what they let run stays masked.
    d = decide(engine([mask_reads, rule("writes", "allow", statements=["read", "write"])]), update)
    assert (d.action, d.rule, d.why) == ("mask", "writes", "rule writes matched; rule mask-reads masks it")
    assert [m.name for m in d.masks] == ["mask-reads"]
    d = decide(engine([mask_reads], default="allow"), update)
    assert (d.action, d.rule, d.why) == ("mask", "default", "no rule matched; rule mask-reads masks it")
    d = decide(
        engine([mask_reads, rule("all", "mask", statements=["read", "write"])], default="block"), update
    )
    assert (d.action, d.rule) == ("mask", "all")
    assert [m.name for m in d.masks] == ["mask-reads", "all"]  # each matching mask rule applies
    d = decide(engine([mask_reads]), "SELECT * FROM cards")
    assert (d.action, d.rule, d.why) == ("mask", "mask-reads", "rule mask-reads matched")
    blocked = decide(engine([mask_reads, rule("no", "block", statements=["write"])]), update)
    assert blocked == Decision("block", "no", "rule no matched")  # nothing runs: nothing to mask


@pytest.mark.parametrize("action", ["block", "require_approval"])
def test_a_rule_that_stops_a_statement_applies_to_any_part_of_it(action: str) -> None:
    for sql, match in [
        ("DELETE FROM cards WHERE id = 1 RETURNING id", {"statements": ["read"]}),
        ("WITH x AS (DELETE FROM cards RETURNING *) SELECT * FROM x", {"statements": ["write"]}),
        ("SELECT * FROM reports.daily r JOIN cards c ON true", {"tables": ["cards"]}),
        ("SELECT * FROM cards", {"columns": ["cards.pan"]}),
        ("SELECT lower(brand), pg_read_file('/x') FROM cards", {"functions": ["pg_catalog.pg_read_file"]}),
    ]:
        assert decide(engine([rule("r", action, **match)]), sql).rule == "r", sql


def test_reads_only_policy_holds_hidden_writes() -> None:
    # The shape of examples/pcigate.yaml's "payments" policy: reads run, anything else is refused.
    e = engine(
        [
            rule("no-destruction", commands=["drop", "truncate", "alter system"]),
            rule("no-escape", conditions=["dangerous_function", "copy_program", "copy_file", "set_role"]),
            rule("agents-read-little", "require_approval", kinds=["agent"], tables=["cards"], rows_over=100),
            rule("reads", "allow", statements=["read", "utility", "transaction"]),
        ],
        default="block",
        opaque="block",
    )
    for sql in [
        "DELETE FROM orders WHERE id = 1 RETURNING id",
        "WITH x AS (DELETE FROM orders RETURNING *) SELECT * FROM x",
        "EXPLAIN ANALYZE DELETE FROM orders",
        "EXPLAIN/**/ANALYZE DELETE FROM orders",
        "SELECT * INTO loot FROM orders",
        "CREATE TABLE loot AS SELECT * FROM orders",
        "PREPARE p AS DELETE FROM orders",
        "SET LOCAL SESSION AUTHORIZATION admin",
        "SELECT set_config('role', 'admin', false)",
        "SET standard_conforming_strings = off",
        "DO $$ BEGIN DELETE FROM orders; END $$",
        "COPY orders TO '/tmp/x'",
    ]:
        assert decide(e, sql, HUMAN).action == "block", sql
    assert decide(e, "SELECT * FROM orders", HUMAN).action == "allow"
    assert decide(e, "EXPLAIN DELETE FROM orders", HUMAN).action == "allow"  # only plans it
    assert decide(e, "SELECT * FROM cards", AGENT).action == "require_approval"
    assert decide(e, "SELECT * FROM cards LIMIT 100", AGENT).action == "allow"
    assert decide(e, "SELECT * FROM cards LIMIT /**/ 100000", AGENT).action == "require_approval"


# ------------------------------------------------------------------------------------------ time


def at(text: str) -> Callable[[], float]:
    """A fake clock at an ISO time (UTC unless the text says otherwise)."""
    when = datetime.fromisoformat(text)
    stamp = (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
    return lambda: stamp


@pytest.mark.parametrize(
    ("now", "window", "expected"),
    [
        ("2024-01-01T09:00", {"start": "08:00", "end": "19:00"}, True),
        ("2024-01-01T08:00", {"start": "08:00", "end": "19:00"}, True),  # start is inside
        ("2024-01-01T07:59:59", {"start": "08:00", "end": "19:00"}, False),
        ("2024-01-01T18:59:59", {"start": "08:00", "end": "19:00"}, True),
        ("2024-01-01T19:00", {"start": "08:00", "end": "19:00"}, False),  # end is outside
        ("2024-01-01T23:59:59", {"start": "12:00", "end": "24:00"}, True),
        ("2024-01-01T00:00", {}, True),  # the default window is always
        ("2024-01-01T09:00", {"days": ["mon"]}, True),
        ("2024-01-01T09:00", {"days": ["tue", "wed"]}, False),
        ("2024-01-06T09:00", {"days": ["mon", "tue", "wed", "thu", "fri"]}, False),  # a Saturday
        ("2024-01-07T09:00", {"days": ["sun"]}, True),
        # the window's zone decides the day and the hour
        ("2024-01-01T07:30", {"start": "08:00", "end": "19:00", "tz": "Europe/Berlin"}, True),  # 08:30 there
        ("2024-01-01T18:30", {"start": "08:00", "end": "19:00", "tz": "Europe/Berlin"}, False),  # 19:30
        ("2024-07-01T06:30", {"start": "08:00", "end": "19:00", "tz": "Europe/Berlin"}, True),  # summer time
        ("2024-01-07T23:30", {"days": ["mon"], "tz": "Europe/Berlin"}, True),  # Monday 00:30 in Berlin
        ("2024-01-07T23:30", {"days": ["sun"], "tz": "Europe/Berlin"}, False),
        ("2024-01-01T09:00", {"days": ["sun"], "tz": "America/New_York"}, False),  # 04:00 Monday
        ("2024-01-01T03:00", {"days": ["sun"], "tz": "America/New_York"}, True),  # 22:00 Sunday
        ("2024-01-01T09:00+01:00", {"start": "08:00", "end": "08:30"}, True),  # 08:00 UTC
        # outside: true inverts the whole window
        ("2024-01-01T09:00", {"start": "08:00", "end": "19:00", "outside": True}, False),
        ("2024-01-01T19:00", {"start": "08:00", "end": "19:00", "outside": True}, True),
        ("2024-01-06T09:00", {"days": ["mon", "tue", "wed", "thu", "fri"], "outside": True}, True),
    ],
)
def test_time_window(now: str, window: dict[str, Any], expected: bool) -> None:
    e = engine([rule("r", time=window)], clock=at(now))
    assert (decide(e, "SELECT 1").rule == "r") is expected


def test_time_is_read_per_statement() -> None:
    now = [MONDAY_9_UTC]
    e = engine(
        [rule("office", "allow", time={"start": "08:00", "end": "19:00"})],
        default="block",
        clock=lambda: now[0],
    )
    assert decide(e, "SELECT 1").action == "allow"
    now[0] += timedelta(hours=12).total_seconds()
    assert decide(e, "SELECT 1").action == "block"


def test_night_writes_example() -> None:
    weekdays = ["mon", "tue", "wed", "thu", "fri"]
    office = {"days": weekdays, "start": "08:00", "end": "19:00", "tz": "Europe/Berlin", "outside": True}
    night = rule("night-writes", statements=["write", "ddl"], time=office)
    delete = "DELETE FROM t WHERE id = 1"
    assert decide(engine([night], clock=at("2024-01-01T10:00")), delete).action == "allow"
    assert decide(engine([night], clock=at("2024-01-01T20:00")), delete).action == "block"
    assert decide(engine([night], clock=at("2024-01-06T10:00")), delete).action == "block"
    assert decide(engine([night], clock=at("2024-01-01T20:00")), "SELECT 1").action == "allow"


# ------------------------------------------------------------------------------------------ opaque

OPAQUE = "SELECT * FROM cards LIMIT 1_000"  # sqlglot cannot parse it


def test_opaque_fixture_is_opaque() -> None:
    f = statement_facts(OPAQUE)
    assert f.opaque is not None
    assert f.command == "select from cards"
    assert statement_facts("DO $$ BEGIN DROP TABLE cards; END $$").opaque is not None


@pytest.mark.parametrize(
    "match",
    [
        {"groups": ["agents"]},
        {"kinds": ["agent"]},
        {"commands": ["select"]},
        {"time": {"start": "08:00", "end": "19:00"}},
        {"groups": ["agents"], "kinds": ["agent"], "commands": ["select"]},
        {},
    ],
)
def test_a_rule_on_what_an_opaque_statement_shows_decides(match: dict[str, Any]) -> None:
    d = decide(engine([rule("r", "allow", **match)], default="block", opaque="block"), OPAQUE)
    assert (d.action, d.rule) == ("allow", "r")


def test_keyword_conditions_are_known_for_opaque_statements() -> None:
    e = engine([rule("no-role", conditions=["set_role"]), rule("agents", "allow", kinds=["agent"])])
    assert decide(e, OPAQUE) == Decision("allow", "agents", "rule agents matched")
    f = Facts(frozenset({"dcl"}), "set role admin", conditions=frozenset({"set_role"}), opaque="unparsed")
    assert decide(e, f).rule == "no-role"


@pytest.mark.parametrize(
    "match",
    [
        {"statements": ["read"]},
        {"statements": ["write"]},
        {"tables": ["cards"]},
        {"tables": ["orders"]},
        {"columns": ["pan"]},
        {"functions": ["pg_read_file"]},
        {"rows_over": 100},
        {"conditions": ["dangerous_function"]},
        {"conditions": ["no_where", "set_role"]},
        {"kinds": ["agent"], "tables": ["cards"]},
    ],
)
def test_a_rule_that_may_apply_to_an_opaque_statement_stops_the_walk(match: dict[str, Any]) -> None:
    e = engine([rule("r", "allow", **match), rule("all", "allow")], default="allow", opaque="block")
    d = decide(e, OPAQUE)
    assert (d.action, d.rule) == ("block", "opaque")
    assert d.why.startswith("rule r may apply, but ")


def test_opaque_action_require_approval_for_an_opaque_statement() -> None:
    e = engine([rule("r", "block", statements=["write"])], opaque="require_approval")
    d = decide(e, "DO $$ BEGIN DELETE FROM cards; END $$")
    assert (d.action, d.rule) == ("require_approval", "opaque")
    assert d.approval is not None


@pytest.mark.parametrize(
    "match",
    [
        {"groups": ["dba"], "tables": ["cards"]},
        {"kinds": ["human"], "statements": ["write"]},
        {"commands": ["drop"], "tables": ["cards"]},
        {"time": {"days": ["sun"]}, "rows_over": 1},
        {"conditions": ["set_role"], "tables": ["cards"]},
    ],
)
def test_a_structural_rule_that_cannot_apply_is_skipped(match: dict[str, Any]) -> None:
    # What the statement shows already rules it out: what it hides cannot make it apply.
    e = engine([rule("r", **match), rule("agents", "allow", kinds=["agent"])], opaque="block")
    assert decide(e, OPAQUE).rule == "agents"


def test_an_opaque_statement_no_rule_applies_to_gets_opaque_action_not_default() -> None:
    e = engine([rule("humans", "allow", kinds=["human"])], default="allow", opaque="require_approval")
    d = decide(e, OPAQUE)
    assert (d.action, d.rule) == ("require_approval", "opaque")
    assert d.why == statement_facts(OPAQUE).opaque
    assert decide(e, "SELECT 1").action == "allow"  # the default, for what can be read


@pytest.mark.parametrize(
    "sql",
    [
        "EXPLAIN/**/ANALYZE DELETE FROM cards",
        "DO $$ BEGIN DELETE FROM cards; END $$",
        "SELECT U&\"\\0070g_read_file\"('/etc/passwd')",
        "SET standard_conforming_strings = off",
        "CREATE TABLE loot AS EXECUTE p",
        "EXECUTE p",
    ],
)
def test_bypass_attempts_fall_to_opaque_action(sql: str) -> None:
    e = engine(
        [
            rule("no-escape", conditions=["dangerous_function", "copy_program", "copy_file", "set_role"]),
            rule("reads", "allow", statements=["read", "utility", "transaction"]),
        ],
        default="block",
        opaque="block",
    )
    d = decide(e, sql)
    assert (d.action, d.rule) == ("block", "opaque")


# ------------------------------------------------------------------------------------------ approvals

APPROVALS = {"approver_groups": ["leads"], "default_quorum": 2, "default_timeout": "30m"}


def test_require_approval_from_the_approvals_defaults() -> None:
    e = engine([rule("held", "require_approval")], approvals=APPROVALS)
    d = decide(e, "SELECT 1")
    assert d.approval == ApprovalSpec(("leads",), 2, timedelta(minutes=30), "statement")


def test_require_approval_from_the_rules_own_approval() -> None:
    held = {
        "name": "refunds",
        "match": {"tables": ["refunds"]},
        "action": "require_approval",
        "approval": {
            "groups": ["payments-leads"],
            "quorum": 3,
            "timeout": "2h",
            "scope": "session",
            "session_for": "30m",
        },
    }
    d = decide(engine([held], approvals=APPROVALS), "UPDATE refunds SET ok = true WHERE id = 1")
    assert d.approval == ApprovalSpec(
        ("payments-leads",), 3, timedelta(hours=2), "session", timedelta(minutes=30)
    )


def test_a_rules_approval_falls_back_field_by_field() -> None:
    held = {"name": "r", "match": {}, "action": "require_approval", "approval": {"quorum": 3}}
    d = decide(engine([held], approvals=APPROVALS), "SELECT 1")
    assert d.approval == ApprovalSpec(("leads",), 3, timedelta(minutes=30), "statement")
    held["approval"] = {"groups": ["x"], "scope": "session"}
    d = decide(engine([held], approvals=APPROVALS), "SELECT 1")
    # scope session without session_for: one hour
    assert d.approval == ApprovalSpec(("x",), 2, timedelta(minutes=30), "session", timedelta(hours=1))


def test_default_and_opaque_approvals_use_the_defaults() -> None:
    e = engine([], default="require_approval", opaque="require_approval", approvals=APPROVALS)
    expected = ApprovalSpec(("leads",), 2, timedelta(minutes=30), "statement")
    assert decide(e, "SELECT 1").approval == expected
    assert decide(e, OPAQUE).approval == expected
    assert engine([]).policy.default_action == "allow"
    unset = decide(engine([], default="require_approval"), "SELECT 1").approval
    assert unset == ApprovalSpec((), 1, timedelta(minutes=15), "statement")  # no approver: nobody can


@pytest.mark.parametrize("action", ["allow", "block", "mask"])
def test_other_actions_carry_no_approval(action: str) -> None:
    assert decide(engine([rule("r", action)], approvals=APPROVALS), "SELECT 1").approval is None


# ------------------------------------------------------------------------------------------ properties

_CLASSES = ["read", "write", "ddl", "dcl", "utility", "copy_out", "copy_in", "function_call", "transaction"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "kinds": st.lists(st.sampled_from(["human", "agent", "service"]), min_size=1, max_size=2),
                "statements": st.lists(st.sampled_from(_CLASSES), min_size=1, max_size=3),
                "tables": st.lists(st.sampled_from(["cards", "public.*", "orders"]), min_size=1, max_size=2),
                "commands": st.lists(st.sampled_from(["select", "drop", "delete"]), min_size=1, max_size=2),
                "conditions": st.lists(st.sampled_from(["no_where", "set_role"]), min_size=1, max_size=2),
            },
        ),
        max_size=4,
    ),
    st.sampled_from(["allow", "block", "require_approval", "mask"]),
    st.sampled_from([OPAQUE, "DO $$ BEGIN DROP TABLE cards; END $$", "EXECUTE p"]),
)
def test_an_opaque_statement_never_gets_an_allow_it_might_not_deserve(
    matches_: list[dict[str, Any]], action: str, sql: str
) -> None:
    # An opaque statement is decided by a rule only if that rule's match needs nothing the statement
    # hides; otherwise it gets opaque_action. So "allow" can only come from an identity/command rule.
    rules = [rule(f"r{i}", action, **m) for i, m in enumerate(matches_)]
    d = decide(engine(rules, default="allow", opaque="block"), sql)
    if d.rule == "opaque":
        assert d.action == "block"
        return
    assert d.rule != "default"
    deciding = matches_[int(d.rule[1:])]
    assert not {"statements", "tables", "columns", "functions", "rows_over"} & deciding.keys()
    assert set(deciding.get("conditions", [])) <= {"set_role"}


# ------------------------------------------------------------------------------------------ explain


def test_explain_names_what_the_rule_matched_on_never_values() -> None:
    e = engine(
        [
            rule("card-writes", "require_approval", statements=["write"], tables=["public.cards"]),
            rule("agent-reads", "require_approval", kinds=["agent"], tables=["*.cards"], rows_over=100),
            rule(
                "office",
                "require_approval",
                groups=["dba", "ops"],
                functions=["pg_read_file"],
                conditions=["dangerous_function"],
                time={"days": ["mon"], "start": "08:00", "end": "18:00", "tz": "Europe/Berlin"},
            ),
        ]
    )
    sql = "UPDATE cards SET brand = 'visa-4111111111111111' WHERE card_id = 7"
    facts = statement_facts(sql)
    why = e.explain(decide(e, sql, HUMAN), HUMAN, facts)
    assert why == "rule card-writes matched (class write; table public.cards)"
    assert "4111" not in why and "7" not in why
    facts = statement_facts("SELECT pan FROM cards")
    assert e.explain(decide(e, facts, AGENT), AGENT, facts) == (
        "rule agent-reads matched (kind agent; table public.cards; may return more than 100 rows)"
    )
    facts = statement_facts("SELECT pg_read_file('/etc/hosts')")
    assert e.explain(decide(e, facts, HUMAN), HUMAN, facts) == (
        "rule office matched (group dba; condition dangerous_function; function pg_read_file; "
        "inside mon 08:00-18:00 Europe/Berlin)"
    )


def test_explain_leaves_default_and_opaque_decisions_as_they_are() -> None:
    e = engine([], opaque="require_approval")
    for sql in ("SELECT 1", "DO $$ BEGIN END $$"):
        facts = statement_facts(sql)
        decision = decide(e, facts)
        assert e.explain(decision, AGENT, facts) == decision.why
