"""ig-evidence build/verify/amend/keygen without infrastructure: determinism, completeness, bad input, tampering."""

from __future__ import annotations

import gzip
import json
import os
import tarfile
from pathlib import Path

import pytest

from .conftest import REPO, run, write_inputs


def build(out: Path, inputs: Path, keys: Path, contract: Path, *extra: str) -> tuple[int, str]:
    result = run("build", "--release", "v1.2.1", "--inputs", str(inputs), "--out", str(out), "--key",
                 str(keys / "cosign.key"), "--contract", str(contract), "--repo-root", str(REPO), *extra)
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes else "")


def verify(bundle: Path, keys: Path, *extra: str) -> tuple[int, str]:
    result = run("verify", str(bundle), "--key", str(keys / "cosign.pub"), *extra)
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes else "")


def test_two_builds_from_the_same_inputs_are_byte_identical(tmp_path: Path, inputs: Path, keys: Path,
                                                            offline_contract: Path) -> None:
    code, output = build(tmp_path / "a", inputs, keys, offline_contract)
    assert code == 0, output
    os.utime(inputs / "dr-log" / "dr-log.json", (1, 1))  # file times must not leak into the bundle
    code, output = build(tmp_path / "b", inputs, keys, offline_contract)
    assert code == 0, output
    for name in ["evidence-v1.2.1.tar.gz", "manifest.json", "manifest.json.sig", "manifest.sigstore.json"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    archive = tmp_path / "a" / "evidence-v1.2.1.tar.gz"
    header = archive.read_bytes()[:10]
    assert header[3] & 0x08 == 0 and header[4:8] == b"\0\0\0\0"  # gzip -n: no file name, no time
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
    assert {(m.mtime, m.uid, m.gid, m.uname, m.mode) for m in members} == {(1767225600, 0, 0, "", 0o644)}


def test_the_manifest_is_canonical_sorted_and_dated_from_source_date_epoch(tmp_path: Path, inputs: Path, keys: Path,
                                                                           offline_contract: Path) -> None:
    assert build(tmp_path / "out", inputs, keys, offline_contract)[0] == 0
    raw = (tmp_path / "out" / "manifest.json").read_bytes()
    manifest = json.loads(raw)
    assert raw == json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    names = [a["name"] for a in manifest["artifacts"]]
    assert names == sorted(names)
    assert {"sbom.spdx.json", "schema-diff.json", "provenance.intoto.dsse.json"} <= set(names)
    assert manifest["createdAt"] == "2026-01-01T00:00:00Z" and manifest["complete"] is True
    sbom_path = next(a["path"] for a in manifest["artifacts"] if a["type"] == "sbom")
    with tarfile.open(tmp_path / "out" / "evidence-v1.2.1.tar.gz") as tar:
        sbom = json.load(tar.extractfile(sbom_path))  # type: ignore[arg-type]
    assert sbom["spdxVersion"] == "SPDX-2.3" and any(p["name"] == "rfc8785" for p in sbom["packages"])


def test_missing_evidence_fails_listing_each_item_and_writes_nothing(tmp_path: Path, keys: Path,
                                                                     offline_contract: Path) -> None:
    inputs = write_inputs(tmp_path / "inputs", ["load-report", "dr-log"])
    code, output = build(tmp_path / "out", inputs, keys, offline_contract)
    assert code == 3
    for item in ["chaos-report", "aca-report", "rtbf-log", "residency-proof", "slo-report"]:
        assert f"- {item}:" in output
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["inputs"]


def test_allow_incomplete_writes_a_manifest_marked_incomplete_that_verify_refuses(tmp_path: Path, keys: Path,
                                                                                  offline_contract: Path) -> None:
    inputs = write_inputs(tmp_path / "inputs", ["load-report"])
    assert build(tmp_path / "out", inputs, keys, offline_contract, "--allow-incomplete")[0] == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["complete"] is False and any(m.startswith("chaos-report") for m in manifest["missing"])
    code, output = verify(tmp_path / "out", keys)
    assert code == 1 and "incomplete: chaos-report" in output
    assert verify(tmp_path / "out", keys, "--allow-incomplete")[0] == 0


def test_the_real_contract_requires_a_ledger_anchor(tmp_path: Path, inputs: Path, keys: Path) -> None:
    code, output = build(tmp_path / "out", inputs, keys, REPO / "policies/evidence/release-contract.v1.yaml")
    assert code == 3 and "ledger-anchor" in output


def test_anchoring_in_a_ledger_names_the_tenant_or_nothing_is_written(tmp_path: Path, inputs: Path,
                                                                      keys: Path) -> None:
    """The ledger takes an entry only for a named tenant: without --tenant the build stops before it calls the ledger
    (the address below would refuse a connection, so reaching it would be a different error)."""
    result = run("build", "--release", "v1.2.1", "--inputs", str(inputs), "--out", str(tmp_path / "out"),
                 "--key", str(keys / "cosign.key"), "--ledger", "127.0.0.1:9")
    assert result.exit_code == 2 and "--tenant: required with --ledger" in result.stderr
    assert not (tmp_path / "out").exists()


def _symlink_escape(inputs: Path, outside: Path) -> None:
    (outside / "secret.json").write_text("{}")
    (inputs / "dr-log" / "leak.json").symlink_to(outside / "secret.json")


def _oversized(inputs: Path, outside: Path) -> None:
    (inputs / "dr-log" / "big.log").write_bytes(b"x" * 5000)


def _duplicate(inputs: Path, outside: Path) -> None:
    (inputs / "chaos-report" / "nested").mkdir()
    (inputs / "chaos-report" / "nested" / "load-report.json").write_text("{}")


def _clash_with_generated(inputs: Path, outside: Path) -> None:
    (inputs / "slo-report" / "sbom.spdx.json").write_text("{}")


def _unknown_type(inputs: Path, outside: Path) -> None:
    (inputs / "vibes-report").mkdir()
    (inputs / "vibes-report" / "v.json").write_text("{}")


def _top_level_file(inputs: Path, outside: Path) -> None:
    (inputs / "stray.json").write_text("{}")


def _dangling(inputs: Path, outside: Path) -> None:
    (inputs / "dr-log" / "gone.log").symlink_to(inputs / "dr-log" / "does-not-exist")


def _fifo(inputs: Path, outside: Path) -> None:
    os.mkfifo(inputs / "dr-log" / "pipe.log")


@pytest.mark.parametrize(("damage", "message"), [
    (_symlink_escape, "leak.json: symlink escapes the input directory"),
    (_oversized, "big.log: 5000 bytes exceeds the limit of 4096 bytes"),
    (_duplicate, "duplicate artifact name 'load-report.json'"),
    (_clash_with_generated, "duplicate artifact name 'sbom.spdx.json'"),
    (_unknown_type, "unknown artifact type 'vibes-report'"),
    (_top_level_file, "stray.json: inputs are laid out as <type>/<file>"),
    (_dangling, "gone.log: cannot read"),
    (_fifo, "pipe.log: not a regular file"),
], ids=["symlink-escape", "oversized", "duplicate", "clash", "unknown-type", "top-level", "dangling", "fifo"])
def test_bad_input_is_a_clear_error_and_nothing_is_written(tmp_path: Path, inputs: Path, keys: Path,
                                                           offline_contract: Path, damage: object,
                                                           message: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    damage(inputs, outside)  # type: ignore[operator]
    code, output = build(tmp_path / "out", inputs, keys, offline_contract, "--max-artifact-bytes", "4096")
    assert code == 2, output
    assert message in output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inputs", "outside"]


@pytest.mark.parametrize(("key_text", "env", "message"), [
    ("not a key", {}, "not a PEM private key"),
    (None, {}, "the key is encrypted; give its password"),
    (None, {"COSIGN_PASSWORD": "wrong"}, "wrong password"),
], ids=["garbage", "encrypted-no-password", "wrong-password"])
def test_bad_keys_are_clear_errors(tmp_path: Path, inputs: Path, offline_contract: Path, key_text: str | None,
                                   env: dict[str, str], message: str) -> None:
    key_dir = tmp_path / "k"
    if key_text is None:
        assert run("keygen", "--out", str(key_dir), env={"COSIGN_PASSWORD": "s3cret"}).exit_code == 0
    else:
        key_dir.mkdir()
        (key_dir / "cosign.key").write_text(key_text)
    result = run("build", "--release", "v1.2.1", "--inputs", str(inputs), "--out", str(tmp_path / "out"), "--key",
                 str(key_dir / "cosign.key"), "--contract", str(offline_contract), env=env)
    assert result.exit_code == 2 and message in result.stderr
    assert not (tmp_path / "out").exists()


def test_keys_come_from_a_file_an_env_var_or_a_secret_mount(tmp_path: Path, inputs: Path,
                                                             offline_contract: Path) -> None:
    mount = tmp_path / "mount"
    assert run("keygen", "--out", str(mount), env={"COSIGN_PASSWORD": "pw"}).exit_code == 0
    (mount / "cosign.password").write_text("pw\n")
    pem = (mount / "cosign.key").read_text()
    for index, (reference, env) in enumerate([(str(mount), {}), ("env://RELEASE_KEY", {"RELEASE_KEY": pem,
                                                                                        "COSIGN_PASSWORD": "pw"})]):
        out = tmp_path / f"out{index}"
        result = run("build", "--release", "v1.2.1", "--inputs", str(inputs), "--out", str(out), "--key", reference,
                     "--contract", str(offline_contract), env=env)
        assert result.exit_code == 0, result.output
        assert verify(out, mount)[0] == 0


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-2] ^= 0x01
    path.write_bytes(bytes(data))


def test_one_changed_byte_in_an_unpacked_artifact_fails_naming_it(tmp_path: Path, inputs: Path, keys: Path,
                                                                   offline_contract: Path) -> None:
    assert build(tmp_path / "out", inputs, keys, offline_contract)[0] == 0
    unpacked = tmp_path / "unpacked"
    with tarfile.open(tmp_path / "out" / "evidence-v1.2.1.tar.gz") as tar:
        tar.extractall(unpacked, filter="data")
    assert verify(unpacked, keys)[0] == 0
    _flip_last_byte(unpacked / "artifacts" / "rtbf-log" / "rtbf-log.json")
    code, output = verify(unpacked, keys)
    assert code == 1 and "artifact rtbf-log.json: sha256/size mismatch" in output


def test_one_changed_byte_in_the_archive_or_manifest_fails(tmp_path: Path, inputs: Path, keys: Path,
                                                           offline_contract: Path) -> None:
    assert build(tmp_path / "out", inputs, keys, offline_contract, "--compression", "none")[0] == 0
    archive = tmp_path / "out" / "evidence-v1.2.1.tar"
    with tarfile.open(archive) as tar:
        member = tar.getmember("artifacts/slo-report/slo-report.json")
    data = bytearray(archive.read_bytes())
    data[member.offset_data + 3] ^= 0x20
    archive.write_bytes(bytes(data))
    code, output = verify(archive, keys)
    assert code == 1 and "artifact slo-report.json: sha256/size mismatch" in output
    _flip_last_byte(tmp_path / "out" / "manifest.json")
    code, output = verify(tmp_path / "out", keys)
    assert code == 1 and "manifest.json: the copy beside the archive differs" in output


def test_a_corrupted_gzip_bundle_fails(tmp_path: Path, inputs: Path, keys: Path, offline_contract: Path) -> None:
    assert build(tmp_path / "out", inputs, keys, offline_contract)[0] == 0
    archive = tmp_path / "out" / "evidence-v1.2.1.tar.gz"
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    code, output = verify(archive, keys)
    assert code == 1 and "FAIL" in output
    with pytest.raises((OSError, EOFError, gzip.BadGzipFile)):
        gzip.decompress(bytes(data))


def test_another_key_does_not_verify(tmp_path: Path, inputs: Path, keys: Path, offline_contract: Path) -> None:
    assert build(tmp_path / "out", inputs, keys, offline_contract)[0] == 0
    other = tmp_path / "other"
    assert run("keygen", "--out", str(other)).exit_code == 0
    code, output = verify(tmp_path / "out", other)
    assert code == 1 and "signature in manifest.json.sig fails" in output


def test_amend_adds_delta_evidence_resigns_and_links_the_superseded_manifest(tmp_path: Path, keys: Path,
                                                                              offline_contract: Path) -> None:
    inputs = write_inputs(tmp_path / "inputs", ["load-report", "chaos-report"])
    assert build(tmp_path / "v1", inputs, keys, offline_contract, "--allow-incomplete")[0] == 0
    first = (tmp_path / "v1" / "manifest.json").read_bytes()
    from .conftest import COLLECTED_TYPES

    delta = write_inputs(tmp_path / "delta", [t for t in COLLECTED_TYPES if t not in ("load-report", "chaos-report")])
    result = run("amend", "--release", "v1.2.1", "--bundle", str(tmp_path / "v1"), "--inputs", str(delta), "--out",
                 str(tmp_path / "v2"), "--key", str(keys / "cosign.key"), "--contract", str(offline_contract))
    assert result.exit_code == 0, result.output
    amended = json.loads((tmp_path / "v2" / "manifest.json").read_text())
    import hashlib

    assert amended["supersedes"]["manifestSha256"] == hashlib.sha256(first).hexdigest()
    assert amended["complete"] is True and len(amended["artifacts"]) == 14
    assert verify(tmp_path / "v2", keys)[0] == 0
    again = run("amend", "--release", "v1.2.1", "--bundle", str(tmp_path / "v2"), "--inputs", str(delta), "--out",
                str(tmp_path / "v3"), "--key", str(keys / "cosign.key"), "--contract", str(offline_contract))
    assert again.exit_code == 2 and "duplicate artifact name" in again.stderr
