"""Where the issuer's public keys come from: a local JWKS file, or the issuer's JWKS URL.

Both sources keep the last good key set when a reload fails: a flaky IdP or a half-written file must not
lock every client out. The URL source also bounds what a client can make it do: tokens with made-up key
ids trigger at most one early refresh per 30 s, and concurrent lookups share one fetch.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.client import HTTPMessage
from pathlib import Path
from typing import IO, Any, Final, Protocol
from urllib.parse import urlsplit, urlunsplit

import jwt

from gateway.identity import AuthFailure, key_fits
from pcigate.config.addresses import is_loopback
from pcigate.config.models import Identity

__all__ = [
    "FileJwks",
    "JwksError",
    "JwksSource",
    "KeySet",
    "StaticJwks",
    "UrlJwks",
    "jwks_source",
    "parse_jwks",
]

log = logging.getLogger(__name__)

MAX_JWKS_BYTES: Final = 1 << 20
FETCH_TIMEOUT: Final = 5.0
UNKNOWN_KID_INTERVAL: Final = 30.0  # at most one early refresh per this many seconds
FAILURE_BACKOFF: Final = 5.0  # after a failed fetch, scheduled refreshes wait this long
MAX_STALE: Final = 24 * 3600.0  # cached keys outlive failed refreshes this long, no longer
FILE_CHECK_INTERVAL: Final = 1.0

# Which algorithms each key type may serve; a key's own "alg", when present, narrows this to one.
_ALGS_FOR: Final[Mapping[tuple[str, str | None], tuple[str, ...]]] = {
    ("RSA", None): ("RS256", "RS384", "RS512", "PS256"),
    ("EC", "P-256"): ("ES256",),
    ("EC", "P-384"): ("ES384",),
    ("OKP", "Ed25519"): ("EdDSA",),
    ("OKP", "Ed448"): ("EdDSA",),
}


class JwksError(ValueError):
    """A JWKS document (or its fetch) that cannot be used; the message never holds key material."""


class JwksSource(Protocol):
    async def key_for(self, kid: str | None, alg: str) -> jwt.PyJWK:
        """The key for ``kid`` (or the only key for ``alg`` when there is no kid).

        Raises ``AuthFailure("key_unknown")`` or ``AuthFailure("jwks_unavailable")``.
        """
        ...


# --- parsing (no I/O) -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeySet:
    """Loaded keys, indexed the ways a token header can ask for them."""

    by_kid_alg: Mapping[tuple[str, str], jwt.PyJWK] = field(default_factory=dict)
    # A kid's first usable key under its own default algorithm: a token naming a known kid with an alg
    # the key cannot serve gets this key, and the verifier refuses it as signature_invalid rather than
    # as key_unknown (which would trigger a refresh).
    by_kid: Mapping[str, jwt.PyJWK] = field(default_factory=dict)
    by_alg: Mapping[str, tuple[jwt.PyJWK, ...]] = field(default_factory=dict)
    size: int = 0

    def lookup(self, kid: str | None, alg: str) -> jwt.PyJWK | None:
        if kid is None:
            candidates = self.by_alg.get(alg, ())
            return candidates[0] if len(candidates) == 1 else None
        return self.by_kid_alg.get((kid, alg)) or self.by_kid.get(kid)


def _usable(jwk: Mapping[str, Any], allowed: frozenset[str]) -> list[jwt.PyJWK]:
    """The PyJWKs one JWK can serve, one per allowed algorithm; [] (logged) for keys we must not use."""
    kid = jwk.get("kid")
    kty, crv = jwk.get("kty"), jwk.get("crv")
    if kid is not None and not isinstance(kid, str):
        log.debug("JWKS: skipping a key with a non-string kid")
        return []
    if "d" in jwk or "p" in jwk or "k" in jwk:
        log.warning("JWKS: skipping key %r: it holds private or symmetric key material", kid)
        return []
    if jwk.get("use") not in (None, "sig"):
        log.debug("JWKS: skipping key %r: use is not sig", kid)
        return []
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        log.debug("JWKS: skipping key %r: key_ops does not allow verify", kid)
        return []
    if not isinstance(kty, str) or not (crv is None or isinstance(crv, str)):
        log.debug("JWKS: skipping key %r: no usable kty/crv", kid)
        return []
    algs = _ALGS_FOR.get((kty, None if kty == "RSA" else crv), ())
    declared = jwk.get("alg")
    if declared is not None:
        algs = (declared,) if declared in algs else ()
    algs = tuple(a for a in algs if a in allowed)
    if not algs:
        log.debug("JWKS: skipping key %r: kty %r / alg %r not allowed", kid, kty, declared)
        return []
    keys: list[jwt.PyJWK] = []
    for alg in algs:
        try:
            key = jwt.PyJWK(dict(jwk), algorithm=alg)
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            log.debug("JWKS: skipping key %r: PyJWT cannot load it (%s)", kid, type(exc).__name__)
            return []
        if not key_fits(alg, key):
            log.debug("JWKS: skipping key %r for %s: wrong key type or too weak", kid, alg)
            continue
        keys.append(key)
    return keys


def parse_jwks(data: bytes | str | Mapping[str, Any], algorithms: Iterable[str]) -> KeySet:
    """A :class:`KeySet` of the usable keys in a JWKS document; raises :class:`JwksError` if none are."""
    if isinstance(data, bytes | str):
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError):
            raise JwksError("not JSON") from None
    else:
        doc = data
    raw = doc.get("keys") if isinstance(doc, Mapping) else None
    if not isinstance(raw, list):
        raise JwksError('not a JWKS: expected an object with a "keys" list')
    allowed = frozenset(algorithms)
    by_kid_alg: dict[tuple[str, str], jwt.PyJWK] = {}
    by_kid: dict[str, jwt.PyJWK] = {}
    by_alg: dict[str, list[jwt.PyJWK]] = {}
    size = 0
    for jwk in raw:
        if not isinstance(jwk, dict):
            continue
        keys = _usable(jwk, allowed)
        if not keys:
            continue
        size += 1
        kid = jwk.get("kid")
        for key in keys:
            by_alg.setdefault(key.algorithm_name, []).append(key)
            if kid is not None:
                if (kid, key.algorithm_name) in by_kid_alg:
                    log.warning("JWKS: duplicate kid %r for %s; using the first key", kid, key.algorithm_name)
                by_kid_alg.setdefault((kid, key.algorithm_name), key)
                by_kid.setdefault(kid, key)
    if not size:
        raise JwksError(f"no usable keys for algorithms {', '.join(sorted(allowed))}")
    return KeySet(by_kid_alg, by_kid, {alg: tuple(keys) for alg, keys in by_alg.items()}, size)


def _lookup(keys: KeySet | None, kid: str | None, alg: str) -> jwt.PyJWK:
    if keys is None:
        raise AuthFailure("jwks_unavailable", detail="no key set loaded")
    key = keys.lookup(kid, alg)
    if key is None:
        what = f"kid {kid[:64]!r}" if kid is not None else f"a single {alg} key (token has no kid)"
        raise AuthFailure("key_unknown", detail=f"JWKS has no {what}")
    return key


class StaticJwks(JwksSource):
    """A fixed key set: for tests, and for callers that manage keys themselves."""

    def __init__(self, keys: KeySet) -> None:
        self.keys = keys

    async def key_for(self, kid: str | None, alg: str) -> jwt.PyJWK:
        return _lookup(self.keys, kid, alg)


# --- a local file -----------------------------------------------------------------------------------------


def _read_bounded(stream: IO[bytes], limit: int) -> bytes:
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise JwksError(f"larger than {limit} bytes")
    return data


class FileJwks(JwksSource):
    """A JWKS file, re-read when it changes (checked at most once per ``check_interval`` seconds)."""

    def __init__(
        self,
        path: Path,
        algorithms: Iterable[str],
        *,
        now: Callable[[], float] = time.monotonic,
        check_interval: float = FILE_CHECK_INTERVAL,
    ) -> None:
        self.path = path
        self._algorithms = tuple(algorithms)
        self._now = now
        self._interval = check_interval
        self._keys: KeySet | None = None
        self._stamp: tuple[int, int, int, int] | None = None
        self._checked_at: float | None = None
        self._last_error: str | None = None

    async def key_for(self, kid: str | None, alg: str) -> jwt.PyJWK:
        self.reload_if_changed()
        return _lookup(self._keys, kid, alg)

    def reload_if_changed(self) -> None:
        """Stat the file (rate limited); re-read and swap the key set if it changed and parses."""
        now = self._now()
        if self._checked_at is not None and now - self._checked_at < self._interval:
            return
        self._checked_at = now
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)
            if stamp == self._stamp:
                return
            with open(self.path, "rb") as stream:
                keys = parse_jwks(_read_bounded(stream, MAX_JWKS_BYTES), self._algorithms)
        except (OSError, JwksError) as exc:
            # The stamp is not recorded: a half-written file is read again at the next check.
            error = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            if error != self._last_error:
                self._last_error = error
                kept = "keeping the last good key set" if self._keys is not None else "no keys loaded"
                log.warning("JWKS file %s cannot be used (%s); %s", self.path, error, kept)
            return
        self._keys, self._stamp, self._last_error = keys, stamp, None
        log.info("JWKS file %s loaded: %d key(s)", self.path, keys.size)


# --- the issuer's URL -------------------------------------------------------------------------------------


def _safe_url(url: str) -> str:
    """The URL without query and fragment, for logs (a query could carry a token)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _allowed_url(url: str) -> bool:
    parts = urlsplit(url)
    host = parts.hostname or ""
    return parts.scheme == "https" or (parts.scheme == "http" and is_loopback(host))


class _SafeRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to https (or loopback http): never downgrade the key fetch to cleartext."""

    def redirect_request(  # noqa: PLR0917 -- urllib's signature
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        if not _allowed_url(newurl):
            raise JwksError(f"refusing redirect to {_safe_url(newurl)}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class UrlJwks(JwksSource):
    """The issuer's JWKS over HTTPS, cached for ``refresh`` seconds and refreshed in the background.

    A lookup waits for the network only when there is no usable key set yet, or for an unknown kid
    (rotation) at most once per ``unknown_kid_interval``. A failed refresh keeps the cached keys for
    ``max_stale`` seconds after their last successful fetch.
    """

    def __init__(
        self,
        url: str,
        algorithms: Iterable[str],
        *,
        refresh: float = 600.0,
        now: Callable[[], float] = time.monotonic,
        timeout: float = FETCH_TIMEOUT,
        max_bytes: int = MAX_JWKS_BYTES,
        unknown_kid_interval: float = UNKNOWN_KID_INTERVAL,
        failure_backoff: float = FAILURE_BACKOFF,
        max_stale: float = MAX_STALE,
    ) -> None:
        if not _allowed_url(url):
            raise ValueError("JWKS URL must be https (http only on loopback)")
        self.url = url
        self._log_url = _safe_url(url)
        self._algorithms = tuple(algorithms)
        self._refresh = refresh
        self._now = now
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._unknown_kid_interval = unknown_kid_interval
        self._failure_backoff = failure_backoff
        self._max_stale = max_stale
        self._keys: KeySet | None = None
        self._fetched_at = 0.0
        self._attempted_at: float | None = None
        self._failed = False
        self._inflight: asyncio.Task[None] | None = None
        self.fetches = 0  # attempts started; for tests and metrics
        handlers: list[urllib.request.BaseHandler] = [
            urllib.request.HTTPSHandler(context=ssl.create_default_context()),
            _SafeRedirects(),
        ]
        if is_loopback(urlsplit(url).hostname or ""):
            handlers.append(urllib.request.ProxyHandler({}))  # a proxy must never see loopback traffic
        self._opener = urllib.request.build_opener(*handlers)

    async def key_for(self, kid: str | None, alg: str) -> jwt.PyJWK:
        now = self._now()
        if self._usable(now) is None:
            if self._inflight is not None or self._may_attempt(now, self._failure_backoff):
                await self._fetch()
        elif now - self._fetched_at >= self._refresh and self._may_attempt(now, self._failure_backoff):
            self._start()  # serve the cached keys; refresh behind them
        keys = self._usable(self._now())
        if keys is None:
            raise AuthFailure("jwks_unavailable", detail=f"no usable key set from {self._log_url}")
        if keys.lookup(kid, alg) is None and (
            self._inflight is not None or self._may_attempt(self._now(), self._unknown_kid_interval)
        ):
            await self._fetch()  # maybe the issuer rotated its keys
            keys = self._usable(self._now()) or keys
        return _lookup(keys, kid, alg)

    @property
    def refreshing(self) -> bool:
        """Whether a fetch is in flight."""
        return self._inflight is not None

    async def drain(self) -> None:
        """Wait for a background refresh, if one is running (tests, shutdown)."""
        if self._inflight is not None:
            await asyncio.shield(self._inflight)

    def _usable(self, now: float) -> KeySet | None:
        if self._keys is None or now - self._fetched_at >= self._max_stale:
            return None
        return self._keys

    def _may_attempt(self, now: float, interval: float) -> bool:
        return self._attempted_at is None or now - self._attempted_at >= interval

    def _start(self) -> asyncio.Task[None]:
        if self._inflight is None:
            self._attempted_at = self._now()
            self.fetches += 1
            self._inflight = asyncio.get_running_loop().create_task(self._run_fetch())
        return self._inflight

    async def _fetch(self) -> None:
        """Wait for the shared fetch, at most a little over its timeout.

        Shielded: a client that disconnects mid-lookup must not cancel the fetch other lookups share. The
        wait is bounded because name resolution is not covered by the socket timeout: a login must not hang
        on a stuck resolver (the fetch itself carries on, and its result still lands in the cache).
        """
        try:
            await asyncio.wait_for(asyncio.shield(self._start()), self._timeout + 1.0)
        except TimeoutError:
            log.warning("JWKS fetch from %s is taking longer than %gs", self._log_url, self._timeout)

    async def _run_fetch(self) -> None:
        try:
            keys = await asyncio.to_thread(self._fetch_sync)
        except Exception as exc:  # whatever went wrong, the cached keys stay in service
            self._failed = True
            age = (
                ""
                if self._keys is None
                else f"; serving keys fetched {self._now() - self._fetched_at:.0f}s ago"
            )
            log.warning("JWKS refresh from %s failed: %s%s", self._log_url, _describe(exc), age)
        else:
            if self._failed:
                log.info("JWKS refresh from %s recovered", self._log_url)
            self._keys, self._fetched_at, self._failed = keys, self._now(), False
            log.debug("JWKS from %s: %d key(s)", self._log_url, keys.size)
        finally:
            self._inflight = None

    def _fetch_sync(self) -> KeySet:
        request = urllib.request.Request(  # noqa: S310 -- scheme checked in __init__ and on redirects
            self.url, headers={"Accept": "application/json", "User-Agent": "pcigate-jwks"}
        )
        deadline = time.monotonic() + self._timeout
        with self._opener.open(request, timeout=self._timeout) as response:
            if response.status != 200:
                raise JwksError(f"HTTP {response.status}")
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > self._max_bytes:
                raise JwksError(f"response larger than {self._max_bytes} bytes")
            chunks: list[bytes] = []
            total = 0
            while chunk := response.read1(65536):
                total += len(chunk)
                if total > self._max_bytes:
                    raise JwksError(f"response larger than {self._max_bytes} bytes")
                if time.monotonic() > deadline:  # a server that drips bytes must not hold the fetch
                    raise JwksError(f"response took longer than {self._timeout:g}s")
                chunks.append(chunk)
        return parse_jwks(b"".join(chunks), self._algorithms)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, JwksError):
        return str(exc)
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    reason = getattr(exc, "reason", None)
    return f"{type(exc).__name__}: {reason}" if reason is not None else type(exc).__name__


def jwks_source(config: Identity) -> JwksSource:
    """The key source ``identity.jwks`` names: ``file:/path`` or an https URL."""
    if config.jwks.startswith("file:"):
        return FileJwks(Path(config.jwks.removeprefix("file:")), config.algorithms)
    return UrlJwks(config.jwks, config.algorithms, refresh=config.jwks_refresh.total_seconds())
