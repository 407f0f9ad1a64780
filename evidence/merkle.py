"""RFC 9162 §2.1 Merkle tree hashing, proofs and their verification: pure functions, no I/O.

The ledger never recomputes a tree over all its leaves. Every hash a proof needs is the root of a
*perfect* subtree: ``2**level`` leaves starting at ``index * 2**level``, which the store keeps once the
subtree is complete. So the proof builders take a :data:`NodeSource` ``(level, index) -> hash`` and ask
it for O(log n) nodes; :class:`MemoryTree` is such a source over a list of leaf hashes, for tests and
for the offline verifier.

Verification follows RFC 9162 §2.1.3.2 and §2.1.4.2 and also refuses what those steps leave open:
hashes that are not 32 bytes, a proof of the wrong length, a consistency proof from the empty tree
(it proves nothing), sizes in the wrong order. Every refusal raises :class:`ProofError`; success
returns None.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Final

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MemoryTree",
    "NodeSource",
    "ProofError",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root",
    "subtree_root",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE: Final = 32
EMPTY_ROOT: Final = hashlib.sha256(b"").digest()
"""MTH({}) = SHA-256() — the root of the tree with no leaves."""

NodeSource = Callable[[int, int], bytes]
"""``(level, index)`` -> root of the perfect subtree over leaves ``[index << level, (index + 1) << level)``;
level 0 is the leaf hashes themselves."""


class ProofError(ValueError):
    """A proof does not verify, or its inputs are not a well-formed question."""


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 || data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (n >= 2): RFC 9162's k."""
    return 1 << ((n - 1).bit_length() - 1)


def subtree_root(node: NodeSource, start: int, end: int) -> bytes:
    """MTH of leaves ``[start, end)``, where ``start`` is a multiple of the subtree's split (as every
    subtree of an RFC 9162 tree is). A perfect subtree is one lookup; a ragged one folds the perfect
    subtrees it decomposes into, at most one per level."""
    n = end - start
    if n <= 0:
        raise ValueError(f"empty range [{start}, {end})")
    if n & (n - 1) == 0:
        level = n.bit_length() - 1
        return node(level, start >> level)
    k = _split(n)
    return node_hash(subtree_root(node, start, start + k), subtree_root(node, start + k, end))


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH over all of ``leaf_hashes`` (RFC 9162 §2.1.1)."""
    if not leaf_hashes:
        return EMPTY_ROOT
    return MemoryTree(leaf_hashes).root()


def inclusion_proof(index: int, size: int, node: NodeSource) -> list[bytes]:
    """PATH(index, D[size]) (RFC 9162 §2.1.3.1), leaf side first."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is not in a tree of size {size}")
    path: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            path.append(subtree_root(node, start + k, end))
            end = start + k
        else:
            path.append(subtree_root(node, start, start + k))
            start += k
    path.reverse()
    return path


def consistency_proof(size1: int, size2: int, node: NodeSource) -> list[bytes]:
    """PROOF(size1, D[size2]) (RFC 9162 §2.1.4.1); empty when the sizes are equal."""
    if not 0 < size1 <= size2:
        raise ValueError(f"no consistency proof from size {size1} to size {size2}")
    proof: list[bytes] = []
    start, end, whole = 0, size2, True  # SUBPROOF(m, D[start:end], whole)
    m = size1
    while m != end:
        k = _split(end - start)
        if m - start <= k:
            proof.append(subtree_root(node, start + k, end))
            end = start + k
        else:
            proof.append(subtree_root(node, start, start + k))
            start += k
            whole = False
    if not whole:
        proof.append(subtree_root(node, start, end))
    proof.reverse()
    return proof


def _check_hash(what: str, value: bytes) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} is {len(value)} bytes, not {HASH_SIZE}")


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], expected_root: bytes
) -> None:
    """RFC 9162 §2.1.3.2: ``leaf`` (a leaf hash) is entry ``index`` of the tree of ``size`` with that root."""
    _check_hash("leaf hash", leaf)
    _check_hash("root", expected_root)
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not in a tree of size {size}")
    fn, sn = index, size - 1
    r = leaf
    for i, p in enumerate(proof):
        _check_hash(f"proof element {i}", p)
        if sn == 0:
            raise ProofError(f"the proof is longer than a tree of size {size} needs ({len(proof)} elements)")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"the proof is shorter than a tree of size {size} needs ({len(proof)} elements)")
    if r != expected_root:
        raise ProofError(f"leaf {index} does not lead to the expected root of the tree of size {size}")


def verify_consistency(size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes) -> None:
    """RFC 9162 §2.1.4.2: the tree of ``size2`` (``root2``) extends the one of ``size1`` (``root1``)."""
    if size1 <= 0:
        raise ProofError(f"a consistency proof from size {size1} proves nothing")
    if size2 < size1:
        raise ProofError(f"size2 ({size2}) is smaller than size1 ({size1})")
    if size1 == size2:  # the same tree head twice, or a fork: no hashing, so no hash sizes to check
        if proof:
            raise ProofError("the sizes are equal, so the proof must be empty")
        if root1 != root2:
            raise ProofError(f"two different roots for the same size {size1}")
        return
    _check_hash("root1", root1)
    _check_hash("root2", root2)
    for i, p in enumerate(proof):
        _check_hash(f"proof element {i}", p)
    if not proof:
        raise ProofError(f"an empty proof cannot show size {size1} grows into size {size2}")
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # size1 is a power of two: its root is the first node of the path
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError(f"the proof is longer than sizes {size1} and {size2} need")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"the proof is shorter than sizes {size1} and {size2} need")
    if fr != root1:
        raise ProofError(f"the proof does not lead to the root of size {size1}")
    if sr != root2:
        raise ProofError(f"the proof does not lead to the root of size {size2}")


class MemoryTree:
    """Every perfect subtree of a list of leaf hashes, level by level: a :data:`NodeSource` in memory."""

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
        self.levels: list[list[bytes]] = [list(leaf_hashes)]
        while len(self.levels[-1]) > 1:
            below = self.levels[-1]
            self.levels.append([node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)])

    @property
    def size(self) -> int:
        return len(self.levels[0])

    def node(self, level: int, index: int) -> bytes:
        return self.levels[level][index]

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (all by default)."""
        n = self.size if size is None else size
        if not 0 <= n <= self.size:
            raise ValueError(f"size {n} is not in 0..{self.size}")
        return EMPTY_ROOT if n == 0 else subtree_root(self.node, 0, n)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        return inclusion_proof(index, self.size if size is None else size, self.node)

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        return consistency_proof(size1, self.size if size2 is None else size2, self.node)
