"""The release's images as subjects of its provenance (issue #22): `build --subjects`, `verify --subject`, amend."""

from __future__ import annotations

import base64
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from .conftest import COLLECTED_TYPES, run, write_inputs
from .test_cli_build import build, verify

POLICY = {"name": "localhost/ig/policy:dev", "digest": {"sha256": "a" * 64}}
PORTAL = {"name": "localhost/ig/audit-portal:dev", "digest": {"sha256": "b" * 64}}


def write_subjects(path: Path, subjects: Any) -> Path:
    path.write_text(json.dumps(subjects))
    return path


def attested(bundle: Path) -> list[dict[str, Any]]:
    """The subjects of the bundle's provenance statement, read from the archive (not through verify)."""
    archive = next(bundle.glob("evidence-*.tar.gz"))
    with tarfile.open(archive) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("provenance.intoto.dsse.json"))
        envelope = json.load(tar.extractfile(member))  # type: ignore[arg-type]
    return list(json.loads(base64.b64decode(envelope["payload"]))["subject"])


def test_the_provenance_attests_the_given_images_beside_the_artifacts(tmp_path: Path, inputs: Path, keys: Path,
                                                                    offline_contract: Path) -> None:
    subjects = write_subjects(tmp_path / "images.json", [POLICY, PORTAL])
    code, output = build(tmp_path / "out", inputs, keys, offline_contract, "--subjects", str(subjects))
    assert code == 0, output
    assert "provenance also attests: localhost/ig/policy:dev@sha256:" + "a" * 64 in output
    statement = attested(tmp_path / "out")
    assert POLICY in statement and PORTAL in statement
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert len(statement) == len(manifest["artifacts"]) - 1 + 2  # every artifact but the provenance, and the images
    code, output = verify(tmp_path / "out", keys, "--json")
    assert code == 0, output
    assert json.loads(output)["shipped"] == [PORTAL, POLICY]


def test_the_same_subjects_in_another_order_give_the_same_bundle(tmp_path: Path, inputs: Path, keys: Path,
                                                                offline_contract: Path) -> None:
    for name, order in (("a", [POLICY, PORTAL]), ("b", [PORTAL, POLICY])):
        subjects = write_subjects(tmp_path / f"{name}.json", order)
        assert build(tmp_path / name, inputs, keys, offline_contract, "--subjects", str(subjects))[0] == 0
    assert (tmp_path / "a" / "manifest.json").read_bytes() == (tmp_path / "b" / "manifest.json").read_bytes()


@pytest.mark.parametrize(("wanted", "passes", "message"), [
    (f"localhost/ig/policy:dev@sha256:{'a' * 64}", True, ""),
    (f"localhost/ig/policy:dev@sha256:{'c' * 64}", False, f"it attests sha256:{'a' * 64}"),
    (f"localhost/ig/burn:dev@sha256:{'a' * 64}", False, "it names no such subject"),
], ids=["attested", "another-digest", "another-image"])
def test_verify_subject_passes_only_for_an_attested_digest(tmp_path: Path, inputs: Path, keys: Path,
                                                          offline_contract: Path, wanted: str, passes: bool,
                                                          message: str) -> None:
    subjects = write_subjects(tmp_path / "images.json", [POLICY, PORTAL])
    assert build(tmp_path / "out", inputs, keys, offline_contract, "--subjects", str(subjects))[0] == 0
    code, output = verify(tmp_path / "out", keys, "--subject", wanted)
    assert (code == 0) is passes, output
    assert message in output


def test_a_bundle_built_without_subjects_attests_no_image(tmp_path: Path, inputs: Path, keys: Path,
                                                        offline_contract: Path) -> None:
    assert build(tmp_path / "out", inputs, keys, offline_contract)[0] == 0
    code, output = verify(tmp_path / "out", keys, "--subject", f"localhost/ig/policy:dev@sha256:{'a' * 64}")
    assert code == 1 and "not attested by the provenance (it names no such subject)" in output


def test_an_artifact_name_is_no_image_subject(tmp_path: Path, inputs: Path, keys: Path,
                                            offline_contract: Path) -> None:
    """An artifact is checked by its bytes in the bundle; `--subject` answers only for what the bundle ships beside."""
    assert build(tmp_path / "out", inputs, keys, offline_contract)[0] == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    sbom = next(a for a in manifest["artifacts"] if a["type"] == "sbom")
    code, output = verify(tmp_path / "out", keys, "--subject", f"{sbom['name']}@sha256:{sbom['sha256']}")
    assert code == 1, output


@pytest.mark.parametrize(("subjects", "message"), [
    ({"name": "x"}, "subjects: a JSON list"),
    ([{"name": "x"}], "subjects[0]: an object with"),
    ([{"name": "", "digest": {"sha256": "a" * 64}}], "subjects[0].name: must be a non-empty string"),
    ([POLICY, {"name": "x", "digest": {"sha256": "A" * 64}}], "subjects[1].digest.sha256: 64 lowercase hex"),
    ([{"name": "x", "digest": {"sha512": "a" * 128}}], "subjects[0].digest.sha256"),
    ([POLICY, {"name": POLICY["name"], "digest": {"sha256": "c" * 64}}], "given with two digests"),
    ([{"name": "sbom.spdx.json", "digest": {"sha256": "a" * 64}}], "also the name of an artifact in the bundle"),
    ("not json", "not JSON"),
], ids=["not-a-list", "no-digest", "empty-name", "upper-hex", "other-algorithm", "two-digests", "artifact-name",
        "not-json"])
def test_bad_subjects_are_a_clear_error_and_nothing_is_written(tmp_path: Path, inputs: Path, keys: Path,
                                                              offline_contract: Path, subjects: Any,
                                                              message: str) -> None:
    path = tmp_path / "images.json"
    if subjects == "not json":
        path.write_text("{")
    else:
        write_subjects(path, subjects)
    code, output = build(tmp_path / "out", inputs, keys, offline_contract, "--subjects", str(path))
    assert code == 2, output
    assert message in output and "--subjects" in output
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_a_bad_subject_reference_to_verify_is_a_clear_error(tmp_path: Path, inputs: Path, keys: Path,
                                                           offline_contract: Path) -> None:
    assert build(tmp_path / "out", inputs, keys, offline_contract)[0] == 0
    code, output = verify(tmp_path / "out", keys, "--subject", "localhost/ig/policy:dev")
    assert code == 2 and "--subject: subject 'localhost/ig/policy:dev': expected NAME@sha256:HEX" in output


def test_amend_keeps_the_attested_images_and_adds_new_ones(tmp_path: Path, keys: Path,
                                                          offline_contract: Path) -> None:
    inputs = write_inputs(tmp_path / "inputs", ["load-report", "chaos-report"])
    first = write_subjects(tmp_path / "first.json", [POLICY])
    code, output = build(tmp_path / "v1", inputs, keys, offline_contract, "--allow-incomplete", "--subjects",
                         str(first))
    assert code == 0, output
    delta = write_inputs(tmp_path / "delta", [t for t in COLLECTED_TYPES if t not in ("load-report", "chaos-report")])
    more = write_subjects(tmp_path / "more.json", [PORTAL])
    result = run("amend", "--release", "v1.2.1", "--bundle", str(tmp_path / "v1"), "--inputs", str(delta), "--out",
                 str(tmp_path / "v2"), "--key", str(keys / "cosign.key"), "--contract", str(offline_contract),
                 "--subjects", str(more))
    assert result.exit_code == 0, result.output + result.stderr
    code, output = verify(tmp_path / "v2", keys, "--json")
    assert code == 0, output
    assert json.loads(output)["shipped"] == [PORTAL, POLICY]
