"""evidence.entries: which messages become ledger entries, and how refused ones are kept without card data."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

import pytest
import rfc8785

from evidence import merkle
from evidence.entries import to_entry
from evidence.store import NewEntry, Quarantined
from tests.unit.test_schemas import examples

EXAMPLES = examples()
VISA_TEST_PAN = "4111111111111111"  # the brand's published test number


def _raw(event: dict[str, Any]) -> bytes:
    return json.dumps(event, indent=1).encode()  # not canonical on purpose


@pytest.mark.parametrize("event_type", sorted(EXAMPLES))
def test_every_valid_example_becomes_an_entry(event_type: str) -> None:
    event = EXAMPLES[event_type]
    entry = to_entry(_raw(event), stream_seq=7, subject=f"pcigate.audit.{event_type}", msg_id=event["id"])
    assert isinstance(entry, NewEntry)
    assert entry.canonical == rfc8785.dumps(event)
    assert entry.event_id == uuid.UUID(event["id"]) and entry.event_type == event_type
    assert entry.stream_seq == 7
    assert set(event["pci"]) <= set(entry.pci) and "10.3.2" in entry.pci
    assert merkle.leaf_hash(entry.canonical) == hashlib.sha256(b"\x00" + rfc8785.dumps(event)).digest()


def _refused(
    payload: bytes, subject: str = "pcigate.audit.auth.failed", msg_id: str | None = None
) -> Quarantined:
    got = to_entry(payload, stream_seq=3, subject=subject, msg_id=msg_id)
    assert isinstance(got, Quarantined), got
    assert got.stream_seq == 3 and got.subject == subject
    assert got.sha256 == hashlib.sha256(payload).digest() and got.size == len(payload)
    return got


def test_refusals_name_the_rule() -> None:
    event = EXAMPLES["auth.failed"]
    assert "not UTF-8 JSON" in _refused(b"\xff{").reason
    assert "not a JSON object" in _refused(b"[1]").reason
    assert "duplicate member" in _refused(b'{"a": 1, "a": 2}').reason
    assert "NaN" in _refused(b'{"a": NaN}').reason
    assert "another type's subject" in _refused(_raw(event), subject="pcigate.audit.session.opened").reason
    assert "message id" in _refused(_raw(event), msg_id=str(uuid.uuid4())).reason
    assert _refused(_raw({**event, "type": "auth.maybe"})).reason.startswith("invalid event:")


def test_a_refused_event_keeps_no_card_number() -> None:
    event = {**EXAMPLES["auth.failed"], "card": VISA_TEST_PAN}
    got = _refused(_raw(event))
    assert "unexpected property 'card'" in got.reason
    assert VISA_TEST_PAN.encode() not in got.payload_masked and VISA_TEST_PAN not in got.reason
    assert b"################" in got.payload_masked
