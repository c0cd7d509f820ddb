"""Every chart, both regions: helm lint, helm template, kubeconform (Kubernetes 1.37 schemas, offline), our Rego."""

from __future__ import annotations

import hashlib
import importlib
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from ig_infra.go_tools import tool_path
from ig_infra.paths import REPO_ROOT, Paths
from ig_infra.process import InfraError
from ig_k8s.helm import Helm
from ig_k8s.suite import CHARTS_DIR, REGIONS, SERVICES
from ig_k8s.validate import kubeconform, kubeconform_errors, policy_violations
from pydantic_settings import BaseSettings

Render = Callable[..., list[dict[str, Any]]]
CHART_REGIONS = [(service.name, region) for service in SERVICES for region in REGIONS]


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def database_secret(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The chart's DSN Secret (the portal also renders its link key's Secret)."""
    [secret] = [s for s in by_kind(objects, "Secret") if s["metadata"]["name"].endswith("-database")]
    return secret


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, found {[o['metadata']['name'] for o in found]}"
    return found[0]


def main_container(objects: list[dict[str, Any]], chart: str) -> dict[str, Any]:
    containers = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == chart)


def settings(objects: list[dict[str, Any]]) -> dict[str, str]:
    maps = [o for o in by_kind(objects, "ConfigMap") if o["metadata"]["name"].endswith("-settings")]
    assert len(maps) == 1
    data: dict[str, str] = maps[0]["data"]
    return data


@pytest.mark.parametrize(("chart", "region"), CHART_REGIONS)
def test_chart_lints_strictly(helm: Helm, chart: str, region: str) -> None:
    output = helm.lint(CHARTS_DIR / chart, region)
    assert "0 chart(s) failed" in output


@pytest.mark.parametrize(("chart", "region"), CHART_REGIONS)
def test_rendered_manifests_match_the_kubernetes_schemas(render: Render, chart: str, region: str) -> None:
    import yaml

    objects = render(chart, region)
    report = kubeconform(yaml.safe_dump_all(objects))
    assert kubeconform_errors(report) == []
    assert report["exit_code"] == 0
    assert report["summary"]["valid"] == len(objects) >= 7


@pytest.mark.parametrize(("chart", "region"), CHART_REGIONS)
def test_rendered_manifests_pass_the_workload_policy(render: Render, chart: str, region: str) -> None:
    assert policy_violations(render(chart, region)) == []


@pytest.mark.parametrize(("chart", "region"), CHART_REGIONS)
def test_every_chart_carries_the_operational_objects(render: Render, chart: str, region: str) -> None:
    objects = render(chart, region)
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "Service", "ServiceAccount", "PodDisruptionBudget", "HorizontalPodAutoscaler",
            "NetworkPolicy", "ConfigMap", "Secret"} <= kinds
    container = main_container(objects, chart)
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    service = next(s for s in SERVICES if s.name == chart)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports.get("http") == service.http_port and ports.get("grpc") == service.grpc_port
    assert ports.get("health") == service.health_port
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": service.health_port_name}
    assert container["image"] == f"ig/{chart}:1.2.1"
    database = next(e for e in container["env"] if e["name"] == "IG_DATABASE_URL")
    assert database["valueFrom"]["secretKeyRef"]["name"] == database_secret(objects)["metadata"]["name"]


@pytest.mark.parametrize(("chart", "region"), CHART_REGIONS)
def test_region_values_reach_settings_and_scheduling(render: Render, chart: str, region: str) -> None:
    objects = render(chart, region)
    values = settings(objects)
    assert values["IG_REGION"] == region
    assert values["IG_HTTP_HOST"] == "0.0.0.0"
    assert "kafka-0.kafka" in values["IG_KAFKA_BOOTSTRAP"]
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"topology.kubernetes.io/region": region}
    assert region in database_secret(objects)["stringData"]["database-url"]


def settings_read_by(module: str) -> set[str]:
    """The IG_* variables the service started as ``python -m module`` reads: the fields of every settings class of
    its package's ``settings`` module (pydantic-settings, prefix IG_)."""
    package = importlib.import_module(module.rsplit(".", 1)[0] + ".settings")
    classes = [c for c in vars(package).values() if isinstance(c, type) and issubclass(c, BaseSettings)]
    return {f"IG_{name.upper()}" for cls in classes for name in cls.model_fields}


@pytest.mark.parametrize(("chart", "region"), CHART_REGIONS)
def test_every_setting_a_chart_renders_is_read_by_its_service(render: Render, chart: str, region: str) -> None:
    """With the region's values, every IG_* variable a pod gets (its ConfigMap and its env) is a setting of the
    service: a dead setting (the zone IG_RESIDENCY and IG_PEER_REGION were, read by nothing) tells an operator
    something the service does not do."""
    service = next(s for s in SERVICES if s.name == chart)
    objects = render(chart, region)
    given = set(settings(objects)) | {e["name"] for e in main_container(objects, chart).get("env", [])}
    unread = sorted(name for name in given if name.startswith("IG_") and name not in settings_read_by(service.module))
    assert unread == [], f"{chart} ({region}) sets {unread}, which {service.module} does not read"


@pytest.mark.parametrize(("chart", "expected"), [("burn", True), ("migration", True), ("policy", False),
                                                  ("evidence", False), ("audit-portal", False)])
def test_only_the_services_that_query_prometheus_are_given_its_address(render: Render, chart: str,
                                                                      expected: bool) -> None:
    values = settings(render(chart, "region-a"))
    assert ("IG_PROMETHEUS_URL" in values) is expected
    if expected:
        assert values["IG_PROMETHEUS_URL"] == "http://prometheus.monitoring.svc.cluster.local:9090"


@pytest.mark.parametrize("chart", [s.name for s in SERVICES])
def test_only_the_migration_orchestrator_may_touch_the_kubernetes_api(render: Render, chart: str) -> None:
    """And it only with its Service-selector switch on (the suite's release set turns it on)."""
    sets = ("kubernetesSwitch.enabled=true",) if chart == "migration" else ()
    objects = render(chart, "region-a", sets)
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    if chart != "migration":
        assert by_kind(objects, "Role") == [] and by_kind(objects, "RoleBinding") == []
        assert pod["automountServiceAccountToken"] is False
        return
    role = one(objects, "Role")
    granted = {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
               for resource in rule["resources"] for verb in rule["verbs"]}
    assert ("", "services", "patch") in granted and ("apps", "deployments", "patch") in granted
    assert {resource for _, resource, _ in granted} == {"services", "deployments"}
    assert {verb for _, _, verb in granted} <= {"get", "list", "watch", "patch"}
    binding = one(objects, "RoleBinding")
    assert binding["subjects"][0]["name"] == pod["serviceAccountName"]
    assert pod["automountServiceAccountToken"] is True


def test_policy_chart_runs_opa_as_a_localhost_only_sidecar_with_the_repository_policies(render: Render) -> None:
    objects = render("policy", "region-a")
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    opa = next(c for c in pod["containers"] if c["name"] == "opa")
    assert "--addr=127.0.0.1:8181" in opa["args"]
    assert "--ignore=..*" in opa["args"]  # a ConfigMap volume's "..data" copies would load every rule thrice
    assert not any(p["containerPort"] == 8181 for p in opa["ports"])
    assert opa["readinessProbe"]["httpGet"]["path"] == "/health"
    assert opa["image"] == "openpolicyagent/opa:1.22.3-static"
    assert settings(objects)["IG_OPA_URL"] == "http://127.0.0.1:8181"
    rego = next(o for o in by_kind(objects, "ConfigMap") if o["metadata"]["name"].endswith("-rego"))
    volume = next(v for v in pod["volumes"] if v["name"] == "rego")
    mounted = {item["path"]: rego["data"][item["key"]] for item in volume["configMap"]["items"]}
    source = REPO_ROOT / "policies" / "rego"
    expected = {p.relative_to(source).as_posix(): p.read_text() for p in source.rglob("*")
                if p.suffix in (".rego", ".json") and not p.name.endswith("_test.rego")}
    assert expected and mounted == expected


def test_policy_chart_serves_authzen_on_its_own_https_port_and_probes_the_plain_one(render: Render) -> None:
    objects = render("policy", "region-a")
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    service = next(c for c in pod["containers"] if c["name"] == "policy")
    assert {p["name"]: p["containerPort"] for p in service["ports"]} == {"http": 8081, "grpc": 50051, "api": 8091}
    assert settings(objects)["IG_AUTHZEN_PORT"] == "8091"
    assert {"name": "api", "port": 8091, "targetPort": "api", "protocol": "TCP", "appProtocol": "https"} in \
        one(objects, "Service")["spec"]["ports"]
    ingress = one(objects, "NetworkPolicy")["spec"]["ingress"]
    assert any({"port": "api", "protocol": "TCP"} in rule.get("ports", []) for rule in ingress)
    assert all(probe["httpGet"]["port"] == "http" for probe in
               (service[k] for k in ("livenessProbe", "readinessProbe", "startupProbe") if k in service))


def test_burn_chart_keeps_health_api_and_public_listeners_apart(render: Render) -> None:
    objects = render("burn", "region-a")
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    service = next(c for c in pod["containers"] if c["name"] == "burn")
    assert {p["name"]: p["containerPort"] for p in service["ports"]} == \
        {"http": 8083, "grpc": 50053, "api": 8093, "public": 8013}
    assert (settings(objects)["IG_API_PORT"], settings(objects)["IG_PUBLIC_PORT"]) == ("8093", "8013")
    ports = one(objects, "Service")["spec"]["ports"]
    assert {"name": "api", "port": 8093, "targetPort": "api", "protocol": "TCP", "appProtocol": "https"} in ports
    assert {"name": "public", "port": 8013, "targetPort": "public", "protocol": "TCP", "appProtocol": "http"} in ports
    ingress = one(objects, "NetworkPolicy")["spec"]["ingress"]
    assert any({"port": "public", "protocol": "TCP"} in rule.get("ports", []) for rule in ingress)
    assert all(probe["httpGet"]["port"] == "http" for probe in
               (service[k] for k in ("livenessProbe", "readinessProbe", "startupProbe") if k in service))


def test_evidence_chart_serves_the_ledger_tiles_on_a_public_listener(render: Render) -> None:
    objects = render("evidence", "region-a")
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    service = next(c for c in pod["containers"] if c["name"] == "evidence")
    assert {p["name"]: p["containerPort"] for p in service["ports"]} == {"http": 8082, "grpc": 50052, "public": 8012}
    assert settings(objects)["IG_PUBLIC_PORT"] == "8012"
    ports = one(objects, "Service")["spec"]["ports"]
    assert {"name": "public", "port": 8012, "targetPort": "public", "protocol": "TCP", "appProtocol": "http"} in ports
    ingress = one(objects, "NetworkPolicy")["spec"]["ingress"]
    assert any({"port": "public", "protocol": "TCP"} in rule.get("ports", []) for rule in ingress)


@pytest.mark.parametrize("bundle", [False, True], ids=["configmap", "bundle"])
def test_policy_chart_locks_the_opa_api_with_a_per_pod_token(render: Render, bundle: bool) -> None:
    extra = ("opa.bundle.enabled=true", "opa.bundle.url=https://bundles.example") if bundle else ()
    objects = render("policy", "region-a", extra)
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    opa = next(c for c in pod["containers"] if c["name"] == "opa")
    assert {"--authentication=token", "--authorization=basic"} <= set(opa["args"])
    assert opa["args"][-2:] == ["/opa-system", "system.opa_token:/run/opa-token/opa-token-digest.json"]
    # The token: made by an init container into a memory-backed emptyDir that only this pod mounts.
    [init] = pod["initContainers"]
    assert init["command"][:2] == ["python", "-c"] and "secrets.token_urlsafe(32)" in init["command"][2]
    token_volume = next(v for v in pod["volumes"] if v["name"] == "opa-token")
    assert token_volume["emptyDir"]["medium"] == "Memory"
    mounts = {c["name"]: {m["name"]: m for m in c["volumeMounts"]} for c in [init, *pod["containers"]]}
    assert mounts["opa"]["opa-token"]["readOnly"] and mounts["policy"]["opa-token"]["readOnly"]
    assert mounts["opa-token"]["opa-token"]["mountPath"] == "/run/opa-token"
    assert settings(objects)["IG_OPA_TOKEN_FILE"] == "/run/opa-token/opa-token"
    # The guard policy, as tested (its tests left out), from a ConfigMap of its own.
    guard = next(o for o in by_kind(objects, "ConfigMap") if o["metadata"]["name"].endswith("-opa-system"))
    assert guard["data"] == {"authz.rego": (REPO_ROOT / "policies" / "opa-system" / "authz.rego").read_text()}
    guard_volume = next(v for v in pod["volumes"] if v["name"] == "opa-system")
    assert guard_volume["configMap"]["name"] == guard["metadata"]["name"]
    assert mounts["opa"]["opa-system"]["mountPath"] == "/opa-system"


@pytest.mark.parametrize("secret", ["", "my-log-keys"])
def test_policy_chart_mounts_the_decision_log_pepper_and_public_key_from_a_secret(render: Render, secret: str) -> None:
    objects = render("policy", "region-a", (f"decisionLog.secretName={secret}",) if secret else ())
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "decision-log-keys")
    assert volume["secret"]["secretName"] == (secret or "policy-decision-log")
    assert volume["secret"]["defaultMode"] == 0o440
    assert {item["key"] for item in volume["secret"]["items"]} == {"pepper", "input-key.pub"}, "never the private key"
    policy = next(c for c in pod["containers"] if c["name"] == "policy")
    assert {"name": "decision-log-keys", "mountPath": "/etc/ig/decision-log", "readOnly": True} in \
        policy["volumeMounts"]
    assert settings(objects)["IG_DECISION_LOG_PEPPER_FILE"] == "/etc/ig/decision-log/pepper"
    assert settings(objects)["IG_DECISION_LOG_INPUT_KEY_FILE"] == "/etc/ig/decision-log/input-key.pub"


def test_policy_chart_can_load_an_opa_bundle_instead(render: Render) -> None:
    objects = render("policy", "region-a", ("opa.bundle.enabled=true", "opa.bundle.url=https://bundles.example"))
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    opa = next(c for c in pod["containers"] if c["name"] == "opa")
    assert "--set=services.bundles.url=https://bundles.example" in opa["args"]
    assert opa["readinessProbe"]["httpGet"]["path"] == "/health?bundles"
    assert not [o for o in by_kind(objects, "ConfigMap") if o["metadata"]["name"].endswith("-rego")]


@pytest.mark.parametrize("claim", ["", "policy-wal-0"], ids=["emptydir", "pvc"])
def test_policy_chart_puts_the_decision_log_wal_on_a_volume_of_its_own(render: Render, claim: str) -> None:
    objects = render("policy", "region-a", (f"decisionLogWal.persistentVolumeClaim={claim}",) if claim else ())
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "decision-log-wal")
    if claim:
        assert volume == {"name": "decision-log-wal", "persistentVolumeClaim": {"claimName": claim}}
    else:
        assert volume["emptyDir"]["sizeLimit"] == "1200Mi"
    mount = mount_of(main_container(objects, "policy"), "decision-log-wal")
    assert settings(objects)["IG_DECISION_LOG_WAL_DIR"] == mount["mountPath"] == "/var/lib/ig-policy/wal"
    assert not mount.get("readOnly")
    # The cap stays below the volume (one 16 MB segment may exceed it).
    assert int(settings(objects)["IG_DECISION_LOG_WAL_MAX_MB"]) + 16 < 1200


def test_burn_chart_ships_every_dashboard_in_services_burn_dashboards(render: Render) -> None:
    dashboards = sorted((REPO_ROOT / "services" / "burn" / "dashboards").glob("*.json"))
    shipped = [o for o in by_kind(render("burn", "region-a"), "ConfigMap")
               if o["metadata"]["name"].endswith("-dashboards")]
    if not dashboards:  # the burn service has not added its dashboards yet: nothing to ship, nothing shipped
        assert shipped == []
        return
    assert shipped[0]["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert {name: json.loads(body) for name, body in shipped[0]["data"].items()} == {
        p.name: json.loads(p.read_text()) for p in dashboards}


def test_service_monitor_is_optional(render: Render) -> None:
    assert by_kind(render("evidence", "region-a"), "ServiceMonitor") == []
    monitor = one(render("evidence", "region-a", ("metrics.serviceMonitor.enabled=true",)), "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


@pytest.mark.parametrize(("sets", "message"), [
    (("image.tag=latest",), "latest"),
    (("global.region=",), "region is required"),
    (("global.database.url=",), "database.url"),
    (("global.database.url=postgresql://ig@db:5432/ig",), "database.url: leave the user out"),
    (("global.database.url=postgresql://db:5432/ig?sslmode=disable",), "database.url: leave out TLS"),
    (("settings.NOT_IG=1",), "must be an IG_"),
    (("settings.IG_GRPC_REFLECTION=true",), "IG_GRPC_REFLECTION is not settable"),
    (("settings.IG_TLS_DIR=/elsewhere",), "IG_TLS_DIR is not settable"),
    (("global.settings.IG_AUTHZ_TABLE=/tmp/allow-all.yaml",), "IG_AUTHZ_TABLE is not settable"),
    (("serviceAccount.name=intruder",), 'service account "intruder" is not an identity of the authorization table'),
])
def test_bad_values_are_refused_with_a_clear_message(helm: Helm, sets: tuple[str, ...], message: str) -> None:
    with pytest.raises(InfraError, match=message):
        helm.template(CHARTS_DIR / "evidence", "region-a", release="evidence", sets=sets)


@pytest.mark.parametrize(("chart", "region"), CHART_REGIONS)
def test_each_service_connects_as_its_own_roles_over_verified_tls(render: Render, chart: str, region: str) -> None:
    from ig_infra.components.postgres import SERVICE_ROLES

    objects = render(chart, region)
    secret = database_secret(objects)
    tls_dir = next(e["value"] for e in main_container(objects, chart)["env"] if e["name"] == "IG_TLS_DIR")
    roles = SERVICE_ROLES[chart]
    for key, role in (("database-url", roles.runtime), ("migration-database-url", roles.migrator)):
        dsn = urlsplit(secret["stringData"][key])
        query = parse_qs(dsn.query)
        assert dsn.username == role and dsn.password is None, key
        assert query["sslmode"] == ["verify-full"], key
        assert (query["sslrootcert"], query["sslcert"], query["sslkey"]) == \
            ([f"{tls_dir}/ca.crt"], [f"{tls_dir}/tls.crt"], [f"{tls_dir}/tls.key"]), key
    env = {e["name"]: e.get("valueFrom", {}).get("secretKeyRef") for e in main_container(objects, chart)["env"]}
    assert env["IG_DATABASE_URL"]["key"] == "database-url"
    assert env["IG_MIGRATION_DATABASE_URL"]["key"] == "migration-database-url"


def test_existing_database_secret_replaces_the_chart_secret(render: Render) -> None:
    objects = render("evidence", "region-b", ("database.existingSecret=pg-url", "database.secretKey=url"))
    assert by_kind(objects, "Secret") == []
    env = next(e for e in main_container(objects, "evidence")["env"] if e["name"] == "IG_DATABASE_URL")
    assert env["valueFrom"]["secretKeyRef"] == {"name": "pg-url", "key": "url"}


def test_the_policy_catches_an_unsafe_override(render: Render) -> None:
    objects = render("burn", "region-a", ("securityContext.allowPrivilegeEscalation=true",
                                          "resources.limits=null"))
    violations = policy_violations(objects)
    assert any("allowPrivilegeEscalation" in v for v in violations)
    assert any("limits.cpu" in v for v in violations)


def test_kubeconform_rejects_what_the_schema_forbids() -> None:
    bad = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
           "spec": {"replicas": "two", "selector": {}, "template": {"spec": {"containers": [{"name": "x"}]}},
                    "unknownField": True}}
    import yaml

    report = kubeconform(yaml.safe_dump(bad))
    assert report["exit_code"] != 0
    assert kubeconform_errors(report)


def test_opa_loads_the_policy_volume_as_the_sidecar_would_see_it(render: Render, tmp_path: Path) -> None:
    """Lays the rego ConfigMap out exactly as its volume items do, then has the real OPA compile it and read data."""
    objects = render("policy", "region-a")
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    rego = next(o for o in by_kind(objects, "ConfigMap") if o["metadata"]["name"].endswith("-rego"))
    volume = next(v for v in pod["volumes"] if v["name"] == "rego")
    for item in volume["configMap"]["items"]:
        target = tmp_path / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(rego["data"][item["key"]])
    opa = str(tool_path(Paths.from_environment().cache, "opa"))
    checked = subprocess.run([opa, "check", str(tmp_path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    data_files = [item["path"] for item in volume["configMap"]["items"] if item["path"].endswith(".json")]
    evaluated = subprocess.run([opa, "eval", "--format", "json", "-d", str(tmp_path), "data"], capture_output=True,
                               text=True)
    assert evaluated.returncode == 0, evaluated.stderr
    data = json.loads(evaluated.stdout)["result"][0]["expressions"][0]["value"]
    for path in data_files:  # data.json lands at the document path of its directory
        node = data
        for part in Path(path).parent.parts:
            node = node[part]
        expected = json.loads((tmp_path / path).read_text())
        assert expected and all(node[key] == value for key, value in expected.items())


# ---- workload identity: the certificate Secret, the authorization table, probes that need no certificate ----

AUTHZ_TABLE = REPO_ROOT / "policies" / "authz" / "grpc-methods.yaml"
PROBES = ("startupProbe", "livenessProbe", "readinessProbe")


def pod_spec(objects: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = one(objects, "Deployment")["spec"]["template"]["spec"]
    return spec


def env_value(container: dict[str, Any], name: str) -> str:
    values = [e["value"] for e in container["env"] if e["name"] == name]
    assert len(values) == 1, f"{name} set {len(values)} times in {container['name']}"
    return str(values[0])


def mount_of(container: dict[str, Any], volume: str) -> dict[str, Any]:
    mounts = [m for m in container["volumeMounts"] if m["name"] == volume]
    assert len(mounts) == 1, f"volume {volume} mounted {len(mounts)} times"
    return mounts[0]


@pytest.mark.parametrize("chart", [s.name for s in SERVICES])
def test_rendering_without_a_tls_secret_name_fails_naming_it(helm: Helm, chart: str) -> None:
    with pytest.raises(InfraError, match=r"tls\.secretName is required"):
        helm.template(CHARTS_DIR / chart, "region-a", release=chart, sets=("global.tls.secretNameSuffix=",))


@pytest.mark.parametrize(("chart", "region"), CHART_REGIONS)
def test_every_deployment_mounts_its_certificate_secret_read_only_as_ig_tls_dir(
        render: Render, chart: str, region: str) -> None:
    objects = render(chart, region)
    pod = pod_spec(objects)
    container = main_container(objects, chart)
    volume = next(v for v in pod["volumes"] if v["name"] == "tls")
    assert volume["secret"]["secretName"] == f"{chart}-tls"  # the region values' <fullname>-tls
    assert volume["secret"]["defaultMode"] == 0o440
    mount = mount_of(container, "tls")
    assert mount["readOnly"] is True
    assert "subPath" not in mount, "a subPath mount never sees the renewed certificate"
    assert env_value(container, "IG_TLS_DIR") == mount["mountPath"] == "/var/run/ig/tls"


GRPC_CHART_REGIONS = [(s.name, region) for s in SERVICES if s.grpc_port for region in REGIONS]
GRPC_CHARTS = [s.name for s in SERVICES if s.grpc_port]


@pytest.mark.parametrize(("chart", "region"), GRPC_CHART_REGIONS)
def test_every_grpc_server_mounts_the_authorization_table_as_ig_authz_table(
        render: Render, chart: str, region: str) -> None:
    objects = render(chart, region)
    pod = pod_spec(objects)
    container = main_container(objects, chart)
    volume = next(v for v in pod["volumes"] if v["name"] == "authz")
    table = next(o for o in by_kind(objects, "ConfigMap") if o["metadata"]["name"] == volume["configMap"]["name"])
    mount = mount_of(container, "authz")
    assert mount["readOnly"] is True and "subPath" not in mount
    assert env_value(container, "IG_AUTHZ_TABLE") == f"{mount['mountPath']}/grpc-methods.yaml"
    assert list(table["data"]) == ["grpc-methods.yaml"]


def test_the_portal_serves_no_grpc_and_gets_no_authorization_table(render: Render) -> None:
    objects = render("audit-portal", "region-a")
    assert not any(v["name"] == "authz" for v in pod_spec(objects)["volumes"])
    assert "IG_AUTHZ_TABLE" not in {e["name"] for e in main_container(objects, "audit-portal")["env"]}
    assert not any(o["metadata"]["name"] == "audit-portal-authz" for o in by_kind(objects, "ConfigMap"))


def test_an_explicit_tls_secret_name_wins(render: Render) -> None:
    objects = render("burn", "region-b", ("tls.secretName=burn-workload-cert", "tls.mountPath=/certs"))
    volume = next(v for v in pod_spec(objects)["volumes"] if v["name"] == "tls")
    assert volume["secret"]["secretName"] == "burn-workload-cert"
    assert env_value(main_container(objects, "burn"), "IG_TLS_DIR") == "/certs"


@pytest.mark.parametrize("chart", GRPC_CHARTS)
def test_the_authorization_table_config_map_is_the_repository_file(render: Render, chart: str) -> None:
    objects = render(chart, "region-a")
    table = next(o for o in by_kind(objects, "ConfigMap") if o["metadata"]["name"] == f"{chart}-authz")
    assert table["data"]["grpc-methods.yaml"] == AUTHZ_TABLE.read_text()
    # the pods roll when the table changes: it is read at start-up
    annotations = one(objects, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["checksum/authz-table"] == hashlib.sha256(AUTHZ_TABLE.read_bytes()).hexdigest()


@pytest.mark.parametrize("chart", [s.name for s in SERVICES])
def test_each_chart_ships_the_repository_table_through_a_link_not_a_copy(chart: str) -> None:
    link = CHARTS_DIR / chart / "authz"
    assert link.is_symlink(), "a copy would drift from policies/authz"
    assert (link / "grpc-methods.yaml").samefile(AUTHZ_TABLE)


def test_the_mounted_table_loads_as_the_service_loads_it(render: Render, tmp_path: Path) -> None:
    from ig_common.authz import AuthorizationTable

    table = next(o for o in by_kind(render("evidence", "region-a"), "ConfigMap")
                 if o["metadata"]["name"] == "evidence-authz")
    (tmp_path / "grpc-methods.yaml").write_text(table["data"]["grpc-methods.yaml"])
    loaded = AuthorizationTable.load(tmp_path / "grpc-methods.yaml")
    assert loaded.may_call("/ig.evidence.v1.EvidenceService/ListReleases", "audit-portal") is None
    assert loaded.may_call("/ig.evidence.v1.EvidenceService/ListReleases", "burn") is not None


@pytest.mark.parametrize(("chart", "region"), CHART_REGIONS)
def test_no_probe_is_a_grpc_probe(render: Render, chart: str, region: str) -> None:
    pod = pod_spec(render(chart, region))
    probes = {(c["name"], kind): c[kind] for c in pod["containers"] for kind in PROBES if kind in c}
    assert [key for key, probe in probes.items() if "grpc" in probe] == []
    health = next(s for s in SERVICES if s.name == chart).health_port_name
    for kind in PROBES:
        assert probes[(chart, kind)]["httpGet"] == {"path": "/healthz", "port": health}


@pytest.mark.parametrize("chart", [s.name for s in SERVICES])
def test_grpc_reflection_stays_off(render: Render, chart: str) -> None:
    objects = render(chart, "region-a")
    assert "IG_GRPC_REFLECTION" not in settings(objects)
    assert all(e["name"] != "IG_GRPC_REFLECTION" for e in main_container(objects, chart)["env"])


def test_no_certificate_object_without_an_issuer(render: Render) -> None:
    assert by_kind(render("evidence", "region-a"), "Certificate") == []


@pytest.mark.parametrize("chart", [s.name for s in SERVICES])
def test_with_an_issuer_the_chart_renders_the_cert_manager_certificate(render: Render, chart: str) -> None:
    import yaml

    objects = render(chart, "region-a", ("tls.certManager.issuerRef.name=ig-ca",))
    # the workload's own; a gRPC helm test hook's client certificate is another (test_charts_run.py)
    [certificate] = [c for c in objects if c["kind"] == "Certificate" and c["metadata"]["name"] == chart]
    assert certificate["apiVersion"] == "cert-manager.io/v1"
    assert certificate["spec"] == {
        "secretName": f"{chart}-tls",
        "issuerRef": {"name": "ig-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"},
        "commonName": chart,
        "uris": [f"spiffe://maestro.local/ns/ig/sa/{chart}"],
        "dnsNames": [chart, f"{chart}.ig", f"{chart}.ig.svc", f"{chart}.ig.svc.cluster.local"],
        "privateKey": {"algorithm": "ECDSA", "size": 256, "encoding": "PKCS8", "rotationPolicy": "Always"},
        "duration": "24h",
        "renewBefore": "8h",
        "usages": ["digital signature", "server auth", "client auth"],
    }
    assert pod_spec(objects)["serviceAccountName"] == chart  # the SPIFFE ID names the pod's own account
    report = kubeconform(yaml.safe_dump_all(objects))
    assert kubeconform_errors(report) == [] and report["exit_code"] == 0
    assert policy_violations(objects) == []


def test_the_certificate_follows_namespace_trust_domain_and_extra_names(helm: Helm) -> None:
    from ig_k8s.helm import manifests

    rendered = helm.template(CHARTS_DIR / "evidence", "region-b", release="evidence", namespace="ig-staging",
                             sets=("tls.certManager.issuerRef.name=ig-ca", "tls.certManager.issuerRef.kind=Issuer",
                                   "tls.certManager.trustDomain=example.org",
                                   "tls.certManager.extraDnsNames[0]=evidence.example.org"))
    certificates = {c["metadata"]["name"]: c["spec"] for c in manifests(rendered) if c["kind"] == "Certificate"}
    spec = certificates["evidence"]
    assert spec["uris"] == ["spiffe://example.org/ns/ig-staging/sa/evidence"]
    assert spec["dnsNames"][-2:] == ["evidence.ig-staging.svc.cluster.local", "evidence.example.org"]
    assert spec["issuerRef"]["kind"] == "Issuer"
    # the helm test hook's client certificate follows the same issuer, trust domain and namespace
    hook = certificates["evidence-helm-test"]
    assert hook["uris"] == ["spiffe://example.org/ns/ig-staging/sa/helm-test"] and hook["issuerRef"]["kind"] == "Issuer"


@pytest.mark.parametrize(("chart", "hooks"), [("policy", 1), ("evidence", 1), ("migration", 1), ("burn", 0),
                                             ("audit-portal", 0)])
def test_the_simulated_clusters_get_each_grpc_hooks_client_certificate_from_the_dev_ca(
        render: Render, chart: str, hooks: int, tmp_path: Path) -> None:
    from ig_common.tls import WorkloadCertificate
    from ig_infra.pki import DevCA
    from ig_k8s.releases import WorkloadSecret

    found = WorkloadSecret.hooks_of(render(chart, "region-a"), "ig")
    assert len(found) == hooks
    for secret in found:
        body = secret.body(DevCA.load_or_create(tmp_path / "ca"))
        assert body["metadata"]["name"] == f"{chart}-helm-test-tls"
        mounted = tmp_path / "mounted"
        mounted.mkdir()
        for name, content in body["stringData"].items():
            (mounted / name).write_text(content)
        assert str(WorkloadCertificate(mounted).spiffe_id) == "spiffe://maestro.local/ns/ig/sa/helm-test"


@pytest.mark.parametrize("chart", [s.name for s in SERVICES])
def test_the_simulated_clusters_get_the_secret_each_chart_mounts_from_the_dev_ca(
        render: Render, chart: str, tmp_path: Path) -> None:
    """What `make k8s-up` creates before each install (no cert-manager there): the Secret the rendered Deployment
    mounts, in cert-manager's layout, carrying the SPIFFE ID of the pod's service account and the Service's names."""
    from cryptography import x509
    from ig_common.tls import WorkloadCertificate
    from ig_infra.pki import DevCA
    from ig_k8s.releases import WorkloadSecret

    wanted = WorkloadSecret.of(render(chart, "region-a"), "ig")
    body = wanted.body(DevCA.load_or_create(tmp_path / "ca"))
    assert body["type"] == "kubernetes.io/tls" and body["metadata"]["name"] == f"{chart}-tls"
    mounted = tmp_path / "mounted"
    mounted.mkdir()
    for name, content in body["stringData"].items():
        (mounted / name).write_text(content)
    assert str(WorkloadCertificate(mounted).spiffe_id) == f"spiffe://maestro.local/ns/ig/sa/{chart}"
    cert = x509.load_pem_x509_certificate(body["stringData"]["tls.crt"].encode())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [chart, f"{chart}.ig", f"{chart}.ig.svc",
                                                       f"{chart}.ig.svc.cluster.local"]
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == chart


def test_portal_chart_keeps_probes_and_metrics_off_the_browser_port(render: Render) -> None:
    objects = render("audit-portal", "region-a")
    deployment = one(objects, "Deployment")
    assert settings(objects)["IG_HEALTH_PORT"] == "8085"
    annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
    if "prometheus.io/port" in annotations:
        assert annotations["prometheus.io/port"] == "8085"
    assert {"name": "health", "port": 8085, "targetPort": "health", "protocol": "TCP"} in \
        one(objects, "Service")["spec"]["ports"]


def test_migration_chart_mounts_the_approvers_keys_and_refuses_every_run_without_them(render: Render) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    assert "IG_MIGRATION_APPROVERS" not in settings(render("migration", "region-a"))
    pem = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    objects = render("migration", "region-a", (f"approvers.keys.alice={pem}",))
    assert settings(objects)["IG_MIGRATION_APPROVERS"] == "/etc/ig/migration-approvers"
    approvers = next(o for o in by_kind(objects, "ConfigMap") if o["metadata"]["name"].endswith("-approvers"))
    assert approvers["data"] == {"alice.pub": pem}
    container = main_container(objects, "migration")
    assert {"name": "approvers", "mountPath": "/etc/ig/migration-approvers", "readOnly": True} in \
        container["volumeMounts"]
    volume = next(v for v in pod_spec(objects)["volumes"] if v["name"] == "approvers")
    assert volume["configMap"]["name"] == approvers["metadata"]["name"]


def test_an_approver_name_that_is_not_a_file_name_is_refused(helm: Helm) -> None:
    with pytest.raises(InfraError, match=r"approvers\.keys: \"Alice\" is not an approver name"):
        helm.template(CHARTS_DIR / "migration", "region-a", release="migration", sets=("approvers.keys.Alice=x",))


def test_evidence_chart_mounts_the_checkpoint_key_from_a_secret_of_its_own(render: Render) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from ig_evidence.domain import note

    retired = note.verifier_key("example/ledger", Ed25519PrivateKey.generate().public_key())
    objects = render("evidence", "region-a", (f"ledger.previousVerifierKeys[0]={retired}",))
    assert settings(objects)["IG_LEDGER_KEY_PATH"] == "/etc/ig/ledger/ledger-checkpoint.key"
    assert settings(objects)["IG_LEDGER_PREVIOUS_VERIFIER_KEYS"] == retired
    volume = next(v for v in pod_spec(objects)["volumes"] if v["name"] == "ledger-key")
    assert volume["secret"]["secretName"] == "evidence-ledger-key" and volume["secret"]["defaultMode"] == 0o440
    assert {"name": "ledger-key", "mountPath": "/etc/ig/ledger", "readOnly": True} in \
        main_container(objects, "evidence")["volumeMounts"]
    with pytest.raises(InfraError, match=r"ledger\.previousVerifierKeys: \"not-a-key\" is not a note verifier key"):
        render("evidence", "region-a", ("ledger.previousVerifierKeys[0]=not-a-key",))


def test_evidence_chart_pins_the_trusted_signers_and_refuses_every_registration_without_them(render: Render) -> None:
    """The rendered file is the one the evidence service parses (domain/trusted_signers.py), so a chart that wrote a
    document the service refuses at start-up fails here."""
    import yaml
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from ig_evidence.domain.trusted_signers import parse_trusted_signers

    assert "IG_TRUSTED_SIGNERS_PATH" not in settings(render("evidence", "region-a"))
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    objects = render("evidence", "region-a", ("trust.tenants.alpha[0].name=release key",
                                              f"trust.tenants.alpha[0].publicKey={pem}"))
    assert settings(objects)["IG_TRUSTED_SIGNERS_PATH"] == "/etc/ig/trust/trusted-signers.yaml"
    config = next(o for o in by_kind(objects, "ConfigMap") if o["metadata"]["name"].endswith("-trusted-signers"))
    parsed = parse_trusted_signers(yaml.safe_load(config["data"]["trusted-signers.yaml"]), lambda name: b"")
    assert [(k.name, k.public_key) for k in parsed.of("alpha").keys] == [("release key", key)]
    assert {"name": "trusted-signers", "mountPath": "/etc/ig/trust", "readOnly": True} in \
        main_container(objects, "evidence")["volumeMounts"]
    volume = next(v for v in pod_spec(objects)["volumes"] if v["name"] == "trusted-signers")
    assert volume["configMap"]["name"] == config["metadata"]["name"]


def test_policy_chart_mounts_the_break_glass_approvers_from_a_secret(render: Render, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec
    from ig_policy.breakglass import load_approvers, write_approver_key

    entry = write_approver_key(tmp_path / "carol.key", ec.generate_private_key(ec.SECP256R1()))
    pem = Path(entry["publicKeyPath"]).read_text()
    assert "IG_BREAKGLASS_APPROVERS_PATH" not in settings(render("policy", "region-a")), "none: no grant accepted"
    objects = render("policy", "region-a", (
        "breakGlass.tenants.alpha.maxGrantMinutes=30", "breakGlass.tenants.alpha.approvers[0].name=carol",
        f"breakGlass.tenants.alpha.approvers[0].keyId={entry['keyId']}",
        f"breakGlass.tenants.alpha.approvers[0].publicKey={pem}"))
    assert settings(objects)["IG_BREAKGLASS_APPROVERS_PATH"] == "/etc/ig/breakglass/approvers.yaml"
    secret = next(o for o in by_kind(objects, "Secret") if o["metadata"]["name"].endswith("-breakglass-approvers"))
    (tmp_path / "approvers.yaml").write_text(secret["stringData"]["approvers.yaml"])
    trust = load_approvers(tmp_path / "approvers.yaml")  # what the service will read at start-up
    assert [a.name for a in trust["alpha"].approvers] == ["carol"] and trust["alpha"].max_grant_minutes == 30
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "breakglass-approvers")
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    service = next(c for c in pod["containers"] if c["name"] == "policy")
    mount = next(m for m in service["volumeMounts"] if m["name"] == "breakglass-approvers")
    assert mount["mountPath"] == "/etc/ig/breakglass" and mount["readOnly"]
    assert policy_violations(objects) == []


def test_policy_chart_can_take_the_break_glass_approvers_from_an_existing_secret(render: Render) -> None:
    objects = render("policy", "region-a", ("breakGlass.existingSecret=policy-approvers",))
    assert settings(objects)["IG_BREAKGLASS_APPROVERS_PATH"] == "/etc/ig/breakglass/approvers.yaml"
    assert not [o for o in by_kind(objects, "Secret") if o["metadata"]["name"].endswith("-breakglass-approvers")]
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "breakglass-approvers")
    assert volume["secret"]["secretName"] == "policy-approvers"
