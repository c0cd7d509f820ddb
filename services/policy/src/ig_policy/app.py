"""Wiring only: settings -> OPA engine (the in-process module in front of it when configured), decision-log writer
process, decision service -> gRPC + AuthZEN HTTPS."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any

import structlog
from ig_common.authz.http_guard import guarded_by_client_certificate, guarded_by_table
from ig_common.http_server import build_api_app, serve_http
from ig_common.service import Runtime, run_process, run_service
from ig_common.settings import load_settings

from ig_policy.api.authzen import MAX_BODY_BYTES as AUTHZEN_MAX_BODY_BYTES
from ig_policy.api.authzen import mount_authzen
from ig_policy.api.ext_authz import ext_authz_grpc_service
from ig_policy.api.forward_auth import mount_forward_auth
from ig_policy.api.gateway_auth import gateway_authorizer
from ig_policy.api.grpc_service import policy_grpc_service
from ig_policy.breakglass import BreakGlassVerifier, load_approvers
from ig_policy.clock import clock_from
from ig_policy.decisions import DecisionService, Engine
from ig_policy.engine.inprocess import InProcessEngine
from ig_policy.engine.opa import OpaEngine
from ig_policy.engine.token import read_opa_token
from ig_policy.engine.wasm import WasmPolicy, read_bundle
from ig_policy.settings import Settings
from ig_policy.store import MIGRATIONS, SCHEMA
from ig_policy.store.log_process import DecisionLogProcess
from ig_policy.store.wal import WalSettings
from ig_policy.workers import check_wal_layout, supervise

log = structlog.get_logger(__name__)


def run_supervisor(supervisor: Coroutine[Any, Any, int]) -> int:
    """The supervisor's loop (plain asyncio: it only starts, probes and stops processes)."""
    return asyncio.run(supervisor)


def decision_engine(sidecar: OpaEngine, settings: Settings) -> Engine:
    """The sidecar alone, or the in-process module in front of it (IG_POLICY_WASM_BUNDLE)."""
    if settings.policy_wasm_bundle is None:
        return sidecar
    bundle = read_bundle(settings.policy_wasm_bundle)
    engine = InProcessEngine(sidecar, WasmPolicy(bundle), bundle.revision)
    log.info("inprocess_engine_loaded", bundle=str(settings.policy_wasm_bundle), revision=engine.module_revision,
             sidecar_revision=sidecar.revision)
    return engine


def main() -> None:
    settings = load_settings(Settings)
    worker = settings.policy_worker_index
    if worker is None:
        check_wal_layout(settings)
        if settings.policy_workers > 1:
            # The supervisor: starts the workers (this module again, with IG_POLICY_WORKER_INDEX) and watches them.
            sys.exit(run_supervisor(supervise(settings)))
    else:
        structlog.contextvars.bind_contextvars(worker=worker)
    # A worker shares the service's ports with its siblings (SO_REUSEPORT); a single process keeps them its own.
    shared_ports = worker is not None
    engine = OpaEngine(settings.opa_url, timeout_ms=settings.opa_timeout_ms,
                       decision_path=settings.opa_decision_path, batch_path=settings.opa_batch_path,
                       data_path=settings.opa_data_path, max_in_flight=settings.opa_max_in_flight,
                       coalesce=settings.opa_coalesce,
                       token=read_opa_token(settings.opa_token_file) if settings.opa_token_file else None)
    wired: dict[str, Any] = {}

    async def on_start(runtime: Runtime) -> None:
        await engine.start()
        await engine.refresh_revision()
        await engine.warm_up()
        runtime.spawn(engine.keep_revision_fresh(runtime.stop, settings.policy_revision_refresh_s), "policy-revision")
        # The decision log and the outbox relay run in a writer process of their own (ig_policy.log_writer), fed
        # through a write-ahead log that outlives both processes.
        decision_log = DecisionLogProcess(WalSettings(
            settings.wal_directory, segment_bytes=settings.decision_log_wal_segment_mb * 1024 * 1024,
            max_bytes=settings.decision_log_wal_max_mb * 1024 * 1024, fsync=settings.decision_log_wal_fsync))
        decision_log.open_wal()
        runtime.spawn(decision_log.run(), "decision-log-writer")
        await decision_log.wait_ready(within_s=settings.decision_log_writer_start_s)
        approvers = load_approvers(settings.breakglass_approvers_path) if settings.breakglass_approvers_path else {}
        log.info("break_glass_approvers", tenants={t: [a.name for a in trust.approvers]
                                                   for t, trust in approvers.items()},
                 note="" if approvers else "no approvers: every break-glass request is denied")
        wired["decisions"] = DecisionService(decision_engine(engine, settings), decision_log, region=settings.region,
                                             clock=clock_from(settings.test_clock_file),
                                             skew=timedelta(seconds=settings.clock_skew_s),
                                             break_glass=BreakGlassVerifier(approvers))
        wired["gateways"] = gateway_authorizer(settings, wired["decisions"], protocol="ext_authz")
        # AuthZEN on a listener of its own: TLS with a client certificate of the CA, then the caller's workload
        # token against the same table as gRPC. /healthz and /metrics stay on the plain IG_HTTP_PORT.
        assert runtime.authz_table is not None  # run_service refused to start without it
        authzen = build_api_app("policy AuthZEN")
        mount_authzen(authzen, wired["decisions"])
        guarded = guarded_by_table(authzen, runtime.authz_table, runtime.certificate)
        runtime.spawn(serve_http(guarded, settings.http_host, settings.authzen_port, runtime.stop,
                                 tls=runtime.certificate, reuse_port=shared_ports,
                                 max_body_bytes=AUTHZEN_MAX_BODY_BYTES), "authzen-https")
        # Forward-auth for HTTP gateways, which cannot sign workload tokens: known by their client certificate.
        forward = build_api_app("policy forward-auth")
        mount_forward_auth(forward, gateway_authorizer(settings, wired["decisions"], protocol="forward_auth"),
                           runtime.authz_table)
        runtime.spawn(serve_http(guarded_by_client_certificate(forward, runtime.authz_table, runtime.certificate),
                                 settings.http_host, settings.forward_auth_port, runtime.stop,
                                 tls=runtime.certificate, expose_client_certificate=True, reuse_port=shared_ports),
                     "forward-auth-https")

    # reset_sessions=False: this process's pool runs the migrations (their advisory lock is unlocked explicitly)
    # and the readiness probe and keeps no session state, so the pool's reset query per release is a wasted round
    # trip. relay_outbox=False: the writer process publishes the outbox.
    run_process(run_service(
        settings, schema=SCHEMA, migrations=MIGRATIONS, on_start=on_start, reset_sessions=False, relay_outbox=False,
        grpc_reuse_port=shared_ports,
        grpc_services=lambda runtime: [policy_grpc_service(wired["decisions"]),
                                       ext_authz_grpc_service(wired["gateways"])],
    ))


if __name__ == "__main__":
    main()
