"""Proof that Services and cluster DNS work on the real node: a pod calls another pod by its Service's DNS name.

``web`` (the service image running ``python -m http.server``) sits behind a ClusterIP Service ``web``; ``client``
(the same image) resolves ``web.<ns>.svc.cluster.local`` through the resolver the kubelet gave it (CoreDNS behind
10.96.0.10), GETs ``http://web.<ns>.svc.cluster.local/`` and prints what it saw as one JSON line, then exits. The
proof reads that line from the client's log on the node, and the server's log: the request arrived from the bridge
address (kube-proxy's masquerade), so it went through the Service's NAT rules, not straight to the pod. It also
reads where those rules live: in the node's network namespace, and nowhere in the host's.
"""

from __future__ import annotations

import json
import time
from typing import Any

from ig_infra.paths import Paths
from ig_infra.process import InfraError

from ig_k8s.node import RealNode
from ig_k8s.node_build import NodeBinaries
from ig_k8s.node_network import netns_iptables, run
from ig_k8s.node_proof import PROBE_PORT, _pod, _wait, container_log
from ig_k8s.suite import by_name

NAMESPACE = "ig-service-proof"
SERVICE_NAME = "web"

CLIENT_SCRIPT = """
import json, socket, urllib.request, urllib.error
name = "web.{ns}.svc.cluster.local"
seen = {{"resolv_conf": open("/etc/resolv.conf").read()}}
seen["resolved"] = sorted({{a[4][0] for a in socket.getaddrinfo(name, 80, proto=socket.IPPROTO_TCP)}})
with urllib.request.urlopen(f"http://{{name}}/", timeout=10) as response:
    seen["status"], seen["body"] = response.status, response.read(200).decode(errors="replace")
try:
    socket.getaddrinfo("absent.{ns}.svc.cluster.local", 80)
    seen["absent"] = "resolved"
except socket.gaierror as error:
    seen["absent"] = error.strerror
print("PROOF " + json.dumps(seen), flush=True)
"""


def web_pod(image: str, node: RealNode) -> dict[str, Any]:
    return _pod(SERVICE_NAME, image, node, {
        "command": ["python", "-m", "http.server", str(PROBE_PORT), "--bind", "0.0.0.0", "--directory", "/opt/venv"],
        "ports": [{"name": "http", "containerPort": PROBE_PORT}],
        "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1, "failureThreshold": 3},
    }, namespace=NAMESPACE)


def client_pod(image: str, node: RealNode) -> dict[str, Any]:
    return _pod("client", image, node, {"command": ["python", "-c", CLIENT_SCRIPT.format(ns=NAMESPACE)]},
                namespace=NAMESPACE)


def web_service() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": SERVICE_NAME, "namespace": NAMESPACE},
            "spec": {"selector": {"app": SERVICE_NAME},
                     "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}


def prove_services(region: str, service: str, tag: str, paths: Paths) -> dict[str, Any]:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    from ig_k8s.kube import api_client

    node = RealNode(region, paths)
    if NodeBinaries.cached(paths) is None or not node.running():
        raise InfraError(f"{region}: the real node is not running (run `ig-k8s node up --region {region}`)")
    image = f"localhost/{by_name(service).image}:{tag}"
    core = client.CoreV1Api(api_client(node.cluster.kubeconfig))
    try:
        core.delete_namespace(NAMESPACE, grace_period_seconds=0)
    except ApiException as error:
        if error.status != 404:
            raise
    _wait(lambda: _absent(core, NAMESPACE), 90, f"old namespace {NAMESPACE} gone")
    core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    svc = core.create_namespaced_service(NAMESPACE, web_service())
    cluster_ip = svc.spec.cluster_ip

    def create(manifest: dict[str, Any]) -> None:
        def attempt() -> bool:
            try:  # the namespace's default service account appears a moment after the namespace
                core.create_namespaced_pod(NAMESPACE, manifest)
                return True
            except ApiException as error:
                if error.status == 403 and "serviceaccount" in str(error.body):
                    return False
                raise
        _wait(attempt, 30, f"creating pod {manifest['metadata']['name']}")

    def pod(name: str) -> dict[str, Any]:
        found: dict[str, Any] = core.api_client.sanitize_for_serialization(core.read_namespaced_pod(name, NAMESPACE))
        return found

    create(web_pod(image, node))
    web = _wait(lambda: _when(pod(SERVICE_NAME), _ready), 120, f"pod web on {node.name} Ready")
    ready_at = time.monotonic()
    # As any client would, start once kube-proxy has programmed the Service's endpoint (it follows the EndpointSlice
    # a moment after the pod turns Ready); before that the node namespace has no route for the ClusterIP at all.
    endpoint = f"{NAMESPACE}/{SERVICE_NAME}:http -> {web['status']['podIP']}:{PROBE_PORT}"
    _wait(lambda: endpoint in netns_iptables(node.network, "-t", "nat", "-S"), 60, f"kube-proxy rule {endpoint}")
    programmed_seconds = time.monotonic() - ready_at
    create(client_pod(image, node))
    done = _wait(lambda: _when(pod("client"), _finished), 120, "pod client finished")
    client_log = container_log(node, done)
    lines = [line for line in client_log.splitlines() if "PROOF " in line]
    if done["status"]["phase"] != "Succeeded" or not lines:
        raise InfraError(f"{region}: the client pod did not reach web through its Service:\n{client_log[-3000:]}")
    seen = json.loads(lines[-1].split("PROOF ", 1)[1])
    server_log = container_log(node, web)
    return {
        "region": region, "cluster_ip": cluster_ip, "programmed_seconds": round(programmed_seconds, 1),
        "web_pod_ip": web["status"]["podIP"],
        "client_pod_ip": done["status"]["podIP"], **seen,
        # CRI log lines: "<time> <stream> <tag> <client address> - - [...] "GET / HTTP/1.1" 200 -"
        "server_saw_from": sorted({line.split()[3] for line in server_log.splitlines()
                                   if '"GET / HTTP/1.1" 200' in line}),
        "node_netns_rules": netns_iptables(node.network, "-t", "nat", "-S"),
        "host_rules": run(["iptables", "-t", "nat", "-S"]),
    }


def _when(pod: dict[str, Any], condition: Any) -> dict[str, Any] | None:
    return pod if condition(pod) else None


def _finished(pod: dict[str, Any]) -> bool:
    return pod["status"].get("phase") in ("Succeeded", "Failed")


def _ready(pod: dict[str, Any]) -> bool:
    conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
    return conditions.get("Ready") == "True"


def _absent(core: Any, namespace: str) -> bool:
    from kubernetes.client.rest import ApiException

    try:
        core.read_namespace(namespace)
        return False
    except ApiException as error:
        return bool(error.status == 404)
