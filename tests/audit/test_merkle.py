"""RFC 9162 Merkle trees, checked against the public transparency-dev vectors in
shared/vectors/rfc6962 (every case, including those that must fail) and by properties."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kyso.audit.merkle import (
    EMPTY_ROOT,
    Frontier,
    MerkleTree,
    leaf_hash,
    node_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)
from kyso.errors import ProofError


def _shared() -> Path:
    """shared/ sits beside the repository (CI's layout); KYSO_SHARED_DIR overrides."""
    if os.environ.get("KYSO_SHARED_DIR"):
        return Path(os.environ["KYSO_SHARED_DIR"])
    for parent in Path(__file__).resolve().parents:
        if (parent / "shared" / "vectors").is_dir():
            return parent / "shared"
    return Path(__file__).resolve().parents[3] / "shared"


VECTORS = _shared() / "vectors" / "rfc6962"


def _cases(kind: str) -> list[Any]:
    files = sorted((VECTORS / kind).rglob("*.json"))
    return [pytest.param(f, id=str(f.relative_to(VECTORS / kind))) for f in files]


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value) if value else b""


def _proof(values: list[str] | None) -> list[bytes]:
    return [_b64(v) for v in values or []]


def test_the_vector_folders_are_there() -> None:
    assert len(_cases("inclusion")) > 50
    assert len(_cases("consistency")) > 50


@pytest.mark.parametrize("path", _cases("inclusion"))
def test_inclusion_vector(path: Path) -> None:
    v = json.loads(path.read_text())
    args = (v["leafIdx"], v["treeSize"], _b64(v["leafHash"]), _proof(v["proof"]), _b64(v["root"]))
    if v["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("path", _cases("consistency"))
def test_consistency_vector(path: Path) -> None:
    v = json.loads(path.read_text())
    args = (v["size1"], v["size2"], _b64(v["root1"]), _b64(v["root2"]), _proof(v["proof"]))
    if v["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def test_known_roots_of_rfc6962_reference_tree() -> None:
    # The eight-leaf reference tree of the Certificate Transparency test suite.
    leaves = [b"", b"\x00", b"\x10", b"\x20\x21", b"\x30\x31", b"\x40\x41\x42\x43",
              b"\x50\x51\x52\x53\x54\x55\x56\x57",
              b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f"]
    hashes = [leaf_hash(x) for x in leaves]
    assert root_of(hashes).hex() == (
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")
    assert root_of(hashes[:1]).hex() == (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")
    assert root_of([]) == EMPTY_ROOT


def test_leaf_and_node_hashes_are_domain_separated() -> None:
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert node_hash(a, b) != leaf_hash(a + b)


leaf_lists = st.lists(st.binary(max_size=8), min_size=1, max_size=70, unique=True)


@settings(max_examples=60, deadline=None)
@given(leaf_lists, st.data())
def test_every_inclusion_proof_verifies_and_a_tampered_one_does_not(
        leaves: list[bytes], data: st.DataObject) -> None:
    hashes = [leaf_hash(x) for x in leaves]
    tree = MerkleTree(hashes)
    size = data.draw(st.integers(1, len(hashes)))
    index = data.draw(st.integers(0, size - 1))
    proof = tree.inclusion_proof(index, size)
    root = tree.root(size)
    verify_inclusion(index, size, hashes[index], proof, root)
    assert len(proof) <= (size - 1).bit_length()
    if proof:
        i = data.draw(st.integers(0, len(proof) - 1))
        bad = list(proof)
        bad[i] = bytes([bad[i][0] ^ 1]) + bad[i][1:]
        with pytest.raises(ProofError):
            verify_inclusion(index, size, hashes[index], bad, root)
    if size > 1:
        with pytest.raises(ProofError):
            verify_inclusion((index + 1) % size, size, hashes[index], proof, root)


@settings(max_examples=60, deadline=None)
@given(leaf_lists, st.data())
def test_every_consistency_proof_verifies_and_a_rewritten_history_does_not(
        leaves: list[bytes], data: st.DataObject) -> None:
    hashes = [leaf_hash(x) for x in leaves]
    tree = MerkleTree(hashes)
    size2 = data.draw(st.integers(1, len(hashes)))
    size1 = data.draw(st.integers(1, size2))
    proof = tree.consistency_proof(size1, size2)
    verify_consistency(size1, size2, tree.root(size1), tree.root(size2), proof)
    assert len(proof) <= (size2 - 1).bit_length() + 1
    forged = MerkleTree([leaf_hash(b"forged"), *hashes[1:size2]])
    if size1 < size2:
        with pytest.raises(ProofError):
            verify_consistency(size1, size2, forged.root(size1), tree.root(size2), proof)


@given(leaf_lists)
def test_frontier_root_matches_the_recursive_definition(leaves: list[bytes]) -> None:
    hashes = [leaf_hash(x) for x in leaves]
    frontier = Frontier()
    tree = MerkleTree(hashes)
    for i, h in enumerate(hashes):
        frontier.append(h)
        assert frontier.root() == tree.root(i + 1)
    assert len(frontier.hashes) == bin(len(hashes)).count("1")


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=0, max_value=300).flatmap(
    lambda n: st.tuples(st.just(n), st.lists(st.integers(min_value=0, max_value=n), max_size=6))))
def test_extending_a_frontier_in_batches_equals_appending_one_by_one(
        shape: tuple[int, list[int]]) -> None:
    total, cuts = shape
    hashes = [leaf_hash(i.to_bytes(4, "big")) for i in range(total)]
    one_by_one = Frontier()
    batched = Frontier()
    start = 0
    for cut in [*sorted(cuts), total]:
        for h in hashes[start:cut]:
            one_by_one.append(h)
        batch = hashes[start:cut]
        batched.extend(batch)
        assert batch == hashes[start:cut]  # the caller's list is left alone
        assert batched == one_by_one
        assert batched.root() == MerkleTree(hashes).root(cut)
        start = cut


def test_root_of_is_the_tree_root_at_every_size_up_to_a_few_powers_of_two() -> None:
    hashes = [leaf_hash(i.to_bytes(4, "big")) for i in range(1025)]
    tree = MerkleTree(hashes)
    for n in (0, 1, 2, 3, 255, 256, 257, 1023, 1024, 1025):
        assert root_of(hashes[:n]) == tree.root(n)


@pytest.mark.parametrize("bad", [b"", b"short", "not bytes", b"\x00" * 33])
def test_malformed_hashes_are_refused_clearly(bad: Any) -> None:
    good = leaf_hash(b"x")
    with pytest.raises(ProofError, match="32-byte"):
        verify_inclusion(0, 1, bad, [], good)
    with pytest.raises(ProofError, match="32-byte"):
        verify_consistency(1, 2, good, good, [bad])


def test_proof_for_a_leaf_outside_the_tree_is_refused() -> None:
    tree = MerkleTree([leaf_hash(b"a"), leaf_hash(b"b")])
    with pytest.raises(ProofError):
        tree.inclusion_proof(2)
    with pytest.raises(ProofError):
        tree.consistency_proof(0)
    with pytest.raises(ProofError):
        tree.root(3)
