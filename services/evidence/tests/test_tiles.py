"""C2SP tlog-tiles: paths, integration in batches, and roots/proofs from tiles equal to the RFC 9162 ones."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ig_evidence.domain import merkle, tiles


def hashed(n: int) -> list[bytes]:
    return [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


def integrate(leaves: list[bytes], batches: list[int]) -> dict[tiles.TileKey, bytes]:
    """Tiles built as the ledger builds them: batch after batch, each extending only the right-edge tiles."""
    store: dict[tiles.TileKey, bytes] = {}
    size = 0
    for batch in [*batches, len(leaves)]:
        end = min(len(leaves), size + batch)
        edge = {key: store[key] for key in tiles.right_edge(size)}
        for key, data in tiles.extend(size, edge, leaves[size:end]).items():
            assert data.startswith(store.get(key, b"")), f"tile {key} rewritten, not extended"
            store[key] = data
        size = end
    return store


@pytest.mark.parametrize(("index", "path"), [
    (0, "000"), (5, "005"), (999, "999"), (1000, "x001/000"), (1234067, "x001/x234/067"),
    (1_000_000, "x001/x000/000"),
])
def test_index_encoding(index: int, path: str) -> None:
    assert tiles.encode_index(index) == path
    assert tiles.parse_tile_path(f"0/{path}") == (0, index, 256)


@pytest.mark.parametrize(("path", "parsed"), [
    ("0/000", (0, 0, 256)), ("1/x001/234.p/17", (1, 1234, 17)), ("entries/002.p/255", (None, 2, 255)),
    ("63/000.p/1", (63, 0, 1)),
])
def test_tile_paths_round_trip(path: str, parsed: tuple[int | None, int, int]) -> None:
    assert tiles.parse_tile_path(path) == parsed
    level, index, width = parsed
    assert tiles.tile_path("entries" if level is None else level, index, width) == f"tile/{path}"


@pytest.mark.parametrize("path", [
    "00/000", "64/000", "0/1", "0/0000", "0/x1/000", "0/001.p/0", "0/001.p/256", "0/001.p/07", "-1/000",
    "0/001/", "entries/x000", "0/000.p/", "a/000",
])
def test_malformed_tile_paths_are_refused(path: str) -> None:
    with pytest.raises(ValueError):
        tiles.parse_tile_path(path)


def test_the_spec_example_of_a_tree_of_70000() -> None:
    # c2sp.org/tlog-tiles: 273 full level-0 tiles, a partial of width 112, one full level-1 tile, a partial of 17,
    # and a partial level-2 tile of width 1.
    assert (tiles.hashes_at_level(70_000, 0) // 256, tiles.tile_width(70_000, 0, 273)) == (273, 112)
    assert (tiles.tile_width(70_000, 1, 0), tiles.tile_width(70_000, 1, 1)) == (256, 17)
    assert (tiles.tile_width(70_000, 2, 0), tiles.tile_width(70_000, 3, 0)) == (1, 0)
    assert tiles.right_edge(70_000) == [(0, 273), (1, 1), (2, 0)]
    assert tiles.right_edge(256) == [(1, 0)]


@settings(max_examples=60, deadline=None)
@given(size=st.integers(min_value=1, max_value=70_000), data=st.data())
def test_tile_roots_and_proofs_equal_rfc9162_for_random_sizes(size: int, data: st.DataObject) -> None:
    leaves = hashed(size)
    batches = data.draw(st.lists(st.integers(min_value=1, max_value=3000), max_size=5))
    store = integrate(leaves, batches)
    first = data.draw(st.integers(min_value=1, max_value=size))
    index = data.draw(st.integers(min_value=0, max_value=size - 1))

    def tiles_of(ranges: list[tuple[int, int]]) -> dict[tiles.TileKey, bytes]:
        # Only what the ranges' tiles_for_ranges names is handed over: a proof must not need more.
        return {key: store[key] for key in tiles.tiles_for_ranges(ranges)}

    root_ranges = [(0, first)]
    assert tiles.range_hash(0, first, tiles_of(root_ranges)) == merkle.root_from_leaf_hashes(leaves[:first])
    inclusion = tiles.inclusion_ranges(index, size)
    needed = tiles_of(inclusion)
    assert [tiles.range_hash(a, b, needed) for a, b in inclusion] == merkle.inclusion_proof(leaves, index)
    consistency = tiles.consistency_ranges(first, size)
    needed = tiles_of(consistency)
    assert [tiles.range_hash(a, b, needed) for a, b in consistency] == merkle.consistency_proof(leaves, first)


@pytest.mark.parametrize("size", [1, 255, 256, 257, 65_535, 65_536, 65_537, 70_000])
def test_tiles_at_tile_boundaries(size: int) -> None:
    leaves = hashed(size)
    store = integrate(leaves, [1, 255, 1000])
    assert tiles.range_hash(0, size, store) == merkle.root_from_leaf_hashes(leaves)
    for level in range(3):
        for index in range(tiles.hashes_at_level(size, level) // 256 + 1):
            width = tiles.tile_width(size, level, index)
            assert len(store.get((level, index), b"")) == width * 32
    assert len(tiles.tiles_for_ranges(tiles.inclusion_ranges(size - 1, size))) <= 2 * 3 + 1


def test_a_proof_asks_for_log_n_tiles_at_ten_million() -> None:
    size = 10_000_000
    for index in (0, 4_999_999, size - 1):
        assert len(tiles.tiles_for_ranges(tiles.inclusion_ranges(index, size))) <= 8
    assert len(tiles.tiles_for_ranges(tiles.consistency_ranges(1_234_567, size))) <= 12


def test_a_missing_or_short_tile_is_an_error_not_a_wrong_hash() -> None:
    store = integrate(hashed(300), [])
    short = {**store, (0, 1): store[(0, 1)][:32]}
    with pytest.raises(merkle.ProofError, match="lacks"):
        tiles.range_hash(0, 300, short)
    with pytest.raises(merkle.ProofError, match="expected 44"):
        tiles.extend(300, {(0, 1): b""}, hashed(1))


async def test_closing_stops_the_integrator_even_as_an_append_wakes_it() -> None:
    """The wake-up and the cancellation in the same turn of the loop: the integrator must still stop (with
    asyncio.wait_for, Python 3.11 kept the wake-up, dropped the cancellation and close() never returned)."""
    import asyncio

    from ig_evidence.store.tiles import TiledTree

    tree = TiledTree(None, "unused")  # type: ignore[arg-type]  # never integrates: no wake-up reaches the database
    integrator = asyncio.ensure_future(tree._integrate_forever())
    await asyncio.sleep(0.05)  # waiting for a wake-up
    tree._wake.set()
    integrator.cancel()
    done, _ = await asyncio.wait({integrator}, timeout=2)
    assert integrator in done and integrator.cancelled()
