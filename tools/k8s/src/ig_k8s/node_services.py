"""Services and cluster DNS on a real node: kube-proxy (iptables mode, its rules in the node's own namespace) and
CoreDNS behind the ``kube-dns`` Service at 10.96.0.10.

CoreDNS runs as a host process, not as a pod: its kubernetes plugin must watch the API, and the region's
kube-apiserver listens on 127.0.0.1 only (no ``kubernetes`` Service endpoints a pod could use). It listens on the
host's end of the node's link (10.250.N.1:53, one address per region, so both regions' CoreDNS bind port 53) and
``kube-dns`` is a Service without selector whose EndpointSlice names that address: pods ask 10.96.0.10, kube-proxy
forwards to CoreDNS, as in any cluster. Both agents authenticate as their own ServiceAccount (kube-proxy bound to the
built-in ``system:node-proxier``, CoreDNS to a read-only role) with a token from the TokenRequest API.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ig_infra.process import port_open, read_pid, spawn, terminate, wait_until

from ig_k8s.node_network import CLUSTER_DNS_IP, CLUSTER_DOMAIN

if TYPE_CHECKING:
    from ig_k8s.node import RealNode
    from ig_k8s.node_build import NodeBinaries

SYSTEM_NAMESPACE = "kube-system"
TOKEN_SECONDS = 7 * 24 * 3600
COREDNS_RULES = [
    {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"], "verbs": ["list", "watch"]},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
]


def service_account_kubeconfig(node: RealNode, account: str, cluster_role: str, path: Path,
                               rules: list[dict[str, Any]] | None = None) -> Path:
    """A kubeconfig for ServiceAccount kube-system/<account> bound to ``cluster_role`` (created from ``rules`` when
    given), with a token from the TokenRequest API."""
    from kubernetes import client

    from ig_k8s.kube import api_client

    api = api_client(node.cluster.kubeconfig)
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    _create(lambda: core.create_namespaced_service_account(
        SYSTEM_NAMESPACE, {"metadata": {"name": account}}))
    if rules is not None:
        _create(lambda: rbac.create_cluster_role({"metadata": {"name": cluster_role}, "rules": rules}))
    _create(lambda: rbac.create_cluster_role_binding({
        "metadata": {"name": f"ig:{account}"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": SYSTEM_NAMESPACE}]}))
    token = core.create_namespaced_service_account_token(
        account, SYSTEM_NAMESPACE, {"spec": {"expirationSeconds": TOKEN_SECONDS}}).status.token
    ca = node.cluster.dir / "pki" / "apiserver.crt"
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": account,
        "clusters": [{"name": node.region,
                      "cluster": {"server": node.cluster.server, "certificate-authority": str(ca)}}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": account, "context": {"cluster": node.region, "user": account}}],
    }, indent=2))
    path.chmod(0o600)
    return path


def _create(call: Any) -> None:
    from kubernetes.client.rest import ApiException

    try:
        call()
    except ApiException as error:
        if error.status != 409:
            raise


# ---- kube-proxy -------------------------------------------------------------------------------------------------
def kube_proxy_config(node: RealNode, kubeconfig: Path) -> dict[str, Any]:
    network = node.network
    zero = "0s"
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": node.name, "bindAddress": network.host_address,
        "healthzBindAddress": f"127.0.0.1:{network.proxy_healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{network.proxy_metrics_port}",
        "mode": "iptables",
        # Every service connection is masqueraded to the bridge address: a pod's reply to another pod on the same
        # bridge then comes back through the node namespace's conntrack (no br_netfilter needed to un-DNAT it).
        "iptables": {"masqueradeAll": True, "localhostNodePorts": False, "syncPeriod": "30s", "minSyncPeriod": "1s"},
        "detectLocalMode": "ClusterCIDR", "clusterCIDR": network.subnet,
        # kube-proxy runs in the host namespace: it must not tune the host's conntrack table or lower its own OOM
        # score (no CAP_SYS_RESOURCE here), so those are left as they are.
        "oomScoreAdj": 0,
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": zero, "tcpCloseWaitTimeout": zero,
                      "udpTimeout": zero, "udpStreamTimeout": zero},
    }


def start_kube_proxy(node: RealNode, binaries: NodeBinaries) -> None:
    pid = node.dir / "kube-proxy.pid"
    if read_pid(pid) is None:
        kubeconfig = service_account_kubeconfig(node, "kube-proxy", "system:node-proxier",
                                                node.dir / "kube-proxy.kubeconfig")
        config = node.dir / "kube-proxy.yaml"
        config.write_text(json.dumps(kube_proxy_config(node, kubeconfig), indent=2))
        # The netfilter wrappers come first on its PATH: its iptables-restore runs in the node's namespace.
        env = {"PATH": f"{node.netfilter_bin}:/usr/sbin:/usr/bin:/sbin:/bin"}
        spawn([str(binaries.kube_proxy), f"--config={config}", "--v=1"], log_file=node.log("kube-proxy"),
              pid_file=pid, env=env)
    wait_until(lambda: _healthz(node.network.proxy_healthz_port), timeout=60, what=f"kube-proxy of {node.region}",
               log_file=node.log("kube-proxy"), alive=lambda: read_pid(pid) is not None)


def _healthz(port: int) -> bool:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
        return bool(response.status == 200)


# ---- CoreDNS ----------------------------------------------------------------------------------------------------
def corefile(node: RealNode, kubeconfig: Path) -> str:
    network = node.network
    return f""".:53 {{
    bind {network.host_address}
    errors
    health 127.0.0.1:{network.dns_health_port}
    ready 127.0.0.1:{network.dns_ready_port}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig} coredns
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 5
}}
"""


def host_service_objects(node: RealNode, namespace: str, name: str, ports: list[dict[str, Any]],
                         cluster_ip: str | None = None, hostname: str | None = None
                         ) -> tuple[dict[str, Any], dict[str, Any]]:
    """A Service without selector and the EndpointSlice that names a process on the host's end of the node's link:
    ``ports`` are ``{name, port, targetPort, protocol}`` (the Service's port, the host process's port). With
    ``hostname`` the Service is headless: CoreDNS answers ``<hostname>.<name>.<namespace>.svc.cluster.local`` with
    the host address itself, and clients connect there on ``port`` (no kube-proxy rule: port = targetPort)."""
    if hostname is not None:
        cluster_ip = "None"
        assert all(p["port"] == p["targetPort"] for p in ports), "a headless Service does not translate ports"
    service = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": name, "namespace": namespace, "labels": {"ig.dev/host-service": "true"}},
               "spec": {"ports": [{"name": p["name"], "port": p["port"], "targetPort": p["targetPort"],
                                   "protocol": p.get("protocol", "TCP")} for p in ports],
                        **({"clusterIP": cluster_ip} if cluster_ip else {})}}
    endpoints = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                 "metadata": {"name": f"{name}-{node.name}", "namespace": namespace,
                              "labels": {"kubernetes.io/service-name": name,
                                         "endpointslice.kubernetes.io/managed-by": "ig-k8s"}},
                 "addressType": "IPv4",
                 "endpoints": [{"addresses": [node.network.host_address], "conditions": {"ready": True},
                                "nodeName": node.name, **({"hostname": hostname} if hostname else {})}],
                 "ports": [{"name": p["name"], "port": p["targetPort"], "protocol": p.get("protocol", "TCP")}
                           for p in ports]}
    return service, endpoints


def kube_dns_objects(node: RealNode) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``kube-dns`` Service (ClusterIP 10.96.0.10, no selector) and the EndpointSlice that names CoreDNS."""
    ports = [{"name": "dns", "port": 53, "targetPort": 53, "protocol": "UDP"},
             {"name": "dns-tcp", "port": 53, "targetPort": 53, "protocol": "TCP"}]
    service, endpoints = host_service_objects(node, SYSTEM_NAMESPACE, "kube-dns", ports, CLUSTER_DNS_IP)
    service["metadata"]["labels"]["k8s-app"] = "kube-dns"
    return service, endpoints


def expose_host_service(node: RealNode, namespace: str, name: str, ports: list[dict[str, Any]],
                        hostname: str | None = None) -> None:
    """Make a host process listening on the node's host address reachable from pods as ``<name>.<namespace>``
    (with ``hostname``: as ``<hostname>.<name>.<namespace>``, headless; see host_service_objects)."""
    from kubernetes import client

    from ig_k8s.kube import api_client

    api = api_client(node.cluster.kubeconfig)
    core, discovery = client.CoreV1Api(api), client.DiscoveryV1Api(api)
    _create(lambda: core.create_namespace({"metadata": {"name": namespace}}))
    service, endpoints = host_service_objects(node, namespace, name, ports, hostname=hostname)
    wait_until(lambda: _created_service(core, service, namespace), timeout=30, what=f"Service {namespace}/{name}")
    _create_or_replace_endpoints(discovery, namespace, endpoints)


def _create_or_replace_endpoints(discovery: Any, namespace: str, endpoints: dict[str, Any]) -> None:
    """The cluster's etcd outlives a run: an EndpointSlice kept from an earlier one names the host port of then
    (pods got "connection refused" after the nodes' PostgreSQL moved port), so an existing one is replaced."""
    from kubernetes.client.rest import ApiException

    try:
        discovery.create_namespaced_endpoint_slice(namespace, endpoints)
    except ApiException as error:
        if error.status != 409:
            raise
        discovery.replace_namespaced_endpoint_slice(endpoints["metadata"]["name"], namespace, endpoints)


def start_coredns(node: RealNode, binaries: NodeBinaries) -> None:
    from kubernetes import client

    from ig_k8s.kube import api_client

    pid = node.dir / "coredns.pid"
    if read_pid(pid) is None:
        kubeconfig = service_account_kubeconfig(node, "coredns", "ig:coredns", node.dir / "coredns.kubeconfig",
                                                rules=COREDNS_RULES)
        path = node.dir / "Corefile"
        path.write_text(corefile(node, kubeconfig))
        spawn([str(binaries.coredns), "-conf", str(path)], log_file=node.log("coredns"), pid_file=pid)
    wait_until(lambda: port_open("127.0.0.1", node.network.dns_ready_port) and _ready(node), timeout=60,
               what=f"CoreDNS of {node.region}", log_file=node.log("coredns"), alive=lambda: read_pid(pid) is not None)
    api = api_client(node.cluster.kubeconfig)
    service, endpoints = kube_dns_objects(node)
    core, discovery = client.CoreV1Api(api), client.DiscoveryV1Api(api)
    # Just after the API server starts, its ClusterIP allocator may still call 10.96.0.10 taken (seen once): retry.
    wait_until(lambda: _created_service(core, service, SYSTEM_NAMESPACE), timeout=30,
               what=f"{node.region}: Service kube-dns")
    _create(lambda: discovery.create_namespaced_endpoint_slice(SYSTEM_NAMESPACE, endpoints))


def _created_service(core: Any, service: dict[str, Any], namespace: str) -> bool:
    """Read first: creating it again would be refused for its ClusterIP (422) before its name (409)."""
    from kubernetes.client.rest import ApiException

    try:
        core.read_namespaced_service(service["metadata"]["name"], namespace)
    except ApiException as error:
        if error.status != 404:
            raise
        _create(lambda: core.create_namespaced_service(namespace, service))
    return True


def _ready(node: RealNode) -> bool:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{node.network.dns_ready_port}/ready", timeout=2) as response:
        return bool(response.status == 200)


def stop_services(node: RealNode) -> list[str]:
    return [name for name in ("coredns", "kube-proxy") if terminate(node.dir / f"{name}.pid")]
