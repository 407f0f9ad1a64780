"""``pcigate approve``: the approver console.

Four tabs. **Queue**: the requests held for approval, live (KV ``PCIGATE_APPROVALS``, through
:class:`ConsoleLink`), each one openable in full and decidable with a required reason. **Activity**: the
audit stream as it happens, filtered by category and text. **Ledger**: the latest signed checkpoint, its
verification and the audit gaps, read through ``evidence.api`` (each read recorded). **Sessions**: the
recorded sessions of the last 7 days from the ledger (the same reader, recorded alike), each one replayable
with every chunk checked against the ledger. The approver's token is
verified by a gateway (``whoami``) and shown in the header; someone who is not a person in an approver group
can watch but not decide. The gateway that holds a request judges every decision again: the console only
carries it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal

from rich.console import RenderableType
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Input, RichLog, Static, TabbedContent, TabPane

from pcigate.approvals_client import ApprovalsError
from pcigate.replay import ChunkProblemError
from schemas.approvals import Request, WhoAmIReply
from tui.activity import Activity, Line, summarize
from tui.ledger import LedgerStatus, render
from tui.link import ConsoleLink
from tui.queue import HEADING, Queue, entry, one_line, requester_label
from tui.screens import DecisionScreen, DetailScreen, HelpScreen, ReplayScreen
from tui.sessions import MOST, NOT_FINAL, SINCE, Replayed, heading, play, session_entry

if TYPE_CHECKING:
    from pcigate.recordings import SessionRow
    from tui.ledger_source import LedgerSource

OpenLedger = Callable[[], "tuple[LedgerSource | None, str | None]"]
"""Opens the ledger reader, or says why there is none: called once the queue is drawn (its imports cost)."""

__all__ = ["ApproverApp"]

Decision = Literal["approve", "deny"]
COLUMN: Final = "request"  # one column of two-line rows: at 80 columns the statement still has a line
TRACE_MARKS: Final = {"approved": "✓", "denied": "✗", "expired": "⌛", "withdrawn": "↩"}
# Rows drawn at most: the rest is reached by filter and sort (a DataTable of 10,000 two-line rows takes
# seconds to rebuild, and nobody scans that many).
MAX_ROWS: Final = 300
FILTER_HINT: Final = "filter: requester, connection, rule, statement, id (esc clears)"
ACTIVITY_HINT: Final = "filter the activity: type, person, connection, statement (esc clears)"
TABS: Final = ("queue-pane", "activity-pane", "ledger-pane", "sessions-pane")
SESSIONS_COLUMN: Final = "session"
WHOAMI_MAX_WAIT: Final = 60.0  # seconds between token checks at most, while no gateway answers


class ApproverApp(App[None]):
    """See the module docstring."""

    TITLE = "pcigate approve"
    # Textual's command palette (^p: themes, screenshots, the key panel) adds nothing an approver needs and
    # its footer entry takes room at 80 columns; the keys are on ? instead.
    ENABLE_COMMAND_PALETTE = False
    CSS = """
    #identity { height: 1; background: $primary-background; padding: 0 1; }
    #banner { height: auto; background: $error; color: $text; padding: 0 1; display: none; }
    #banner.down { display: block; }
    #filter, #activity-filter { display: none; height: 3; }
    #filter.shown, #activity-filter.shown { display: block; }
    #activity-status { height: 1; color: $text-muted; padding: 0 1; }
    #sessions-status { height: auto; max-height: 2; padding: 0 1; }
    #sessions { height: 1fr; }
    #replay-title { text-style: bold; padding: 0 1; }
    #replay-facts { height: auto; padding: 0 1; }
    #replay-banner { height: auto; background: $error; color: $text; padding: 0 1; display: none; }
    #replay-banner.shown { display: block; }
    #replay-log { height: 1fr; }
    #ledger { padding: 1 2; }
    #queue { height: 1fr; }
    #traces { height: auto; max-height: 4; color: $text-muted; padding: 0 1; }
    #queue-note { display: none; height: 1; color: $warning; padding: 0 1; }
    #queue-note.shown { display: block; }
    #detail-title, #decision-title, #help-title { text-style: bold; padding: 0 1; }
    #detail { padding: 0 1; }
    #detail-buttons { height: 3; }
    #decision, #help { width: 76; max-width: 100%; height: auto; border: thick $primary; background: $surface;
                       padding: 1 2; }
    #decision Horizontal { height: auto; }
    #decision-problem { color: $error; }
    DecisionScreen, HelpScreen { align: center middle; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("1", "tab('queue-pane')", "Queue", show=False),
        Binding("2", "tab('activity-pane')", "Activity", show=False),
        Binding("3", "tab('ledger-pane')", "Ledger", show=False),
        Binding("4", "tab('sessions-pane')", "Sessions", show=False),
        Binding("a", "decide('approve')", "Approve"),
        Binding("d", "decide('deny')", "Deny"),
        Binding("slash", "filter", "Filter"),
        Binding("s", "sort", "Sort"),
        Binding("f", "category", "Category"),
        Binding("r", "read_ledger", "Refresh"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(
        self,
        servers: Sequence[str],
        token: str | None,
        *,
        nats_options: dict[str, Any] | None = None,
        ledger: LedgerSource | None = None,
        open_ledger: OpenLedger | None = None,
        ledger_origin: str = "",
        ledger_problem: str | None = None,
        sensitive: Callable[[str, str], bool] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        retry_every: float = 2.0,
        connect: bool = True,
    ) -> None:
        super().__init__()
        self.queue = Queue()
        self.activity = Activity()
        self._arrived: list[Line] = []  # shown at the next flush (a busy feed is written in batches)
        self.ledger = ledger
        self.ledger_status: LedgerStatus | None = None
        self.sessions: list[SessionRow] | str | None = None  # the last read, or why it failed
        self._sessions_read_at: datetime | None = None
        self._ledger_origin = ledger_origin
        self._ledger_problem = ledger_problem
        self._open_ledger = open_ledger
        if open_ledger is not None and ledger is None:
            self._ledger_problem = "opening the ledger reader…"
        self._sensitive = sensitive or (lambda _connection, _column: False)
        self._connect = connect  # False: fed by hand (snapshots), no NATS
        self.identity: WhoAmIReply | None = None
        self._identity_problem: str | None = None if token else "no token: watching only"
        self._token = token
        # The token check is tried again (from the tick) while it failed for a reason that may pass: no
        # gateway yet, NATS away. None: no retry due (verified, refused, or not tried yet).
        self._whoami_every = retry_every
        self._whoami_wait = retry_every
        self._whoami_due: float | None = None
        self._clock = clock
        self._started = clock()
        self._shown: list[str] = []
        self._drawn: dict[str, Request] = {}  # the revision each shown row was drawn from
        self._refresh_due = False
        self.link = ConsoleLink(
            servers,
            on_request=self._on_request,
            on_state=self._on_link_state,
            on_event=self._on_event,
            on_feed=self._on_feed,
            retry_every=retry_every,
            **(nats_options or {}),
        )

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        # Kept, not queried: a pushed screen (detail, reason, help) hides them from App.query_one.
        self._header = Static(self._identity_line(), id="identity")
        self._banner = Static("", id="banner")
        self._filter = Input(placeholder=FILTER_HINT, id="filter")
        self._queue_table: DataTable[str | Text] = DataTable(
            id="queue", cursor_type="row", zebra_stripes=True, header_height=2
        )
        self._trace_line = Static("", id="traces")
        self._note = Static("", id="queue-note")
        self._activity_status = Static("waiting for NATS", id="activity-status")
        self._activity_filter = Input(placeholder=ACTIVITY_HINT, id="activity-filter")
        self._activity_log = RichLog(id="activity", max_lines=2000, wrap=False, auto_scroll=True)
        self._ledger_panel = Static(self._ledger_text(), id="ledger")
        self._sessions_status = Static(self._sessions_text(), id="sessions-status")
        self._sessions_table: DataTable[Text] = DataTable(
            id="sessions", cursor_type="row", zebra_stripes=True
        )
        self._tabs = TabbedContent(initial="queue-pane", id="tabs")
        yield from (self._header, self._banner)
        with self._tabs:
            with TabPane("Queue [1]", id="queue-pane"):
                yield from (self._filter, self._note, self._queue_table, self._trace_line)
            with TabPane("Activity [2]", id="activity-pane"):
                yield from (self._activity_status, self._activity_filter, self._activity_log)
            with TabPane("Ledger [3]", id="ledger-pane"):
                yield self._ledger_panel
            with TabPane("Sessions [4]", id="sessions-pane"):
                yield from (self._sessions_status, self._sessions_table)
        yield Footer()

    def on_mount(self) -> None:
        table = self._table()
        table.add_column(Text(HEADING, no_wrap=True), key=COLUMN)
        table.focus()
        self._draw_sessions()
        if self._connect:
            self._on_link_state(False, "connecting to NATS")
            self.run_worker(self.link.run(), name="link", exclusive=True)
        self.set_interval(1.0, self._tick)
        self.set_interval(0.25, self._flush_activity)
        self.set_timer(1.0, self._ledger_opened)  # at the latest; once connected, after the queue is drawn

    def _ledger_opened(self) -> None:
        """Open the ledger reader (once): after the queue, so a held request is on screen first."""
        open_ledger, self._open_ledger = self._open_ledger, None
        if open_ledger is None or not self.is_running:
            return
        try:
            self.ledger, self._ledger_problem = open_ledger()
        except Exception as exc:  # the console works without the ledger: say why, never a traceback
            self.ledger, self._ledger_problem = None, f"the ledger reader cannot be opened: {exc}"
        self._read_as_approver()
        self._ledger_panel.update(self._ledger_text())
        self._sessions_status.update(self._sessions_text())

    def _read_as_approver(self) -> None:
        """Ledger reads are recorded as the verified approver, once both are known."""
        reply = self.identity
        if self.ledger is not None and reply is not None and reply.sub and reply.iss:
            self.ledger.actor = dataclasses.replace(
                self.ledger.actor,
                sub=reply.sub,
                iss=reply.iss,
                name=reply.name,
                kind=reply.kind or "human",
                groups=reply.groups,
            )

    def _table(self) -> DataTable[str | Text]:
        return self._queue_table

    # ------------------------------------------------------------------ link events

    def _on_link_state(self, up: bool, message: str) -> None:
        if not self.is_running:
            return
        banner = self._banner
        banner.set_class(not up, "down")
        banner.update("" if up else f"⚠ {message}")
        if up:
            self._whoami_wait = self._whoami_every  # a new connection: start the backoff again
            self._check_token()
            if self._open_ledger is not None:
                self.call_after_refresh(self._ledger_opened)

    def _check_token(self) -> None:
        if self.identity is None and self._token:
            self._whoami_due = None
            self.run_worker(self._whoami(self._token), name="whoami", exclusive=True, group="whoami")

    async def _whoami(self, token: str) -> None:
        try:
            reply = await self.link.whoami(token)
        except ApprovalsError as exc:
            if exc.retryable:
                wait = self._whoami_wait
                self._whoami_due = time.monotonic() + wait
                self._whoami_wait = min(wait * 2, WHOAMI_MAX_WAIT)
                self._identity_problem = f"token not verified yet (next try in {wait:g} s): {exc}"
            else:
                self._identity_problem = f"{exc}: watching only"
        else:
            if reply.refused is None:
                self.identity, self._identity_problem = reply, None
                self._read_as_approver()
            else:
                self._identity_problem = f"{reply.message}: watching only"
        self._header.update(self._identity_line())

    def _identity_line(self) -> Text:
        line = Text("pcigate approve  ", style="bold")
        who = self.identity
        if who is None:
            line.append(self._identity_problem or "verifying your token…", style="yellow")
            return line
        line.append(f"{who.name or who.sub}", style="bold")
        if who.can_decide:
            line.append(f"  approver: {', '.join(who.approver_groups)}", style="green")
        else:
            line.append("  watch only: not a person in an approver group", style="yellow")
        if who.expires is not None:  # decisions need a live token: say when to get a new one
            style = "bold red" if who.expires <= self._clock() else "dim"
            line.append(f"  token until {who.expires:%H:%M} UTC", style=style)
        return line

    def _on_request(self, request: Request) -> None:
        change = self.queue.update(request, self._clock())
        if change == "unchanged":
            return
        if change == "new" and request.created >= self._started - timedelta(seconds=1):
            self.notify(
                f"{requester_label(request)}: {one_line(request.statement.text, 60)}", title="new request"
            )
            self.bell()
        self._schedule_refresh()

    # ------------------------------------------------------------------ activity

    def _on_event(self, raw: bytes) -> None:
        line = summarize(raw)
        if line is not None and self.activity.add(line):
            self._arrived.append(line)

    def _on_feed(self, message: str) -> None:
        self._activity_status.update(message)

    def _flush_activity(self) -> None:
        if not self._arrived:
            return
        lines, self._arrived = self._arrived[-2000:], []
        width = max(40, self.size.width - 4)
        for line in lines:
            self._activity_log.write(line.render(width))

    def _rewrite_activity(self) -> None:
        self._arrived = []
        self._activity_log.clear()
        width = max(40, self.size.width - 4)
        for line in list(self.activity.lines())[-2000:]:
            self._activity_log.write(line.render(width))

    def action_category(self) -> None:
        if self._tabs.active == "activity-pane":
            self.notify(f"activity: {self.activity.next_category()}", timeout=2)
            self._rewrite_activity()

    # ------------------------------------------------------------------ ledger

    def _ledger_text(self) -> RenderableType:
        if self.ledger is None:
            return Text(f"⚠ {self._ledger_problem or 'the ledger is not configured here'}", style="yellow")
        return render(self.ledger_status, self._ledger_origin)

    def action_read_ledger(self) -> None:
        """``r``: read the open tab's part of the ledger again (Ledger or Sessions), recorded as a read."""
        if self.ledger is None:
            return
        if self._tabs.active == "ledger-pane":
            self._ledger_panel.update(Text("reading the ledger…"))
            self.run_worker(self._read_ledger(self.ledger), group="ledger", exclusive=True)
        elif self._tabs.active == "sessions-pane":
            self._sessions_status.update(Text("reading the recorded sessions from the ledger…", style="dim"))
            self.run_worker(self._read_sessions(self.ledger), group="sessions", exclusive=True)

    async def _read_ledger(self, ledger: LedgerSource) -> None:
        self.ledger_status = await ledger.read()
        self._ledger_panel.update(self._ledger_text())

    # ------------------------------------------------------------------ sessions

    def _sessions_text(self) -> Text:
        if self.ledger is None:
            return Text(f"⚠ {self._ledger_problem or 'the ledger is not configured here'}", style="yellow")
        found = self.sessions
        if found is None:
            return Text("press r to read the recorded sessions (each read is recorded as ledger.read)")
        if isinstance(found, str):
            return Text(f"⚠ {found}", style="bold red")
        days = SINCE.days
        if not found:
            return Text(f"no session recorded in the last {days} days")
        at = f"{self._sessions_read_at:%H:%M:%S}" if self._sessions_read_at else "?"
        which = f"the newest {MOST}" if len(found) >= MOST else f"{len(found)}"
        text = Text(f"{which} sessions of the last {days} days, read {at} UTC; ")
        text.append("enter replays one", style="dim")
        if any(not row.final for row in found):
            text.append(f"\n{NOT_FINAL} no final chunk in the ledger yet: open, or its gateway stopped",
                        style="yellow")  # fmt: skip
        return text

    async def _read_sessions(self, ledger: LedgerSource) -> None:
        now = self._clock()
        self.sessions = await ledger.sessions(now - SINCE, MOST)
        self._sessions_read_at = now
        self._draw_sessions()

    def _draw_sessions(self) -> None:
        table = self._sessions_table
        selected = self._selected_session()
        width = self._row_width()
        table.clear(columns=True)  # the heading is drawn for the width, like the rows
        table.add_column(Text(heading(width), no_wrap=True), key=SESSIONS_COLUMN)
        rows = self.sessions if isinstance(self.sessions, list) else []
        for row in rows:
            table.add_row(session_entry(row, width), key=row.session_id)
        ids = [row.session_id for row in rows]
        if selected is not None and selected.session_id in ids:
            table.move_cursor(row=ids.index(selected.session_id))
        self._sessions_status.update(self._sessions_text())

    def _selected_session(self) -> SessionRow | None:
        rows = self.sessions if isinstance(self.sessions, list) else []
        row = self._sessions_table.cursor_row
        return rows[row] if 0 <= row < len(rows) and self._sessions_table.row_count == len(rows) else None

    def _replay(self, row: SessionRow) -> None:
        self.push_screen(ReplayScreen(row, lambda: self._load_replay(row)))

    async def _load_replay(self, row: SessionRow) -> Replayed:
        """The chunks' hashes from the ledger (a recorded read), the chunks from NATS, checked and rendered
        (in a thread: a long recording must not freeze the console)."""
        if self.ledger is None:
            return Replayed(unavailable=self._ledger_problem or "the ledger is not configured here")
        attested = await self.ledger.attested(row.session_id)
        if isinstance(attested, str):
            return Replayed(unavailable=attested)
        try:
            stored = await self.link.stored_chunks(row.session_id)
        except ChunkProblemError as exc:  # a foreign or doubled chunk in the stream: tampering, not an outage
            return Replayed(problem=str(exc))
        except ApprovalsError as exc:
            return Replayed(unavailable=str(exc))
        except Exception as exc:  # nats-py's errors share no base class but Exception; say which
            return Replayed(
                unavailable=f"the recordings stream could not be read: {type(exc).__name__}: {exc}"
            )
        return await asyncio.to_thread(play, row.session_id, attested, stored)

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self.refresh_bindings()
        if event.pane.id == "ledger-pane" and self.ledger_status is None:
            self.action_read_ledger()
        elif event.pane.id == "sessions-pane":
            self._sessions_table.focus()
            if self.sessions is None:
                self.action_read_ledger()
        elif event.pane.id == "queue-pane":
            self._table().focus()

    def action_tab(self, pane: str) -> None:
        self._tabs.active = pane

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Keys that act on one tab only are shown (and work) on that tab."""
        tabs = getattr(self, "_tabs", None)
        tab = tabs.active if tabs is not None and tabs.is_attached else "queue-pane"
        if action in ("filter", "sort", "category", "read_ledger", "decide") and len(self.screen_stack) > 1:
            return False  # a pushed screen (detail, reason, replay, help) has its own keys
        only = {"decide": ("queue-pane",), "sort": ("queue-pane",), "category": ("activity-pane",),
                "read_ledger": ("ledger-pane", "sessions-pane"),
                "filter": ("queue-pane", "activity-pane")}  # fmt: skip
        if action in only:
            return tab in only[action]
        return True

    # ------------------------------------------------------------------ the table

    def _schedule_refresh(self) -> None:
        if not self._refresh_due:
            self._refresh_due = True
            self.set_timer(0.02, self._refresh_table)

    def _refresh_table(self) -> None:
        self._refresh_due = False
        table = self._table()
        now = self._clock()
        matching = self.queue.rows()
        rows = matching[:MAX_ROWS]
        ids = [r.id for r in rows]
        self._note.set_class(len(matching) > MAX_ROWS, "shown")
        if len(matching) > MAX_ROWS:
            self._note.update(
                f"showing the first {MAX_ROWS} of {len(matching):,} (by {self.queue.sort}): "
                "/ filters, s sorts"
            )
        if ids != self._shown:
            selected = self._selected_id()
            table.clear()
            width = self._row_width()
            for request in rows:
                table.add_row(entry(request, now, width), key=request.id, height=2)
            self._shown = ids
            if selected in ids:
                table.move_cursor(row=ids.index(selected))
        else:
            width = self._row_width()
            for request in rows:
                if self._drawn.get(request.id) is not request:  # a newer revision (approvals, quorum)
                    table.update_cell(request.id, COLUMN, entry(request, now, width))
        self._drawn = {r.id: r for r in rows}
        self._trace_line.update(self._traces_text())

    def _tick(self) -> None:
        """Once a second: expiry, the countdowns of the rows on screen, the token's validity, and the token
        check again when it is due (a reconnect runs it anyway)."""
        now = self._clock()
        due = self._whoami_due
        if due is not None and time.monotonic() >= due and self.link.connected:
            self._check_token()
        if self.identity is not None and self.identity.expires is not None:
            self._header.update(self._identity_line())
        if self.queue.expire(now):
            self._refresh_table()
        table = self._table()
        top = int(table.scroll_offset.y) // 2  # two lines a row
        width = self._row_width()
        for request_id in self._shown[top : top + table.size.height // 2 + 1]:
            request = self.queue.get(request_id)
            if request is not None:
                table.update_cell(request_id, COLUMN, entry(request, now, width))
        self._trace_line.update(self._traces_text())

    def _row_width(self) -> int:
        return max(40, self.size.width - 4)  # inside the table's scrollbar: no horizontal one

    def on_resize(self) -> None:
        self._shown = []  # rebuilt at the new width
        self._schedule_refresh()
        self._draw_sessions()

    def _traces_text(self) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        for trace in self.queue.traces[:3]:
            r = trace.request
            if text:
                text.append("\n")
            text.append(f"{TRACE_MARKS.get(trace.state, '·')} {trace.state:<9}", style="bold")
            text.append(f" {r.id[-8:]} {requester_label(r)}: {one_line(r.statement.text, self.size.width)}")
        return text

    def _selected_id(self) -> str | None:
        table = self._table()
        if not self._shown or table.cursor_row < 0 or table.cursor_row >= len(self._shown):
            return None
        return self._shown[table.cursor_row]

    def _selected(self) -> Request | None:
        selected = self._selected_id()
        return self.queue.get(selected) if selected is not None else None

    # ------------------------------------------------------------------ actions

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table is self._sessions_table:
            row = self._selected_session()
            if row is not None:
                self._replay(row)
            return
        request = self.queue.get(str(event.row_key.value))
        if request is not None:
            screen = DetailScreen(
                request,
                sensitive=lambda column: self._sensitive(request.connection, column),
                history=self._history if self.ledger is not None else None,
            )
            self.push_screen(screen, self._after_detail(request))

    async def _history(self, request: Request) -> list[Line] | str:
        assert self.ledger is not None
        return await self.ledger.history(request.session_id, request.created)

    def _after_detail(self, request: Request) -> Callable[[Decision | None], None]:
        def done(decision: Decision | None) -> None:
            if decision is not None:
                self._ask_reason(request, decision)

        return done

    def action_decide(self, decision: Decision) -> None:
        if self._tabs.active != "queue-pane":
            return
        request = self._selected()
        if request is None:
            self.notify("no request selected", severity="warning")
            return
        self._ask_reason(request, decision)

    def _ask_reason(self, request: Request, decision: Decision) -> None:
        if self.identity is None or not self.identity.can_decide or not self._token:
            why = self._identity_problem or "you are not a person in an approver group"
            self.notify(f"you cannot decide: {why}", severity="warning")
            return
        token = self._token

        def send(reason: str | None) -> None:
            if reason:
                self.run_worker(self._send(request, decision, reason, token), group="decide")

        self.push_screen(DecisionScreen(request, decision), send)

    async def _send(self, request: Request, decision: Decision, reason: str, token: str) -> None:
        try:
            reply = await self.link.decide(request, decision, reason=reason, token=token)
        except ApprovalsError as exc:
            self.notify(str(exc), title="not sent", severity="error", timeout=10)
            return
        if reply.refused is not None:
            self.notify(reply.message, title=f"refused: {reply.refused}", severity="error", timeout=10)
            return
        verb = "approval counted" if decision == "approve" else "denial counted"
        progress = f"; {reply.approvals} of {reply.quorum} approvals" if reply.state == "pending" else ""
        self.notify(f"{reply.message}{progress}", title=verb)

    def _active_filter(self) -> Input | None:
        return {"queue-pane": self._filter, "activity-pane": self._activity_filter}.get(self._tabs.active)

    def action_filter(self) -> None:
        box = self._active_filter()
        if box is not None:
            box.add_class("shown")
            # Now, not at the next idle (Widget.focus): keys typed right after "/" belong to the filter,
            # and an "a" among them must not reach the queue as "approve".
            self.screen.set_focus(box)

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input is self._filter:
            self.queue.filter = event.value
            self._schedule_refresh()
        elif event.input is self._activity_filter:
            self.activity.filter = event.value
            self._rewrite_activity()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input is self._filter:
            self._table().focus()
        elif event.input is self._activity_filter:
            self._activity_log.focus()

    def action_clear_filter(self) -> None:
        box = self._active_filter()
        if box is not None:
            box.value = ""
            box.remove_class("shown")
            (self._table() if box is self._filter else self._activity_log).focus()

    def action_sort(self) -> None:
        if self._tabs.active == "queue-pane":
            self.notify(f"sorted by {self.queue.next_sort()}", timeout=2)
            self._refresh_table()

    def action_help(self) -> None:
        self.push_screen(HelpScreen())
