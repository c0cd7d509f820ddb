"""`make up`'s witnesses, started the way ig-infra starts them (ServiceProcess + their run-dir settings) in a
private run dir and on free ports: each comes up healthy with its own key, sees none of the database's or Kafka's
settings, and cosigns a checkpoint of the run dir's ledger key with the key IG_WITNESSES gives the evidence service.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from ig_common.http_client import client_as
from ig_infra.components.identities import Identities
from ig_infra.ledger_key import ledger_checkpoint_key
from ig_infra.paths import Paths
from ig_infra.process import free_port, read_pid
from ig_infra.pytest_plugin import Infra
from ig_infra.services import WITNESS_SERVICES, ServiceProcess
from ig_infra.witnesses import LEDGER_ORIGIN, WITNESSES, evidence_witnesses_env

pytestmark = pytest.mark.integration


def test_each_region_gets_a_witness_that_cosigns_the_local_ledger(infra: Infra, tmp_path: Path) -> None:
    paths = Paths(cache=infra.paths.cache, run=tmp_path / "run")
    identities = Identities(paths)
    identities.start()
    ports = {w.process_name: (free_port(), free_port()) for w in WITNESSES}
    specs = [dataclasses.replace(spec, http_port=ports[spec.name][0],
                                 extra_ports={"IG_WITNESS_PORT": ports[spec.name][1]}) for spec in WITNESS_SERVICES]
    processes = [ServiceProcess(spec, paths) for spec in specs]
    configured = json.loads(evidence_witnesses_env(paths)["IG_WITNESSES"])
    assert [c["verifier_key"].split("+")[0] for c in configured] == [w.name for w in WITNESSES]
    assert len({c["verifier_key"] for c in configured}) == len(WITNESSES)  # a key of its own each
    try:
        for process in processes:
            process.start([identities, infra.postgres, infra.kafka])
        key = serialization.load_pem_private_key(ledger_checkpoint_key(paths.run).read_bytes(), password=None)
        assert isinstance(key, Ed25519PrivateKey)
        body = f"{LEDGER_ORIGIN}\n1\n{base64.b64encode(hashlib.sha256(b'x').digest()).decode()}\n"
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        key_id = hashlib.sha256(LEDGER_ORIGIN.encode() + b"\n\x01" + raw).digest()[:4]
        signed = f"{body}\n\u2014 {LEDGER_ORIGIN} {base64.b64encode(key_id + key.sign(body.encode())).decode()}\n"
        os.environ["IG_IDENTITIES"] = str(identities.root)  # ask as this run dir's evidence identity
        try:
            for process, witness in zip(processes, configured, strict=True):
                url = f"https://127.0.0.1:{process.spec.extra_ports['IG_WITNESS_PORT']}"
                with client_as("evidence", url, "witness", timeout=10) as client:
                    answer = client.post("/add-checkpoint", content=f"old 0\n\n{signed}".encode())
                assert answer.status_code == 200, answer.text
                name, _, encoded = answer.text.removeprefix("\u2014 ").strip().partition(" ")
                signature = base64.b64decode(encoded)
                assert name == witness["verifier_key"].split("+")[0]
                assert signature[:4].hex() == witness["verifier_key"].split("+")[1]
                pid = read_pid(process.pid_file)
                environ = dict(item.split("=", 1) for item in
                               Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in item)
                for setting in {**infra.postgres.env(), **infra.kafka.env()}:
                    assert setting not in environ or setting in os.environ, setting
        finally:
            os.environ["IG_IDENTITIES"] = str(infra.identities.root)
    finally:
        for process in processes:
            process.stop()
