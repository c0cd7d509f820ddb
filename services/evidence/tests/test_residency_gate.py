"""Residency where the evidence service serves: a call acting for a tenant pinned to another region than the
service's IG_REGION is refused (FAILED_PRECONDITION naming both regions) before the upload reaches the blob store
or any store is asked; the tenant judged is the verified caller's, whatever the request names. The servicers run
in-process on recording stand-ins of their stores (no infrastructure), with the caller bound as the authorization
interceptor binds it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import grpc
import pytest
from ig.evidence.v1 import evidence_pb2
from ig.ledger.v1 import ledger_pb2
from ig_common.authz import Caller, ForwardedUser
from ig_common.authz.caller import bind_caller, unbind_caller
from ig_common.residency import load_residency
from ig_common.spiffe import SpiffeId
from ig_evidence.api.evidence import EvidenceServicer
from ig_evidence.api.ledger import LedgerServicer
from ig_evidence.api.residency import RESIDENCY_REFUSALS, ResidencyGate
from ig_evidence.domain.trusted_signers import TrustedSigners
from ig_evidence.domain.upload_limits import UploadLimits
from ig_evidence.settings import Settings
from ig_evidence.store.blobs import BlobStore
from pydantic import ValidationError

REPO = Path(__file__).resolve().parents[3]
# The policy's own data: alpha pinned to region-a, gamma to region-b, beta global.
POLICY_DATA = REPO / "policies" / "rego" / "ig" / "config" / "data.json"
RELEASE_JOB = SpiffeId("maestro.local", "ig", "release")
PORTAL = SpiffeId("maestro.local", "ig", "audit-portal")


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code, self.details = code, details


class Context:
    """What the servicers use of grpc.aio's context: abort ends the call, as it does there."""

    async def abort(self, code: grpc.StatusCode, details: str = "") -> None:
        raise Aborted(code, details)


class Recorder:
    """A store stand-in that records every call; reads answer with nothing."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        async def record(*args: object, **kwargs: object) -> list[object]:
            self.calls.append(name)
            return []

        return record


class RecordingBlobs(BlobStore):
    """The real blob store, counting the temporary files an upload is written into."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.uploads_opened = 0

    def temp_file(self) -> tuple[IO[bytes], Path]:
        self.uploads_opened += 1
        return super().temp_file()


def stored_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


@contextmanager
def acting(caller: Caller) -> Iterator[None]:
    """The caller bound for the block, as the authorization interceptor binds it for a call."""
    token = bind_caller(caller)
    try:
        yield
    finally:
        unbind_caller(token)


def release_job(*tenants: str) -> Caller:
    return Caller(RELEASE_JOB, frozenset(tenants or ("alpha", "beta")))


def portal_user(tenant: str) -> Caller:
    return Caller(PORTAL, frozenset(), ForwardedUser(f"auditor@{tenant}.example", tenant, ("auditor",)))


class Service:
    def __init__(self, region: str, root: Path) -> None:
        self.bundles, self.ledger = Recorder(), Recorder()
        self.blobs = RecordingBlobs(root)
        self.gate = ResidencyGate(load_residency(str(POLICY_DATA), region))
        self.evidence = EvidenceServicer(self.bundles, self.ledger, self.blobs,  # type: ignore[arg-type]
                                         limits=UploadLimits(max_bundle_bytes=4), signers=TrustedSigners(),
                                         residency=self.gate)
        self.ledger_api = LedgerServicer(self.ledger, None, residency=self.gate)  # type: ignore[arg-type]


def region_b(tmp_path: Path) -> Service:
    return Service("region-b", tmp_path / "blobs")


async def upload(tenant: str, pulled: list[str]) -> AsyncIterator[evidence_pb2.RegisterBundleRequest]:
    pulled.append("header")
    yield evidence_pb2.RegisterBundleRequest(header=evidence_pb2.BundleHeader(tenant=tenant, release="v1.2.1"))
    for _ in range(3):
        pulled.append("chunk")
        yield evidence_pb2.RegisterBundleRequest(chunk=b"alpha's evidence bytes")


def refused_count(region: str) -> float:
    return RESIDENCY_REFUSALS.labels(region)._value.get()  # type: ignore[no-any-return]


async def test_register_bundle_of_a_tenant_pinned_to_region_a_is_refused_at_region_b_before_a_byte_is_stored(
        tmp_path: Path) -> None:
    service = region_b(tmp_path)
    before = refused_count("region-a")
    pulled: list[str] = []
    with acting(release_job()), pytest.raises(Aborted) as refused:
        await service.evidence.RegisterBundle(upload("alpha", pulled), Context())  # type: ignore[arg-type]
    assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "pinned to region-a" in refused.value.details and "served from region-b" in refused.value.details
    # Refused on the header: no chunk was read, no upload file opened, no store asked.
    assert pulled == ["header"]
    assert service.blobs.uploads_opened == 0 and stored_files(tmp_path / "blobs") == []
    assert service.bundles.calls == [] and service.ledger.calls == []
    assert refused_count("region-a") == before + 1


async def test_a_global_tenant_registers_at_region_b(tmp_path: Path) -> None:
    """The positive control of the test above: beta's upload gets past the gate and into the blob store (here it
    then stops at IG_MAX_BUNDLE_BYTES, which this stand-in sets to 4 bytes)."""
    service = region_b(tmp_path)
    pulled: list[str] = []
    with acting(release_job()), pytest.raises(Aborted) as stopped:
        await service.evidence.RegisterBundle(upload("beta", pulled), Context())  # type: ignore[arg-type]
    assert stopped.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED, stopped.value
    assert service.blobs.uploads_opened == 1 and pulled == ["header", "chunk"]


async def test_a_forwarded_user_of_alpha_naming_beta_in_the_request_is_judged_as_alpha(tmp_path: Path) -> None:
    service = region_b(tmp_path)
    with acting(portal_user("alpha")), pytest.raises(Aborted) as refused:
        await service.evidence.ListReleases(evidence_pb2.ListReleasesRequest(tenant="beta"),
                                            Context())  # type: ignore[arg-type]
    assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION and "'alpha'" in refused.value.details
    assert service.bundles.calls == []


async def test_the_pinned_tenant_is_served_in_its_own_region_and_beta_in_both(tmp_path: Path) -> None:
    for region, tenant in (("region-a", "alpha"), ("region-a", "beta"), ("region-b", "beta")):
        service = Service(region, tmp_path / region / tenant)
        with acting(release_job()):
            reply = await service.evidence.ListReleases(evidence_pb2.ListReleasesRequest(tenant=tenant),
                                                        Context())  # type: ignore[arg-type]
        assert list(reply.releases) == [] and service.bundles.calls == ["latest_per_release"], (region, tenant)


READS = {
    "ListReleases": evidence_pb2.ListReleasesRequest(tenant="alpha"),
    "ListArtifacts": evidence_pb2.ListArtifactsRequest(release="v1.2.1", tenant="alpha"),
    "GetArtifact": evidence_pb2.GetArtifactRequest(artifact_id="a1", tenant="alpha"),
    "Completeness": evidence_pb2.CompletenessRequest(release="v1.2.1", tenant="alpha"),
    "GetManifest": evidence_pb2.GetManifestRequest(release="v1.2.1", tenant="alpha"),
    "GetVerifyKit": evidence_pb2.GetVerifyKitRequest(release="v1.2.1", tenant="alpha"),
    "ListBundleHistory": evidence_pb2.ListBundleHistoryRequest(release="v1.2.1", tenant="alpha"),
}


@pytest.mark.parametrize("method", sorted(READS))
@pytest.mark.parametrize("who", ["release-job", "portal-user"])
async def test_every_read_of_a_pinned_tenant_is_refused_at_region_b_before_the_store_is_asked(
        tmp_path: Path, method: str, who: str) -> None:
    service = region_b(tmp_path)
    with acting(release_job() if who == "release-job" else portal_user("alpha")), \
            pytest.raises(Aborted) as refused:
        call = getattr(service.evidence, method)(READS[method], Context())
        if hasattr(call, "__aiter__"):  # the streaming reads
            async for _ in call:
                pass
        else:
            await call
    assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION, refused.value
    assert "pinned to region-a" in refused.value.details
    assert service.bundles.calls == [] and service.ledger.calls == []


async def test_the_ledger_refuses_a_forwarded_user_of_a_pinned_tenant_and_serves_workloads(tmp_path: Path) -> None:
    service = region_b(tmp_path)
    with acting(portal_user("alpha")):
        with pytest.raises(Aborted) as refused:
            await service.ledger_api.List(ledger_pb2.ListRequest(tenant="alpha"), Context())  # type: ignore[arg-type]
        assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
        with pytest.raises(Aborted):
            await service.ledger_api.Append(ledger_pb2.AppendRequest(kind="ig.audit.access", subject="alpha/v1",
                                                                     tenant="alpha"),
                                            Context())  # type: ignore[arg-type]
    assert service.ledger.calls == []
    for served in (portal_user("beta"), release_job()):
        with acting(served):
            await service.ledger_api.List(ledger_pb2.ListRequest(tenant="beta"), Context())  # type: ignore[arg-type]
    assert service.ledger.calls == ["list", "list"]


REQUIRED = {"database_url": "postgresql://evidence@127.0.0.1/x", "kafka_bootstrap": "127.0.0.1:9092"}


def test_settings_read_the_pins_for_the_service_region_and_refuse_a_bad_file(tmp_path: Path) -> None:
    settings = Settings(**REQUIRED, region="region-b", tenant_residency_file=str(POLICY_DATA))  # type: ignore[arg-type]
    assert settings.residency.serving_region == "region-b"
    assert settings.residency.refusal("alpha") is not None and settings.residency.refusal("beta") is None
    bad = tmp_path / "data.json"
    bad.write_text('{"tenants": {"alpha": {"residency": {"pinned_region": ""}}}}')
    for path in ("", "  ", str(bad), str(tmp_path / "missing.json")):  # unset fails closed, as a bad file does
        with pytest.raises(ValidationError, match="tenant_residency_file"):
            Settings(**REQUIRED, tenant_residency_file=path)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="unset: name the policy data document"):
        Settings(**REQUIRED)  # type: ignore[arg-type]
