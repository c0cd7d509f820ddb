"""Each region's own infrastructure for its pods (pod_infra.py), as configured, without starting anything: ports and
addresses per region, the broker's pods' listener and what it advertises, the headless Service that names it, and
the one-broker bootstrap the real-node installs use. That the pods reach them: tests/real/test_real_pod_infra.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from ig_infra.paths import Paths
from ig_k8s.node import RealNode
from ig_k8s.node_network import NETWORKS
from ig_k8s.node_services import host_service_objects
from ig_k8s.pod_infra import KAFKA_BOOTSTRAP, infra_paths, pod_kafka, pod_postgres
from ig_k8s.real_charts import real_node_values
from ig_k8s.releases import load_release_set
from ig_k8s.suite import REGIONS


@pytest.fixture
def paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Paths:
    monkeypatch.delenv("IG_K8S_PORT_OFFSET", raising=False)
    return Paths(cache=tmp_path / "cache", run=tmp_path / "run")


def test_each_region_has_its_own_ports_run_dir_and_node_address(paths: Paths) -> None:
    postgres = {region: pod_postgres(paths, region) for region in REGIONS}
    kafka = {region: pod_kafka(paths, region) for region in REGIONS}
    assert (postgres["region-a"].port, postgres["region-b"].port) == (26432, 26632)
    assert (kafka["region-a"].port, kafka["region-b"].port) == (26092, 26292)
    assert (kafka["region-a"].controller_port, kafka["region-b"].controller_port) == (26093, 26293)
    for region in REGIONS:
        assert postgres[region].pod_addresses == (NETWORKS[region].host_address,)
        assert kafka[region].pod_address == NETWORKS[region].host_address
        assert kafka[region].host == "127.0.0.1"
        assert postgres[region].dir.parent == kafka[region].dir.parent == infra_paths(paths, region).run
    assert infra_paths(paths, "region-a").run != infra_paths(paths, "region-b").run


def test_the_broker_listens_for_pods_on_the_node_address_and_advertises_the_charts_name(paths: Paths) -> None:
    broker = pod_kafka(paths, "region-b")
    broker.dir.mkdir(parents=True, exist_ok=True)
    broker._write_config()
    config = dict(line.split("=", 1) for line in broker.config.read_text().splitlines() if "=" in line)
    assert config["listeners"] == ("CLIENT://127.0.0.1:26292,POD://10.250.2.1:9093,"
                                   "CONTROLLER://127.0.0.1:26293")
    assert config["advertised.listeners"] == f"CLIENT://127.0.0.1:26292,POD://{KAFKA_BOOTSTRAP}"
    assert config["listener.security.protocol.map"] == "CLIENT:SSL,CONTROLLER:SSL,POD:SSL"
    assert config["ssl.client.auth"] == "required"


def test_without_a_pod_address_the_broker_is_as_before(paths: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    from ig_infra.components.kafka import Kafka

    monkeypatch.delenv("IG_KAFKA_POD_ADDRESS", raising=False)
    broker = Kafka(paths)
    broker.dir.mkdir(parents=True, exist_ok=True)
    broker._write_config()
    text = broker.config.read_text()
    assert "POD" not in text and "advertised.listeners=CLIENT://127.0.0.1:59092\n" in text


def test_the_kafka_service_is_headless_and_names_kafka_0_at_the_node_address(paths: Paths) -> None:
    node = RealNode("region-a", paths)
    service, endpoints = host_service_objects(node, "ig-data", "kafka",
                                              [{"name": "kafka", "port": 9093, "targetPort": 9093}], hostname="kafka-0")
    assert service["spec"]["clusterIP"] == "None"
    assert endpoints["endpoints"] == [{"addresses": ["10.250.1.1"], "conditions": {"ready": True},
                                       "nodeName": node.name, "hostname": "kafka-0"}]
    assert endpoints["ports"] == [{"name": "kafka", "port": 9093, "protocol": "TCP"}]
    with pytest.raises(AssertionError):  # a headless Service has no rule to translate a port
        host_service_objects(node, "ig-data", "kafka", [{"name": "kafka", "port": 9093, "targetPort": 26092}],
                             hostname="kafka-0")


def test_real_node_installs_bootstrap_from_the_one_broker_of_their_region() -> None:
    for release in load_release_set()[1]:
        assert real_node_values(release, "dev")["global"] == {"kafka": {"bootstrap": KAFKA_BOOTSTRAP}}
    assert KAFKA_BOOTSTRAP == "kafka-0.kafka.ig-data.svc.cluster.local:9093"


def test_each_region_has_its_own_prometheus_on_its_node_address(paths: Paths) -> None:
    from ig_k8s.pod_infra import pod_prometheus

    found = {region: pod_prometheus(paths, region) for region in REGIONS}
    assert [(p.host, p.port) for p in found.values()] == [("10.250.1.1", 29090), ("10.250.2.1", 29290)]
    assert "10.250.1.1:29090" in found["region-a"].config_text


def test_components_made_in_parallel_threads_get_their_own_regions_ports(paths: Paths) -> None:
    """RealSuite starts both regions' infrastructure at once; each thread sets and restores the environment the
    components read their ports from."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=8) as pool:
        ports = list(pool.map(lambda index: (REGIONS[index % 2], pod_postgres(paths, REGIONS[index % 2]).port,
                                             pod_kafka(paths, REGIONS[index % 2]).port), range(400)))
    assert {(region, pg, kafka) for region, pg, kafka in ports} == {("region-a", 26432, 26092),
                                                                      ("region-b", 26632, 26292)}


def test_each_regions_dex_serves_the_issuer_its_values_name_on_its_node_address_with_a_certificate_for_the_name(
        paths: Paths) -> None:
    import yaml
    from cryptography import x509
    from ig_infra.paths import REPO_ROOT
    from ig_k8s.pod_infra import ensure_dex_certificate, issuer_service, pod_dex

    redirect = "http://audit-portal.ig.svc.cluster.local:8080/callback"
    found = {region: pod_dex(paths, region, (redirect,)) for region in REGIONS}
    assert [(d.host, d.port, d.ldap_host, d.ldap_port) for d in found.values()] == [
        ("10.250.1.1", 25556, "127.0.0.1", 25389), ("10.250.2.1", 25756, "127.0.0.1", 25589)]
    for region, dex in found.items():
        values = yaml.safe_load((REPO_ROOT / "charts" / f"values-{region}.yaml").read_text())
        assert dex.issuer == values["global"]["oidc"]["issuer"]
        assert dex.issuer == "https://dex.ig-data.svc.cluster.local:5556/dex"
        assert issuer_service(dex.issuer) == ("dex", "ig-data", 5556)
        assert dex.dir.parent == infra_paths(paths, region).run
        config = yaml.safe_load(dex.rendered_config())
        assert config["web"]["https"] == f"{NETWORKS[region].host_address}:{dex.port}"
        assert next(c for c in config["staticClients"] if c["id"] == "audit-portal")["redirectURIs"] == [redirect]
        assert ensure_dex_certificate(paths, dex) and not ensure_dex_certificate(paths, dex)  # issued once, kept
        assert dex.tls is not None
        cert = x509.load_pem_x509_certificate(dex.tls.cert.read_bytes())
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert set(names.get_values_for_type(x509.DNSName)) == {
            "dex", "dex.ig-data", "dex.ig-data.svc", "dex.ig-data.svc.cluster.local"}
        assert [str(a) for a in names.get_values_for_type(x509.IPAddress)] == [NETWORKS[region].host_address]


def test_each_regions_prometheus_scrapes_the_annotated_pods_its_own_api_server_lists(paths: Paths) -> None:
    """promtool accepts the configuration; its pod discovery reads the region's own ServiceAccount kubeconfig and
    keeps only annotated, running pods at their annotated port, labelled with the region."""
    import subprocess

    import yaml
    from ig_infra.go_tools import tool_path
    from ig_k8s.pod_infra import pod_prometheus, prometheus_kubeconfig

    for region in REGIONS:
        prometheus = pod_prometheus(paths, region)
        [pods] = [job for job in yaml.safe_load(prometheus.config_text)["scrape_configs"] if job["job_name"] == "pods"]
        assert pods["kubernetes_sd_configs"] == [{"role": "pod",
                                                  "kubeconfig_file": str(prometheus_kubeconfig(paths, region))}]
        relabel = pods["relabel_configs"]
        assert relabel[0] == {"source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"],
                              "regex": "true", "action": "keep"}
        assert {"target_label": "region", "replacement": region} in relabel
        kubeconfig = prometheus_kubeconfig(paths, region)
        kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        kubeconfig.write_text("{}")
        config = prometheus.workdir / "prometheus.yml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(prometheus.config_text)
        check = subprocess.run([str(tool_path(Paths.from_environment().cache, "promtool")), "check", "config",
                                str(config)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
    assert prometheus_kubeconfig(paths, "region-a") != prometheus_kubeconfig(paths, "region-b")
