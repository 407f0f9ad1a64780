"""Starting and stopping the dev stack's own processes, and only those.

A pid alone is not proof of ownership (pids are reused), so every check also looks for a marker we put on
the process's command line — a path under our state directory.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def is_ours(pid: int | None, marker: str) -> bool:
    """True when ``pid`` is alive and its command line carries ``marker``."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive but owned by another user (the unprivileged PostgreSQL user when we run as root)
    if _is_zombie(pid):
        return False
    return marker in cmdline(pid)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def spawn(argv: list[str], log: Path, cwd: Path | None = None) -> int:
    """Start a daemon in its own session so it outlives this CLI and ignores the terminal's signals."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )
    return proc.pid


def terminate(pid: int, marker: str, timeout: float = 15.0) -> bool:
    """SIGTERM, then SIGKILL after ``timeout``; returns True once the process is gone."""
    if not is_ours(pid, marker):
        return True
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not is_ours(pid, marker):
            return True
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    for _ in range(100):
        _reap(pid)
        if not is_ours(pid, marker):
            return True
        time.sleep(0.05)
    return False


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
