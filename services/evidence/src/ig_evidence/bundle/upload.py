"""Streaming a bundle tarball to EvidenceService.RegisterBundle (the CLI's ``register``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ig.evidence.v1 import evidence_pb2, evidence_pb2_grpc
from ig_common.grpc_client import channel_as

CHUNK = 1 << 20


def bundle_archive(bundle: Path) -> Path:
    if bundle.is_file():
        return bundle
    found = sorted(bundle.glob("evidence-*.tar.gz")) + sorted(bundle.glob("evidence-*.tar"))
    if not found:
        raise ValueError(f"{bundle}: no evidence-*.tar.gz bundle inside")
    return found[0]


def register_requests(archive: Path, release: str, tenant: str) -> Iterator[evidence_pb2.RegisterBundleRequest]:
    yield evidence_pb2.RegisterBundleRequest(header=evidence_pb2.BundleHeader(release=release, tenant=tenant))
    with open(archive, "rb") as handle:
        while chunk := handle.read(CHUNK):
            yield evidence_pb2.RegisterBundleRequest(chunk=chunk)


# ig-evidence runs in the release job: it registers bundles as the release identity.
CLIENT_IDENTITY = "release"


def register(target: str, bundle: Path, release: str, tenant: str,
             timeout: float = 600.0) -> evidence_pb2.RegisterBundleResponse:
    archive = bundle_archive(bundle)
    with channel_as(CLIENT_IDENTITY, target) as channel:
        stub = evidence_pb2_grpc.EvidenceServiceStub(channel)
        response: evidence_pb2.RegisterBundleResponse = stub.RegisterBundle(
            register_requests(archive, release, tenant), timeout=timeout)
        return response
