"""The migration plan: the brief's YAML schema (change, scope, strategy, checks, backout) extended with what a
blue/green batch change needs to run unattended. Validation errors name the offending field."""

from __future__ import annotations

import hashlib
import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

IDENTIFIER = r"^[a-z_][a-z0-9_]{0,62}$"
QUALIFIED = r"^([a-z_][a-z0-9_]{0,62}\.)?[a-z_][a-z0-9_]{0,62}$"
CHANGE_NAME = r"^[a-z0-9][a-z0-9-]{1,62}$"
_PLAIN_INDEX = re.compile(r"\bcreate\s+(unique\s+)?index\b(?!\s+concurrently)", re.IGNORECASE)


class Check(StrEnum):
    SLO_HEADROOM = "slo-headroom"
    DISK_SPACE = "disk-space"
    LOAD = "load"
    ACA = "aca"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Blue(Strict):
    """The structure serving today."""

    table: Annotated[str, Field(pattern=QUALIFIED)]
    version: Annotated[str, Field(pattern=r"^v[0-9]+$")]


class GreenStep(Strict):
    """One expand statement. Index builds must be CONCURRENTLY so writers on blue never wait on them."""

    name: Annotated[str, Field(min_length=1, max_length=80)]
    sql: Annotated[str, Field(min_length=1)]

    @field_validator("sql")
    @classmethod
    def index_builds_are_concurrent(cls, sql: str) -> str:
        if _PLAIN_INDEX.search(sql):
            raise ValueError("CREATE INDEX must be CREATE INDEX CONCURRENTLY")
        return sql


class Green(Strict):
    """The new structure: a table of the same entity, built by ``steps`` (``{green}``/``{blue}`` placeholders)."""

    table: Annotated[str, Field(pattern=QUALIFIED)]
    version: Annotated[str, Field(pattern=r"^v[0-9]+$")]
    steps: Annotated[list[GreenStep], Field(min_length=1)]


class Entity(Strict):
    key: Annotated[str, Field(pattern=IDENTIFIER)] = "id"
    # A SQL predicate over blue that selects the entities to migrate; "true" means all.
    selector: Annotated[str, Field(min_length=1)] = "true"

    @field_validator("selector")
    @classmethod
    def selector_is_one_predicate(cls, selector: str) -> str:
        if ";" in selector:
            raise ValueError("selector must be a single SQL predicate (no ';')")
        return selector


class Batch(Strict):
    size: Annotated[int, Field(ge=1, le=1_000_000)] = 5000


class Throttle(Strict):
    """gh-ost style: pause the backfill while the database is busy."""

    max_active_backends: Annotated[int, Field(ge=1)] = 64
    max_lock_waits: Annotated[int, Field(ge=0)] = 16
    max_replication_lag_seconds: Annotated[float, Field(ge=0)] = 10.0
    pause_seconds: Annotated[float, Field(gt=0, le=60)] = 0.5


class Gates(Strict):
    max_active_backends: Annotated[int, Field(ge=1)] = 64
    max_lock_waits: Annotated[int, Field(ge=0)] = 16
    max_replication_lag_seconds: Annotated[float, Field(ge=0)] = 10.0
    # Free space must exceed the estimated green size times this factor.
    storage_safety_factor: Annotated[float, Field(ge=1.0)] = 2.0
    min_error_budget_remaining: Annotated[float, Field(ge=0, le=1)] = 0.2
    # The SLO whose budget guards this change (BurnService); empty means the service's worst SLO.
    slo_service: str = ""


class ShadowRead(Strict):
    # Share of entities compared (1.0 = all); sampling is deterministic by key hash.
    sample: Annotated[float, Field(gt=0, le=1)] = 1.0
    chunk: Annotated[int, Field(ge=1)] = 20_000
    max_listed: Annotated[int, Field(ge=1)] = 50


class Cutover(Strict):
    # The stable, versioned view name clients read and write through (pgroll style).
    view: Annotated[str, Field(pattern=QUALIFIED)]
    lock_timeout_ms: Annotated[int, Field(ge=1, le=60_000)] = 2000
    attempts: Annotated[int, Field(ge=1, le=100)] = 5


class MetricSource(StrEnum):
    PROBE = "probe"                    # a SQL probe timed against blue (baseline) and green (canary) side by side
    PG_STAT_STATEMENTS = "pg_stat_statements"  # mean execution time of matching statements per window
    ERROR_RATE = "error_rate"          # rolled-back share of transactions per window (pg_stat_database)
    PROMETHEUS = "prometheus"          # an instant PromQL query per window


class Direction(StrEnum):
    INCREASE = "increase"  # higher is worse (latency, errors)
    DECREASE = "decrease"  # lower is worse (throughput)
    EITHER = "either"


class AcaMetric(Strict):
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
    source: MetricSource
    query: str = ""
    direction: Direction = Direction.INCREASE
    critical: bool = False
    # Relative change tolerated even when the difference is significant (Kayenta effect size), and an absolute
    # floor under which differences are noise.
    tolerance: Annotated[float, Field(ge=0)] = 0.5
    floor: Annotated[float, Field(ge=0)] = 0.0

    @model_validator(mode="after")
    def query_when_needed(self) -> AcaMetric:
        if self.source in (MetricSource.PROBE, MetricSource.PG_STAT_STATEMENTS, MetricSource.PROMETHEUS) \
                and not self.query.strip():
            raise ValueError(f"query is required for source {self.source.value}")
        if self.source is MetricSource.PROBE and "{table}" not in self.query:
            raise ValueError("a probe query must name the table as {table}")
        return self


class Aca(Strict):
    threshold: Annotated[float, Field(ge=0, le=1)] = 0.9
    confidence: Annotated[float, Field(gt=0.5, lt=1)] = 0.95
    windows: Annotated[int, Field(ge=3, le=500)] = 12
    window_seconds: Annotated[float, Field(gt=0, le=600)] = 0.5
    probe_samples: Annotated[int, Field(ge=3, le=10_000)] = 40
    metrics: Annotated[list[AcaMetric], Field(min_length=1)]

    @field_validator("metrics")
    @classmethod
    def names_unique(cls, metrics: list[AcaMetric]) -> list[AcaMetric]:
        names = [m.name for m in metrics]
        if len(set(names)) != len(names):
            raise ValueError("metric names must be unique")
        return metrics


class Contract(Strict):
    drop_blue: bool = False
    grace_seconds: Annotated[float, Field(ge=0)] = 3600.0


class KubernetesSwitch(Strict):
    """Optional: also flip a Service selector from the blue to the green Deployment (see k8s.py)."""

    enabled: bool = False
    namespace: str = "default"
    service: str = ""
    selector_key: str = "version"


class Plan(Strict):
    change: Annotated[str, Field(pattern=CHANGE_NAME)]
    scope: Annotated[str, Field(pattern=QUALIFIED)]
    strategy: Literal["blue-green"]
    description: str = ""
    blue: Blue
    green: Green
    entity: Entity = Entity()
    batch: Batch = Batch()
    throttle: Throttle = Throttle()
    checks: Annotated[list[Check], Field(min_length=1)]
    gates: Gates = Gates()
    shadow_read: ShadowRead = ShadowRead()
    cutover: Cutover
    aca: Aca | None = None
    backout: Annotated[str, Field(pattern=CHANGE_NAME)]
    contract: Contract = Contract()
    kubernetes: KubernetesSwitch = KubernetesSwitch()

    @model_validator(mode="after")
    def consistent(self) -> Plan:
        if self.blue.table == self.green.table:
            raise ValueError("green.table must differ from blue.table")
        if self.blue.version == self.green.version:
            raise ValueError("green.version must differ from blue.version")
        if Check.ACA in self.checks and self.aca is None:
            raise ValueError("aca: required when checks include aca")
        if self.cutover.view in (self.blue.table, self.green.table):
            raise ValueError("cutover.view must be a view name distinct from both tables")
        return self


class PlanError(ValueError):
    """A plan that cannot run; ``fields`` names each offending field (dotted path) with the reason."""

    def __init__(self, fields: list[tuple[str, str]]) -> None:
        self.fields = fields
        super().__init__("; ".join(f"{name}: {reason}" for name, reason in fields))


def plan_from_mapping(document: Any) -> Plan:
    if not isinstance(document, dict):
        raise PlanError([("<plan>", "the plan must be a YAML mapping")])
    try:
        return Plan.model_validate(document)
    except ValidationError as error:
        found: list[tuple[str, str]] = []
        for item in error.errors():
            path = ".".join(str(part) for part in item["loc"]) or "<plan>"
            found.append((path, str(item["msg"]).removeprefix("Value error, ")))
        raise PlanError(found) from error


def plan_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
