"""Subtree inclusion and consistency proofs (Merkle Tree Certificates, §4 of
draft-ietf-plants-merkle-tree-certs, formerly draft-davidben-tls-merkle-tree-certs).

A *subtree* ``[start, end)`` of an RFC 9162 tree is a run of leaves that one node of the tree
covers, possibly with leaves missing on its right: ``0 <= start <= end`` and ``start`` is a
multiple of ``BIT_CEIL(end - start)`` (the smallest power of two ≥ ``end - start``). Its hash
is ``MTH(D[start:end])``. ``start == end`` is the empty subtree, whose hash is ``SHA-256("")``
(the draft since ietf-plants-wg/merkle-tree-certs#274/#275). Why we want them: after purging
old segments the log keeps subtree hashes, and these proofs still show that an event lies in a
kept subtree and that the subtree sits, unchanged, inside a later checkpointed tree.

- A subtree *inclusion* proof is ``PATH(index - start, D[start:end])``: the RFC 9162 inclusion
  proof of the leaf within the subtree taken as a tree of its own.
- A subtree *consistency* proof ``SUBTREE_PROOF(start, end, D[n])`` shows that the subtree
  with a given hash is part of the tree of ``n`` leaves with a given root. For ``start == 0``
  it is exactly the RFC 9162 consistency proof from size ``end`` to ``n``.

The verifiers are ports of transparency-dev/merkle ``proof/verify.go``
(``VerifySubtreeInclusion``, ``VerifySubtreeConsistency`` with ``decompSubtreeProof``,
Apache-2.0) and pass its ``testdata/subtree*`` vectors, every failing case included. Where no
hash is computed (empty proof and identical trees) the roots are compared as given, as the
reference does; elsewhere every hash must be 32 bytes. An empty subtree is consistent with
any tree whose size reaches ``start``: its hash must be the empty hash and the tree root is not
looked at. Every failure raises :class:`~kyso.errors.ProofError` naming what is wrong.
"""

from __future__ import annotations

from collections.abc import Sequence

from kyso.audit.merkle import EMPTY_ROOT, HASH_SIZE, MerkleTree, node_hash, root_of
from kyso.errors import ProofError

__all__ = [
    "check_subtree",
    "is_valid_subtree",
    "subtree_consistency_proof",
    "subtree_hash",
    "subtree_inclusion_proof",
    "verify_subtree_consistency",
    "verify_subtree_inclusion",
]


# -- validity -------------------------------------------------------------------------------


def _bit_ceil(n: int) -> int:
    """The smallest power of two ≥ ``n`` (1 for n ≤ 1)."""
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def _subtree_problem(start: int, end: int) -> str | None:
    if start < 0 or end < 0:
        return f"subtree [{start}, {end}) has a negative bound"
    if start > end:
        return f"subtree start {start} is after its end {end}"
    if start != end and start % _bit_ceil(end - start):
        return (
            f"[{start}, {end}) is not a subtree: start {start} is not a multiple of "
            f"BIT_CEIL(end - start) = {_bit_ceil(end - start)}"
        )
    return None


def is_valid_subtree(start: int, end: int) -> bool:
    """Whether ``[start, end)`` is a subtree in the sense of the draft (§4.1)."""
    return _subtree_problem(start, end) is None


def check_subtree(start: int, end: int) -> None:
    """Raise :class:`ProofError` unless ``[start, end)`` is a subtree."""
    problem = _subtree_problem(start, end)
    if problem:
        raise ProofError(problem)


def _check_hash(value: object, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise ProofError(f"{what} is not a {HASH_SIZE}-byte SHA-256 hash")
    return value


def _check_proof(proof: Sequence[bytes]) -> list[bytes]:
    return [_check_hash(p, f"proof element {i}") for i, p in enumerate(proof)]


# -- hash chaining (proof/verify.go) --------------------------------------------------------


def _ones(n: int) -> int:
    return bin(n).count("1")


def _trailing_zeros(n: int) -> int:
    return (n & -n).bit_length() - 1


def _decomp_inclusion(index: int, size: int) -> tuple[int, int]:
    """Lengths of the inner and border parts of the inclusion proof of leaf ``index`` in a tree
    of ``size``: they split where the paths to ``index`` and ``size - 1`` diverge. Inner
    hashes are left or right siblings; border hashes are left siblings only."""
    inner = (index ^ (size - 1)).bit_length()
    return inner, _ones(index >> inner)


def _chain_inner(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    for i, h in enumerate(proof):
        seed = node_hash(seed, h) if not (index >> i) & 1 else node_hash(h, seed)
    return seed


def _chain_inner_right(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    """Like :func:`_chain_inner` but only with left siblings: the hash of the same node in
    the earlier, smaller tree."""
    for i, h in enumerate(proof):
        if (index >> i) & 1:
            seed = node_hash(h, seed)
    return seed


def _chain_border_right(seed: bytes, proof: Sequence[bytes]) -> bytes:
    for h in proof:
        seed = node_hash(h, seed)
    return seed


def _root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    if not 0 <= index < size:
        raise ProofError(f"index {index} is outside a tree of size {size}")
    inner, border = _decomp_inclusion(index, size)
    if len(proof) != inner + border:
        raise ProofError(f"inclusion proof has {len(proof)} hashes; {inner + border} expected")
    return _chain_border_right(_chain_inner(leaf, proof[:inner], index), proof[inner:])


# -- verification ---------------------------------------------------------------------------


def verify_subtree_inclusion(
    index: int, start: int, end: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise :class:`ProofError` unless ``proof`` puts the leaf hash ``leaf`` at ``index`` of
    the subtree ``[start, end)`` whose hash is ``root``."""
    check_subtree(start, end)
    if not start <= index < end:
        raise ProofError(f"leaf index {index} is outside the subtree [{start}, {end})")
    _check_hash(leaf, "leaf hash")
    _check_hash(root, "subtree hash")
    hashes = _check_proof(proof)
    if _root_from_inclusion(index - start, end - start, leaf, hashes) != root:
        raise ProofError("subtree inclusion proof does not lead to the subtree hash")


def verify_subtree_consistency(
    start: int, end: int, size: int, subtree_root: bytes, root: bytes, proof: Sequence[bytes]
) -> None:
    """Raise :class:`ProofError` unless ``proof`` shows that the subtree ``[start, end)`` with
    hash ``subtree_root`` is part of the tree of ``size`` leaves whose root is ``root``."""
    check_subtree(start, end)
    if size < end:
        raise ProofError(f"subtree [{start}, {end}) ends beyond the tree of size {size}")
    if start == end:  # empty subtree: nothing to place in the tree
        if proof:
            raise ProofError("an empty subtree needs an empty consistency proof")
        if subtree_root != EMPTY_ROOT:
            raise ProofError("an empty subtree's hash must be the hash of the empty string")
        return
    if start == 0 and end == size:  # the subtree is the whole tree
        if proof:
            raise ProofError("the subtree is the whole tree; its consistency proof must be empty")
        if not isinstance(subtree_root, bytes) or subtree_root != root:
            raise ProofError("the subtree is the whole tree, but its hash differs from the root")
        return
    if not proof:
        raise ProofError("subtree consistency proof is empty")
    _check_hash(subtree_root, "subtree hash")
    _check_hash(root, "tree root")
    hashes = _check_proof(proof)
    if _root_from_consistency(start, end, size, hashes, subtree_root) != root:
        raise ProofError("subtree consistency proof does not lead to the tree root")


def _root_from_consistency(
    start: int, end: int, size: int, proof: list[bytes], subtree_root: bytes
) -> bytes:
    """``rootFromSubtreeConsistencyProof``: the root the proof implies; raises when the part
    of the proof inside the subtree does not rebuild ``subtree_root``."""
    if end == size:
        # The subtree's node is on the tree's right border: one left sibling per level where an
        # ancestor is a right child.
        height = ((end - 1) ^ start).bit_length()
        want = _ones(start >> height)
        if len(proof) != want:
            raise ProofError(f"subtree consistency proof has {len(proof)} hashes; {want} expected")
        return _chain_border_right(subtree_root, proof)

    fork, border = _decomp_inclusion(end - 1, size)
    shift = _trailing_zeros(end - start)  # height of the last perfect subtree inside [start, end)
    inner = fork - shift  # > 0 because end < size
    perfect = end - start == 1 << shift
    # A perfect subtree is its own last perfect subtree and the verifier knows its hash;
    # otherwise the proof opens with the hash of that last perfect piece.
    seed, first = (subtree_root, 0) if perfect else (proof[0], 1)
    if len(proof) != first + inner + border:
        raise ProofError(
            f"subtree consistency proof has {len(proof)} hashes; {first + inner + border} expected"
        )
    path = proof[first:]
    mask = (end - 1) >> shift
    if not perfect:
        sub_inner, sub_border = _decomp_subtree(start, end, size, border, path)
        rebuilt = _chain_border_right(_chain_inner_right(seed, sub_inner, mask), sub_border)
        if rebuilt != subtree_root:
            raise ProofError("subtree consistency proof does not lead to the subtree hash")
    return _chain_border_right(_chain_inner(seed, path[:inner], mask), path[inner:])


def _decomp_subtree(
    start: int, end: int, size: int, border: int, path: list[bytes]
) -> tuple[list[bytes], list[bytes]]:
    """``decompSubtreeProof``: the hashes that rebuild the subtree's own hash, namely the
    inner hashes below the subtree's node (left siblings used, right ones skipped) and the
    border hashes that still lie inside the subtree."""
    height = ((end - 1) ^ start).bit_length()
    fork = ((end - 1) ^ (size - 1)).bit_length()
    shift = _trailing_zeros(end - start)
    sub_inner = min(height, fork) - shift
    inner = fork - shift
    sub_border = max(0, border - _ones((end - 1) >> height))
    return path[:sub_inner], path[inner : inner + sub_border]


# -- generation -----------------------------------------------------------------------------


def _check_range(leaf_hashes: Sequence[bytes], start: int, end: int, size: int) -> None:
    check_subtree(start, end)
    if not end <= size <= len(leaf_hashes):
        raise ProofError(
            f"subtree [{start}, {end}) and tree size {size} do not fit {len(leaf_hashes)} leaves"
        )


def subtree_hash(leaf_hashes: Sequence[bytes], start: int, end: int) -> bytes:
    """``MTH(D[start:end])`` of a subtree (the empty hash for ``start == end``)."""
    _check_range(leaf_hashes, start, end, len(leaf_hashes))
    return root_of(leaf_hashes[start:end])


def subtree_inclusion_proof(
    leaf_hashes: Sequence[bytes], index: int, start: int, end: int
) -> list[bytes]:
    """``PATH(index - start, D[start:end])``: the proof that leaf ``index`` is in the subtree."""
    _check_range(leaf_hashes, start, end, len(leaf_hashes))
    if not start <= index < end:
        raise ProofError(f"leaf index {index} is outside the subtree [{start}, {end})")
    return MerkleTree(leaf_hashes[start:end]).inclusion_proof(index - start)


def subtree_consistency_proof(
    leaf_hashes: Sequence[bytes], start: int, end: int, size: int | None = None
) -> list[bytes]:
    """``SUBTREE_PROOF(start, end, D[size])`` (draft §4.4.1): the proof that the subtree
    ``[start, end)`` is part of the tree of the first ``size`` leaves (all of them by default).

    Walks down from the root as the draft's recursion does: a child that lies wholly outside
    the subtree's node contributes its hash; when the subtree spans the split (then
    ``start == 0``) the left child is inside it, contributes its hash, and the subtree's own
    hash is no longer implied, so the final node's hash is added too.
    """
    n = len(leaf_hashes) if size is None else size
    _check_range(leaf_hashes, start, end, n)
    if start == end:
        return []
    proof: list[bytes] = []
    lo, hi, known = 0, n, True
    s, e = start, end  # the subtree relative to the node [lo, hi)
    while not (s == 0 and e == hi - lo):
        k = 1 << ((hi - lo - 1).bit_length() - 1)  # largest power of two < hi - lo
        if e <= k:
            proof.append(root_of(leaf_hashes[lo + k : hi]))
            hi = lo + k
        else:
            proof.append(root_of(leaf_hashes[lo : lo + k]))
            if s < k:  # the subtree spans the split, hence s == 0
                known = False
                e -= k
            else:
                s, e = s - k, e - k
            lo += k
    if not known:
        proof.append(root_of(leaf_hashes[lo:hi]))
    proof.reverse()
    return proof
