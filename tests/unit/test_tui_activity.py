"""The console's activity feed (pure): an event becomes one line; categories and text filter them; the
ledger panel renders what a refresh found."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from rich.console import Console

from evidence.api import CheckpointRecord
from tui.activity import Activity, summarize
from tui.ledger import LedgerStatus, render


def envelope(etype: str, data: dict[str, object], **kw: object) -> bytes:
    event = {
        "id": "019300a0-0000-7000-8000-000000000001",
        "type": etype,
        "time": "2026-12-05T01:50:02.123456Z",
        "actor": {"sub": "agent-7", "on_behalf_of": "alice"},
        "target": {"connection": "payments"},
        "outcome": {"result": "success", "code": None, "message": None},
        "policy": {"version": "sha256:x", "rule": "card-writes"},
        "data": data,
        **kw,
    }
    return json.dumps(event).encode()


STATEMENT = {"text": "UPDATE cards SET exp_year = ? WHERE card_id = ?"}


def test_lines_say_what_happened() -> None:
    executed = summarize(
        envelope("command.executed", {"statement": STATEMENT, "command_tag": "UPDATE 1", "rows": 1})
    )
    assert executed is not None
    assert (executed.time, executed.actor, executed.connection) == ("01:50:02", "agent-7→alice", "payments")
    assert executed.summary == "UPDATE 1, 1 rows: UPDATE cards SET exp_year = ? WHERE card_id = ?"
    blocked = summarize(
        envelope(
            "command.blocked",
            {"statement": STATEMENT, "reason": "limit_exceeded", "limit": "results.agent.statement_rows=100"},
            policy=None,
            outcome={"result": "blocked", "code": "54000", "message": "cut"},
        )
    )
    assert blocked is not None and blocked.summary.startswith(
        "limit_exceeded (results.agent.statement_rows=100)"
    )
    assert blocked.render(60).plain.startswith("01:50:02 command.blocked")
    assert len(blocked.render(60).plain) <= 60
    decided = summarize(
        envelope("approval.decided", {"decision": "deny", "request_id": "r-1", "reason": "no"})
    )
    assert decided is not None and decided.summary == "deny r-1 no"
    assert summarize(b"not json") is None and summarize(b'{"no": "type"}') is None


def test_categories_and_text_filter() -> None:
    feed = Activity(keep=3)
    kinds = ["session.opened", "command.executed", "command.blocked", "approval.requested"]
    lines = [summarize(envelope(k, {"statement": STATEMENT})) for k in kinds]
    assert all(line is not None and feed.add(line) for line in lines)
    assert feed.total == 4 and [x.type for x in feed.lines()] == kinds[1:]  # the oldest fell out
    feed.category = "blocks"
    assert [x.type for x in feed.lines()] == ["command.blocked"]
    assert feed.next_category() == "masking"
    feed.category = "all"
    feed.filter = "APPROVAL"
    assert [x.type for x in feed.lines()] == ["approval.requested"]


def test_the_ledger_panel_says_what_it_found() -> None:
    now = datetime(2026, 12, 5, 2, 0, tzinfo=UTC)
    cp = CheckpointRecord(
        size=20867, root=bytes(32), note="", key_name="pcigate.dev/ledger", key_id=0xBCD6071A,
        created_at=now, trusted_by=("pcigate.dev/ledger+bcd6071a+AAAA",),
    )  # fmt: skip
    good = LedgerStatus(now, cp, "signature verified with pcigate.dev/ledger+bcd6071a", "extends", True)
    text = _plain(render(good, "pcigate.dev/ledger"))
    assert "size 20,867" in text and "bcd6071a" in text and "ledger verified" in text
    gaps = LedgerStatus(now, cp, "ok", "", False, (("2026-12-05 01:00:00", "PCIGATE_AUDIT 5..7 missing"),))
    assert "5..7 missing" in _plain(render(gaps, "o")) and "needs attention" in _plain(render(gaps, "o"))
    assert "not reachable" in _plain(
        render(LedgerStatus(now, problem="the ledger database is not reachable"), "o")
    )
    assert "press r" in _plain(render(None, "o"))


def test_the_ledger_panel_shows_the_root_in_full_at_any_width() -> None:
    """At 80 columns the root does not fit beside its label: it goes on two lines, never cut."""
    root = bytes(range(32))
    now = datetime.now(UTC)
    cp = CheckpointRecord(
        size=1, root=root, note="", key_name="pcigate.dev/ledger", key_id=1, created_at=now, trusted_by=()
    )
    status = LedgerStatus(now, cp, "checked", "first checkpoint this console has seen", True)
    for width, lines in ((120, [root.hex()]), (76, [root.hex()[:32], root.hex()[32:]])):
        text = _plain(render(status, "pcigate.dev/ledger"), width)
        assert "…" not in text
        shown = [line.split()[-1] for line in text.splitlines() if any(part in line for part in lines)]
        assert shown == lines, (width, text)


def _plain(renderable: object, width: int = 100) -> str:
    console = Console(width=width, record=True)
    console.print(renderable)
    return console.export_text()
