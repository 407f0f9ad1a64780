"""``dev up``, ``dev down`` and ``dev status``: orchestration of the dev stack's parts.

Everything the stack starts is recorded in ``.pcigate/dev/state.json`` with a marker that identifies the
process, so ``down`` stops exactly what ``up`` started — never a server the environment pointed us to.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import hashlib
import importlib.util
import os
import shutil
import sys
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from pcigate.config import load_config
from pcigate.devstack import binaries, devconfig, procs
from pcigate.devstack.files import ensure_secret, read_json, write_json, write_private
from pcigate.devstack.issuer import DEV_ISSUER, ensure_issuer
from pcigate.devstack.layout import Layout
from pcigate.devstack.natsserver import NatsServer
from pcigate.devstack.ports import can_connect, free_port
from pcigate.devstack.postgres import Cluster, RunAs, plan_cluster
from pcigate.devstack.seed import LEDGER_DB, PAYMENTS_DB, Roles, seed
from pcigate.devstack.tlscert import ensure_dev_tls
from pcigate.nats_provision import provision_url
from pcigate.natsconn import connect_once
from pcigate.settings import provision_settings

ENV_NATS = "PCIGATE_DEV_NATS_URL"
ENV_POSTGRES = "PCIGATE_DEV_POSTGRES_DSN"


class DevStackError(RuntimeError):
    """A part of the stack could not be brought up; the message says which and what to do."""


@contextmanager
def _locked(layout: Layout) -> Iterator[None]:
    """One ``dev up``/``down`` at a time per state directory."""
    layout.dev.mkdir(parents=True, exist_ok=True)
    with open(layout.lock_file, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def load_state(layout: Layout) -> dict[str, Any]:
    if not layout.state_file.exists():
        return {}
    state = read_json(layout.state_file)
    return state if isinstance(state, dict) else {}


def _cluster_from(st: dict[str, Any]) -> Cluster:
    run_as = st.get("run_as")
    return Cluster(
        bindir=Path(st["bindir"]),
        datadir=Path(st["datadir"]),
        sockdir=Path(st["sockdir"]),
        logfile=Path(st["logfile"]),
        port=int(st["port"]),
        run_as=RunAs(run_as["name"], run_as["uid"], run_as["gid"]) if run_as else None,
    )


def _nats_from(st: dict[str, Any]) -> NatsServer:
    return NatsServer(Path(st["binary"]), Path(st["home"]), int(st["port"]), int(st["monitor_port"]))


# ---------------------------------------------------------------------------------------------------- NATS


async def _check_jetstream(url: str) -> None:
    nc = await connect_once(url)
    try:
        await nc.jetstream().account_info()
    finally:
        await nc.close()


def _up_nats(layout: Layout, prev: dict[str, Any], log: list[str]) -> dict[str, Any]:
    external = os.environ.get(ENV_NATS)
    if external:
        try:
            asyncio.run(_check_jetstream(external))
        except Exception as exc:
            raise DevStackError(
                f"{ENV_NATS}={external}: no JetStream-enabled NATS reachable there ({exc})"
            ) from exc
        log.append(f"NATS        {external} (from {ENV_NATS}; not managed by pcigate)")
        return {"managed": False, "url": external}
    if prev.get("managed") and procs.is_ours(prev.get("pid"), _nats_from(prev).marker):
        server = _nats_from(prev)
        log.append(f"NATS        {server.url} (already running, pid {prev['pid']})")
        return prev
    server = NatsServer(
        binary=binaries.nats_server_binary(),
        home=layout.nats_dir,
        port=free_port(prev.get("port")),
        monitor_port=free_port(prev.get("monitor_port")),
    )
    pid = server.start()
    log.append(f"NATS        {server.url} (started pid {pid}, JetStream store {server.store_dir})")
    return {
        "managed": True,
        "url": server.url,
        "pid": pid,
        "binary": str(server.binary),
        "home": str(server.home),
        "port": server.port,
        "monitor_port": server.monitor_port,
        "marker": server.marker,
    }


# ---------------------------------------------------------------------------------------------- PostgreSQL


def _dsn(user: str, password: str, host: str, port: int, database: str) -> str:
    q = urllib.parse.quote
    return f"postgresql://{q(user, safe='')}:{q(password, safe='')}@{host}:{port}/{q(database, safe='')}"


def _up_postgres(layout: Layout, prev: dict[str, Any], log: list[str]) -> dict[str, Any]:
    external = os.environ.get(ENV_POSTGRES)
    if external:
        parsed = urllib.parse.urlsplit(external)
        if parsed.scheme not in ("postgres", "postgresql") or not parsed.hostname:
            raise DevStackError(f"{ENV_POSTGRES} must be a postgresql://user[:password]@host:port/db URL")
        write_private(layout.secret("postgres_superuser_dsn"), external + "\n")
        log.append(
            f"PostgreSQL  {parsed.hostname}:{parsed.port or 5432} "
            f"(from {ENV_POSTGRES}; not managed by pcigate)"
        )
        return {"managed": False, "host": parsed.hostname, "port": parsed.port or 5432}
    password = ensure_secret(layout.secret("postgres"))
    if prev.get("managed") and prev.get("datadir") and Path(prev["datadir"], "PG_VERSION").exists():
        cluster = _cluster_from(prev)
        if not cluster.running():
            cluster = dataclasses.replace(cluster, port=free_port(cluster.port))
    else:
        cluster = plan_cluster(layout.root, binaries.postgres_bindir(), free_port(prev.get("port")))
    if not cluster.initialized():
        cluster.init(password)
    was_running = cluster.running()
    cluster.start()
    where = f"data {cluster.datadir}" + (f", running as {cluster.run_as.name}" if cluster.run_as else "")
    state = "already running" if was_running else "started"
    log.append(f"PostgreSQL  127.0.0.1:{cluster.port} ({state}, {where})")
    write_private(
        layout.secret("postgres_superuser_dsn"),
        _dsn("postgres", password, "127.0.0.1", cluster.port, "postgres") + "\n",
    )
    return {
        "managed": True,
        "host": "127.0.0.1",
        "port": cluster.port,
        "bindir": str(cluster.bindir),
        "datadir": str(cluster.datadir),
        "sockdir": str(cluster.sockdir),
        "logfile": str(cluster.logfile),
        "run_as": dataclasses.asdict(cluster.run_as) if cluster.run_as else None,
    }


def _ensure_ledger_key(path: Path) -> None:
    if path.exists():
        return
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_private(path, pem)


# ---------------------------------------------------------------------------------------------- commands


@dataclass(frozen=True)
class UpResult:
    lines: list[str]
    status: dict[str, Any]


def up(layout: Layout) -> UpResult:
    """Bring every part up (or confirm it is up); safe to run any number of times."""
    layout.ensure()
    log: list[str] = []
    with _locked(layout):
        prev = load_state(layout)
        state: dict[str, Any] = {"version": 1, "root": str(layout.root)}
        state["nats"] = _up_nats(layout, prev.get("nats", {}), log)
        try:
            state["postgres"] = _up_postgres(layout, prev.get("postgres", {}), log)
        except Exception:
            write_json(layout.state_file, state)  # so `dev down` can still stop NATS
            raise
        state["started_at"] = prev.get("started_at") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        write_json(layout.state_file, state)

        pg = state["postgres"]
        roles = Roles(
            rw=ensure_secret(layout.secret("pcigate_rw")),
            ro=ensure_secret(layout.secret("pcigate_ro")),
            ledger=ensure_secret(layout.secret("pcigate_ledger")),
        )
        superuser_dsn = layout.secret("postgres_superuser_dsn").read_text().strip()
        asyncio.run(seed(superuser_dsn, roles))
        write_private(
            layout.secret("ledger_dsn"),
            _dsn("pcigate_ledger", roles.ledger, pg["host"], pg["port"], LEDGER_DB) + "\n",
        )
        log.append(f"databases   {PAYMENTS_DB} (demo target), {LEDGER_DB} (ledger)")

        ensure_issuer(layout.signing_key, layout.jwks_file)
        ensure_dev_tls(layout.tls_dir)
        _ensure_ledger_key(layout.secret("ledger-signing.key"))
        ensure_secret(layout.secret(devconfig.DIGEST_KEY_SECRET), nbytes=32)
        prev_gw = prev.get("gateway", {})
        listen = prev_gw.get("listen") if _gateway_alive(prev_gw) else None
        if listen is None:
            listen = f"127.0.0.1:{free_port(int(devconfig.GATEWAY_PG_LISTEN.rsplit(':', 1)[1]))}"
        endpoints = devconfig.DevEndpoints(state["nats"]["url"], pg["host"], pg["port"], listen)
        devconfig.write(layout, endpoints)
        config = load_config(layout.config_file)
        report = asyncio.run(provision_url(state["nats"]["url"], provision_settings(config)))
        log.extend(f"nats init   {line}" for line in report.lines())
        state["gateway"] = _up_gateway(layout, prev_gw, listen, config.digest(), log)
        write_json(layout.state_file, state)
        state["evidence"] = _up_evidence(layout, prev.get("evidence", {}), config.digest(), log)
        write_json(layout.state_file, state)
    return UpResult(log, status(layout))


# ------------------------------------------------------------------------------------------------ gateway


def _gateway_alive(st: dict[str, Any]) -> bool:
    return bool(st) and procs.is_ours(st.get("pid"), st.get("marker", ""))


def _code_stamp(package: str = "gateway") -> str:
    """Changes whenever the installed code of ``package`` does, so `dev up` restarts a service running old
    code."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return ""
    root = Path(spec.origin).parent
    parts = sorted(f"{p}:{p.stat().st_mtime_ns}:{p.stat().st_size}" for p in root.rglob("*.py"))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _up_gateway(
    layout: Layout, prev: dict[str, Any], listen: str, config_digest: str, log: list[str]
) -> dict[str, Any]:
    """Run ``pcigate gateway`` in the background; restart it when the config it runs with changed."""
    marker = str(layout.config_file)
    if _gateway_alive(prev):
        if prev.get("config_digest") == config_digest and prev.get("code") == _code_stamp():
            log.append(f"gateway     postgres on {listen} (already running, pid {prev['pid']})")
            return prev
        procs.terminate(prev["pid"], marker)
    logfile = layout.logs / "gateway.log"
    argv = [sys.executable, "-m", "pcigate", "gateway", "--config", marker]
    pid = procs.spawn(argv, logfile, cwd=layout.root)
    host, port = listen.rsplit(":", 1)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not procs.is_ours(pid, marker):
            break
        if can_connect(host, int(port)):
            log.append(f"gateway     postgres on {listen} (started pid {pid}, log {logfile})")
            return {
                "pid": pid,
                "marker": marker,
                "listen": listen,
                "config_digest": config_digest,
                "code": _code_stamp(),
            }
        time.sleep(0.05)
    procs.terminate(pid, marker)
    tail = "".join(logfile.read_text(errors="replace").splitlines(keepends=True)[-15:])
    raise DevStackError(f"the gateway did not start listening on {listen}; its log says:\n{tail}")


# ----------------------------------------------------------------------------------------------- evidence

_EVIDENCE_READY = "evidence    ledger "  # the line `pcigate evidence` prints once it consumes


def _evidence_marker(layout: Layout) -> str:
    return f"pcigate evidence --config {layout.config_file}"


def _evidence_alive(layout: Layout, st: dict[str, Any]) -> bool:
    return bool(st) and procs.is_ours(st.get("pid"), _evidence_marker(layout))


def _up_evidence(layout: Layout, prev: dict[str, Any], config_digest: str, log: list[str]) -> dict[str, Any]:
    """Run ``pcigate evidence`` in the background (restarted when its config or code changed)."""
    marker = _evidence_marker(layout)
    stamp = _code_stamp("evidence")
    if _evidence_alive(layout, prev):
        if prev.get("config_digest") == config_digest and prev.get("code") == stamp:
            log.append(f"evidence    consuming PCIGATE_AUDIT (already running, pid {prev['pid']})")
            return prev
        procs.terminate(prev["pid"], marker, timeout=30.0)
    logfile = layout.logs / "evidence.log"
    start = logfile.stat().st_size if logfile.exists() else 0
    argv = [sys.executable, "-m", "pcigate", "evidence", "--config", str(layout.config_file)]
    pid = procs.spawn(argv, logfile, cwd=layout.root)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not procs.is_ours(pid, marker):
            break
        with open(logfile, "rb") as f:
            f.seek(start)
            if _EVIDENCE_READY.encode() in f.read():
                log.append(
                    f"evidence    consuming PCIGATE_AUDIT into the ledger (started pid {pid}, log {logfile})"
                )
                return {"pid": pid, "config_digest": config_digest, "code": stamp}
        time.sleep(0.1)
    procs.terminate(pid, marker)
    tail = "".join(logfile.read_text(errors="replace").splitlines(keepends=True)[-15:])
    raise DevStackError(f"the evidence service did not start; its log says:\n{tail}")


def _alive(kind: str, st: dict[str, Any]) -> bool:
    if not st:
        return False
    if kind == "nats" and st.get("managed"):
        return procs.is_ours(st.get("pid"), st.get("marker", ""))
    if kind == "postgres" and st.get("managed"):
        return _cluster_from(st).running()
    if kind == "nats":
        parsed = urllib.parse.urlsplit(st["url"])
        return can_connect(parsed.hostname or "127.0.0.1", parsed.port or 4222)
    return can_connect(st["host"], int(st["port"]))


def status(layout: Layout) -> dict[str, Any]:
    """Live endpoints; ``running`` is true only when every part answers."""
    state = load_state(layout)
    pg, nt, gw = state.get("postgres", {}), state.get("nats", {}), state.get("gateway", {})
    ev = state.get("evidence", {})
    services = {
        "postgres": {"managed": bool(pg.get("managed")), "alive": _alive("postgres", pg)},
        "nats": {"managed": bool(nt.get("managed")), "alive": _alive("nats", nt), "pid": nt.get("pid")},
        "gateway": {"managed": True, "alive": _gateway_alive(gw), "pid": gw.get("pid")},
        "evidence": {"managed": True, "alive": _evidence_alive(layout, ev), "pid": ev.get("pid")},
    }
    if pg.get("managed") and services["postgres"]["alive"]:
        services["postgres"]["pid"] = _cluster_from(pg).pid()
    running = bool(state) and all(s["alive"] for s in services.values())
    out: dict[str, Any] = {"running": running, "state_dir": str(layout.root), "services": services}
    if not state:
        return out
    secret = layout.secret
    out.update(
        {
            "gateway": {"postgres": gw["listen"]} if gw.get("listen") else {},
            "nats": nt.get("url"),
            "ledger_dsn": _read(secret("ledger_dsn")),
            "target_dsn": _dsn(
                "pcigate_rw",
                _read(secret("pcigate_rw")) or "",
                pg.get("host", ""),
                pg.get("port", 0),
                PAYMENTS_DB,
            )
            if pg
            else None,
            "config": str(layout.config_file),
            "jwks": str(layout.jwks_file),
            "issuer": DEV_ISSUER,
            "tls_ca": str(layout.tls_dir / "ca.pem"),
        }
    )
    return out


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def down(layout: Layout, purge: bool = False) -> list[str]:
    """Stop what ``up`` started — and nothing else; ``purge`` also deletes the state directory."""
    log: list[str] = []
    if not layout.state_file.exists():
        if purge and layout.root.exists():
            shutil.rmtree(layout.root)
        return ["nothing to stop"]
    with _locked(layout):
        state = load_state(layout)
        nt, pg, gw = state.get("nats", {}), state.get("postgres", {}), state.get("gateway", {})
        if gw:
            # First, so its last events reach NATS before NATS stops.
            stopped = procs.terminate(gw.get("pid", 0), gw.get("marker", ""), timeout=45.0)
            verb = "stopped" if stopped else "could not be stopped"
            log.append(f"gateway     {verb} (pid {gw.get('pid')})")
        ev = state.get("evidence", {})
        if ev:
            # After the gateway (its last events get into the ledger), before NATS and PostgreSQL: it
            # records ledger.stopped and signs a final checkpoint on the way out.
            stopped = procs.terminate(ev.get("pid", 0), _evidence_marker(layout), timeout=30.0)
            log.append(
                f"evidence    {'stopped' if stopped else 'could not be stopped'} (pid {ev.get('pid')})"
            )
        if nt.get("managed"):
            stopped = procs.terminate(nt.get("pid", 0), nt.get("marker", ""))
            log.append(
                f"NATS        {'stopped' if stopped else 'could not be stopped'} (pid {nt.get('pid')})"
            )
        elif nt:
            log.append(f"NATS        {nt.get('url')} left running (not started by pcigate)")
        runtime_dirs: list[Path] = []
        if pg.get("managed"):
            cluster = _cluster_from(pg)
            cluster.stop()
            log.append("PostgreSQL  stopped")
            if not cluster.datadir.is_relative_to(layout.root):
                runtime_dirs.append(cluster.datadir.parent)
        elif pg:
            log.append(f"PostgreSQL  {pg.get('host')}:{pg.get('port')} left running (not started by pcigate)")
        if purge:
            for d in runtime_dirs:
                shutil.rmtree(d, ignore_errors=True)
    if purge:
        shutil.rmtree(layout.root, ignore_errors=True)
        log.append(f"purged      {layout.root}")
    return log
