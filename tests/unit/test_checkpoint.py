"""Signed notes and checkpoints: the Go sumdb/note published example, tampering, rotation, parsing."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from evidence import merkle
from evidence.checkpoint import (
    Checkpoint,
    NoteError,
    NoteSigner,
    NoteVerifier,
    load_signing_key,
    open_note,
    sign_note,
)

# golang.org/x/mod/sumdb/note's documented example: its signer key (type byte 0x01 + Ed25519 seed), verifier
# key, text and signed note. Ed25519 is deterministic, so our signer must reproduce the note byte for byte.
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n\u2014 PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)


def _go_signer() -> NoteSigner:
    seed = base64.b64decode(GO_SKEY.split("+", 4)[4])  # the base64 itself holds a "+"
    assert seed[0] == 0x01
    return NoteSigner("PeterNeumann", Ed25519PrivateKey.from_private_bytes(seed[1:]))


def test_we_sign_exactly_like_the_go_reference() -> None:
    signer = _go_signer()
    assert signer.verifier.vkey == GO_VKEY
    assert open_note(GO_NOTE, [NoteVerifier.parse(GO_VKEY)]).text == GO_TEXT
    assert sign_note(GO_TEXT, [signer]) == GO_NOTE


def test_a_changed_note_or_signature_is_refused() -> None:
    verifier = NoteVerifier.parse(GO_VKEY)
    with pytest.raises(NoteError, match="does not verify"):
        open_note(GO_NOTE.replace("cryptography", "cryptographY"), [verifier])
    sig = GO_NOTE.rsplit(" ", 1)[1][:-1]
    raw = bytearray(base64.b64decode(sig))
    raw[10] ^= 1
    with pytest.raises(NoteError, match="does not verify"):
        open_note(GO_NOTE.replace(sig, base64.b64encode(bytes(raw)).decode()), [verifier])


def test_unknown_keys_are_ignored_but_one_trusted_signature_is_required() -> None:
    other = NoteSigner("PeterNeumann", Ed25519PrivateKey.generate())  # same name, another key id
    note = GO_NOTE + other.signature_line(GO_TEXT)
    opened = open_note(note, [NoteVerifier.parse(GO_VKEY)])
    assert opened.unknown_signatures == 1 and opened.verified_by == (NoteVerifier.parse(GO_VKEY),)
    with pytest.raises(NoteError, match="no signature from a trusted key"):
        open_note(GO_NOTE, [other.verifier])


@pytest.mark.parametrize(
    "note",
    [
        GO_TEXT,  # no signatures
        GO_NOTE[:-1],  # no final newline
        GO_NOTE.replace("\u2014 ", "-- "),
        GO_NOTE.replace("problem,\n", "problem,\r\n"),
        GO_NOTE.replace("x08go/", "x08go!"),
        GO_NOTE.replace("PeterNeumann x", "PeterNeumann  x"),
    ],
)
def test_malformed_notes_are_refused(note: str) -> None:
    with pytest.raises(NoteError):
        open_note(note, [NoteVerifier.parse(GO_VKEY)])


@pytest.mark.parametrize(
    "vkey",
    [
        GO_VKEY.replace("c74f20a3", "c74f20a4"),  # id does not match the key
        GO_VKEY.replace("c74f20a3", "C74F20A3"),
        GO_VKEY.replace("+ARpc", "+AhpC"),  # another type byte
        "PeterNeumann+c74f20a3",
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        GO_VKEY[:-4],
    ],
)
def test_bad_verifier_keys_are_refused(vkey: str) -> None:
    with pytest.raises(NoteError):
        NoteVerifier.parse(vkey)


def test_checkpoints_round_trip_and_survive_key_rotation() -> None:
    tree = merkle.MemoryTree([merkle.leaf_hash(bytes([i])) for i in range(10)])
    old = NoteSigner("pcigate.dev/ledger", Ed25519PrivateKey.generate())
    new = NoteSigner("pcigate.dev/ledger", Ed25519PrivateKey.generate())
    first = Checkpoint("pcigate.dev/ledger", 7, tree.root(7)).sign([old])
    second = Checkpoint("pcigate.dev/ledger", 10, tree.root(10)).sign([new])
    keys = [old.verifier, new.verifier]
    a = Checkpoint.open(first, keys, origin="pcigate.dev/ledger")
    b = Checkpoint.open(second, keys, origin="pcigate.dev/ledger")
    assert (a.size, a.root, b.size, b.root) == (7, tree.root(7), 10, tree.root(10))
    merkle.verify_consistency(a.size, b.size, tree.consistency_proof(7), a.root, b.root)
    with pytest.raises(NoteError, match=r"not 'other\.example/log'"):
        Checkpoint.open(first, keys, origin="other.example/log")
    with pytest.raises(NoteError, match="no signature from a trusted key"):
        Checkpoint.open(first, [new.verifier])


def test_the_checkpoint_text_is_the_c2sp_form() -> None:
    root = bytes(range(32))
    text = Checkpoint("example.com/log", 20852163, root).text()
    assert text == f"example.com/log\n20852163\n{base64.b64encode(root).decode()}\n"
    assert Checkpoint.parse(text) == Checkpoint("example.com/log", 20852163, root)
    assert Checkpoint.parse(text + "ext\n").extensions == ("ext",)


@pytest.mark.parametrize(
    "text",
    [
        "example.com/log\n7\n",
        "example.com/log\n07\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
        "example.com/log\n-1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
        "example.com/log\n7\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==\n",  # 31 bytes
        "example.com/log\n7\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n\n",
        "\n7\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
    ],
)
def test_malformed_checkpoints_are_refused(text: str) -> None:
    with pytest.raises(NoteError):
        Checkpoint.parse(text)


@given(st.integers(0, 2**63), st.binary(min_size=32, max_size=32))
def test_any_checkpoint_survives_sign_and_open(size: int, root: bytes) -> None:
    signer = _go_signer()
    checkpoint = Checkpoint("pcigate.dev/ledger", size, root)
    assert Checkpoint.open(checkpoint.sign([signer]), [signer.verifier]) == checkpoint


def test_the_ledger_key_file_is_pkcs8_pem() -> None:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert isinstance(load_signing_key(pem), Ed25519PrivateKey)
    with pytest.raises(NoteError, match="cannot be read"):
        load_signing_key(b"not a key")
