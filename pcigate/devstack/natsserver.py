"""The dev stack's own NATS server with JetStream, configured like production (file store, fsync always)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from pcigate.devstack import binaries, ports, procs


class NatsServerError(RuntimeError):
    """The server did not come up healthy; the message carries the log tail."""


@dataclass(frozen=True)
class NatsServer:
    binary: Path
    home: Path
    port: int
    monitor_port: int

    @property
    def config_file(self) -> Path:
        return self.home / "nats-server.conf"

    @property
    def store_dir(self) -> Path:
        return self.home / "jetstream"

    @property
    def logfile(self) -> Path:
        return self.home / "nats-server.log"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def marker(self) -> str:
        return str(self.config_file)

    def write_config(self) -> None:
        # sync_interval "always" fsyncs every write: the audit stream must survive a power cut.
        sync = "  sync_interval: always\n" if binaries.nats_server_version(self.binary) >= (2, 10, 0) else ""
        self.home.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(
            "# Written by `pcigate dev up`; rewritten on every start.\n"
            f'server_name: "pcigate-dev"\n'
            f'listen: "127.0.0.1:{self.port}"\n'
            f'http: "127.0.0.1:{self.monitor_port}"\n'
            "max_payload: 8MB\n"
            "jetstream {\n"
            f'  store_dir: "{self.store_dir}"\n'
            f"{sync}"
            "}\n"
        )

    def start(self) -> int:
        self.write_config()
        pid = procs.spawn([str(self.binary), "-c", str(self.config_file)], self.logfile, cwd=self.home)
        if not (ports.wait_for_port("127.0.0.1", self.port, 20) and self.healthy(timeout=20)):
            procs.terminate(pid, self.marker)
            raise NatsServerError(f"nats-server did not become healthy:\n{self.log_tail()}")
        return pid

    def healthy(self, timeout: float = 0.0) -> bool:
        """JetStream-aware health from the monitoring port (``/healthz?js-enabled-only=true``)."""
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.monitor_port}/healthz?js-enabled-only=true"
        while True:
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:
                    if json.loads(resp.read() or b"{}").get("status") == "ok":
                        return True
            except (urllib.error.URLError, OSError, ValueError):
                pass
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
