"""The approver console's keys and mouse, driven by Textual's Pilot on a console fed by hand (no NATS, the
snapshots' fixed data and clock): ``s`` sorts, ``enter`` and a click open a request, ``esc`` goes back; and
``pcigate approve`` takes its token from ``--token``, ``--token-file`` or ``PCIGATE_TOKEN``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest

from pcigate.cli import main
from tests.unit.test_config import BASE
from tests.unit.test_tui_snapshots import SIZE, console, fed, rid
from tui.screens import DetailScreen

# The fixed requests in the order of each sort key: 2 expires first, 1 was created first, then by
# requester (agent-7 before alice@...), then by connection (payments before reporting).
BY_EXPIRY = [rid(2), rid(1), rid(3)]
BY_AGE = [rid(1), rid(2), rid(3)]
BY_REQUESTER = [rid(2), rid(1), rid(3)]


async def test_s_changes_the_sort_order() -> None:
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await fed(app, pilot)
        assert (app.queue.sort, app._shown) == ("expires", BY_EXPIRY)
        await pilot.press("s")
        await pilot.pause()
        assert (app.queue.sort, app._shown) == ("age", BY_AGE)
        await pilot.press("s")
        await pilot.pause()
        assert (app.queue.sort, app._shown) == ("requester", BY_REQUESTER)
        await pilot.press("s", "s")  # connection, then back to the first
        await pilot.pause()
        assert (app.queue.sort, app._shown) == ("expires", BY_EXPIRY)


async def test_enter_opens_the_selected_request_and_esc_returns_to_the_queue() -> None:
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await fed(app, pilot)
        await pilot.press("down", "enter")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, DetailScreen) and screen.request.id == BY_EXPIRY[1]
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is app.screen_stack[0] and len(app.screen_stack) == 1
        assert app.focused is app._table() and app._selected_id() == BY_EXPIRY[1]


async def test_clicking_a_row_selects_it_and_clicking_it_again_opens_it() -> None:
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await fed(app, pilot)
        second = (10, 4)  # below the two-line heading and the first two-line row
        assert await pilot.click("#queue", offset=second)
        await pilot.pause()
        assert app._selected_id() == BY_EXPIRY[1] and len(app.screen_stack) == 1
        assert await pilot.click("#queue", offset=second)
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, DetailScreen) and screen.request.id == BY_EXPIRY[1]


class Started:
    """Stands in for the console: what ``pcigate approve`` started it with."""

    tokens: ClassVar[list[str | None]] = []

    def __init__(self, servers: list[str], token: str | None, **kw: Any) -> None:
        self.tokens.append(token)

    def run(self) -> None:
        return None


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[list[str | None], Path]:
    monkeypatch.setattr("tui.app.ApproverApp", Started)
    monkeypatch.delenv("PCIGATE_TOKEN", raising=False)
    Started.tokens = []
    config = tmp_path / "pcigate.yaml"
    config.write_text(BASE)
    return Started.tokens, config


def test_approve_takes_the_token_from_the_flag_the_file_or_the_environment(
    started: tuple[list[str | None], Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tokens, config = started
    approve = ["approve", "--config", str(config)]
    assert main([*approve, "--token", "from-the-flag"]) == 0
    monkeypatch.setenv("PCIGATE_TOKEN", " from-the-environment\n")
    assert main(approve) == 0
    assert main([*approve, "--token", "from-the-flag"]) == 0  # the flag wins
    file = tmp_path / "bob.jwt"
    file.write_text("from-the-file\n")
    assert main([*approve, "--token-file", str(file)]) == 0
    monkeypatch.delenv("PCIGATE_TOKEN")
    assert main(approve) == 0  # none: the console only watches
    assert tokens == ["from-the-flag", "from-the-environment", "from-the-flag", "from-the-file", None]
