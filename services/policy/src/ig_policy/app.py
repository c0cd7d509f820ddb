"""Wiring only: settings -> OPA engine, decision log, decision service -> gRPC + AuthZEN HTTP."""

from __future__ import annotations

from ig_common.service import Runtime, run_process, run_service
from ig_common.settings import load_settings

from ig_policy.api.authzen import mount_authzen
from ig_policy.api.grpc_service import policy_grpc_service
from ig_policy.decisions import DecisionService
from ig_policy.domain.masking import parse_drop_rules, parse_mask_rules
from ig_policy.engine.opa import OpaEngine
from ig_policy.settings import Settings
from ig_policy.store import MIGRATIONS, SCHEMA
from ig_policy.store.decision_log import DecisionLog, LogSettings


def main() -> None:
    settings = load_settings(Settings)
    engine = OpaEngine(settings.opa_url, timeout_ms=settings.opa_timeout_ms,
                       decision_path=settings.opa_decision_path, batch_path=settings.opa_batch_path,
                       data_path=settings.opa_data_path, max_in_flight=settings.opa_max_in_flight,
                       coalesce=settings.opa_coalesce)
    wired: dict[str, DecisionService] = {}

    async def on_start(runtime: Runtime) -> None:
        await engine.start()
        await engine.refresh_revision()
        runtime.spawn(engine.keep_revision_fresh(runtime.stop, settings.policy_revision_refresh_s), "policy-revision")
        decision_log = DecisionLog(runtime.pool, runtime.schema, runtime.relay, LogSettings(
            region=settings.region, mask_rules=parse_mask_rules(settings.decision_log_mask),
            drop_rules=parse_drop_rules(settings.decision_log_drop), queue_size=settings.decision_log_queue_size,
            batch_size=settings.decision_log_batch_size, flush_interval=settings.decision_log_flush_ms / 1000,
        ))
        runtime.spawn(decision_log.run(runtime.stop), "decision-log")
        wired["decisions"] = DecisionService(engine, decision_log)

    # reset_sessions=False: the decision log and the relay keep no session state on a pooled connection (the
    # migration advisory lock is unlocked explicitly), so the pool's reset query per release is a wasted round trip.
    run_process(run_service(
        settings, schema=SCHEMA, migrations=MIGRATIONS, on_start=on_start, reset_sessions=False,
        grpc_services=lambda runtime: [policy_grpc_service(wired["decisions"])],
        http_routes=lambda runtime, app: mount_authzen(app, wired["decisions"]),
    ))


if __name__ == "__main__":
    main()
