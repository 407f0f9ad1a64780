"""Self-contained inclusion proofs ("proof bundles") and their offline check. Pure: no I/O.

A proof bundle lets anyone holding the log's public key check, with no access to the ledger, that one
event is entry ``leaf_index`` of the signed tree of ``tree_size`` entries. It is one JSON object
(``docs/ledger.md`` documents it field by field):

``format``
    ``"pcigate-inclusion-proof/1"`` (:data:`BUNDLE_FORMAT`); a checker refuses any other value.
``log_origin``
    The log's name: the first line of its checkpoints.
``event_id``
    The event's ``id``.
``event``
    The event's RFC 8785 canonical JSON as text; its UTF-8 bytes are exactly the bytes that were hashed.
``leaf_index``, ``tree_size``
    The entry's 0-based index and the size of the signed tree the proof is against (``leaf_index <
    tree_size``).
``inclusion_path``
    The RFC 9162 §2.1.3 inclusion path, leaf side first, each hash as 64 lowercase hex digits.
``checkpoint``
    The whole C2SP signed note of the checkpoint of ``tree_size``, signature lines included.
``verifier_keys``
    Verifier key strings of the trusted keys that signed the checkpoint when the bundle was made. They
    say which key to look for; a checker trusts only keys it obtained out of band
    (``pcigate ledger keys``), never the ones a bundle carries.

:func:`check_bundle` verifies a bundle: the checkpoint's signature by a trusted key, its origin and size,
the leaf SHA-256(0x00 || event bytes), the RFC 9162 inclusion of that leaf in the checkpoint's root, and
that the event inside is one JSON object whose ``id`` is the bundle's ``event_id``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from evidence import merkle
from evidence.checkpoint import Checkpoint, NoteError, NoteVerifier, open_note

__all__ = [
    "BUNDLE_FORMAT",
    "BundleCheck",
    "BundleFormatError",
    "ProofBundle",
    "check_bundle",
]

BUNDLE_FORMAT: Final = "pcigate-inclusion-proof/1"
_FIELDS: Final = (
    "format",
    "log_origin",
    "event_id",
    "event",
    "leaf_index",
    "tree_size",
    "inclusion_path",
    "checkpoint",
    "verifier_keys",
)
_HEX32 = re.compile(r"[0-9a-f]{64}")
_MAX_PATH: Final = 64  # a tree of 2**63 leaves needs 63 hashes


class BundleFormatError(ValueError):
    """A bundle that is not a well-formed ``pcigate-inclusion-proof/1`` object."""


@dataclass(frozen=True, slots=True)
class ProofBundle:
    """An inclusion proof that carries everything needed to check it offline (but the trusted keys)."""

    log_origin: str
    event_id: str
    event: str  # RFC 8785 canonical JSON; event.encode() are the hashed bytes
    leaf_index: int
    tree_size: int
    inclusion_path: tuple[bytes, ...]
    checkpoint: str  # the signed note
    verifier_keys: tuple[str, ...]

    @property
    def canonical(self) -> bytes:
        """The bytes the ledger hashed into the leaf."""
        return self.event.encode("utf-8")

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": BUNDLE_FORMAT,
            "log_origin": self.log_origin,
            "event_id": self.event_id,
            "event": self.event,
            "leaf_index": self.leaf_index,
            "tree_size": self.tree_size,
            "inclusion_path": [h.hex() for h in self.inclusion_path],
            "checkpoint": self.checkpoint,
            "verifier_keys": list(self.verifier_keys),
        }

    def to_json(self) -> str:
        """The bundle as JSON text (UTF-8, two-space indent, fields in documented order, final newline)."""
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> ProofBundle:
        """Parse a decoded bundle; raises :class:`BundleFormatError` naming the first problem."""
        if not isinstance(obj, Mapping):
            raise BundleFormatError("a proof bundle is a JSON object")
        if obj.get("format") != BUNDLE_FORMAT:
            raise BundleFormatError(f"not a {BUNDLE_FORMAT} bundle (format is {obj.get('format')!r})")
        missing = [f for f in _FIELDS if f not in obj]
        extra = sorted(set(obj) - set(_FIELDS))
        if missing or extra:
            raise BundleFormatError(f"bundle fields missing {missing}, unknown {extra}")
        for name in ("log_origin", "event_id", "event", "checkpoint"):
            if not isinstance(obj[name], str) or not obj[name]:
                raise BundleFormatError(f"{name} must be a non-empty string")
        for name in ("leaf_index", "tree_size"):
            value = obj[name]
            if type(value) is not int or value < 0:
                raise BundleFormatError(f"{name} must be a non-negative integer")
        path = obj["inclusion_path"]
        if not isinstance(path, list) or len(path) > _MAX_PATH:
            raise BundleFormatError(f"inclusion_path must be a list of at most {_MAX_PATH} hashes")
        if not all(isinstance(h, str) and _HEX32.fullmatch(h) for h in path):
            raise BundleFormatError("every inclusion_path element is 64 lowercase hex digits")
        keys = obj["verifier_keys"]
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise BundleFormatError("verifier_keys must be a list of verifier key strings")
        return cls(
            log_origin=obj["log_origin"],
            event_id=obj["event_id"],
            event=obj["event"],
            leaf_index=obj["leaf_index"],
            tree_size=obj["tree_size"],
            inclusion_path=tuple(bytes.fromhex(h) for h in path),
            checkpoint=obj["checkpoint"],
            verifier_keys=tuple(keys),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> ProofBundle:
        try:
            obj = json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise BundleFormatError("a proof bundle must be UTF-8 JSON") from None
        return cls.from_dict(obj)


@dataclass(frozen=True, slots=True)
class BundleCheck:
    """What :func:`check_bundle` found: ``ok``, or the ``problem`` that made it fail."""

    ok: bool
    problem: str | None = None
    event_id: str | None = None
    leaf_index: int | None = None
    tree_size: int | None = None
    root: bytes | None = None
    verified_by: tuple[str, ...] = ()  # verifier key strings of the trusted keys whose signature verified

    def __bool__(self) -> bool:
        return self.ok


def _fail(problem: str) -> BundleCheck:
    return BundleCheck(ok=False, problem=problem)


def _json_object(text: str) -> dict[str, Any] | None:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) != len(pairs):
            raise ValueError("duplicate member name")
        return obj

    try:
        obj = json.loads(text, object_pairs_hook=no_duplicates)
    except (ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


def _verifiers(trusted_vkeys: Iterable[str | NoteVerifier]) -> list[NoteVerifier]:
    return [k if isinstance(k, NoteVerifier) else NoteVerifier.parse(k) for k in trusted_vkeys]


def check_bundle(
    bundle: ProofBundle | Mapping[str, Any] | str | bytes, trusted_vkeys: Iterable[str | NoteVerifier]
) -> BundleCheck:
    """Check a proof bundle offline against the log's trusted public keys.

    ``bundle`` is a :class:`ProofBundle`, its decoded JSON object or its JSON text. ``trusted_vkeys`` are
    verifier key strings (``pcigate ledger keys``) or parsed verifiers; a malformed key raises
    ``evidence.checkpoint.NoteError`` (the caller's mistake, not the bundle's). Everything wrong with the
    bundle is a result with ``ok`` false and a ``problem`` naming the failed check — never an exception.
    """
    verifiers = _verifiers(trusted_vkeys)
    if not verifiers:
        raise NoteError("check_bundle needs at least one trusted verifier key")
    try:
        if isinstance(bundle, ProofBundle):
            b = bundle
        elif isinstance(bundle, str | bytes):
            b = ProofBundle.from_json(bundle)
        else:
            b = ProofBundle.from_dict(bundle)
    except BundleFormatError as exc:
        return _fail(f"malformed bundle: {exc}")

    # 1. the checkpoint: signed by a trusted key, of this log, of this size
    try:
        opened = open_note(b.checkpoint, verifiers)
        checkpoint = Checkpoint.parse(opened.text)
    except NoteError as exc:
        return _fail(f"checkpoint: {exc}")
    if checkpoint.origin != b.log_origin:
        return _fail(f"checkpoint: it is for log {checkpoint.origin!r}, not {b.log_origin!r}")
    if checkpoint.size != b.tree_size:
        return _fail(f"checkpoint: it signs size {checkpoint.size}, the bundle says {b.tree_size}")

    # 2. the leaf and its RFC 9162 inclusion in the signed root
    leaf = merkle.leaf_hash(b.canonical)
    try:
        merkle.verify_inclusion(leaf, b.leaf_index, b.tree_size, b.inclusion_path, checkpoint.root)
    except merkle.ProofError as exc:
        return _fail(f"inclusion: {exc}")

    # 3. the event is the one the bundle names
    event = _json_object(b.event)
    if event is None:
        return _fail("event: not one JSON object without duplicate member names")
    if event.get("id") != b.event_id:
        return _fail("event: its id is not the bundle's event_id")

    return BundleCheck(
        ok=True,
        event_id=b.event_id,
        leaf_index=b.leaf_index,
        tree_size=b.tree_size,
        root=checkpoint.root,
        verified_by=tuple(v.vkey for v in opened.verified_by),
    )
