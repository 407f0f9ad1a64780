"""The hand-serialized ``command.executed`` events: valid against the schema contract in every shape the
session produces, the intent and its completion sharing one id, and no clear card data."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.audit import DigestKey, SessionAudit, statement_audit
from schemas.ids import new_event_id
from schemas.models import Actor, Origin, Target
from schemas.registry import validate

PAN = "4111111111111111"  # Visa test number


def session_audit(*, session_id: str | None = None) -> SessionAudit:
    return SessionAudit(
        session_id=session_id or new_event_id(),
        actor=Actor(
            sub="alice@example.com",
            iss="https://issuer.example",
            name='Alice "quoted" \u00e9',
            groups=("engineers",),
            kind="agent",
            on_behalf_of="bob@example.com",
        ),
        origin=Origin(addr="127.0.0.1", port=50000, client_app="psql"),
        target=Target(
            connection="payments",
            protocol="postgres",
            host="127.0.0.1:5432",
            database="payments",
            object=None,
        ),
        policy_version="0" * 64,
        digest_key=DigestKey("k1", b"k" * 32),
    )


def draft_for(sa: SessionAudit, text: str, params: list[bytes | None] | None = None) -> tuple[str, str]:
    event_id = new_event_id()
    info = statement_audit(text)
    draft = sa.command_draft(
        event_id=event_id,
        statement_json=sa.statement_json(text, info, params, [0] * len(params or [])),
        objects=info.info.objects,
        sequence=3,
    )
    return event_id, draft


def decoded(payload: bytes) -> dict[str, Any]:
    event = json.loads(payload)
    validate(event)
    return event  # type: ignore[no-any-return]


def test_intent_is_a_valid_interrupted_event_with_the_completions_id() -> None:
    sa = session_audit()
    event_id, draft = draft_for(sa, "UPDATE cards SET pan = $1 WHERE id = $2", [PAN.encode(), b"7"])
    intent = decoded(sa.command_intent(draft, privileged=False, rule=None))
    done = decoded(
        sa.command_result(draft, outcome="success", command_tag="UPDATE 1", rows=1, duration_ms=0.1234)
    )
    assert intent["id"] == done["id"] == event_id
    assert intent["outcome"]["code"] == "interrupted"
    assert intent["data"]["rows"] is None
    assert done["outcome"] == {"result": "success", "code": None, "message": None}
    assert done["data"]["rows"] == 1 and done["data"]["duration_ms"] == 0.123
    assert done["data"]["statement"]["objects"] == ["cards"]
    for payload in (json.dumps(intent), json.dumps(done)):
        assert PAN not in payload


@pytest.mark.parametrize(
    ("outcome", "code", "message"),
    [
        ("failure", "22012", "division by zero"),
        ("failure", "not_run", "not run: an earlier statement in the same request failed"),
        ("failure", None, 'odd "quotes" and \\ backslashes\n'),
        ("blocked", "42501", "blocked by rule"),
    ],
)
def test_failures_and_blocks_are_valid(outcome: Any, code: str | None, message: str) -> None:
    sa = session_audit()
    _, draft = draft_for(sa, "SELECT 1 / 0")
    event = decoded(
        sa.command_result(
            draft,
            outcome=outcome,
            code=code,
            message=message,
            privileged=True,
            masked_values=2,
            approval_id=new_event_id(),
            rule="no-ddl",
        )
    )
    assert event["outcome"] == {"result": outcome, "code": code, "message": message}
    assert event["policy"]["rule"] == "no-ddl"
    assert event["data"]["privileged"] is True


def test_statement_without_objects_or_parameters() -> None:
    sa = session_audit()
    _, draft = draft_for(sa, "SELECT now()")
    event = decoded(sa.command_result(draft, outcome="success", command_tag="SELECT 1", rows=1))
    assert event["target"]["object"] is None
    assert event["data"]["statement"]["parameters"] is None
