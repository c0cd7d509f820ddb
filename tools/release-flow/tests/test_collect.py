"""The job's `collect` stage: evidence other jobs produced, typed by folder (`<type>/` or `evidence-<type>/`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ig_release.context import ReleaseContext, StageFailed
from ig_release.release_job import collect
from ig_release.settings import PROFILES, Endpoints


def context(tmp_path: Path) -> ReleaseContext:
    return ReleaseContext("v1.2.1", PROFILES["ci"], tmp_path / "artifacts", Endpoints.from_environment({}))


def test_artifact_folders_are_typed_by_name_and_nested_files_count(tmp_path: Path) -> None:
    collected = tmp_path / "collected"
    (collected / "evidence-test-report" / "shard-2").mkdir(parents=True)  # as download-artifact lays it out
    (collected / "evidence-test-report" / "junit.xml").write_text("<testsuites/>")
    (collected / "evidence-test-report" / "shard-2" / "junit-2.xml").write_text("<testsuites/>")
    (collected / "load-report").mkdir()
    (collected / "load-report" / "k6.json").write_text("{}")
    ctx = context(tmp_path)
    outcome = collect(ctx, collected)
    assert sorted(ctx.evidence) == ["load-report", "test-report"]
    assert sorted(p.name for p in ctx.evidence["test-report"]) == ["junit-2.xml", "junit.xml"]
    assert outcome.startswith("3 files of 2 types")


def test_an_empty_folder_or_a_stray_top_level_file_is_refused(tmp_path: Path) -> None:
    collected = tmp_path / "collected"
    (collected / "evidence-test-report").mkdir(parents=True)
    with pytest.raises(StageFailed, match="holds no <type>/<file>"):
        collect(context(tmp_path), collected)
    (collected / "junit.xml").write_text("<testsuites/>")
    with pytest.raises(StageFailed, match=r"not at the top: \['junit.xml'\]"):
        collect(context(tmp_path), collected)
