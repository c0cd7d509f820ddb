from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RegisterBundleRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: BundleHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[BundleHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class BundleHeader(_message.Message):
    __slots__ = ("release", "tenant")
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    release: str
    tenant: str
    def __init__(self, release: _Optional[str] = ..., tenant: _Optional[str] = ...) -> None: ...

class RegisterBundleResponse(_message.Message):
    __slots__ = ("release", "manifest_sha256", "ledger_seq", "already_registered")
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_SHA256_FIELD_NUMBER: _ClassVar[int]
    LEDGER_SEQ_FIELD_NUMBER: _ClassVar[int]
    ALREADY_REGISTERED_FIELD_NUMBER: _ClassVar[int]
    release: str
    manifest_sha256: str
    ledger_seq: int
    already_registered: bool
    def __init__(self, release: _Optional[str] = ..., manifest_sha256: _Optional[str] = ..., ledger_seq: _Optional[int] = ..., already_registered: _Optional[bool] = ...) -> None: ...

class Release(_message.Message):
    __slots__ = ("name", "tenant", "manifest_sha256", "complete")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_SHA256_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    name: str
    tenant: str
    manifest_sha256: str
    complete: bool
    def __init__(self, name: _Optional[str] = ..., tenant: _Optional[str] = ..., manifest_sha256: _Optional[str] = ..., complete: _Optional[bool] = ...) -> None: ...

class ListReleasesRequest(_message.Message):
    __slots__ = ("tenant",)
    TENANT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    def __init__(self, tenant: _Optional[str] = ...) -> None: ...

class ListReleasesResponse(_message.Message):
    __slots__ = ("releases",)
    RELEASES_FIELD_NUMBER: _ClassVar[int]
    releases: _containers.RepeatedCompositeFieldContainer[Release]
    def __init__(self, releases: _Optional[_Iterable[_Union[Release, _Mapping]]] = ...) -> None: ...

class Artifact(_message.Message):
    __slots__ = ("id", "release", "name", "type", "media_type", "size", "sha256")
    ID_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    id: str
    release: str
    name: str
    type: str
    media_type: str
    size: int
    sha256: str
    def __init__(self, id: _Optional[str] = ..., release: _Optional[str] = ..., name: _Optional[str] = ..., type: _Optional[str] = ..., media_type: _Optional[str] = ..., size: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class ListArtifactsRequest(_message.Message):
    __slots__ = ("release", "tenant")
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    release: str
    tenant: str
    def __init__(self, release: _Optional[str] = ..., tenant: _Optional[str] = ...) -> None: ...

class ListArtifactsResponse(_message.Message):
    __slots__ = ("artifacts",)
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    artifacts: _containers.RepeatedCompositeFieldContainer[Artifact]
    def __init__(self, artifacts: _Optional[_Iterable[_Union[Artifact, _Mapping]]] = ...) -> None: ...

class GetArtifactRequest(_message.Message):
    __slots__ = ("artifact_id", "tenant")
    ARTIFACT_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    artifact_id: str
    tenant: str
    def __init__(self, artifact_id: _Optional[str] = ..., tenant: _Optional[str] = ...) -> None: ...

class GetArtifactResponse(_message.Message):
    __slots__ = ("artifact", "chunk")
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    artifact: Artifact
    chunk: bytes
    def __init__(self, artifact: _Optional[_Union[Artifact, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class CompletenessRequest(_message.Message):
    __slots__ = ("release", "tenant")
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    release: str
    tenant: str
    def __init__(self, release: _Optional[str] = ..., tenant: _Optional[str] = ...) -> None: ...

class CompletenessResponse(_message.Message):
    __slots__ = ("complete", "missing", "contract_version")
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    CONTRACT_VERSION_FIELD_NUMBER: _ClassVar[int]
    complete: bool
    missing: _containers.RepeatedScalarFieldContainer[str]
    contract_version: str
    def __init__(self, complete: _Optional[bool] = ..., missing: _Optional[_Iterable[str]] = ..., contract_version: _Optional[str] = ...) -> None: ...

class GetManifestRequest(_message.Message):
    __slots__ = ("release", "tenant")
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    release: str
    tenant: str
    def __init__(self, release: _Optional[str] = ..., tenant: _Optional[str] = ...) -> None: ...

class GetManifestResponse(_message.Message):
    __slots__ = ("release", "manifest_sha256", "manifest", "signature", "sigstore_bundle", "public_key", "signer_name", "signer_key_id")
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_SHA256_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    SIGSTORE_BUNDLE_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    SIGNER_NAME_FIELD_NUMBER: _ClassVar[int]
    SIGNER_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    release: str
    manifest_sha256: str
    manifest: bytes
    signature: bytes
    sigstore_bundle: bytes
    public_key: bytes
    signer_name: str
    signer_key_id: str
    def __init__(self, release: _Optional[str] = ..., manifest_sha256: _Optional[str] = ..., manifest: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., sigstore_bundle: _Optional[bytes] = ..., public_key: _Optional[bytes] = ..., signer_name: _Optional[str] = ..., signer_key_id: _Optional[str] = ...) -> None: ...

class GetVerifyKitRequest(_message.Message):
    __slots__ = ("release", "tenant")
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    release: str
    tenant: str
    def __init__(self, release: _Optional[str] = ..., tenant: _Optional[str] = ...) -> None: ...

class VerifyKitInfo(_message.Message):
    __slots__ = ("file_name", "size", "sha256", "signer_name", "signer_key_id", "head_tree_size")
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIGNER_NAME_FIELD_NUMBER: _ClassVar[int]
    SIGNER_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    HEAD_TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    file_name: str
    size: int
    sha256: str
    signer_name: str
    signer_key_id: str
    head_tree_size: int
    def __init__(self, file_name: _Optional[str] = ..., size: _Optional[int] = ..., sha256: _Optional[str] = ..., signer_name: _Optional[str] = ..., signer_key_id: _Optional[str] = ..., head_tree_size: _Optional[int] = ...) -> None: ...

class GetVerifyKitResponse(_message.Message):
    __slots__ = ("info", "chunk")
    INFO_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    info: VerifyKitInfo
    chunk: bytes
    def __init__(self, info: _Optional[_Union[VerifyKitInfo, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class ListBundleHistoryRequest(_message.Message):
    __slots__ = ("release", "tenant")
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    release: str
    tenant: str
    def __init__(self, release: _Optional[str] = ..., tenant: _Optional[str] = ...) -> None: ...

class BundleVersion(_message.Message):
    __slots__ = ("manifest_sha256", "ledger_seq", "registered_at", "complete", "missing", "contract_version", "signer_name", "signer_key_id")
    MANIFEST_SHA256_FIELD_NUMBER: _ClassVar[int]
    LEDGER_SEQ_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_AT_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    CONTRACT_VERSION_FIELD_NUMBER: _ClassVar[int]
    SIGNER_NAME_FIELD_NUMBER: _ClassVar[int]
    SIGNER_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    manifest_sha256: str
    ledger_seq: int
    registered_at: str
    complete: bool
    missing: _containers.RepeatedScalarFieldContainer[str]
    contract_version: str
    signer_name: str
    signer_key_id: str
    def __init__(self, manifest_sha256: _Optional[str] = ..., ledger_seq: _Optional[int] = ..., registered_at: _Optional[str] = ..., complete: _Optional[bool] = ..., missing: _Optional[_Iterable[str]] = ..., contract_version: _Optional[str] = ..., signer_name: _Optional[str] = ..., signer_key_id: _Optional[str] = ...) -> None: ...

class ListBundleHistoryResponse(_message.Message):
    __slots__ = ("bundles",)
    BUNDLES_FIELD_NUMBER: _ClassVar[int]
    bundles: _containers.RepeatedCompositeFieldContainer[BundleVersion]
    def __init__(self, bundles: _Optional[_Iterable[_Union[BundleVersion, _Mapping]]] = ...) -> None: ...
