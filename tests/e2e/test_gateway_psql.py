"""psql through the gateway: `-c`, a scripted session, and every refused-token case with its auth.failed
event (PCI DSS 10.2.1.4)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import time
import uuid
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pcigate.devstack import binaries
from pcigate.devstack.issuer import DEV_AUDIENCE, DEV_ISSUER, TokenRequest, mint
from tests.gateway_support import GatewayEndpoint, events_for

pytestmark = pytest.mark.e2e


def psql_bin() -> str:
    return shutil.which("psql") or str(binaries.postgres_bindir() / "psql")


def psql(
    gw: GatewayEndpoint, *args: str, token: str | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PGCONNECT_TIMEOUT": "10"}
    return subprocess.run(
        [psql_bin(), gw.dsn(token), "-X", "-v", "ON_ERROR_STOP=1", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(gw: GatewayEndpoint, sub: str, **over: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": DEV_ISSUER,
        "aud": DEV_AUDIENCE,
        "sub": sub,
        "groups": ["engineers"],
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": str(uuid.uuid4()),
    }
    claims.update(over)
    return claims


def test_psql_c_reads_through_the_gateway(gateway: GatewayEndpoint) -> None:
    result = psql(gateway, "-Atc", "SELECT count(*) FROM cards")
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) >= 10_000


def test_psql_scripted_session(gateway: GatewayEndpoint) -> None:
    script = "\n".join(
        [
            "SELECT current_user;",
            "SELECT 1 AS a; SELECT 2 AS b;",
            "BEGIN;",
            "SELECT count(*) FROM customers;",
            "ROLLBACK;",
            "\\copy (SELECT card_id FROM cards ORDER BY card_id LIMIT 3) TO STDOUT",
            "SHOW application_name;",
        ]
    )
    result = psql(gateway, "-At", stdin=script)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split()
    assert lines[0] == "pcigate_ro"  # the vaulted role for group engineers, never the client's name
    assert lines[1:3] == ["1", "2"]
    assert lines[-1] == "psql"


def test_psql_sees_errors_with_sqlstate(gateway: GatewayEndpoint) -> None:
    result = psql(gateway, "-c", "\\set VERBOSITY verbose", "-c", "SELECT * FROM no_such_table")
    assert result.returncode != 0
    assert "42P01" in result.stderr


def _refused(gateway: GatewayEndpoint, token: str, sub: str, reason: str) -> None:
    result = psql(gateway, "-Atc", "SELECT 1", token=token)
    assert result.returncode != 0
    assert "pcigate" in result.stderr
    assert token not in result.stderr
    events = events_for(
        gateway.nats_url,
        lambda e: e["type"] == "auth.failed" and e["actor"]["sub"] == sub,
        1,
    )
    assert events, f"no auth.failed event for {sub}"
    assert events[0]["data"]["reason"] == reason
    assert events[0]["outcome"]["result"] == "failure"
    assert events[0]["policy"]["version"].startswith("sha256:") and events[0]["policy"]["rule"] is None
    assert token not in json.dumps(events[0])


def test_forged_token_is_refused(gateway: GatewayEndpoint, tmp_path: Any) -> None:
    sub = f"forger-{uuid.uuid4().hex[:8]}@example.com"
    other = ec.generate_private_key(ec.SECP256R1())
    real_kid = jwt.get_unverified_header(gateway.token())["kid"]
    token = jwt.encode(_claims(gateway, sub), other, algorithm="ES256", headers={"kid": real_kid})
    _refused(gateway, token, sub, "signature_invalid")


def test_expired_token_is_refused(gateway: GatewayEndpoint) -> None:
    sub = f"late-{uuid.uuid4().hex[:8]}@example.com"
    token = mint(
        gateway.layout.signing_key,
        TokenRequest(sub=sub, groups=("engineers",), ttl_seconds=60),
        now=time.time() - 3600,
    )
    _refused(gateway, token, sub, "credential_expired")


def test_wrong_audience_is_refused(gateway: GatewayEndpoint) -> None:
    sub = f"aud-{uuid.uuid4().hex[:8]}@example.com"
    token = mint(
        gateway.layout.signing_key, TokenRequest(sub=sub, groups=("engineers",), audience="someone-else")
    )
    _refused(gateway, token, sub, "audience_mismatch")


def test_alg_none_is_refused(gateway: GatewayEndpoint) -> None:
    sub = f"none-{uuid.uuid4().hex[:8]}@example.com"
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(_claims(gateway, sub)).encode())
    _refused(gateway, f"{header}.{payload}.", sub, "signature_invalid")


def test_hs256_with_the_public_key_is_refused(gateway: GatewayEndpoint) -> None:
    sub = f"hs-{uuid.uuid4().hex[:8]}@example.com"
    jwks = json.loads(gateway.layout.jwks_file.read_text())
    public = jwt.PyJWK(jwks["keys"][0]).key
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": jwks["keys"][0]["kid"]}).encode())
    payload = _b64(json.dumps(_claims(gateway, sub)).encode())
    signing_input = f"{header}.{payload}".encode()
    signature = _b64(hmac.new(pem, signing_input, hashlib.sha256).digest())
    _refused(gateway, f"{header}.{payload}.{signature}", sub, "signature_invalid")


def test_oversized_token_is_refused(gateway: GatewayEndpoint) -> None:
    token = mint(
        gateway.layout.signing_key,
        TokenRequest(sub="big@example.com", groups=tuple(f"group-{i:05d}" for i in range(600))),
    )
    assert len(token) > 8192
    result = psql(gateway, "-Atc", "SELECT 1", token=token)
    assert result.returncode != 0
    assert token not in result.stderr
    events = events_for(
        gateway.nats_url,
        lambda e: e["type"] == "auth.failed" and e["data"]["reason"] == "credential_malformed",
        1,
    )
    assert events


def test_group_without_a_role_is_refused(gateway: GatewayEndpoint) -> None:
    sub = f"nogroup-{uuid.uuid4().hex[:8]}@example.com"
    token = gateway.token(sub=sub, groups=("marketing",))
    _refused(gateway, token, sub, "no_group_grants_connection")


def test_garbage_password_is_refused(gateway: GatewayEndpoint) -> None:
    result = psql(gateway, "-Atc", "SELECT 1", token="hunter2")
    assert result.returncode != 0
    assert "hunter2" not in result.stderr
