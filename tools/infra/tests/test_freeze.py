"""The partition's freeze: a process tree stopped (SIGSTOP) and exactly it resumed (no infrastructure needed)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from ig_infra.freeze import FrozenProcess, freeze, process_tree, state_of, thaw

# A parent that starts a child, both sleeping: the tree a service with workers is.
TREE = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); " \
       "time.sleep(60)"


@pytest.fixture
def tree() -> Iterator[subprocess.Popen[bytes]]:
    parent = subprocess.Popen([sys.executable, "-c", TREE])
    deadline = time.monotonic() + 10
    while len(process_tree(parent.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    yield parent
    for pid in reversed(process_tree(parent.pid)):
        subprocess.run(["kill", "-CONT", str(pid)], check=False)
        subprocess.run(["kill", "-KILL", str(pid)], check=False)
    parent.wait()


def test_freeze_stops_the_whole_tree_and_thaw_resumes_it(tree: subprocess.Popen[bytes]) -> None:
    pids = process_tree(tree.pid)
    assert len(pids) == 2 and pids[0] == tree.pid
    frozen = freeze({"sleeper": tree.pid})
    assert sorted(p.pid for p in frozen) == sorted(pids)
    assert [state_of(pid) for pid in pids] == ["T", "T"]
    resumed = thaw(frozen)
    assert len(resumed) == 2
    deadline = time.monotonic() + 5
    while any(state_of(pid) == "T" for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert all(state_of(pid) in ("S", "R") for pid in pids)


def test_thaw_leaves_alone_a_pid_that_now_belongs_to_another_process(tree: subprocess.Popen[bytes]) -> None:
    frozen = freeze({"sleeper": tree.pid})
    # The same pid with another start time: a process the kernel gave the pid to after ours ended.
    impostor = [FrozenProcess(p.name, p.pid, p.started + 1) for p in frozen]
    assert thaw(impostor) == []
    assert state_of(tree.pid) == "T"
    assert len(thaw(frozen)) == 2
