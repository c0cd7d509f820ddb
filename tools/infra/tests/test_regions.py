"""region-b's layout (ig_infra.regions) without starting it: which regions a command line names, and that every
region-b listener is a port of its own, apart from region-a's and from what both regions share."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from ig_infra.cli import main
from ig_infra.components import Kafka, Opa, Postgres
from ig_infra.paths import Paths
from ig_infra.regions import REGION_A, REGION_B, SecondRegion, parse_regions
from ig_infra.services import PROCESSES, SERVICES, ServiceProcess, ServiceSpec

# Dex, Prometheus and the Pushgateway (ig_infra.components): shared by both regions, never shadowed by region-b.
SHARED_PORTS = {5556, 5558, 9090, 9091}


@pytest.mark.parametrize(("raw", "regions"), [("a", [REGION_A]), ("a,b", [REGION_A, REGION_B]),
                                              ("region-b, region-a", [REGION_A, REGION_B])])
def test_regions_are_read_from_a_comma_separated_list(raw: str, regions: list[str]) -> None:
    assert parse_regions(raw) == regions


@pytest.mark.parametrize("raw", ["", "c", "a,c", "b"])
def test_a_bad_region_list_is_refused_naming_it(raw: str) -> None:
    with pytest.raises(ValueError, match="invalid regions"):
        parse_regions(raw)


def ports_of(specs: tuple[ServiceSpec, ...]) -> list[int]:
    found: list[int] = []
    for spec in specs:
        found += [spec.http_port, *spec.extra_ports.values(), *spec.plain_ports.values()]
        found += [spec.grpc_port] if spec.grpc_port else []
    return found


def test_every_region_b_port_is_its_own(tmp_path: Path) -> None:
    region = SecondRegion.of(Paths(cache=tmp_path / "cache", run=tmp_path / "run"))
    postgres, kafka, opa = (c for c in region.infra() if isinstance(c, Postgres | Kafka | Opa))
    region_b = [*ports_of(region.specs()), postgres.port, kafka.port, kafka.controller_port, opa.port]
    region_a = {*ports_of(PROCESSES), 55432, 59092, 59093, 8181}
    assert len(region_b) == len(set(region_b)), sorted(region_b)
    assert not set(region_b) & region_a, set(region_b) & region_a
    assert not set(region_b) & SHARED_PORTS
    assert {spec.extra_env["IG_REGION"] for spec in region.specs()} == {REGION_B}
    assert [spec.name for spec in region.specs()] == [spec.name for spec in SERVICES]


def test_each_regions_migration_service_asks_its_own_regions_burn_service(tmp_path: Path) -> None:
    # The SLO-headroom gate asks the suite's own burn service (in the demo profile it knows service assets-api).
    region = SecondRegion.of(Paths(cache=tmp_path / "cache", run=tmp_path / "run"))
    burn_b = region.service("burn").spec.grpc_port
    assert region.service("migration").spec.extra_env["IG_BURN_GRPC"] == f"127.0.0.1:{burn_b}" == "127.0.0.1:50253"
    assert region.client_env()["IG_BURN_GRPC"] == f"127.0.0.1:{burn_b}"
    migration, burn = (next(spec for spec in SERVICES if spec.name == name) for name in ("migration", "burn"))
    assert migration.extra_env["IG_BURN_GRPC"] == f"127.0.0.1:{burn.grpc_port}" == "127.0.0.1:50053"


@pytest.mark.parametrize("region_b", [False, True])
def test_only_the_demo_profile_scales_burn_and_names_its_demo_slos_after_the_region(tmp_path: Path,
                                                                                    region_b: bool) -> None:
    paths = Paths(cache=tmp_path / "cache", run=tmp_path / "run")
    second = SecondRegion.of(paths)
    spec = second.service("burn").spec if region_b else next(s for s in SERVICES if s.name == "burn")
    run = second.paths if region_b else paths
    region = REGION_B if region_b else REGION_A
    assert ServiceProcess(spec, run).profile_env() == {}  # ig-infra up / services up alone: production windows
    demo = ServiceProcess(spec, run, "demo").profile_env()
    assert demo["IG_WINDOW_SCALE"] == "86400" and demo["IG_RECORDING_RULES_MAX_AGE_SECONDS"] == "0"
    slos = Path(demo["IG_SLO_DIR"])
    assert slos.parent == run.run  # in the region's own run dir
    assert f"name: release-synthetic-{region}\n" in (slos / "release-synthetic.yaml").read_text()
    assert (slos / "policy-decide.yaml").is_file()  # the packaged SLOs stay
    # The other services run the same in both profiles.
    policy = next(s for s in SERVICES if s.name == "policy")
    assert ServiceProcess(policy, paths, "demo").profile_env() == {}
    assert ServiceProcess(policy, paths, "demo").wanted_profile == "production"
    with pytest.raises(ValueError, match="profile"):
        ServiceProcess(spec, run, "fast")


def test_env_for_region_b_points_a_client_at_region_b(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("IG_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("IG_CACHE_DIR", str(tmp_path / "cache"))
    for name in [n for n in os.environ if n.startswith("IG_") and n.endswith("_PORT")]:
        monkeypatch.delenv(name)  # the default ports below (tools/infra/scripts/measure-cold.sh moves them)
    assert main(["env"]) == 0
    region_a = capsys.readouterr().out
    assert main(["env", "--region", "b"]) == 0
    region_b = capsys.readouterr().out
    assert "export IG_KAFKA_BOOTSTRAP=127.0.0.1:59092" in region_a
    assert "export IG_KAFKA_BOOTSTRAP=127.0.0.1:59292" in region_b
    assert "export IG_REGION=region-b" in region_b and "IG_REGION" not in region_a
    assert "export IG_POLICY_GRPC=127.0.0.1:50251" in region_b
    assert "export IG_PORTAL_URL=http://127.0.0.1:8280" in region_b
    assert "export IG_BURN_PUBLIC_URL=http://127.0.0.1:8213" in region_b
    assert "export IG_BURN_DEMO_ID=region-b" in region_b and "export IG_BURN_DEMO_ID=region-a" in region_a
    assert f"{tmp_path / 'run' / 'region-b' / 'identities'}" in region_b  # its own run dir's certificates
    assert main(["env", "--region", "c"]) == 2


def test_region_b_down_fails_status_only_when_the_last_up_asked_for_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import ig_infra.cli as cli

    paths = Paths(cache=tmp_path / "cache", run=tmp_path / "run")
    monkeypatch.setenv("IG_RUN_DIR", str(paths.run))
    monkeypatch.setenv("IG_CACHE_DIR", str(paths.cache))
    monkeypatch.setattr(cli, "infra_components", lambda paths, names=None: [])  # region-a: nothing to judge
    monkeypatch.setattr(cli, "PROCESSES", ())
    region = SecondRegion.of(paths)
    (region.paths.run / "postgres" / "data").mkdir(parents=True)
    (region.paths.run / "postgres" / "data" / "PG_VERSION").write_text("15\n")  # made by an earlier up --regions a,b
    assert main(["status"]) == 0  # listed, down, not counted
    assert "not counted" in capsys.readouterr().out
    region.want(True)
    assert main(["status"]) == 1
    assert "region-b" in capsys.readouterr().out


def test_region_b_services_start_with_the_shared_parts_where_region_a_runs_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Moved ports, as tools/infra/scripts/measure-cold.sh moves them: region-b's portal once kept the default issuer
    # (127.0.0.1:5556) and could not sign anyone in.
    monkeypatch.setenv("IG_DEX_PORT", "5656")
    monkeypatch.setenv("IG_PROMETHEUS_PORT", "9190")
    monkeypatch.setenv("IG_PUSHGATEWAY_PORT", "9191")
    region = SecondRegion.of(Paths(cache=tmp_path / "cache", run=tmp_path / "run"))
    env: dict[str, str] = {}
    for component in region.service_infra():
        env.update(component.env())
    assert env["IG_OIDC_ISSUER"] == "http://127.0.0.1:5656/dex"
    assert env["IG_PROMETHEUS_URL"].endswith(":9190")
    assert env["IG_PUSHGATEWAY_URL"].endswith(":9191")
    assert env["IG_KAFKA_BOOTSTRAP"] == region.client_env()["IG_KAFKA_BOOTSTRAP"]  # its own, not region-a's


def test_both_regions_evidence_and_portal_serve_by_the_policy_data_residency_pins(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ig_common.residency import load_residency
    from ig_infra import services

    # The witnesses' and ledger's keys come from a run dir's identities; they are not what this test is about.
    monkeypatch.setattr(services, "evidence_witnesses_env", lambda paths: {})
    monkeypatch.setattr(services, "portal_verification_env", lambda paths: {})
    monkeypatch.delenv("IG_OPA_POLICIES", raising=False)
    paths = Paths(cache=tmp_path / "cache", run=tmp_path / "run")
    region_b = SecondRegion.of(paths)
    for region, specs in ((REGION_A, SERVICES), (REGION_B, region_b.specs())):
        for name in ("evidence", "audit-portal"):
            spec = next(s for s in specs if s.name == name)
            assert spec.run_env is not None, (region, name)
            pins = spec.run_env(region_b.paths if region == REGION_B else paths)["IG_TENANT_RESIDENCY_FILE"]
            assert Path(pins) == paths.repo / "policies" / "rego" / "ig" / "config" / "data.json", (region, name)
            assert load_residency(pins, REGION_B).refusal("alpha") is not None, (region, name)


def test_the_shared_prometheus_scrapes_every_region_b_service_as_a_job_of_its_own(tmp_path: Path) -> None:
    import yaml
    from ig_infra.components import Prometheus

    paths = Paths(cache=tmp_path, run=tmp_path / "run")
    config = yaml.safe_load(Prometheus(paths).render_config().read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for spec in SecondRegion.of(paths).specs():
        job = jobs[f"region-b-{spec.name}"]
        assert job["static_configs"] == [{"targets": [f"127.0.0.1:{spec.health_port}"],
                                          "labels": {"region": "region-b"}}], spec.name
        # region-a's job of the same service, which the charts' rules select, scrapes region-a's port only
        assert jobs[spec.name]["static_configs"][0]["targets"] == [f"127.0.0.1:{spec.health_port - 200}"]
