"""Settings of the Policy Reasoner, from IG_* environment variables."""

from ig_common.settings import GrpcServiceSettings, Port


class Settings(GrpcServiceSettings):
    service_name: str = "policy"
    grpc_port: Port = 50051
    http_port: Port = 8081
