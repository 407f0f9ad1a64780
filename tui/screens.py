"""The console's pushed screens: one request in full, the decision's reason, a session's replay, the key
map."""

from __future__ import annotations

import unicodedata
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal

from rich.console import Group, RenderableType
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Footer, Input, Label, RichLog, Static

from schemas.approvals import Request
from schemas.ids import format_utc
from tui.queue import KIND_ICONS, requester_label
from tui.sessions import Replayed, replay_banner, replay_facts, replay_title

if TYPE_CHECKING:
    from pcigate.recordings import SessionRow
    from tui.activity import Line

__all__ = [
    "KEYS",
    "MAX_REASON",
    "DecisionScreen",
    "DetailScreen",
    "HelpScreen",
    "ReplayScreen",
    "reason_problem",
]

Decision = Literal["approve", "deny"]
MAX_REASON: Final = 1024  # characters: a decision's reason in the contract (schemas.approvals.DecideRequest)

KEYS: tuple[tuple[str, str], ...] = (
    ("1  2  3  4", "queue, activity, ledger, sessions"),
    ("↑ ↓  PgUp PgDn", "move in the queue or the sessions"),
    ("enter", "open the selected request, or replay the session"),
    ("a", "approve it (asks for a reason)"),
    ("d", "deny it (asks for a reason)"),
    ("/", "filter the queue or the activity by text"),
    ("s", "sort: expiry, age, requester, connection"),
    ("f", "activity: the next category (sessions, commands, blocks, masking, approvals, ledger)"),
    ("r", "ledger, sessions: read again (recorded as ledger.read)"),
    ("esc", "back (request, replay, help); clears a filter"),
    ("?", "this help"),
    ("q", "quit"),
)


def detail(request: Request, sensitive: Callable[[str], bool] = lambda _: False) -> RenderableType:
    """Everything the record says about a request, for a person about to decide it; ``sensitive`` marks
    the columns the connection's masking profile treats as card data."""
    r = request.requester
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    chain = Text(f"{KIND_ICONS.get(r.kind, '?')} {r.name or r.sub} ({r.kind}, {r.sub})")
    if r.on_behalf_of:
        chain.append(f"\n   acting for {KIND_ICONS['human']} {r.on_behalf_of}")
    facts.add_row("request", request.id)
    facts.add_row("requester", chain)
    facts.add_row("groups", ", ".join(r.groups) or "-")
    if request.origin is not None:
        facts.add_row("from", f"{request.origin.addr} ({request.origin.client_app or 'unknown client'})")
    target = request.connection + (f" / database {request.database}" if request.database else "")
    facts.add_row("connection", target)
    facts.add_row("session", request.session_id)
    facts.add_row("rule", f"{request.rule}: {request.why}")
    facts.add_row("tables", ", ".join(request.statement.objects) or "-")
    if request.columns:
        columns = Text()
        for i, column in enumerate(request.columns):
            if i:
                columns.append(", ")
            hot = sensitive(column.rsplit(".", 1)[-1])
            columns.append(column + (" ⚠ card data" if hot else ""), style="bold red" if hot else "")
        facts.add_row("columns", columns)
    approvals = ", ".join(f"{a.name or a.sub} ({a.decision}: {a.reason})" for a in request.approvals)
    facts.add_row("quorum", f"{request.approved}/{request.quorum}" + (f": {approvals}" if approvals else ""))
    facts.add_row("approvers", ", ".join(request.approver_groups))
    scope = {"statement": "this statement, once", "access": "access to the connection"}.get(
        request.scope, "every statement of this rule in the session"
    )
    if request.session_for_seconds and request.scope != "statement":
        scope += f" for {request.session_for_seconds // 60} min"
    facts.add_row("scope", scope)
    facts.add_row("created", format_utc(request.created))
    facts.add_row("expires", format_utc(request.expires))
    statement = Syntax(request.statement.text, "sql", word_wrap=True, background_color="default")
    parts: list[RenderableType] = [facts, Text("\nstatement (masked)", style="bold"), statement]
    params = request.statement.parameters
    if params:
        shown = Table.grid(padding=(0, 2))
        for i, value in enumerate(params, 1):
            shown.add_row(f"${i}", "NULL" if value is None else value)
        parts += [Text("\nparameters (masked)", style="bold"), shown]
    return Group(*parts)


History = Callable[[Request], Awaitable["list[Line] | str"]]


class DetailScreen(Screen[Decision | None]):
    """One request in full; ``a`` / ``d`` decide it (the app asks for the reason). With ``history``, the
    session's earlier statements are read from the ledger (a recorded read) and shown below."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss(None)", "Back"),
        Binding("a", "dismiss('approve')", "Approve"),
        Binding("d", "dismiss('deny')", "Deny"),
    ]

    def __init__(
        self,
        request: Request,
        *,
        sensitive: Callable[[str], bool] = lambda _: False,
        history: History | None = None,
    ) -> None:
        super().__init__()
        self.request = request
        self._sensitive = sensitive
        self._history = history
        self.history_lines: list[Line] | str | None = None
        self._history_panel = Static("", id="history")

    def compose(self) -> ComposeResult:
        yield Label(requester_label(self.request), id="detail-title")
        with VerticalScroll():
            yield Static(detail(self.request, self._sensitive), id="detail")
            yield self._history_panel
        with Horizontal(id="detail-buttons"):
            yield Button("Approve (a)", id="approve", variant="success")
            yield Button("Deny (d)", id="deny", variant="error")
            yield Button("Back (esc)", id="back")
        yield Footer()

    def on_mount(self) -> None:
        if self._history is not None:
            self._history_panel.update(Text("reading the session's earlier statements…", style="dim"))
            self.run_worker(self._read_history(self._history), exclusive=True)

    async def _read_history(self, history: History) -> None:
        found = await history(self.request)
        self.history_lines = found
        title = Text("\nthe session's earlier statements (from the ledger)", style="bold")
        if isinstance(found, str):
            self._history_panel.update(Group(title, Text(f"⚠ {found}", style="yellow")))
        elif not found:
            self._history_panel.update(Group(title, Text("none: this is the session's first", style="dim")))
        else:
            width = max(40, self.size.width - 4)
            self._history_panel.update(Group(title, *(line.render(width) for line in found)))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None if event.button.id == "back" else event.button.id)  # type: ignore[arg-type]


def reason_problem(reason: str) -> str | None:
    """Why ``reason`` cannot go with a decision, or None. Checked here, where the approver can still fix it:
    the contract refuses a reason longer than ``MAX_REASON`` or holding control characters."""
    if not reason:
        return "a reason is required"
    if len(reason) > MAX_REASON:
        return f"a reason is at most {MAX_REASON} characters (this one has {len(reason)}): shorten it"
    bad = next((c for c in reason if unicodedata.category(c) == "Cc"), None)
    if bad is not None:
        return f"the reason holds a control character (U+{ord(bad):04X}): retype it without it"
    return None


class ReasonInput(Input):
    """The reason's box, which keeps it within ``MAX_REASON``: typing or pasting past it is refused with a
    word to the approver (Input alone only rings the bell)."""

    class Refused(Message):
        """Text that would make the reason too long was refused."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(max_length=MAX_REASON, **kw)

    def restricted(self) -> None:
        super().restricted()
        self.post_message(self.Refused())


class DecisionScreen(ModalScreen[str | None]):
    """The reason for a decision: required, sent with it and kept in the evidence."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, request: Request, decision: Decision) -> None:
        super().__init__()
        self.request = request
        self.decision = decision

    def compose(self) -> ComposeResult:
        verb = "Approve" if self.decision == "approve" else "Deny"
        with Vertical(id="decision"):
            yield Label(f"{verb} request {self.request.id}", id="decision-title")
            yield Label(requester_label(self.request) + f" on {self.request.connection}")
            yield ReasonInput(placeholder="reason (required): a ticket, what you checked", id="reason")
            yield Label("", id="decision-problem")
            with Horizontal():
                yield Button(
                    f"{verb} (enter)", id="send", variant="success" if verb == "Approve" else "error"
                )
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#reason", Input).focus()

    def on_input_submitted(self) -> None:
        self._send()

    def on_input_changed(self, event: Input.Changed) -> None:
        full = len(event.value) >= MAX_REASON
        self.query_one("#decision-problem", Label).update(
            f"a reason is at most {MAX_REASON} characters: this is the limit" if full else ""
        )

    def on_reason_input_refused(self) -> None:
        self.query_one("#decision-problem", Label).update(
            f"a reason is at most {MAX_REASON} characters: that would make it longer, so it was not taken"
        )

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "send":
            self._send()
        else:
            self.dismiss(None)

    def _send(self) -> None:
        reason = self.query_one("#reason", Input).value.strip()
        problem = reason_problem(reason)
        if problem is not None:
            self.query_one("#decision-problem", Label).update(problem)
            return
        self.dismiss(reason)


Load = Callable[[], Awaitable[Replayed]]


class ReplayScreen(Screen[None]):
    """A recorded session as its client saw it, all at once (``pcigate replay`` plays it in time): every
    chunk is checked against its hash in the ledger first, and one that fails stops the replay under a red
    banner naming it. ``load`` reads and verifies; it may take seconds, so the screen shows at once."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss(None)", "Back")]

    def __init__(self, row: SessionRow, load: Load) -> None:
        super().__init__()
        self.row = row
        self._load = load
        self.replayed: Replayed | None = None
        self._facts = Static(replay_facts(row.session_id, None), id="replay-facts")
        self._banner = Static("", id="replay-banner")
        self._log = RichLog(id="replay-log", wrap=False, auto_scroll=False)

    def compose(self) -> ComposeResult:
        yield Label(replay_title(self.row), id="replay-title")
        yield from (self._facts, self._banner, self._log)
        yield Footer()

    def on_mount(self) -> None:
        self.run_worker(self._read(), exclusive=True)

    async def _read(self) -> None:
        try:
            replayed = await self._load()
        except Exception as exc:  # a worker's exception would end the console with a traceback
            replayed = Replayed(unavailable=f"the recording could not be read: {type(exc).__name__}: {exc}")
        self.replayed = replayed
        self._facts.update(replay_facts(self.row.session_id, replayed))
        banner = replay_banner(replayed)
        self._banner.update(banner or "")
        self._banner.set_class(banner is not None, "shown")
        for line in replayed.lines:
            self._log.write(Text(line))
        self._log.scroll_home(animate=False)


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss", "Close"),
        Binding("question_mark", "dismiss", "Close"),
    ]

    def compose(self) -> ComposeResult:
        keys = Table.grid(padding=(0, 3))
        for key, what in KEYS:
            keys.add_row(Text(key, style="bold"), what)
        with Vertical(id="help"):
            yield Label("pcigate approve: keys", id="help-title")
            yield Static(keys)
            yield Static(  # wraps (a Label would be cut at 80 columns)
                "The mouse works too: click a row, click it again to open it, click tabs and buttons."
            )
