"""Wiring only: settings -> key, state, witness -> the HTTPS API and the plain health listener."""

from __future__ import annotations

import asyncio
import sys

import structlog
from ig_common.authz import AuthorizationTable, TableError
from ig_common.authz.http_guard import guarded_by_table
from ig_common.http_server import build_api_app, build_http_app, serve_http
from ig_common.lifecycle import stop_on_signals
from ig_common.logging import configure_logging
from ig_common.service import run_process
from ig_common.settings import SettingsError, load_settings
from ig_common.tls import IdentityError

from ig_evidence.api.witness_http import witness_router
from ig_evidence.store.signing_key import SigningKeyProblem, read_ed25519_key
from ig_evidence.store.witness_state import WitnessState
from ig_evidence.witness.cosigner import Witness
from ig_evidence.witness.settings import WitnessSettings

log = structlog.get_logger(__name__)


def _fail(setting: str, error: Exception) -> SettingsError:
    print(f"invalid setting {setting}: {error}", file=sys.stderr)
    return SettingsError(2)


async def serve(settings: WitnessSettings) -> None:
    configure_logging(settings.service_name, settings.log_level, settings.region)
    try:
        certificate = settings.workload_certificate()
    except IdentityError as error:
        raise _fail("IG_TLS_DIR", error) from error
    try:
        table = AuthorizationTable.load(settings.authz_table)
    except TableError as error:
        raise _fail("IG_AUTHZ_TABLE", error) from error
    try:
        key = read_ed25519_key(settings.key_file(), "the witness key")
    except SigningKeyProblem as error:
        raise _fail("IG_WITNESS_KEY_PATH", error) from error
    try:
        state = WitnessState(settings.witness_state_path)
    except OSError as error:
        raise _fail("IG_WITNESS_STATE_PATH", error) from error
    witness = Witness(settings.witness_name, key, settings.logs(), state)
    stop = stop_on_signals()
    api = build_api_app("witness")
    api.include_router(witness_router(witness))
    guarded = guarded_by_table(api, table, certificate)
    probes = build_http_app(settings.service_name)
    log.info("witness_started", name=settings.witness_name, verifier_key=witness.cosigner.verifier_key,
             logs=[entry.origin for entry in settings.logs()], port=settings.witness_port)
    try:
        await asyncio.gather(serve_http(guarded, settings.http_host, settings.witness_port, stop, tls=certificate),
                             serve_http(probes, settings.http_host, settings.http_port, stop))
    finally:
        stop.set()
        state.close()


def main() -> None:
    run_process(serve(load_settings(WitnessSettings)))


if __name__ == "__main__":
    main()
