"""Opening the upstream PostgreSQL connection with a vaulted credential.

The client never sees this credential nor any of the authentication exchange: it gets the gateway's own
AuthenticationOk, the upstream's ParameterStatus messages and a BackendKeyData of the gateway's making.
Failures are :class:`UpstreamError` with a message meant for the operator's log and a short one for the
client, which must never contain the credential or hint at its value.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gateway.endpoint import Endpoint, PeerClosedError
from gateway.pgwire import messages as m
from gateway.pgwire.scram import AuthError, PasswordAuthenticator, ScramKeyCache, tls_server_end_point
from pcigate.config import Upstream, UpstreamTls

__all__ = [
    "UpstreamConnection",
    "UpstreamError",
    "cancel_upstream",
    "connect_upstream",
    "upstream_tls_context",
]

log = logging.getLogger(__name__)

# PBKDF2 (4096+ iterations) would cost ~0.7 ms of event-loop time per login; the salt rarely changes.
_SCRAM_KEYS = ScramKeyCache()

_MAX_HANDSHAKE_MESSAGE = 1 << 20


class UpstreamError(Exception):
    """The gateway could not open its upstream connection; ``client_message`` is safe to show."""

    def __init__(self, log_message: str, client_message: str, sqlstate: str = "08001") -> None:
        super().__init__(log_message)
        self.client_message = client_message
        self.sqlstate = sqlstate


@dataclass(slots=True)
class UpstreamConnection:
    endpoint: Endpoint
    backend_pid: int
    backend_key: bytes
    parameters: dict[str, str] = field(default_factory=dict)
    notices: list[bytes] = field(default_factory=list)  # NoticeResponse messages to relay as they came
    tls_version: str | None = None


def upstream_tls_context(tls: UpstreamTls) -> ssl.SSLContext | None:
    """libpq's sslmode semantics: ``require`` encrypts without verifying, ``verify-ca`` checks the chain,
    ``verify-full`` also the host name."""
    if tls.mode == "disable":
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.mode in ("prefer", "require"):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        assert tls.ca is not None  # config validation
        ctx.load_verify_locations(cafile=str(Path(tls.ca)))
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.check_hostname = tls.mode == "verify-full"
    return ctx


async def _open(cfg: Upstream, within: float) -> Endpoint:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(within):
            _, endpoint = await loop.create_connection(Endpoint, cfg.host, cfg.port)
    except (OSError, TimeoutError) as exc:
        where = f"{cfg.host}:{cfg.port}"
        raise UpstreamError(
            f"cannot connect to upstream {where}: {exc or 'timed out'}",
            f"pcigate: cannot reach the database ({where}); "
            "try again shortly or contact the gateway operator",
        ) from None
    return endpoint


async def _negotiate_tls(endpoint: Endpoint, cfg: Upstream, ctx: ssl.SSLContext | None) -> str | None:
    if ctx is None:
        return None
    endpoint.write(m.ssl_request())
    answer = await endpoint.read_exact(1)
    if answer == b"S":
        hostname = cfg.host if cfg.tls.mode == "verify-full" else None
        try:
            await endpoint.start_tls(ctx, server_side=False, hostname=hostname)
        except ssl.SSLError as exc:
            raise UpstreamError(
                f"TLS to upstream {cfg.host}:{cfg.port} failed ({cfg.tls.mode}): {exc}",
                "pcigate: the gateway could not establish TLS to the database; contact the gateway operator",
            ) from None
        sslobj = endpoint.ssl_object()
        return sslobj.version() if sslobj is not None else None
    if answer == b"N":
        if endpoint.buffered():
            raise m.ProtocolError("upstream sent data after refusing TLS")  # CVE-2021-23222
        if cfg.tls.mode == "prefer":
            return None
        raise UpstreamError(
            f"upstream {cfg.host}:{cfg.port} refused TLS but tls.mode is {cfg.tls.mode}",
            "pcigate: the database does not offer TLS as configured; contact the gateway operator",
        )
    raise m.ProtocolError(f"unexpected answer {answer!r} to SSLRequest")


async def _authenticate(endpoint: Endpoint, user: str, password: str) -> None:
    """Answer the server's Authentication requests with the codec's authenticator (one method per
    connection, SCRAM server proof required) until AuthenticationOk."""
    binding = None
    sslobj = endpoint.ssl_object()
    if sslobj is not None:
        der = sslobj.getpeercert(binary_form=True)
        binding = tls_server_end_point(der) if der else None
    auth = PasswordAuthenticator(user, password, channel_binding=binding, key_cache=_SCRAM_KEYS)
    while not auth.done:
        typ, body = await endpoint.read_message(_MAX_HANDSHAKE_MESSAGE)
        if typ == m.ERROR_RESPONSE:
            fields = m.parse_error_fields(body)
            raise UpstreamError(
                f"upstream refused login as {user}: {fields.get('C', '?')} {fields.get('M', '')}",
                "pcigate: the database refused the gateway's vaulted credential; "
                "contact the gateway operator",
                "08004",
            )
        if typ != m.AUTHENTICATION:
            raise m.ProtocolError(f"unexpected message {chr(typ)!r} during upstream authentication")
        reply = auth.respond(*m.parse_authentication(body))
        if reply is not None:
            endpoint.write(reply)


async def connect_upstream(
    cfg: Upstream,
    user: str,
    password: str,
    params: Mapping[str, str],
    *,
    tls_context: ssl.SSLContext | None,
    within: float = 10.0,
) -> UpstreamConnection:
    """Connect, negotiate TLS, log in as ``user`` and read up to the first ReadyForQuery."""
    endpoint = await _open(cfg, within)
    try:
        async with asyncio.timeout(within):
            tls_version = await _negotiate_tls(endpoint, cfg, tls_context)
            endpoint.write(m.startup_message({**params, "user": user, "database": cfg.database}))
            await _authenticate(endpoint, user, password)
            conn = UpstreamConnection(endpoint, 0, b"", tls_version=tls_version)
            while True:
                typ, body = await endpoint.read_message(_MAX_HANDSHAKE_MESSAGE)
                if typ == m.PARAMETER_STATUS:
                    name, value = m.parse_parameter_status(body)
                    conn.parameters[name] = value
                elif typ == m.BACKEND_KEY_DATA:
                    conn.backend_pid, conn.backend_key = m.parse_backend_key_data(body)
                elif typ == m.NOTICE_RESPONSE:
                    conn.notices.append(m.frame(typ, body))
                elif typ == m.READY_FOR_QUERY:
                    return conn
                elif typ == m.ERROR_RESPONSE:
                    fields = m.parse_error_fields(body)
                    raise UpstreamError(
                        f"upstream failed the session start: {fields.get('C', '?')} {fields.get('M', '')}",
                        f"pcigate: the database refused the session: {fields.get('M', 'unknown error')}",
                        fields.get("C", "08004"),
                    )
                else:
                    raise m.ProtocolError(f"unexpected message {chr(typ)!r} before ReadyForQuery")
    except UpstreamError:
        endpoint.abort()
        raise
    except AuthError as exc:
        endpoint.abort()
        raise UpstreamError(
            f"upstream SCRAM authentication as {user} failed: {exc}",
            "pcigate: the database refused the gateway's vaulted credential; contact the gateway operator",
            "08004",
        ) from None
    except (PeerClosedError, OSError, TimeoutError, m.ProtocolError) as exc:
        endpoint.abort()
        raise UpstreamError(
            f"upstream {cfg.host}:{cfg.port} handshake failed: {type(exc).__name__}: {exc}",
            "pcigate: the database connection failed during login; try again or contact the gateway operator",
        ) from None


async def cancel_upstream(
    cfg: Upstream, pid: int, key: bytes, *, tls_context: ssl.SSLContext | None, within: float = 5.0
) -> None:
    """Send a CancelRequest for the upstream backend (over TLS when the session used it)."""
    endpoint = await _open(cfg, within)
    try:
        async with asyncio.timeout(within):
            await _negotiate_tls(endpoint, cfg, tls_context)
            endpoint.write(m.cancel_request(pid, key))
            # The server closes the connection without answering; wait briefly so the bytes leave.
            while not endpoint.closed:
                try:
                    await endpoint.read_exact(1)
                except PeerClosedError:
                    break
    except (OSError, TimeoutError, PeerClosedError, m.ProtocolError, UpstreamError) as exc:
        log.warning("cancel request to upstream %s:%s failed: %s", cfg.host, cfg.port, exc)
    finally:
        endpoint.close()
