"""``host:port`` strings and URLs, parsed and checked once at load time.

Listen addresses and upstream hosts end up in ``bind``/``connect`` calls and in audit events; catching a
malformed one at start-up beats a confusing socket error later.
"""

from __future__ import annotations

import ipaddress
import re
from typing import NamedTuple
from urllib.parse import urlsplit

__all__ = [
    "HostPort",
    "check_host",
    "check_port",
    "check_url",
    "is_loopback",
    "is_wildcard",
    "parse_host_port",
]

_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


class HostPort(NamedTuple):
    """A parsed ``host:port``; IPv6 hosts are stored without brackets."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def check_host(host: str) -> str:
    """Accept an IPv4/IPv6 literal or a DNS name; raise ``ValueError`` otherwise."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return host
    name = host[:-1] if host.endswith(".") else host
    if not name or len(name) > 253 or not all(_LABEL.fullmatch(label) for label in name.split(".")):
        raise ValueError(f"{host!r} is not a valid host: expected a DNS name or an IP address")
    return host


def check_port(port: object) -> int:
    """Ports are integers 1..65535 (booleans rejected: YAML ``yes`` is True, and True == 1)."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError("must be between 1 and 65535")
    return port


def parse_host_port(value: object) -> HostPort:
    """Parse ``host:port`` or ``[v6]:port``; raise ``ValueError`` that says what is expected."""
    if isinstance(value, HostPort):
        return value
    if not isinstance(value, str):
        raise ValueError("must be a string host:port, e.g. 127.0.0.1:15432 or [::1]:15432")
    if value.startswith("["):
        host, sep, port = value[1:].partition("]:")
        if not sep or ":" not in host:
            raise ValueError(f"{value!r} is not host:port: IPv6 addresses look like [::1]:15432")
    else:
        host, sep, port = value.rpartition(":")
        if not sep or not host:
            raise ValueError(f"{value!r} is not host:port, e.g. 127.0.0.1:15432")
        if ":" in host:
            raise ValueError(f"{value!r}: put IPv6 addresses in brackets, e.g. [::1]:15432")
    if not port.isdigit():
        raise ValueError(f"{value!r}: port must be a number between 1 and 65535")
    return HostPort(check_host(host), check_port(int(port)))


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals: traffic that never leaves the machine."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_wildcard(host: str) -> bool:
    """True for ``0.0.0.0`` and ``::``, which bind every interface (and so clash with any other host)."""
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def check_url(value: str, schemes: frozenset[str], *, loopback_schemes: frozenset[str] = frozenset()) -> str:
    """Check ``value`` is an absolute URL with one of ``schemes`` and a host (and valid port, if any).

    ``loopback_schemes`` are additionally allowed when the host is loopback: plain ``http`` for a local
    dev issuer, never for anything that crosses a network.
    """
    # Never echo the URL: a mistaken `nats://user:password@host` would put a password in the error.
    allowed = ", ".join(f"{s}://" for s in sorted(schemes))
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValueError(f"not a valid URL: expected {allowed}host[:port]") from None
    if "@" in parts.netloc:
        raise ValueError("URLs must not carry credentials (user:password@); use the credentials setting")
    host = parts.hostname
    if not parts.scheme or not host:
        raise ValueError(f"not an absolute URL: expected {allowed}host[:port]")
    scheme = parts.scheme.lower()
    if scheme in loopback_schemes and scheme not in schemes:
        if not is_loopback(host):
            raise ValueError(f"{scheme}:// is only allowed for loopback hosts (localhost, 127.0.0.1, ::1)")
    elif scheme not in schemes:
        raise ValueError(f"scheme must be one of {allowed} (got {scheme}://)")
    check_host(host)
    if port is not None:
        check_port(port)
    return value
