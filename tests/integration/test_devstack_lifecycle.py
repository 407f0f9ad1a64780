"""A whole up → status → down cycle in a private state directory, and the external-server mode."""

from __future__ import annotations

from pathlib import Path

import pytest

from pcigate.devstack import procs, stack
from pcigate.devstack.layout import Layout

pytestmark = pytest.mark.integration


def markers(layout: Layout) -> list[str]:
    state = stack.load_state(layout)
    return [m for m in (state["nats"].get("marker"), state["postgres"].get("datadir")) if m]


def pids_with(marks: list[str]) -> list[int]:
    """Every live process whose command line mentions one of ``marks``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            line = procs.cmdline(int(entry.name))
            if any(m in line for m in marks):
                pids.append(int(entry.name))
    return pids


def test_up_status_down_leaves_nothing_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(stack.ENV_NATS, raising=False)
    monkeypatch.delenv(stack.ENV_POSTGRES, raising=False)
    layout = Layout(tmp_path / "stack")
    status = stack.up(layout).status
    marks = markers(layout)
    try:
        assert status["running"]
        assert status["services"]["postgres"]["managed"] and status["services"]["nats"]["managed"]
        assert len(marks) == 2
        assert len(pids_with(marks)) >= 2  # postmaster and nats-server
    finally:
        stack.down(layout)
    assert pids_with(marks) == []
    assert stack.status(layout)["running"] is False
    stack.down(layout, purge=True)
    assert not layout.root.exists()


def test_external_servers_are_used_and_left_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(stack.ENV_NATS, raising=False)
    monkeypatch.delenv(stack.ENV_POSTGRES, raising=False)
    owner = Layout(tmp_path / "owner")
    stack.up(owner)
    marks = markers(owner)
    try:
        monkeypatch.setenv(stack.ENV_NATS, stack.status(owner)["nats"])
        monkeypatch.setenv(stack.ENV_POSTGRES, owner.secret("postgres_superuser_dsn").read_text().strip())
        guest = Layout(tmp_path / "guest")
        status = stack.up(guest).status
        assert status["running"]
        assert not status["services"]["postgres"]["managed"]
        assert not status["services"]["nats"]["managed"]
        lines = stack.down(guest)
        assert any("left running" in line for line in lines)
        monkeypatch.delenv(stack.ENV_NATS)
        monkeypatch.delenv(stack.ENV_POSTGRES)
        assert stack.status(owner)["running"], "dev down of a guest stack stopped servers it did not start"
    finally:
        stack.down(owner, purge=True)
    assert pids_with(marks) == []
