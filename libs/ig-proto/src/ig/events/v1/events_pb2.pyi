import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PolicyDecision(_message.Message):
    __slots__ = ("decision_id", "rule_id", "result", "explanation", "tenant", "purpose", "action", "subject_hash", "input_hash", "policy_revision", "latency_ms", "ts", "break_glass")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_HASH_FIELD_NUMBER: _ClassVar[int]
    INPUT_HASH_FIELD_NUMBER: _ClassVar[int]
    POLICY_REVISION_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    BREAK_GLASS_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    rule_id: str
    result: str
    explanation: str
    tenant: str
    purpose: str
    action: str
    subject_hash: str
    input_hash: str
    policy_revision: str
    latency_ms: float
    ts: _timestamp_pb2.Timestamp
    break_glass: BreakGlassUse
    def __init__(self, decision_id: _Optional[str] = ..., rule_id: _Optional[str] = ..., result: _Optional[str] = ..., explanation: _Optional[str] = ..., tenant: _Optional[str] = ..., purpose: _Optional[str] = ..., action: _Optional[str] = ..., subject_hash: _Optional[str] = ..., input_hash: _Optional[str] = ..., policy_revision: _Optional[str] = ..., latency_ms: _Optional[float] = ..., ts: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., break_glass: _Optional[_Union[BreakGlassUse, _Mapping]] = ...) -> None: ...

class BreakGlassUse(_message.Message):
    __slots__ = ("approver", "approver_key_id", "jti", "expires_at", "rejection")
    APPROVER_FIELD_NUMBER: _ClassVar[int]
    APPROVER_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    JTI_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    REJECTION_FIELD_NUMBER: _ClassVar[int]
    approver: str
    approver_key_id: str
    jti: str
    expires_at: _timestamp_pb2.Timestamp
    rejection: str
    def __init__(self, approver: _Optional[str] = ..., approver_key_id: _Optional[str] = ..., jti: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., rejection: _Optional[str] = ...) -> None: ...

class BundleRegistered(_message.Message):
    __slots__ = ("release", "tenant", "manifest_sha256", "ledger_seq", "complete")
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_SHA256_FIELD_NUMBER: _ClassVar[int]
    LEDGER_SEQ_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    release: str
    tenant: str
    manifest_sha256: str
    ledger_seq: int
    complete: bool
    def __init__(self, release: _Optional[str] = ..., tenant: _Optional[str] = ..., manifest_sha256: _Optional[str] = ..., ledger_seq: _Optional[int] = ..., complete: _Optional[bool] = ...) -> None: ...

class LedgerEntryAppended(_message.Message):
    __slots__ = ("seq", "kind", "subject", "entry_hash")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    ENTRY_HASH_FIELD_NUMBER: _ClassVar[int]
    seq: int
    kind: str
    subject: str
    entry_hash: str
    def __init__(self, seq: _Optional[int] = ..., kind: _Optional[str] = ..., subject: _Optional[str] = ..., entry_hash: _Optional[str] = ...) -> None: ...

class AuditAccess(_message.Message):
    __slots__ = ("user", "tenant", "action", "object", "download_id", "request_sha256", "ledger_seq")
    USER_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    DOWNLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_SHA256_FIELD_NUMBER: _ClassVar[int]
    LEDGER_SEQ_FIELD_NUMBER: _ClassVar[int]
    user: str
    tenant: str
    action: str
    object: str
    download_id: str
    request_sha256: str
    ledger_seq: int
    def __init__(self, user: _Optional[str] = ..., tenant: _Optional[str] = ..., action: _Optional[str] = ..., object: _Optional[str] = ..., download_id: _Optional[str] = ..., request_sha256: _Optional[str] = ..., ledger_seq: _Optional[int] = ...) -> None: ...

class BurnTransition(_message.Message):
    __slots__ = ("slo", "service", "from_state", "to_state", "monthly_budget_consumed", "reason")
    SLO_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    FROM_STATE_FIELD_NUMBER: _ClassVar[int]
    TO_STATE_FIELD_NUMBER: _ClassVar[int]
    MONTHLY_BUDGET_CONSUMED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    slo: str
    service: str
    from_state: str
    to_state: str
    monthly_budget_consumed: float
    reason: str
    def __init__(self, slo: _Optional[str] = ..., service: _Optional[str] = ..., from_state: _Optional[str] = ..., to_state: _Optional[str] = ..., monthly_budget_consumed: _Optional[float] = ..., reason: _Optional[str] = ...) -> None: ...

class FlagChanged(_message.Message):
    __slots__ = ("key", "old_value", "new_value", "changed_by", "reason")
    KEY_FIELD_NUMBER: _ClassVar[int]
    OLD_VALUE_FIELD_NUMBER: _ClassVar[int]
    NEW_VALUE_FIELD_NUMBER: _ClassVar[int]
    CHANGED_BY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    key: str
    old_value: _struct_pb2.Value
    new_value: _struct_pb2.Value
    changed_by: str
    reason: str
    def __init__(self, key: _Optional[str] = ..., old_value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., new_value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., changed_by: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class Incident(_message.Message):
    __slots__ = ("incident_id", "slo", "service", "status", "summary")
    INCIDENT_ID_FIELD_NUMBER: _ClassVar[int]
    SLO_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    incident_id: str
    slo: str
    service: str
    status: str
    summary: str
    def __init__(self, incident_id: _Optional[str] = ..., slo: _Optional[str] = ..., service: _Optional[str] = ..., status: _Optional[str] = ..., summary: _Optional[str] = ...) -> None: ...

class MigrationPhaseChanged(_message.Message):
    __slots__ = ("change", "from_phase", "to_phase", "detail", "run_id")
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    FROM_PHASE_FIELD_NUMBER: _ClassVar[int]
    TO_PHASE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    change: str
    from_phase: str
    to_phase: str
    detail: str
    run_id: str
    def __init__(self, change: _Optional[str] = ..., from_phase: _Optional[str] = ..., to_phase: _Optional[str] = ..., detail: _Optional[str] = ..., run_id: _Optional[str] = ...) -> None: ...

class ServiceStarted(_message.Message):
    __slots__ = ("service", "version", "region", "attributes")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    service: str
    version: str
    region: str
    attributes: _struct_pb2.Struct
    def __init__(self, service: _Optional[str] = ..., version: _Optional[str] = ..., region: _Optional[str] = ..., attributes: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...
