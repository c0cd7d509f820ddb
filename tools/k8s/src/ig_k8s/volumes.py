"""PersistentVolumes for the claims a release renders, in clusters that have no storage provisioner (this host's).

A chart's claim without a StorageClass (the evidence blobs) is bound to a PersistentVolume made here for it: a
directory under the region's run dir (hostPath), with the claim's access modes and size, reserved for that claim
(claimRef). With one real node per region, every replica that mounts it is on that node, so one host directory
serves as the shared (ReadWriteMany) filesystem a real cluster would take from NFS, CephFS or a cloud file service.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from ig_k8s.cluster import SimulatedCluster
from ig_k8s.kube import api_client


def volume_name(namespace: str, claim: str) -> str:
    return f"ig-{namespace}-{claim}"


def ensure_volumes(cluster: SimulatedCluster, objects: list[dict[str, Any]], namespace: str) -> list[str]:
    """A PersistentVolume for every class-less claim among ``objects``; returns their names."""
    core = client.CoreV1Api(api_client(cluster.kubeconfig))
    made = []
    for claim in (o for o in objects if o["kind"] == "PersistentVolumeClaim"):
        spec = claim["spec"]
        if spec.get("storageClassName"):
            continue  # the cluster's own provisioner serves it
        name = volume_name(namespace, claim["metadata"]["name"])
        directory = cluster.dir / "volumes" / name
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o777)  # hostPath gets no fsGroup: the pods' non-root user must write it
        body = {"apiVersion": "v1", "kind": "PersistentVolume",
                "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "maestro-conductor"}},
                "spec": {"capacity": {"storage": spec["resources"]["requests"]["storage"]},
                         "accessModes": spec["accessModes"], "persistentVolumeReclaimPolicy": "Retain",
                         "storageClassName": "",
                         "claimRef": {"namespace": namespace, "name": claim["metadata"]["name"]},
                         "hostPath": {"path": str(directory), "type": "DirectoryOrCreate"}}}
        try:
            core.create_persistent_volume(body)
        except ApiException as error:
            if error.status != 409:
                raise
        made.append(name)
    return made
