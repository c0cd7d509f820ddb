"""Settings of the Evidence + Provenance Ledger, from IG_* environment variables."""

from ig_common.settings import GrpcServiceSettings, Port


class Settings(GrpcServiceSettings):
    service_name: str = "evidence"
    grpc_port: Port = 50052
    http_port: Port = 8082
