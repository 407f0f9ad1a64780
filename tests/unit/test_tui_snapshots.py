"""One SVG snapshot per screen of the approver console, at 80x24 (fits an ssh terminal), from fixed data
and a fixed clock (no NATS: the app is fed by hand). A change to what a screen shows fails here until the
snapshot is looked at and updated: ``PCIGATE_UPDATE_SNAPSHOTS=1 pytest tests/unit/test_tui_snapshots.py``.
The README's screenshot is rendered from ``queue.svg``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from evidence.api import CheckpointRecord, ServiceActor
from pcigate.cli import main
from pcigate.recordings import SessionRow
from pcigate.replay import Attested
from schemas.approvals import Approver, Requester, WhoAmIReply
from schemas.recording import chunk_header, encode_record
from tests.unit.test_approvals_record import ISS, NOW, STATEMENT, request
from tests.unit.test_tui_activity import envelope
from tui.activity import Line, summarize
from tui.app import ApproverApp
from tui.ledger import LedgerStatus
from tui.ledger_source import LedgerSource

SNAPSHOTS = Path(__file__).resolve().parents[1] / "snapshots" / "console"
SIZE = (80, 24)
CLOCK = NOW + timedelta(seconds=95)
BOB = WhoAmIReply(
    refused=None,
    message="signed in as bob",
    sub="bob@example.com",
    iss=ISS,
    name="Bob",
    kind="human",
    groups=("approvers", "engineers"),
    approver_groups=("approvers",),
)


def rid(n: int) -> str:
    return f"019300a0-0000-7000-8000-{n:012d}"


def requests() -> list[Any]:
    alice = Requester(sub="alice@example.com", iss=ISS, kind="human", groups=("payments-admins",))
    read = STATEMENT.model_copy(  # an agent's read by card number: the parameter as the record keeps it
        update={
            "text": "SELECT card_id, pan, holder_name FROM cards WHERE pan = $1 AND exp_year >= $2",
            "parameters": ["411111******1111", "2027"],
            "kind": "dql",
        }
    )
    access = STATEMENT.model_copy(
        update={"text": "-- pcigate: access to connection reporting as pcigate_ro for 30m", "objects": []}
    )
    carol = Approver(
        sub="carol@example.com",
        iss=ISS,
        groups=("approvers",),
        decision="approve",
        reason="ticket 7",
        at=NOW + timedelta(seconds=60),
        channel="cli",
    )
    columns = ("public.cards.card_id", "public.cards.exp_year", "public.cards.pan")
    return [
        request(id=rid(1), requester=alice, expires=NOW + timedelta(minutes=5), columns=columns),
        request(
            id=rid(2),
            created=NOW + timedelta(seconds=40),
            expires=NOW + timedelta(minutes=2),
            rule="agent-card-reads",
            why="rule agent-card-reads matched",
            quorum=2,
            statement=read,
            approvals=(carol,),
            columns=("public.cards.card_id", "public.cards.pan", "public.cards.holder_name"),
        ),
        request(
            id=rid(3),
            requester=alice,
            created=NOW + timedelta(seconds=80),
            expires=NOW + timedelta(minutes=15),
            connection="reporting",
            rule="jit-access",
            scope="access",
            session_for_seconds=1800,
            statement=access,
        ),
    ]


TEXT = STATEMENT.model_dump(mode="json")
EVENTS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("session.opened", {}, {}),
    ("command.executed", {"statement": TEXT, "command_tag": "UPDATE 1", "rows": 1}, {}),
    ("approval.requested", {"request_id": rid(1), "statement": TEXT}, {"outcome": {"result": "pending"}}),
    (
        "command.blocked",
        {"statement": {"text": "DROP TABLE cards"}, "reason": "policy_rule"},
        {"outcome": {"result": "blocked", "code": "42501"}, "policy": {"rule": "no-destruction"}},
    ),
    ("masking.applied", {"total_values": 12, "surface": "result"}, {}),
    ("approval.decided", {"decision": "approve", "request_id": rid(4), "reason": "CHG-1234"}, {}),
    (
        "auth.failed",
        {"reason": "signature_invalid"},
        {
            "outcome": {
                "result": "failure",
                "code": "28000",
                "message": "the token's signature does not verify",
            }
        },
    ),
    ("session.closed", {"reason": "client_closed", "statements": 3, "rows": 41}, {}),
]


def card_data(connection: str, column: str) -> bool:
    """The snapshots' masking profile: the card number is card data."""
    return column == "pan"


def console(**kw: Any) -> ApproverApp:
    app = ApproverApp([], "token", clock=lambda: CLOCK, connect=False, sensitive=card_data, **kw)
    app.identity = BOB
    return app


async def fed(app: ApproverApp, pilot: Any) -> None:
    app._header.update(app._identity_line())
    for r in requests():
        app._on_request(r)
    left = request(id=rid(5), state="approved", created=NOW - timedelta(minutes=1))
    app._on_request(left.model_copy(update={"state": "pending", "expires": NOW + timedelta(minutes=9)}))
    app._on_request(left)
    for etype, data, extra in EVENTS:
        app._on_event(envelope(etype, data, **extra))
    app._refresh_table()
    app._flush_activity()
    await pilot.pause()


class FixedLedger(LedgerSource):
    """The ledger panel's source with fixed answers: snapshots show screens, not a database."""

    def __init__(self) -> None:
        actor = ServiceActor(
            sub="bob", iss=ISS, host="db", database="ledger", log_origin="pcigate.dev/ledger"
        )
        super().__init__("postgresql://never-used", (), actor)

    async def read(self) -> LedgerStatus:
        return ledger_status()

    async def history(self, session_id: str, before: datetime, limit: int = 12) -> list[Line] | str:
        lines = [summarize(envelope("command.executed", data)) for _, data, _ in EVENTS[1:2]]
        return [line for line in lines if line is not None]

    async def sessions(self, since: datetime, most: int) -> list[SessionRow] | str:
        return sessions()

    async def attested(self, session_id: str) -> list[Attested] | str:
        return recording(session_id)[0]


def ledger_status() -> LedgerStatus:
    cp = CheckpointRecord(
        size=20867, root=bytes.fromhex("8589864aee240de710b7e690624cfc667c858a3130c34ea6bf474c5acaf8d101"),
        note="", key_name="pcigate.dev/ledger", key_id=0xBCD6071A, created_at=NOW,
        trusted_by=("pcigate.dev/ledger+bcd6071a+Abhtqt43",),
    )  # fmt: skip
    return LedgerStatus(
        NOW + timedelta(seconds=90), cp, "signature verified with pcigate.dev/ledger+bcd6071a",
        "extends the checkpoint of size 20,511 seen before (proof checked)", True,
    )  # fmt: skip


def sid(n: int) -> str:
    return f"01930090-0000-7000-8000-{n:012d}"


def sessions() -> list[SessionRow]:
    """Newest first, as the console lists them: an open one, an agent's, a person's, a forged one's."""
    at = NOW - timedelta(minutes=3)
    return [
        SessionRow(sid(4), "carol@example.com", "human", None, "reporting", "reporting", at, None, None, 1),
        SessionRow(sid(1), "agent-7", "agent", "alice@example.com", "payments", "payments",
                   at - timedelta(minutes=7), 4210.0, 4, 2, final=True),
        SessionRow(sid(2), "alice@example.com", "human", None, "payments", "payments",
                   at - timedelta(hours=2), 754_000.0, 12, 3, final=True),
        SessionRow(sid(3), "ci-deploy", "service", None, "payments", "payments",
                   at - timedelta(days=1), 1_500.0, 1, 1, final=True),
    ]  # fmt: skip


def recording(session_id: str) -> tuple[list[Attested], dict[int, bytes]]:
    """Two chunks of a session (a masked read, a held and approved write, a block); for session 2, a third
    chunk in the stream that the ledger never saw (forged)."""
    row = next(r for r in sessions() if r.session_id == session_id)
    first = [
        {"k": "session", "t": 0, "sub": row.sub, "kind": row.kind, "on_behalf_of": row.on_behalf_of,
         "connection": row.connection, "database": row.database, "role": "pcigate_ro", "client_app": "psql"},
        {"k": "statement", "t": 12, "seq": 1, "event_id": rid(11),
         "statement": {"text": "SELECT card_id, pan, holder_name FROM cards ORDER BY card_id LIMIT 3"}},
        {"k": "columns", "t": 14, "seq": 1, "columns": [{"name": "card_id", "type_oid": 20, "format": 0},
         {"name": "pan", "type_oid": 25, "format": 0}, {"name": "holder_name", "type_oid": 25, "format": 0}]},
        {"k": "rows", "t": 15, "seq": 1, "rows": [["1", "411111******1111", "Ada L."],
         ["2", "555555******4444", "Grace H."], ["3", "378282*****0005", "Alan T."]]},
        {"k": "event", "t": 15, "event": {"type": "masking.applied", "data": {"total_values": 3}}},
        {"k": "complete", "t": 16, "seq": 1, "tag": "SELECT 3", "rows": 3, "rows_recorded": 3},
    ]  # fmt: skip
    second = [
        {"k": "statement", "t": 2100, "seq": 2, "event_id": rid(12), "statement":
         {"text": "UPDATE cards SET exp_year = exp_year WHERE card_id = $1", "parameters": ["4"]}},
        {"k": "event", "t": 2101, "event": {"type": "approval.requested", "data": {"request_id": rid(1),
         "approver_groups": ["approvers"], "expires_at": "2026-12-04T11:55:00Z"}}},
        {"k": "event", "t": 3900, "event": {"type": "approval.decided", "actor": {"sub": "bob@example.com"},
         "data": {"decision": "approve", "reason": "CHG-9 expiry fix"}}},
        {"k": "complete", "t": 3905, "seq": 2, "tag": "UPDATE 1", "rows": 1, "rows_recorded": 0},
        {"k": "event", "t": 4100, "event": {"type": "command.blocked", "data": {"statement":
         {"text": "DROP TABLE cards"}}, "outcome": {"code": "42501", "message": "refused by rule no-ddl"}}},
        {"k": "end", "t": 4210, "reason": "client_closed"},
    ]  # fmt: skip
    stored = {
        seq: chunk_header(session_id, seq) + b"".join(encode_record(r) for r in records)
        for seq, records in ((1, first), (2, second))
    }
    attested = [
        Attested(seq, hashlib.sha256(data).hexdigest(), len(data), f"{session_id}.{seq}", seq == 2, 900 + seq)
        for seq, data in stored.items()
    ]
    if session_id == sid(2):
        stored[3] = chunk_header(session_id, 3) + encode_record(
            {"k": "end", "t": 1, "reason": "client_closed"}
        )
    return attested, stored


Steps = Callable[[ApproverApp, Any], Awaitable[None]]


async def press(*keys: str) -> Steps:
    async def go(app: ApproverApp, pilot: Any) -> None:
        await pilot.press(*keys)
        await pilot.pause()

    return go


async def nats_down(app: ApproverApp, pilot: Any) -> None:
    app._on_link_state(False, "NATS unreachable (connection lost); reconnecting every 2 s")
    await pilot.pause()


SCREENS: dict[str, tuple[str, ...] | Steps] = {
    "queue": (),
    "detail": ("enter",),  # an agent acting for a person, the columns it reads (card data marked)
    "detail-end": ("enter", "end"),  # its statement, parameters (masked) and the session's history
    "decision": ("a", *"CHG-1234: checked the ticket"),
    "help": ("question_mark",),
    "filter": ("slash", *"agent"),
    "activity": ("2",),
    "ledger": ("3",),
    "nats-down": nats_down,
}


@pytest.mark.parametrize("name", list(SCREENS))
async def test_screen(name: str) -> None:
    app = console(ledger=FixedLedger(), ledger_origin="pcigate.dev/ledger")
    app.ledger_status = ledger_status()
    async with app.run_test(size=SIZE) as pilot:
        await fed(app, pilot)
        steps = SCREENS[name]
        if callable(steps):
            await steps(app, pilot)
        else:
            await pilot.press(*steps)
            await pilot.pause()
        await pilot.pause(0.3)
        svg = app.export_screenshot(title=f"pcigate approve: {name}")
    check(name, svg)


SESSION_SCREENS: dict[str, tuple[str, ...]] = {
    "sessions": ("4",),
    "replay": ("4", "down", "enter"),
    "replay-forged": ("4", "down", "down", "enter"),
}


@pytest.mark.parametrize("name", list(SESSION_SCREENS))
async def test_sessions_screen(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Sessions tab, a session's replay, and a replay stopped by a chunk the ledger never saw."""
    app = console(ledger=FixedLedger(), ledger_origin="pcigate.dev/ledger")

    async def stored(session_id: str) -> Mapping[int, bytes]:
        return recording(session_id)[1]

    monkeypatch.setattr(app.link, "stored_chunks", stored)
    async with app.run_test(size=SIZE) as pilot:
        await fed(app, pilot)
        await pilot.press(*SESSION_SCREENS[name])
        await pilot.pause()
        await pilot.pause(0.3)
        svg = app.export_screenshot(title=f"pcigate approve: {name}")
    check(name, svg)


def check(name: str, svg: str) -> None:
    """Compare with the committed snapshot. Only ``PCIGATE_UPDATE_SNAPSHOTS=1`` writes one: a missing
    snapshot fails (written as ``.actual.svg`` to look at), or a deleted file would pass unseen."""
    path = SNAPSHOTS / f"{name}.svg"
    if os.environ.get("PCIGATE_UPDATE_SNAPSHOTS"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(svg)
        return
    if not path.exists():
        actual = path.with_suffix(".actual.svg")
        actual.write_text(svg)
        pytest.fail(f"no snapshot {path}: look at {actual}; if right, run with PCIGATE_UPDATE_SNAPSHOTS=1")
    if path.read_text() != svg:
        actual = path.with_suffix(".actual.svg")
        actual.write_text(svg)
        pytest.fail(f"screen {name} changed: compare {actual} with {path}; if intended, update the snapshot")


def test_a_missing_snapshot_fails_unless_regeneration_is_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(f"{__name__}.SNAPSHOTS", tmp_path)
    monkeypatch.delenv("PCIGATE_UPDATE_SNAPSHOTS", raising=False)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.fail.Exception, match="no snapshot"):
        check("gone", "<svg/>")
    assert not (tmp_path / "gone.svg").exists() and (tmp_path / "gone.actual.svg").read_text() == "<svg/>"
    monkeypatch.setenv("PCIGATE_UPDATE_SNAPSHOTS", "1")
    check("gone", "<svg/>")
    assert (tmp_path / "gone.svg").read_text() == "<svg/>"
    monkeypatch.delenv("PCIGATE_UPDATE_SNAPSHOTS")
    check("gone", "<svg/>")  # now it is there and the same
    with pytest.raises(pytest.fail.Exception, match="changed"):
        check("gone", "<svg></svg>")


def test_the_console_refuses_a_token_from_stdin_and_an_unreadable_token_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It reads the keyboard, so `-` cannot mean stdin; a token file it cannot read is a usage error."""
    assert main(["approve", "--token", "-"]) == 2
    assert "the console reads the keyboard" in capsys.readouterr().err
    assert main(["approve", "--token-file", str(tmp_path / "missing.jwt")]) == 2
    assert "cannot read the token file" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # one source of the token only
        main(["approve", "--token", "x", "--token-file", "y"])
