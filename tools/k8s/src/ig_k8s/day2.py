"""Day-2 operations on the real nodes (issue #22 item 5): a client pod that calls a release through its Service's
DNS name in a loop while the release is upgraded, rolled back or loses a pod, and what the loop saw.

The client is the chart's own ``helm test`` hook pod (the service's image, the restricted Pod Security Standard's
settings, the Service URL the chart renders) with its one call turned into a loop: one new connection per request,
so each request goes through kube-proxy's rules as they are at that moment and a pod that was still listed but no
longer served would show as a failed request. Each request's outcome is a JSON line of the pod's log, read back from
the node.
"""

from __future__ import annotations

import json
import time
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from ig_k8s.helm import Helm, manifests
from ig_k8s.kube import api_client
from ig_k8s.node import RealNode
from ig_k8s.node_build import NodeBinaries
from ig_k8s.real_charts import NAMESPACE, pod_log, real_node_values
from ig_k8s.releases import load_release_set

CLIENT_LOOP = """
import json, os, time, urllib.request
url, until = os.environ["IG_TEST_URL"], time.monotonic() + float(os.environ["IG_LOOP_SECONDS"])
while time.monotonic() < until:
    sent = time.time()
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            response.read()
            print(json.dumps({"at": sent, "ok": response.status == 200, "status": response.status}), flush=True)
    except Exception as error:
        print(json.dumps({"at": sent, "ok": False, "error": repr(error)[:300]}), flush=True)
    time.sleep(0.05)
"""

# Decide over mTLS as the `bench` identity (the authorization table lets it call Decide), on a new channel -- a new
# connection and TLS handshake -- per request. An RPC error is a failure; the answer and its rule are logged, so that
# a pod that answers differently (say, fails closed because its OPA has gone) shows too.
DECIDE_LOOP = """
import json, os, time
from datetime import datetime, timezone
import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from ig.policy.v1 import policy_pb2, policy_pb2_grpc
read = lambda name: open(os.path.join(os.environ["IG_LOOP_TLS"], name), "rb").read()
credentials = grpc.ssl_channel_credentials(read("ca.crt"), read("tls.key"), read("tls.crt"))
target, region = os.environ["IG_LOOP_TARGET"], os.environ["IG_LOOP_REGION"]
until = time.monotonic() + float(os.environ["IG_LOOP_SECONDS"])
while time.monotonic() < until:
    sent = time.time()
    when = Timestamp()
    when.FromDatetime(datetime.now(timezone.utc))
    request = policy_pb2.DecideRequest(
        actor=policy_pb2.Actor(id="u-loop", tenant="t-loop", roles=["analyst"], purposes=["investigation"]),
        resource=policy_pb2.Resource(type="case", id="t-loop-rec-1", tenant="t-loop", purpose="investigation",
                                     region=region, classification="internal"),
        action="read", context=policy_pb2.Context(time=when, network_zone="corp", device_trust="high",
                                                   session_risk=10, auth_level="mfa", region=region))
    try:
        with grpc.secure_channel(target, credentials) as channel:
            answer = policy_pb2_grpc.PolicyServiceStub(channel).Decide(request, timeout=5)
        print(json.dumps({"at": sent, "ok": True, "result": policy_pb2.Result.Name(answer.result),
                          "rule_id": answer.rule_id}), flush=True)
    except Exception as error:
        print(json.dumps({"at": sent, "ok": False, "error": repr(error)[:300]}), flush=True)
    time.sleep(0.05)
"""
DECIDE_IDENTITY = "bench"
DECIDE_TLS_DIR = "/var/run/ig-loop"


def retag_image(node: RealNode, binaries: NodeBinaries, source: str, target: str) -> None:
    """A second tag of an imported image: a new tag for the upgrade without another build or import."""
    tagged = node.ctr(binaries, "images", "tag", "--force", source, target)
    if tagged.returncode != 0:
        raise RuntimeError(f"ctr images tag {source} {target} on {node.region} failed: {tagged.stderr}")


def start_client_loop(node: RealNode, helm: Helm, release_name: str, tag: str, seconds: float,
                      namespace: str = NAMESPACE, decide: bool = False) -> str:
    """Start the looping client pod next to the release and wait until its first request answered; returns its
    name. ``decide``: policy's gRPC Decide over mTLS (a certificate of its own from the development CA) instead of
    the chart's plain HTTP call."""
    _, releases = load_release_set()
    release = next(r for r in releases if r.name == release_name)
    rendered = manifests(helm.template(release.chart_dir, node.cluster.region, release.name, namespace,
                                       release.sets))
    hook = next(o for o in rendered if o["kind"] == "Pod"
                and o["metadata"]["labels"].get("app.kubernetes.io/component") == "helm-test")
    name = f"{release.name}-client-loop"
    values = real_node_values(release, tag)
    container = hook["spec"]["containers"][0]
    container["image"] = f"{values['image']['repository']}:{tag}"
    container["imagePullPolicy"] = "Never"
    container["command"] = ["python", "-c", DECIDE_LOOP if decide else CLIENT_LOOP]
    container["env"].append({"name": "IG_LOOP_SECONDS", "value": str(seconds)})
    if decide:
        secret = _decide_certificate(node, namespace)
        service = next(o for o in rendered if o["kind"] == "Service")
        grpc_port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "grpc")
        target = f"{service['metadata']['name']}.{namespace}.svc.cluster.local:{grpc_port}"
        container["env"] += [{"name": "IG_LOOP_TLS", "value": DECIDE_TLS_DIR},
                             {"name": "IG_LOOP_REGION", "value": node.cluster.region},
                             {"name": "IG_LOOP_TARGET", "value": target}]
        container["volumeMounts"].append({"name": "loop-tls", "mountPath": DECIDE_TLS_DIR, "readOnly": True})
        hook["spec"]["volumes"].append({"name": "loop-tls", "secret": {"secretName": secret}})
    hook["spec"]["nodeSelector"] = values["nodeSelector"]
    hook["spec"]["tolerations"] = values["tolerations"]
    hook["metadata"] = {"name": name, "labels": {"app.kubernetes.io/component": "client-loop"}}
    core = client.CoreV1Api(api_client(node.cluster.kubeconfig))
    delete_pod(core, name, namespace)
    core.create_namespaced_pod(namespace, hook)
    deadline = time.monotonic() + 60
    while not client_loop_requests(node, name, namespace):
        if time.monotonic() > deadline:
            status = core.read_namespaced_pod(name, namespace).status
            raise RuntimeError(f"{name} made no request within 60 s: {status}")
        time.sleep(0.5)
    return name


def _decide_certificate(node: RealNode, namespace: str) -> str:
    """A Secret with a certificate of the ``bench`` identity in the release's namespace (same trust domain and
    namespace as the service, as its authorization demands), issued by the CA that issued the service's."""
    from ig_infra.pki import DevCA, ca_directory

    from ig_k8s.releases import WorkloadSecret, put_secret

    wanted = WorkloadSecret("decide-loop-tls", DECIDE_IDENTITY, "decide-loop", namespace)
    body = wanted.body(DevCA.load_or_create(ca_directory(node.cluster.paths.cache)))
    put_secret(client.CoreV1Api(api_client(node.cluster.kubeconfig)), namespace, wanted.secret_name, body)
    return wanted.secret_name


def client_loop_requests(node: RealNode, name: str, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    """Every request the loop made so far, in order."""
    core = client.CoreV1Api(api_client(node.cluster.kubeconfig))
    try:
        pod = core.read_namespaced_pod(name, namespace)
    except ApiException as error:
        if error.status == 404:
            return []
        raise
    text = pod_log(node, {"name": name, "uid": pod.metadata.uid}, "call", namespace)
    requests = []
    for line in text.splitlines():
        # The kubelet's CRI log format: "<time> stdout F <line>".
        parts = line.split(" ", 3)
        if len(parts) == 4 and parts[3].startswith("{"):
            requests.append(json.loads(parts[3]))
    return requests


def delete_pod(core: client.CoreV1Api, name: str, namespace: str = NAMESPACE) -> None:
    try:
        core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
    except ApiException as error:
        if error.status != 404:
            raise
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            core.read_namespaced_pod(name, namespace)
        except ApiException as error:
            if error.status == 404:
                return
            raise
        time.sleep(0.3)
    raise RuntimeError(f"pod {namespace}/{name} was not deleted within 30 s")


def release_images(node: RealNode, release: str, namespace: str = NAMESPACE) -> dict[str, str]:
    """Each of the release's workload pods' image of the service container."""
    core = client.CoreV1Api(api_client(node.cluster.kubeconfig))
    selector = f"app.kubernetes.io/instance={release},app.kubernetes.io/component!=helm-test"
    return {pod.metadata.name: next(c.image for c in pod.spec.containers if c.name == release)
            for pod in core.list_namespaced_pod(namespace, label_selector=selector).items
            if pod.metadata.deletion_timestamp is None}
