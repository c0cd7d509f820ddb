"""The ledger's Merkle tree as C2SP tlog-tiles (c2sp.org/tlog-tiles): roots and RFC 9162 proofs from tiles.

A tile at level L, index N holds up to 256 consecutive hashes of level L: at level 0 the leaf hashes, above it
the hash of each *full* tile of the level below (a perfect subtree of 256**L leaves). Hashes never change once
written, so a partial tile of width W is the first W hashes of any wider version of it: the store keeps one row
per tile, growing until full, and serves any prefix of it as ``.p/W``.

Every hash a proof or a root needs is the hash of a perfect subtree, which lies inside one tile (at level
``height // 8``, at most 128 of its hashes, hashed pairwise up); a proof needs O(log n) of them, so O(log n) tile
reads and no leaf list. The functions here are pure: the caller fetches the tiles ``*_tiles_needed`` names (a
mapping ``(level, index) -> hashes``, each possibly wider than needed) and hands them back.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from hashlib import sha256

from ig_evidence.domain.merkle import EMPTY_ROOT, ProofError, node_hash

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT  # 256 hashes, 8,192 bytes when full
HASH_SIZE = 32

TileKey = tuple[int, int]  # (level, index)
Tiles = Mapping[TileKey, bytes]
Subtree = tuple[int, int]  # (first leaf, height): the perfect subtree of leaves [first, first + 2**height)


# -- paths ---------------------------------------------------------------------------------------------------------
def encode_index(index: int) -> str:
    """N as zero-padded 3-digit path elements, all but the last prefixed with x: 1234067 -> x001/x234/067."""
    if index < 0:
        raise ValueError("tile index must be >= 0")
    groups = []
    while True:
        groups.append(f"{index % 1000:03d}")
        index //= 1000
        if index == 0:
            break
    groups.reverse()
    return "/".join([*(f"x{g}" for g in groups[:-1]), groups[-1]])


def tile_path(level: int | str, index: int, width: int = TILE_WIDTH) -> str:
    """``tile/<L>/<N>[.p/<W>]``; level ``"entries"`` for entry bundles."""
    suffix = "" if width == TILE_WIDTH else f".p/{width}"
    return f"tile/{level}/{encode_index(index)}{suffix}"


_PATH = re.compile(r"^(?P<level>0|[1-9][0-9]?|entries)/(?P<index>(?:x[0-9]{3}/)*[0-9]{3})"
                   r"(?:\.p/(?P<width>[1-9][0-9]{0,2}))?$")


def parse_tile_path(path: str) -> tuple[int | None, int, int]:
    """``<L>/<N>[.p/<W>]`` (below ``tile/``) -> (level or None for entries, index, width); ValueError if malformed."""
    match = _PATH.fullmatch(path)
    if match is None:
        raise ValueError(f"not a tile path: {path!r}")
    level = None if match["level"] == "entries" else int(match["level"])
    if level is not None and level > 63:
        raise ValueError(f"tile level {level} is above 63")
    width = int(match["width"]) if match["width"] else TILE_WIDTH
    if match["width"] and width >= TILE_WIDTH:
        raise ValueError(f"partial tile width {width} must be 1..255")
    index = int(match["index"].replace("x", "").replace("/", ""))
    return level, index, width


def hashes_at_level(tree_size: int, level: int) -> int:
    """How many hashes level ``level`` has in a tree of ``tree_size`` leaves (only full tiles go up a level)."""
    return tree_size >> (TILE_HEIGHT * level)


def tile_width(tree_size: int, level: int, index: int) -> int:
    """The width of tile (level, index) in a tree of ``tree_size`` leaves (0: no such tile)."""
    return max(0, min(TILE_WIDTH, hashes_at_level(tree_size, level) - index * TILE_WIDTH))


# -- integration -----------------------------------------------------------------------------------------------------
def right_edge(tree_size: int) -> list[TileKey]:
    """The tiles that a tree of ``tree_size`` leaves extends when it grows: the partial tile of every level."""
    keys = []
    level = 0
    while hashes_at_level(tree_size, level):
        count = hashes_at_level(tree_size, level)
        if count % TILE_WIDTH:
            keys.append((level, count // TILE_WIDTH))
        level += 1
    return keys


def perfect_root(hashes: Sequence[bytes]) -> bytes:
    """The root over a power-of-two number of hashes (a full tile, or part of one)."""
    return _packed_root(b"".join(hashes))


def _packed_root(level: bytes) -> bytes:
    """The root over a power-of-two number of hashes packed back to back: each pair is hashed straight from its
    64 bytes (this is most of a proof's CPU, so no per-hash objects)."""
    while len(level) > HASH_SIZE:
        level = b"".join(sha256(b"\x01" + level[i:i + 2 * HASH_SIZE]).digest()
                         for i in range(0, len(level), 2 * HASH_SIZE))
    return level


def extend(tree_size: int, edge: Tiles, leaf_hashes: Sequence[bytes]) -> dict[TileKey, bytes]:
    """The tiles that change when ``leaf_hashes`` are appended to a tree of ``tree_size`` leaves, whose right-edge
    tiles are ``edge`` (as ``right_edge(tree_size)`` names them): each as its whole new content."""
    changed: dict[TileKey, bytes] = {}
    level, incoming = 0, list(leaf_hashes)
    while incoming:
        count = hashes_at_level(tree_size, level)
        index, width = divmod(count, TILE_WIDTH)
        current = edge.get((level, index), b"")[: width * HASH_SIZE] if width else b""
        if len(current) != width * HASH_SIZE:
            raise ProofError(f"tile {level}/{index} holds {len(current) // HASH_SIZE} hashes, expected {width}")
        hashes = [current[i:i + HASH_SIZE] for i in range(0, len(current), HASH_SIZE)]
        upward: list[bytes] = []
        for digest in incoming:
            hashes.append(digest)
            if len(hashes) == TILE_WIDTH:
                changed[(level, index)] = b"".join(hashes)
                upward.append(perfect_root(hashes))
                index, hashes = index + 1, []
        if hashes:
            changed[(level, index)] = b"".join(hashes)
        level, incoming = level + 1, upward
    return changed


# -- reading hashes back ----------------------------------------------------------------------------------------------
def perfect_subtrees(start: int, end: int) -> list[Subtree]:
    """[start, end) as the largest aligned perfect subtrees, left to right (RFC 9162 hashes such a range as
    node(first, node(second, ...)) whenever ``start`` is aligned, as it is in every proof and root)."""
    subtrees = []
    while start < end:
        height = (end - start).bit_length() - 1
        while start % (1 << height):
            height -= 1
        subtrees.append((start, height))
        start += 1 << height
    return subtrees


def _locate(subtree: Subtree) -> tuple[TileKey, int, int]:
    """The tile holding a perfect subtree's hashes, and the slice of them (offset, count) it is the root of."""
    first, height = subtree
    level = height // TILE_HEIGHT
    position = first >> (TILE_HEIGHT * level)
    return (level, position // TILE_WIDTH), position % TILE_WIDTH, 1 << (height - TILE_HEIGHT * level)


def tiles_for(subtrees: Iterable[Subtree]) -> set[TileKey]:
    return {_locate(subtree)[0] for subtree in subtrees}


def subtree_hash(subtree: Subtree, tiles: Tiles) -> bytes:
    key, offset, count = _locate(subtree)
    data = tiles.get(key, b"")[offset * HASH_SIZE:(offset + count) * HASH_SIZE]
    if len(data) != count * HASH_SIZE:
        raise ProofError(f"tile {key[0]}/{key[1]} lacks hashes {offset}..{offset + count - 1}")
    return _packed_root(data)


def range_hash(start: int, end: int, tiles: Tiles) -> bytes:
    """MTH(D[start:end]) for an aligned range, from tiles."""
    hashes = [subtree_hash(subtree, tiles) for subtree in perfect_subtrees(start, end)]
    if not hashes:
        return EMPTY_ROOT
    root = hashes[-1]
    for digest in reversed(hashes[:-1]):
        root = node_hash(digest, root)
    return root


def _split(size: int) -> int:
    return 1 << ((size - 1).bit_length() - 1)


def inclusion_ranges(index: int, tree_size: int) -> list[tuple[int, int]]:
    """The ranges whose hashes make up PATH(index, D[0:tree_size]), in proof order (RFC 9162 section 2.1.3.1)."""
    if not 0 <= index < tree_size:
        raise ProofError(f"leaf index {index} outside tree of size {tree_size}")
    ranges: list[tuple[int, int]] = []
    start, end = 0, tree_size
    while end - start > 1:
        middle = start + _split(end - start)
        if index < middle:
            ranges.append((middle, end))
            end = middle
        else:
            ranges.append((start, middle))
            start = middle
    ranges.reverse()
    return ranges


def consistency_ranges(first_size: int, tree_size: int) -> list[tuple[int, int]]:
    """The ranges whose hashes make up PROOF(first_size, D[0:tree_size]) (RFC 9162 section 2.1.4.1)."""
    if not 0 < first_size <= tree_size:
        raise ProofError(f"first size {first_size} must be in 1..{tree_size}")
    ranges: list[tuple[int, int]] = []
    if first_size == tree_size:
        return ranges
    start, end, whole = 0, tree_size, True
    while first_size - start != end - start:
        middle = start + _split(end - start)
        if first_size <= middle:
            ranges.append((middle, end))
            end = middle
        else:
            ranges.append((start, middle))
            start, whole = middle, False
    if not whole:
        ranges.append((start, end))
    ranges.reverse()
    return ranges


def tiles_for_ranges(ranges: Iterable[tuple[int, int]]) -> set[TileKey]:
    return tiles_for(subtree for start, end in ranges for subtree in perfect_subtrees(start, end))
