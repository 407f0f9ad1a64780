"""pgwire.startup: the untyped first packet, its PostgreSQL-compatible refusals, and protocol negotiation."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.pgwire import messages as m
from gateway.pgwire.messages import ProtocolError
from gateway.pgwire.startup import (
    CANCEL_REQUEST_CODE,
    GSSENC_REQUEST_CODE,
    MAX_STARTUP_PACKET,
    PROTOCOL_3,
    SSL_REQUEST_CODE,
    CancelRequest,
    GssEncRequest,
    SslRequest,
    StartupMessage,
    negotiation_needed,
    parse_startup_packet,
    startup_packet_length,
)


def packet(code: int, body: bytes) -> bytes:
    return struct.pack("!ii", len(body) + 8, code) + body


V30 = 3 << 16
V32 = (3 << 16) | 2


def test_constants() -> None:
    assert (SSL_REQUEST_CODE, GSSENC_REQUEST_CODE, CANCEL_REQUEST_CODE) == (80877103, 80877104, 80877102)
    assert PROTOCOL_3 == 3
    assert MAX_STARTUP_PACKET == 10000


def test_startup_packet_length() -> None:
    assert startup_packet_length(b"") is None
    assert startup_packet_length(b"\x00\x00\x00") is None
    assert startup_packet_length(b"\x00\x00\x00\x08") == 8
    assert startup_packet_length(bytearray(b"\x00\x00\x27\x10rest")) == 10000
    assert startup_packet_length(memoryview(b"\x00\x00\x00\x29")) == 41
    for bad in (0, 7, -1, 10001, 2**31 - 1):
        with pytest.raises(ProtocolError) as exc:
            startup_packet_length(struct.pack("!i", bad))
        assert exc.value.sqlstate == "08P01"


def test_request_packets() -> None:
    assert parse_startup_packet(b"\x00\x00\x00\x08\x04\xd2\x16\x2f") == SslRequest()
    assert parse_startup_packet(b"\x00\x00\x00\x08\x04\xd2\x16\x30") == GssEncRequest()
    assert parse_startup_packet(b"\x00\x00\x00\x10\x04\xd2\x16\x2e\x00\x00\x30\x39\xde\xad\xbe\xef") == (
        CancelRequest(12345, b"\xde\xad\xbe\xef")
    )
    long_key = bytes(range(32))
    assert parse_startup_packet(m.cancel_request(7, long_key)) == CancelRequest(7, long_key)
    assert parse_startup_packet(memoryview(m.cancel_request(7, b"k" * 256))) == CancelRequest(7, b"k" * 256)


@pytest.mark.parametrize(
    "raw",
    [
        packet(SSL_REQUEST_CODE, b"x"),  # request packets are exactly 8 bytes
        packet(GSSENC_REQUEST_CODE, b"\x00"),
        packet(CANCEL_REQUEST_CODE, b"\x00\x00\x00\x01abc"),  # key shorter than 4
        packet(CANCEL_REQUEST_CODE, b"\x00\x00\x00\x01" + b"k" * 257),
        packet(CANCEL_REQUEST_CODE, b""),
        b"\x00\x00\x00\x09\x04\xd2\x16\x2f",  # declared length disagrees with the bytes
        b"\x00\x00\x00\x08\x04\xd2",
    ],
)
def test_bad_request_packets(raw: bytes) -> None:
    with pytest.raises(ProtocolError) as exc:
        parse_startup_packet(raw)
    assert exc.value.sqlstate == "08P01"


def test_startup_message_playbook() -> None:
    raw = b"\x00\x00\x00\x29\x00\x03\x00\x00user\x00alice\x00database\x00db\x00_pq_.x\x00y\x00\x00"
    assert len(raw) == 0x29
    assert parse_startup_packet(raw) == StartupMessage(
        3, 0, {"user": "alice", "database": "db"}, {"_pq_.x": "y"}
    )
    msg = parse_startup_packet(m.startup_message({"user": "bob", "options": "-c x=1"}, minor=2))
    assert msg == StartupMessage(3, 2, {"user": "bob", "options": "-c x=1"}, {})
    # Values keep non-UTF-8 bytes losslessly.
    odd = parse_startup_packet(packet(V30, b"user\x00u\x00application_name\x00caf\xe9\x00\x00"))
    assert isinstance(odd, StartupMessage)
    assert odd.params["application_name"].encode("utf-8", "surrogateescape") == b"caf\xe9"


def test_unsupported_major_version_is_worded_like_postgresql() -> None:
    with pytest.raises(ProtocolError) as exc:
        parse_startup_packet(packet(2 << 16, b"user\x00u\x00\x00"))
    assert exc.value.sqlstate == "0A000"
    assert exc.value.message == "unsupported frontend protocol 2.0: server supports 3.0 to 3.2"
    with pytest.raises(
        ProtocolError, match=r"unsupported frontend protocol 1234\.5681: server supports 3\.0 to 3\.0"
    ):
        parse_startup_packet(packet((1234 << 16) | 5681, b""), newest_minor=0)
    with pytest.raises(ProtocolError, match=r"protocol 4\.1:"):
        parse_startup_packet(packet((4 << 16) | 1, b"user\x00u\x00\x00"))


@pytest.mark.parametrize(
    ("body", "sqlstate", "message"),
    [
        (b"database\x00db\x00\x00", "28000", "no PostgreSQL user name specified in startup packet"),
        (b"user\x00\x00\x00", "28000", "no PostgreSQL user name specified in startup packet"),
        (b"\x00", "28000", "no PostgreSQL user name specified in startup packet"),
        (b"user\x00u\x00", "08P01", "expected terminator as last byte"),  # list terminator missing
        (b"user\x00u\x00\x00x", "08P01", "expected terminator as last byte"),
        (b"user\x00u", "08P01", "expected terminator as last byte"),
        (b"", "08P01", "expected terminator as last byte"),
        (b"user\x00u\x00\x00x\x00y\x00\x00", "08P01", "expected terminator as last byte"),  # data after end
        (b"user\x00u\x00database\x00", "08P01", "missing value"),
        (b"user\x00a\x00user\x00b\x00\x00", "08P01", 'duplicate parameter "user"'),
        (b"user\x00a\x00_pq_.x\x00a\x00_pq_.x\x00b\x00\x00", "08P01", 'duplicate parameter "_pq_.x"'),
        (b"user\x00a\x00us\xffer\x00b\x00\x00", "08P01", "not valid UTF-8"),
    ],
)
def test_bad_startup_messages(body: bytes, sqlstate: str, message: str) -> None:
    with pytest.raises(ProtocolError) as exc:
        parse_startup_packet(packet(V30, body))
    assert exc.value.sqlstate == sqlstate
    assert message in exc.value.message


def test_negotiation() -> None:
    plain = StartupMessage(3, 0, {"user": "u"}, {})
    assert negotiation_needed(plain, 2) is None
    assert negotiation_needed(StartupMessage(3, 2, {"user": "u"}, {}), 2) is None
    # Newer minor than ours: offer our newest, no options.
    assert negotiation_needed(StartupMessage(3, 5, {"user": "u"}, {}), 2) == (
        b"v\x00\x00\x00\x0c\x00\x03\x00\x02\x00\x00\x00\x00"
    )
    # Unknown _pq_ options at 3.0: stay at 3.0 (libpq refuses a "downgrade" to a higher version).
    opts = StartupMessage(3, 0, {"user": "u"}, {"_pq_.a": "1", "_pq_.b": "2"})
    got = negotiation_needed(opts, 2)
    assert got == b"v\x00\x00\x00\x1a\x00\x03\x00\x00\x00\x00\x00\x02_pq_.a\x00_pq_.b\x00"
    assert got is not None
    assert m.parse_negotiate_protocol_version(got[5:]) == (0, ["_pq_.a", "_pq_.b"])
    assert negotiation_needed(StartupMessage(3, 3, {"user": "u"}, {"_pq_.a": ""}), 0) == (
        m.negotiate_protocol_version(0, ["_pq_.a"])
    )


def test_a_growing_buffer_is_sized_before_it_is_parsed() -> None:
    raw = m.startup_message({"user": "alice", "database": "shop"}, minor=0)
    for cut in range(4):
        assert startup_packet_length(raw[:cut]) is None
    assert startup_packet_length(raw[:4]) == len(raw)
    with pytest.raises(ProtocolError):
        parse_startup_packet(raw[:-1])


_name = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=12)
_val = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20)


@given(
    st.dictionaries(_name.filter(lambda n: not n.startswith("_pq_.") and n != "user"), _val, max_size=5),
    _val.filter(bool),
    st.dictionaries(_name.map(lambda n: "_pq_." + n), _val, max_size=3),
    st.integers(0, 0xFFFF),
)
def test_startup_round_trip(params: dict[str, str], user: str, options: dict[str, str], minor: int) -> None:
    wire = m.startup_message({"user": user, **params, **options}, minor=minor)
    assert startup_packet_length(wire) == len(wire) or len(wire) > MAX_STARTUP_PACKET
    got = parse_startup_packet(wire)
    assert got == StartupMessage(3, minor, {"user": user, **params}, options)


@given(st.integers(-(2**31), 2**31 - 1), st.binary(min_size=4, max_size=256))
def test_cancel_round_trip(pid: int, key: bytes) -> None:
    assert parse_startup_packet(m.cancel_request(pid, key)) == CancelRequest(pid, key)


@given(st.binary(max_size=80))
def test_arbitrary_bytes_parse_or_raise_protocol_error(body: bytes) -> None:
    for code in (V30, V32, CANCEL_REQUEST_CODE, SSL_REQUEST_CODE, 0):
        with contextlib.suppress(ProtocolError):
            parse_startup_packet(packet(code, body))
