"""pgwire.messages: exact bytes for builders and parsers, refusal of malformed bodies, and `scan` framing."""

from __future__ import annotations

import contextlib
import itertools
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.pgwire import messages as m
from gateway.pgwire.messages import (
    BindMsg,
    ExecuteMsg,
    FieldDesc,
    MessageTooLarge,
    ParseMsg,
    ProtocolError,
)


def body_of(msg: bytes) -> bytes:
    """Check the 5-byte header of one whole message and return its body."""
    (length,) = struct.unpack("!i", msg[1:5])
    assert length == len(msg) - 1
    return msg[5:]


# --- constants ------------------------------------------------------------------------------------------


def test_type_bytes_are_the_protocols_letters() -> None:
    frontend = {
        "QUERY": "Q", "PARSE": "P", "BIND": "B", "EXECUTE": "E", "DESCRIBE": "D", "CLOSE": "C", "SYNC": "S",
        "FLUSH": "H", "TERMINATE": "X", "COPY_DATA": "d", "COPY_DONE": "c", "COPY_FAIL": "f",
        "FUNCTION_CALL": "F", "PASSWORD": "p",
    }  # fmt: skip
    backend = {
        "AUTHENTICATION": "R", "PARAMETER_STATUS": "S", "BACKEND_KEY_DATA": "K", "READY_FOR_QUERY": "Z",
        "ROW_DESCRIPTION": "T", "DATA_ROW": "D", "COMMAND_COMPLETE": "C", "ERROR_RESPONSE": "E",
        "NOTICE_RESPONSE": "N", "EMPTY_QUERY_RESPONSE": "I", "PORTAL_SUSPENDED": "s", "PARSE_COMPLETE": "1",
        "BIND_COMPLETE": "2", "CLOSE_COMPLETE": "3", "NO_DATA": "n", "PARAMETER_DESCRIPTION": "t",
        "COPY_IN_RESPONSE": "G", "COPY_OUT_RESPONSE": "H", "COPY_BOTH_RESPONSE": "W",
        "NOTIFICATION_RESPONSE": "A", "NEGOTIATE_PROTOCOL_VERSION": "v", "FUNCTION_CALL_RESPONSE": "V",
    }  # fmt: skip
    for name, letter in (frontend | backend).items():
        value = getattr(m, name)
        assert isinstance(value, int)
        assert value == ord(letter), name
    assert {ord(c) for c in frontend.values()} == m.FRONTEND_TYPES
    assert {ord(c) for c in backend.values()} | {ord("d"), ord("c")} == m.BACKEND_TYPES


def test_protocol_error_carries_sqlstate_and_message() -> None:
    err = ProtocolError("bad thing")
    assert (err.sqlstate, err.message, str(err)) == ("08P01", "bad thing", "bad thing")
    big = MessageTooLarge("too big")
    assert isinstance(big, ProtocolError)
    assert (big.sqlstate, big.message) == ("54000", "too big")
    assert ProtocolError("x", "0A000").sqlstate == "0A000"


# --- scan -----------------------------------------------------------------------------------------------


def test_scan_splits_complete_messages_and_stops_at_the_tail() -> None:
    q = b"Q\x00\x00\x00\x0dselect 1\x00"
    s = b"S\x00\x00\x00\x04"
    tail = b"Q\x00\x00\x00\x0dsel"
    buf = q + s + tail
    assert m.scan(buf, 0, 1 << 20) == ([(ord("Q"), 0, 14), (ord("S"), 14, 19)], 19)
    # From an offset, and over bytearray/memoryview alike.
    assert m.scan(bytearray(buf), 14, 1 << 20) == ([(ord("S"), 14, 19)], 19)
    assert m.scan(memoryview(buf), 19, 1 << 20) == ([], 19)
    # A partial header is an incomplete tail too.
    for cut in range(5):
        assert m.scan(s[:cut], 0, 100) == ([], 0)
    assert m.scan(b"", 0, 100) == ([], 0)


def test_scan_length_limits() -> None:
    # length 4 (empty body) is the smallest legal message
    assert m.scan(b"X\x00\x00\x00\x04", 0, 4) == ([(ord("X"), 0, 5)], 5)
    for bad in (0, 3, -1, -(2**31)):
        with pytest.raises(ProtocolError) as exc:
            m.scan(b"Q" + struct.pack("!i", bad), 0, 1 << 20)
        assert not isinstance(exc.value, MessageTooLarge)
        assert exc.value.sqlstate == "08P01"
    # Refused as soon as the header is readable: the body has not arrived.
    with pytest.raises(MessageTooLarge) as big:
        m.scan(b"S\x00\x00\x00\x04" + b"Q" + struct.pack("!i", 101), 0, 100)
    assert big.value.sqlstate == "54000"
    assert m.scan(b"Q" + struct.pack("!i", 100), 0, 100) == ([], 0)  # at the limit: wait for the body


def test_message_body_is_a_view() -> None:
    buf = m.query("select 1") + m.sync()
    found, _ = m.scan(buf, 0, 1000)
    (_, s, e) = found[0]
    view = m.message_body(buf, s, e)
    assert isinstance(view, memoryview)
    assert m.parse_query(view) == "select 1"


_types = st.sampled_from(sorted(m.FRONTEND_TYPES | m.BACKEND_TYPES))
_messages = st.lists(st.tuples(_types, st.binary(max_size=40)), max_size=12)


@given(_messages, st.lists(st.integers(min_value=0, max_value=600), max_size=30), st.integers(0, 7))
@settings(max_examples=300)
def test_scan_over_any_chunking_yields_the_same_messages(
    msgs: list[tuple[int, bytes]], cuts: list[int], prefix: int
) -> None:
    wire = [struct.pack("!Bi", t, len(b) + 4) + b for t, b in msgs]
    stream = b"".join(wire)
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    buf = bytearray(b"\xee" * prefix)  # bytes before `start` must be ignored
    start = prefix
    got: list[tuple[int, bytes]] = []
    for a, b in itertools.pairwise(points):
        buf += stream[a:b]
        found, consumed = m.scan(buf, start, 1 << 16)
        for t, s, e in found:
            assert buf[s] == t
            got.append((t, bytes(buf[s + 5 : e])))
        assert consumed >= start
        start = consumed
        # What is left is never a complete message.
        assert m.scan(buf, start, 1 << 16)[0] == []
    assert got == msgs
    assert start == len(buf)


# --- backend builders: exact bytes ----------------------------------------------------------------------


def test_error_and_notice_response_bytes() -> None:
    body = b"SERROR\x00VERROR\x00C42501\x00Mpermission denied\x00Dthe detail\x00Ha hint\x00\x00"
    msg = m.error_response("ERROR", "42501", "permission denied", detail="the detail", hint="a hint")
    assert msg == b"E" + struct.pack("!i", len(body) + 4) + body
    plain = m.error_response("FATAL", "28000", "no")
    assert plain == b"E\x00\x00\x00\x1eSFATAL\x00VFATAL\x00C28000\x00Mno\x00\x00"
    assert m.notice_response("NOTICE", "00000", "hi")[:1] == b"N"
    assert m.parse_error_fields(body_of(m.notice_response("NOTICE", "00000", "hi"))) == {
        "S": "NOTICE",
        "V": "NOTICE",
        "C": "00000",
        "M": "hi",
    }


def test_error_response_never_breaks_framing() -> None:
    msg = m.error_response("ERROR", "22023", "bad\x00value")
    assert m.parse_error_fields(body_of(msg))["M"] == "badvalue"
    with pytest.raises(ValueError, match="SQLSTATE"):
        m.error_response("ERROR", "123", "x")


def test_authentication_bytes() -> None:
    assert m.authentication_ok() == b"R\x00\x00\x00\x08\x00\x00\x00\x00"
    assert m.authentication_cleartext_password() == b"R\x00\x00\x00\x08\x00\x00\x00\x03"
    assert m.authentication_md5_password(b"abcd") == b"R\x00\x00\x00\x0c\x00\x00\x00\x05abcd"
    assert (
        m.authentication_sasl(["SCRAM-SHA-256"]) == b"R\x00\x00\x00\x17\x00\x00\x00\x0aSCRAM-SHA-256\x00\x00"
    )
    assert m.authentication_sasl_continue(b"r=x") == b"R\x00\x00\x00\x0b\x00\x00\x00\x0br=x"
    assert m.authentication_sasl_final(b"v=y") == b"R\x00\x00\x00\x0b\x00\x00\x00\x0cv=y"


def test_session_start_bytes() -> None:
    assert m.parameter_status("client_encoding", "UTF8") == b"S\x00\x00\x00\x19client_encoding\x00UTF8\x00"
    assert (
        m.backend_key_data(1234, b"\x01\x02\x03\x04") == b"K\x00\x00\x00\x0c\x00\x00\x04\xd2\x01\x02\x03\x04"
    )
    assert len(m.backend_key_data(1, b"k" * 32)) == 1 + 4 + 4 + 32
    for bad_key in (b"abc", b"k" * 257):
        with pytest.raises(ValueError):
            m.backend_key_data(1, bad_key)
    assert m.ready_for_query(b"I") == b"Z\x00\x00\x00\x05I"
    assert m.ready_for_query(b"T") == b"Z\x00\x00\x00\x05T"
    assert m.ready_for_query(b"E") == b"Z\x00\x00\x00\x05E"
    with pytest.raises(ValueError):
        m.ready_for_query(b"X")


def test_negotiate_protocol_version_sends_the_full_version_word() -> None:
    # PostgreSQL and libpq put (major << 16 | minor) on the wire.
    assert m.negotiate_protocol_version(0, ["_pq_.foo"]) == (
        b"v\x00\x00\x00\x15\x00\x03\x00\x00\x00\x00\x00\x01_pq_.foo\x00"
    )
    assert m.negotiate_protocol_version(2, []) == b"v\x00\x00\x00\x0c\x00\x03\x00\x02\x00\x00\x00\x00"


def test_result_bytes() -> None:
    assert m.command_complete("SELECT 1") == b"C\x00\x00\x00\x0dSELECT 1\x00"
    assert m.row_description([FieldDesc("id", 16384, 1, 23, 4, -1, 0)]) == (
        b"T\x00\x00\x00\x1b\x00\x01id\x00\x00\x00\x40\x00\x00\x01\x00\x00\x00\x17\x00\x04\xff\xff\xff\xff\x00\x00"
    )
    assert m.data_row([b"42", None]) == b"D\x00\x00\x00\x10\x00\x02\x00\x00\x00\x0242\xff\xff\xff\xff"
    assert m.data_row([b""]) == b"D\x00\x00\x00\x0a\x00\x01\x00\x00\x00\x00"
    assert m.empty_query_response() == b"I\x00\x00\x00\x04"
    assert m.parse_complete() == b"1\x00\x00\x00\x04"
    assert m.bind_complete() == b"2\x00\x00\x00\x04"
    assert m.no_data() == b"n\x00\x00\x00\x04"


# --- frontend builders: exact bytes ---------------------------------------------------------------------


def test_frontend_bytes() -> None:
    assert m.startup_message({"user": "alice", "database": "db"}) == (
        b"\x00\x00\x00\x20\x00\x03\x00\x00user\x00alice\x00database\x00db\x00\x00"
    )
    assert m.startup_message({"user": "a"}, minor=2)[4:8] == b"\x00\x03\x00\x02"
    assert m.ssl_request() == b"\x00\x00\x00\x08\x04\xd2\x16\x2f"
    assert m.gssenc_request() == b"\x00\x00\x00\x08\x04\xd2\x16\x30"
    assert m.cancel_request(7, b"abcd") == b"\x00\x00\x00\x10\x04\xd2\x16\x2e\x00\x00\x00\x07abcd"
    assert m.password_message(b"secret") == b"p\x00\x00\x00\x0bsecret\x00"
    assert m.sasl_initial_response("SCRAM-SHA-256", b"n,,n=,r=abc") == (
        b"p\x00\x00\x00\x21SCRAM-SHA-256\x00\x00\x00\x00\x0bn,,n=,r=abc"
    )
    assert m.sasl_initial_response("X", None) == b"p\x00\x00\x00\x0aX\x00\xff\xff\xff\xff"
    assert m.sasl_response(b"xyz") == b"p\x00\x00\x00\x07xyz"
    assert m.query("select 1") == b"Q\x00\x00\x00\x0dselect 1\x00"
    assert m.terminate() == b"X\x00\x00\x00\x04"
    assert m.sync() == b"S\x00\x00\x00\x04"
    assert m.flush() == b"H\x00\x00\x00\x04"
    assert m.execute("p", 5) == b"E\x00\x00\x00\x0ap\x00\x00\x00\x00\x05"
    assert m.describe("S", "st") == b"D\x00\x00\x00\x08Sst\x00"
    assert m.close("P") == b"C\x00\x00\x00\x06P\x00"
    assert m.parse("s1", "select $1", [23]) == (
        b"P\x00\x00\x00\x17s1\x00select $1\x00\x00\x01\x00\x00\x00\x17"
    )


def test_builders_refuse_nul_inside_strings() -> None:
    with pytest.raises(ValueError):
        m.query("select 1\x00; drop table t")
    with pytest.raises(ValueError):
        m.parameter_status("a\x00b", "c")
    with pytest.raises(ValueError):
        m.startup_message({"user": "a\x00"})
    with pytest.raises(ValueError):
        m.password_message(b"se\x00cret")
    with pytest.raises(ValueError):
        m.cancel_request(1, b"")


# --- parsers: exact bodies ------------------------------------------------------------------------------


def test_parse_bind_exact_body() -> None:
    body = (
        b"p1\x00s1\x00"
        + b"\x00\x01\x00\x01"  # one format code for all params: binary
        + b"\x00\x02"
        + b"\x00\x00\x00\x04\x00\x00\x00\x2a"
        + b"\xff\xff\xff\xff"
        + b"\x00\x01\x00\x00"
    )
    msg = m.parse_bind(body)
    assert msg == BindMsg("p1", "s1", [1], [b"\x00\x00\x00\x2a", None], [0])
    assert msg.param_format(0) == msg.param_format(1) == 1
    assert BindMsg("", "", [], [b"a"], []).param_format(0) == 0
    assert BindMsg("", "", [0, 1], [b"a", b"b"], []).param_format(1) == 1
    # The same bytes through a memoryview.
    assert m.parse_bind(memoryview(body)) == msg


def test_parse_frontend_bodies() -> None:
    assert m.parse_query(b"select 1\x00") == "select 1"
    assert m.parse_parse(b"s\x00select $1, $2\x00\x00\x02\x00\x00\x00\x17\x00\x00\x00\x19") == ParseMsg(
        "s", "select $1, $2", [23, 25]
    )
    assert m.parse_parse(b"\x00select\x00\x00\x00") == ParseMsg("", "select", [])
    assert m.parse_execute(b"\x00\x00\x00\x00\x00") == ExecuteMsg("", 0)
    assert m.parse_execute(b"pt\x00\x00\x00\x01\x00") == ExecuteMsg("pt", 256)
    assert m.parse_describe(b"Sstmt\x00") == ("S", "stmt")
    assert m.parse_describe(b"P\x00") == ("P", "")
    assert m.parse_close(b"Pportal\x00") == ("P", "portal")
    assert m.parse_password(b"secret\x00") == b"secret"
    assert m.parse_sasl_initial_response(b"SCRAM-SHA-256\x00\x00\x00\x00\x03abc") == ("SCRAM-SHA-256", b"abc")
    assert m.parse_sasl_initial_response(b"M\x00\xff\xff\xff\xff") == ("M", None)
    assert m.parse_copy_fail(b"boom\x00") == "boom"


def test_parse_backend_bodies() -> None:
    assert m.parse_authentication(b"\x00\x00\x00\x05salt") == (5, b"salt")
    assert m.parse_authentication(b"\x00\x00\x00\x00") == (0, b"")
    assert m.parse_sasl_mechanisms(b"SCRAM-SHA-256-PLUS\x00SCRAM-SHA-256\x00\x00") == [
        "SCRAM-SHA-256-PLUS",
        "SCRAM-SHA-256",
    ]
    assert m.parse_error_fields(b"SERROR\x00C42P01\x00Mrelation does not exist\x00P15\x00\x00") == {
        "S": "ERROR",
        "C": "42P01",
        "M": "relation does not exist",
        "P": "15",
    }
    assert m.parse_command_complete(b"INSERT 0 3\x00") == "INSERT 0 3"
    assert m.parse_parameter_status(b"TimeZone\x00UTC\x00") == ("TimeZone", "UTC")
    assert m.parse_backend_key_data(b"\x00\x00\x30\x39\xde\xad\xbe\xef") == (12345, b"\xde\xad\xbe\xef")
    assert m.parse_backend_key_data(b"\x00\x00\x00\x01" + b"k" * 32) == (1, b"k" * 32)
    assert m.parse_ready_for_query(b"T") == b"T"
    assert m.parse_negotiate_protocol_version(b"\x00\x03\x00\x00\x00\x00\x00\x01_pq_.x\x00") == (
        0,
        ["_pq_.x"],
    )
    assert m.parse_row_description(
        b"\x00\x02a\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x19\xff\xff\xff\xff\xff\xff\x00\x00"
        b"bb\x00\x00\x00\x40\x01\x00\x02\x00\x00\x06\xa4\x00\x10\x00\x00\x00\x0e\x00\x01"
    ) == [FieldDesc("a", 0, 0, 25, -1, -1, 0), FieldDesc("bb", 16385, 2, 1700, 16, 14, 1)]
    assert m.parse_data_row(b"\x00\x03\x00\x00\x00\x01x\xff\xff\xff\xff\x00\x00\x00\x00") == [b"x", None, b""]
    assert m.parse_data_row(b"\x00\x00") == []
    assert m.parse_parameter_description(b"\x00\x02\x00\x00\x00\x17\xff\xff\xff\xff") == [23, 4294967295]
    assert m.parse_copy_response(b"\x00\x00\x02\x00\x00\x00\x00") == (0, [0, 0])
    assert m.parse_copy_response(b"\x01\x00\x01\x00\x01") == (1, [1])
    assert m.parse_notification(b"\x00\x00\x00\x07chan\x00hello\x00") == (7, "chan", "hello")


@pytest.mark.parametrize(
    ("tag", "rows"),
    [
        ("SELECT 5", 5),
        ("SELECT 0", 0),
        ("INSERT 0 12", 12),
        ("UPDATE 3", 3),
        ("DELETE 0", 0),
        ("MERGE 7", 7),
        ("COPY 1000000", 1000000),
        ("FETCH 2", 2),
        ("MOVE 9", 9),
        ("CREATE TABLE", None),
        ("BEGIN", None),
        ("INSERT 0", None),
        ("INSERT x 3", None),
        ("SELECT", None),
        ("SELECT -1", None),
        ("SELECT ²", None),
        ("UPDATE 1 2", None),
        ("DROP 3", None),
        ("", None),
    ],
)
def test_command_tag_rows(tag: str, rows: int | None) -> None:
    assert m.command_tag_rows(tag) == rows


def test_sql_text_survives_non_utf8_bytes_exactly() -> None:
    raw = b"select '\xe9t\xe9' -- latin1\xff"
    sql = m.parse_query(raw + b"\x00")
    assert sql.encode("utf-8", "surrogateescape") == raw
    assert m.query(sql) == b"Q" + struct.pack("!i", len(raw) + 5) + raw + b"\x00"
    # Display-only text is replaced, never raises.
    assert m.parse_error_fields(b"M\xff\x00\x00") == {"M": "\ufffd"}


# --- parsers: malformed input ---------------------------------------------------------------------------

MALFORMED = [
    (m.parse_query, b"select 1"),  # no terminator
    (m.parse_query, b"select 1\x00x"),  # trailing garbage
    (m.parse_query, b""),
    (m.parse_parse, b"s\x00select\x00"),  # count missing
    (m.parse_parse, b"s\x00select\x00\x00\x02\x00\x00\x00\x17"),  # 2 oids announced, 1 present
    (m.parse_parse, b"s\x00select\x00\x00\x00\x00"),  # trailing byte
    (m.parse_parse, b"s\x00select"),
    (m.parse_bind, b"\x00\x00\x00\x00\x00\x01\x00\x00\x00\x05ab\x00\x00"),  # value shorter than its length
    (m.parse_bind, b"\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00"),  # 2 params, 1 present
    (m.parse_bind, b"\x00\x00\x00\x00\xff\xff" + b"\x00\x00\x00\x00" * 3),  # 65535 params announced
    (m.parse_bind, b"\x00\x00\x00\x00\x00\x01\xff\xff\xff\xfe\x00\x00"),  # negative length other than -1
    (m.parse_bind, b"\x00\x00\x00\x02\x00\x00\x00\x00\x00\x01\xff\xff\xff\xff\x00\x00"),  # 2 formats, 1 param
    (m.parse_bind, b"\x00\x00\x00\x00\x00\x00"),  # result format count missing
    (m.parse_bind, b"\x00\x00\x00\x00\x00\x00\x00\x00\x00"),  # trailing garbage
    (m.parse_bind, b"\x00\x00\x00\x05"),  # format array cut
    (m.parse_bind, b"portal"),
    (m.parse_execute, b"\x00\x00\x00"),
    (m.parse_execute, b"p\x00\x00\x00\x00\x00\x00"),
    (m.parse_describe, b"Xname\x00"),
    (m.parse_describe, b""),
    (m.parse_describe, b"Sname"),
    (m.parse_close, b"S\x00\x00"),
    (m.parse_password, b"secret"),
    (m.parse_password, b"sec\x00ret\x00"),
    (m.parse_password, b""),
    (m.parse_sasl_initial_response, b"M\x00\x00\x00\x00\x05abc"),
    (m.parse_sasl_initial_response, b"M\x00\x00\x00\x00\x01ab"),
    (m.parse_sasl_initial_response, b"M\x00\xff\xff\xff\xffx"),
    (m.parse_sasl_initial_response, b"M\x00\xff\xff\xff\xfe"),
    (m.parse_authentication, b"\x00\x00"),
    (m.parse_sasl_mechanisms, b"SCRAM-SHA-256\x00"),
    (m.parse_sasl_mechanisms, b"A\x00\x00junk"),
    (m.parse_error_fields, b"SERROR\x00"),  # no final terminator
    (m.parse_error_fields, b"SERROR"),
    (m.parse_error_fields, b"\x00x"),
    (m.parse_command_complete, b"SELECT 1"),
    (m.parse_parameter_status, b"a\x00"),
    (m.parse_parameter_status, b"a\x00b\x00c"),
    (m.parse_backend_key_data, b"\x00\x00\x00\x01abc"),
    (m.parse_backend_key_data, b"\x00\x00\x00\x01" + b"k" * 257),
    (m.parse_backend_key_data, b"\x00\x00"),
    (m.parse_ready_for_query, b"X"),
    (m.parse_ready_for_query, b"II"),
    (m.parse_ready_for_query, b""),
    (m.parse_negotiate_protocol_version, b"\x00\x03\x00\x00\x00\x00\x00\x02a\x00"),
    (m.parse_negotiate_protocol_version, b"\x00\x03\x00\x00\x7f\xff\xff\xff"),
    (m.parse_negotiate_protocol_version, b"\x00\x02\x00\x00\x00\x00\x00\x00"),
    (m.parse_negotiate_protocol_version, b"\x00\x03\x00\x00\xff\xff\xff\xff"),
    (m.parse_row_description, b"\x00\x01a\x00\x00\x00"),  # field cut short
    (m.parse_row_description, b"\x00\x02" + b"a\x00" + b"\x00" * 18),  # 2 fields announced, 1 present
    (m.parse_row_description, b"\x00\x01a"),
    (m.parse_row_description, b"\x00"),
    (m.parse_data_row, b"\x00\x01\x00\x00\x00\x05abc"),
    (m.parse_data_row, b"\x00\x02\xff\xff\xff\xff"),
    (m.parse_data_row, b"\x00\x01\xff\xff\xff\xff\x00"),
    (m.parse_data_row, b"\x00\x01\x80\x00\x00\x00"),
    (m.parse_data_row, b"\x00"),
    (m.parse_data_row, b""),
    (m.parse_parameter_description, b"\x00\x02\x00\x00\x00\x17"),
    (m.parse_parameter_description, b"\x00\x00\x00"),
    (m.parse_copy_response, b""),
    (m.parse_copy_response, b"\x00\x00\x02\x00\x00"),
    (m.parse_copy_response, b"\x02\x00\x00"),
    (m.parse_copy_response, b"\x00\x00\x01\x00\x07"),
    (m.parse_notification, b"\x00\x00\x00\x07chan\x00hello"),
    (m.parse_notification, b"\x00\x00\x00"),
]


@pytest.mark.parametrize(("parser", "body"), MALFORMED)
def test_malformed_bodies_raise_protocol_error(parser: object, body: bytes) -> None:
    assert callable(parser)
    with pytest.raises(ProtocolError):
        parser(body)
    with pytest.raises(ProtocolError):
        parser(memoryview(body))


def test_bad_format_codes_name_the_code() -> None:
    with pytest.raises(ProtocolError, match="unsupported format code: 2") as exc:
        m.parse_bind(b"\x00\x00\x00\x01\x00\x02\x00\x00\x00\x00")
    assert exc.value.sqlstate == "22023"
    with pytest.raises(ProtocolError, match="unsupported format code: -1"):
        m.parse_bind(b"\x00\x00\x00\x00\x00\x00\x00\x01\xff\xff")
    with pytest.raises(ProtocolError, match="3 parameter formats but 2 parameters"):
        m.parse_bind(
            b"\x00\x00\x00\x03" + b"\x00\x00" * 3 + b"\x00\x02" + b"\xff\xff\xff\xff" * 2 + b"\x00\x00"
        )


# --- round trips ----------------------------------------------------------------------------------------

_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30)
_value = st.one_of(st.none(), st.binary(max_size=30))
_i32 = st.integers(-(2**31), 2**31 - 1)
_u32 = st.integers(0, 2**32 - 1)
_i16 = st.integers(-(2**15), 2**15 - 1)


@given(_text)
def test_query_round_trip(sql: str) -> None:
    assert m.parse_query(body_of(m.query(sql))) == sql


@given(st.binary(max_size=40).filter(lambda b: b"\x00" not in b))
def test_query_bytes_round_trip(raw: bytes) -> None:
    assert m.parse_query(raw + b"\x00").encode("utf-8", "surrogateescape") == raw


@given(_text, _text, st.lists(_u32, max_size=10))
def test_parse_round_trip(name: str, sql: str, oids: list[int]) -> None:
    assert m.parse_parse(body_of(m.parse(name, sql, oids))) == ParseMsg(name, sql, oids)


@given(
    _text,
    _text,
    st.lists(_value, max_size=8),
    st.data(),
    st.lists(st.sampled_from([0, 1]), max_size=4),
)
def test_bind_round_trip(
    portal: str, stmt: str, params: list[bytes | None], data: st.DataObject, results: list[int]
) -> None:
    nformats = data.draw(st.sampled_from(sorted({0, 1, len(params)})))
    formats = data.draw(st.lists(st.sampled_from([0, 1]), min_size=nformats, max_size=nformats))
    msg = m.bind(portal, stmt, params, formats, results)
    assert m.parse_bind(body_of(msg)) == BindMsg(portal, stmt, formats, params, results)


@given(_text, _i32)
def test_execute_round_trip(portal: str, max_rows: int) -> None:
    assert m.parse_execute(body_of(m.execute(portal, max_rows))) == ExecuteMsg(portal, max_rows)


@given(st.sampled_from(["S", "P"]), _text)
def test_describe_close_round_trip(kind: str, name: str) -> None:
    assert m.parse_describe(body_of(m.describe(kind, name))) == (kind, name)
    assert m.parse_close(body_of(m.close(kind, name))) == (kind, name)


@given(st.binary(max_size=40).filter(lambda b: b"\x00" not in b))
def test_password_round_trip(pw: bytes) -> None:
    assert m.parse_password(body_of(m.password_message(pw))) == pw


@given(_text.filter(bool), st.one_of(st.none(), st.binary(max_size=60)))
def test_sasl_initial_response_round_trip(mech: str, data: bytes | None) -> None:
    assert m.parse_sasl_initial_response(body_of(m.sasl_initial_response(mech, data))) == (mech, data)


@given(st.binary(max_size=60))
def test_authentication_round_trips(data: bytes) -> None:
    assert m.parse_authentication(body_of(m.authentication_ok())) == (0, b"")
    assert m.parse_authentication(body_of(m.authentication_cleartext_password())) == (3, b"")
    assert m.parse_authentication(body_of(m.authentication_sasl_continue(data))) == (11, data)
    assert m.parse_authentication(body_of(m.authentication_sasl_final(data))) == (12, data)
    salt = (data + b"\x00" * 4)[:4]
    assert m.parse_authentication(body_of(m.authentication_md5_password(salt))) == (5, salt)


@given(st.lists(_text.filter(bool), max_size=4))
def test_sasl_mechanisms_round_trip(mechs: list[str]) -> None:
    code, payload = m.parse_authentication(body_of(m.authentication_sasl(mechs)))
    assert code == 10
    assert m.parse_sasl_mechanisms(payload) == mechs


_sqlstate = st.text("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=5, max_size=5)


@given(_text, _sqlstate, _text, st.one_of(st.none(), _text), st.one_of(st.none(), _text))
def test_error_response_round_trip(
    severity: str, sqlstate: str, message: str, detail: str | None, hint: str | None
) -> None:
    fields = m.parse_error_fields(
        body_of(m.error_response(severity, sqlstate, message, detail=detail, hint=hint))
    )
    expected = {"S": severity, "V": severity, "C": sqlstate, "M": message}
    if detail is not None:
        expected["D"] = detail
    if hint is not None:
        expected["H"] = hint
    assert fields == expected


@given(_text)
def test_command_complete_round_trip(tag: str) -> None:
    assert m.parse_command_complete(body_of(m.command_complete(tag))) == tag


@given(_text, _text)
def test_parameter_status_round_trip(name: str, value: str) -> None:
    assert m.parse_parameter_status(body_of(m.parameter_status(name, value))) == (name, value)


@given(_i32, st.binary(min_size=4, max_size=256))
def test_backend_key_data_round_trip(pid: int, key: bytes) -> None:
    assert m.parse_backend_key_data(body_of(m.backend_key_data(pid, key))) == (pid, key)


@given(st.sampled_from([b"I", b"T", b"E"]))
def test_ready_for_query_round_trip(status: bytes) -> None:
    assert m.parse_ready_for_query(body_of(m.ready_for_query(status))) == status


@given(st.integers(0, 0xFFFF), st.lists(_text, max_size=5))
def test_negotiate_round_trip(minor: int, options: list[str]) -> None:
    assert m.parse_negotiate_protocol_version(body_of(m.negotiate_protocol_version(minor, options))) == (
        minor,
        options,
    )


_field = st.builds(FieldDesc, _text, _u32, _i16, _u32, _i16, _i32, st.sampled_from([0, 1]))


@given(st.lists(_field, max_size=6))
def test_row_description_round_trip(fields: list[FieldDesc]) -> None:
    assert m.parse_row_description(body_of(m.row_description(fields))) == fields


@given(st.lists(_value, max_size=10))
def test_data_row_round_trip(values: list[bytes | None]) -> None:
    assert m.parse_data_row(body_of(m.data_row(values))) == values


@given(_text)
def test_copy_fail_round_trip(message: str) -> None:
    assert m.parse_copy_fail(body_of(m.copy_fail(message))) == message


@given(st.binary(max_size=60))
def test_parsers_never_raise_anything_but_protocol_error(junk: bytes) -> None:
    """Any byte string either parses or is refused with ProtocolError: never IndexError, struct.error, ..."""
    parsers = [
        m.parse_query, m.parse_parse, m.parse_bind, m.parse_execute, m.parse_describe, m.parse_close,
        m.parse_password, m.parse_sasl_initial_response, m.parse_authentication, m.parse_sasl_mechanisms,
        m.parse_error_fields, m.parse_command_complete, m.parse_parameter_status, m.parse_backend_key_data,
        m.parse_ready_for_query, m.parse_negotiate_protocol_version, m.parse_row_description,
        m.parse_data_row, m.parse_parameter_description, m.parse_copy_response, m.parse_notification,
    ]  # fmt: skip
    for parser in parsers:
        with contextlib.suppress(ProtocolError):
            parser(junk)
