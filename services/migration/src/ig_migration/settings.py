"""Settings of the Migration Orchestrator, from IG_* environment variables."""

from ig_common.settings import GrpcServiceSettings, Port


class Settings(GrpcServiceSettings):
    service_name: str = "migration"
    grpc_port: Port = 50054
    http_port: Port = 8084
