"""The infrastructure components, in start order."""

from ig_infra.components.base import Component
from ig_infra.components.dex import Dex
from ig_infra.components.identities import Identities
from ig_infra.components.kafka import Kafka
from ig_infra.components.opa import Opa
from ig_infra.components.postgres import Postgres
from ig_infra.components.prometheus import Prometheus
from ig_infra.components.pushgateway import Pushgateway

ALL: tuple[type[Component], ...] = (Identities, Postgres, Kafka, Opa, Pushgateway, Prometheus, Dex)

__all__ = ["ALL", "Component", "Dex", "Identities", "Kafka", "Opa", "Postgres", "Prometheus", "Pushgateway"]
