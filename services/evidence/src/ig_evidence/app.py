"""Wiring only: settings -> adapters -> servers."""

import sys
from pathlib import Path

import structlog
from ig.evidence.v1 import evidence_pb2, evidence_pb2_grpc
from ig.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from ig_common.grpc_server import GrpcService
from ig_common.http_server import build_api_app, serve_http
from ig_common.memory import tune_allocator_for_streaming
from ig_common.service import Runtime, run_process, run_service
from ig_common.settings import load_identity, load_settings

from ig_evidence.api.evidence import EvidenceServicer, report_missing
from ig_evidence.api.ledger import LedgerServicer
from ig_evidence.api.residency import ResidencyGate
from ig_evidence.api.tiles_http import tiles_router
from ig_evidence.bundle.keyless import KeylessVerifier
from ig_evidence.domain.trusted_signers import TrustedSignersError
from ig_evidence.settings import Settings
from ig_evidence.store import MIGRATIONS, SCHEMA
from ig_evidence.store.blobs import BlobStore
from ig_evidence.store.bundles import BundleStore
from ig_evidence.store.ledger import LedgerStore
from ig_evidence.store.signing_key import SigningKeyProblem, load_checkpoint_signer
from ig_evidence.store.witnessing import Witnessing

log = structlog.get_logger(__name__)


def main() -> None:
    settings = load_settings(Settings)
    load_identity(settings)  # first: without a certificate that is the setting to name
    tune_allocator_for_streaming()  # GetArtifact's 1 MiB chunks reuse heap memory instead of faulting in fresh pages
    try:
        signer = load_checkpoint_signer(settings.ledger_origin, settings.checkpoint_key_file())
    except SigningKeyProblem as error:
        print(f"invalid setting IG_LEDGER_KEY_PATH: {error}", file=sys.stderr)
        raise SystemExit(2) from error
    try:
        signers = settings.trusted_signers()
    except TrustedSignersError as error:
        print(f"invalid setting IG_TRUSTED_SIGNERS_PATH: {error}", file=sys.stderr)
        raise SystemExit(2) from error
    try:
        keyless = KeylessVerifier.from_file(Path(signers.keyless_trusted_root)) if signers.keyless_trusted_root \
            else None
    except ValueError as error:
        print(f"invalid setting IG_TRUSTED_SIGNERS_PATH: keylessTrustedRoot: {error}", file=sys.stderr)
        raise SystemExit(2) from error
    if not signers.tenants:
        log.warning("no_trusted_signers", detail="IG_TRUSTED_SIGNERS_PATH names no signer: every RegisterBundle "
                    "is refused")
    residency = ResidencyGate(settings.residency)  # read once: a changed file takes effect at the next start
    adapters: dict[str, object] = {}

    async def on_start(runtime: Runtime) -> None:
        # No relay wake-up per append: the relay's 100 ms tick publishes every append of that interval in one Kafka
        # round trip, where a wake-up per commit cost a relay transaction per append at low rates.
        witnessing = Witnessing(runtime.pool, runtime.schema, settings.witness_endpoints(), runtime.certificate,
                                timeout=settings.witness_timeout_seconds)
        ledger = LedgerStore(runtime.pool, runtime.schema, signer,
                             previous_verifier_keys=settings.previous_verifier_keys(),
                             linger_seconds=settings.ledger_append_linger_ms / 1000,
                             on_head_checkpoint=witnessing.head_stored,
                             kind_label=runtime.authz_table.ledger_kind_row if runtime.authz_table else lambda _: None)
        witnessing.bind(ledger.consistency_proof)
        runtime.spawn(ledger.serve_appends(), "ledger-writer")
        runtime.spawn(ledger.tree.serve_integration(), "ledger-integrator")
        public = build_api_app("evidence ledger tiles (C2SP tlog-tiles)")
        public.include_router(tiles_router(ledger))
        runtime.spawn(serve_http(public, settings.http_host, settings.public_port, runtime.stop),
                      "ledger-tiles-http")
        if witnessing.endpoints:
            runtime.spawn(witnessing.run(), "ledger-witnessing")
        adapters["ledger"] = ledger
        adapters["witnessing"] = witnessing
        adapters["blobs"] = BlobStore(settings.blob_store_path)
        report_missing(await BundleStore(runtime.pool, runtime.schema).latest_per_release(""))

    def grpc_services(runtime: Runtime) -> list[GrpcService]:
        ledger = adapters["ledger"]
        assert isinstance(ledger, LedgerStore)
        blobs = adapters["blobs"]
        assert isinstance(blobs, BlobStore)
        witnessing = adapters["witnessing"]
        assert isinstance(witnessing, Witnessing)
        authz_table = runtime.authz_table
        assert authz_table is not None  # run_service refused to start without it
        evidence = EvidenceServicer(BundleStore(runtime.pool, runtime.schema), ledger, blobs,
                                    limits=settings.upload_limits(), signers=signers, residency=residency,
                                    keyless=keyless,
                                    on_commit=runtime.relay.wake,
                                    witnessing=witnessing if witnessing.endpoints else None)
        return [
            GrpcService(ledger_pb2.DESCRIPTOR.services_by_name["LedgerService"].full_name,
                        LedgerServicer(ledger, authz_table, witnessing if witnessing.endpoints else None,
                                       residency=residency),
                        ledger_pb2_grpc.add_LedgerServiceServicer_to_server),
            GrpcService(evidence_pb2.DESCRIPTOR.services_by_name["EvidenceService"].full_name, evidence,
                        evidence_pb2_grpc.add_EvidenceServiceServicer_to_server),
        ]

    # reset_sessions=False: nothing here keeps session state on a pooled connection (the migration advisory lock
    # is unlocked explicitly), so the pool's reset query per release was a wasted round trip.
    run_process(run_service(settings, schema=SCHEMA, migrations=MIGRATIONS, grpc_services=grpc_services,
                            on_start=on_start, reset_sessions=False))


if __name__ == "__main__":
    main()
