"""A global replica made on one network layout dials its upstream the way the other layout reaches it
(GlobalPostgres._follow_layout): the other region's end of the link in namespaces, its Unix socket on the loopback.
Files only: no cluster runs here (e2e/test_suite_network.py streams over a real link)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from ig_infra.components.global_pg import GlobalPostgres
from ig_infra.paths import Paths
from ig_infra.suite_network import LAYOUT_FILE, plan

SOCKET_CONNINFO = ("primary_conninfo = 'host={run}/postgres-global/sock port=55433 user=postgres "
                   "application_name=region_b'\nprimary_slot_name = 'region_b'\n")


def _replica(run: Path) -> GlobalPostgres:
    replica = GlobalPostgres(Paths(cache=run / "cache", run=run / "region-b"))
    replica.data.mkdir(parents=True)
    (replica.data / "standby.signal").touch()
    return replica


def _conninfo(replica: GlobalPostgres) -> dict[str, str]:
    line = next(line for line in (replica.data / "postgresql.auto.conf").read_text().splitlines()
                if line.startswith("primary_conninfo"))
    return dict(part.split("=", 1) for part in line.split("'")[1].split())


def test_a_replica_made_on_the_loopback_streams_over_the_link_once_in_namespaces(tmp_path: Path) -> None:
    replica = _replica(tmp_path)
    (replica.data / "postgresql.auto.conf").write_text(SOCKET_CONNINFO.format(run=tmp_path))
    network = plan(tmp_path)
    (tmp_path / LAYOUT_FILE).write_text(json.dumps({"a": asdict(network.a), "b": asdict(network.b)}))
    replica._follow_layout()
    fields = _conninfo(replica)
    assert fields["host"] == network.a.peer_address
    assert fields["passfile"] == str(replica.dir / "replication.pgpass")
    assert (fields["port"], fields["application_name"]) == ("55433", "region_b")  # what it was made with
    assert "primary_slot_name = 'region_b'" in (replica.data / "postgresql.auto.conf").read_text()


def test_back_on_the_loopback_it_follows_the_primary_over_its_socket_again(tmp_path: Path) -> None:
    replica = _replica(tmp_path)
    network = plan(tmp_path)
    (replica.data / "postgresql.auto.conf").write_text(
        f"primary_conninfo = 'host={network.a.peer_address} port=55433 user=postgres application_name=region_b "
        f"passfile={replica.dir}/replication.pgpass'\n")
    replica._follow_layout()
    fields = _conninfo(replica)
    assert fields["host"] == str(tmp_path / "postgres-global" / "sock") and "passfile" not in fields


def test_a_cluster_that_is_no_replica_is_left_alone(tmp_path: Path) -> None:
    replica = _replica(tmp_path)
    (replica.data / "standby.signal").unlink()
    original = SOCKET_CONNINFO.format(run=tmp_path)
    (replica.data / "postgresql.auto.conf").write_text(original)
    (tmp_path / LAYOUT_FILE).write_text(json.dumps({"a": asdict(plan(tmp_path).a), "b": asdict(plan(tmp_path).b)}))
    replica._follow_layout()
    assert (replica.data / "postgresql.auto.conf").read_text() == original
