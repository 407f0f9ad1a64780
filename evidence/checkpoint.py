"""Signed checkpoints: C2SP tlog-checkpoint bodies in C2SP signed notes, Ed25519. Pure: no I/O.

A checkpoint says "the log called ``origin`` had ``size`` entries with this RFC 9162 root", and the
note's signature lines say who vouches for it. The formats are the open ones transparency logs use, so
an auditor can check our checkpoints with any signed-note implementation (Go's
``golang.org/x/mod/sumdb/note`` among them) and our verifier accepts theirs; the tests pin that with the
Go package's published example.

Key rotation needs nothing special: every signature line names its key (name + 4-byte key id), a
verifier holds every public key the log has used (``pcigate ledger keys``), and unknown keys are ignored
as the spec requires — an old checkpoint still verifies after a new key took over.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from evidence.merkle import HASH_SIZE

__all__ = [
    "ED25519",
    "MAX_SIGNATURES",
    "Checkpoint",
    "NoteError",
    "NoteSigner",
    "NoteVerifier",
    "OpenedNote",
    "key_id",
    "load_signing_key",
    "open_note",
    "sign_note",
]

ED25519: Final = 0x01  # the signed-note signature type of Ed25519
MAX_SIGNATURES: Final = 100  # the spec: accept at least 16
MAX_NOTE_BYTES: Final = 1 << 20
_DASH: Final = "\u2014 "  # em dash, space: starts every signature line


class NoteError(ValueError):
    """A note, key or checkpoint that is malformed, unsigned by a trusted key, or badly signed."""


def _b64decode(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise NoteError(f"{what} is not base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise NoteError(f"{what} is not canonical base64")
    return raw


def _check_name(name: str) -> None:
    if not name or any(c.isspace() or c == "+" or not c.isprintable() for c in name):
        raise NoteError(f"invalid key name {name!r}: it must be non-empty, without spaces or '+'")


def key_id(name: str, public_key: bytes) -> int:
    """SHA-256(name || 0x0A || 0x01 || public key)[:4], big-endian (signed-note, Ed25519)."""
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([ED25519]) + public_key).digest()
    return int.from_bytes(digest[:4], "big")


def load_signing_key(pem: bytes) -> Ed25519PrivateKey:
    """The ledger's key file: an unencrypted PKCS#8 PEM Ed25519 private key."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise NoteError(f"the ledger signing key cannot be read: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise NoteError(f"the ledger signing key must be Ed25519, not {type(key).__name__}")
    return key


@dataclass(frozen=True, slots=True)
class NoteVerifier:
    """One trusted public key, as in a verifier key string ``<name>+<hex id>+<base64(0x01 || key)>``."""

    name: str
    key_id: int
    public_key: bytes

    @classmethod
    def parse(cls, vkey: str) -> NoteVerifier:
        name, sep1, rest = vkey.partition("+")
        hex_id, sep2, material = rest.partition("+")
        if not (sep1 and sep2) or len(hex_id) != 8 or hex_id != hex_id.lower():
            raise NoteError("a verifier key reads <name>+<8 hex digits>+<base64 key>")
        _check_name(name)
        try:
            kid = int(hex_id, 16)
        except ValueError:
            raise NoteError("a verifier key reads <name>+<8 hex digits>+<base64 key>") from None
        raw = _b64decode(material, "the verifier key")
        if len(raw) != 33 or raw[0] != ED25519:
            raise NoteError("only Ed25519 verifier keys (type 0x01, 32 bytes) are supported")
        if key_id(name, raw[1:]) != kid:
            raise NoteError(f"the verifier key of {name!r} does not match its key id {hex_id}")
        return cls(name, kid, raw[1:])

    @property
    def vkey(self) -> str:
        material = base64.b64encode(bytes([ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.key_id:08x}+{material}"

    def verify(self, text: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, text)
        except (InvalidSignature, ValueError):
            return False
        return True


class NoteSigner:
    """An Ed25519 key under a name (for checkpoints: the log's origin)."""

    def __init__(self, name: str, key: Ed25519PrivateKey) -> None:
        _check_name(name)
        self.name = name
        self._key = key
        public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.verifier = NoteVerifier(name, key_id(name, public), public)

    def signature_line(self, text: str) -> str:
        sig = self._key.sign(text.encode())
        blob = self.verifier.key_id.to_bytes(4, "big") + sig
        return f"{_DASH}{self.name} {base64.b64encode(blob).decode()}\n"


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise NoteError("a note's text must end with a newline")
    if any(c < " " and c != "\n" for c in text):
        raise NoteError("a note must not contain control characters other than newline")


def sign_note(text: str, signers: list[NoteSigner]) -> str:
    """``text`` followed by a blank line and one signature line per signer."""
    _check_text(text)
    if not signers:
        raise NoteError("a note needs at least one signature")
    return text + "\n" + "".join(s.signature_line(text) for s in signers)


@dataclass(frozen=True, slots=True)
class OpenedNote:
    text: str
    verified_by: tuple[NoteVerifier, ...]
    unknown_signatures: int


def open_note(note: str | bytes, verifiers: list[NoteVerifier]) -> OpenedNote:
    """Check ``note`` against the trusted keys: every signature of a known key must verify and at least
    one must; signatures of unknown keys are ignored. Raises NoteError otherwise."""
    if isinstance(note, bytes):
        if len(note) > MAX_NOTE_BYTES:
            raise NoteError(f"a note larger than {MAX_NOTE_BYTES} bytes is refused")
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError:
            raise NoteError("a note must be UTF-8") from None
    elif len(note) > MAX_NOTE_BYTES:
        raise NoteError(f"a note larger than {MAX_NOTE_BYTES} bytes is refused")
    cut = note.rfind("\n\n")
    if cut < 0 or not note.endswith("\n"):
        raise NoteError("malformed note: no blank line before the signatures, or no final newline")
    text, block = note[: cut + 1], note[cut + 2 :]
    _check_text(text)
    lines = block[:-1].split("\n")
    if not lines or len(lines) > MAX_SIGNATURES:
        raise NoteError(f"a note carries 1 to {MAX_SIGNATURES} signatures, not {len(lines)}")
    known = {(v.name, v.key_id): v for v in verifiers}
    verified: list[NoteVerifier] = []
    unknown = 0
    payload = text.encode()
    for line in lines:
        if not line.startswith(_DASH):
            raise NoteError("malformed signature line: it must start with an em dash and a space")
        name, sep, blob_b64 = line[len(_DASH) :].partition(" ")
        if not sep or " " in blob_b64:
            raise NoteError("malformed signature line: it reads '— <name> <base64>'")
        _check_name(name)
        blob = _b64decode(blob_b64, f"the signature of {name!r}")
        if len(blob) < 5:
            raise NoteError(f"the signature of {name!r} is too short")
        verifier = known.get((name, int.from_bytes(blob[:4], "big")))
        if verifier is None:
            unknown += 1
            continue
        if not verifier.verify(payload, blob[4:]):
            raise NoteError(f"the signature of {name}+{verifier.key_id:08x} does not verify")
        verified.append(verifier)
    if not verified:
        raise NoteError("no signature from a trusted key")
    return OpenedNote(text, tuple(verified), unknown)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A C2SP tlog-checkpoint body: origin, tree size, root hash (and opaque extension lines)."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise NoteError("a checkpoint's origin must be one non-empty line")
        if self.size < 0:
            raise NoteError("a checkpoint's size cannot be negative")
        if len(self.root) != HASH_SIZE:
            raise NoteError(f"a checkpoint's root is {HASH_SIZE} bytes")
        if any(not e or "\n" in e for e in self.extensions):
            raise NoteError("a checkpoint's extension lines must be non-empty single lines")

    def text(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode(), *self.extensions]
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        _check_text(text)
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise NoteError("a checkpoint has at least three lines: origin, size, root")
        origin, size_text, root_b64, *extensions = lines
        if not size_text.isdigit() or not size_text.isascii() or (size_text != "0" and size_text[0] == "0"):
            raise NoteError(f"a checkpoint's size must be a decimal without leading zeros, not {size_text!r}")
        root = _b64decode(root_b64, "the checkpoint's root")
        return cls(origin, int(size_text), root, tuple(extensions))

    def sign(self, signers: list[NoteSigner]) -> str:
        return sign_note(self.text(), signers)

    @classmethod
    def open(cls, note: str | bytes, verifiers: list[NoteVerifier], origin: str | None = None) -> Checkpoint:
        """Verify a signed checkpoint and parse it; with ``origin``, it must be that log's."""
        checkpoint = cls.parse(open_note(note, verifiers).text)
        if origin is not None and checkpoint.origin != origin:
            raise NoteError(f"the checkpoint is for log {checkpoint.origin!r}, not {origin!r}")
        return checkpoint
