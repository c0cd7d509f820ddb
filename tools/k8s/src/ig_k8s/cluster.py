"""A simulated Kubernetes cluster per region: real etcd + kube-apiserver + controller-manager + scheduler, and kwok
simulating the nodes (labelled with the region) so that scheduled pods become Running and Ready.

Everything listens on 127.0.0.1 only; each region has its own ports, data and pid files under
``$IG_RUN_DIR/k8s/<region>``. Nothing is contacted beyond loopback.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from ig_infra.go_tools import TOOLS, tool_path
from ig_infra.paths import Paths
from ig_infra.prereqs import apt_install
from ig_infra.process import InfraError, ensure_port_free, port_open, read_pid, spawn, terminate, wait_until

from ig_k8s.kube_build import KUBERNETES_VERSION, build_kubernetes

REGION_LABEL = "topology.kubernetes.io/region"
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
NODES_PER_REGION = 3
# Written by `ig-k8s build --allow-failure` when the binaries cannot be built; the cluster tests skip and quote it.
BUILD_FAILURE_FILE = "build-failure.txt"


@dataclass(frozen=True)
class RegionPorts:
    apiserver: int
    etcd_client: int
    etcd_peer: int
    kwok: int


def port_offset() -> int:
    """IG_K8S_PORT_OFFSET (default 0) shifts every port of both regions, so that a second set of clusters (another
    work tree's, with its own IG_RUN_DIR) can run beside the first."""
    raw = os.environ.get("IG_K8S_PORT_OFFSET", "0")
    if not raw.isdigit() or int(raw) > 30000:
        raise InfraError(f"IG_K8S_PORT_OFFSET must be a whole number from 0 to 30000, not {raw!r}")
    return int(raw)


PORTS: dict[str, RegionPorts] = {
    region: RegionPorts(*(port + port_offset() for port in ports))
    for region, ports in (("region-a", (16443, 12379, 12380, 12247)), ("region-b", (26443, 22379, 22380, 22247)))
}


# kwok's own "fast" stages (nodes become Ready and keep a heartbeat; pods become Running/Ready, complete, delete),
# read from the kwok module the Go module proxy delivered for the build.
KWOK_STAGES = ("node/fast/node-initialize.yaml", "node/heartbeat/node-heartbeat.yaml", "pod/fast/pod-ready.yaml",
               "pod/fast/pod-complete.yaml", "pod/fast/pod-delete.yaml")


def kwok_stages() -> str:
    version = TOOLS["kwok"][1]
    download = subprocess.run(["go", "mod", "download", "-json", f"sigs.k8s.io/kwok@{version}"], capture_output=True,
                              text=True)
    if download.returncode != 0:
        raise InfraError(f"go mod download sigs.k8s.io/kwok@{version} failed:\n{download.stderr[-2000:]}")
    source = Path(json.loads(download.stdout)["Dir"]) / "kustomize" / "stage"
    return "\n---\n".join((source / stage).read_text() for stage in KWOK_STAGES)


def etcd_binary() -> Path:
    """Debian's etcd-server (installed with apt-get when missing)."""
    found = shutil.which("etcd") or ("/usr/bin/etcd" if Path("/usr/bin/etcd").exists() else None)
    if found is None:
        apt_install("etcd-server")
        found = shutil.which("etcd") or "/usr/bin/etcd"
    return Path(found)


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kwok: Path

    @classmethod
    def cached(cls, paths: Paths) -> Binaries | None:
        """The binaries if all are already built (never builds anything)."""
        kube_bin = paths.cache / f"kubernetes-{KUBERNETES_VERSION}" / "bin"
        version = TOOLS["kwok"][1]
        kwok = paths.cache / f"kwok-{version}" / "bin" / "kwok"
        etcd = shutil.which("etcd")
        found = cls(etcd=Path(etcd) if etcd else Path("/nonexistent/etcd"), kube_apiserver=kube_bin / "kube-apiserver",
                    kube_controller_manager=kube_bin / "kube-controller-manager",
                    kube_scheduler=kube_bin / "kube-scheduler", kwok=kwok)
        return found if all(Path(p).exists() for p in vars(found).values()) else None

    @classmethod
    def ensure(cls, paths: Paths) -> Binaries:
        kube = build_kubernetes(paths.cache)
        return cls(etcd=etcd_binary(), kube_apiserver=kube["kube-apiserver"],
                   kube_controller_manager=kube["kube-controller-manager"], kube_scheduler=kube["kube-scheduler"],
                   kwok=tool_path(paths.cache, "kwok"))


class SimulatedCluster:
    """One region's cluster. `start()` is idempotent; `stop()` ends only the processes it started."""

    PROCESSES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")

    def __init__(self, region: str, paths: Paths | None = None) -> None:
        if region not in PORTS:
            raise InfraError(f"unknown region {region!r}; known: {', '.join(PORTS)}")
        self.region = region
        self.paths = paths or Paths.from_environment()
        self.ports = PORTS[region]
        self.dir = self.paths.component_dir("k8s") / region
        self.dir.mkdir(parents=True, exist_ok=True)
        self.kubeconfig = self.dir / "kubeconfig"

    # ---- files --------------------------------------------------------------------------------------------
    def _pid(self, name: str) -> Path:
        return self.dir / f"{name}.pid"

    def _log(self, name: str) -> Path:
        return self.dir / f"{name}.log"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports.apiserver}"

    def _token(self) -> str:
        token_file = self.dir / "admin.token"
        if not token_file.exists():
            token_file.write_text(secrets.token_hex(24))
            token_file.chmod(0o600)
        return token_file.read_text().strip()

    def node_token(self, node: str) -> str:
        token_file = self.dir / f"node-{node}.token"
        if not token_file.exists():
            token_file.write_text(secrets.token_hex(24))
            token_file.chmod(0o600)
        return token_file.read_text().strip()

    def _write_credentials(self) -> None:
        key_file = self.dir / "sa.key"
        if not key_file.exists():
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
            key_file.chmod(0o600)
            (self.dir / "sa.pub").write_bytes(key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        # Static token for the admin (system:masters): helm, the controllers, kwok and the tests use it; one per
        # real node as system:node:<name> in system:nodes, which the Node authorizer confines to its own pods.
        from ig_k8s.node import node_name

        node = node_name(self.region)
        (self.dir / "tokens.csv").write_text(f'{self._token()},ig-admin,ig-admin,"system:masters"\n'
                                             f'{self.node_token(node)},system:node:{node},system:node:{node},'
                                             '"system:nodes"\n')

    def _write_kubeconfig(self) -> None:
        ca = self.dir / "pki" / "apiserver.crt"
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": self.region,
            "clusters": [{"name": self.region, "cluster": {"server": self.server, "certificate-authority": str(ca)}}],
            "users": [{"name": "ig-admin", "user": {"token": self._token()}}],
            "contexts": [{"name": self.region, "context": {"cluster": self.region, "user": "ig-admin"}}],
        }
        self.kubeconfig.write_text(json.dumps(config, indent=2))
        self.kubeconfig.chmod(0o600)

    # ---- health -------------------------------------------------------------------------------------------
    def _get(self, path: str, timeout: float = 3) -> tuple[int, bytes]:
        context = ssl.create_default_context(cafile=str(self.dir / "pki" / "apiserver.crt"))
        request = urllib.request.Request(self.server + path, headers={"Authorization": f"Bearer {self._token()}"})
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return response.status, response.read()

    def apiserver_ready(self) -> bool:
        return port_open("127.0.0.1", self.ports.apiserver) and self._get("/readyz")[0] == 200

    def running(self) -> bool:
        return all(read_pid(self._pid(name)) is not None for name in self.PROCESSES)

    def healthy(self) -> bool:
        try:
            return self.running() and self.apiserver_ready() and self.ready_nodes() >= NODES_PER_REGION
        except Exception:
            return False

    def ready_nodes(self) -> int:
        _, body = self._get("/api/v1/nodes?labelSelector=" + f"{REGION_LABEL}%3D{self.region}")
        ready = 0
        for node in json.loads(body)["items"]:
            conditions = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
            ready += conditions.get("Ready") == "True"
        return ready

    # ---- life ---------------------------------------------------------------------------------------------
    def start(self, binaries: Binaries | None = None) -> None:
        if self.healthy():
            return
        binaries = binaries or Binaries.ensure(self.paths)
        self._write_credentials()
        self._start_etcd(binaries)
        self._start_apiserver(binaries)
        self._write_kubeconfig()
        self._start_controllers(binaries)
        self._start_kwok(binaries)
        self._create_nodes()
        wait_until(lambda: self.ready_nodes() >= NODES_PER_REGION, timeout=60,
                   what=f"{self.region}: kwok nodes Ready", log_file=self._log("kwok"),
                   alive=lambda: read_pid(self._pid("kwok")) is not None)

    def _spawn(self, name: str, command: list[str]) -> None:
        if read_pid(self._pid(name)) is not None:
            return
        spawn(command, log_file=self._log(name), pid_file=self._pid(name))

    def _start_etcd(self, binaries: Binaries) -> None:
        if read_pid(self._pid("etcd")) is None:
            ensure_port_free("127.0.0.1", self.ports.etcd_client, f"etcd of {self.region}", "the k8s PORTS table")
        client = f"http://127.0.0.1:{self.ports.etcd_client}"
        peer = f"http://127.0.0.1:{self.ports.etcd_peer}"
        self._spawn("etcd", [str(binaries.etcd), "--name", f"etcd-{self.region}", "--data-dir",
                             str(self.dir / "etcd-data"), "--listen-client-urls", client, "--advertise-client-urls",
                             client, "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                             "--initial-cluster", f"etcd-{self.region}={peer}", "--log-level", "warn",
                             "--logger", "zap",
                             "--quota-backend-bytes", str(2 * 1024**3)])
        wait_until(lambda: port_open("127.0.0.1", self.ports.etcd_client), timeout=30, what=f"etcd {self.region}",
                   log_file=self._log("etcd"), alive=lambda: read_pid(self._pid("etcd")) is not None)

    def _start_apiserver(self, binaries: Binaries) -> None:
        if read_pid(self._pid("kube-apiserver")) is None:
            ensure_port_free("127.0.0.1", self.ports.apiserver, f"kube-apiserver of {self.region}",
                             "the k8s PORTS table")
        pki = self.dir / "pki"
        pki.mkdir(exist_ok=True)
        self._spawn("kube-apiserver", [
            str(binaries.kube_apiserver),
            f"--etcd-servers=http://127.0.0.1:{self.ports.etcd_client}",
            f"--etcd-prefix=/registry-{self.region}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={self.ports.apiserver}",
            f"--cert-dir={pki}",  # writes a self-signed serving cert for 127.0.0.1/localhost
            f"--token-auth-file={self.dir / 'tokens.csv'}",
            "--authorization-mode=Node,RBAC",  # Node: a real kubelet reads only what its own pods need
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={self.dir / 'sa.pub'}",
            f"--service-account-signing-key-file={self.dir / 'sa.key'}",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--allow-privileged=false",
            "--enable-admission-plugins=NodeRestriction",
            "--profiling=false",
            # Loopback cannot be an Endpoints address: nothing in-cluster dials the API server here anyway.
            "--endpoint-reconciler-type=none",
        ])
        wait_until(self.apiserver_ready, timeout=120, what=f"kube-apiserver {self.region}",
                   log_file=self._log("kube-apiserver"),
                   alive=lambda: read_pid(self._pid("kube-apiserver")) is not None)

    def _start_controllers(self, binaries: Binaries) -> None:
        common = [f"--kubeconfig={self.kubeconfig}", "--leader-elect=false"]
        self._spawn("kube-controller-manager", [
            str(binaries.kube_controller_manager), *common, "--secure-port=0",
            f"--service-account-private-key-file={self.dir / 'sa.key'}",
            f"--root-ca-file={self.dir / 'pki' / 'apiserver.crt'}",
            "--use-service-account-credentials=false",
            "--controllers=*",
        ])
        self._spawn("kube-scheduler", [str(binaries.kube_scheduler), *common, "--secure-port=0"])

    def _start_kwok(self, binaries: Binaries) -> None:
        stages = self.dir / "kwok-stages.yaml"
        stages.write_text(kwok_stages())
        self._spawn("kwok", [
            str(binaries.kwok), f"--kubeconfig={self.kubeconfig}", f"--config={stages}",
            f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
            f"--server-address=127.0.0.1:{self.ports.kwok}",
            "--node-ip=127.0.0.1",
        ])

    def node_manifest(self, index: int) -> dict[str, object]:
        return {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {
                "name": f"{self.region}-node-{index}",
                "annotations": {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {REGION_LABEL: self.region, "topology.kubernetes.io/zone": f"{self.region}-{index}",
                           "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64", "type": "kwok",
                           "kubernetes.io/hostname": f"{self.region}-node-{index}"},
            },
            "status": {"allocatable": {"cpu": "16", "memory": "64Gi", "pods": "110"},
                       "capacity": {"cpu": "16", "memory": "64Gi", "pods": "110"}},
        }

    def _create_nodes(self) -> None:
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        from ig_k8s.kube import api_client

        core = client.CoreV1Api(api_client(self.kubeconfig))
        for index in range(NODES_PER_REGION):
            try:
                core.create_node(self.node_manifest(index))
            except ApiException as error:
                if error.status != 409:
                    raise

    def stop(self, forget: bool = False) -> list[str]:
        """With ``forget`` the cluster's state (etcd's data) goes too: kept, the next start would have the
        controllers recreate every workload it held on a node that returns under the same name, beside whatever
        that start installs (the real node's CPU then no longer fits both)."""
        stopped = []
        for name in reversed(self.PROCESSES):
            if terminate(self._pid(name)):
                stopped.append(name)
        data = self.dir / "etcd-data"
        if forget and read_pid(self._pid("etcd")) is None and data.exists():
            shutil.rmtree(data)
            stopped.append("etcd data removed")
        return stopped

    def describe(self) -> str:
        state = "up" if self.healthy() else "down"
        return (f"{self.region}: {state}  kube-apiserver {self.server} (Kubernetes {KUBERNETES_VERSION}), "
                f"etcd 127.0.0.1:{self.ports.etcd_client}, kubeconfig {self.kubeconfig}")


def wait_for(check: object, timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check():
            return True
        time.sleep(interval)
    return False
