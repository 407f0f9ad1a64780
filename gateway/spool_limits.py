"""What may be appended to the audit spool: the one admission rule for the store (``gateway.spool``)
and the gateway's pipe to it (``gateway.spool_link``), which both assign sequence numbers and must
refuse alike."""

from __future__ import annotations

from collections.abc import Container
from typing import Final

from gateway.spool_format import EVENT, MAX_RECORD, encode, human_bytes
from gateway.spool_waits import SpoolUnavailable

__all__ = ["SpoolLimits"]

_SUBJECT_CACHE: Final = 4096


class SpoolLimits:
    """Encodes a record if the spool may take it: under ``max_bytes``, except that the event completing
    an open intent may use a reserve of 1/16 more, so a full spool still closes what it opened."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._reserve = max_bytes // 16
        self._full_reason = f"spool is full ({human_bytes(max_bytes)})"
        self._subjects: dict[str, bytes] = {}

    def encode(  # noqa: PLR0917 - hot path: plain positional call
        self,
        kind: int,
        seq: int,
        subject: str,
        msg_id: str,
        payload: bytes,
        used: int,
        open_intents: Container[str],
    ) -> bytes:
        """The record's bytes; ``used`` is what the spool holds now. Raises SpoolUnavailable when full,
        ValueError for a record no spool can hold."""
        sb = self._subjects.get(subject)
        if sb is None:
            sb = subject.encode()
            if len(sb) > 0xFFFF:
                raise ValueError("subject too long")
            if len(self._subjects) > _SUBJECT_CACHE:
                self._subjects.clear()
            self._subjects[subject] = sb
        mb = msg_id.encode()
        if len(payload) > MAX_RECORD or len(mb) > 0xFFFF:
            raise ValueError(f"audit record too large ({len(payload)} bytes payload)")
        data = encode(kind, seq, sb, mb, payload)
        size = used + len(data)
        if size > self.max_bytes and not (
            kind == EVENT and msg_id in open_intents and size <= self.max_bytes + self._reserve
        ):
            raise SpoolUnavailable(self._full_reason)
        return data
