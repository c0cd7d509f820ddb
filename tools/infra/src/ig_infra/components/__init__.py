"""The infrastructure components, in start order."""

from ig_infra.components.base import Component
from ig_infra.components.kafka import Kafka
from ig_infra.components.opa import Opa
from ig_infra.components.postgres import Postgres

ALL: tuple[type[Component], ...] = (Postgres, Kafka, Opa)

__all__ = ["ALL", "Component", "Kafka", "Opa", "Postgres"]
