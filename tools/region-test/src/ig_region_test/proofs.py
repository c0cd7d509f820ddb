"""Run every residency probe at one point of the test and record the evidence.

Statuses: ``passed``; ``failed`` (data found where it must not be, or a positive control found nothing);
``unreachable`` (the region is partitioned away at this point -- neither proof nor disproof); ``pending``
(the policy layer cannot answer yet).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine
from pathlib import Path
from typing import Any

import asyncpg

from ig_region_test import policyprobe, residency
from ig_region_test.regions import Region, Regions
from ig_region_test.residency import PinnedTenant

UNREACHABLE = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


async def _check(name: str, region: str, expect_present: bool, probe: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    entry: dict[str, Any] = {"check": name, "region": region, "expect": ">0" if expect_present else "0"}
    try:
        observed = await probe
    except UNREACHABLE as error:
        entry.update(status="unreachable", error=f"{type(error).__name__}: {error}"[:300])
        return entry
    except Exception as error:  # a Kafka client error is as good as unreachable here, but recorded as such
        entry.update(status="unreachable", error=f"{type(error).__name__}: {error}"[:300])
        return entry
    count = int(observed["count"])
    entry["observed"] = observed
    entry["status"] = "passed" if (count > 0) == expect_present else "failed"
    return entry


async def _files(directories: list[Path], marker: str) -> dict[str, Any]:
    return await asyncio.to_thread(residency.marker_in_files, directories, marker)


async def collect(env: Regions, tenants: list[PinnedTenant], point: str, reachable: dict[str, bool],
                  rules_loaded: bool) -> dict[str, Any]:
    results = []
    for tenant in tenants:
        home, other = env.get(tenant.home), env.other(tenant.home)
        over_network = [
            ("rows_in_home_region", home, True,
             residency.home_rows(home.resident_pg.dsn(tenant.database), tenant)),
            ("tenant_database_absent_in_other_region", other, False,
             residency.database_exists(other.resident_pg.dsn(), tenant.database)),
            ("marker_absent_in_global_cluster", other, False, residency.marker_in_cluster(other.global_pg.dsn, tenant)),
            ("marker_absent_in_global_cluster", home, False, residency.marker_in_cluster(home.global_pg.dsn, tenant)),
        ]
        if home.kafka is not None and other.kafka is not None:
            over_network += [
                ("events_on_home_kafka", home, True, residency.events_on(home.kafka.bootstrap, tenant)),
                ("events_absent_on_other_kafka", other, False, residency.events_on(other.kafka.bootstrap, tenant)),
            ]
        checks = [await _guard(reachable, name, region, expect, probe) for name, region, expect, probe in over_network]
        home_storage = [home.resident_pg.data] + ([home.kafka.data] if home.kafka else [])
        checks.append(await _check("marker_bytes_absent_in_other_region_storage", other.name, False,
                                   _files(env.data_dirs(other), tenant.marker)))
        checks.append(await _check("marker_bytes_present_in_home_storage", home.name, True,
                                   _files(home_storage, tenant.marker)))
        policy = await asyncio.to_thread(_policy, env, tenant, other, reachable, rules_loaded)
        results.append({"tenant": tenant.tenant, "home_region": tenant.home, "checks": checks, "policy": policy})
    return {"point": point, "reachable": reachable, "tenants": results}


async def _guard(reachable: dict[str, bool], name: str, region: Region, expect_present: bool,
                 probe: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    if not reachable.get(region.name, True):
        # The test itself cut this region off (and the failover detected it): waiting for every network probe
        # to time out would prove nothing more. Storage byte scans still run: they need no network.
        probe.close()
        return {"check": name, "region": region.name, "expect": ">0" if expect_present else "0",
                "status": "unreachable", "error": "not probed over the network: partitioned away at this point"}
    return await _check(name, region.name, expect_present, probe)


def _policy(env: Regions, tenant: PinnedTenant, other: Region, reachable: dict[str, bool],
            rules_loaded: bool) -> dict[str, Any]:
    if not (reachable.get(tenant.home, True) and reachable.get(other.name, True)):
        return {"opa": {"status": "unreachable", "why": "a region is partitioned away"},
                "policy-service": {"status": "unreachable", "why": "a region is partitioned away"}}
    opa = {r.name: policyprobe.OpaEndpoint(r.opa.url, r.opa.token.header()) for r in (env.a, env.b) if r.opa}
    services = {r.name: r.policy.grpc_target for r in (env.a, env.b) if r.policy}
    return policyprobe.probe(tenant, other.name, opa, services, rules_loaded)


def summarise(points: list[dict[str, Any]]) -> dict[str, Any]:
    """Residency passes when no probe failed and every check passed at least once for every tenant."""
    failed, passed_once, seen = [], set(), set()
    policy: dict[str, str] = {}
    for point in points:
        for tenant in point["tenants"]:
            for check in tenant["checks"]:
                key = (tenant["tenant"], check["check"], check["region"])
                seen.add(key)
                if check["status"] == "failed":
                    failed.append(f"{point['point']}: {tenant['tenant']} {check['check']} in {check['region']}")
                if check["status"] == "passed":
                    passed_once.add(key)
            for layer in ("opa", "policy-service"):
                status = tenant["policy"].get(layer, {}).get("status", "pending")
                key_layer = f"{tenant['tenant']}:{layer}"
                if status == "failed" or policy.get(key_layer) == "failed":
                    policy[key_layer] = "failed"
                elif status == "passed" or policy.get(key_layer) == "passed":
                    policy[key_layer] = "passed"
                elif status != "unreachable" or key_layer not in policy:
                    policy[key_layer] = status
    never_passed = sorted(f"{t} {c} in {r}" for t, c, r in seen - passed_once)
    return {"passed": not failed and not never_passed, "failed": failed, "never_passed": never_passed,
            "policy": policy}
