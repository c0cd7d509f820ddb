import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetBurnRequest(_message.Message):
    __slots__ = ("service",)
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    service: str
    def __init__(self, service: _Optional[str] = ...) -> None: ...

class BurnRate(_message.Message):
    __slots__ = ("window", "rate")
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    RATE_FIELD_NUMBER: _ClassVar[int]
    window: str
    rate: float
    def __init__(self, window: _Optional[str] = ..., rate: _Optional[float] = ...) -> None: ...

class SloBurn(_message.Message):
    __slots__ = ("slo", "service", "objective", "monthly_budget_consumed", "weekly_budget_consumed", "remaining_budget", "burn_rates", "throttled", "stale", "evaluated_at")
    SLO_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    MONTHLY_BUDGET_CONSUMED_FIELD_NUMBER: _ClassVar[int]
    WEEKLY_BUDGET_CONSUMED_FIELD_NUMBER: _ClassVar[int]
    REMAINING_BUDGET_FIELD_NUMBER: _ClassVar[int]
    BURN_RATES_FIELD_NUMBER: _ClassVar[int]
    THROTTLED_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    EVALUATED_AT_FIELD_NUMBER: _ClassVar[int]
    slo: str
    service: str
    objective: float
    monthly_budget_consumed: float
    weekly_budget_consumed: float
    remaining_budget: float
    burn_rates: _containers.RepeatedCompositeFieldContainer[BurnRate]
    throttled: bool
    stale: bool
    evaluated_at: _timestamp_pb2.Timestamp
    def __init__(self, slo: _Optional[str] = ..., service: _Optional[str] = ..., objective: _Optional[float] = ..., monthly_budget_consumed: _Optional[float] = ..., weekly_budget_consumed: _Optional[float] = ..., remaining_budget: _Optional[float] = ..., burn_rates: _Optional[_Iterable[_Union[BurnRate, _Mapping]]] = ..., throttled: _Optional[bool] = ..., stale: _Optional[bool] = ..., evaluated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetBurnResponse(_message.Message):
    __slots__ = ("slos",)
    SLOS_FIELD_NUMBER: _ClassVar[int]
    slos: _containers.RepeatedCompositeFieldContainer[SloBurn]
    def __init__(self, slos: _Optional[_Iterable[_Union[SloBurn, _Mapping]]] = ...) -> None: ...
