"""Subtree proofs (Merkle Tree Certificates draft §4), checked against the transparency-dev
vectors in shared/vectors/rfc6962/subtree* (every case, including those that must fail), against
the RFC 9162 proofs they generalise, and by properties."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from test_merkle import VECTORS, _b64, _proof

from kyso.audit.merkle import EMPTY_ROOT, MerkleTree, leaf_hash, root_of, verify_inclusion
from kyso.audit.subtree import (
    check_subtree,
    is_valid_subtree,
    subtree_consistency_proof,
    subtree_hash,
    subtree_inclusion_proof,
    verify_subtree_consistency,
    verify_subtree_inclusion,
)
from kyso.errors import ProofError


def _cases(kind: str) -> list[Any]:
    files = sorted((VECTORS / kind).rglob("*.json"))
    return [pytest.param(f, id=str(f.relative_to(VECTORS / kind))) for f in files]


def _leaves(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


def _flip(h: bytes, bit: int = 0) -> bytes:
    """``h`` with bit ``bit`` (0‥255) inverted."""
    i = bit // 8
    return h[:i] + bytes([h[i] ^ (1 << (bit % 8))]) + h[i + 1 :]


# -- the public vectors ---------------------------------------------------------------------


def test_the_subtree_vector_folders_are_there() -> None:
    assert len(_cases("subtreeinclusion")) > 150
    assert len(_cases("subtreeconsistency")) > 100


@pytest.mark.parametrize("path", _cases("subtreeinclusion"))
def test_subtree_inclusion_vector(path: Path) -> None:
    v = json.loads(path.read_text())
    args = (v["leafIdx"], v["start"], v["end"], _b64(v["leafHash"]), _proof(v["proof"]), _b64(v["root"]))
    if v["wantErr"]:
        with pytest.raises(ProofError):
            verify_subtree_inclusion(*args)
    else:
        verify_subtree_inclusion(*args)


@pytest.mark.parametrize("path", _cases("subtreeconsistency"))
def test_subtree_consistency_vector(path: Path) -> None:
    v = json.loads(path.read_text())
    args = (v["start"], v["end"], v["size"], _b64(v["root1"]), _b64(v["root2"]), _proof(v["proof"]))
    if v["wantErr"]:
        with pytest.raises(ProofError):
            verify_subtree_consistency(*args)
    else:
        verify_subtree_consistency(*args)


def _happy(kind: str) -> list[Any]:
    """The vectors that verify and carry real 32-byte hashes in a non-empty subtree (an empty
    subtree never looks at the tree root; a 12-byte "don't care" root has no bit to flip)."""
    keep = []
    for p in _cases(kind):
        v = json.loads(p.values[0].read_text())
        roots = [_b64(v[k]) for k in ("root", "root1", "root2") if k in v]
        if not v["wantErr"] and v["start"] != v["end"] and all(len(r) == 32 for r in roots):
            keep.append(p)
    return keep


@pytest.mark.parametrize("path", _happy("subtreeconsistency"))
def test_a_vector_that_verifies_fails_with_either_root_changed_by_one_bit(path: Path) -> None:
    # The vectors' wrong roots are 9-byte strings a size check alone rejects; these reach the
    # hash comparison, so a verifier that skipped comparing either root would fail here.
    v = json.loads(path.read_text())
    r1, r2 = _b64(v["root1"]), _b64(v["root2"])
    sizes, proof = (v["start"], v["end"], v["size"]), _proof(v["proof"])
    with pytest.raises(ProofError):
        verify_subtree_consistency(*sizes, _flip(r1), r2, proof)
    with pytest.raises(ProofError):
        verify_subtree_consistency(*sizes, r1, _flip(r2), proof)


@pytest.mark.parametrize("path", _happy("subtreeinclusion"))
def test_a_vector_that_verifies_fails_with_the_leaf_or_root_changed_by_one_bit(path: Path) -> None:
    v = json.loads(path.read_text())
    leaf, root = _b64(v["leafHash"]), _b64(v["root"])
    args = (v["leafIdx"], v["start"], v["end"])
    with pytest.raises(ProofError):
        verify_subtree_inclusion(*args, _flip(leaf), _proof(v["proof"]), root)
    with pytest.raises(ProofError):
        verify_subtree_inclusion(*args, leaf, _proof(v["proof"]), _flip(root))


# -- validity of [start, end) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "valid"),
    [
        (0, 0, True), (0, 1, True), (0, 13, True), (5, 5, True), (8, 13, True), (8, 16, True),
        (12, 14, True), (13, 14, True), (4, 7, True),
        (1, 3, False), (2, 5, False), (2, 6, False), (1, 15, False), (4, 9, False), (3, 2, False),
        (-1, 0, False), (1, (1 << 63) + 2, False),
    ],
)
def test_a_subtree_starts_at_a_multiple_of_the_bit_ceiling_of_its_size(
    start: int, end: int, valid: bool
) -> None:
    assert is_valid_subtree(start, end) is valid
    if not valid:
        with pytest.raises(ProofError, match=r"subtree|start"):
            check_subtree(start, end)


def test_an_invalid_subtree_is_named_in_the_error() -> None:
    with pytest.raises(ProofError, match=r"\[2, 5\) is not a subtree.*BIT_CEIL"):
        verify_subtree_consistency(2, 5, 8, EMPTY_ROOT, EMPTY_ROOT, [])


# -- generators agree with RFC 9162 where they coincide --------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 8, 13, 16, 33])
def test_a_subtree_starting_at_zero_has_the_rfc9162_consistency_proof(n: int) -> None:
    leaves = _leaves(n)
    tree = MerkleTree(leaves)
    for end in range(1, n):
        assert subtree_consistency_proof(leaves, 0, end) == tree.consistency_proof(end)


def test_subtree_hash_is_the_hash_of_its_leaves_as_a_tree() -> None:
    leaves = _leaves(16)
    assert subtree_hash(leaves, 8, 14) == root_of(leaves[8:14])
    assert subtree_hash(leaves, 3, 3) == EMPTY_ROOT


def test_generators_refuse_a_subtree_that_does_not_fit_the_leaves() -> None:
    leaves = _leaves(6)
    with pytest.raises(ProofError, match="do not fit"):
        subtree_consistency_proof(leaves, 4, 8)
    with pytest.raises(ProofError, match="do not fit"):
        subtree_consistency_proof(leaves, 0, 4, size=7)
    with pytest.raises(ProofError, match="outside the subtree"):
        subtree_inclusion_proof(leaves, 3, 4, 6)
    with pytest.raises(ProofError, match="not a subtree"):
        subtree_inclusion_proof(leaves, 3, 2, 5)


def test_an_empty_subtree_is_consistent_with_any_tree_and_has_an_empty_proof() -> None:
    leaves = _leaves(5)
    assert subtree_consistency_proof(leaves, 4, 4) == []
    verify_subtree_consistency(4, 4, 5, EMPTY_ROOT, root_of(leaves), [])
    with pytest.raises(ProofError, match="empty string"):
        verify_subtree_consistency(4, 4, 5, leaves[0], root_of(leaves), [])
    with pytest.raises(ProofError, match="beyond the tree"):
        verify_subtree_consistency(6, 6, 5, EMPTY_ROOT, root_of(leaves), [])


def test_no_leaf_is_included_in_an_empty_subtree() -> None:
    with pytest.raises(ProofError, match="outside the subtree"):
        verify_subtree_inclusion(4, 4, 4, _leaves(1)[0], [], EMPTY_ROOT)


# -- properties -----------------------------------------------------------------------------


@st.composite
def _subtrees(draw: st.DrawFn, *, non_empty: bool = True) -> tuple[int, int, int]:
    """(size, start, end) with [start, end) a valid subtree ending at or before size."""
    size = draw(st.integers(1 if non_empty else 0, 300))
    end = draw(st.integers(1 if non_empty else 0, size))
    length = draw(st.integers(1 if non_empty else 0, end))
    # The last start ≤ end - length aligned to BIT_CEIL(length) makes a valid subtree.
    ceil = 1 if length <= 1 else 1 << (length - 1).bit_length()
    start = ((end - length) // ceil) * ceil
    return size, start, start + length


_SLOW = settings(max_examples=150, deadline=None)


@_SLOW
@given(_subtrees(), st.data())
def test_a_generated_inclusion_proof_verifies(case: tuple[int, int, int], data: st.DataObject) -> None:
    size, start, end = case
    leaves = _leaves(size)
    index = data.draw(st.integers(start, end - 1))
    proof = subtree_inclusion_proof(leaves, index, start, end)
    root = subtree_hash(leaves, start, end)
    verify_subtree_inclusion(index, start, end, leaves[index], proof, root)
    # the same proof is RFC 9162's, for the subtree taken as a tree of its own
    verify_inclusion(index - start, end - start, leaves[index], proof, root)


@_SLOW
@given(_subtrees(non_empty=False))
def test_a_generated_consistency_proof_verifies(case: tuple[int, int, int]) -> None:
    size, start, end = case
    leaves = _leaves(size)
    proof = subtree_consistency_proof(leaves, start, end)
    verify_subtree_consistency(start, end, size, subtree_hash(leaves, start, end), root_of(leaves), proof)


@_SLOW
@given(_subtrees(), st.data())
def test_an_inclusion_proof_with_a_flipped_bit_fails(case: tuple[int, int, int], data: st.DataObject) -> None:
    size, start, end = case
    leaves = _leaves(size)
    index = data.draw(st.integers(start, end - 1))
    proof = subtree_inclusion_proof(leaves, index, start, end)
    root = subtree_hash(leaves, start, end)
    assume(proof)
    i = data.draw(st.integers(0, len(proof) - 1))
    bit = data.draw(st.integers(0, 255))
    bad = list(proof)
    bad[i] = _flip(bad[i], bit)
    with pytest.raises(ProofError):
        verify_subtree_inclusion(index, start, end, leaves[index], bad, root)


@_SLOW
@given(_subtrees(), st.data())
def test_an_inclusion_proof_for_another_index_or_truncated_fails(
    case: tuple[int, int, int], data: st.DataObject
) -> None:
    size, start, end = case
    assume(end - start > 1)
    leaves = _leaves(size)
    index = data.draw(st.integers(start, end - 1))
    other = data.draw(st.integers(start, end - 1).filter(lambda j: j != index))
    proof = subtree_inclusion_proof(leaves, index, start, end)
    root = subtree_hash(leaves, start, end)
    with pytest.raises(ProofError):
        verify_subtree_inclusion(other, start, end, leaves[index], proof, root)
    with pytest.raises(ProofError, match="hashes"):
        verify_subtree_inclusion(index, start, end, leaves[index], proof[:-1], root)
    with pytest.raises(ProofError, match="hashes"):
        verify_subtree_inclusion(index, start, end, leaves[index], [*proof, root], root)


@_SLOW
@given(_subtrees(), st.data())
def test_a_consistency_proof_with_a_flipped_bit_fails(
    case: tuple[int, int, int], data: st.DataObject
) -> None:
    size, start, end = case
    leaves = _leaves(size)
    proof = subtree_consistency_proof(leaves, start, end)
    assume(proof)
    i = data.draw(st.integers(0, len(proof) - 1))
    bit = data.draw(st.integers(0, 255))
    bad = list(proof)
    bad[i] = _flip(bad[i], bit)
    with pytest.raises(ProofError):
        verify_subtree_consistency(start, end, size, subtree_hash(leaves, start, end), root_of(leaves), bad)


@_SLOW
@given(_subtrees(), st.integers(0, 255))
def test_a_consistency_proof_fails_for_a_changed_subtree_hash_or_tree_root(
    case: tuple[int, int, int], bit: int
) -> None:
    size, start, end = case
    leaves = _leaves(size)
    proof = subtree_consistency_proof(leaves, start, end)
    sub, root = subtree_hash(leaves, start, end), root_of(leaves)
    with pytest.raises(ProofError):
        verify_subtree_consistency(start, end, size, _flip(sub, bit), root, proof)
    with pytest.raises(ProofError):
        verify_subtree_consistency(start, end, size, sub, _flip(root, bit), proof)


@_SLOW
@given(_subtrees(), st.data())
def test_a_consistency_proof_for_other_bounds_or_truncated_fails(
    case: tuple[int, int, int], data: st.DataObject
) -> None:
    size, start, end = case
    leaves = _leaves(size)
    proof = subtree_consistency_proof(leaves, start, end)
    sub, root = subtree_hash(leaves, start, end), root_of(leaves)
    if proof:
        with pytest.raises(ProofError):
            verify_subtree_consistency(start, end, size, sub, root, proof[:-1])
    with pytest.raises(ProofError):
        verify_subtree_consistency(start, end, size, sub, root, [*proof, root])
    # the same proof, claimed for another non-empty subtree of the same tree
    others = [(a, b) for b in range(1, size + 1) for a in range(b) if is_valid_subtree(a, b)]
    others.remove((start, end))
    assume(others)
    other_start, other_end = data.draw(st.sampled_from(others))
    with pytest.raises(ProofError):
        verify_subtree_consistency(other_start, other_end, size, sub, root, proof)


@_SLOW
@given(_subtrees(), st.integers(1, 40))
def test_a_consistency_proof_for_another_tree_size_fails(case: tuple[int, int, int], extra: int) -> None:
    size, start, end = case
    leaves = _leaves(size + extra)
    proof = subtree_consistency_proof(leaves, start, end, size)
    sub = subtree_hash(leaves, start, end)
    verify_subtree_consistency(start, end, size, sub, root_of(leaves[:size]), proof)
    with pytest.raises(ProofError):
        verify_subtree_consistency(start, end, size + extra, sub, root_of(leaves), proof)
