"""Event ids are RFC 9562 UUIDv7 in increasing order; timestamps have the envelope's one form."""

from __future__ import annotations

import os
import re
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import format_utc, ids, new_event_id, parse_utc, utc_now
from schemas.ids import TIME_PATTERN
from schemas.models import UUID7_PATTERN


def _unix_ms(event_id: str) -> int:
    return uuid.UUID(event_id).int >> 80


def test_new_event_id_is_rfc9562_v7() -> None:
    before = time.time_ns() // 1_000_000
    event_id = new_event_id()
    after = time.time_ns() // 1_000_000
    parsed = uuid.UUID(event_id)
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert str(parsed) == event_id, "lowercase canonical form"
    assert re.fullmatch(UUID7_PATTERN, event_id)
    assert before <= _unix_ms(event_id) <= after + 1


def test_ids_strictly_increase_and_never_repeat() -> None:
    generated = [new_event_id() for _ in range(20_000)]
    assert generated == sorted(generated)
    assert len(set(generated)) == len(generated)
    assert [uuid.UUID(x).int for x in generated] == sorted(uuid.UUID(x).int for x in generated)


def test_ids_increase_when_the_clock_stands_still_or_steps_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ids, "_last_ms", -1)
    monkeypatch.setattr(ids, "_counter", 0)
    clock = iter([1_800_000_000_000] * 5_000 + [1_799_999_999_000] * 100)
    monkeypatch.setattr(time, "time_ns", lambda: next(clock) * 1_000_000)
    generated = [new_event_id() for _ in range(5_100)]
    assert generated == sorted(generated) and len(set(generated)) == len(generated)
    # 5 000 ids in one millisecond overflow the 12-bit counter: the next millisecond is borrowed.
    assert _unix_ms(generated[0]) == 1_800_000_000_000
    assert 1_800_000_000_001 <= _unix_ms(generated[-1]) <= 1_800_000_000_003
    assert all(uuid.UUID(x).version == 7 for x in generated)


def test_utc_now_has_the_envelope_form() -> None:
    now = utc_now()
    assert re.fullmatch(TIME_PATTERN, now)
    assert len(now) == 27
    assert abs(parse_utc(now) - datetime.now(UTC)) < timedelta(seconds=5)


def test_format_utc_converts_to_utc_and_refuses_naive_times() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert format_utc(datetime(2026, 11, 22, 3, 2, 3, 120, tzinfo=plus_two)) == "2026-11-22T01:02:03.000120Z"
    with pytest.raises(ValueError, match="naive"):
        format_utc(datetime(2026, 11, 22, 1, 2, 3))


@settings(database=None)
@given(st.datetimes(min_value=datetime(1970, 1, 1), timezones=st.just(UTC)))
def test_parse_utc_inverts_format_utc(moment: datetime) -> None:
    assert parse_utc(format_utc(moment)) == moment


@pytest.mark.parametrize(
    "text",
    [
        "2026-02-30T01:02:03.123456Z",
        "2026-11-22T01:02:03Z",
        "2026-11-22T01:02:03.123456+00:00",
        "2026-11-22 01:02:03.123456Z",
        "2026-11-22T01:02:03.123456Z\n",
        "2026-11-22T24:00:00.000000Z",
    ],
)
def test_parse_utc_refuses_other_forms_without_quoting_them(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_utc(text)
    assert "2026" not in str(caught.value)


def test_a_forked_child_does_not_repeat_the_parents_random_bits() -> None:
    """The random pool is per process: a child must not hand out the ids its parent will."""
    new_event_id()  # the parent's pool is filled
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report its next ids' random parts and leave without running pytest's teardown
        os.close(read)
        os.write(write, "\n".join(new_event_id()[-12:] for _ in range(8)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split())
    os.waitpid(pid, 0)
    parent = {new_event_id()[-12:] for _ in range(8)}
    assert len(child) == 8
    assert not child & parent
