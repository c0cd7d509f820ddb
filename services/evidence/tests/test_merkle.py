"""RFC 9162 Merkle math: known answers, and proofs checked against a naive recursive MTH for every shape."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ig_evidence.domain import merkle

# The eight leaves of the Certificate Transparency reference tests and the roots of their prefixes.
CT_LEAVES = [bytes.fromhex(h) for h in ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                         "606162636465666768696a6b6c6d6e6f"]]
CT_ROOTS = {
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    4: "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    6: "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    7: "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}


def naive_root(leaves: list[bytes]) -> bytes:
    """MTH straight from RFC 9162 section 2.1.1, recursive, over already-hashed leaves."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return merkle.node_hash(naive_root(leaves[:k]), naive_root(leaves[k:]))


def hashed(n: int) -> list[bytes]:
    return [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


@pytest.mark.parametrize("size", sorted(CT_ROOTS))
def test_roots_match_the_certificate_transparency_reference_vectors(size: int) -> None:
    leaves = [merkle.leaf_hash(d) for d in CT_LEAVES[:size]]
    assert merkle.root_from_leaf_hashes(leaves).hex() == CT_ROOTS[size]


def test_empty_tree_root_is_the_hash_of_nothing() -> None:
    assert merkle.root_from_leaf_hashes([]).hex() == hashlib.sha256(b"").hexdigest()


@settings(max_examples=150, deadline=None)
@given(size=st.integers(1, 140), data=st.data())
def test_every_inclusion_proof_verifies_and_matches_the_naive_root(size: int, data: st.DataObject) -> None:
    leaves = hashed(size)
    index = data.draw(st.integers(0, size - 1))
    root = merkle.root_from_leaf_hashes(leaves)
    assert root == naive_root(leaves)
    proof = merkle.inclusion_proof(leaves, index)
    merkle.verify_inclusion(index, size, leaves[index], proof, root)
    other = (index + 1) % size
    if other != index:
        with pytest.raises(merkle.ProofError):
            merkle.verify_inclusion(index, size, leaves[other], proof, root)


@settings(max_examples=150, deadline=None)
@given(second=st.integers(1, 140), data=st.data())
def test_every_consistency_proof_verifies_and_a_forked_history_does_not(second: int, data: st.DataObject) -> None:
    leaves = hashed(second)
    first = data.draw(st.integers(1, second))
    proof = merkle.consistency_proof(leaves, first)
    first_root, second_root = naive_root(leaves[:first]), naive_root(leaves)
    merkle.verify_consistency(first, second, first_root, second_root, proof)
    forked = [*leaves[: first - 1], merkle.leaf_hash(b"forged")]
    if first < second:
        with pytest.raises(merkle.ProofError):
            merkle.verify_consistency(first, second, naive_root(forked), second_root, proof)


def test_a_tampered_proof_hash_is_rejected() -> None:
    leaves = hashed(11)
    proof = merkle.inclusion_proof(leaves, 6)
    proof[1] = bytes(32)
    with pytest.raises(merkle.ProofError):
        merkle.verify_inclusion(6, 11, leaves[6], proof, merkle.root_from_leaf_hashes(leaves))


@pytest.mark.parametrize(("index", "size", "proof_length_delta"), [(0, 8, -1), (0, 8, 1), (8, 8, 0), (3, 0, 0)])
def test_malformed_inclusion_requests_are_errors(index: int, size: int, proof_length_delta: int) -> None:
    leaves = hashed(8)
    proof = merkle.inclusion_proof(leaves, 0)
    proof = proof[:proof_length_delta] if proof_length_delta < 0 else proof + [bytes(32)] * proof_length_delta
    with pytest.raises(merkle.ProofError):
        merkle.verify_inclusion(index, size, leaves[0], proof, merkle.root_from_leaf_hashes(leaves))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=8), min_size=0, max_size=300))
def test_a_compact_range_gives_the_root_of_every_prefix(data: list[bytes]) -> None:
    leaves = [merkle.leaf_hash(d) for d in data]
    tree = merkle.CompactRange()
    assert tree.root() == merkle.root_from_leaf_hashes([])
    for n, leaf in enumerate(leaves, start=1):
        tree.append(leaf)
        assert tree.size == n and tree.root() == merkle.root_from_leaf_hashes(leaves[:n])
