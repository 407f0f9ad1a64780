"""Where the dev stack keeps its files: one place, so ``up``, ``down`` and ``status`` agree."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    """Paths under the state directory (``.pcigate/`` by default, ``PCIGATE_HOME`` to move it)."""

    root: Path

    @classmethod
    def default(cls, override: str | os.PathLike[str] | None = None) -> Layout:
        base = override if override is not None else os.environ.get("PCIGATE_HOME", ".pcigate")
        return cls(Path(base).resolve())

    @property
    def dev(self) -> Path:
        return self.root / "dev"

    @property
    def state_file(self) -> Path:
        return self.dev / "state.json"

    @property
    def lock_file(self) -> Path:
        return self.dev / ".lock"

    @property
    def config_file(self) -> Path:
        return self.dev / "pcigate.yaml"

    @property
    def issuer_dir(self) -> Path:
        return self.dev / "issuer"

    @property
    def signing_key(self) -> Path:
        return self.issuer_dir / "signing-key.pem"

    @property
    def jwks_file(self) -> Path:
        return self.issuer_dir / "jwks.json"

    @property
    def tls_dir(self) -> Path:
        return self.dev / "tls"

    @property
    def secrets_dir(self) -> Path:
        return self.dev / "secrets"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def nats_dir(self) -> Path:
        return self.root / "nats"

    @property
    def postgres_dir(self) -> Path:
        return self.root / "postgres"

    @property
    def spool_dir(self) -> Path:
        return self.root / "spool"

    def secret(self, name: str) -> Path:
        return self.secrets_dir / name

    def ensure(self) -> None:
        """Create the tree; ``dev/`` (secrets) and the spool (audit events) are private to the owner."""
        for d in (self.root, self.logs, self.nats_dir, self.postgres_dir):
            d.mkdir(parents=True, exist_ok=True)
        for d in (self.dev, self.issuer_dir, self.tls_dir, self.secrets_dir, self.spool_dir):
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(0o700)
