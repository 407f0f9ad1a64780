"""evidence.merkle against the RFC 6962/9162 reference vectors and against itself on random trees."""

from __future__ import annotations

import base64
import filecmp
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evidence import merkle
from evidence.merkle import MemoryTree, ProofError

ROOT = Path(__file__).resolve().parents[2]
# The project's copy (tests must run from a lone clone); CI also has the shared original beside it.
VECTORS = ROOT / "tests" / "testdata" / "merkle"
SHARED = ROOT.parent / "shared" / "testdata" / "merkle"


def _cases(kind: str) -> list[Path]:
    return sorted((VECTORS / kind).glob("*/*.json"))


def _b64(value: str) -> bytes:
    return base64.b64decode(value)


def _proof(case: dict[str, Any]) -> list[bytes]:
    return [_b64(p) for p in case["proof"] or []]


def test_the_vectors_are_all_here() -> None:
    assert len(_cases("inclusion")) == 86
    assert len(_cases("consistency")) == 98


def test_the_project_copy_matches_the_shared_vectors() -> None:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is not beside this checkout")
    compare = filecmp.dircmp(SHARED, VECTORS)
    pending = [compare]
    while pending:
        c = pending.pop()
        assert not (c.left_only or c.right_only or c.diff_files), (
            c.left,
            c.left_only,
            c.right_only,
            c.diff_files,
        )
        pending.extend(c.subdirs.values())


@pytest.mark.parametrize("path", _cases("inclusion"), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_inclusion_vector(path: Path) -> None:
    case = json.loads(path.read_text())
    args = (_b64(case["leafHash"]), case["leafIdx"], case["treeSize"], _proof(case), _b64(case["root"]))
    if case["wantErr"]:
        with pytest.raises(ProofError):
            merkle.verify_inclusion(*args)
    else:
        assert merkle.verify_inclusion(*args) is None


@pytest.mark.parametrize("path", _cases("consistency"), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_consistency_vector(path: Path) -> None:
    case = json.loads(path.read_text())
    args = (case["size1"], case["size2"], _proof(case), _b64(case["root1"]), _b64(case["root2"]))
    if case["wantErr"]:
        with pytest.raises(ProofError):
            merkle.verify_consistency(*args)
    else:
        assert merkle.verify_consistency(*args) is None


def _naive_root(leaves: list[bytes]) -> bytes:
    """MTH written straight from RFC 9162 §2.1.1, recursion and all."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return merkle.node_hash(_naive_root(leaves[:k]), _naive_root(leaves[k:]))


def _leaves(n: int) -> list[bytes]:
    return [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


def test_hashes_are_rfc9162() -> None:
    assert merkle.leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert merkle.node_hash(b"a" * 32, b"b" * 32) == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()
    assert merkle.root([]) == merkle.EMPTY_ROOT == hashlib.sha256(b"").digest()


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=300), st.data())
def test_every_proof_verifies_and_its_root_is_rfc9162(size: int, data: st.DataObject) -> None:
    leaves = _leaves(size)
    tree = MemoryTree(leaves)
    assert tree.root() == merkle.root(leaves) == _naive_root(leaves)
    index = data.draw(st.integers(0, size - 1), label="index")
    proof = tree.inclusion_proof(index)
    merkle.verify_inclusion(leaves[index], index, size, proof, tree.root())
    size1 = data.draw(st.integers(1, size), label="size1")
    cproof = tree.consistency_proof(size1)
    merkle.verify_consistency(size1, size, cproof, tree.root(size1), tree.root())


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=2, max_value=200), st.data())
def test_a_changed_input_never_verifies(size: int, data: st.DataObject) -> None:
    leaves = _leaves(size)
    tree = MemoryTree(leaves)
    index = data.draw(st.integers(0, size - 1), label="index")
    proof = tree.inclusion_proof(index)
    good_root = tree.root()
    other = (index + data.draw(st.integers(1, size - 1), label="shift")) % size
    with pytest.raises(ProofError):
        merkle.verify_inclusion(leaves[other], index, size, proof, good_root)  # another leaf
    with pytest.raises(ProofError):
        merkle.verify_inclusion(leaves[index], other, size, proof, good_root)  # another position
    if proof:
        at = data.draw(st.integers(0, len(proof) - 1), label="element")
        bent = [*proof]
        bent[at] = bytes([bent[at][0] ^ 1]) + bent[at][1:]
        with pytest.raises(ProofError):
            merkle.verify_inclusion(leaves[index], index, size, bent, good_root)
        with pytest.raises(ProofError):
            merkle.verify_inclusion(leaves[index], index, size, proof[:-1], good_root)
    with pytest.raises(ProofError):
        merkle.verify_inclusion(leaves[index], index, size, [*proof, good_root], good_root)
    size1 = data.draw(st.integers(1, size - 1), label="size1")
    cproof = tree.consistency_proof(size1)
    # a log that rewrote one of the first size1 entries cannot prove itself consistent with the old root
    forged = MemoryTree([*leaves[: size1 - 1], merkle.leaf_hash(b"forged"), *leaves[size1:]])
    with pytest.raises(ProofError):
        merkle.verify_consistency(
            size1, size, forged.consistency_proof(size1), tree.root(size1), forged.root()
        )
    with pytest.raises(ProofError):
        merkle.verify_consistency(size1, size, cproof, tree.root(size1), forged.root())
    with pytest.raises(ProofError):
        merkle.verify_consistency(size1, size, cproof[:-1], tree.root(size1), good_root)


def test_proofs_ask_for_logarithmically_many_nodes() -> None:
    """The store answers one lookup per node: a proof in a million-leaf tree needs about 2*log2(n)."""
    size = 1_000_003
    asked: list[tuple[int, int]] = []

    def node(level: int, index: int) -> bytes:
        asked.append((level, index))
        return hashlib.sha256(b"%d/%d" % (level, index)).digest()

    merkle.inclusion_proof(size - 1, size, node)
    assert len(asked) <= 2 * size.bit_length()
    asked.clear()
    merkle.consistency_proof(777_777, size, node)
    assert len(asked) <= 3 * size.bit_length()


def test_impossible_questions_are_value_errors() -> None:
    tree = MemoryTree(_leaves(5))
    with pytest.raises(ValueError, match="not in a tree of size 5"):
        tree.inclusion_proof(5)
    with pytest.raises(ValueError, match="no consistency proof from size 0"):
        tree.consistency_proof(0)
    with pytest.raises(ValueError, match="no consistency proof from size 6"):
        tree.consistency_proof(6, 5)
