"""The pack's attached files and their offline check (pure: a ledger in memory, real Ed25519 signatures and
RFC 9162 proofs): a pack made from a consistent ledger verifies; any one-byte change to any attachment, a
foreign key, a forged checkpoint, a sample outside the period or listed under a requirement it does not
evidence, an extra or missing attachment, or a cover that names another manifest fails, naming the check."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from evidence import merkle
from evidence.api import CheckpointRecord, ConsistencyProof
from evidence.checkpoint import Checkpoint, NoteError, NoteSigner
from evidence.pci import requirements
from evidence.proofs import ProofBundle
from reports.pack import CHECKPOINTS, EVIDENCE, KEYS, MANIFEST, dumps, pack_files, sha256
from reports.read import Integrity, Period, Proven
from reports.verify_pack import check_pack, cover_digest

ORIGIN = "pcigate.test/ledger"
SIGNER = NoteSigner(ORIGIN, Ed25519PrivateKey.generate())
OTHER = NoteSigner(ORIGIN, Ed25519PrivateKey.generate())
T0 = datetime(2026, 12, 1, tzinfo=UTC)
PERIOD = Period(T0, T0 + timedelta(days=1))


def _event(i: int, pci: list[str], time: datetime) -> bytes:
    return rfc8785.dumps({
        "id": f"00000000-0000-7000-8000-{i:012d}",
        "type": "command.executed",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "pci": pci,
        "target": {"connection": "payments"},
        "data": {"statement": {"text": "SELECT pan FROM cards WHERE card_id = $1"}},
    })  # fmt: skip


def ledger(size: int = 40, before: int = 3) -> tuple[list[bytes], merkle.MemoryTree]:
    """``before`` entries from the day before the period, then one every ten minutes inside it."""
    events = [
        _event(i, ["10.2.1.1", "10.2.2"] if i % 2 else ["10.2.2"], T0 + timedelta(minutes=10 * (i - before)))
        for i in range(size)
    ]
    return events, merkle.MemoryTree([merkle.leaf_hash(e) for e in events])


def record(tree: merkle.MemoryTree, size: int, signer: NoteSigner = SIGNER) -> CheckpointRecord:
    root = tree.root(size)
    note = Checkpoint(ORIGIN, size, root).sign([signer])
    signed = T0 + timedelta(days=2, minutes=size)
    return CheckpointRecord(size, root, note, ORIGIN, signer.verifier.key_id, signed, (signer.verifier.vkey,))


def link(tree: merkle.MemoryTree, old: CheckpointRecord, new: CheckpointRecord) -> ConsistencyProof:
    path = tuple(tree.consistency_proof(old.size, new.size))
    return ConsistencyProof(old.size, new.size, old.root, new.root, path, new.note, old.note, ())


def integrity(
    sizes: tuple[int, ...] = (8, 20, 33, 40),
    samples: tuple[int, ...] = (3, 4, 9, 30),
    events: list[bytes] | None = None,
    signer: NoteSigner = SIGNER,
) -> Integrity:
    """What ``read_integrity`` finds on a ledger of ``events`` whose checkpoints ``signer`` signed."""
    events = events or ledger()[0]
    tree = merkle.MemoryTree([merkle.leaf_hash(e) for e in events])
    chain = tuple(record(tree, n, signer) for n in sizes)
    last = chain[-1]
    proven = tuple(
        Proven(
            requirements(json.loads(events[i])),
            ProofBundle(
                ORIGIN,
                json.loads(events[i])["id"],
                events[i].decode(),
                i,
                last.size,
                tuple(tree.inclusion_proof(i, last.size)),
                last.note,
                (signer.verifier.vkey,),
            ),
        )
        for i in samples
    )
    links = tuple(link(tree, a, b) for a, b in itertools.pairwise(chain))
    return Integrity(
        chain[0], last, link(tree, chain[0], last), 3, 39, (), chain, len(chain) + 5, links, proven
    )


def pack(i: Integrity | None = None, signer: NoteSigner = SIGNER) -> tuple[dict[str, bytes], str]:
    files, digest = pack_files(
        i or integrity(), PERIOD, origin=ORIGIN, keys=[signer.verifier.vkey], generator="pcigate test"
    )
    return {
        f.name: f.data for f in files
    }, f"PCI DSS evidence pack\nManifest SHA-256\n{digest[:40]}\n{digest[40:]}"


def failed(files: dict[str, bytes], cover: str, keys: list[str] | None = None) -> list[str]:
    result = check_pack(files, cover, keys if keys is not None else [SIGNER.verifier.vkey])
    assert not result.ok
    return [f"{f.check}: {f.detail}" for f in result.findings if not f.ok]


def test_a_pack_from_a_consistent_ledger_verifies() -> None:
    files, cover = pack()
    assert set(files) == {EVIDENCE, CHECKPOINTS, KEYS, MANIFEST}
    result = check_pack(files, cover, [SIGNER.verifier.vkey])
    assert result.ok, result.findings
    assert [f.check for f in result.findings] == ["manifest", "files", "checkpoints", "evidence"]
    assert not result.keys_from_pack
    assert "4 sampled events" in result.findings[-1].detail


def test_the_files_are_deterministic_and_the_manifest_names_them() -> None:
    first, second = pack(), pack()
    assert first == second
    manifest = json.loads(first[0][MANIFEST])
    assert manifest["checkpoint"]["size"] == 40 and manifest["ledger_range"] == {
        "first_index": 3,
        "last_index": 39,
    }
    assert {f["name"]: f["sha256"] for f in manifest["files"]} == {
        n: sha256(first[0][n]) for n in (EVIDENCE, CHECKPOINTS, KEYS)
    }
    assert cover_digest(first[1]) == sha256(first[0][MANIFEST])


def test_without_a_key_the_packs_own_keys_are_used_and_said_so() -> None:
    files, cover = pack()
    result = check_pack(files, cover, None)
    assert result.ok and result.keys_from_pack
    assert "the pack's own keys.json" in result.findings[2].detail


@settings(max_examples=200, deadline=None)
@given(
    name=st.sampled_from([EVIDENCE, CHECKPOINTS, KEYS, MANIFEST]),
    where=st.floats(0, 1),
    bit=st.integers(0, 7),
)
def test_a_one_byte_change_in_any_attachment_fails(name: str, where: float, bit: int) -> None:
    files, cover = pack()
    data = bytearray(files[name])
    at = min(len(data) - 1, int(where * len(data)))
    data[at] ^= 1 << bit
    files[name] = bytes(data)
    problems = failed(files, cover)
    expected = "manifest" if name == MANIFEST else "files"
    assert any(p.startswith(expected) for p in problems), problems


def test_a_rewritten_pack_fails_on_the_signatures() -> None:
    """Someone who changes an event and rebuilds every hash, proof, checkpoint and the manifest (and prints
    the new digest on the cover) cannot sign with the log's key: the pack verifies only against the keys it
    carries, which is why an auditor passes --key."""
    events, _ = ledger()
    events[9] = _event(9, ["10.2.1.1", "10.2.2"], T0 + timedelta(hours=1, seconds=1))
    files, cover = pack(integrity(events=events, signer=OTHER), signer=OTHER)
    assert "no signature from a trusted key" in failed(files, cover)[0]
    assert check_pack(files, cover, None).ok  # consistent in itself: hence the warning without --key


def test_a_foreign_key_fails() -> None:
    files, cover = pack()
    (problem,) = failed(files, cover, [OTHER.verifier.vkey])
    assert (
        problem.startswith("checkpoints: the checkpoint chain[0]")
        and "no signature from a trusted key" in problem
    )


def test_a_malformed_key_is_the_callers_mistake() -> None:
    files, cover = pack()
    with pytest.raises(NoteError):
        check_pack(files, cover, ["not a key"])


def test_a_cover_naming_another_manifest_fails() -> None:
    files, _ = pack()
    other = integrity(samples=(3, 4))
    _, other_cover = pack(other)
    assert failed(files, other_cover)[0].startswith(
        "manifest: the attached manifest is not the one the cover"
    )
    assert "does not print" in failed(files, "no digest here")[0]


def test_extra_and_missing_attachments_fail() -> None:
    files, cover = pack()
    assert "extra.bin is attached but not in the manifest" in " ".join(
        failed({**files, "extra.bin": b"x"}, cover)
    )
    del files[KEYS]
    assert any("keys.json is in the manifest but not attached" in p for p in failed(files, cover))


def _resigned(files: dict[str, bytes], name: str, change: Any) -> tuple[dict[str, bytes], str]:
    """Edit one file and rebuild the manifest and cover around it (a generator that lies, or an attacker
    with the whole pack): only the cryptographic and scope checks remain."""
    obj = json.loads(files[name])
    change(obj)
    files = {**files, name: dumps(obj)}
    manifest = json.loads(files[MANIFEST])
    for entry in manifest["files"]:
        entry["sha256"], entry["bytes"] = sha256(files[entry["name"]]), len(files[entry["name"]])
    files[MANIFEST] = dumps(manifest)
    return files, f"Manifest SHA-256: {sha256(files[MANIFEST])}"


def test_a_sample_outside_the_period_or_requirement_fails() -> None:
    files, _ = pack()

    def relabel(obj: dict[str, Any]) -> None:
        obj["samples"][0]["requirements"] = ["10.2.1.7"]

    assert "listed under ['10.2.1.7']" in failed(*_resigned(files, EVIDENCE, relabel))[0]
    early = integrity(samples=(1,))  # entry 1 is from the day before the period
    files, cover = pack(replace(early, first_index=0))
    assert "outside the period" in failed(files, cover)[0]


def test_a_broken_consistency_link_or_an_uncovered_range_fails() -> None:
    files, _ = pack()

    def break_link(obj: dict[str, Any]) -> None:
        obj["links"][1]["path"][0] = "00" * 32

    assert "does not extend" in failed(*_resigned(files, CHECKPOINTS, break_link))[0]

    def widen(obj: dict[str, Any]) -> None:
        obj["ledger_range"]["last_index"] = 40

    assert "does not cover the period's last index" in failed(*_resigned(files, MANIFEST, widen))[0]

    def drop(obj: dict[str, Any]) -> None:
        del obj["chain"][1]

    assert "consistency proofs" in failed(*_resigned(files, CHECKPOINTS, drop))[0]


def test_an_inclusion_path_that_does_not_lead_to_the_root_fails() -> None:
    files, _ = pack()

    def swap(obj: dict[str, Any]) -> None:
        obj["samples"][0]["leaf_index"] = 5

    assert "inclusion" in failed(*_resigned(files, EVIDENCE, swap))[0]
