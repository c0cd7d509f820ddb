import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Result(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESULT_UNSPECIFIED: _ClassVar[Result]
    RESULT_ALLOW: _ClassVar[Result]
    RESULT_DENY: _ClassVar[Result]
    RESULT_STEP_UP: _ClassVar[Result]
RESULT_UNSPECIFIED: Result
RESULT_ALLOW: Result
RESULT_DENY: Result
RESULT_STEP_UP: Result

class Actor(_message.Message):
    __slots__ = ("id", "tenant", "roles", "purposes")
    ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    PURPOSES_FIELD_NUMBER: _ClassVar[int]
    id: str
    tenant: str
    roles: _containers.RepeatedScalarFieldContainer[str]
    purposes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., tenant: _Optional[str] = ..., roles: _Optional[_Iterable[str]] = ..., purposes: _Optional[_Iterable[str]] = ...) -> None: ...

class Resource(_message.Message):
    __slots__ = ("type", "id", "tenant", "purpose", "region", "classification")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    CLASSIFICATION_FIELD_NUMBER: _ClassVar[int]
    type: str
    id: str
    tenant: str
    purpose: str
    region: str
    classification: str
    def __init__(self, type: _Optional[str] = ..., id: _Optional[str] = ..., tenant: _Optional[str] = ..., purpose: _Optional[str] = ..., region: _Optional[str] = ..., classification: _Optional[str] = ...) -> None: ...

class Context(_message.Message):
    __slots__ = ("time", "network_zone", "device_trust", "session_risk", "auth_level", "region", "break_glass")
    TIME_FIELD_NUMBER: _ClassVar[int]
    NETWORK_ZONE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_TRUST_FIELD_NUMBER: _ClassVar[int]
    SESSION_RISK_FIELD_NUMBER: _ClassVar[int]
    AUTH_LEVEL_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    BREAK_GLASS_FIELD_NUMBER: _ClassVar[int]
    time: _timestamp_pb2.Timestamp
    network_zone: str
    device_trust: str
    session_risk: int
    auth_level: str
    region: str
    break_glass: BreakGlass
    def __init__(self, time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., network_zone: _Optional[str] = ..., device_trust: _Optional[str] = ..., session_risk: _Optional[int] = ..., auth_level: _Optional[str] = ..., region: _Optional[str] = ..., break_glass: _Optional[_Union[BreakGlass, _Mapping]] = ...) -> None: ...

class BreakGlass(_message.Message):
    __slots__ = ("justification", "expires_at", "grant")
    JUSTIFICATION_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    GRANT_FIELD_NUMBER: _ClassVar[int]
    justification: str
    expires_at: _timestamp_pb2.Timestamp
    grant: str
    def __init__(self, justification: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., grant: _Optional[str] = ...) -> None: ...

class DecideRequest(_message.Message):
    __slots__ = ("actor", "resource", "action", "context")
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    actor: Actor
    resource: Resource
    action: str
    context: Context
    def __init__(self, actor: _Optional[_Union[Actor, _Mapping]] = ..., resource: _Optional[_Union[Resource, _Mapping]] = ..., action: _Optional[str] = ..., context: _Optional[_Union[Context, _Mapping]] = ...) -> None: ...

class Reason(_message.Message):
    __slots__ = ("rule_id", "message")
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    rule_id: str
    message: str
    def __init__(self, rule_id: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class DecideResponse(_message.Message):
    __slots__ = ("decision_id", "result", "rule_id", "explanation", "reasons", "obligations", "policy_revision", "evaluated_at")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    OBLIGATIONS_FIELD_NUMBER: _ClassVar[int]
    POLICY_REVISION_FIELD_NUMBER: _ClassVar[int]
    EVALUATED_AT_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    result: Result
    rule_id: str
    explanation: str
    reasons: _containers.RepeatedCompositeFieldContainer[Reason]
    obligations: _containers.RepeatedScalarFieldContainer[str]
    policy_revision: str
    evaluated_at: _timestamp_pb2.Timestamp
    def __init__(self, decision_id: _Optional[str] = ..., result: _Optional[_Union[Result, str]] = ..., rule_id: _Optional[str] = ..., explanation: _Optional[str] = ..., reasons: _Optional[_Iterable[_Union[Reason, _Mapping]]] = ..., obligations: _Optional[_Iterable[str]] = ..., policy_revision: _Optional[str] = ..., evaluated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class BatchDecideRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[DecideRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[DecideRequest, _Mapping]]] = ...) -> None: ...

class BatchDecideResponse(_message.Message):
    __slots__ = ("responses",)
    RESPONSES_FIELD_NUMBER: _ClassVar[int]
    responses: _containers.RepeatedCompositeFieldContainer[DecideResponse]
    def __init__(self, responses: _Optional[_Iterable[_Union[DecideResponse, _Mapping]]] = ...) -> None: ...
