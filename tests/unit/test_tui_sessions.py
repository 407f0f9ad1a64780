"""The console's Sessions tab without I/O: a session's line, a replay's verification and what it shows,
and the tab's behaviour when the ledger or NATS cannot be read (a message, never a traceback), reading
only when opened and on ``r``."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from datetime import datetime, timedelta

from evidence.api import MAX_LIMIT
from pcigate.recordings import PAGE, SessionRow
from pcigate.replay import Attested
from tests.unit.test_approvals_record import NOW
from tests.unit.test_tui_snapshots import SIZE, FixedLedger, console, recording, sessions, sid
from tui.app import ApproverApp
from tui.screens import ReplayScreen
from tui.sessions import NOT_FINAL, Replayed, heading, play, replay_banner, replay_facts, session_entry


def row(**kw: object) -> SessionRow:
    fields: dict[str, object] = {
        "session_id": sid(1), "sub": "alice@example.com", "kind": "human", "connection": "payments",
        "started": NOW, "duration_ms": 1234.0, "statements": 3, "chunks": 2, "final": True,
    }  # fmt: skip
    fields.update(kw)
    return SessionRow(**fields)  # type: ignore[arg-type]


def test_a_session_line_says_who_where_how_long_and_whether_its_recording_is_complete() -> None:
    line = session_entry(row(), 76).plain
    assert line.startswith("12-04 12:00:00  ☺ alice@example.com") and "payments" in line
    assert line.split()[-3:] == ["1.2s", "3", "2"] and NOT_FINAL not in line
    agent = session_entry(row(sub="agent-7", kind="agent", on_behalf_of="bob"), 76).plain
    assert "⚙ agent-7 for bob" in agent
    open_one = session_entry(row(duration_ms=None, statements=None, final=False), 76).plain
    assert open_one.rstrip().endswith(f"2 {NOT_FINAL}") and " open " in open_one and " - " in open_one
    assert " 12m34s " in session_entry(row(duration_ms=754_000.0), 76).plain
    long = session_entry(row(sub="someone-with-a-very-long-name@example.com"), 76).plain
    assert len(long) == len(heading(76)) and "…" in long  # cut, columns still aligned


def test_a_replay_verifies_every_chunk_and_shows_the_session() -> None:
    attested, stored = recording(sid(1))
    replayed = play(sid(1), attested, stored)
    assert (replayed.verified, replayed.final, replayed.problem) == (2, True, None)
    assert "payments=> SELECT card_id, pan, holder_name FROM cards ORDER BY card_id LIMIT 3" in replayed.lines
    assert any("411111******1111" in line for line in replayed.lines)
    assert replayed.lines[-1] == "-- session ended (client_closed)"
    assert "2 chunks verified against the ledger" in replay_facts(sid(1), replayed).plain
    assert replay_banner(replayed) is None
    cut = play(sid(1), attested, stored, most=5)
    assert len(cut.lines) == 5 and cut.cut == len(replayed.lines) - 5 and cut.verified == 2


def test_a_forged_changed_or_missing_chunk_stops_the_replay_naming_it() -> None:
    attested, stored = recording(sid(2))  # a third chunk the ledger never saw
    forged = play(sid(2), attested, stored)
    assert forged.verified == 2 and forged.problem is not None
    assert f"chunk 3 ({sid(2)}.3)" in forged.problem and "not in the ledger" in forged.problem
    assert "payments=> DROP TABLE cards" in forged.lines  # what came before it is still shown
    banner = replay_banner(forged)
    assert banner is not None and "from the 2 chunks verified before it" in banner.plain

    attested, stored = recording(sid(1))
    changed = play(sid(1), attested, {**stored, 1: stored[1].replace(b"Ada L.", b"Eve X.")})
    assert changed.verified == 0 and changed.lines == () and changed.problem is not None
    assert "chunk 1" in changed.problem and "was changed" in changed.problem
    missing = play(sid(1), attested, {1: stored[1]})
    assert missing.verified == 1 and missing.problem is not None and "chunk 2" in missing.problem
    assert "missing from the recordings stream" in missing.problem

    data = stored[1]
    one = [Attested(1, hashlib.sha256(data).hexdigest(), len(data), f"{sid(1)}.1", False, 7)]
    unfinished = play(sid(1), one, {1: data})
    assert "no final chunk yet" in replay_facts(sid(1), unfinished).plain
    assert "no recording" in replay_facts(sid(1), play(sid(1), [], {})).plain


class CountingLedger(FixedLedger):
    def __init__(self, answer: list[SessionRow] | str | None = None) -> None:
        super().__init__()
        self.reads = 0
        self.answer = answer

    async def sessions(self, since: datetime, most: int) -> list[SessionRow] | str:
        self.reads += 1
        assert NOW - since > timedelta(days=6)
        return sessions() if self.answer is None else self.answer


async def test_the_tab_reads_when_first_opened_and_on_r_only() -> None:
    ledger = CountingLedger()
    app = console(ledger=ledger)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await pilot.pause()
        assert ledger.reads == 1 and isinstance(app.sessions, list) and len(app.sessions) == 4
        await pilot.press("1", "4")
        await pilot.pause(0.2)
        assert ledger.reads == 1  # no read on a timer or on coming back
        await pilot.press("r")
        await pilot.pause()
        assert ledger.reads == 2
        await pilot.press("1", "r")  # r on the queue tab reads nothing
        await pilot.pause()
        assert ledger.reads == 2


async def test_without_ledger_or_nats_the_console_says_so() -> None:
    no_ledger = ApproverApp([], None, connect=False)
    async with no_ledger.run_test(size=SIZE) as pilot:
        await pilot.press("4", "r", "enter")
        await pilot.pause()
        assert "not configured" in str(no_ledger._sessions_status.render())
        assert not isinstance(no_ledger.screen, ReplayScreen)

    down = console(ledger=CountingLedger("the ledger database is not reachable (refused)"))
    async with down.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await pilot.pause()
        assert "not reachable" in str(down._sessions_status.render())

    app = console(ledger=CountingLedger())  # no NATS connection: the chunks cannot be read
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4", "down", "enter")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ReplayScreen)
        await pilot.pause(0.2)
        assert isinstance(screen.replayed, Replayed) and screen.replayed.problem is None
        assert "NATS is not reachable" in (screen.replayed.unavailable or "")
        assert "NATS is not reachable" in replay_facts(sid(1), screen.replayed).plain
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, ReplayScreen) and app._tabs.active == "sessions-pane"


def test_recordings_read_a_page_as_large_as_the_ledger_allows() -> None:
    assert PAGE == MAX_LIMIT


def test_the_console_starts_without_the_ledger_reader() -> None:
    """Importing the console loads neither evidence.api nor asyncpg: they come once the queue is drawn."""
    probe = (
        "import sys, tui.app; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('evidence', 'asyncpg')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]", out.stdout
