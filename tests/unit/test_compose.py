"""compose.yaml keeps the production shape DESIGN.md fixes (parsed, no docker needed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def test_services_and_healthchecks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) >= {"nats", "postgres", "gateway", "evidence"}
    for name, svc in services.items():
        assert "healthcheck" in svc, f"{name} has no healthcheck"
    for name in ("gateway", "evidence"):
        deps = services[name]["depends_on"]
        assert deps["nats"]["condition"] == "service_healthy"


def test_state_lives_in_named_volumes(compose: dict[str, Any]) -> None:
    volumes = set(compose["volumes"])
    assert "nats-data" in volumes and "pg-data" in volumes
    assert any(v.startswith("nats-data:") for v in compose["services"]["nats"]["volumes"])


def test_nats_is_jetstream_on_disk_with_fsync_always(compose: dict[str, Any]) -> None:
    mount = next(v for v in compose["services"]["nats"]["volumes"] if v.endswith("nats-server.conf:ro"))
    conf = (ROOT / mount.split(":", 1)[0]).read_text()
    assert "jetstream" in conf
    assert "sync_interval: always" in conf
    assert "store_dir: /data" in conf


def test_no_inline_secrets(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        for key, value in (svc.get("environment") or {}).items():
            if any(word in key for word in ("PASSWORD", "SECRET", "KEY", "DSN")):
                assert key.endswith("_FILE"), f"{name}.{key} must point to a secret file, not hold the secret"
                assert str(value).startswith("/run/secrets/")
    for secret in compose["secrets"].values():
        assert set(secret) == {"file"}


@pytest.mark.skipif(not shutil.which("docker-compose"), reason="docker-compose is not installed")
def test_docker_compose_accepts_it() -> None:
    result = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "compose.yaml"), "config", "-q"],
        check=False,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
