"""Settings of the Error-Budget service, from IG_* environment variables."""

from ig_common.settings import GrpcServiceSettings, Port


class Settings(GrpcServiceSettings):
    service_name: str = "burn"
    grpc_port: Port = 50053
    http_port: Port = 8083
