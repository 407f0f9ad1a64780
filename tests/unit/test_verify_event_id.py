"""evidence.verify.event_id_of: the fast top-level-id reader must answer exactly as json.loads does."""

from __future__ import annotations

import copy
import json
from typing import Any

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from evidence.verify import event_id_of
from tests.unit.test_schemas import examples


def _by_json(text: bytes) -> str | None:
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    value = obj.get("id") if isinstance(obj, dict) else None
    return value if isinstance(value, str) else None


def test_every_example_event() -> None:
    for name, event in examples().items():
        text = rfc8785.dumps(event)
        assert event_id_of(text) == event["id"], name


def test_a_nested_id_before_the_top_level_one_is_not_taken() -> None:
    # sorted keys put "data" (and "actor") before "id": access.granted's grantee has an "id" of its own
    event = copy.deepcopy(examples()["access.granted"])
    text = rfc8785.dumps(event)
    assert text.find(b'"id":') < text.rfind(b'"id":')
    assert event_id_of(text) == event["id"]
    event["data"]["extra"] = {"id": "decoy", "list": [{"id": "decoy2"}]}
    assert event_id_of(rfc8785.dumps(event)) == event["id"]


def test_tricky_texts() -> None:
    cases = [
        b'{"id":"a"}',
        b'{"a":{"id":"x"},"id":"b"}',
        b'{"a":"{","id":"c"}',  # a bracket inside a string
        b'{"a":"\\"id\\":\\"z\\"","id":"d"}',  # an id-looking escaped string before
        b'{"a\\"id":"x","id":"e"}',  # a name ending in "id
        b'{"id":"f","b":"\\u0069d"}',
        b'{"id":"g","\\u0069d":"h"}',  # a later duplicate, escaped: json keeps the last
        b'{"id":"i","x":{"id":"j"},"id" : "k"}',  # a later duplicate, spaced
        b'{"id" : "l"}',
        b'{"id": "m"}',
        b'{"x":{"id":"n"}}',  # only a nested id
        b'{"id":7}',
        b'{"id":null}',
        b'{"id":"o","id":"p"}',
        b'[{"id":"q"}]',
        b' {"id":"r"}',
        b'{"id":"s\\u00e9"}',
        b'{"id":"t"',  # not JSON
        b'{"x":["id",{"id":"u"}],"id":"v"}',
        b'{"x":"]]]","id":"w"}',
        b"{}",
        b"",
    ]
    for text in cases:
        assert event_id_of(text) == _by_json(text), text


_keys = st.sampled_from(["id", "a", "data", "actor", "zz", 'i"d', "id ", "{", "\\"])
_strings = st.text(alphabet=st.sampled_from(list('id"{}[]\\: ,xé\n')), max_size=8)
_json: Any = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | _strings,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(obj=st.dictionaries(_keys, _json, max_size=5), spaced=st.booleans())
def test_any_json_object(obj: dict[str, Any], spaced: bool) -> None:
    texts = [rfc8785.dumps(obj), json.dumps(obj).encode(), json.dumps(obj, separators=(",", ":")).encode()]
    if spaced:
        texts.append(json.dumps(obj, indent=1, ensure_ascii=False).encode())
    for text in texts:
        assert event_id_of(text) == _by_json(text), text
