"""The OPA that `make up` runs (ig-infra's component), for real: locked, its token private, an open one replaced."""

from __future__ import annotations

import stat
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from ig_infra.components.opa import Opa, api_locked, opa_binary
from ig_infra.paths import Paths
from ig_infra.process import free_port, read_pid


def status(url: str, token: str | None = None, method: str = "GET", body: bytes | None = None) -> int:
    request = urllib.request.Request(url, method=method, data=body)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as error:
        return error.code


@pytest.fixture
def opa(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Opa]:
    monkeypatch.setenv("IG_OPA_PORT", str(free_port()))
    component = Opa(Paths(cache=Paths.from_environment().cache, run=tmp_path / "run"))
    try:
        yield component
    finally:
        component.stop()


def test_make_up_runs_opa_locked_with_a_private_token(opa: Opa) -> None:
    opa.start()
    token_file = Path(opa.env()["IG_OPA_TOKEN_FILE"])
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip()
    decision = f"{opa.address()}/v1/data/ig/ctx/decision"
    assert status(f"{opa.address()}/health") == 200
    assert status(decision, method="POST", body=b'{"input": {}}') == 401
    assert status(decision, token, method="POST", body=b'{"input": {}}') == 200
    assert status(f"{opa.address()}/v1/policies/x", token, method="PUT", body=b"package x") == 401
    opa.stop()
    opa.start()  # a restart keeps the token the services were given
    assert token_file.read_text().strip() == token


def test_an_open_opa_left_from_before_is_replaced_by_a_locked_one(opa: Opa) -> None:
    opa.dir.mkdir(parents=True, exist_ok=True)
    with opa.log_file.open("wb") as log:
        open_opa = subprocess.Popen([str(opa_binary(opa.paths.cache)), "run", "--server", "--addr",
                                     f"{opa.host}:{opa.port}", str(opa.policies)], stdout=log, stderr=log,
                                    start_new_session=True)
    opa.pid_file.write_text(str(open_opa.pid))
    try:
        for _ in range(100):
            if opa._serving():
                break
            time.sleep(0.1)
        assert not api_locked(opa.address()) and not opa.healthy()
        opa.start()
        assert api_locked(opa.address()) and read_pid(opa.pid_file) != open_opa.pid
    finally:
        if open_opa.poll() is None:
            open_opa.kill()
        open_opa.wait()
