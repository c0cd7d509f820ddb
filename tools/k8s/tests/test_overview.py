"""What `make k8s-up` / `ig-k8s status` print per region (ig_k8s.overview): the rendering is pure, so each case is a
state and the exact text it must print."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from ig_k8s.overview import ImageRow, PodRow, RegionState, ServiceRow, archive_refs, human_size, render

EMPTY = RegionState("region-b", "https://127.0.0.1:26443", "/k/region-b/kubeconfig")

RUNNING = RegionState(
    "region-a", "https://127.0.0.1:16443", "/k/region-a/kubeconfig", real_node="region-a-real-0 10.250.1.1",
    pods=[PodRow("ig-real", "policy-abc", "region-a-real-0", True, "10.244.1.7", "localhost/ig/policy:node-test"),
          PodRow("ig-real", "burn-xyz", "", False, "", "localhost/ig/burn:node-test")],
    images=[ImageRow("localhost/ig/policy:node-test", 103_412_736, "sha256:aaaa"), ImageRow("ig/burn:1.2.1")],
    services=[ServiceRow("ig-real", "policy", "10.96.0.20", (("grpc", 50051), ("http", 8081))),
              ServiceRow("ig-data", "postgresql", "10.96.0.30", (("postgresql", 5432),))])

HEADLESS = RegionState("region-a", "https://127.0.0.1:16443", "/k", services=[
    ServiceRow("ig", "kafka", "", (("9093", 9093),))])

CASES = {
    "a region with nothing installed on kwok nodes": (EMPTY, [
        "region-b: kube-apiserver https://127.0.0.1:26443, kubeconfig /k/region-b/kubeconfig",
        "  real node: none (kwok nodes only: pods are simulated, no container runs)",
        "  addresses (0 Services):",
        "  pods (0/0 Ready):",
        "  images (0):"]),
    # Sorted by namespace and name; columns aligned; an unscheduled pod without an address; an image not built here.
    "a real node with pods, Services and images": (RUNNING, [
        "region-a: kube-apiserver https://127.0.0.1:16443, kubeconfig /k/region-a/kubeconfig",
        "  real node: region-a-real-0 10.250.1.1",
        "  addresses (2 Services):",
        "    ig-data/postgresql  10.96.0.30  postgresql 5432",
        "    ig-real/policy      10.96.0.20  grpc 50051, http 8081",
        "  pods (1/2 Ready):",
        "    ig-real/burn-xyz    (unscheduled)    not ready  -           localhost/ig/burn:node-test",
        "    ig-real/policy-abc  region-a-real-0  Ready      10.244.1.7  localhost/ig/policy:node-test",
        "  images (2):",
        "    ig/burn:1.2.1                  not built here  -",
        "    localhost/ig/policy:node-test  103.4 MB        sha256:aaaa"]),
    "a Service without a ClusterIP": (HEADLESS, [
        "region-a: kube-apiserver https://127.0.0.1:16443, kubeconfig /k",
        "  real node: none (kwok nodes only: pods are simulated, no container runs)",
        "  addresses (1 Services):",
        "    ig/kafka  None  9093 9093",
        "  pods (0/0 Ready):",
        "  images (0):"]),
}


@pytest.mark.parametrize(("state", "expected"), CASES.values(), ids=CASES.keys())
def test_the_region_overview_prints_addresses_pods_and_images(state: RegionState, expected: list[str]) -> None:
    assert render(state).splitlines() == expected


@pytest.mark.parametrize(("size", "shown"), [(0, "0.0 kB"), (41_500, "41.5 kB"), (100_000, "0.1 MB"),
                                             (97_800_000, "97.8 MB"), (1_234_567_890, "1234.6 MB")])
def test_sizes_are_decimal_units(size: int, shown: str) -> None:
    assert human_size(size) == shown


def _oci_archive(path: Path, index: object) -> None:
    data = json.dumps(index).encode()
    with tarfile.open(path, "w") as tar:
        member = tarfile.TarInfo("index.json")
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))


def test_built_archives_give_each_image_its_size_and_manifest_digest(tmp_path: Path) -> None:
    _oci_archive(tmp_path / "burn-dev.oci.tar", {"manifests": [
        {"digest": "sha256:bbbb", "annotations": {"org.opencontainers.image.ref.name": "localhost/ig/burn:dev"}}]})
    _oci_archive(tmp_path / "nameless.oci.tar", {"manifests": [{"digest": "sha256:cccc"}]})
    (tmp_path / "partial.oci.tar").write_bytes(b"not a tar")
    found = archive_refs(tmp_path)
    assert found == {"localhost/ig/burn:dev": ImageRow("localhost/ig/burn:dev",
                                                       (tmp_path / "burn-dev.oci.tar").stat().st_size, "sha256:bbbb")}
    assert archive_refs(tmp_path / "missing") == {}
