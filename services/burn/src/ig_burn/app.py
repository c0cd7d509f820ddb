"""Wiring only: settings -> adapters -> servers."""

from __future__ import annotations

import sys

from ig.burn.v1 import burn_pb2, burn_pb2_grpc
from ig.flags.v1 import flags_pb2, flags_pb2_grpc
from ig_common.authz.http_guard import guarded_by_table
from ig_common.grpc_server import GrpcService
from ig_common.http_server import build_api_app, serve_http
from ig_common.service import Runtime, run_process, run_service
from ig_common.settings import load_settings

from ig_burn.api.dashboard import dashboard_router
from ig_burn.api.grpc_burn import BurnServicer
from ig_burn.api.grpc_flags import FlagServicer
from ig_burn.api.http_burn import burn_router
from ig_burn.api.ofrep import OfrepResponder, ofrep_router, serve_ahead_of_middleware
from ig_burn.config_loader import BurnConfig, load_config
from ig_burn.domain.burn import WindowScale
from ig_burn.domain.slo import SloValidationError
from ig_burn.engine import BurnEngine
from ig_burn.flag_cache import FlagCache
from ig_burn.prometheus import PrometheusClient
from ig_burn.settings import Settings
from ig_burn.store import MIGRATIONS, SCHEMA
from ig_burn.webhook import WebhookSender
from ig_burn.webhook_signing import webhook_signer


class Wiring:
    """Holds the adapters the factories share; built in ``on_start`` once the pool exists."""

    def __init__(self, settings: Settings, config: BurnConfig) -> None:
        self.settings = settings
        self.config = config
        self.engine: BurnEngine | None = None
        self.cache: FlagCache | None = None
        self.webhook: WebhookSender | None = None

    async def on_start(self, runtime: Runtime) -> None:
        s = self.settings
        prometheus = PrometheusClient(s.prometheus_url, timeout=s.prometheus_timeout_seconds,
                                      concurrency=s.query_concurrency)
        if s.alert_webhook_url:
            assert s.alert_webhook_secret_file is not None  # the settings refuse a URL without it
            self.webhook = WebhookSender(runtime.pool, runtime.schema, s.alert_webhook_url,
                                         webhook_signer(s.alert_webhook_secret_file),
                                         max_attempts=s.alert_webhook_max_attempts)
            runtime.spawn(self.webhook.run(runtime.stop), "incident-webhook")
        self.engine = BurnEngine(self.config, prometheus, runtime.pool, runtime.schema,
                                 scale=WindowScale(s.window_scale, s.min_window_seconds),
                                 batch_size=s.query_batch_size, external_url=s.external_url,
                                 on_committed=lambda: self.committed(runtime),
                                 recording_rules_max_age=s.recording_rules_max_age_seconds or None)
        self.engine.store.webhooks_enabled = bool(s.alert_webhook_url)
        await self.engine.start()
        self.cache = FlagCache(runtime.pool, self.engine.flags)
        await self.cache.refresh()
        runtime.spawn(self.cache.run(runtime.stop, s.flag_refresh_seconds), "flag-cache")
        runtime.spawn(self.engine.run(runtime.stop, s.evaluation_interval_seconds), "burn-engine")
        self.serve_http_apis(runtime)

    async def committed(self, runtime: Runtime) -> None:
        """After a commit that enqueued events or changed flags: publish and serve them now, not next poll."""
        runtime.relay.wake()
        if self.webhook is not None:
            self.webhook.wake()
        if self.cache is not None:
            await self.cache.refresh()

    def grpc_services(self, runtime: Runtime) -> list[GrpcService]:
        assert self.engine is not None
        return [
            GrpcService(burn_pb2.DESCRIPTOR.services_by_name["BurnService"].full_name, BurnServicer(self.engine),
                        burn_pb2_grpc.add_BurnServiceServicer_to_server),
            GrpcService(flags_pb2.DESCRIPTOR.services_by_name["FlagService"].full_name,
                        FlagServicer(runtime.pool, self.engine.flags, lambda: self.committed(runtime)),
                        flags_pb2_grpc.add_FlagServiceServicer_to_server),
        ]

    def serve_http_apis(self, runtime: Runtime) -> None:
        """Two listeners beside the plain health port (IG_HTTP_PORT: /healthz and /metrics only).

        IG_API_PORT, HTTPS: /get-burn for the suite's own callers (a client certificate of the CA, then a workload
        token the authorization table grants). IG_PUBLIC_PORT, plain HTTP: OFREP for product code and the /burn
        page for people, both read-only; product code has no workload certificate, and what it reads is a flag's
        value, which the service hands to every caller alike."""
        assert self.engine is not None and self.cache is not None
        s = self.settings
        assert runtime.authz_table is not None  # run_service refused to start without it
        api = build_api_app("burn API")
        api.include_router(burn_router(self.engine))
        guarded = guarded_by_table(api, runtime.authz_table, runtime.certificate)
        runtime.spawn(serve_http(guarded, s.http_host, s.api_port, runtime.stop, tls=runtime.certificate),
                      "burn-api-https")
        public = build_api_app("burn OFREP and dashboard")
        responder = OfrepResponder(self.cache)
        public.include_router(ofrep_router(responder))
        serve_ahead_of_middleware(public, responder, trace_ratio=s.ofrep_trace_ratio)
        public.include_router(dashboard_router(self.engine))
        runtime.spawn(serve_http(public, s.http_host, s.public_port, runtime.stop), "burn-public-http")


def main() -> None:
    settings = load_settings(Settings)
    try:
        config = load_config(settings.slo_dir)
    except SloValidationError as error:
        print(f"invalid SLO configuration: {error}", file=sys.stderr)
        raise SystemExit(2) from error
    wiring = Wiring(settings, config)
    run_process(run_service(settings, schema=SCHEMA, migrations=MIGRATIONS, on_start=wiring.on_start,
                            grpc_services=wiring.grpc_services))


if __name__ == "__main__":
    main()
