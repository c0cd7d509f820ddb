"""The download streams' chunk reader gives exactly what protobuf's parse gives, and parses anything else fully."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from ig.evidence.v1 import evidence_pb2
from ig_portal.clients.chunk_parts import ChunkPart, chunk_payload, part_reader

read_artifact = part_reader(evidence_pb2.GetArtifactResponse)
read_kit = part_reader(evidence_pb2.GetVerifyKitResponse)


@given(st.binary(max_size=70_000))
def test_a_chunk_message_reads_as_its_bytes_without_a_parse(chunk: bytes) -> None:
    for message, read in ((evidence_pb2.GetArtifactResponse, read_artifact),
                          (evidence_pb2.GetVerifyKitResponse, read_kit)):
        raw = message(chunk=chunk).SerializeToString()
        part = read(raw)
        assert isinstance(part, ChunkPart)
        assert part.chunk == message.FromString(raw).chunk == chunk
        assert part.HasField("chunk") and not part.HasField("artifact") and not part.HasField("info")


def test_a_one_mebibyte_chunk_is_taken_whole() -> None:
    chunk = bytes(range(256)) * 4096
    assert read_artifact(evidence_pb2.GetArtifactResponse(chunk=chunk).SerializeToString()).chunk == chunk


def test_the_first_message_is_parsed_as_protobuf() -> None:
    raw = evidence_pb2.GetArtifactResponse(artifact=evidence_pb2.Artifact(id="a1", name="report.json")
                                           ).SerializeToString()
    part = read_artifact(raw)
    assert not isinstance(part, ChunkPart) and part.HasField("artifact") and part.artifact.name == "report.json"
    info = read_kit(evidence_pb2.GetVerifyKitResponse(info=evidence_pb2.VerifyKitInfo(file_name="kit.tar")
                                                      ).SerializeToString())
    assert info.HasField("info") and info.info.file_name == "kit.tar"


@given(st.binary(max_size=300), st.binary(max_size=40))
def test_anything_but_exactly_one_chunk_record_is_parsed_fully(chunk: bytes, extra: bytes) -> None:
    raw = evidence_pb2.GetArtifactResponse(chunk=chunk).SerializeToString()
    # A record followed by more bytes, or cut short, is not one whole chunk record: left to protobuf.
    assert chunk_payload(raw + b"\x12" + bytes([len(extra)]) + extra) is None
    if len(raw) > 1:
        assert chunk_payload(raw[:-1]) is None
    assert chunk_payload(b"") is None and chunk_payload(b"\x0a\x00") is None
