"""From a JetStream message to a ledger entry, or to quarantine with a reason. Pure: no I/O.

An event enters the ledger only if it is one JSON object without duplicate names, satisfies the v1
contract (``schemas.parse_event``), arrived on its own type's subject, and carries every PCI DSS 10.2.2
detail. What is hashed is the RFC 8785 canonical form of the object as received (``evidence.canonical``),
so anyone can recompute the leaf from the stored bytes.

A refused message is never dropped: it becomes a :class:`Quarantined` record. Its payload is kept only
with every run of 8 or more digits replaced by ``#``: a message that failed validation may be failing
precisely because it carries a card number, and the ledger must not store clear card data.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Final

from evidence.canonical import JsonRefusedError, canonical_of_received, parse_received
from evidence.pci import missing_10_2_2, requirements
from evidence.store import NewEntry, Quarantined
from schemas import EventInvalid, parse_event, parse_utc

__all__ = ["SUBJECT_PREFIX", "quarantine", "to_entry"]

SUBJECT_PREFIX: Final = "pcigate.audit."
MAX_EVENT_BYTES: Final = 1 << 20
_KEPT_BYTES: Final = 64 << 10
_DIGITS = re.compile(rb"\d{8,}")


class _RefusedError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def quarantine(
    payload: bytes, reason: str, *, stream_seq: int | None, subject: str, msg_id: str | None
) -> Quarantined:
    masked = _DIGITS.sub(lambda m: b"#" * len(m.group()), payload[:_KEPT_BYTES])
    return Quarantined(
        stream_seq, subject, msg_id, reason, hashlib.sha256(payload).digest(), len(payload), masked
    )


def to_entry(
    payload: bytes, *, stream_seq: int | None, subject: str, msg_id: str | None = None
) -> NewEntry | Quarantined:
    """The ledger entry for one message, or why it is quarantined."""
    try:
        return _entry(payload, stream_seq, subject, msg_id)
    except _RefusedError as refused:
        return quarantine(payload, refused.reason, stream_seq=stream_seq, subject=subject, msg_id=msg_id)


def _entry(payload: bytes, stream_seq: int | None, subject: str, msg_id: str | None) -> NewEntry:
    if len(payload) > MAX_EVENT_BYTES:
        raise _RefusedError(f"the event is larger than {MAX_EVENT_BYTES} bytes")
    try:
        obj = parse_received(payload)
    except JsonRefusedError as refused:
        raise _RefusedError(str(refused)) from None
    if not isinstance(obj, dict):
        raise _RefusedError("the payload is not a JSON object")
    try:
        event = parse_event(payload)  # pydantic validates the text itself: cheaper than the decoded dict
    except EventInvalid as invalid:
        raise _RefusedError(f"invalid event: {invalid.reason}") from None
    if subject != SUBJECT_PREFIX + event.type:
        raise _RefusedError(f"an event of type {event.type} arrived on another type's subject")
    if msg_id is not None and msg_id != event.id:
        raise _RefusedError("the message id is not the event id")
    missing = missing_10_2_2(obj)
    if missing:
        raise _RefusedError(f"PCI DSS 10.2.2 details missing: {', '.join(missing)}")
    try:  # the contract's objects are closed and name their members in ASCII
        canonical = canonical_of_received(obj, payload, ascii_names=True)
    except (ValueError, RecursionError):  # rfc8785's errors are ValueErrors
        raise _RefusedError("the event has no RFC 8785 form") from None
    return NewEntry(
        event_id=uuid.UUID(event.id),
        event_type=event.type,
        event_time=parse_utc(event.time),
        canonical=canonical,
        pci=requirements(obj),
        stream_seq=stream_seq,
        session_id=event.session_id,
        actor_sub=event.actor.sub,
    )
