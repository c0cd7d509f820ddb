"""What the stages share: the release, its artifact folders, the evidence collected so far, the summary."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ig_release.settings import Endpoints, Profile


class StageFailed(RuntimeError):
    """A stage could not complete: the flow stops and names the stage and where its log is."""

    def __init__(self, message: str, log: Path | None = None) -> None:
        super().__init__(message)
        self.log = log


@dataclass
class ReleaseContext:
    version: str
    profile: Profile
    artifacts: Path
    endpoints: Endpoints
    evidence: dict[str, list[Path]] = field(default_factory=dict)
    summary: dict[str, str] = field(default_factory=dict)
    shared: dict[str, str] = field(default_factory=dict)  # what one stage hands a later one
    warm: dict[str, Any] = field(default_factory=dict)  # what a stage's warm-up started before the first stage

    def attest_images(self, subjects: Path | None) -> None:
        """The images the release ships (`ig-k8s images --subjects`, `make k8s-up`), attested by the evidence
        stage's provenance beside the bundle's artifacts. Raises ValueError naming the option."""
        if subjects is None:
            return
        if not subjects.is_file():
            raise ValueError(f"--image-subjects {subjects}: no such file")
        self.shared["image_subjects"] = str(subjects.resolve())

    def stage_dir(self, stage: str) -> Path:
        path = self.artifacts / stage
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def logs(self) -> Path:
        path = self.artifacts / "logs"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def add_evidence(self, kind: str, path: Path) -> None:
        """Record an artifact under its evidence-contract type (policies/evidence/release-contract.v1.yaml)."""
        if not path.is_file():
            raise StageFailed(f"expected artifact {path} was not written")
        self.evidence.setdefault(kind, []).append(path)

    def write_evidence_inputs(self, inputs: Path) -> Path:
        """Lay the collected artifacts out as <inputs>/<type>/<file>, the layout `ig-evidence build` reads."""
        shutil.rmtree(inputs, ignore_errors=True)
        for kind, paths in sorted(self.evidence.items()):
            folder = inputs / kind
            folder.mkdir(parents=True, exist_ok=True)
            for path in paths:
                target = folder / path.name
                if target.exists():
                    raise StageFailed(f"two {kind} artifacts are both named {path.name}")
                shutil.copyfile(path, target)
        return inputs
