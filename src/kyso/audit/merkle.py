"""RFC 9162 (Certificate Transparency 2.0) Merkle trees: hashing, inclusion and consistency
proofs, and their verification.

Leaves are hashed ``SHA-256(0x00 || data)``, interior nodes ``SHA-256(0x01 || left || right)``
(§2.1.1), so a leaf can never pass for a node. Verification follows §2.1.3.2 and §2.1.4.2 and
raises :class:`~kyso.errors.ProofError` naming what is wrong; proofs carry at most
⌈log2 n⌉ hashes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from kyso.errors import ProofError

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n ≥ 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH over already-hashed leaves (iterative; O(n) hashes, O(log n) memory)."""
    frontier = Frontier()
    frontier.extend(leaf_hashes)
    return frontier.root()


def extend_frontier(hashes: list[bytes], size: int, leaves: Sequence[bytes]) -> None:
    """Append ``leaves`` to the frontier ``hashes`` of a tree of ``size`` leaves, in place.

    The same tree as appending them one by one, built a level at a time: at level *j* the
    new nodes pair up left to right (one list comprehension per level instead of a Python
    loop per leaf), the frontier's node at that level joins in front when bit *j* of
    ``size`` is set, and an odd node left over at the right end becomes the new frontier's
    node of that level."""
    sha256 = hashlib.sha256
    one = b"\x01"
    level = list(leaves)
    left_over: list[bytes] = []
    n = size
    while level:
        if n & 1:  # the level starts at an odd position: its left sibling is on the frontier
            level.insert(0, hashes.pop())
        if len(level) & 1:
            left_over.append(level.pop())
        level = [sha256(one + a + b).digest()
                 for a, b in zip(level[::2], level[1::2], strict=True)]
        n >>= 1
    left_over.reverse()
    hashes += left_over


@dataclass
class Frontier:
    """The right edge of a growing tree: one hash per perfect subtree (sizes = the binary
    digits of the tree size). Appending is amortised O(1); the root is O(log n)."""

    size: int = 0
    hashes: list[bytes] = field(default_factory=list)

    def append(self, leaf: bytes) -> None:
        h = leaf
        n = self.size
        while n & 1:  # merge equal-sized perfect subtrees, as binary addition carries
            h = node_hash(self.hashes.pop(), h)
            n >>= 1
        self.hashes.append(h)
        self.size += 1

    def extend(self, leaves: Sequence[bytes]) -> None:
        """Append many leaf hashes at once (see :func:`extend_frontier`)."""
        size = self.size
        self.size += len(leaves)
        extend_frontier(self.hashes, size, leaves)

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        h = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            h = node_hash(left, h)
        return h

    def copy(self) -> Frontier:
        return Frontier(self.size, list(self.hashes))

    def blocks(self) -> dict[tuple[int, int], bytes]:
        """The perfect subtrees ``(lo, hi)`` the frontier's hashes stand for, left to right."""
        out = {}
        lo = 0
        bits = [b for b in range(self.size.bit_length() - 1, -1, -1) if self.size >> b & 1]
        for bit, h in zip(bits, self.hashes, strict=True):
            out[(lo, lo + (1 << bit))] = h
            lo += 1 << bit
        return out


class MerkleTree:
    """Proofs over a sequence of leaf hashes. Hashes of aligned perfect subtrees are cached,
    so repeated proofs cost O(log n) new hashes each."""

    def __init__(self, leaf_hashes: Sequence[bytes],
                 known: Mapping[tuple[int, int], bytes] | None = None) -> None:
        """``known`` pre-seeds hashes of aligned perfect subtrees ``(lo, hi)``: after a
        purge, the frontier's subtrees stand in for the entries that are gone."""
        self._leaves = leaf_hashes
        self._cache: dict[tuple[int, int], bytes] = dict(known or {})

    def __len__(self) -> int:
        return len(self._leaves)

    def _hash(self, lo: int, hi: int) -> bytes:
        n = hi - lo
        perfect = n & (n - 1) == 0
        if perfect and (lo, hi) in self._cache:
            return self._cache[(lo, hi)]
        if n == 1:
            return self._leaves[lo]
        k = _split(n)
        h = node_hash(self._hash(lo, lo + k), self._hash(lo + k, hi))
        if perfect:
            self._cache[(lo, hi)] = h
        return h

    def root(self, size: int | None = None) -> bytes:
        n = len(self._leaves) if size is None else size
        self._check_size(n)
        return EMPTY_ROOT if n == 0 else self._hash(0, n)

    def _check_size(self, n: int) -> None:
        if not 0 <= n <= len(self._leaves):
            raise ProofError(f"tree size {n} is outside 0..{len(self._leaves)}")

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(m, D[n]) of RFC 9162 §2.1.3.1."""
        n = len(self._leaves) if size is None else size
        self._check_size(n)
        if not 0 <= index < n:
            raise ProofError(f"leaf {index} is not in a tree of size {n}")
        proof: list[bytes] = []
        lo, hi, m = 0, n, index
        while hi - lo > 1:
            k = _split(hi - lo)
            if m < k:
                proof.append(self._hash(lo + k, hi))
                hi = lo + k
            else:
                proof.append(self._hash(lo, lo + k))
                lo, m = lo + k, m - k
        proof.reverse()
        return proof

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """PROOF(m, D[n]) of RFC 9162 §2.1.4.1."""
        n = len(self._leaves) if size2 is None else size2
        self._check_size(n)
        if not 0 < size1 <= n:
            raise ProofError(f"no consistency proof from size {size1} to size {n}")
        proof: list[bytes] = []
        lo, hi, m, whole = 0, n, size1, True
        while m != hi - lo:
            k = _split(hi - lo)
            if m <= k:
                proof.append(self._hash(lo + k, hi))
                hi = lo + k
            else:
                proof.append(self._hash(lo, lo + k))
                lo, m, whole = lo + k, m - k, False
        if not whole:
            proof.append(self._hash(lo, hi))
        proof.reverse()
        return proof


def _check_hash(value: bytes, what: str) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise ProofError(f"{what} is not a {HASH_SIZE}-byte SHA-256 hash")


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """RFC 9162 §2.1.3.2: raise ProofError unless ``proof`` puts ``leaf`` at ``index`` of the
    tree of ``size`` leaves whose root is ``root``."""
    _check_hash(leaf, "leaf hash")
    _check_hash(root, "root")
    for i, p in enumerate(proof):
        _check_hash(p, f"proof element {i}")
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is shorter than the tree is deep")
    if r != root:
        raise ProofError("inclusion proof does not lead to the root")


def verify_consistency(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 §2.1.4.2: raise ProofError unless the tree of ``size2`` leaves with root
    ``root2`` extends the tree of ``size1`` leaves with root ``root1``."""
    if size1 < 1:
        raise ProofError("a consistency proof needs a first tree of at least one leaf")
    if size1 > size2:
        raise ProofError(f"first tree ({size1}) is larger than the second ({size2})")
    if size1 == size2:  # nothing to hash: the two roots must simply be the same
        if proof:
            raise ProofError("trees of equal size need an empty consistency proof")
        if not isinstance(root1, bytes) or root1 != root2:
            raise ProofError("trees of equal size have different roots")
        return
    _check_hash(root1, "first root")
    _check_hash(root2, "second root")
    for i, p in enumerate(proof):
        _check_hash(p, f"proof element {i}")
    if not proof:
        raise ProofError("consistency proof is empty")
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # a power of two: the first tree is a whole subtree
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is longer than needed")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is shorter than needed")
    if fr != root1:
        raise ProofError("consistency proof does not lead to the first root")
    if sr != root2:
        raise ProofError("consistency proof does not lead to the second root")
