"""Keys written by the real `cosign generate-key-pair` (v2.6.5, password "pw"; kept under data/) are accepted."""

from __future__ import annotations

from pathlib import Path

import pytest
from ig_evidence.domain import signatures
from ig_evidence.keys import KeyProblem, load_private_key, load_public_key

DATA = Path(__file__).parent / "data"


def test_a_cosign_generated_key_signs_what_its_cosign_pub_verifies() -> None:
    private_key = load_private_key(str(DATA / "cosign-generated.key"), password="pw")
    public_key = load_public_key(str(DATA / "cosign-generated.pub"))
    signature = signatures.sign(private_key, b"manifest")
    signatures.verify(public_key, signature, b"manifest")


@pytest.mark.parametrize(("password", "message"), [("nope", "wrong password"), (None, "the key is encrypted")])
def test_a_cosign_key_without_its_password_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, password: str | None,
                                                            message: str) -> None:
    monkeypatch.delenv("COSIGN_PASSWORD", raising=False)
    monkeypatch.delenv("IG_EVIDENCE_KEY_PASSWORD", raising=False)
    with pytest.raises(KeyProblem, match=message):
        load_private_key(str(DATA / "cosign-generated.key"), password=password)


def test_a_cosign_key_with_a_damaged_body_is_refused(tmp_path: Path) -> None:
    text = (DATA / "cosign-generated.key").read_text().splitlines()
    text[2] = text[2][:10] + ("A" if text[2][10] != "A" else "B") + text[2][11:]
    (tmp_path / "cosign.key").write_text("\n".join(text) + "\n")
    with pytest.raises(KeyProblem):
        load_private_key(str(tmp_path / "cosign.key"), password="pw")
