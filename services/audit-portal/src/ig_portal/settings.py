"""Settings of the Audit Portal, from IG_* environment variables."""

from ig_common.settings import Port, ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "audit-portal"
    http_port: Port = 8080
