"""RFC 9162 (Certificate Transparency v2) Merkle tree hashing, inclusion and consistency proofs.

Leaves are hashed as SHA-256(0x00 || data) and interior nodes as SHA-256(0x01 || left || right), so a leaf can
never be passed off as a node. The functions follow the recursive definitions of RFC 9162 section 2.1 but work
bottom-up over levels, which keeps a 100,000-leaf tree in a few hundred milliseconds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()


class ProofError(ValueError):
    """A proof does not verify or the request for one is out of range."""


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


class CompactRange:
    """The perfect subtrees that cover leaves [0, n), left to right: at most log2(n) + 1 hashes, yet enough for the
    RFC 9162 root of the tree of every size as leaves arrive one by one (what Verify needs, in flat memory)."""

    def __init__(self) -> None:
        self.size = 0
        self._peaks: list[bytes] = []  # heights strictly decreasing from left to right

    def append(self, leaf: bytes) -> None:
        self._peaks.append(leaf)
        self.size += 1
        merged = self.size
        while merged & 1 == 0:  # two subtrees of equal height become one
            right = self._peaks.pop()
            self._peaks.append(node_hash(self._peaks.pop(), right))
            merged >>= 1

    def root(self) -> bytes:
        if not self._peaks:
            return EMPTY_ROOT
        root = self._peaks[-1]
        for peak in reversed(self._peaks[:-1]):
            root = node_hash(peak, root)
        return root


def _largest_power_of_two_below(n: int) -> int:
    """k with k < n <= 2k, for n > 1 (RFC 9162's split point)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_from_leaf_hashes(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) from already-hashed leaves; an unpaired right node is carried up unchanged, as RFC 9162 implies."""
    if not leaves:
        return EMPTY_ROOT
    level = list(leaves)
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(m, D[n]) for leaf ``index`` in the tree of all ``leaves`` (leaf hashes)."""
    if not 0 <= index < len(leaves):
        raise ProofError(f"leaf index {index} outside tree of size {len(leaves)}")
    return _path(index, leaves)


def _path(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = _largest_power_of_two_below(n)
    if m < k:
        return [*_path(m, leaves[:k]), root_from_leaf_hashes(leaves[k:])]
    return [*_path(m - k, leaves[k:]), root_from_leaf_hashes(leaves[:k])]


def consistency_proof(leaves: Sequence[bytes], first_size: int) -> list[bytes]:
    """PROOF(m, D[n]) that the tree of ``first_size`` leaves is a prefix of the tree of all ``leaves``."""
    n = len(leaves)
    if not 0 < first_size <= n:
        raise ProofError(f"first size {first_size} must be in 1..{n}")
    if first_size == n:
        return []
    return _subproof(first_size, leaves, True)


def _subproof(m: int, leaves: Sequence[bytes], complete_subtree: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete_subtree else [root_from_leaf_hashes(leaves)]
    k = _largest_power_of_two_below(n)
    if m <= k:
        return [*_subproof(m, leaves[:k], complete_subtree), root_from_leaf_hashes(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), root_from_leaf_hashes(leaves[:k])]


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root a verifier computes from an inclusion proof (RFC 9162 section 2.1.3.2)."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} outside tree of size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("inclusion proof is shorter than the tree is deep")
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> None:
    if root_from_inclusion_proof(index, size, leaf, proof) != root:
        raise ProofError(f"inclusion proof for leaf {index} does not lead to the checkpoint root")


def verify_consistency(first_size: int, second_size: int, first_root: bytes, second_root: bytes,
                       proof: Sequence[bytes]) -> None:
    """RFC 9162 section 2.1.4.2: raises ProofError unless the first tree is a prefix of the second."""
    if not 0 < first_size <= second_size:
        raise ProofError(f"sizes {first_size} -> {second_size} are not increasing")
    if first_size == second_size:
        if proof or first_root != second_root:
            raise ProofError("equal sizes need an empty proof and equal roots")
        return
    path = list(proof)
    if first_size & (first_size - 1) == 0:  # a power of two: the first root is itself the starting node
        path.insert(0, first_root)
    if not path:
        raise ProofError("empty consistency proof")
    fn, sn = first_size - 1, second_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("consistency proof is too short")
    if fr != first_root:
        raise ProofError(f"consistency proof does not reproduce the root of size {first_size}")
    if sr != second_root:
        raise ProofError(f"consistency proof does not reproduce the root of size {second_size}")
