"""Wiring only: settings -> adapters -> servers."""

from ig.migration.v1 import migration_pb2_grpc
from ig_common.grpc_server import GrpcService
from ig_common.service import Runtime, run_process, run_service
from ig_common.settings import load_settings

from ig_migration.api.grpc_service import MigrationServicer
from ig_migration.settings import Settings
from ig_migration.store import MIGRATIONS, SCHEMA


def main() -> None:
    settings = load_settings(Settings)

    def grpc_services(runtime: Runtime) -> list[GrpcService]:
        servicer = MigrationServicer(runtime.pool, settings, runtime.stop)
        return [GrpcService("ig.migration.v1.MigrationService", servicer,
                            migration_pb2_grpc.add_MigrationServiceServicer_to_server)]

    run_process(run_service(settings, schema=SCHEMA, migrations=MIGRATIONS, grpc_services=grpc_services))


if __name__ == "__main__":
    main()
