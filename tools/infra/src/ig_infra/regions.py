"""The suite's second region: region-b beside `make up`'s region-a, each with its own PostgreSQL, Kafka, OPA and
the five services (IG_REGION set), on the same machine.

region-a is the stack ig-infra has always started (run dir ``$IG_RUN_DIR``, the documented ports). region-b is a
second, complete stack of the same components, laid out the same way (TLS, client certificates, one role per
service, Kafka ACLs, a locked OPA), in its own run dir ``$IG_RUN_DIR/region-b`` and on region-a's ports shifted
by ``REGION_B_PORT_OFFSET``. The development CA is one per machine, so a client of either region holds the same
kind of certificate. Shared by both regions: Dex (one identity provider), Prometheus and the Pushgateway (one
place to look), the ledger's two witnesses (region-a's stack runs them).

Both regions listen on 127.0.0.1: this is region-test's loopback layout (distinct ports instead of network
namespaces), chosen because every client, certificate and health check of the suite dials 127.0.0.1; there is no
link between the regions to cut here. The global PostgreSQL pair (region-a's primary, region-b's synchronous
replica) is ``ig_infra.components.global_pg``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ig_infra.components.base import Component
from ig_infra.components.dex import Dex
from ig_infra.components.global_pg import GlobalPostgres
from ig_infra.components.identities import Identities
from ig_infra.components.kafka import Kafka
from ig_infra.components.opa import Opa
from ig_infra.components.postgres import Postgres
from ig_infra.components.prometheus import Prometheus
from ig_infra.components.pushgateway import Pushgateway
from ig_infra.paths import Paths
from ig_infra.services import SERVICES, ServiceProcess, ServiceSpec, tenant_residency_env
from ig_infra.witnesses import LEDGER_ORIGIN

REGION_A = "region-a"
REGION_B = "region-b"
REGION_NAMES = {"a": REGION_A, "b": REGION_B, REGION_A: REGION_A, REGION_B: REGION_B}
# Every region-a port + 200 is free of the suite's other listeners (Pushgateway 9091, Prometheus 9090, Dex 5556,
# OPA 8181, the witnesses 8086/8087/8096/8097); +1000 would put policy's AuthZEN port on the Pushgateway's.
REGION_B_PORT_OFFSET = 200


def parse_regions(raw: str) -> list[str]:
    """``a,b`` (or ``region-a,region-b``) -> the region names, region-a first; region-a is always included (it
    runs what both regions share)."""
    names = [part.strip() for part in raw.split(",") if part.strip()]
    unknown = [n for n in names if n not in REGION_NAMES]
    if unknown or not names:
        raise ValueError(f"invalid regions {raw!r}: give a comma-separated list of a, b")
    chosen = {REGION_NAMES[n] for n in names}
    if REGION_A not in chosen:
        raise ValueError(f"invalid regions {raw!r}: region-a runs what both regions share (Dex, Prometheus, the "
                         "witnesses); start a,b")
    return [r for r in (REGION_A, REGION_B) if r in chosen]


@dataclass(frozen=True)
class SecondRegion:
    """region-b's stack: where its state lives and which port stands for each of region-a's."""

    name: str
    paths: Paths
    port: Callable[[int], int]

    @classmethod
    def of(cls, paths: Paths) -> SecondRegion:
        return cls(REGION_B, Paths(cache=paths.cache, run=paths.run / REGION_B, repo=paths.repo),
                   lambda base: base + REGION_B_PORT_OFFSET)

    def started(self) -> bool:
        """Whether region-b was ever brought up from this run dir (status and down then report it): its PostgreSQL
        cluster exists (building the components below makes their directories, so those say nothing)."""
        return (self.paths.run / "postgres" / "data" / "PG_VERSION").exists()

    @property
    def _wanted_marker(self) -> Path:
        return self.paths.run / "wanted"

    def wanted(self) -> bool:
        """Whether the last `ig-infra up` (of everything) asked for region-b: only then does its health count in
        `status` (a single-region `make up` after a two-region one must not fail on region-b being down)."""
        return self._wanted_marker.exists()

    def want(self, wanted: bool) -> None:
        if wanted:
            self.paths.run.mkdir(parents=True, exist_ok=True)
            self._wanted_marker.touch()
        else:
            self._wanted_marker.unlink(missing_ok=True)

    def global_primary(self) -> GlobalPostgres:
        """region-a's global cluster (in region-a's run dir, the parent of region-b's): started before region-b."""
        return GlobalPostgres(Paths(cache=self.paths.cache, run=self.paths.run.parent, repo=self.paths.repo))

    def infra(self) -> list[Component]:
        """Its own identities dir, PostgreSQL, Kafka and OPA, on this region's ports, and its replica of the global
        cluster (ig_infra.components.global_pg)."""
        postgres, kafka, opa = Postgres(self.paths), Kafka(self.paths), Opa(self.paths)
        postgres.port = self.port(postgres.port)
        kafka.port, kafka.controller_port = self.port(kafka.port), self.port(kafka.controller_port)
        opa.port = self.port(opa.port)
        replica = GlobalPostgres(self.paths, replica_of=self.global_primary())
        replica.port = self.port(replica.port)
        return [Identities(self.paths), postgres, kafka, opa, replica]

    def shared(self) -> list[Component]:
        """What region-b's services use of region-a's stack: Dex (the portal's issuer), Prometheus (burn's SLO
        source) and the Pushgateway, on whatever ports region-a's were given (IG_DEX_PORT, ...), never the defaults."""
        region_a = Paths(cache=self.paths.cache, run=self.paths.run.parent, repo=self.paths.repo)
        return [Pushgateway(region_a), Prometheus(region_a), Dex(region_a)]

    def service_infra(self) -> list[Component]:
        """Every component whose settings region-b's services start with: the shared ones, then the region's own
        (which win where both set one)."""
        return [*self.shared(), *self.infra()]

    def specs(self) -> tuple[ServiceSpec, ...]:
        return tuple(self._spec(spec) for spec in SERVICES)

    def _spec(self, spec: ServiceSpec) -> ServiceSpec:
        port = self.port
        extra_env = {**spec.extra_env, "IG_REGION": self.name}
        if spec.name == "burn":
            extra_env["IG_EXTERNAL_URL"] = f"http://127.0.0.1:{port(spec.plain_ports['IG_PUBLIC_PORT'])}"
        if spec.name == "migration":
            extra_env["IG_BURN_GRPC"] = f"127.0.0.1:{port(_grpc_port('burn'))}"  # the region's own burn service
        if spec.name == "audit-portal":
            extra_env["IG_PUBLIC_URL"] = f"http://localhost:{port(spec.http_port)}"
            extra_env["IG_EVIDENCE_TARGET"] = f"127.0.0.1:{port(_grpc_port('evidence'))}"
        run_env = spec.run_env
        if spec.name == "evidence":
            run_env = _region_ledger_env(self.name)
        return dataclasses.replace(
            spec, http_port=port(spec.http_port),
            grpc_port=None if spec.grpc_port is None else port(spec.grpc_port),
            extra_ports={k: port(v) for k, v in spec.extra_ports.items()},
            plain_ports={k: port(v) for k, v in spec.plain_ports.items()},
            extra_env=extra_env, run_env=run_env)

    def services(self, profile: str = "production") -> list[ServiceProcess]:
        return [ServiceProcess(spec, self.paths, profile) for spec in self.specs()]

    def service(self, name: str, profile: str = "production") -> ServiceProcess:
        return next(s for s in self.services(profile) if s.spec.name == name)

    def client_env(self) -> dict[str, str]:
        """What `ig-infra env --region b` exports: region-b's infrastructure, and its services under the names
        the release flow reads (IG_POLICY_GRPC, IG_PORTAL_URL, ...)."""
        env: dict[str, str] = {"IG_REGION": self.name}
        for component in self.infra():
            env.update(component.env())
        grpc = {spec.name: spec.grpc_port for spec in self.specs()}
        env.update({
            "IG_POLICY_GRPC": f"127.0.0.1:{grpc['policy']}", "IG_EVIDENCE_GRPC": f"127.0.0.1:{grpc['evidence']}",
            "IG_BURN_GRPC": f"127.0.0.1:{grpc['burn']}", "IG_MIGRATION_GRPC": f"127.0.0.1:{grpc['migration']}",
            "IG_BURN_API": f"https://127.0.0.1:{self.port(_spec('burn').extra_ports['IG_API_PORT'])}",
            "IG_BURN_PUBLIC_URL": f"http://127.0.0.1:{self.port(_spec('burn').plain_ports['IG_PUBLIC_PORT'])}",
            "IG_PORTAL_URL": f"http://127.0.0.1:{self.port(_spec('audit-portal').http_port)}",
            # the demo profile's SLOs and synthetic job carry the region's name (ig_burn.devtools.demo)
            "IG_BURN_DEMO_ID": self.name,
        })
        return env


def _spec(name: str) -> ServiceSpec:
    return next(spec for spec in SERVICES if spec.name == name)


def _grpc_port(name: str) -> int:
    port = _spec(name).grpc_port
    assert port is not None, name
    return port


def _region_ledger_env(region: str) -> Callable[[Paths], dict[str, str]]:
    """region-b's evidence ledger is a log of its own (its own checkpoint key, from its run dir's identities), so it
    gets its own origin. The two witnesses `make up` runs are told of region-a's ledger only; region-b's is not
    witnessed yet (IG_WITNESSES empty) rather than submitted to witnesses that would refuse it. It serves by the
    same residency pins as region-a's."""

    def env(paths: Paths) -> dict[str, str]:
        return {"IG_LEDGER_ORIGIN": f"{LEDGER_ORIGIN}/{region}", "IG_WITNESSES": json.dumps([]),
                **tenant_residency_env(paths)}

    return env
