import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SubmitRequest(_message.Message):
    __slots__ = ("plan_yaml", "signature")
    PLAN_YAML_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    plan_yaml: str
    signature: str
    def __init__(self, plan_yaml: _Optional[str] = ..., signature: _Optional[str] = ...) -> None: ...

class SubmitResponse(_message.Message):
    __slots__ = ("change", "plan_sha256", "submitted_by")
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    PLAN_SHA256_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_BY_FIELD_NUMBER: _ClassVar[int]
    change: str
    plan_sha256: str
    submitted_by: str
    def __init__(self, change: _Optional[str] = ..., plan_sha256: _Optional[str] = ..., submitted_by: _Optional[str] = ...) -> None: ...

class GateResult(_message.Message):
    __slots__ = ("gate", "passed", "measured", "limit", "detail")
    GATE_FIELD_NUMBER: _ClassVar[int]
    PASSED_FIELD_NUMBER: _ClassVar[int]
    MEASURED_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    gate: str
    passed: bool
    measured: float
    limit: float
    detail: str
    def __init__(self, gate: _Optional[str] = ..., passed: _Optional[bool] = ..., measured: _Optional[float] = ..., limit: _Optional[float] = ..., detail: _Optional[str] = ...) -> None: ...

class PreflightRequest(_message.Message):
    __slots__ = ("change",)
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    change: str
    def __init__(self, change: _Optional[str] = ...) -> None: ...

class PreflightResponse(_message.Message):
    __slots__ = ("passed", "gates")
    PASSED_FIELD_NUMBER: _ClassVar[int]
    GATES_FIELD_NUMBER: _ClassVar[int]
    passed: bool
    gates: _containers.RepeatedCompositeFieldContainer[GateResult]
    def __init__(self, passed: _Optional[bool] = ..., gates: _Optional[_Iterable[_Union[GateResult, _Mapping]]] = ...) -> None: ...

class RunRequest(_message.Message):
    __slots__ = ("change", "until_phase", "signature")
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_PHASE_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    change: str
    until_phase: str
    signature: str
    def __init__(self, change: _Optional[str] = ..., until_phase: _Optional[str] = ..., signature: _Optional[str] = ...) -> None: ...

class RunResponse(_message.Message):
    __slots__ = ("change", "phase", "aca_score", "backed_out", "report_path", "detail", "approved_by", "run_id")
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    ACA_SCORE_FIELD_NUMBER: _ClassVar[int]
    BACKED_OUT_FIELD_NUMBER: _ClassVar[int]
    REPORT_PATH_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    APPROVED_BY_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    change: str
    phase: str
    aca_score: float
    backed_out: bool
    report_path: str
    detail: str
    approved_by: str
    run_id: str
    def __init__(self, change: _Optional[str] = ..., phase: _Optional[str] = ..., aca_score: _Optional[float] = ..., backed_out: _Optional[bool] = ..., report_path: _Optional[str] = ..., detail: _Optional[str] = ..., approved_by: _Optional[str] = ..., run_id: _Optional[str] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ("change", "follow")
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    change: str
    follow: bool
    def __init__(self, change: _Optional[str] = ..., follow: _Optional[bool] = ...) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("change", "phase", "done", "total", "rows_per_second", "eta_seconds", "updated_at", "state", "detail", "run_id")
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    ROWS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    change: str
    phase: str
    done: int
    total: int
    rows_per_second: float
    eta_seconds: float
    updated_at: _timestamp_pb2.Timestamp
    state: str
    detail: str
    run_id: str
    def __init__(self, change: _Optional[str] = ..., phase: _Optional[str] = ..., done: _Optional[int] = ..., total: _Optional[int] = ..., rows_per_second: _Optional[float] = ..., eta_seconds: _Optional[float] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., state: _Optional[str] = ..., detail: _Optional[str] = ..., run_id: _Optional[str] = ...) -> None: ...

class BackoutRequest(_message.Message):
    __slots__ = ("change", "batches")
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    change: str
    batches: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, change: _Optional[str] = ..., batches: _Optional[_Iterable[int]] = ...) -> None: ...

class BackoutResponse(_message.Message):
    __slots__ = ("change", "validated", "detail", "blue_rows", "green_rows", "blue_checksum", "green_checksum")
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    VALIDATED_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    BLUE_ROWS_FIELD_NUMBER: _ClassVar[int]
    GREEN_ROWS_FIELD_NUMBER: _ClassVar[int]
    BLUE_CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    GREEN_CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    change: str
    validated: bool
    detail: str
    blue_rows: int
    green_rows: int
    blue_checksum: str
    green_checksum: str
    def __init__(self, change: _Optional[str] = ..., validated: _Optional[bool] = ..., detail: _Optional[str] = ..., blue_rows: _Optional[int] = ..., green_rows: _Optional[int] = ..., blue_checksum: _Optional[str] = ..., green_checksum: _Optional[str] = ...) -> None: ...
