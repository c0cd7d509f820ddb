"""A real node per region: containerd 2.x + runc run the containers, CNI (Debian's bridge, host-local, portmap,
loopback) wires each pod into the region's own bridge, and a kubelet registers the node with that region's
kube-apiserver.

Two regions share one host, so everything a node owns is its own: containerd root/state/socket, the kubelet's root
dir, pod log dir and ports, the cgroup parent (``/ig-<region>`` in every cgroup v1 hierarchy), the bridge and pod
subnet, its own network namespace for the bridge, pods and kube-proxy rules (node_network.py), the pods' network
namespaces (under containerd's state dir) and the IPAM state. ``stop()`` kills what the node
started, down to its containers, their shims, mounts, cgroups and bridge, and leaves nothing running.

The host is cgroup v1: the 1.37 kubelet refuses it unless ``failCgroupV1: false``. No systemd, so the cgroupfs
driver. The host's end of the node's link is the node's InternalIP (not loopback, which the kubelet refuses); pods
get no default route out, only routes to their subnet, the service CIDR and the host link. Services and cluster DNS:
kube-proxy and CoreDNS (node_services.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from datetime import datetime
from pathlib import Path

from ig_infra.paths import Paths
from ig_infra.process import InfraError, read_pid, spawn, terminate, wait_until

from ig_k8s.cluster import REGION_LABEL, SimulatedCluster
from ig_k8s.node_build import CNI_BIN_DIR, NodeBinaries
from ig_k8s.node_network import (
    CLUSTER_DNS_IP,
    CLUSTER_DOMAIN,
    NETWORKS,
    make_namespace,
    pod_routes,
    remove_namespace,
    write_wrappers,
)
from ig_k8s.node_services import start_coredns, start_kube_proxy, stop_services

PAUSE_IMAGE = "localhost/ig/pause:1"
REAL_NODE_LABEL = "ig.dev/node-kind"
CGROUP_ROOT = Path("/sys/fs/cgroup")


def node_name(region: str) -> str:
    return f"{region}-real-0"


class RealNode:
    """One region's node. ``start()`` is idempotent; ``stop()`` removes what it made."""

    PROCESSES = ("containerd", "kubelet", "kube-proxy", "coredns")

    def __init__(self, region: str, paths: Paths | None = None) -> None:
        self.cluster = SimulatedCluster(region, paths)
        self.region = region
        self.network = NETWORKS[region]
        self.name = node_name(region)
        self.dir = self.cluster.dir / "node"
        self.socket = self.dir / "containerd" / "containerd.sock"
        self.state = self.dir / "containerd" / "state"
        self.cgroup_parent = f"/ig-{region}"
        self.pod_logs = self.dir / "pod-logs"
        self.cni_bin = self.dir / "cni" / "bin"  # the CNI plugins, entered into the node's network namespace
        self.netfilter_bin = self.dir / "netfilter-bin"  # kube-proxy's iptables, likewise

    # ---- files --------------------------------------------------------------------------------------------
    def _pid(self, name: str) -> Path:
        return self.dir / f"{name}.pid"

    def pid(self, name: str) -> int | None:
        """The running process of one of ``PROCESSES``, if it runs."""
        return read_pid(self._pid(name))

    def log(self, name: str) -> Path:
        return self.dir / f"{name}.log"

    def containerd_config(self) -> str:
        cri = "plugins.'io.containerd.cri.v1"
        runc = f"[{cri}.runtime'.containerd.runtimes.runc"
        return f"""version = 3
root = "{self.dir / 'containerd' / 'root'}"
state = "{self.state}"
# NRI would listen on one fixed host socket: two nodes on a host cannot both have it.
disabled_plugins = ["io.containerd.nri.v1.nri"]

[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"

[{cri}.images']
  snapshotter = "overlayfs"
  # Images are imported (ctr -n k8s.io images import), never pulled: the sandbox image is built here too.
  [{cri}.images'.pinned_images]
    sandbox = "{PAUSE_IMAGE}"

[{cri}.runtime']
  # Pod network namespaces under this node's state dir, not the host-wide /var/run/netns.
  netns_mounts_under_state_dir = true
  [{cri}.runtime'.containerd]
    default_runtime_name = "runc"
  {runc}]
    runtime_type = "io.containerd.runc.v2"
  {runc}.options]
    BinaryName = "{self.runc_binary()}"
    Root = "{self.state / 'runc'}"
    SystemdCgroup = false
  [{cri}.runtime'.cni]
    bin_dirs = ["{self.cni_bin}"]
    conf_dir = "{self.dir / 'cni' / 'net.d'}"
    max_conf_num = 1

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"""

    def runc_binary(self) -> Path:
        """Debian's runc, or on a host that withholds CAP_SYS_RESOURCE, runc behind the OOM-score clamp."""
        return self.dir / "runc-oom-clamp" if not can_lower_oom_score() else Path("/usr/sbin/runc")

    def cni_config(self) -> dict[str, object]:
        return {
            "cniVersion": "1.0.0", "name": f"ig-{self.region}",
            "plugins": [
                {"type": "bridge", "bridge": self.network.bridge, "isGateway": True, "ipMasq": False,
                 "hairpinMode": True,
                 "ipam": {"type": "host-local", "dataDir": str(self.dir / "cni" / "ipam"),
                          "ranges": [[{"subnet": self.network.subnet, "gateway": self.network.gateway}]],
                          "routes": pod_routes(self.network)}},
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }

    def kubelet_config(self) -> dict[str, object]:
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            # The host is cgroup v1; from 1.35 the kubelet refuses it unless told not to.
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs", "cgroupRoot": self.cgroup_parent,
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "address": self.network.host_address, "port": self.network.kubelet_port, "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1", "healthzPort": self.network.kubelet_healthz_port,
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True}},
            "authorization": {"mode": "Webhook"},
            "podLogsDir": str(self.pod_logs),
            # Pods get no resolver of the host's (nothing outside this machine is theirs to ask): only the
            # cluster's CoreDNS, behind the kube-dns Service.
            "resolvConf": "",
            "clusterDomain": CLUSTER_DOMAIN, "clusterDNS": [CLUSTER_DNS_IP],
            "failSwapOn": False,
            "registerNode": True,
            "serializeImagePulls": False,
            # No image garbage collection: the images are imported, never pulled, so one the kubelet deletes is gone
            # for good; and the disk is the shared host's, whose fill by others once (95 %) made it delete the
            # just-imported, not yet used service images (ErrImageNeverPull). 100 turns image GC off. For the same
            # reason eviction waits until the host's disk is nearly full.
            "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
            "evictionHard": {"memory.available": "200Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
            "staticPodPath": "",
            # Until the charts' images run here (issue #22 items 3-4), only pods that ask for a real node land on it:
            # a chart install must not end up on a node that lacks its image.
            "registerWithTaints": [{"key": REAL_NODE_LABEL, "value": "real", "effect": "NoSchedule"}],
        }

    def kubelet_kubeconfig(self) -> dict[str, object]:
        ca = self.cluster.dir / "pki" / "apiserver.crt"
        return {
            "apiVersion": "v1", "kind": "Config", "current-context": self.name,
            "clusters": [{"name": self.region, "cluster": {"server": self.cluster.server,
                                                           "certificate-authority": str(ca)}}],
            "users": [{"name": self.name, "user": {"token": self.cluster.node_token(self.name)}}],
            "contexts": [{"name": self.name, "context": {"cluster": self.region, "user": self.name}}],
        }

    # ---- life ---------------------------------------------------------------------------------------------
    def running(self) -> bool:
        return all(read_pid(self._pid(name)) is not None for name in self.PROCESSES)

    def start(self, binaries: NodeBinaries) -> None:
        if not self.cluster.apiserver_ready():
            raise InfraError(f"{self.region}: the kube-apiserver is not up (run `ig-k8s up --region {self.region}`)")
        for sub in ("containerd", "cni/net.d", "cni/ipam", "kubelet", "pod-logs"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        make_namespace(self.network)
        write_wrappers(self.network, self.cni_bin, self.netfilter_bin, CNI_BIN_DIR)
        self._make_cgroup_parent()
        clamp = self.dir / "runc-oom-clamp"
        clamp.write_text(RUNC_OOM_CLAMP)
        clamp.chmod(0o755)
        (self.dir / "containerd.toml").write_text(self.containerd_config())
        (self.dir / "cni" / "net.d" / "10-ig.conflist").write_text(json.dumps(self.cni_config(), indent=2))
        (self.dir / "kubelet.yaml").write_text(json.dumps(self.kubelet_config(), indent=2))
        kubeconfig = self.dir / "kubelet.kubeconfig"
        kubeconfig.write_text(json.dumps(self.kubelet_kubeconfig(), indent=2))
        kubeconfig.chmod(0o600)
        env = {"PATH": f"{binaries.containerd_shim.parent}:/usr/sbin:/usr/bin:/sbin:/bin"}
        if read_pid(self._pid("containerd")) is None:
            spawn([str(binaries.containerd), "--config", str(self.dir / "containerd.toml")],
                  log_file=self.log("containerd"), pid_file=self._pid("containerd"), env=env)
        wait_until(lambda: self.ctr(binaries, "version").returncode == 0, timeout=30,
                   what=f"containerd of {self.region}", log_file=self.log("containerd"),
                   alive=lambda: read_pid(self._pid("containerd")) is not None)
        from ig_k8s.images import import_image, pause_image

        import_image(self, binaries, pause_image(binaries, self.cluster.paths))
        since = 0.0
        if read_pid(self._pid("kubelet")) is None:
            since = time.time() - 1  # a Ready from before this start (the API keeps it for a while) does not count
            spawn([str(binaries.kubelet), f"--config={self.dir / 'kubelet.yaml'}",
                   f"--kubeconfig={kubeconfig}", f"--root-dir={self.dir / 'kubelet'}",
                   f"--cert-dir={self.dir / 'kubelet' / 'pki'}", f"--hostname-override={self.name}",
                   f"--node-ip={self.network.host_address}",
                   f"--node-labels={REGION_LABEL}={self.region},{REAL_NODE_LABEL}=real", "--v=1"],
                  log_file=self.log("kubelet"), pid_file=self._pid("kubelet"), env=env)
        wait_until(lambda: self.ready(since), timeout=120, what=f"kubelet of {self.region} (node {self.name} Ready)",
                   log_file=self.log("kubelet"), alive=lambda: read_pid(self._pid("kubelet")) is not None)
        start_kube_proxy(self, binaries)
        start_coredns(self, binaries)

    def ctr(self, binaries: NodeBinaries, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(binaries.ctr), "--address", str(self.socket), "--namespace", "k8s.io", *args],
                              capture_output=True, text=True, timeout=300)

    def ready(self, since: float = 0.0) -> bool:
        """The kubelet answers its own healthz and the node's Ready condition is True, heard at or after ``since``
        (epoch seconds)."""
        healthz = f"http://127.0.0.1:{self.network.kubelet_healthz_port}/healthz"
        with urllib.request.urlopen(healthz, timeout=2) as response:
            if response.status != 200:
                return False
        _, body = self.cluster._get(f"/api/v1/nodes/{self.name}")
        for condition in json.loads(body).get("status", {}).get("conditions", []):
            if condition["type"] == "Ready":
                heard = datetime.fromisoformat(condition["lastHeartbeatTime"].replace("Z", "+00:00")).timestamp()
                return bool(condition["status"] == "True" and heard >= since)
        return False

    def _cgroup_dirs(self) -> list[Path]:
        controllers = [entry for entry in CGROUP_ROOT.iterdir() if entry.is_dir() and not entry.is_symlink()]
        return [controller / self.cgroup_parent.lstrip("/") for controller in controllers]

    def _make_cgroup_parent(self) -> None:
        for directory in self._cgroup_dirs():
            directory.mkdir(exist_ok=True)

    # ---- stop ---------------------------------------------------------------------------------------------
    def stop(self, binaries: NodeBinaries | None = None) -> list[str]:
        """Stop the kubelet, every container and shim of this node's containerd, containerd; unmount, remove the
        node's network namespaces, cgroups and bridge. Returns what was running."""
        stopped = stop_services(self)
        stopped += ["kubelet"] if terminate(self._pid("kubelet")) else []
        if self._deregister():
            stopped.append(f"node {self.name} deregistered")
        if read_pid(self._pid("containerd")) is not None and binaries is not None:
            self._kill_tasks(binaries)
        if terminate(self._pid("containerd")):
            stopped.append("containerd")
        shims = self.shim_pids()
        for pid in shims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if shims:
            stopped.append(f"{len(shims)} shim(s)")
        self._kill_cgroup_processes()
        self._unmount_all()
        # Images are imported at every start, never pulled (and image GC is off): a root kept across runs only
        # grew, by the images of every run (28 GB here after a few days, until the disk was full).
        if read_pid(self._pid("containerd")) is None:
            shutil.rmtree(self.dir / "containerd" / "root", ignore_errors=True)
        self._remove_cgroups()
        if remove_namespace(self.network):
            stopped.append(f"network namespace {self.network.netns} (bridge {self.network.bridge})")
        # Leases of pods that no longer exist would exhaust the range over many runs.
        for lease in (self.dir / "cni" / "ipam").glob("*/*"):
            lease.unlink()
        return stopped

    def _deregister(self) -> bool:
        """Remove the Node object, so that the scheduler never places a pod on a node that is gone (the API would
        show it Ready for a grace period after a restart of the cluster)."""
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        from ig_k8s.kube import api_client

        try:
            if not self.cluster.apiserver_ready():
                return False
            client.CoreV1Api(api_client(self.cluster.kubeconfig)).delete_node(self.name)
            return True
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        except OSError:
            return False

    def _kill_tasks(self, binaries: NodeBinaries) -> None:
        for task in self.ctr(binaries, "tasks", "list", "-q").stdout.split():
            self.ctr(binaries, "tasks", "delete", "--force", task)  # SIGKILL, wait, delete: its shim then exits

    def shim_pids(self) -> list[int]:
        """Shims of this node's containerd (they daemonize, so they are not in its process group)."""
        found = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                argv = (proc / "cmdline").read_bytes().split(b"\0")
                if argv and argv[0].endswith(b"containerd-shim-runc-v2") and str(self.socket).encode() in argv:
                    found.append(int(proc.name))
        return found

    def _cgroup_pids(self) -> set[int]:
        found: set[int] = set()
        for directory in self._cgroup_dirs():
            if directory.exists():
                for procs in directory.rglob("cgroup.procs"):
                    with contextlib.suppress(OSError):
                        found.update(int(pid) for pid in procs.read_text().split())
        return found

    def _kill_cgroup_processes(self) -> None:
        """Anything still in the node's cgroups is a container process of this node; wait until they are gone (a
        cgroup with a process in it cannot be removed)."""
        deadline = time.monotonic() + 10
        while (pids := self._cgroup_pids()) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)

    def _unmount_all(self) -> None:
        prefix = str(self.dir) + "/"
        mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
        for target in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
            subprocess.run(["umount", "-l", target], capture_output=True)

    def _remove_cgroups(self) -> None:
        for directory in self._cgroup_dirs():
            if directory.exists():
                for child in sorted((p for p in directory.rglob("*") if p.is_dir()), key=lambda p: len(p.parts),
                                    reverse=True):
                    with contextlib.suppress(OSError):
                        child.rmdir()
                with contextlib.suppress(OSError):
                    directory.rmdir()

    def describe(self) -> str:
        state = "running" if self.running() else "stopped"
        return (f"{self.region}: node {self.name} {state}  containerd {self.socket}, kubelet "
                f"{self.network.host_address}:{self.network.kubelet_port}, pods {self.network.subnet} on "
                f"{self.network.bridge} in netns {self.network.netns}, kube-proxy (iptables), CoreDNS "
                f"{self.network.host_address}:53 behind {CLUSTER_DNS_IP}")


# The kubelet gives every sandbox oom_score_adj -998 (and Guaranteed pods -997); lowering a score below 0 needs
# CAP_SYS_RESOURCE, which a sandboxed host (this one) withholds even from root, and runc then fails the container
# ("failed to update /proc/self/oom_score_adj: Permission denied"). On such a host only, runc is called through
# this wrapper, which raises negative scores to 0 in the bundle's config.json: the container runs, merely without
# its OOM protection (logged to stderr, which containerd keeps in its log).
RUNC_OOM_CLAMP = """#!/bin/sh
previous=""
for argument in "$@"; do
  if [ "$previous" = "--bundle" ] || [ "$previous" = "-b" ]; then
    /usr/bin/python3 - "$argument/config.json" <<'PY'
import json, sys
path = sys.argv[1]
spec = json.load(open(path))
score = spec.get("process", {}).get("oomScoreAdj")
if score is not None and score < 0:
    spec["process"]["oomScoreAdj"] = 0
    json.dump(spec, open(path, "w"))
    print(f"runc-oom-clamp: oomScoreAdj {score} -> 0 (no CAP_SYS_RESOURCE on this host)", file=sys.stderr)
PY
  fi
  previous="$argument"
done
exec /usr/sbin/runc "$@"
"""


def can_lower_oom_score() -> bool:
    """Whether this host lets root lower an OOM score below 0 (tried in a throw-away child)."""
    tried = subprocess.run(["/bin/sh", "-c", "echo -1 > /proc/self/oom_score_adj"], capture_output=True)
    return tried.returncode == 0

