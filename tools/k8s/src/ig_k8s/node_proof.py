"""Proof that the real node runs containers, read from the node itself rather than from a status a simulator sets.

Two pods of a service image, scheduled onto the region's real node through the scheduler (node selector):

* ``entrypoint``: the image's own ENTRYPOINT with no settings. It must stop with the service's settings error (exit
  2, "invalid setting IG_DATABASE_URL"): the image's Python and the service's installed package really ran. (The
  service itself needs PostgreSQL, Kafka and certificates reachable from pods: issue #22 item 3.)
* ``probed``: the same image running ``python -m http.server`` as the image's non-root user on a read-only root
  filesystem, with an HTTP readiness probe. Ready means the kubelet's probe got a 200 from a process in the pod;
  the container's log file on the node shows the probe's requests, the host reaches the pod's own address, and
  containerd's task for the container is a live process whose command line is that server.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

from ig_infra.paths import Paths
from ig_infra.process import InfraError

from ig_k8s.node import REAL_NODE_LABEL, RealNode
from ig_k8s.node_build import NodeBinaries
from ig_k8s.suite import by_name

NAMESPACE = "ig-node-proof"
PROBE_PORT = 8080


def _pod(name: str, image: str, node: RealNode, container: dict[str, Any],
         namespace: str = NAMESPACE) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "nodeSelector": {REAL_NODE_LABEL: "real", "kubernetes.io/hostname": node.name},
            "tolerations": [{"key": REAL_NODE_LABEL, "operator": "Equal", "value": "real", "effect": "NoSchedule"}],
            "restartPolicy": "Never", "automountServiceAccountToken": False, "terminationGracePeriodSeconds": 5,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001},
            "containers": [{"name": "main", "image": image, "imagePullPolicy": "Never",
                            "securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                                                "capabilities": {"drop": ["ALL"]}},
                            **container}],
        },
    }


def entrypoint_pod(image: str, node: RealNode) -> dict[str, Any]:
    return _pod("entrypoint", image, node, {})


def probed_pod(image: str, node: RealNode) -> dict[str, Any]:
    return _pod("probed", image, node, {
        "command": ["python", "-m", "http.server", str(PROBE_PORT), "--bind", "0.0.0.0", "--directory", "/opt/venv"],
        "ports": [{"name": "http", "containerPort": PROBE_PORT}],
        "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1, "failureThreshold": 3},
    })


def _wait(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.5)
    raise InfraError(f"{what}: not after {timeout:.0f}s")


def container_log(node: RealNode, pod: dict[str, Any]) -> str:
    """The container's log file as the kubelet writes it on the node (<podLogsDir>/<ns>_<pod>_<uid>/<container>)."""
    meta = pod["metadata"]
    directory = node.pod_logs / f"{meta['namespace']}_{meta['name']}_{meta['uid']}" / "main"
    return "".join(path.read_text(errors="replace") for path in sorted(directory.glob("*.log")))


def prove(region: str, service: str, tag: str, paths: Paths) -> dict[str, Any]:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    from ig_k8s.kube import api_client

    node = RealNode(region, paths)
    binaries = NodeBinaries.cached(paths)
    if binaries is None or not node.running():
        raise InfraError(f"{region}: the real node is not running (run `ig-k8s node up --region {region}`)")
    image = f"localhost/{by_name(service).image}:{tag}"
    core = client.CoreV1Api(api_client(node.cluster.kubeconfig))
    try:
        core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    except ApiException as error:
        if error.status != 409:
            raise
    for name in ("entrypoint", "probed"):
        try:
            core.delete_namespaced_pod(name, NAMESPACE, grace_period_seconds=0)
        except ApiException as error:
            if error.status != 404:
                raise
    _wait(lambda: not [p for p in core.list_namespaced_pod(NAMESPACE).items], 60, "old proof pods gone")

    def create(manifest: dict[str, Any]) -> float:
        def attempt() -> bool:
            try:  # the namespace's default service account appears a moment after the namespace
                core.create_namespaced_pod(NAMESPACE, manifest)
                return True
            except ApiException as error:
                if error.status == 403 and "serviceaccount" in str(error.body):
                    return False
                raise
        _wait(attempt, 30, f"creating pod {manifest['metadata']['name']}")
        return time.monotonic()

    started = create(probed_pod(image, node))
    create(entrypoint_pod(image, node))

    def status(name: str) -> dict[str, Any]:
        pod: dict[str, Any] = core.api_client.sanitize_for_serialization(core.read_namespaced_pod(name, NAMESPACE))
        return pod

    def ready() -> dict[str, Any] | None:
        pod = status("probed")
        conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
        return pod if conditions.get("Ready") == "True" else None

    probed = _wait(ready, 120, f"pod probed on {node.name} Ready")
    ready_seconds = time.monotonic() - started
    pod_ip = probed["status"]["podIP"]
    # Read before this process sends a request of its own: every GET in the log so far is the kubelet's probe.
    log = _wait(lambda: container_log(node, probed) if '"GET / HTTP/1.1" 200' in container_log(node, probed)
                else None, 30, "the probe's requests in the container's log")
    with urllib.request.urlopen(f"http://{pod_ip}:{PROBE_PORT}/", timeout=5) as response:
        host_status = response.status
    container_id = probed["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    task = _task_process(node, binaries, container_id)

    def finished() -> dict[str, Any] | None:
        pod = status("entrypoint")
        return pod if pod["status"].get("phase") in ("Failed", "Succeeded") else None

    entrypoint = _wait(finished, 120, "pod entrypoint on the real node finished")
    terminated = entrypoint["status"]["containerStatuses"][0]["state"]["terminated"]
    return {
        "region": region, "node": probed["spec"]["nodeName"], "image": image,
        "image_id": probed["status"]["containerStatuses"][0]["imageID"],
        "probed": {"ready_seconds": round(ready_seconds, 1), "pod_ip": pod_ip, "host_get_status": host_status,
                   "probe_requests_in_log": log.count('"GET / HTTP/1.1" 200'), "task_pid": task["pid"],
                   "task_cmdline": task["cmdline"], "task_uid": task["uid"]},
        "entrypoint": {"exit_code": terminated["exitCode"],
                       "log_tail": container_log(node, entrypoint).strip().splitlines()[-3:]},
    }


def _task_process(node: RealNode, binaries: NodeBinaries, container_id: str) -> dict[str, Any]:
    """containerd's task for the container: its host pid, that process's command line and user."""
    listed = node.ctr(binaries, "tasks", "list")
    for line in listed.stdout.splitlines()[1:]:
        fields = line.split()
        if fields and fields[0] == container_id:
            pid = int(fields[1])
            proc = Path(f"/proc/{pid}")
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            uid = next(line.split()[1] for line in (proc / "status").read_text().splitlines()
                       if line.startswith("Uid:"))
            return {"pid": pid, "cmdline": cmdline, "uid": int(uid)}
    raise InfraError(f"no containerd task {container_id} on {node.name}:\n{listed.stdout}")


def dumps(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2)
