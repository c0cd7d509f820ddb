"""The decision log's write-ahead log on a real directory: framing, group commit, a torn tail counted exactly as
its records, acknowledgement and deletion, the disk cap (fail closed) and one service per directory."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ig_policy.decisions import new_decision_id
from ig_policy.domain.model import Decision, Reason, Result, Verdict
from ig_policy.domain.wal_entry import decode_decision, encode_decision
from ig_policy.domain.wal_format import HEADER, RECORD, frame_batch, parse
from ig_policy.store.wal import WAL_SYNC_SECONDS, WalFull, WalSettings, WriteAheadLog, acknowledged, segments
from ig_policy.store.wal_tail import WalTail


def decision() -> Decision:
    verdict = Verdict(Result.ALLOW, "ig.purpose.allow_read", "ok", (Reason("ig.purpose.allow_read", "ok"),),
                      ("audit:x",))
    return Decision(new_decision_id(), verdict, "sha256:rev", datetime.now(UTC), 0.25, frozenset({"alice"}))


def payload(n: int) -> bytes:
    return f"record {n} ".encode() * (1 + n % 5)


async def written(directory: Path, batches: list[list[bytes]], **settings: int) -> None:
    """Each inner list as one group commit, then the WAL closed (as a service that stops)."""
    wal = WriteAheadLog(WalSettings(directory, **settings))  # type: ignore[arg-type]
    wal.open()
    for batch in batches:
        done = [wal.append(p) for p in batch]
        await wal.commit()
        await asyncio.gather(*done)
    await wal.close()


def restart(directory: Path) -> None:
    """What a restarted service does first: a new segment after the old ones (the old tail is final now)."""
    asyncio.run(written(directory, []))


def test_a_decision_survives_the_entry_encoding() -> None:
    original = decision()
    policy_input = {"actor": {"id": "alice", "tenant": "acme"}, "n": 1}
    assert decode_decision(encode_decision(policy_input, original)) == (policy_input, original)
    with pytest.raises(ValueError, match="not a decision-log WAL entry"):
        decode_decision(b'{"id": 1}')


@given(st.lists(st.lists(st.binary(max_size=40), min_size=1, max_size=6), min_size=1, max_size=5),
       st.integers(min_value=0))
def test_any_cut_of_the_last_batch_is_counted_as_exactly_its_missing_records(batches: list[list[bytes]],
                                                                             cut_seed: int) -> None:
    data = b"".join(frame_batch(b) for b in batches)
    last = frame_batch(batches[-1])
    # Cut anywhere after the last batch's header (a torn header cannot be counted: tested below).
    cut = len(data) - len(last) + HEADER.size + cut_seed % (len(last) - HEADER.size)
    parsed = parse(data[:cut], final=True)
    delivered = [p for _, p in parsed.records]
    whole = [p for b in batches[:-1] for p in b]
    assert delivered[:len(whole)] == whole
    survivors = delivered[len(whole):]
    assert survivors == batches[-1][:len(survivors)]
    assert parsed.torn_records == len(batches[-1]) - len(survivors) > 0
    assert parsed.consumed == cut

    still_writing = parse(data[:cut], final=False)
    assert still_writing.incomplete and still_writing.torn_records == 0
    assert [p for _, p in still_writing.records] == whole


def test_a_damaged_record_counts_the_rest_of_its_batch() -> None:
    batch = [payload(n) for n in range(5)]
    data = bytearray(frame_batch(batch) + frame_batch([b"after"]))
    third = HEADER.size + sum(RECORD.size + len(p) for p in batch[:2]) + RECORD.size
    data[third] ^= 0xFF
    parsed = parse(bytes(data), final=True)
    assert [p for _, p in parsed.records] == [*batch[:2], b"after"]
    assert parsed.torn_records == 3


def test_a_damaged_header_is_reported_uncountable() -> None:
    data = frame_batch([b"a"]) + frame_batch([b"b", b"c"])[:HEADER.size - 3]
    parsed = parse(data, final=True)
    assert [p for _, p in parsed.records] == [b"a"]
    assert parsed.torn_unknown and parsed.torn_records == 0


async def test_group_commit_answers_concurrent_appends_with_few_syncs(tmp_path: Path) -> None:
    wal = WriteAheadLog(WalSettings(tmp_path))
    wal.open()
    committing = asyncio.create_task(wal.run())
    syncs_before = _count(WAL_SYNC_SECONDS)

    async def one(n: int) -> None:
        await asyncio.sleep(0)
        await wal.append(payload(n))

    await asyncio.gather(*(one(n) for n in range(200)))
    syncs = _count(WAL_SYNC_SECONDS) - syncs_before
    await wal.close()
    await committing
    assert 1 <= syncs < 50, f"{syncs} fsyncs for 200 appends: no grouping"
    tail = WalTail(tmp_path)
    assert sorted(tail.read(1000).payloads) == sorted(payload(n) for n in range(200))


def test_a_torn_tail_is_counted_once_a_newer_segment_exists_and_acknowledged_segments_go(tmp_path: Path) -> None:
    batches = [[payload(n) for n in range(k * 10, k * 10 + 10)] for k in range(3)]
    asyncio.run(written(tmp_path, batches))
    (_, path), = segments(tmp_path)
    with path.open("r+b") as file:  # the machine died while the third batch was being written
        file.truncate(path.stat().st_size - RECORD.size - len(batches[2][-1]) - RECORD.size - len(batches[2][-2]))

    tail = WalTail(tmp_path)
    waiting = tail.read(1000)
    assert waiting.payloads == batches[0] + batches[1]
    assert not waiting.torn, "the newest segment's end may still be being written"

    restart(tmp_path)
    tail = WalTail(tmp_path)
    stretch = tail.read(1000)
    assert stretch.payloads == batches[0] + batches[1] + batches[2][:8]
    assert [t.records for t in stretch.torn] == [2]
    tail.acknowledge(stretch.end)
    assert [s for s, _ in segments(tmp_path)] == [stretch.end.segment]
    assert acknowledged(tmp_path) == stretch.end
    again = WalTail(tmp_path).read(1000)
    assert again.empty, "acknowledged records are not read again"


def test_a_new_reader_goes_on_from_the_acknowledgement(tmp_path: Path) -> None:
    batches = [[payload(n)] * 3 for n in range(6)]
    asyncio.run(written(tmp_path, batches, segment_bytes=120))
    assert len(segments(tmp_path)) > 2
    first = WalTail(tmp_path)
    part = first.read(6)
    assert part.payloads == [p for b in batches[:2] for p in b]
    first.acknowledge(part.end)
    rest = WalTail(tmp_path).read(1000)
    assert rest.payloads == [p for b in batches[2:] for p in b]


async def test_past_the_cap_decisions_are_refused_until_the_writer_catches_up(tmp_path: Path) -> None:
    wal = WriteAheadLog(WalSettings(tmp_path, segment_bytes=1000, max_bytes=3000))
    wal.open()
    accepted = 0
    with pytest.raises(WalFull, match="IG_DECISION_LOG_WAL_MAX_MB"):
        for _ in range(1000):
            done = wal.append(b"x" * 200)
            accepted += 1
            await wal.commit()
            await done
    # A batch of one 200-byte record is 224 bytes framed: 13 fit under 3,000, the 14th is refused.
    assert accepted == 13
    tail = WalTail(tmp_path)
    stretch = tail.read(10_000)
    assert len(stretch.payloads) == 13
    tail.acknowledge(stretch.end)
    await asyncio.sleep(0.6)  # the service reads the directory's size again at most twice a second
    done = wal.append(b"x" * 200)
    await wal.commit()
    await done
    await wal.close()


def test_one_service_per_directory(tmp_path: Path) -> None:
    first = WriteAheadLog(WalSettings(tmp_path))
    first.open()
    with pytest.raises(RuntimeError, match=f"IG_DECISION_LOG_WAL_DIR {tmp_path} is in use"):
        WriteAheadLog(WalSettings(tmp_path)).open()


def _count(histogram: object) -> float:
    return next(s.value for f in histogram.collect() for s in f.samples  # type: ignore[attr-defined]
                if s.name.endswith("_count"))
