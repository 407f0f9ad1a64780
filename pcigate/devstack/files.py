"""Small file helpers: secrets are written 0600 atomically so no reader ever sees a partial file."""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any


def write_private(path: Path, data: bytes | str, mode: int = 0o600) -> None:
    """Atomically replace ``path`` with ``data``, created with ``mode`` from the start (never wider)."""
    raw = data.encode() if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any, mode: int = 0o600) -> None:
    write_private(path, json.dumps(obj, indent=2, sort_keys=True) + "\n", mode)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def ensure_secret(path: Path, nbytes: int = 24) -> str:
    """Return the secret stored at ``path``, generating a URL-safe random one the first time."""
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_urlsafe(nbytes)
    write_private(path, value + "\n")
    return value
