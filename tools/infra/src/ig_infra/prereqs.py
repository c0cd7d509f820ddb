"""Check for the tools a component needs and say how to get each one that is missing."""

from __future__ import annotations

import shutil
import subprocess
import threading

from ig_infra.process import InfraError

HOW_TO_GET = {
    "java": "install Java 17: apt-get update && apt-get install -y openjdk-17-jre-headless",
    "mvn": "install Maven: apt-get update && apt-get install -y maven",
    "go": "install Go 1.22 or newer from your distribution or the Go toolchain",
    "apt-get": "a Debian/Ubuntu system with apt-get is needed to install PostgreSQL 15 automatically",
}


def require(*commands: str) -> None:
    missing = [c for c in commands if shutil.which(c) is None]
    if missing:
        raise InfraError("missing prerequisites:\n" + "\n".join(f"  {c}: {HOW_TO_GET.get(c, 'install it')}"
                                                                for c in missing))


# One apt at a time in this process (both regions' clusters start in threads and each installed etcd: the second
# failed on dpkg's lock, cold run of 2026-12-06); another process's apt is waited for through dpkg's lock timeout.
_APT = threading.Lock()
LOCK_WAIT = ["-o", "DPkg::Lock::Timeout=300"]


def apt_install(*packages: str) -> None:
    require("apt-get")
    with _APT:
        for args in (["apt-get", "update", "-qq", *LOCK_WAIT], ["apt-get", "install", "-y", "-qq", *LOCK_WAIT,
                                                                 *packages]):
            result = subprocess.run(args, capture_output=True, text=True,
                                    env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
            if result.returncode != 0:
                raise InfraError(f"{' '.join(args)} failed:\n{result.stderr[-2000:]}")
