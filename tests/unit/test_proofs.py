"""evidence.proofs: the inclusion-proof bundle and its offline check (pure, no I/O).

Every tampering test names the check that must catch it (``problem`` starts with that check's name), so a
test cannot pass because some other check happened to fail first.
"""

from __future__ import annotations

import ast
import base64
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evidence import merkle
from evidence.checkpoint import Checkpoint, NoteError, NoteSigner
from evidence.proofs import BUNDLE_FORMAT, BundleFormatError, ProofBundle, check_bundle
from schemas import new_event_id

ORIGIN = "pcigate.test/ledger"
SIGNER = NoteSigner(ORIGIN, Ed25519PrivateKey.generate())
VKEY = SIGNER.verifier.vkey


def _events(n: int) -> list[bytes]:
    return [
        rfc8785.dumps({"id": new_event_id(), "type": "command.executed", "n": i, "note": "café ✓"})
        for i in range(n)
    ]


def make_bundle(index: int = 5, size: int = 13, signers: list[NoteSigner] | None = None) -> ProofBundle:
    events = _events(size)
    tree = merkle.MemoryTree([merkle.leaf_hash(e) for e in events])
    note = Checkpoint(ORIGIN, size, tree.root()).sign(signers or [SIGNER])
    return ProofBundle(
        log_origin=ORIGIN,
        event_id=json.loads(events[index])["id"],
        event=events[index].decode(),
        leaf_index=index,
        tree_size=size,
        inclusion_path=tuple(tree.inclusion_proof(index)),
        checkpoint=note,
        verifier_keys=(VKEY,),
    )


def problem(bundle: Any, keys: list[str] | None = None) -> str:
    result = check_bundle(bundle, keys or [VKEY])
    assert not result.ok
    assert result.problem is not None
    return result.problem


@pytest.mark.parametrize(("index", "size"), [(0, 1), (0, 2), (1, 2), (5, 13), (12, 13), (7, 8), (8, 9)])
def test_a_genuine_bundle_checks(index: int, size: int) -> None:
    bundle = make_bundle(index, size)
    result = check_bundle(bundle, [VKEY])
    assert result.ok, result.problem
    assert (result.event_id, result.leaf_index, result.tree_size) == (bundle.event_id, index, size)
    assert result.verified_by == (VKEY,)
    assert bool(result)


def test_json_round_trip_keeps_the_exact_bytes() -> None:
    bundle = make_bundle()
    text = bundle.to_json()
    obj = json.loads(text)
    assert list(obj) == [
        "format",
        "log_origin",
        "event_id",
        "event",
        "leaf_index",
        "tree_size",
        "inclusion_path",
        "checkpoint",
        "verifier_keys",
    ]
    assert obj["format"] == BUNDLE_FORMAT == "pcigate-inclusion-proof/1"
    assert ProofBundle.from_json(text) == bundle
    assert ProofBundle.from_json(text).canonical == bundle.event.encode()
    assert check_bundle(text, [VKEY]).ok
    assert check_bundle(text.encode(), [VKEY]).ok
    assert check_bundle(obj, [VKEY]).ok


def test_a_changed_event_byte_fails_the_inclusion() -> None:
    bundle = make_bundle()
    # a byte outside the id: only the leaf hash can notice it
    tampered = replace(bundle, event=bundle.event.replace('"n":5', '"n":6'))
    assert tampered.event != bundle.event
    assert problem(tampered).startswith("inclusion:")


def test_a_wrong_index_fails_the_inclusion() -> None:
    bundle = make_bundle(5, 13)
    for index in (4, 6, 12):
        assert problem(replace(bundle, leaf_index=index)).startswith("inclusion:")
    assert problem(replace(bundle, leaf_index=13)).startswith("inclusion:")  # beyond the tree


def test_a_changed_path_element_fails_the_inclusion() -> None:
    bundle = make_bundle()
    path = list(bundle.inclusion_path)
    for i in range(len(path)):
        changed = bytearray(path[i])
        changed[0] ^= 1
        tampered = replace(bundle, inclusion_path=(*path[:i], bytes(changed), *path[i + 1 :]))
        assert problem(tampered).startswith("inclusion:")
    assert problem(replace(bundle, inclusion_path=tuple(path[:-1]))).startswith("inclusion:")
    assert problem(replace(bundle, inclusion_path=(*path, path[0]))).startswith("inclusion:")


def test_a_note_signed_only_by_a_foreign_key_fails() -> None:
    foreign = NoteSigner(ORIGIN, Ed25519PrivateKey.generate())  # same name, another key
    bundle = make_bundle(signers=[foreign])
    assert problem(bundle).startswith("checkpoint: no signature from a trusted key")
    # and the bundle's own key list is never trusted
    forged = replace(bundle, verifier_keys=(foreign.verifier.vkey,))
    assert problem(forged).startswith("checkpoint: no signature from a trusted key")
    assert check_bundle(forged, [foreign.verifier.vkey]).ok


def test_an_unsigned_or_altered_note_fails() -> None:
    bundle = make_bundle()
    body = bundle.checkpoint.split("\n\n")[0] + "\n"
    assert problem(replace(bundle, checkpoint=body)).startswith("checkpoint:")
    # a signed note whose body was changed: another root
    lines = bundle.checkpoint.split("\n")
    lines[2] = Checkpoint(ORIGIN, 13, bytes(32)).text().split("\n")[2]
    assert problem(replace(bundle, checkpoint="\n".join(lines))).startswith("checkpoint: the signature")


def test_a_checkpoint_of_another_log_fails() -> None:
    bundle = make_bundle()
    assert problem(replace(bundle, log_origin="other.example/ledger")).startswith("checkpoint: it is for log")


def test_a_checkpoint_of_another_size_fails() -> None:
    bundle = make_bundle()
    assert problem(replace(bundle, tree_size=14)).startswith("checkpoint: it signs size 13")


def test_a_signature_relabelled_as_the_trusted_keys_fails() -> None:
    foreign = make_bundle(signers=[NoteSigner(ORIGIN, Ed25519PrivateKey.generate())]).to_dict()
    forged = forge(foreign, SIGNER.verifier.key_id)
    assert problem(forged).startswith(
        f"checkpoint: the signature of {ORIGIN}+{SIGNER.verifier.key_id:08x} does not verify"
    )


def test_another_events_id_fails() -> None:
    # the leaf is genuine, but the bundle claims it proves another event
    bundle = make_bundle()
    assert problem(replace(bundle, event_id=new_event_id())).startswith("event: its id")


def test_an_event_with_duplicate_names_fails() -> None:
    # an event text whose leaf is in the tree but that reads two ways: refused
    event = b'{"id":"a","id":"b"}'
    tree = merkle.MemoryTree([merkle.leaf_hash(event)])
    bundle = ProofBundle(
        ORIGIN, "b", event.decode(), 0, 1, (), Checkpoint(ORIGIN, 1, tree.root()).sign([SIGNER]), ()
    )
    assert problem(bundle).startswith("event: not one JSON object")


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"format": "pcigate-inclusion-proof/2"}, "not a pcigate-inclusion-proof/1 bundle"),
        ({"leaf_index": "5"}, "leaf_index must be"),
        ({"leaf_index": True}, "leaf_index must be"),
        ({"tree_size": -1}, "tree_size must be"),
        ({"inclusion_path": ["AB" * 32]}, "64 lowercase hex"),
        ({"inclusion_path": "00"}, "inclusion_path must be a list"),
        ({"event": ""}, "event must be a non-empty string"),
        ({"verifier_keys": [1]}, "verifier_keys must be"),
        ({"extra": 1}, "unknown ['extra']"),
    ],
)
def test_malformed_bundles_are_results_not_exceptions(change: dict[str, Any], why: str) -> None:
    obj = make_bundle().to_dict() | change
    found = problem(obj)
    assert found.startswith("malformed bundle:")
    assert why in found
    with pytest.raises(BundleFormatError):
        ProofBundle.from_dict(obj)


def test_not_json_is_a_malformed_bundle() -> None:
    assert problem("{").startswith("malformed bundle:")
    assert problem(b"\xff").startswith("malformed bundle:")
    assert problem("[]").startswith("malformed bundle:")


def test_the_checker_needs_valid_trusted_keys() -> None:
    with pytest.raises(NoteError):
        check_bundle(make_bundle(), [])
    with pytest.raises(NoteError):
        check_bundle(make_bundle(), ["not a key"])


def test_a_rotated_key_still_checks_with_the_old_key_trusted() -> None:
    new = NoteSigner(ORIGIN, Ed25519PrivateKey.generate())
    bundle = make_bundle()  # signed by SIGNER, the old key
    result = check_bundle(bundle, [new.verifier.vkey, VKEY])
    assert result.ok
    assert result.verified_by == (VKEY,)


# ------------------------------------------------------------------- docs/ledger.md's offline procedure

DOCS = Path(__file__).resolve().parents[2] / "docs" / "ledger.md"


def docs_snippet() -> str:
    """The Python block of docs/ledger.md's "Checking a proof offline" section."""
    section = DOCS.read_text(encoding="utf-8").split("\n## Checking a proof offline\n", 1)[1]
    section = section.split("\n## ", 1)[0]
    code = section.split("\n```python\n", 1)[1].split("\n```\n", 1)[0]
    return code + "\n"


def run_docs_snippet(tmp: Path, bundle: str | dict[str, Any], vkey: str) -> subprocess.CompletedProcess[str]:
    """Run the docs' snippet as an auditor would: a file of its own, no pcigate on the path."""
    script = tmp / "check_proof.py"
    script.write_text(docs_snippet(), encoding="utf-8")
    path = tmp / "bundle.json"
    path.write_text(bundle if isinstance(bundle, str) else json.dumps(bundle), encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-I", str(script), str(path), vkey],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp,
        check=False,
    )


def test_the_docs_snippet_imports_only_hashlib_and_cryptography() -> None:
    code = docs_snippet()
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(ast.parse(code))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])
    }
    assert imported == {"base64", "hashlib", "json", "sys", "cryptography"}
    assert len(code.splitlines()) <= 32


def forge(bundle: dict[str, Any], key_id: int) -> dict[str, Any]:
    """``bundle`` (signed by a foreign key) with its signature relabelled as made by the key ``key_id``:
    consistent in every respect but the signature itself."""
    body, _, line = bundle["checkpoint"].partition("\n\n")
    name, blob = line.removeprefix("\u2014 ").rstrip("\n").split(" ")
    raw = key_id.to_bytes(4, "big") + base64.b64decode(blob)[4:]
    return bundle | {"checkpoint": f"{body}\n\n\u2014 {name} {base64.b64encode(raw).decode()}\n"}


def tampered_bundles(good: dict[str, Any], foreign: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """One changed copy of ``good`` per check the offline procedure makes; ``foreign`` is a bundle of
    another tree signed by another key under the log's name."""
    path = list(good["inclusion_path"])
    flipped = ("0" if path[0][0] != "0" else "1") + path[0][1:]
    event = good["event"]
    pos = event.index('"type"')  # a byte outside the id
    return {
        "event byte": good | {"event": event[:pos] + event[pos:].replace("e", "E", 1)},
        "event id": good | {"event_id": new_event_id()},
        "index": good | {"leaf_index": good["leaf_index"] + 1},
        "path element": good | {"inclusion_path": [flipped, *path[1:]]},
        "short path": good | {"inclusion_path": path[:-1]},
        "size": good | {"tree_size": good["tree_size"] + 1},
        "origin": good | {"log_origin": "other.example/ledger"},
        "foreign-key note": good | {"checkpoint": foreign["checkpoint"]},
        "forged signature": forge(foreign, SIGNER.verifier.key_id),
        "unsigned note": good | {"checkpoint": good["checkpoint"].split("\n\n")[0] + "\n\n"},
    }


def test_the_docs_snippet_checks_a_bundle_and_refuses_tampered_ones(tmp_path: Path) -> None:
    bundle = make_bundle(5, 13)
    ok = run_docs_snippet(tmp_path, bundle.to_json(), VKEY)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"OK: event {bundle.event_id} is entry 5 of {ORIGIN} at size 13")
    foreign = make_bundle(5, 13, signers=[NoteSigner(ORIGIN, Ed25519PrivateKey.generate())]).to_dict()
    for what, bad in tampered_bundles(bundle.to_dict(), foreign).items():
        assert not check_bundle(bad, [VKEY]).ok, what
        refused = run_docs_snippet(tmp_path, bad, VKEY)
        assert refused.returncode != 0, f"the docs' snippet accepted a bundle with a changed {what}"
