"""A policy rule with ``action: mask`` (StatementView.notes[MASK_ALL]): every value the statement returns
is hidden — text as ``*``, numbers as NULL — not only the card columns; without it, only those. A mask rule
with ``mask.columns`` (notes[MASK_COLUMNS]) hides what its columns name, on top of the profile, and can only
ever hide more."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.hooks import MASK_ALL, MASK_COLUMNS, SessionInfo, StatementView
from gateway.identity import VerifiedIdentity
from gateway.masking.hook import MaskingHook, MaskingPolicy
from gateway.pgwire import messages as m
from gateway.pgwire.messages import FieldDesc
from gateway.sqltext import analyze
from pcigate.config import ColumnRule, MaskingProfile
from tests.pgframes import frames

SQL = "SELECT brand, card_id, pan, cvv FROM cards"
FIELDS = [FieldDesc("brand"), FieldDesc("card_id", type_oid=20), FieldDesc("pan"), FieldDesc("cvv")]
ROW: list[bytes | None] = [b"visa", b"42", b"4111111111111111", b"123"]


def hook(emitted: list[object] | None = None) -> MaskingHook:
    identity = VerifiedIdentity(
        sub="agent-1",
        iss="https://issuer.example",
        name=None,
        groups=("agents",),
        kind="agent",
        on_behalf_of=None,
        jti=None,
        expires_at=datetime(2030, 1, 1, tzinfo=UTC),
        amr=(),
    )

    def emit(event: type[object], data: object, *, rule: str | None = None, pci: object = ()) -> str:
        if emitted is None:
            raise RuntimeError("no events expected")
        emitted.append(data)
        return "event-id"

    info = SessionInfo(
        "s1", identity, "payments", "payments", "pcigate_ro", "127.0.0.1", 5000, None, False, emit=emit
    )
    return MaskingHook(MaskingPolicy(MaskingProfile()), info)


def returned(mask_all: bool, *columns: dict[str, str]) -> list[bytes | None]:
    h = hook()
    stmt = StatementView(1, SQL, analyze(SQL), None, [], "simple")
    if mask_all:
        stmt.notes[MASK_ALL] = True
    if columns:
        stmt.notes[MASK_COLUMNS] = tuple(
            (f"rule-{i}", (ColumnRule.model_validate(c),)) for i, c in enumerate(columns)
        )
    assert h.statement(stmt) is None
    handler = h.row_description(stmt, FIELDS)
    assert handler is not None
    buf, spans = frames([m.data_row(ROW)])
    out = handler.data_rows(buf, spans)
    s, e = spans[0]
    msg = out[0] if out is not None and out[0] is not None else bytes(buf[s:e])
    return m.parse_data_row(msg[5:])


def test_without_the_note_only_card_columns_are_hidden() -> None:
    assert returned(False) == [b"visa", b"42", b"411111******1111", None]


def test_a_mask_rule_hides_every_value() -> None:
    assert returned(True) == [b"****", None, b"****************", None]


def test_a_mask_rules_columns_hide_more_and_never_less() -> None:
    hide_brand = {"match": "brand", "action": "full"}
    assert returned(False, hide_brand) == [b"****", b"42", b"411111******1111", None]
    assert returned(False, {"match": "pan", "action": "last4"}) == [b"visa", b"42", b"************1111", None]
    # weaker than the profile: the profile's action stands (CVV stays NULL, the PAN keeps its mask)
    weaker = ({"match": "cvv", "action": "last4"}, {"match": "pan", "action": "bin_last4"})
    assert returned(False, *weaker) == [b"visa", b"42", b"411111******1111", None]
    # two rules: each applies
    assert returned(False, hide_brand, {"match": "/^card_/", "action": "null"}) == [
        b"****",
        None,
        b"411111******1111",
        None,
    ]


def test_a_fast_path_result_a_mask_rule_matched_is_hidden_whole() -> None:
    emitted: list[object] = []
    h = hook(emitted)
    text = "/* fast-path function call */ SELECT pg_catalog.loread()"
    content = b"quarterly figures, no card data"
    body = len(content).to_bytes(4, "big") + content
    plain = StatementView(1, text, analyze(text), None, [], "function")
    assert h.server_message(plain, m.FUNCTION_CALL_RESPONSE, body) is None  # nothing card-like: as it was
    for note, value in ((MASK_ALL, True), (MASK_COLUMNS, (("rule", ()),))):
        stmt = StatementView(2, text, analyze(text), None, [], "function")
        stmt.notes[note] = value
        assert h.server_message(stmt, m.FUNCTION_CALL_RESPONSE, body) == body[:4] + b"*" * len(content)
    assert len(emitted) == 2  # a masking.applied for each (detector custom_rule)
    null = (-1).to_bytes(4, "big", signed=True)
    assert h.server_message(stmt, m.FUNCTION_CALL_RESPONSE, null) is None


def test_a_mask_rules_columns_follow_aliases_and_expressions() -> None:
    """Through lineage, as the profile's own columns: ``upper(brand) AS b`` is hidden like ``brand``."""
    sql = "SELECT upper(brand) AS b, card_id AS n FROM cards"
    h = hook()
    stmt = StatementView(1, sql, analyze(sql), None, [], "simple")
    stmt.notes[MASK_COLUMNS] = (("hide-brand", (ColumnRule(match="brand", action="full"),)),)
    assert h.statement(stmt) is None
    handler = h.row_description(stmt, [FieldDesc("b"), FieldDesc("n", type_oid=20)])
    assert handler is not None
    buf, spans = frames([m.data_row([b"VISA", b"42"])])
    out = handler.data_rows(buf, spans)
    s, e = spans[0]
    msg = out[0] if out is not None and out[0] is not None else bytes(buf[s:e])
    assert m.parse_data_row(msg[5:]) == [b"****", b"42"]
