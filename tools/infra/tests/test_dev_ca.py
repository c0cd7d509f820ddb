"""The development CA is made once, however many start at the same time on a new machine."""

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cryptography import x509
from ig_infra.pki import DevCA


def test_callers_that_start_together_on_a_new_machine_all_get_the_one_ca_kept_on_disk(tmp_path: Path) -> None:
    """Both regions' PostgreSQL (and every other first user) ask for the CA at once: each must get the one that stays
    on disk, or the certificates one of them issues are signed by a key nobody trusts."""
    directory = tmp_path / "dev-ca"
    start = threading.Barrier(8)

    def load() -> bytes:
        start.wait()
        return DevCA.load_or_create(directory).cert_pem

    with ThreadPoolExecutor(max_workers=8) as pool:
        seen = set(pool.map(lambda _: load(), range(8)))
    assert len(seen) == 1, f"{len(seen)} different CAs were handed out"
    assert seen == {(directory / "ca.crt").read_bytes()}
    kept = x509.load_pem_x509_certificate((directory / "ca.crt").read_bytes())
    assert DevCA.load_or_create(directory).cert == kept
