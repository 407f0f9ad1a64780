"""The untyped first packet of a connection: int32 length (including itself), int32 code, body.

Pure and I/O-free. Mirrors PostgreSQL's ProcessStartupPacket checks and messages so clients see the same
errors they would from the server, and is stricter where PostgreSQL is lenient (duplicate keys, non-UTF-8
names, request packets with extra bytes) because this gateway fails closed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Final

from .messages import (
    MAX_CANCEL_KEY,
    MIN_CANCEL_KEY,
    PROTOCOL_MAJOR,
    Buf,
    ProtocolError,
    negotiate_protocol_version,
)

SSL_REQUEST_CODE: Final = 80877103
GSSENC_REQUEST_CODE: Final = 80877104
CANCEL_REQUEST_CODE: Final = 80877102
PROTOCOL_3: Final = PROTOCOL_MAJOR
NEWEST_MINOR: Final = 2  # protocol 3.2 (PostgreSQL 18)
MAX_STARTUP_PACKET: Final = 10000  # PostgreSQL's MAX_STARTUP_PACKET_LENGTH
PROTOCOL_OPTION_PREFIX: Final = "_pq_."

_II = struct.Struct("!ii")
_I32 = struct.Struct("!i")


@dataclass(frozen=True, slots=True)
class SslRequest:
    pass


@dataclass(frozen=True, slots=True)
class GssEncRequest:
    pass


@dataclass(frozen=True, slots=True)
class CancelRequest:
    pid: int
    key: bytes  # 4 bytes in protocol 3.0, up to 256 in 3.2


@dataclass(frozen=True, slots=True)
class StartupMessage:
    major: int
    minor: int
    params: dict[str, str]
    protocol_options: dict[str, str] = field(default_factory=dict)  # the ``_pq_.`` parameters


StartupPacket = SslRequest | GssEncRequest | CancelRequest | StartupMessage


def startup_packet_length(buf: Buf) -> int | None:
    """The declared packet length once its 4 bytes are buffered, refused early if it cannot be valid."""
    if len(buf) < 4:
        return None
    length: int = _I32.unpack_from(buf, 0)[0]
    if length < 8 or length > MAX_STARTUP_PACKET:
        raise ProtocolError(f"invalid length of startup packet: {length}")
    return length


def parse_startup_packet(packet: Buf, *, newest_minor: int = NEWEST_MINOR) -> StartupPacket:
    """Decode a whole startup packet (length word included); ``newest_minor`` only words the error."""
    b = packet if type(packet) is bytes else bytes(packet)
    if len(b) < 8:
        raise ProtocolError("incomplete startup packet")
    length, code = _II.unpack_from(b, 0)
    if length != len(b):
        raise ProtocolError(f"invalid length of startup packet: declared {length}, got {len(b)} bytes")
    if code == SSL_REQUEST_CODE:
        _exact(b, "SSL")
        return SslRequest()
    if code == GSSENC_REQUEST_CODE:
        _exact(b, "GSSAPI encryption")
        return GssEncRequest()
    if code == CANCEL_REQUEST_CODE:
        key = b[12:]
        if not MIN_CANCEL_KEY <= len(key) <= MAX_CANCEL_KEY:
            raise ProtocolError(f"invalid length of cancel request packet: {length}")
        return CancelRequest(_I32.unpack_from(b, 8)[0], key)
    major, minor = (code >> 16) & 0xFFFF, code & 0xFFFF
    if major != PROTOCOL_MAJOR:
        raise ProtocolError(
            f"unsupported frontend protocol {major}.{minor}: "
            f"server supports {PROTOCOL_MAJOR}.0 to {PROTOCOL_MAJOR}.{newest_minor}",
            "0A000",
        )
    params, options = _parse_params(b)
    if not params.get("user"):
        raise ProtocolError("no PostgreSQL user name specified in startup packet", "28000")
    return StartupMessage(major, minor, params, options)


def _exact(b: bytes, what: str) -> None:
    if len(b) != 8:
        raise ProtocolError(f"invalid length of {what} request packet: {len(b)}")


def _parse_params(b: bytes) -> tuple[dict[str, str], dict[str, str]]:
    if b[-1] != 0:
        raise ProtocolError("invalid startup packet layout: expected terminator as last byte")
    params: dict[str, str] = {}
    options: dict[str, str] = {}
    last = len(b) - 1
    pos = 8
    while pos < last:
        end = b.find(b"\0", pos)
        if end == pos:  # an empty name ends the list, which must then be the final byte
            raise ProtocolError("invalid startup packet layout: expected terminator as last byte")
        if end == last:  # a name with no value: the final NUL ended the name
            raise ProtocolError("invalid startup packet layout: missing value for a parameter")
        try:
            name = b[pos:end].decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("invalid startup packet: parameter name is not valid UTF-8") from None
        vend = b.find(b"\0", end + 1)
        value = b[end + 1 : vend].decode("utf-8", "surrogateescape")
        pos = vend + 1
        target = options if name.startswith(PROTOCOL_OPTION_PREFIX) else params
        if name in target:
            raise ProtocolError(f'invalid startup packet: duplicate parameter "{name}"')
        target[name] = value
    if pos != last:
        # The last value's NUL was the final byte: the list terminator is missing.
        raise ProtocolError("invalid startup packet layout: expected terminator as last byte")
    return params, options


def negotiation_needed(msg: StartupMessage, newest_minor: int) -> bytes | None:
    """NegotiateProtocolVersion when the client asked for a newer minor or any ``_pq_.`` option (none is
    supported). The version sent is min(requested, newest): libpq rejects a "downgrade" to a higher one."""
    if msg.minor <= newest_minor and not msg.protocol_options:
        return None
    return negotiate_protocol_version(min(msg.minor, newest_minor), list(msg.protocol_options))
