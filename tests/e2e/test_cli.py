"""The installed `pcigate` executable and real clients (psql) against the running test stack."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jwt
import pytest

from pcigate.devstack import binaries
from pcigate.devstack.layout import Layout

pytestmark = pytest.mark.e2e

PCIGATE = str(Path(sys.executable).parent / "pcigate")


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([PCIGATE, *args], capture_output=True, text=True, timeout=120, check=False)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def psql() -> str:
    found = shutil.which("psql")
    return found or str(binaries.postgres_bindir() / "psql")


def test_help_lists_only_working_commands() -> None:
    out = run("--help").stdout
    section = out.split("positional arguments:")[1].split("options:")[0]
    listed = set(re.findall(r"^    (\w[\w-]*)\s", section, flags=re.MULTILINE))
    assert listed == {
        "dev",
        "token",
        "gateway",
        "evidence",
        "verify",
        "ledger",
        "nats",
        "config",
        "approvals",
        "approve",
        "report",
        "verify-pack",
        "replay",
    }


def test_status_json_shows_live_endpoints(dev_stack: dict[str, Any], test_layout: Layout) -> None:
    status = json.loads(run("dev", "status", "--json", "--home", str(test_layout.root)).stdout)
    assert status["running"] is True
    for key in ("gateway", "nats", "ledger_dsn", "target_dsn", "config", "jwks"):
        assert key in status


def test_status_exits_1_when_nothing_runs(tmp_path: Path) -> None:
    result = run("dev", "status", "--json", "--home", str(tmp_path / "none"), check=False)
    assert result.returncode == 1
    assert json.loads(result.stdout)["running"] is False


def test_psql_reads_the_demo_database(dev_stack: dict[str, Any]) -> None:
    result = subprocess.run(
        [
            psql(),
            dev_stack["target_dsn"],
            "-XAtc",
            "SELECT count(*) FROM cards; SELECT count(*) FROM transactions",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    cards, transactions = (int(x) for x in result.stdout.split())
    assert cards >= 10_000 and transactions >= 100_000


def test_token_verifies_against_jwks(dev_stack: dict[str, Any], test_layout: Layout) -> None:
    home = str(test_layout.root)
    token = run(
        "token", "--home", home, "--sub", "ci@example.com", "--groups", "ci,deployers", "--kind", "service"
    )
    raw = token.stdout.strip()
    jwks = jwt.PyJWKSet.from_dict(json.loads(Path(dev_stack["jwks"]).read_text()))
    claims = jwt.decode(
        raw, jwks.keys[0].key, algorithms=["ES256"], audience="pcigate", issuer=dev_stack["issuer"]
    )
    assert claims["groups"] == ["ci", "deployers"] and claims["kind"] == "service"


def test_token_usage_errors_exit_2(dev_stack: dict[str, Any], test_layout: Layout) -> None:
    home = str(test_layout.root)
    result = run("token", "--home", home, "--sub", "bot", "--kind", "agent", check=False)
    assert result.returncode == 2 and "on-behalf-of" in result.stderr
    result = run("token", "--home", home, "--sub", "a", "--ttl", "3d", check=False)
    assert result.returncode == 2 and "ttl" in result.stderr


def test_nats_init_is_idempotent(dev_stack: dict[str, Any]) -> None:
    out = run("nats", "init", "--config", dev_stack["config"]).stdout
    assert out.split() == [w for name in ("PCIGATE_AUDIT", "PCIGATE_CHECKPOINTS", "PCIGATE_RECORDINGS",
                                          "KV_PCIGATE_APPROVALS") for w in ("verified", name)]  # fmt: skip


def test_nats_init_unreachable_server_fails_cleanly(dev_stack: dict[str, Any]) -> None:
    result = run("nats", "init", "--config", dev_stack["config"], "--url", "nats://127.0.0.1:1", check=False)
    assert result.returncode == 1
    assert "cannot provision NATS" in result.stderr and "Traceback" not in result.stderr


def test_config_check_names_key_and_line(tmp_path: Path, dev_stack: dict[str, Any]) -> None:
    good = Path(dev_stack["config"]).read_text()
    broken = tmp_path / "pcigate.yaml"
    broken.write_text(good.replace("replicas: 1", "replicas: seven"))
    line = next(i for i, text in enumerate(broken.read_text().splitlines(), 1) if "replicas: seven" in text)
    result = run("config", "check", str(broken), check=False)
    assert result.returncode == 2
    assert f"pcigate.yaml:{line}: nats.replicas" in result.stderr
    assert run("config", "check", dev_stack["config"]).stdout.startswith("ok:")
