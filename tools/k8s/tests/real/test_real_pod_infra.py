"""Each region's pods use that region's own PostgreSQL, Kafka and Prometheus (tools/k8s/src/ig_k8s/pod_infra.py).

An access decision asked of a policy pod in one region must land in that region's database (``policy.decision_log``)
and, through the service's outbox relay, on that region's broker (``ig.policy.decisions.v1``), and in neither of the
other region's. The pods reach both only through the names the region's values give (``postgresql.ig-data``, and
``kafka-0.kafka.ig-data`` as the broker advertises it): a relay that cannot reach its broker leaves the event in the
outbox, and the test waits for it on the broker. Each region's Prometheus scrapes every service pod of its own region
(``up == 1``) and none of the other's. Nothing skips.
"""

from __future__ import annotations

import asyncio
import datetime
import ssl
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from ig_common.http_client import WorkloadTokenAuth
from ig_common.tls import WorkloadCertificate
from ig_infra.components.kafka import READER_IDENTITY
from ig_infra.kafka_reading import consumer_at, records_until_now
from ig_infra.pki import DevCA, ca_directory, ensure_identities
from ig_k8s.node import RealNode
from ig_k8s.pod_infra import KAFKA_BOOTSTRAP, RegionInfra
from ig_k8s.real_charts import NAMESPACE, release_pods
from ig_k8s.real_suite import RealSuite
from ig_k8s.suite import REGIONS

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

TOPIC = "ig.policy.decisions.v1"
AUTHZEN_PORT = 8091  # the policy chart's ports.api


def other(region: str) -> str:
    return next(r for r in REGIONS if r != region)


def evaluation(subject: str, region: str) -> dict[str, Any]:
    """An AuthZEN evaluation whose subject names this test run, so its decision is found by nothing else."""
    now = datetime.datetime.now(datetime.UTC).isoformat()
    return {"subject": {"type": "user", "id": subject,
                        "properties": {"tenant": "acme", "roles": ["analyst"], "purposes": ["analytics"]}},
            "resource": {"type": "dataset", "id": f"ds-{subject}",
                         "properties": {"tenant": "acme", "purpose": "analytics", "region": region,
                                        "classification": "internal"}},
            "action": {"name": "read"},
            "context": {"time": now, "region": region, "network_zone": "corp", "device_trust": "high",
                        "session_risk": 10, "auth_level": "mfa"}}


def decide(node: RealNode, scratch: Path, subject: str) -> str:
    """POST the evaluation to one of the region's policy pods, as a gateway would (HTTPS with a client certificate
    of the suite's CA for the release namespace, a workload token); returns the decision id."""
    ca = DevCA.load_or_create(ca_directory(node.cluster.paths.cache))
    gateway = WorkloadCertificate(ca.issue("gateway", scratch / "gateway", namespace=NAMESPACE).directory)
    pod = next(p for p in release_pods(node, "policy") if p["ready"])
    context: ssl.SSLContext = gateway.client_ssl_context()
    with httpx.Client(base_url=f"https://{pod['ip']}:{AUTHZEN_PORT}", verify=context, timeout=30,
                      auth=WorkloadTokenAuth(gateway, gateway.spiffe_id.sibling("policy"))) as client:
        # The pod's certificate names its Service, not its address: verify it as the Service's name.
        reply = client.post("/access/v1/evaluation", json=evaluation(subject, node.region),
                            extensions={"sni_hostname": f"policy.{NAMESPACE}.svc.cluster.local"})
    assert reply.status_code == 200, reply.text
    return reply.headers["x-ig-decision-id"]


def logged(infra: RegionInfra, decision_id: str) -> bool:
    found = infra.postgres.admin_sql(f"SELECT count(*) FROM policy.decision_log WHERE decision_id = '{decision_id}'",
                                     database="ig")
    return found.strip() == "1"


async def published(infra: RegionInfra, since: float) -> set[str]:
    """The subjects (decision ids) of every decision event on the region's broker since ``since``, read through its
    loopback listener as the operator, from ``since`` to the end offsets. Reading from the topic's start took one
    fetch of the oldest records: after the day-2 test's client loop had decided on region-b for minutes, this
    test's own event was not in it (CI, stop 35).
    """
    ensure_identities(infra.kafka.paths.cache, infra.kafka.paths.run, (READER_IDENTITY,))
    subjects: set[str] = set()
    async with consumer_at(infra.kafka.bootstrap, TOPIC, since=since,
                           tls=lambda: infra.kafka.ssl_context(READER_IDENTITY)) as consumer:
        async for record in records_until_now(consumer):
            headers = {key: value.decode() for key, value in record.headers}
            subjects.add(headers.get("ce_subject", ""))
    return subjects


def test_a_decision_lands_in_its_own_regions_database_and_on_its_own_regions_kafka(
        suite: RealSuite, nodes: dict[str, RealNode]) -> None:
    since = time.time() - 5
    with tempfile.TemporaryDirectory() as scratch:
        decided = {region: decide(nodes[region], Path(scratch) / region, f"infra-{region}-{uuid.uuid4().hex[:8]}")
                   for region in REGIONS}
    infra = suite.infra
    deadline = time.monotonic() + 120
    events: dict[str, set[str]] = {}
    while time.monotonic() < deadline:
        events = {region: asyncio.run(asyncio.wait_for(published(infra[region], since), 30)) for region in REGIONS}
        if all(decided[region] in events[region] for region in REGIONS):
            break
        time.sleep(3)
    for region in REGIONS:
        assert logged(infra[region], decided[region]), f"{region}'s decision is not in {region}'s database"
        assert not logged(infra[other(region)], decided[region]), f"{region}'s decision is in the other's database"
        assert decided[region] in events[region], (region, decided[region], events[region])
        assert decided[region] not in events[other(region)], f"{region}'s decision is on the other's Kafka"


@pytest.mark.parametrize("region", REGIONS)
def test_the_pods_sessions_reach_their_own_regions_postgresql_only(
        suite: RealSuite, nodes: dict[str, RealNode], region: str) -> None:
    """Every service's sessions in a region's PostgreSQL come from that region's node (kube-proxy masquerades to its
    uplink address); none from the other's."""
    sessions = suite.infra[region].postgres.admin_sql(
        "SELECT DISTINCT host(client_addr) FROM pg_stat_activity WHERE usename LIKE 'ig_%'", database="ig")
    sources = set(sessions.split())
    assert nodes[region].network.uplink_address in sources, sessions
    assert nodes[other(region)].network.uplink_address not in sources, sessions


@pytest.mark.parametrize("region", REGIONS)
def test_the_broker_advertises_the_name_the_charts_dial_at_the_regions_node_address(
        suite: RealSuite, nodes: dict[str, RealNode], region: str) -> None:
    config = suite.infra[region].kafka.config.read_text()
    assert f"POD://{KAFKA_BOOTSTRAP}" in config
    assert f"POD://{nodes[region].network.host_address}:9093" in config
    assert nodes[other(region)].network.host_address not in config


def served_queries(infra: RegionInfra) -> float:
    """The queries the region's Prometheus answered (its own /metrics: reading it is not itself a query)."""
    url = f"{infra.prometheus.url}/metrics"
    text = httpx.get(url, timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("prometheus_http_requests_total{") and 'handler="/api/v1/query"' in line)


@pytest.mark.parametrize("region", REGIONS)
def test_burn_queries_its_own_regions_prometheus(suite: RealSuite, region: str) -> None:
    """burn evaluates its SLOs every 30 s through ``prometheus.monitoring`` (the region values' URL): the region's
    own Prometheus, listening on the region's node address only, must have answered some of those queries."""
    deadline = time.monotonic() + 90
    while served_queries(suite.infra[region]) == 0 and time.monotonic() < deadline:
        time.sleep(5)
    assert served_queries(suite.infra[region]) > 0
    assert suite.infra[region].prometheus.host == suite.nodes[region].network.host_address


def scraped(infra: RegionInfra) -> dict[str, tuple[str, float]]:
    """Pod name -> (job, ``up``) of every pod the region's Prometheus discovered and scraped."""
    reply = httpx.get(f"{infra.prometheus.url}/api/v1/query", params={"query": 'up{pod!=""}'}, timeout=10)
    return {series["metric"]["pod"]: (series["metric"]["job"], float(series["value"][1]))
            for series in reply.json()["data"]["result"]}


def test_each_regions_prometheus_scrapes_every_service_pod_of_its_region_and_none_of_the_others(
        suite: RealSuite, nodes: dict[str, RealNode]) -> None:
    """Through the region's API server (kubernetes_sd_configs) at each pod's address: ``up == 1`` for every Ready pod
    of every release of the suite in its own region, under the job burn's SLOs select (the chart's name), and no
    series at all for the other region's pods."""
    from ig_k8s.real_suite import suite_releases

    def ready_pods(region: str) -> dict[str, set[str]]:
        return {release: {p["name"] for p in release_pods(nodes[region], release, suite.namespace) if p["ready"]}
                for release in suite_releases()}

    deadline = time.monotonic() + 120
    while True:
        pods = {region: ready_pods(region) for region in REGIONS}
        seen = {region: scraped(suite.infra[region]) for region in REGIONS}
        missing = {region: {name for names in pods[region].values() for name in names
                            if seen[region].get(name, ("", 0.0))[1] != 1.0} for region in REGIONS}
        if not any(missing.values()) or time.monotonic() > deadline:
            break
        time.sleep(5)
    for region in REGIONS:
        assert all(pods[region].values()), f"{region}: a release without a Ready pod: {pods[region]}"
        assert not missing[region], f"{region}'s Prometheus has no up == 1 for {missing[region]}: {seen[region]}"
        others = {name for names in pods[other(region)].values() for name in names}
        assert not others & set(seen[region]), f"{region}'s Prometheus scrapes {other(region)}'s pods"
        jobs = {seen[region][name][0] for name in pods[region]["policy"]}
        assert jobs == {"policy"}, f"{region}: the policy pods are scraped as {jobs}, not as burn's SLOs select them"
