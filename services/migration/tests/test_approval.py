"""Pure checks of the four-eyes approval and of identifier quoting (no database)."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given
from hypothesis import strategies as st
from ig_migration.domain.approval import (
    ApprovalRefused,
    ApproverKey,
    approver_key_from_pem,
    private_key_from_pem,
    sign_plan,
    verify_approval,
)
from ig_migration.domain.plan import plan_digest
from ig_migration.store.approvers import load_approvers
from ig_migration.store.identifiers import quote_ident, quote_list, quote_qualified

from .helpers import EXAMPLE

PLAN = EXAMPLE.read_text()


def key_pair(name: str) -> tuple[ec.EllipticCurvePrivateKey, ApproverKey]:
    private = ec.generate_private_key(ec.SECP256R1())
    return private, ApproverKey(name, private.public_key())


def public_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_a_plan_signed_by_an_approver_other_than_the_submitter_is_approved() -> None:
    private, approver = key_pair("approver")
    _, other = key_pair("auditor")
    approval = verify_approval(PLAN, sign_plan(private, PLAN), [other, approver], submitters=("operator",))
    assert approval.approver == "approver" and approval.plan_sha256 == plan_digest(PLAN)
    assert approval.key_fingerprint == approver.fingerprint


def test_an_unsigned_plan_is_refused() -> None:
    _, approver = key_pair("approver")
    with pytest.raises(ApprovalRefused, match="is not approved: no signature given"):
        verify_approval(PLAN, "", [approver], submitters=("operator",))


def test_a_plan_signed_by_its_submitter_is_refused() -> None:
    private, operator = key_pair("operator")
    with pytest.raises(ApprovalRefused, match="signed by operator, who submitted it"):
        verify_approval(PLAN, sign_plan(private, PLAN), [operator], submitters=("operator",))
    # A forwarded user counts as a submitter as well as the workload that forwarded them.
    with pytest.raises(ApprovalRefused, match="who submitted it"):
        verify_approval(PLAN, sign_plan(private, PLAN), [operator], submitters=("portal", "operator"))


def test_a_plan_signed_by_a_key_not_configured_is_refused() -> None:
    rogue, _ = key_pair("approver")
    _, approver = key_pair("approver")  # same name, another key: the name alone proves nothing
    with pytest.raises(ApprovalRefused, match=r"does not verify .* with any of the 1 configured approver keys"):
        verify_approval(PLAN, sign_plan(rogue, PLAN), [approver], submitters=("operator",))


@pytest.mark.parametrize("change", [
    lambda plan: plan.replace("size: 5000", "size: 50000"),
    lambda plan: plan + "\n",                       # whitespace only: still another document
    lambda plan: plan.replace("drop_blue: false", "drop_blue: true"),
])
def test_a_plan_changed_after_signing_is_refused(change: object) -> None:
    private, approver = key_pair("approver")
    signature = sign_plan(private, PLAN)
    changed = change(PLAN)  # type: ignore[operator]
    assert changed != PLAN
    with pytest.raises(ApprovalRefused, match="plan changed after it was signed"):
        verify_approval(changed, signature, [approver], submitters=("operator",))


def test_no_configured_approver_and_malformed_signatures_are_refused() -> None:
    private, approver = key_pair("approver")
    with pytest.raises(ApprovalRefused, match="no approver keys are configured"):
        verify_approval(PLAN, sign_plan(private, PLAN), [], submitters=("operator",))
    with pytest.raises(ApprovalRefused, match="not base64"):
        verify_approval(PLAN, "not base64!", [approver], submitters=("operator",))
    with pytest.raises(ApprovalRefused, match="does not verify"):
        verify_approval(PLAN, base64.b64encode(b"\x30\x00garbage").decode(), [approver], submitters=())


def test_signatures_interoperate_with_openssl_and_cosign_format(tmp_path: Path) -> None:
    """cosign sign-blob --key writes base64(DER ECDSA-SHA256 over the file); openssl makes and checks the same."""
    private, approver = key_pair("approver")
    plan_file, key_file, pub_file = tmp_path / "plan.yaml", tmp_path / "approver.key", tmp_path / "approver.pub"
    plan_file.write_bytes(PLAN.encode())
    key_file.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    pub_file.write_bytes(public_pem(private))
    made_by_openssl = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(key_file), str(plan_file)],
                                     capture_output=True, check=True).stdout
    assert verify_approval(PLAN, base64.b64encode(made_by_openssl).decode(), [approver], ()).approver == "approver"
    (tmp_path / "plan.der").write_bytes(base64.b64decode(sign_plan(private, PLAN)))
    checked = subprocess.run(["openssl", "dgst", "-sha256", "-verify", str(pub_file), "-signature",
                              str(tmp_path / "plan.der"), str(plan_file)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0 and "Verified OK" in checked.stdout, checked.stderr


def test_approver_keys_must_be_p256_and_readable(tmp_path: Path) -> None:
    private, _ = key_pair("x")
    assert approver_key_from_pem("approver", public_pem(private)).name == "approver"
    with pytest.raises(ValueError, match="ECDSA P-256"):
        approver_key_from_pem("approver", public_pem(ec.generate_private_key(ec.SECP384R1())))
    with pytest.raises(ValueError, match="ECDSA P-256"):
        approver_key_from_pem("approver", public_pem(rsa.generate_private_key(65537, 2048)))
    with pytest.raises(ValueError, match="not a PEM public key"):
        approver_key_from_pem("approver", b"hello")
    with pytest.raises(ValueError, match="unencrypted PEM private key"):
        private_key_from_pem(public_pem(private))

    with pytest.raises(ValueError, match="not a directory"):
        load_approvers(tmp_path / "missing")
    with pytest.raises(ValueError, match=r"holds no <name>\.pub"):
        load_approvers(tmp_path)
    (tmp_path / "approver.pub").write_bytes(public_pem(private))
    assert [a.name for a in load_approvers(tmp_path)] == ["approver"]
    (tmp_path / "broken.pub").write_text("not a key")
    with pytest.raises(ValueError, match=r"broken\.pub"):
        load_approvers(tmp_path)


def test_a_bad_approvers_setting_stops_start_up(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ig_common.settings import load_settings
    from ig_migration.settings import Settings

    with pytest.MonkeyPatch.context() as env:
        env.setenv("IG_DATABASE_URL", "postgresql://127.0.0.1:9/x")
        env.setenv("IG_KAFKA_BOOTSTRAP", "127.0.0.1:9")
        env.setenv("IG_AUTHZ_TABLE", str(Path(__file__).parents[3] / "policies" / "authz" / "grpc-methods.yaml"))
        env.setenv("IG_MIGRATION_APPROVERS", str(tmp_path / "nowhere"))
        with pytest.raises(SystemExit):
            load_settings(Settings)
        assert "invalid setting IG_MIGRATION_APPROVERS: Value error, " in capsys.readouterr().err
        (tmp_path / "approver.pub").write_bytes(public_pem(key_pair("approver")[0]))
        env.setenv("IG_MIGRATION_APPROVERS", str(tmp_path))
        assert load_settings(Settings).migration_approvers == tmp_path


def test_quote_ident_delimits_every_name() -> None:
    assert quote_ident("x; DROP TABLE y") == '"x; DROP TABLE y"'
    assert quote_ident('say "hi"') == '"say ""hi"""'
    assert quote_qualified("public.assets") == '"public"."assets"'
    assert quote_list(["a", 'b"'], prefix="NEW.") == 'NEW."a", NEW."b"""'
    for bad in ("", "a\x00b"):
        with pytest.raises(ValueError):
            quote_ident(bad)


@given(st.text(min_size=1).filter(lambda s: "\x00" not in s))
def test_a_quoted_identifier_is_one_token_that_unquotes_to_the_name(name: str) -> None:
    quoted = quote_ident(name)
    inner = quoted[1:-1]
    assert quoted[0] == quoted[-1] == '"'
    # Every double quote inside comes in pairs, so none can end the identifier early.
    assert '"' not in inner.replace('""', "")
    assert inner.replace('""', '"') == name


def test_the_local_suites_approver_key_is_kept_and_listed(tmp_path: Path) -> None:
    """ig-infra's Identities makes the `approver` plan-signing key once per run dir and lists its public half."""
    from ig_infra.approver import approver_signing_key, ensure_approver_signing_key

    approvers = ensure_approver_signing_key(tmp_path)
    key_file = approver_signing_key(tmp_path)
    first = key_file.read_bytes()
    assert key_file.stat().st_mode & 0o077 == 0
    assert ensure_approver_signing_key(tmp_path) == approvers and key_file.read_bytes() == first
    signature = sign_plan(private_key_from_pem(first), PLAN)
    approval = verify_approval(PLAN, signature, load_approvers(approvers), submitters=("operator",))
    assert approval.approver == "approver"


def test_ig_migrate_keygen_and_approve_make_a_signature_the_service_accepts(tmp_path: Path) -> None:
    from .helpers import CLI

    keys = tmp_path / "keys"
    made = subprocess.run([*CLI, "keygen", "--name", "approver", "--out-dir", str(keys)], capture_output=True,
                          text=True, check=False)
    assert made.returncode == 0, made.stderr
    again = subprocess.run([*CLI, "keygen", "--name", "approver", "--out-dir", str(keys)], capture_output=True,
                           text=True, check=False)
    assert again.returncode == 2 and "not overwriting" in again.stderr
    printed = subprocess.run([*CLI, "approve", "--key", str(keys / "approver.key"), str(EXAMPLE)],
                             capture_output=True, text=True, check=False)
    assert printed.returncode == 0 and plan_digest(PLAN) in printed.stderr, printed.stderr
    written = subprocess.run([*CLI, "approve", "--key", str(keys / "approver.key"), "--out",
                              str(tmp_path / "plan.sig"), str(EXAMPLE)], capture_output=True, text=True, check=False)
    assert written.returncode == 0, written.stderr
    approvers = load_approvers(keys)
    for signature in (printed.stdout, (tmp_path / "plan.sig").read_text()):
        assert verify_approval(PLAN, signature, approvers, submitters=("operator",)).approver == "approver"
    wrong_key = subprocess.run([*CLI, "approve", "--key", str(keys / "approver.pub"), str(EXAMPLE)],
                               capture_output=True, text=True, check=False)
    assert wrong_key.returncode == 2 and "--key" in wrong_key.stderr
