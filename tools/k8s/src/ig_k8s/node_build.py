"""The real node's binaries: containerd 2.x from the Go module proxy, the kubelet and kube-proxy from the same
k8s.io/kubernetes module as the control plane, and a pause (sandbox) program compiled here; runc and the CNI plugins
come from Debian.

Why containerd 2.x and not Debian's containerd 1.6.20: the kubelet is 1.37 (the control plane's version) and
Kubernetes 1.35 was the last release to support containerd 1.x; Debian's 1.6.20 is also older than any 1.6 release
containerd still lists as supported. containerd v2.4.2 is the newest 2.x the module proxy serves that builds with
this machine's Go (its go.mod says go 1.26.6) and has no replace directives, so `go install pkg@version` works.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ig_infra.paths import Paths
from ig_infra.prereqs import apt_install, require
from ig_infra.process import InfraError

from ig_k8s.kube_build import KUBERNETES_VERSION, NODE_COMMANDS, build_kubernetes

CONTAINERD_MODULE = "github.com/containerd/containerd/v2"
CONTAINERD_VERSION = "v2.4.2"
CONTAINERD_COMMANDS = ("containerd", "ctr", "containerd-shim-runc-v2")
# Cluster DNS. v1.15.0: the newest CoreDNS the module proxy serves; its go.mod has no replace directives and asks for
# go 1.26, which this machine has.
COREDNS_MODULE = "github.com/coredns/coredns"
COREDNS_VERSION = "v1.15.0"
# Snapshotters that need cgo libraries or kernel features this node does not use; overlayfs is the one it runs.
CONTAINERD_TAGS = "no_btrfs no_devmapper no_zfs"
# Debian packages the node runs as they are: the OCI runtime and the CNI plugins (bridge, host-local, portmap,
# loopback), iptables for portmap and kube-proxy, nfacct for kube-proxy's counter in the node's namespace.
NODE_PACKAGES = {"runc": "/usr/sbin/runc", "containernetworking-plugins": "/usr/lib/cni/bridge",
                 "iptables": "/usr/sbin/iptables", "nfacct": "/usr/sbin/nfacct"}
CNI_BIN_DIR = Path("/usr/lib/cni")

# The sandbox ("pause") container: holds a pod's namespaces, reaps zombies, exits on SIGINT/SIGTERM. Compiled
# statically so its image is this one file (the node cannot pull registry.k8s.io/pause).
PAUSE_SOURCE = r"""
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int signal_number) { (void)signal_number; _exit(0); }

static void reap(int signal_number) {
    (void)signal_number;
    while (waitpid(-1, 0, WNOHANG) > 0) {}
}

int main(void) {
    struct sigaction on_stop = {.sa_handler = stop};
    struct sigaction on_child = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP};
    sigaction(SIGINT, &on_stop, 0);
    sigaction(SIGTERM, &on_stop, 0);
    sigaction(SIGCHLD, &on_child, 0);
    for (;;) pause();
}
"""


@dataclass(frozen=True)
class NodeBinaries:
    containerd: Path
    ctr: Path
    containerd_shim: Path
    runc: Path
    kubelet: Path
    kube_proxy: Path
    pause: Path
    coredns: Path

    @classmethod
    def cached(cls, paths: Paths) -> NodeBinaries | None:
        """The binaries if all are already there (never builds anything)."""
        containerd_bin = paths.cache / f"containerd-{CONTAINERD_VERSION}" / "bin"
        kube_bin = paths.cache / f"kubernetes-{KUBERNETES_VERSION}" / "bin"
        found = cls(containerd=containerd_bin / "containerd", ctr=containerd_bin / "ctr",
                    containerd_shim=containerd_bin / "containerd-shim-runc-v2", runc=Path(NODE_PACKAGES["runc"]),
                    kubelet=kube_bin / "kubelet", kube_proxy=kube_bin / "kube-proxy", pause=_pause_path(paths.cache),
                    coredns=_coredns_path(paths.cache))
        return found if all(path.exists() for path in vars(found).values()) else None

    @classmethod
    def ensure(cls, paths: Paths) -> NodeBinaries:
        for package, marker in NODE_PACKAGES.items():
            if not Path(marker).exists():
                apt_install(package)
        containerd = build_containerd(paths.cache)
        kube = build_kubernetes(paths.cache, commands=NODE_COMMANDS)
        return cls(containerd=containerd["containerd"], ctr=containerd["ctr"],
                   containerd_shim=containerd["containerd-shim-runc-v2"], runc=Path(NODE_PACKAGES["runc"]),
                   kubelet=kube["kubelet"], kube_proxy=kube["kube-proxy"], pause=build_pause(paths.cache),
                   coredns=build_coredns(paths.cache))


def build_containerd(cache: Path, version: str = CONTAINERD_VERSION) -> dict[str, Path]:
    """``go install`` containerd, ctr and the runc shim once into ``<cache>/containerd-<version>/bin``."""
    bin_dir = cache / f"containerd-{version}" / "bin"
    targets = {command: bin_dir / command for command in CONTAINERD_COMMANDS}
    if all(path.exists() for path in targets.values()):
        return targets
    require("go", "nice")
    bin_dir.mkdir(parents=True, exist_ok=True)
    print(f"  building containerd {version} from the Go module proxy (first time only) ...", flush=True)
    args = ["nice", "-n", "10", "go", "install", "-p", "2", "-trimpath", "-tags", CONTAINERD_TAGS, "-ldflags",
            f"-s -w -X {CONTAINERD_MODULE}/version.Version={version}",
            *(f"{CONTAINERD_MODULE}/cmd/{command}@{version}" for command in CONTAINERD_COMMANDS)]
    result = subprocess.run(args, capture_output=True, text=True,
                            env={**os.environ, "GOBIN": str(bin_dir), "CGO_ENABLED": "0"})
    missing = [str(path) for path in targets.values() if not path.exists()]
    if result.returncode != 0 or missing:
        raise InfraError(f"{' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return targets


def build_coredns(cache: Path) -> Path:
    """``go install`` CoreDNS once (its main package is the module root; 1 min 49 s cold here, measured)."""
    target = _coredns_path(cache)
    if target.exists():
        return target
    require("go", "nice")
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"  building CoreDNS {COREDNS_VERSION} from the Go module proxy (first time only) ...", flush=True)
    args = ["nice", "-n", "10", "go", "install", "-p", "2", "-trimpath", "-ldflags", "-s -w",
            f"{COREDNS_MODULE}@{COREDNS_VERSION}"]
    result = subprocess.run(args, capture_output=True, text=True,
                            env={**os.environ, "GOBIN": str(target.parent), "CGO_ENABLED": "0"})
    if result.returncode != 0 or not target.exists():
        raise InfraError(f"{' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return target


def _coredns_path(cache: Path) -> Path:
    return cache / f"coredns-{COREDNS_VERSION}" / "bin" / "coredns"


def build_pause(cache: Path) -> Path:
    """The static pause program (gcc, Debian's libc6-dev)."""
    target = _pause_path(cache)
    if target.exists():
        return target
    if shutil.which("gcc") is None:
        apt_install("gcc")
    target.parent.mkdir(parents=True, exist_ok=True)
    source = target.parent / "pause.c"
    source.write_text(PAUSE_SOURCE)
    result = subprocess.run(["gcc", "-static", "-Os", "-s", "-o", str(target), str(source)], capture_output=True,
                            text=True)
    if result.returncode != 0:
        raise InfraError(f"gcc could not build the pause program:\n{result.stderr[-2000:]}")
    return target


def _pause_path(cache: Path) -> Path:
    return cache / "ig-pause-1" / "bin" / "pause"


def describe_versions(binaries: NodeBinaries) -> dict[str, str]:
    """Each agent's own word on its version (what the node really runs)."""
    def first_line(command: list[str]) -> str:
        result = subprocess.run(command, capture_output=True, text=True)
        return (result.stdout or result.stderr).strip().splitlines()[0] if result.returncode == 0 else "?"

    return {"containerd": first_line([str(binaries.containerd), "--version"]),
            "runc": first_line([str(binaries.runc), "--version"]),
            "kubelet": first_line([str(binaries.kubelet), "--version"]),
            "coredns": first_line([str(binaries.coredns), "-version"]),
            "kubernetes-module": KUBERNETES_VERSION}
