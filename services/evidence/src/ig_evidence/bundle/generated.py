"""Evidence ig-evidence generates itself: the SBOM, schema snapshot + diff, and the DSSE-signed provenance."""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import json
import os
import pkgutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

from google.protobuf import descriptor as pb_descriptor

from ig_evidence.bundle.archive import is_safe_member
from ig_evidence.domain import schema_diff
from ig_evidence.domain.spdx import PackageInfo, spdx_document

SNAPSHOT_NAME = "schema-snapshot.json"
PRODUCT = "maestro-conductor"


def python_environment_sbom(release: str, created: str) -> dict[str, Any]:
    packages = []
    for dist in importlib.metadata.distributions():
        meta = dist.metadata
        name = meta["Name"]
        if not name:
            continue
        packages.append(PackageInfo(name=name, version=dist.version or "", license=(meta["License"] or "").strip(),
                                    homepage=(meta["Home-page"] or "").strip()))
    return spdx_document(product=PRODUCT, release=release, created=created, packages=packages)


def _message_elements(message: pb_descriptor.Descriptor) -> list[str]:
    lines = [f"message {message.full_name}"]
    for field in message.fields:
        target = field.message_type or field.enum_type
        kind = target.full_name if target is not None else str(field.type)
        repeated = " repeated" if field.is_repeated else ""  # type: ignore[attr-defined]
        lines.append(f"field {message.full_name}.{field.name} = {field.number} {kind}{repeated}")
    for nested in message.nested_types:
        lines.extend(_message_elements(nested))
    for enum in message.enum_types:
        lines.extend(_enum_elements(enum))
    return lines


def _enum_elements(enum: pb_descriptor.EnumDescriptor) -> list[str]:
    return [f"enum {enum.full_name}", *(f"enum_value {enum.full_name}.{v.name} = {v.number}" for v in enum.values)]


def proto_elements() -> list[str]:
    """Every message, field, enum value, service and rpc of the generated ig.* contracts."""
    import ig

    lines: list[str] = []
    for module_info in pkgutil.walk_packages(ig.__path__, "ig."):
        if not module_info.name.endswith("_pb2"):
            continue
        file = importlib.import_module(module_info.name).DESCRIPTOR
        for message in file.message_types_by_name.values():
            lines.extend(_message_elements(message))
        for enum in file.enum_types_by_name.values():
            lines.extend(_enum_elements(enum))
        for service in file.services_by_name.values():
            lines.append(f"service {service.full_name}")
            for method in service.methods:
                lines.append(f"rpc {service.full_name}.{method.name}({method.input_type.full_name}) returns "
                             f"({method.output_type.full_name})")
    return lines


def sql_migrations(repo_root: Path) -> dict[str, str]:
    found = {}
    patterns = ["services/*/src/*/store/migrations/*.sql", "libs/ig-common/src/ig_common/migrations/*.sql"]
    for pattern in patterns:
        for path in repo_root.glob(pattern):
            component = path.parent.parent.parent.name if "services" in path.parts else "ig_common"
            found[f"{component}/{path.name}"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def read_previous_snapshot(previous: Path) -> tuple[dict[str, Any], str]:
    """The schema snapshot stored in a previous release's bundle (a tarball, or a directory holding one)."""
    archive = previous
    if previous.is_dir():
        candidates = sorted(previous.glob("*.tar.gz")) + sorted(previous.glob("*.tar"))
        if not candidates:
            raise ValueError(f"--previous {previous}: no bundle tarball in the directory")
        archive = candidates[0]
    with tarfile.open(archive, "r:*") as tar:
        manifest: dict[str, Any] | None = None
        snapshot: dict[str, Any] | None = None
        for member in tar:
            if not is_safe_member(member):
                continue
            if member.name.endswith("/" + SNAPSHOT_NAME) or member.name == "manifest.json":
                handle = tar.extractfile(member)
                assert handle is not None
                document = json.loads(handle.read())
                if member.name == "manifest.json":
                    manifest = document
                else:
                    snapshot = document
    if snapshot is None:
        raise ValueError(f"--previous {previous}: the bundle holds no {SNAPSHOT_NAME}")
    return snapshot, str(manifest.get("release", "unknown")) if manifest else "unknown"


def schema_documents(repo_root: Path, previous: Path | None) -> tuple[dict[str, Any], dict[str, Any]]:
    current = schema_diff.snapshot(proto_elements=proto_elements(), sql_migrations=sql_migrations(repo_root))
    before, previous_release = (None, "") if previous is None else read_previous_snapshot(previous)
    return current, schema_diff.diff(before, current, previous_release=previous_release)


def source_revision(repo_root: Path) -> dict[str, str]:
    uri = os.environ.get("GITHUB_SERVER_URL", "") + "/" + os.environ.get("GITHUB_REPOSITORY", "")
    commit = os.environ.get("GITHUB_SHA", "")
    if not commit:
        result = subprocess.run(["git", "-C", str(repo_root), "rev-parse", "HEAD"], capture_output=True, text=True)
        commit = result.stdout.strip() if result.returncode == 0 else ""
    return {"uri": f"git+{uri}" if uri != "/" else f"git+file://{repo_root}", "commit": commit}


def builder_id() -> str:
    if os.environ.get("GITHUB_WORKFLOW_REF"):
        return f"{os.environ.get('GITHUB_SERVER_URL', 'https://github.com')}/{os.environ['GITHUB_WORKFLOW_REF']}"
    return "https://maestro-conductor.dev/ig-evidence/local"
