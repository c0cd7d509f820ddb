"""Each region's own infrastructure for its pods (issue #22): a PostgreSQL, a Kafka broker, a Prometheus and a Dex
(with its own directory) per region, host processes listening on the host's end of that region's node link, named in
the region's cluster as the charts' region values say (charts/values-region-*.yaml).

Host processes rather than pods: the issue allows it, they are ig-infra's own components (the same TLS with client
certificates, per-service roles, Kafka ACLs and topics as `make up`'s), and on two shared cores a broker image and its
volume work would buy nothing the tests look at. Per region, never shared: region-b's PostgreSQL and broker have
their own run dir (``$IG_RUN_DIR/k8s/pod-infra/<region>``), ports shifted by +200 as `make up`'s region-b, and
listen on region-b's node address only; a region's pods have routes to their own node's link only, so they cannot
reach the other region's even by address.

How a pod finds them (node_services.expose_host_service):
- ``postgresql.ig-data:5432``: a ClusterIP Service without selector whose EndpointSlice names 10.250.N.1 and the
  region's PostgreSQL port; kube-proxy forwards (masquerading to the node's uplink address).
- ``kafka-0.kafka.ig-data:9093``: a headless Service whose EndpointSlice has the hostname ``kafka-0`` at 10.250.N.1:
  CoreDNS answers that name with the address and the pod connects straight to the broker's pod listener
  (ig_infra.components.kafka, ``IG_KAFKA_POD_ADDRESS``), which advertises the same name. A ClusterIP in front would
  do for the bootstrap only: the broker then hands out what it advertises, so the name must reach it as it is.
- ``prometheus.monitoring:9090``: like PostgreSQL; burn's SLO queries. It scrapes itself and every pod of its own
  cluster that the charts annotate ``prometheus.io/scrape`` (kubernetes_sd_configs, role pod, against the region's
  API server as ServiceAccount ``kube-system/prometheus``, which may only read pods), at the pod's address and the
  annotated port: /healthz and /metrics are plain HTTP on the services' health port (8085 for the portal, the http
  port for the others; ig_common.service), so no client certificate is involved. Each pod's series carry the
  chart's name as ``job`` (as burn's SLO queries select them: ``job="policy"``), and its namespace, pod and region.
  The host reaches the pod subnet over the node link; the other region's pods it never learns of (another API
  server).
- ``dex.ig-data:5556``: like PostgreSQL; the portal's OIDC issuer, exactly the URL the region values name
  (``global.oidc.issuer``, https://dex.ig-data.svc.cluster.local:5556/dex). ig-infra's Dex component with that
  issuer, HTTPS with a certificate of the suite's development CA naming the Service's names and the node address,
  its own slapd directory (tools/infra/dex/directory.ldif) on loopback, and the portal's redirect URI (its chart's
  public URL + /callback, as the suite's namespace renders it) registered for the portal's client. The portal pods
  trust that CA for the issuer only (the chart's ``oidc.caBundle``, real_charts.py). Both regions' issuers are the
  same URL, each cluster's name leading to its own Dex, with keys of its own: a token of one region's Dex is no
  token at the other's portal.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import yaml
from ig_infra.components.dex import Dex
from ig_infra.components.kafka import POD_ADDRESS_VARIABLE as KAFKA_POD_ADDRESS
from ig_infra.components.kafka import POD_NAME as KAFKA_POD_NAME
from ig_infra.components.kafka import POD_PORT as KAFKA_POD_PORT
from ig_infra.components.kafka import Kafka
from ig_infra.components.postgres import POD_ADDRESSES_VARIABLE, Postgres
from ig_infra.components.prometheus import PrivatePrometheus, prometheus_binary, prometheus_ready
from ig_infra.paths import Paths
from ig_infra.pki import DevCA, IssuedIdentity, ca_directory, is_fresh, spiffe_id
from ig_infra.process import read_pid, terminate

from ig_k8s.cluster import port_offset
from ig_k8s.node import RealNode
from ig_k8s.node_network import NETWORKS
from ig_k8s.node_services import expose_host_service, service_account_kubeconfig
from ig_k8s.suite import REGIONS, in_parallel, region_values

DATA_NAMESPACE = "ig-data"
MONITORING_NAMESPACE = "monitoring"  # the region values' prometheus.monitoring.svc.cluster.local
# Below the kernel's ephemeral range (32768-60999): these start mid-run, when thousands of client sockets (etcd, the
# API servers, the suite) hold ephemeral local ports, and 56432 was once taken by one of them ("could not bind IPv4
# address 127.0.0.1: Address already in use").
POD_PG_PORT = 26432
POD_KAFKA_PORT = 26092
POD_KAFKA_CONTROLLER_PORT = 26093
POD_PROMETHEUS_PORT = 29090
POD_DEX_PORT = 25556
POD_DEX_LDAP_PORT = 25389
POD_DEX_TELEMETRY_PORT = 25558
# region-b's ports: region-a's + 200, as `make up` lays out its region-b (ig_infra.regions.REGION_B_PORT_OFFSET).
REGION_PORT_STEP = 200
# The name the brokers advertise: kafka-0 of the headless Service kafka.ig-data. One broker per region.
KAFKA_BOOTSTRAP = f"{KAFKA_POD_NAME}:{KAFKA_POD_PORT}"


# Both regions' components are made in parallel threads: without the lock one thread's restore of the environment
# let the other's PostgreSQL read the default port, 55432, `make up`'s own (seen; refused only because it was busy).
_ENVIRONMENT_LOCK = threading.Lock()


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    """ig-infra's components read their ports and addresses from the environment when made: one at a time."""
    with _ENVIRONMENT_LOCK:
        saved = {key: os.environ.get(key) for key in values}
        os.environ.update(values)
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def region_port(base: int, region: str) -> int:
    return base + port_offset() + REGIONS.index(region) * REGION_PORT_STEP


def infra_paths(paths: Paths, region: str) -> Paths:
    return Paths(cache=paths.cache, run=paths.component_dir("k8s") / "pod-infra" / region)


def pod_postgres(paths: Paths, region: str) -> Postgres:
    """The region's PostgreSQL: loopback (the tests, the admin) and the region's node address, nothing else."""
    with _environment(IG_PG_PORT=str(region_port(POD_PG_PORT, region)),
                      **{POD_ADDRESSES_VARIABLE: NETWORKS[region].host_address}):
        return Postgres(infra_paths(paths, region))


def pod_kafka(paths: Paths, region: str) -> Kafka:
    """The region's broker: its client listener on loopback (the tests, ACLs and topics), its pods' listener on the
    region's node address."""
    with _environment(IG_KAFKA_HOST="127.0.0.1", IG_KAFKA_PORT=str(region_port(POD_KAFKA_PORT, region)),
                      IG_KAFKA_CONTROLLER_PORT=str(region_port(POD_KAFKA_CONTROLLER_PORT, region)),
                      **{KAFKA_POD_ADDRESS: NETWORKS[region].host_address}):
        return Kafka(infra_paths(paths, region))


def prometheus_kubeconfig(paths: Paths, region: str) -> Path:
    """Where the region's Prometheus finds its API server credentials (ServiceAccount kube-system/prometheus)."""
    return Path(infra_paths(paths, region).run) / "prometheus-kubeconfig.json"


def pod_prometheus(paths: Paths, region: str) -> PrivatePrometheus:
    """The region's Prometheus, on the region's node address only (nothing on the host needs it elsewhere): itself,
    and every pod of its own cluster that asks to be scraped (the charts' ``prometheus.io/*`` annotations), found
    through the region's API server and scraped at the pod's address, which the host reaches over the node link."""
    address, port = NETWORKS[region].host_address, region_port(POD_PROMETHEUS_PORT, region)
    config = {
        "global": {"scrape_interval": "15s"},
        "scrape_configs": [
            {"job_name": "prometheus", "static_configs": [{"targets": [f"{address}:{port}"]}]},
            {"job_name": "pods",
             "kubernetes_sd_configs": [{"role": "pod",
                                        "kubeconfig_file": str(prometheus_kubeconfig(paths, region))}],
             "relabel_configs": [
                 {"source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"], "regex": "true",
                  "action": "keep"},
                 {"source_labels": ["__meta_kubernetes_pod_phase"], "regex": "Running", "action": "keep"},
                 {"source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_path"], "regex": "(.+)",
                  "target_label": "__metrics_path__"},
                 # The annotated port at the pod's address: the pod's container ports' targets, rewritten to the
                 # same address and labels, are one target.
                 {"source_labels": ["__meta_kubernetes_pod_ip", "__meta_kubernetes_pod_annotation_prometheus_io_port"],
                  "regex": "(.+);([0-9]+)", "replacement": "$1:$2", "target_label": "__address__"},
                 {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
                 {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
                 # job is the chart's name (policy, evidence, ...), as in the SLOs burn queries (job="policy").
                 {"source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_name"], "target_label": "job"},
                 {"target_label": "region", "replacement": region}]}]}
    return PrivatePrometheus(paths.cache, infra_paths(paths, region).run / "prometheus",
                             yaml.safe_dump(config, sort_keys=False), port, host=address)


def region_issuer(region: str) -> str:
    """The OIDC issuer the region's values give the portal (``global.oidc.issuer``): Dex must name exactly it."""
    values = yaml.safe_load(region_values(region).read_text(encoding="utf-8"))
    return str(values["global"]["oidc"]["issuer"])


def issuer_service(issuer: str) -> tuple[str, str, int]:
    """(name, namespace, port) of the Service an issuer URL ``https://<name>.<namespace>.svc...:<port>/...`` names."""
    parts = urlsplit(issuer)
    name, namespace, *_ = (parts.hostname or "").split(".")
    return name, namespace, parts.port or 443


def pod_dex(paths: Paths, region: str, redirect_uris: tuple[str, ...] = ()) -> Dex:
    """The region's Dex: HTTPS on the region's node address with the region values' issuer, its directory on
    loopback, ``redirect_uris`` registered for the portal (``ensure_dex_certificate`` issues its certificate)."""
    run, issuer = infra_paths(paths, region), region_issuer(region)
    name, namespace, _ = issuer_service(issuer)
    tls = IssuedIdentity(name, run.component_dir("dex") / "tls", spiffe_id(name, namespace=namespace))
    return Dex(run, host=NETWORKS[region].host_address, port=region_port(POD_DEX_PORT, region),
               ldap_port=region_port(POD_DEX_LDAP_PORT, region),
               telemetry_port=region_port(POD_DEX_TELEMETRY_PORT, region), issuer=issuer, tls=tls,
               redirect_uris=redirect_uris)


def ensure_dex_certificate(paths: Paths, dex: Dex) -> bool:
    """Dex's certificate from the suite's CA, naming the issuer's Service (every form a pod may dial) and the node
    address (ig-infra's health check, the tests); issued again when old or of another CA. True when issued."""
    assert dex.tls is not None
    ca = DevCA.load_or_create(ca_directory(paths.cache))
    if is_fresh(dex.tls, ca.cert_pem):
        return False
    name, namespace, _ = issuer_service(dex.issuer)
    host = urlsplit(dex.issuer).hostname or ""
    names = tuple(dict.fromkeys((name, f"{name}.{namespace}", f"{name}.{namespace}.svc", host)))
    ca.issue(name, dex.tls.directory, namespace=namespace, dns_names=names, ip_addresses=(dex.host,))
    return True


def _start_dex(paths: Paths, dex: Dex) -> None:
    dex.install()
    if ensure_dex_certificate(paths, dex):
        dex.stop()  # Dex reads its certificate once: a running one would keep serving the old
    dex.start()


PROMETHEUS_POD_READER = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]


def _start_prometheus(paths: Paths, node: RealNode, prometheus: PrivatePrometheus) -> None:
    """Its own ServiceAccount's kubeconfig (pods: get, list, watch; nothing else), then start it, or have a running
    one load today's configuration and credentials."""
    service_account_kubeconfig(node, "prometheus", "ig:prometheus", prometheus_kubeconfig(paths, node.region),
                               PROMETHEUS_POD_READER)
    if read_pid(prometheus.pid_file) is not None and prometheus_ready(prometheus.host, prometheus.port):
        prometheus.reload()
        return
    prometheus.start()


@dataclass(frozen=True)
class RegionInfra:
    region: str
    postgres: Postgres
    kafka: Kafka
    prometheus: PrivatePrometheus
    dex: Dex


def start_region_infrastructure(paths: Paths, node: RealNode, redirect_uris: tuple[str, ...] = ()) -> RegionInfra:
    """Start the region's PostgreSQL, broker, Prometheus and Dex (the node must be up: they bind its host address),
    create the suite's topics, and name them in the region's cluster; ``redirect_uris``: the portal's, for Dex."""
    from ig_common.events.topics import ALL_TOPICS

    infra = RegionInfra(node.region, pod_postgres(paths, node.region), pod_kafka(paths, node.region),
                        pod_prometheus(paths, node.region), pod_dex(paths, node.region, redirect_uris))
    for component in (infra.postgres, infra.kafka):
        component.install()
        component.start()
    infra.kafka.create_topics(list(ALL_TOPICS))
    _start_prometheus(paths, node, infra.prometheus)
    _start_dex(paths, infra.dex)
    expose_host_service(node, DATA_NAMESPACE, "postgresql",
                        [{"name": "postgresql", "port": 5432, "targetPort": infra.postgres.port}])
    expose_host_service(node, DATA_NAMESPACE, "kafka",
                        [{"name": "kafka", "port": KAFKA_POD_PORT, "targetPort": KAFKA_POD_PORT}],
                        hostname=KAFKA_POD_NAME.split(".", 1)[0])
    expose_host_service(node, MONITORING_NAMESPACE, "prometheus",
                        [{"name": "http", "port": 9090, "targetPort": infra.prometheus.port}])
    dex_name, dex_namespace, dex_port = issuer_service(infra.dex.issuer)
    expose_host_service(node, dex_namespace, dex_name,
                        [{"name": "https", "port": dex_port, "targetPort": infra.dex.port}])
    return infra


def start_pod_infrastructure(paths: Paths, nodes: list[RealNode],
                             redirect_uris: dict[str, tuple[str, ...]] | None = None) -> dict[str, RegionInfra]:
    """Every region's at once (a broker's start is mostly the JVM's); ``redirect_uris``: each region's portal's."""
    install_pod_infrastructure(paths)
    uris = redirect_uris or {}
    return in_parallel({node.region: partial(start_region_infrastructure, paths, node, uris.get(node.region, ()))
                        for node in nodes})


def install_pod_infrastructure(paths: Paths) -> None:
    """What every region's components need, installed or built once, before the regions start in parallel: on a
    fresh machine (`make k8s-up` before anything else) two threads would otherwise both build Prometheus and Dex
    into the same cache path and fetch Kafka's jars into the same directory. Each step is a no-op once done."""
    region = REGIONS[0]
    for component in (pod_postgres(paths, region), pod_kafka(paths, region), pod_dex(paths, region)):
        component.install()
    prometheus_binary(paths.cache)


def running_regions(paths: Paths) -> list[str]:
    return [region for region in REGIONS if pod_postgres(paths, region).running() or pod_kafka(paths, region).running()
            or read_pid(pod_prometheus(paths, region).pid_file) is not None or pod_dex(paths, region).running()]


def stop_region_infrastructure(paths: Paths, region: str) -> list[str]:
    stopped = []
    if terminate(pod_prometheus(paths, region).pid_file):
        stopped.append(f"{region} pod infrastructure prometheus")
    if pod_dex(paths, region).stop():
        stopped.append(f"{region} pod infrastructure dex and its directory")
    for component in (pod_kafka(paths, region), pod_postgres(paths, region)):
        if component.stop():
            stopped.append(f"{region} pod infrastructure {component.name}")
    return stopped


def stop_legacy_postgres(paths: Paths) -> bool:
    """The one PostgreSQL both regions' pods shared before each had its own (run dir k8s/pod-infra, port 26432): a
    run of then may have left it running, on the port region-a's takes now."""
    with _environment(IG_PG_PORT=str(POD_PG_PORT + port_offset())):
        return Postgres(Paths(cache=paths.cache, run=paths.component_dir("k8s") / "pod-infra")).stop()
