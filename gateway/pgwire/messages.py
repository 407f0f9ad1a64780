"""PostgreSQL protocol v3 typed messages: framing, builders and body parsers.

Pure and I/O-free. The session forwards untouched messages as the bytes it received, so parsing is only for
the messages a hook must inspect; ``scan`` is the only function that sees every message.

Text: PostgreSQL's client_encoding can be anything, so SQL text, names and values decode as UTF-8 with
``errors="surrogateescape"``: bytes that are not UTF-8 survive as lone surrogates and ``str.encode("utf-8",
"surrogateescape")`` restores them byte-exact. Error/notice fields and command tags are only ever displayed
or logged, so they decode with ``errors="replace"``.

Every parser takes a message BODY (the bytes after the 1-byte type and the int32 length) and raises
``ProtocolError`` on malformed input: a missing NUL terminator, a count that does not fit, or trailing bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

Buf = bytes | bytearray | memoryview

# --- errors ---------------------------------------------------------------------------------------------


class ProtocolError(Exception):
    """Malformed or unacceptable protocol input; ends the one connection with this SQLSTATE and message."""

    sqlstate: str
    message: str

    def __init__(self, message: str, sqlstate: str = "08P01") -> None:
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate


class MessageTooLarge(ProtocolError):  # noqa: N818 (name is the gateway's contract)
    """A declared message length above the configured limit: refused before its body is buffered."""

    def __init__(self, message: str, sqlstate: str = "54000") -> None:
        super().__init__(message, sqlstate)


# --- message types --------------------------------------------------------------------------------------
# Frontend (client -> server).
QUERY: Final = ord("Q")
PARSE: Final = ord("P")
BIND: Final = ord("B")
EXECUTE: Final = ord("E")
DESCRIBE: Final = ord("D")
CLOSE: Final = ord("C")
SYNC: Final = ord("S")
FLUSH: Final = ord("H")
TERMINATE: Final = ord("X")
COPY_DATA: Final = ord("d")
COPY_DONE: Final = ord("c")
COPY_FAIL: Final = ord("f")
FUNCTION_CALL: Final = ord("F")
PASSWORD: Final = ord("p")  # also SASLInitialResponse, SASLResponse, GSSResponse

# Backend (server -> client).
AUTHENTICATION: Final = ord("R")
PARAMETER_STATUS: Final = ord("S")
BACKEND_KEY_DATA: Final = ord("K")
READY_FOR_QUERY: Final = ord("Z")
ROW_DESCRIPTION: Final = ord("T")
DATA_ROW: Final = ord("D")
COMMAND_COMPLETE: Final = ord("C")
ERROR_RESPONSE: Final = ord("E")
NOTICE_RESPONSE: Final = ord("N")
EMPTY_QUERY_RESPONSE: Final = ord("I")
PORTAL_SUSPENDED: Final = ord("s")
PARSE_COMPLETE: Final = ord("1")
BIND_COMPLETE: Final = ord("2")
CLOSE_COMPLETE: Final = ord("3")
NO_DATA: Final = ord("n")
PARAMETER_DESCRIPTION: Final = ord("t")
COPY_IN_RESPONSE: Final = ord("G")
COPY_OUT_RESPONSE: Final = ord("H")
COPY_BOTH_RESPONSE: Final = ord("W")
NOTIFICATION_RESPONSE: Final = ord("A")
NEGOTIATE_PROTOCOL_VERSION: Final = ord("v")
FUNCTION_CALL_RESPONSE: Final = ord("V")
# COPY_DATA / COPY_DONE flow both ways with the same type bytes.

FRONTEND_TYPES: Final = frozenset(
    {
        QUERY,
        PARSE,
        BIND,
        EXECUTE,
        DESCRIBE,
        CLOSE,
        SYNC,
        FLUSH,
        TERMINATE,
        COPY_DATA,
        COPY_DONE,
        COPY_FAIL,
        FUNCTION_CALL,
        PASSWORD,
    }
)
BACKEND_TYPES: Final = frozenset(
    {
        AUTHENTICATION,
        PARAMETER_STATUS,
        BACKEND_KEY_DATA,
        READY_FOR_QUERY,
        ROW_DESCRIPTION,
        DATA_ROW,
        COMMAND_COMPLETE,
        ERROR_RESPONSE,
        NOTICE_RESPONSE,
        EMPTY_QUERY_RESPONSE,
        PORTAL_SUSPENDED,
        PARSE_COMPLETE,
        BIND_COMPLETE,
        CLOSE_COMPLETE,
        NO_DATA,
        PARAMETER_DESCRIPTION,
        COPY_IN_RESPONSE,
        COPY_OUT_RESPONSE,
        COPY_BOTH_RESPONSE,
        NOTIFICATION_RESPONSE,
        NEGOTIATE_PROTOCOL_VERSION,
        FUNCTION_CALL_RESPONSE,
        COPY_DATA,
        COPY_DONE,
    }
)

# Authentication request codes (the int32 that starts an 'R' body).
AUTH_OK: Final = 0
AUTH_KERBEROS_V5: Final = 2
AUTH_CLEARTEXT_PASSWORD: Final = 3
AUTH_MD5_PASSWORD: Final = 5
AUTH_GSS: Final = 7
AUTH_GSS_CONTINUE: Final = 8
AUTH_SSPI: Final = 9
AUTH_SASL: Final = 10
AUTH_SASL_CONTINUE: Final = 11
AUTH_SASL_FINAL: Final = 12

PROTOCOL_MAJOR: Final = 3
MAX_CANCEL_KEY: Final = 256  # protocol 3.2: keys are 4..256 bytes
MIN_CANCEL_KEY: Final = 4

# --- struct helpers -------------------------------------------------------------------------------------
_HEADER = struct.Struct("!Bi")
_I16 = struct.Struct("!h")
_U16 = struct.Struct("!H")
_I32 = struct.Struct("!i")
_U32 = struct.Struct("!I")
_II = struct.Struct("!ii")
_FIELD = struct.Struct("!IhIhih")  # RowDescription per-field tail: table oid .. format
_FIELD_SIZE = _FIELD.size

_hdr_unpack = _HEADER.unpack_from
_i32_unpack = _I32.unpack_from
_i16_unpack = _I16.unpack_from
_u16_unpack = _U16.unpack_from
_i32_pack = _I32.pack


# --- framing --------------------------------------------------------------------------------------------


def scan(buf: Buf, start: int, max_len: int) -> tuple[list[tuple[int, int, int]], int]:
    """Split the complete typed messages in ``buf[start:]``.

    Returns ``([(type, msg_start, msg_end), ...], consumed_end)``; ``msg_start`` points at the type byte and
    ``msg_end`` one past the message, so callers forward ``buf[msg_start:msg_end]`` untouched. The length is
    checked as soon as the 5-byte header is readable, so an oversized message is refused before its body is
    buffered.
    """
    out: list[tuple[int, int, int]] = []
    append = out.append
    unpack = _hdr_unpack
    size = len(buf)
    last_header = size - 5  # the last offset at which a whole header is readable
    pos = start
    while pos <= last_header:
        mtype, length = unpack(buf, pos)
        if length < 4:
            raise ProtocolError(f"invalid message length {length}")
        if length > max_len:
            raise MessageTooLarge(
                f"message type {chr(mtype)!r} of {length} bytes exceeds the limit {max_len}"
            )
        end = pos + 1 + length
        if end > size:
            break
        append((mtype, pos, end))
        pos = end
    return out, pos


def message_body(buf: Buf, msg_start: int, msg_end: int) -> memoryview:
    """A zero-copy view of one scanned message's body."""
    return memoryview(buf)[msg_start + 5 : msg_end]


def frame(mtype: int, body: bytes) -> bytes:
    """One typed message: the type byte, the int32 length (itself included), the body."""
    return _HEADER.pack(mtype, len(body) + 4) + body


_msg = frame


# --- encoding helpers -----------------------------------------------------------------------------------


def _enc(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


def _cstr(s: str) -> bytes:
    """A NUL-terminated string; a NUL inside would silently corrupt framing, so refuse it."""
    b = _enc(s)
    if b"\0" in b:
        raise ValueError("a protocol string cannot contain NUL")
    return b + b"\0"


def _cbytes(b: bytes) -> bytes:
    if b"\0" in b:
        raise ValueError("a protocol string cannot contain NUL")
    return b + b"\0"


def _display_cstr(s: str) -> bytes:
    """For texts we emit to clients (errors): never fail, never break framing."""
    return s.replace("\0", "").encode("utf-8", "replace") + b"\0"


# --- decoding helpers -----------------------------------------------------------------------------------


def _b(body: Buf) -> bytes:
    return body if type(body) is bytes else bytes(body)


def _read_cstr(b: bytes, pos: int) -> tuple[bytes, int]:
    end = b.find(b"\0", pos)
    if end < 0:
        raise ProtocolError("invalid string in message: missing NUL terminator")
    return b[pos:end], end + 1


def _read_str(b: bytes, pos: int) -> tuple[str, int]:
    end = b.find(b"\0", pos)
    if end < 0:
        raise ProtocolError("invalid string in message: missing NUL terminator")
    return b[pos:end].decode("utf-8", "surrogateescape"), end + 1


def _need(b: bytes, pos: int, n: int) -> None:
    if n < 0 or pos + n > len(b):
        raise ProtocolError("insufficient data left in message")


def _end(b: bytes, pos: int) -> None:
    if pos != len(b):
        raise ProtocolError("invalid message format: unexpected data at end of message")


def _read_u16(b: bytes, pos: int) -> tuple[int, int]:
    try:
        return _u16_unpack(b, pos)[0], pos + 2
    except struct.error:
        raise ProtocolError("insufficient data left in message") from None


def _read_i32(b: bytes, pos: int) -> tuple[int, int]:
    _need(b, pos, 4)
    return _i32_unpack(b, pos)[0], pos + 4


def _read_i16_array(b: bytes, pos: int) -> tuple[list[int], int]:
    try:
        n = _u16_unpack(b, pos)[0]
        pos += 2
        if n == 0:
            return [], pos
        if n == 1:
            return [_i16_unpack(b, pos)[0]], pos + 2
        return list(struct.unpack_from(f"!{n}h", b, pos)), pos + 2 * n
    except struct.error:
        raise ProtocolError("insufficient data left in message") from None


def _read_values(b: bytes, pos: int, n: int) -> tuple[list[bytes | None], int]:
    """``n`` length-prefixed values (int32 length, -1 for NULL), as in Bind and DataRow."""
    size = len(b)
    if pos + 4 * n > size:  # bound an attacker-chosen count before looping on it
        raise ProtocolError("insufficient data left in message")
    unpack = _i32_unpack
    values: list[bytes | None] = []
    append = values.append
    try:
        for _ in range(n):
            vlen = unpack(b, pos)[0]
            pos += 4
            if vlen == -1:
                append(None)
                continue
            end = pos + vlen
            if vlen < 0 or end > size:
                raise ProtocolError("insufficient data left in message")
            append(b[pos:end])
            pos = end
    except struct.error:
        raise ProtocolError("insufficient data left in message") from None
    return values, pos


def _check_formats(formats: Iterable[int]) -> None:
    for f in formats:
        if f not in (0, 1):
            raise ProtocolError(f"unsupported format code: {f}", "22023")


# --- records --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParseMsg:
    name: str
    query: str
    param_oids: list[int]


@dataclass(frozen=True, slots=True)
class BindMsg:
    portal: str
    statement: str
    param_formats: list[int]
    params: list[bytes | None]
    result_formats: list[int]

    def param_format(self, i: int) -> int:
        """The format of parameter ``i``: none listed means text, one listed applies to all."""
        f = self.param_formats
        return 0 if not f else f[0] if len(f) == 1 else f[i]


@dataclass(frozen=True, slots=True)
class ExecuteMsg:
    portal: str
    max_rows: int  # 0 (or negative) means no limit


@dataclass(frozen=True, slots=True)
class FieldDesc:
    name: str
    table_oid: int = 0
    column: int = 0
    type_oid: int = 25  # text
    type_size: int = -1
    type_mod: int = -1
    format: int = 0


# --- backend builders -----------------------------------------------------------------------------------


def _fields_response(
    mtype: int, severity: str, sqlstate: str, message: str, *, detail: str | None, hint: str | None
) -> bytes:
    if len(sqlstate) != 5 or not sqlstate.isascii() or not sqlstate.isalnum():
        raise ValueError(f"invalid SQLSTATE {sqlstate!r}")
    parts = [
        b"S",
        _display_cstr(severity),
        b"V",
        _display_cstr(severity),
        b"C",
        sqlstate.encode("ascii") + b"\0",
        b"M",
        _display_cstr(message),
    ]
    if detail is not None:
        parts += [b"D", _display_cstr(detail)]
    if hint is not None:
        parts += [b"H", _display_cstr(hint)]
    parts.append(b"\0")
    return _msg(mtype, b"".join(parts))


def error_response(
    severity: str, sqlstate: str, message: str, *, detail: str | None = None, hint: str | None = None
) -> bytes:
    """ErrorResponse with S (localized) and V (non-localized) severity, C, M and optional D, H.

    Texts are emitted as UTF-8 with any NUL removed: an error must always be sendable.
    """
    return _fields_response(ERROR_RESPONSE, severity, sqlstate, message, detail=detail, hint=hint)


def notice_response(
    severity: str, sqlstate: str, message: str, *, detail: str | None = None, hint: str | None = None
) -> bytes:
    return _fields_response(NOTICE_RESPONSE, severity, sqlstate, message, detail=detail, hint=hint)


_AUTH_OK: Final = _msg(AUTHENTICATION, _i32_pack(AUTH_OK))
_AUTH_CLEARTEXT: Final = _msg(AUTHENTICATION, _i32_pack(AUTH_CLEARTEXT_PASSWORD))


def authentication_ok() -> bytes:
    return _AUTH_OK


def authentication_cleartext_password() -> bytes:
    return _AUTH_CLEARTEXT


def authentication_md5_password(salt: bytes) -> bytes:
    if len(salt) != 4:
        raise ValueError("the MD5 salt is 4 bytes")
    return _msg(AUTHENTICATION, _i32_pack(AUTH_MD5_PASSWORD) + salt)


def authentication_sasl(mechanisms: Iterable[str]) -> bytes:
    names = b"".join(_cstr(m) for m in mechanisms if m)
    return _msg(AUTHENTICATION, _i32_pack(AUTH_SASL) + names + b"\0")


def authentication_sasl_continue(data: bytes) -> bytes:
    return _msg(AUTHENTICATION, _i32_pack(AUTH_SASL_CONTINUE) + data)


def authentication_sasl_final(data: bytes) -> bytes:
    return _msg(AUTHENTICATION, _i32_pack(AUTH_SASL_FINAL) + data)


def parameter_status(name: str, value: str) -> bytes:
    return _msg(PARAMETER_STATUS, _cstr(name) + _cstr(value))


def backend_key_data(pid: int, key: bytes) -> bytes:
    """Key is 4 bytes for protocol 3.0; 3.2 allows up to 256 (the caller picks per negotiated version)."""
    if not MIN_CANCEL_KEY <= len(key) <= MAX_CANCEL_KEY:
        raise ValueError("a cancel key is 4 to 256 bytes")
    return _msg(BACKEND_KEY_DATA, _i32_pack(pid) + key)


_READY: Final = {s: _msg(READY_FOR_QUERY, s) for s in (b"I", b"T", b"E")}


def ready_for_query(status: bytes) -> bytes:
    try:
        return _READY[bytes(status)]
    except KeyError:
        raise ValueError(f"invalid transaction status {status!r}") from None


def negotiate_protocol_version(newest_minor: int, unrecognized: Sequence[str]) -> bytes:
    """NegotiateProtocolVersion; the wire carries the full version word (major << 16 | minor), as PostgreSQL
    and libpq do, although the docs say "minor"."""
    body = _II.pack((PROTOCOL_MAJOR << 16) | newest_minor, len(unrecognized))
    return _msg(NEGOTIATE_PROTOCOL_VERSION, body + b"".join(_cstr(o) for o in unrecognized))


def command_complete(tag: str) -> bytes:
    return _msg(COMMAND_COMPLETE, _cstr(tag))


def row_description(fields: Sequence[FieldDesc]) -> bytes:
    parts = [_U16.pack(len(fields))]
    pack = _FIELD.pack
    for f in fields:
        parts.append(_cstr(f.name))
        parts.append(pack(f.table_oid, f.column, f.type_oid, f.type_size, f.type_mod, f.format))
    return _msg(ROW_DESCRIPTION, b"".join(parts))


_NULL: Final = _i32_pack(-1)


def data_row(values: Sequence[bytes | None]) -> bytes:
    parts = [_U16.pack(len(values))]
    for v in values:
        if v is None:
            parts.append(_NULL)
        else:
            parts.append(_i32_pack(len(v)))
            parts.append(v)
    return _msg(DATA_ROW, b"".join(parts))


_EMPTY_QUERY: Final = _msg(EMPTY_QUERY_RESPONSE, b"")
_SYNC: Final = _msg(SYNC, b"")
_FLUSH: Final = _msg(FLUSH, b"")
_TERMINATE: Final = _msg(TERMINATE, b"")


def empty_query_response() -> bytes:
    return _EMPTY_QUERY


def parse_complete() -> bytes:
    return _msg(PARSE_COMPLETE, b"")


def bind_complete() -> bytes:
    return _msg(BIND_COMPLETE, b"")


def no_data() -> bytes:
    return _msg(NO_DATA, b"")


# --- frontend builders ----------------------------------------------------------------------------------


def startup_message(params: Mapping[str, str], minor: int = 0) -> bytes:
    body = _I32.pack((PROTOCOL_MAJOR << 16) | minor)
    body += b"".join(_cstr(k) + _cstr(v) for k, v in params.items()) + b"\0"
    return _i32_pack(len(body) + 4) + body


_SSL_REQUEST: Final = _II.pack(8, 80877103)


def ssl_request() -> bytes:
    return _SSL_REQUEST


def gssenc_request() -> bytes:
    return _II.pack(8, 80877104)


def cancel_request(pid: int, key: bytes) -> bytes:
    if not MIN_CANCEL_KEY <= len(key) <= MAX_CANCEL_KEY:
        raise ValueError("a cancel key is 4 to 256 bytes")
    return _II.pack(12 + len(key), 80877102) + _i32_pack(pid) + key


def password_message(data: bytes) -> bytes:
    """PasswordMessage for cleartext or md5: ``data`` WITHOUT its terminator; the NUL is added here."""
    return _msg(PASSWORD, _cbytes(data))


def sasl_initial_response(mechanism: str, data: bytes | None) -> bytes:
    """SASLInitialResponse; ``data=None`` sends length -1 (no initial response)."""
    tail = _NULL if data is None else _i32_pack(len(data)) + data
    return _msg(PASSWORD, _cstr(mechanism) + tail)


def sasl_response(data: bytes) -> bytes:
    return _msg(PASSWORD, data)


def query(sql: str) -> bytes:
    return _msg(QUERY, _cstr(sql))


def terminate() -> bytes:
    return _TERMINATE


def sync() -> bytes:
    return _SYNC


def flush() -> bytes:
    return _FLUSH


def parse(name: str, sql: str, param_oids: Sequence[int] = ()) -> bytes:
    oids = struct.pack(f"!H{len(param_oids)}I", len(param_oids), *param_oids)
    return _msg(PARSE, _cstr(name) + _cstr(sql) + oids)


def bind(
    portal: str,
    statement: str,
    params: Sequence[bytes | None],
    param_formats: Sequence[int] = (),
    result_formats: Sequence[int] = (),
) -> bytes:
    parts = [
        _cstr(portal),
        _cstr(statement),
        struct.pack(f"!H{len(param_formats)}h", len(param_formats), *param_formats),
        _U16.pack(len(params)),
    ]
    for v in params:
        if v is None:
            parts.append(_NULL)
        else:
            parts.append(_i32_pack(len(v)))
            parts.append(v)
    parts.append(struct.pack(f"!H{len(result_formats)}h", len(result_formats), *result_formats))
    return _msg(BIND, b"".join(parts))


def execute(portal: str = "", max_rows: int = 0) -> bytes:
    return _msg(EXECUTE, _cstr(portal) + _i32_pack(max_rows))


def describe(kind: str, name: str = "") -> bytes:
    if kind not in ("S", "P"):
        raise ValueError("describe kind is 'S' or 'P'")
    return _msg(DESCRIBE, kind.encode() + _cstr(name))


def close(kind: str, name: str = "") -> bytes:
    if kind not in ("S", "P"):
        raise ValueError("close kind is 'S' or 'P'")
    return _msg(CLOSE, kind.encode() + _cstr(name))


def copy_fail(message: str) -> bytes:
    return _msg(COPY_FAIL, _cstr(message))


# --- frontend parsers -----------------------------------------------------------------------------------


def parse_query(body: Buf) -> str:
    b = _b(body)
    sql, pos = _read_str(b, 0)
    _end(b, pos)
    return sql


def parse_parse(body: Buf) -> ParseMsg:
    b = _b(body)
    name, pos = _read_str(b, 0)
    sql, pos = _read_str(b, pos)
    n, pos = _read_u16(b, pos)
    _need(b, pos, 4 * n)
    oids = list(struct.unpack_from(f"!{n}I", b, pos))
    _end(b, pos + 4 * n)
    return ParseMsg(name, sql, oids)


def parse_bind(body: Buf) -> BindMsg:
    b = _b(body)
    portal, pos = _read_str(b, 0)
    stmt, pos = _read_str(b, pos)
    param_formats, pos = _read_i16_array(b, pos)
    _check_formats(param_formats)
    nparams, pos = _read_u16(b, pos)
    nf = len(param_formats)
    if nf > 1 and nf != nparams:
        raise ProtocolError(f"bind message has {nf} parameter formats but {nparams} parameters")
    params, pos = _read_values(b, pos, nparams)
    result_formats, pos = _read_i16_array(b, pos)
    _check_formats(result_formats)
    _end(b, pos)
    return BindMsg(portal, stmt, param_formats, params, result_formats)


def parse_execute(body: Buf) -> ExecuteMsg:
    b = _b(body)
    portal, pos = _read_str(b, 0)
    max_rows, pos = _read_i32(b, pos)
    _end(b, pos)
    return ExecuteMsg(portal, max_rows)


def _parse_kind_name(body: Buf, what: str) -> tuple[str, str]:
    b = _b(body)
    if not b or b[0] not in b"SP":
        raise ProtocolError(f"invalid {what} message subtype {b[:1]!r}")
    name, pos = _read_str(b, 1)
    _end(b, pos)
    return chr(b[0]), name


def parse_describe(body: Buf) -> tuple[str, str]:
    """``("S", statement)`` or ``("P", portal)``."""
    return _parse_kind_name(body, "DESCRIBE")


def parse_close(body: Buf) -> tuple[str, str]:
    return _parse_kind_name(body, "CLOSE")


def parse_password(body: Buf) -> bytes:
    """Cleartext/md5 PasswordMessage: exactly one NUL, at the end (PostgreSQL's own check)."""
    b = _b(body)
    end = b.find(b"\0")
    if end < 0 or end != len(b) - 1:
        raise ProtocolError("invalid password packet size")
    return b[:end]


def parse_sasl_initial_response(body: Buf) -> tuple[str, bytes | None]:
    """``(mechanism, data)``; data is None when the client sent length -1 (no initial response)."""
    b = _b(body)
    mech, pos = _read_str(b, 0)
    n, pos = _read_i32(b, pos)
    if n == -1:
        _end(b, pos)
        return mech, None
    _need(b, pos, n)
    _end(b, pos + n)
    return mech, b[pos:]


def parse_copy_fail(body: Buf) -> str:
    return parse_query(body)


# --- backend parsers ------------------------------------------------------------------------------------


def parse_authentication(body: Buf) -> tuple[int, bytes]:
    b = _b(body)
    code, pos = _read_i32(b, 0)
    return code, b[pos:]


def parse_sasl_mechanisms(payload: Buf) -> list[str]:
    """The AuthenticationSASL payload: NUL-terminated names ending with an empty one."""
    b = _b(payload)
    names: list[str] = []
    pos = 0
    while True:
        raw, pos = _read_cstr(b, pos)
        if not raw:
            break
        names.append(raw.decode("utf-8", "replace"))
    _end(b, pos)
    return names


def parse_error_fields(body: Buf) -> dict[str, str]:
    """ErrorResponse/NoticeResponse fields, code char -> value (display text: undecodable bytes replaced)."""
    b = _b(body)
    fields: dict[str, str] = {}
    pos = 0
    size = len(b)
    while True:
        if pos >= size:
            raise ProtocolError("invalid error fields: missing terminator")
        code = b[pos]
        pos += 1
        if code == 0:
            break
        raw, pos = _read_cstr(b, pos)
        fields[chr(code)] = raw.decode("utf-8", "replace")
    _end(b, pos)
    return fields


def parse_command_complete(body: Buf) -> str:
    b = _b(body)
    raw, pos = _read_cstr(b, 0)
    _end(b, pos)
    return raw.decode("utf-8", "replace")


_ROW_TAGS: Final = frozenset({"SELECT", "UPDATE", "DELETE", "MERGE", "COPY", "FETCH", "MOVE"})


def command_tag_rows(tag: str) -> int | None:
    """Rows affected/returned for tags that carry a count; None for tags that do not (CREATE TABLE, ...)."""
    parts = tag.split(" ")
    if len(parts) == 2 and parts[0] in _ROW_TAGS:
        count = parts[1]
    elif len(parts) == 3 and parts[0] == "INSERT" and _is_count(parts[1]):
        count = parts[2]
    else:
        return None
    return int(count) if _is_count(count) else None


def _is_count(s: str) -> bool:
    return s.isascii() and s.isdigit()


def parse_parameter_status(body: Buf) -> tuple[str, str]:
    b = _b(body)
    name, pos = _read_str(b, 0)
    value, pos = _read_str(b, pos)
    _end(b, pos)
    return name, value


def parse_backend_key_data(body: Buf) -> tuple[int, bytes]:
    b = _b(body)
    pid, pos = _read_i32(b, 0)
    key = b[pos:]
    if not MIN_CANCEL_KEY <= len(key) <= MAX_CANCEL_KEY:
        raise ProtocolError(f"invalid cancel key length {len(key)}")
    return pid, key


def parse_ready_for_query(body: Buf) -> bytes:
    b = _b(body)
    if len(b) != 1 or b not in (b"I", b"T", b"E"):
        raise ProtocolError(f"invalid ReadyForQuery status {b[:8]!r}")
    return b


def parse_negotiate_protocol_version(body: Buf) -> tuple[int, list[str]]:
    """``(newest_minor, unrecognized options)``."""
    b = _b(body)
    version, pos = _read_i32(b, 0)
    n, pos = _read_i32(b, pos)
    if version >> 16 != PROTOCOL_MAJOR:
        raise ProtocolError(f"invalid protocol version {version >> 16}.{version & 0xFFFF} in negotiation")
    if n < 0 or n > len(b) - pos:
        raise ProtocolError("insufficient data left in message")
    options: list[str] = []
    for _ in range(n):
        opt, pos = _read_str(b, pos)
        options.append(opt)
    _end(b, pos)
    return version & 0xFFFF, options


def parse_row_description(body: Buf) -> list[FieldDesc]:
    b = _b(body)
    n, pos = _read_u16(b, 0)
    _need(b, pos, n * (1 + _FIELD_SIZE))
    unpack = _FIELD.unpack_from
    size = len(b)
    fields: list[FieldDesc] = []
    for _ in range(n):
        name, pos = _read_str(b, pos)
        if pos + _FIELD_SIZE > size:
            raise ProtocolError("insufficient data left in message")
        fields.append(FieldDesc(name, *unpack(b, pos)))
        pos += _FIELD_SIZE
    _end(b, pos)
    return fields


def parse_data_row(body: Buf) -> list[bytes | None]:
    b = _b(body)
    n, pos = _read_u16(b, 0)
    values, pos = _read_values(b, pos, n)
    _end(b, pos)
    return values


def parse_parameter_description(body: Buf) -> list[int]:
    b = _b(body)
    n, pos = _read_u16(b, 0)
    _need(b, pos, 4 * n)
    _end(b, pos + 4 * n)
    return list(struct.unpack_from(f"!{n}I", b, pos))


def parse_copy_response(body: Buf) -> tuple[int, list[int]]:
    """CopyIn/CopyOut/CopyBothResponse: ``(overall_format, column_formats)``."""
    b = _b(body)
    _need(b, 0, 1)
    overall = b[0]
    formats, pos = _read_i16_array(b, 1)
    _end(b, pos)
    if overall not in (0, 1):
        raise ProtocolError(f"unsupported COPY format {overall}")
    _check_formats(formats)
    return overall, formats


def parse_notification(body: Buf) -> tuple[int, str, str]:
    b = _b(body)
    pid, pos = _read_i32(b, 0)
    channel, pos = _read_str(b, pos)
    payload, pos = _read_str(b, pos)
    _end(b, pos)
    return pid, channel, payload
