"""The JWKS URL source against a real HTTP server on 127.0.0.1: caching, rotation, the unknown-kid rate limit,
an IdP that goes down, and responses too large to accept."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from gateway.identity import AuthFailure, TokenVerifier
from gateway.jwks import MAX_JWKS_BYTES, UrlJwks
from pcigate.config.models import Identity

pytestmark = pytest.mark.integration

ISS = "https://idp.example.com"
AUD = "pcigate"
REFRESH = 600.0


@dataclass
class Served:
    """What the test server answers; the handler reads it on every request."""

    body: bytes = b""
    status: int = 200
    content_length: bool = True
    redirect: str | None = None
    delay: float = 0.0
    drip: float = 0.0  # seconds between body bytes
    hits: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class Handler(BaseHTTPRequestHandler):
    served: Served

    def do_GET(self) -> None:
        served = self.server.served  # type: ignore[attr-defined]
        with served.lock:
            served.hits += 1
        if served.delay:
            time.sleep(served.delay)
        if served.redirect is not None and self.path == "/jwks":
            self.send_response(302)
            self.send_header("Location", served.redirect)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(served.status)
        self.send_header("Content-Type", "application/json")
        if served.content_length:
            self.send_header("Content-Length", str(len(served.body)))
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if not served.drip:
            self.wfile.write(served.body)
            return
        for i in range(len(served.body)):
            self.wfile.write(served.body[i : i + 1])
            self.wfile.flush()
            time.sleep(served.drip)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that stop reading an oversized body break the pipe: expected here


class Server:
    def __init__(self) -> None:
        self.served = Served()
        self.httpd = QuietServer(("127.0.0.1", 0), Handler)
        self.httpd.served = self.served  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/jwks"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        if not self.thread.is_alive():
            return
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def serve(self, *keys: tuple[ec.EllipticCurvePrivateKey, str]) -> None:
        self.served.body = json.dumps({"keys": [jwk(key, kid) for key, kid in keys]}).encode()


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    yield srv
    srv.stop()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def jwk(key: ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    return {**ECAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid, "alg": "ES256", "use": "sig"}


def token(key: ec.EllipticCurvePrivateKey, kid: str, sub: str = "alice") -> str:
    now = int(time.time())
    claims = {"iss": ISS, "aud": AUD, "sub": sub, "iat": now, "exp": now + 600}
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid})


KEY1 = ec.generate_private_key(ec.SECP256R1())
KEY2 = ec.generate_private_key(ec.SECP256R1())


def setup(server: Server, clock: Clock, **kwargs: Any) -> tuple[UrlJwks, TokenVerifier]:
    cfg = Identity(issuer=ISS, audience=AUD, jwks=server.url, algorithms=("ES256",))
    source = UrlJwks(server.url, cfg.algorithms, refresh=REFRESH, now=clock, **kwargs)
    return source, TokenVerifier(cfg, source)


async def reason_of(verifier: TokenVerifier, tok: str) -> str:
    with pytest.raises(AuthFailure) as info:
        await verifier.verify(tok)
    assert tok not in info.value.client_message
    return info.value.reason


async def test_one_fetch_serves_many_verifications(server: Server) -> None:
    server.serve((KEY1, "k1"))
    clock = Clock()
    source, verifier = setup(server, clock)
    tokens = [token(KEY1, "k1", sub=f"user{i}") for i in range(50)]
    # Cold start under concurrency: every lookup waits for the same single fetch.
    idents = await asyncio.gather(*(verifier.verify(t) for t in tokens))
    assert [i.sub for i in idents] == [f"user{i}" for i in range(50)]
    for t in tokens:
        await verifier.verify(t)
    assert server.served.hits == 1
    assert source.fetches == 1

    clock.now += REFRESH - 1
    await verifier.verify(tokens[0])
    assert server.served.hits == 1

    # Past the refresh interval: served from cache at once, refreshed behind it.
    clock.now += 1
    await verifier.verify(tokens[0])
    await source.drain()
    assert server.served.hits == 2
    await verifier.verify(tokens[0])
    assert server.served.hits == 2


async def test_stale_keys_serve_while_refreshing(server: Server) -> None:
    server.serve((KEY1, "k1"))
    clock = Clock()
    source, verifier = setup(server, clock)
    await verifier.verify(token(KEY1, "k1"))
    assert not source.refreshing
    server.served.delay = 0.3
    clock.now += REFRESH
    await verifier.verify(token(KEY1, "k1"))  # a login never waits for a routine refresh
    assert source.refreshing
    await source.drain()
    assert not source.refreshing
    assert server.served.hits == 2


async def test_rotation_refreshes_early_on_an_unknown_kid(server: Server) -> None:
    server.serve((KEY1, "k1"))
    clock = Clock()
    _source, verifier = setup(server, clock)
    await verifier.verify(token(KEY1, "k1"))
    clock.now += 31
    server.serve((KEY2, "k2"))  # the IdP rotated
    assert (await verifier.verify(token(KEY2, "k2"))).sub == "alice"
    assert server.served.hits == 2
    assert await reason_of(verifier, token(KEY1, "k1")) == "key_unknown"  # the old key is gone
    assert server.served.hits == 2  # and asking again so soon does not refetch


async def test_unknown_kids_refresh_at_most_once_per_30s(server: Server) -> None:
    server.serve((KEY1, "k1"))
    clock = Clock()
    _source, verifier = setup(server, clock)
    await verifier.verify(token(KEY1, "k1"))
    assert server.served.hits == 1
    clock.now += 30  # the first fetch was 30 s ago: one early refresh is allowed
    flood = [token(KEY1, f"random-{i}") for i in range(40)]
    reasons = await asyncio.gather(*(reason_of(verifier, t) for t in flood))
    assert set(reasons) == {"key_unknown"}
    assert server.served.hits == 2  # forty unknown kids, one shared fetch
    for step in (1, 10, 18.9):
        clock.now += step
        assert await reason_of(verifier, token(KEY1, "random-x")) == "key_unknown"
    assert server.served.hits == 2
    clock.now += 0.1  # 30 s after the last fetch
    assert await reason_of(verifier, token(KEY1, "random-y")) == "key_unknown"
    assert server.served.hits == 3
    await verifier.verify(token(KEY1, "k1"))  # known kids never wait for the network
    assert server.served.hits == 3


async def test_server_down_keeps_cached_keys_for_24h(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    server.serve((KEY1, "k1"))
    clock = Clock()
    source, verifier = setup(server, clock)
    good = token(KEY1, "k1")
    await verifier.verify(good)
    server.stop()

    with caplog.at_level(logging.WARNING, logger="gateway.jwks"):
        clock.now += REFRESH
        await verifier.verify(good)  # stale, refresh fails behind it, the cached key still verifies
        await source.drain()
        assert "refresh" in caplog.text and "failed" in caplog.text
        attempts = source.fetches
        clock.now += 1
        await verifier.verify(good)
        assert source.fetches == attempts  # failures back off instead of retrying on every login
        clock.now += 5
        await verifier.verify(good)
        await source.drain()
        assert source.fetches == attempts + 1

        clock.now = 1000.0 + 24 * 3600 - 1
        await verifier.verify(good)
        await source.drain()
        clock.now = 1000.0 + 24 * 3600
        assert await reason_of(verifier, good) == "jwks_unavailable"


async def test_cold_start_with_server_down(server: Server) -> None:
    server.stop()
    clock = Clock()
    source, verifier = setup(server, clock)
    assert await reason_of(verifier, token(KEY1, "k1")) == "jwks_unavailable"
    assert source.fetches == 1
    assert await reason_of(verifier, token(KEY1, "k1")) == "jwks_unavailable"
    assert source.fetches == 1  # backing off
    clock.now += 5
    assert await reason_of(verifier, token(KEY1, "k1")) == "jwks_unavailable"
    assert source.fetches == 2


@pytest.mark.parametrize("content_length", [True, False])
async def test_oversized_response_refused(server: Server, content_length: bool) -> None:
    keys = [jwk(KEY1, "k1")]
    doc = json.dumps({"keys": keys, "padding": "x" * MAX_JWKS_BYTES}).encode()
    server.served.body, server.served.content_length = doc, content_length
    clock = Clock()
    _source, verifier = setup(server, clock)
    assert await reason_of(verifier, token(KEY1, "k1")) == "jwks_unavailable"

    # Just under the limit is fine.
    server.served.body = json.dumps({"keys": keys, "padding": "x" * (MAX_JWKS_BYTES - 300)}).encode()
    assert len(server.served.body) <= MAX_JWKS_BYTES
    clock.now += 5
    await verifier.verify(token(KEY1, "k1"))


async def test_bad_responses_keep_the_cached_keys(server: Server) -> None:
    server.serve((KEY1, "k1"))
    clock = Clock()
    source, verifier = setup(server, clock)
    await verifier.verify(token(KEY1, "k1"))
    for status, body in ((500, b"oops"), (200, b"<html>"), (200, b'{"keys": []}'), (404, b"")):
        server.served.status, server.served.body = status, body
        clock.now += REFRESH
        await verifier.verify(token(KEY1, "k1"))
        await source.drain()
    assert source.fetches == 5
    assert (await verifier.verify(token(KEY1, "k1"))).sub == "alice"


async def test_cold_start_bad_response(server: Server) -> None:
    server.served.status, server.served.body = 503, b"maintenance"
    _, verifier = setup(server, Clock())
    assert await reason_of(verifier, token(KEY1, "k1")) == "jwks_unavailable"


async def test_redirects_never_downgrade_to_cleartext(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    server.served.redirect = "http://idp.example.com/jwks?token=secret"  # refused before any connection
    _, verifier = setup(server, clock)
    with caplog.at_level(logging.WARNING, logger="gateway.jwks"):
        assert await reason_of(verifier, token(KEY1, "k1")) == "jwks_unavailable"
    assert "refusing redirect to http://idp.example.com/jwks" in caplog.text
    assert "secret" not in caplog.text
    assert server.served.hits == 1

    server.serve((KEY1, "k1"))
    server.served.redirect = server.url.replace("/jwks", "/moved")  # loopback to loopback is fine
    _, verifier = setup(server, clock)
    await verifier.verify(token(KEY1, "k1"))


async def test_cancelled_lookup_does_not_cancel_the_shared_fetch(server: Server) -> None:
    server.serve((KEY1, "k1"))
    server.served.delay = 0.3
    _, verifier = setup(server, Clock())
    first = asyncio.ensure_future(verifier.verify(token(KEY1, "k1", "first")))
    second = asyncio.ensure_future(verifier.verify(token(KEY1, "k1", "second")))
    await asyncio.sleep(0.1)
    first.cancel()
    assert (await second).sub == "second"
    assert first.cancelled()
    assert server.served.hits == 1


@pytest.mark.parametrize(("delay", "drip"), [(3.0, 0.0), (0.0, 0.05)])
async def test_slow_server_times_out(server: Server, delay: float, drip: float) -> None:
    """A server that never answers, or drips its answer (each read within the socket timeout)."""
    server.serve((KEY1, "k1"))
    server.served.delay, server.served.drip = delay, drip
    assert len(server.served.body) * drip > 5 or delay > 2
    _, verifier = setup(server, Clock(), timeout=0.5)
    started = time.monotonic()
    assert await reason_of(verifier, token(KEY1, "k1")) == "jwks_unavailable"
    assert time.monotonic() - started < 2.5
