"""The JSON Schema files: loading, ``$ref`` resolution without network, and validation.

Validation follows JSON Schema 2020-12 with three deliberate differences from the ``jsonschema``
library's defaults, so that this validator and the pydantic models accept exactly the same events:

* ``pattern`` uses ECMA-262 anchoring as the specification requires: ``$`` matches only at the end of
  the string. (Python's ``$`` also matches before a final newline, which would let ``"1.0\\n"`` pass.)
* ``format: date-time`` is asserted: the timestamp must be a real calendar instant.
* ``integer`` excludes floats such as ``5.0`` and ``number`` excludes NaN and infinities; neither has
  a place in canonical (RFC 8785) JSON.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Iterator, Mapping
from functools import cache, lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any, Final

from schemas.errors import EventInvalid, render_path, safe_name
from schemas.ids import parse_utc

if TYPE_CHECKING:  # jsonschema and referencing are imported on first use: most importers only parse
    from jsonschema import ValidationError
    from referencing import Registry

__all__ = [
    "ENVELOPE",
    "load_schema",
    "pci_requirements",
    "schema_registry",
    "schema_types",
    "validate",
    "validator",
]

ENVELOPE: Final = "envelope"
"""Name of the envelope schema for :func:`load_schema`."""

_SUFFIX: Final = ".schema.json"


@cache
def _documents() -> Mapping[str, Mapping[str, Any]]:
    """Every schema file, by name (``envelope`` or an event type), read once from the package."""
    folder = resources.files("schemas").joinpath("json")
    docs: dict[str, Mapping[str, Any]] = {}
    for entry in folder.iterdir():
        if entry.name.endswith(_SUFFIX):
            docs[entry.name.removesuffix(_SUFFIX)] = json.loads(entry.read_text(encoding="utf-8"))
    return docs


@cache
def schema_types() -> tuple[str, ...]:
    """Event types that have a schema file, sorted."""
    return tuple(sorted(name for name in _documents() if name != ENVELOPE))


def _document(name: str) -> Mapping[str, Any]:
    try:
        return _documents()[name]
    except KeyError:
        raise KeyError(f"no schema named {safe_name(name)}") from None


def load_schema(name: str) -> dict[str, Any]:
    """Return a copy of a schema: ``"envelope"`` or an event type such as ``"command.executed"``."""
    return copy.deepcopy(dict(_document(name)))


@cache
def schema_registry() -> Registry[Any]:
    """A ``referencing`` registry of every schema file by ``$id``; nothing is ever fetched."""
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    resources_ = [
        (doc["$id"], Resource.from_contents(doc, default_specification=DRAFT202012))
        for doc in _documents().values()
    ]
    return Registry().with_resources(resources_).crawl()


def pci_requirements(event_type: str) -> tuple[str, ...]:
    """Default PCI DSS v4.0.1 requirements an event type evidences (its file's ``x-pci-requirements``).

    Producers put at least these into ``pci``; the README's mapping table is the same list.
    """
    if event_type == ENVELOPE:
        raise KeyError("the envelope has no PCI mapping of its own")
    return tuple(_document(event_type)["x-pci-requirements"])


# --- the validator ------------------------------------------------------------------------------
def _ecma_anchors(pattern: str) -> str:
    """Rewrite ``$`` outside character classes as ``\\Z`` so Python matches as ECMA-262 does."""
    out: list[str] = []
    in_class = escaped = False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "$":
            out.append(r"\Z")
            continue
        out.append(char)
    return "".join(out)


@lru_cache(maxsize=512)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(_ecma_anchors(pattern))


def _pattern(
    validator: Any, pattern: str, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and _compiled(pattern).search(instance) is None:
        from jsonschema import ValidationError

        yield ValidationError("does not match the pattern")  # the library's own message quotes the value


def _is_integer(checker: Any, instance: Any) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


def _is_number(checker: Any, instance: Any) -> bool:
    if isinstance(instance, bool):
        return False
    return isinstance(instance, int) or (isinstance(instance, float) and math.isfinite(instance))


def _is_date_time(instance: object) -> bool:
    if isinstance(instance, str):
        parse_utc(instance)
    return True


@cache
def _validator_parts() -> tuple[Any, Any]:
    """The extended validator class and its format checker, built once on first use."""
    from jsonschema import Draft202012Validator, FormatChecker, validators

    formats = FormatChecker(formats=())
    formats.checks("date-time", raises=ValueError)(_is_date_time)
    extended = validators.extend(
        Draft202012Validator,
        validators={"pattern": _pattern},
        type_checker=Draft202012Validator.TYPE_CHECKER.redefine_many(
            {"integer": _is_integer, "number": _is_number}
        ),
    )
    return extended, formats


def _without_dialect(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in doc.items() if key != "$schema"}


@cache
def _validation_registry() -> Registry[Any]:
    """Like :func:`schema_registry`, minus each root's ``$schema``.

    ``jsonschema`` switches to its stock validator class whenever a ``$ref`` lands on a resource that
    declares ``$schema``, which would silently drop the extensions above for the envelope. Every file
    is 2020-12, so the dialect is given once, as the default, instead.
    """
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    resources_ = [
        (doc["$id"], Resource.from_contents(_without_dialect(doc), default_specification=DRAFT202012))
        for doc in _documents().values()
    ]
    return Registry().with_resources(resources_).crawl()


@cache
def validator(event_type: str) -> Any:
    """The (cached) Draft 2020-12 validator of one schema: an event type, or ``"envelope"``.

    It is a ``jsonschema`` validator extended as described in the module docstring, so it offers the
    usual ``validate``/``iter_errors``/``is_valid``. Its error *messages* may quote values: prefer
    :func:`validate`, whose reasons never do.
    """
    schema = _without_dialect(_document(event_type))
    extended, formats = _validator_parts()
    return extended(schema, registry=_validation_registry(), format_checker=formats)


# --- reasons without values ---------------------------------------------------------------------
_PHRASES: Final[Mapping[str, str]] = {
    "enum": "not one of the allowed values",
    "const": "not the expected constant",
    "pattern": "does not match the required format",
    "format": "not a valid {expected}",
    "minLength": "too short (minLength {expected})",
    "maxLength": "too long (maxLength {expected})",
    "minimum": "below minimum {expected}",
    "maximum": "above maximum {expected}",
    "minItems": "too few items (minItems {expected})",
    "maxItems": "too many items (maxItems {expected})",
    "uniqueItems": "items are not unique",
}
"""Keyword → phrase; only schema-side values (limits, format names) are interpolated."""


def _unexpected(error: ValidationError) -> list[object]:
    instance = error.instance
    if not isinstance(instance, Mapping):
        return []
    known = set(error.schema.get("properties", {}))
    if error.validator == "unevaluatedProperties":
        known |= set(_document(ENVELOPE)["properties"])
    return [key for key in instance if key not in known]


def _phrase(error: ValidationError) -> tuple[list[str | int], str]:
    path: list[str | int] = list(error.absolute_path)
    keyword, expected = error.validator, error.validator_value
    if keyword == "required":
        missing = [name for name in expected if name not in error.instance]
        return [*path, missing[0]] if missing else path, "missing"
    if keyword in ("additionalProperties", "unevaluatedProperties"):
        extra = _unexpected(error)
        return path, f"unexpected property {safe_name(extra[0]) if extra else '(name withheld)'}"
    if keyword == "type":
        kinds = expected if isinstance(expected, list) else [expected]
        return path, f"wrong type (expected {' or '.join(kinds)})"
    return path, _PHRASES.get(keyword, "fails {keyword}").format(expected=expected, keyword=keyword)


def _reason(errors: list[ValidationError]) -> str:
    # When the envelope fails, 2020-12 drops its annotations and unevaluatedProperties then reports
    # every envelope property as unexpected: report the real failure instead.
    from jsonschema.exceptions import best_match

    specific = [e for e in errors if e.validator != "unevaluatedProperties"] or errors
    error = best_match(specific)
    path, phrase = _phrase(error)
    return f"{render_path(path)}: {phrase}"


def validate(event: Mapping[str, Any]) -> None:
    """Validate a decoded event against the schema of its ``type``.

    Raises :class:`schemas.EventInvalid` with a short reason naming the failing path and rule, never
    a value, and with no library exception chained to it. About a millisecond or two per event:
    :func:`schemas.parse_event` accepts exactly the same events (tested) far faster, so hot paths use it.
    """
    if not isinstance(event, Mapping):
        raise EventInvalid("(event): not a JSON object")
    if "type" not in event:
        raise EventInvalid("type: missing")
    event_type = event["type"]
    if not isinstance(event_type, str) or event_type not in schema_types():
        raise EventInvalid("type: unknown event type")
    errors = list(validator(event_type).iter_errors(event))
    if errors:
        raise EventInvalid(_reason(errors))
