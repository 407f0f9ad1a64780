"""The spool's record format: shared by the store (``gateway.spool``) and the gateway's side of the spool
process (``gateway.spool_link``), which encodes records itself so that the hot path is one pipe write.

A segment file starts with ``MAGIC``; each record is ``[u32 body length][u32 crc32(body)][body]`` with body
``[u8 kind][u64 seq][u16 subject length][u16 msg id length][subject][msg id][payload]``. A zero length
ends the records of a file (segments are zero-filled ahead of use).
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator

MAGIC = b"PGSPOOL1"
HEADER = struct.Struct("<II")  # body length, crc32(body)
_META = struct.Struct("<BQHH")  # kind, seq, subject length, msg id length
EVENT = 1
INTENT = 2
MAX_RECORD = 64 << 20
MAX_BODY = MAX_RECORD + 2 * 0xFFFF + _META.size
_READ_CHUNK = 1 << 20

Decoded = tuple[int, int, str, str, bytes, int]  # kind, seq, subject, msg id, payload, end offset


def human_bytes(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f} {unit}"
    return f"{n} B"


def encode(kind: int, seq: int, subject: bytes, msg_id: bytes, payload: bytes) -> bytes:
    body = b"".join((_META.pack(kind, seq, len(subject), len(msg_id)), subject, msg_id, payload))
    return HEADER.pack(len(body), zlib.crc32(body)) + body


def decode(buf: bytes, pos: int) -> Decoded | int:
    """A record at ``pos``; else 0 (end: zero header), -1 (damaged) or the byte count needed from ``pos``."""
    if len(buf) - pos < HEADER.size:
        return HEADER.size
    length: int
    crc: int
    length, crc = HEADER.unpack_from(buf, pos)
    if length == 0:
        return 0
    if length < _META.size or length > MAX_BODY:
        return -1
    stop = pos + HEADER.size + length
    if stop > len(buf):
        return stop - pos
    view = memoryview(buf)
    start = pos + HEADER.size
    if zlib.crc32(view[start:stop]) != crc:
        return -1
    kind, seq, slen, mlen = _META.unpack_from(buf, start)
    a = start + _META.size
    b = a + slen
    c = b + mlen
    if kind not in (EVENT, INTENT) or c > stop:
        return -1
    try:
        subject = bytes(view[a:b]).decode()
        msg_id = bytes(view[b:c]).decode()
    except UnicodeDecodeError:
        return -1
    return kind, seq, subject, msg_id, bytes(view[c:stop]), stop


def scan_fd(fd: int, off: int) -> Iterator[Decoded]:
    """Records from ``off`` to the first end/damage, reading in chunks (records may straddle chunks)."""
    want = _READ_CHUNK
    while True:
        buf = os.pread(fd, want, off)
        pos = 0
        while True:
            r = decode(buf, pos)
            if isinstance(r, int):
                break
            yield r[0], r[1], r[2], r[3], r[4], off + r[5]
            pos = r[5]
        if r > 0 and len(buf) == want and (pos > 0 or r > want):
            off += pos
            want = max(_READ_CHUNK, r)
            continue
        return
