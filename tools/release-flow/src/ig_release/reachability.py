"""Before the flow starts: is every part the selected stages talk to listening? A clear "start the suite" message
beats a stage failing halfway on a refused connection."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from ig_release.settings import Endpoints


def _host_port(address: str) -> tuple[str, int]:
    if "://" in address:
        parts = urlsplit(address)
        return parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)
    host, _, port = address.rpartition(":")
    return host or "127.0.0.1", int(port)


def needed(endpoints: Endpoints, stages: list[str]) -> dict[str, str]:
    wants = {"database (IG_DATABASE_URL)": endpoints.database_url.split("@")[-1].split("/")[0],
             "Kafka (IG_KAFKA_BOOTSTRAP)": endpoints.kafka_bootstrap.split(",")[0]}
    if "policy" in stages:
        wants["policy service (IG_POLICY_GRPC)"] = endpoints.policy_grpc
    if "burn" in stages:
        wants["burn service (IG_BURN_API)"] = endpoints.burn_api
        wants["burn service's OFREP (IG_BURN_PUBLIC_URL)"] = endpoints.burn_public_url
        wants["Prometheus (IG_PROMETHEUS_URL)"] = endpoints.prometheus_url
    if "migration" in stages:
        wants["migration service (IG_MIGRATION_GRPC)"] = endpoints.migration_grpc
    if "evidence" in stages:
        wants["evidence service (IG_EVIDENCE_GRPC)"] = endpoints.evidence_grpc
    if "portal" in stages:
        wants["audit portal (IG_PORTAL_URL)"] = endpoints.portal_url
        wants["Dex (IG_OIDC_ISSUER)"] = endpoints.oidc_issuer
    return wants


def unreachable(endpoints: Endpoints, stages: list[str]) -> list[str]:
    missing = []
    for what, address in needed(endpoints, stages).items():
        host, port = _host_port(address)
        try:
            with socket.create_connection((host, port), timeout=2):
                pass
        except OSError:
            missing.append(f"{what} at {address}")
    return missing
