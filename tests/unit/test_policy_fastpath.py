"""Fast-path FunctionCalls: libpq's large-object functions are judged by name; any other OID is opaque, so
no rule written against a function's name can be got round by calling it through its OID."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.policy.fastpath import LARGE_OBJECT_FUNCTIONS, call_text, fast_path_facts
from tests.unit.test_policy_engine import AGENT, HUMAN, decide, engine, rule

PG_BACKEND_PID = 2026
SET_CONFIG = 2078


def test_a_large_object_call_is_a_function_call_of_that_name() -> None:
    facts = fast_path_facts(call_text(952))
    assert facts.opaque is None
    assert facts.classes == {"function_call"}
    assert facts.functions == {"pg_catalog.lo_open"}
    write = fast_path_facts(call_text(955))
    assert write.classes == {"function_call", "write"} and write.functions == {"pg_catalog.lowrite"}
    assert "lowrite" in call_text(955) and "955" not in call_text(955)
    assert fast_path_facts(call_text(954)).classes == {"function_call", "read"}  # loread


@pytest.mark.parametrize("oid", [764, 765, 767])
def test_server_side_import_and_export_are_dangerous(oid: int) -> None:
    assert "dangerous_function" in fast_path_facts(call_text(oid)).conditions


@given(st.integers(0, 2**32 - 1).filter(lambda oid: oid not in LARGE_OBJECT_FUNCTIONS))
def test_any_other_oid_is_opaque(oid: int) -> None:
    text = call_text(oid)
    assert str(oid) in text  # the audit trail names what was called
    facts = fast_path_facts(text)
    assert facts.opaque is not None and "call the function in a query" in facts.opaque
    assert facts.functions == frozenset()


def test_rules_on_names_and_classes_apply_to_fast_path_calls() -> None:
    by_name = engine([rule("no-export", functions=["lo_export"])])
    assert decide(by_name, fast_path_facts(call_text(765))).action == "block"
    assert decide(by_name, fast_path_facts(call_text(954))).action == "allow"
    dangerous = engine([rule("no-files", conditions=["dangerous_function"])])
    assert decide(dangerous, fast_path_facts(call_text(764))).rule == "no-files"
    writes = engine([rule("read-only", statements=["write"])])
    assert decide(writes, fast_path_facts(call_text(955))).rule == "read-only"
    assert decide(writes, fast_path_facts(call_text(954))).rule == "default"
    reads = engine([rule("no-reads", statements=["read"])])
    assert decide(reads, fast_path_facts(call_text(954))).rule == "no-reads"
    calls = engine([rule("no-calls", statements=["function_call"])])
    assert decide(calls, fast_path_facts(call_text(953))).rule == "no-calls"


def test_no_commands_rule_matches_a_fast_path_call() -> None:
    """A FunctionCall has no keywords: ``commands: [select]`` neither allows nor blocks it."""
    e = engine([rule("selects", "allow", commands=["select"])], default="block")
    assert decide(e, fast_path_facts(call_text(954))).rule == "default"


@pytest.mark.parametrize("oid", [PG_BACKEND_PID, SET_CONFIG])
def test_an_unresolved_oid_gets_opaque_action_even_under_an_allow_rule(oid: int) -> None:
    e = engine(
        [rule("calls", "allow", statements=["function_call"])], default="allow", opaque="require_approval"
    )
    decision = decide(e, fast_path_facts(call_text(oid)), HUMAN)
    assert (decision.action, decision.rule) == ("require_approval", "opaque")
    blocking = engine([rule("no-set-config", functions=["set_config"])], opaque="block")
    assert decide(blocking, fast_path_facts(call_text(oid)), AGENT).action == "block"
