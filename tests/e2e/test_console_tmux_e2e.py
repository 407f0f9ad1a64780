"""The issue's done-when, through a real terminal: the dev stack's gateway holds alice's psql ``UPDATE
cards``; bob runs ``pcigate approve --token "$(pcigate token --sub bob@example.com --groups approvers)"``
in tmux at 80x24 (the shell mints the token), sees alice's request, filters to it, presses ``a``, types a
reason and enter; psql returns ``UPDATE 1``. The time from starting the console to alice's request on
screen is printed (the issue says within a second; tests do not assert wall-clock time).

Without tmux the test is skipped, except where ``CI`` is set: CI has tmux, so there it fails instead of
passing unseen."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_approvals_e2e import BOB, unique
from tests.e2e.test_masking_e2e import psql_path
from tests.gateway_support import GatewayEndpoint

NO_TMUX = "tmux is not installed (Debian: apt install tmux)"
pytestmark = [
    pytest.mark.e2e,
    # Decided before any fixture runs: a skip does not start the dev stack.
    pytest.mark.skipif(
        shutil.which("tmux") is None and not os.environ.get("CI"),
        reason=f"{NO_TMUX}; skipped as CI is unset (with CI set it fails)",
    ),
]


class Tmux:
    """A tmux server of the test's own (its own socket), one 80x24 window per program."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.started = False

    def run(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.name, *args], capture_output=True, text=True, timeout=30, check=True
        )
        return done.stdout

    def window(self, title: str, command: str) -> None:
        if not self.started:
            self.run("new-session", "-d", "-s", self.name, "-n", title, "-x", "80", "-y", "24", command)
            self.started = True
        else:
            self.run("new-window", "-t", self.name, "-n", title, command)

    def screen(self, title: str) -> str:
        return self.run("capture-pane", "-p", "-t", f"{self.name}:{title}")

    def keys(self, title: str, *keys: str) -> None:
        self.run("send-keys", "-t", f"{self.name}:{title}", *keys)

    def until(self, title: str, check: Callable[[str], bool], within: float, what: str) -> str:
        deadline = time.monotonic() + within
        while True:
            shown = self.screen(title)
            if check(shown):
                return shown
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; the {title} pane shows:\n{shown}")
            time.sleep(0.1)


ROW = re.compile(r"^\s*\d+[smhd]\S*\s+\d+[smhd]\S*\s+\d+/\d+\s+\S+\s+(\S+)")  # left, age, q, icon, who


def queue_rows(screen: str) -> list[str]:
    """The requesters of the queue's rows on screen (not the filter box, not the trace lines)."""
    return [m.group(1) for m in map(ROW.match, screen.splitlines()) if m is not None]


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    if shutil.which("tmux") is None:  # only where CI is set (skipped elsewhere)
        pytest.fail(f"{NO_TMUX}, and CI is set: this end-to-end test must run there")
    session = Tmux(f"pcigate-test-{uuid.uuid4().hex[:8]}")
    try:
        yield session
    finally:
        subprocess.run(["tmux", "-L", session.name, "kill-server"], capture_output=True, check=False)


def test_alices_update_completes_when_bob_approves_it_in_the_console(
    dev_stack: dict[str, Any], gateway: GatewayEndpoint, tmux: Tmux, capsys: pytest.CaptureFixture[str]
) -> None:
    alice = unique("alice")
    psql = shlex.join(
        [psql_path(), "-X", "-h", gateway.host, "-p", str(gateway.port), "-U", alice, "-d", gateway.database,
         "-c", "UPDATE cards SET exp_year = exp_year WHERE card_id = 7"]
    )  # fmt: skip
    password = gateway.token(sub=alice, groups=("payments-admins",))
    tmux.window(
        "alice", f"PGPASSWORD={shlex.quote(password)} PGSSLMODE=disable {psql}; echo PSQL-EXIT=$?; sleep 60"
    )
    tmux.until("alice", lambda s: "held for approval" in s, 30, "alice's statement to be held")
    pcigate = shlex.quote(str(Path(sys.executable).with_name("pcigate")))
    mint = f"{pcigate} token --home {shlex.quote(str(gateway.layout.root))} --sub {BOB} --groups approvers"
    console = f'{pcigate} approve --config {shlex.quote(dev_stack["config"])} --token "$({mint})"'
    minted = time.monotonic()  # the same command alone: how much of the start is the token's minting
    subprocess.run(mint, shell=True, check=True, capture_output=True, timeout=30)
    minting = time.monotonic() - minted
    started = time.monotonic()
    tmux.window("bob", console)
    tmux.until("bob", lambda s: alice in queue_rows(s), 30, "alice's request in bob's queue")
    visible = time.monotonic() - started
    tmux.until("bob", lambda s: "approver: approvers" in s, 30, "bob's token verified")
    verified = time.monotonic() - started
    with capsys.disabled():  # the "within a second", measured (polled every 0.1 s), not asserted
        print(
            f"\nconsole started (token minted by the shell, 80x24 in tmux) -> alice's request visible: "
            f"{visible:.2f} s; token verified: {verified:.2f} s (pcigate token alone: {minting:.2f} s)"
        )
    tmux.keys("bob", "/")  # as a person does: look for the filter box, type, look again
    tmux.until("bob", lambda s: "filter: requester" in s, 10, "the filter box")
    tmux.keys("bob", "-l", alice)
    tmux.until("bob", lambda s: "▊  " + alice in s, 10, "the filter typed")
    tmux.keys("bob", "Enter")
    tmux.until("bob", lambda s: queue_rows(s) == [alice], 10, "the queue filtered to alice's request")
    tmux.keys("bob", "a")
    tmux.until("bob", lambda s: "Approve request" in s, 10, "the reason dialog")
    tmux.keys("bob", "-l", "CHG-4242 checked in tmux")
    tmux.keys("bob", "Enter")
    shown = tmux.until("alice", lambda s: "PSQL-EXIT=" in s, 30, "psql to return")
    assert "UPDATE 1" in shown and "PSQL-EXIT=0" in shown, shown
    tmux.until("bob", lambda s: "approved" in s, 10, "the trace of the approval")
    tmux.keys("bob", "q")
