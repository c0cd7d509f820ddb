"""The migration stage's judgements, without the suite: what counts as a lost acknowledged write, when a run counts
as having gone through the service."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ig.migration.v1 import migration_pb2
from ig_migration.workload import Loss, losses
from ig_release.context import StageFailed
from ig_release.migration_service import ServiceRun
from ig_release.stages.migration import check_run

RUN = "run_" + "a" * 32


def test_every_acknowledged_write_the_table_does_not_show_is_a_loss() -> None:
    acknowledged: dict[int, str | None] = {1: "new asset", 2: "renamed 0.5", 3: None, 4: "renamed 0.7"}
    found = {1: "new asset", 2: "diverged on green", 3: "asset 3", 9: "asset 9"}  # 4 missing, 3 came back
    assert losses(acknowledged, found) == [Loss(2, "renamed 0.5", "diverged on green"), Loss(3, None, "asset 3"),
                                           Loss(4, "renamed 0.7", None)]
    # Rows the writer never acknowledged a write of (9) are not its to judge.
    assert losses(acknowledged, {1: "new asset", 2: "renamed 0.5", 4: "renamed 0.7", 9: "x"}) == []


def event(to_phase: str, run_id: str = RUN) -> dict[str, Any]:
    return {"run_id": run_id, "from_phase": "", "to_phase": to_phase}


def service_run(events: list[dict[str, Any]], phase: str = "completed", backed_out: bool = False) -> ServiceRun:
    result = migration_pb2.RunResponse(change="add-asset-index-v3", phase=phase, aca_score=1.0,
                                       backed_out=backed_out, run_id=RUN, detail="d")
    return ServiceRun({}, result, [], events)


def test_a_completed_run_with_its_events_passes() -> None:
    check_run(service_run([event("preflight"), event("completed")]), Path("log"))


@pytest.mark.parametrize(("run", "message"), [
    (service_run([]), "no ig.migration.v1 event of run"),
    (service_run([event("preflight", "run_other"), event("completed", "run_other")]), "no ig.migration.v1 event"),
    (service_run([event("preflight"), event("cutover")]), "is cutover, not completed"),
    (service_run([event("completed")], phase="backed-out", backed_out=True), "backed the change out"),
    (service_run([event("completed")], phase="shadow-read"), "stopped add-asset-index-v3 at shadow-read"),
])
def test_a_run_without_its_events_or_unfinished_fails_the_stage(run: ServiceRun, message: str) -> None:
    with pytest.raises(StageFailed, match=message):
        check_run(run, Path("log"))
