"""The development CA: one per machine, cached like the tool builds, issuing short-lived workload certificates.

Every workload gets a directory with ``tls.crt``, ``tls.key`` and ``ca.crt``, the layout cert-manager writes into a
Kubernetes Secret, so a service reads its identity the same way locally and in a cluster. The certificate carries
the workload's SPIFFE ID as its URI SAN (``spiffe://<trust domain>/ns/<namespace>/sa/<name>``), DNS/IP SANs for the
names clients dial (Python's grpcio verifies only those), and a CN equal to the name (Kafka and PostgreSQL take
their principal from the subject, not the URI SAN).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import ipaddress
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

TRUST_DOMAIN = "maestro.local"
NAMESPACE = "ig"
CA_VERSION = "dev-ca-v1"
DEFAULT_LIFETIME = datetime.timedelta(hours=24)
LOCAL_NAMES = ("localhost",)
LOCAL_ADDRESSES = ("127.0.0.1", "::1")
# A certificate younger than this is reused at `make up`/`make test`; an older one is renewed, so a long-running
# developer stack never holds one that expires within the next session.
RENEW_AFTER = datetime.timedelta(hours=12)

# Every workload of the suite: the five services and the clients that act on their own behalf.
SERVICE_IDENTITIES = ("policy", "evidence", "burn", "migration", "audit-portal")
CLIENT_IDENTITIES = ("gateway", "release", "operator", "approver", "region-test", "bench")
# The ledger's witnesses (one process per region, all with this identity and each with its own cosigning key).
WITNESS_IDENTITIES = ("witness",)


def spiffe_id(name: str, *, trust_domain: str = TRUST_DOMAIN, namespace: str = NAMESPACE) -> str:
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{name}"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    # PKCS#8: the one PEM key form Kafka's PEM keystore, PostgreSQL and OpenSSL all read.
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    temp.replace(path)


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """An exclusive advisory lock held for the block: between processes, and between threads (each opens its own)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def load_or_create_signing_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """An ECDSA P-256 signing key kept at ``path`` (0600), created when missing: a signing key outlives certificate
    renewals, which replace the TLS key."""
    if path.exists():
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        assert isinstance(loaded, ec.EllipticCurvePrivateKey)
        return loaded
    key = ec.generate_private_key(ec.SECP256R1())
    _write_private(path, _private_pem(key))
    return key


def _write_public(path: Path, data: bytes) -> None:
    temp = path.with_suffix(path.suffix + ".tmp")
    temp.write_bytes(data)
    temp.chmod(0o644)
    temp.replace(path)


@dataclass(frozen=True)
class IssuedIdentity:
    """Where one workload's certificate lives (a directory in the cert-manager Secret layout)."""

    name: str
    directory: Path
    spiffe_id: str

    @property
    def cert(self) -> Path:
        return self.directory / "tls.crt"

    @property
    def key(self) -> Path:
        return self.directory / "tls.key"

    @property
    def ca(self) -> Path:
        return self.directory / "ca.crt"


class DevCA:
    """A self-signed ECDSA P-256 root whose key never leaves its cache directory (0600)."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate, directory: Path) -> None:
        self.key = key
        self.cert = cert
        self.directory = directory

    @classmethod
    def load_or_create(cls, directory: Path, *, common_name: str = "Maestro Conductor development CA") -> DevCA:
        """The CA of ``directory``, created (or renewed) by exactly one caller: on a new machine `make k8s-up` starts
        both regions' PostgreSQL at once, and two CAs made side by side left one region's server certificate signed
        by a key that was then overwritten, refused by every pod of that region."""
        with _exclusive(directory / ".lock"):
            return cls._load_or_create(directory, common_name)

    @classmethod
    def _load_or_create(cls, directory: Path, common_name: str) -> DevCA:
        key_path, cert_path = directory / "ca.key", directory / "ca.crt"
        if key_path.exists() and cert_path.exists():
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            if cert.not_valid_after_utc - _now() > datetime.timedelta(days=30):
                return cls(key, cert, directory)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = _now()
        cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=825))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        _write_private(key_path, _private_pem(key))
        _write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))
        return cls(key, cert, directory)

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, name: str, directory: Path, *, lifetime: datetime.timedelta = DEFAULT_LIFETIME,
              not_before: datetime.datetime | None = None, trust_domain: str = TRUST_DOMAIN,
              namespace: str = NAMESPACE, dns_names: tuple[str, ...] = LOCAL_NAMES,
              ip_addresses: tuple[str, ...] = LOCAL_ADDRESSES) -> IssuedIdentity:
        """A fresh key and certificate for ``name``, written atomically (a reloading reader never sees half)."""
        identity = spiffe_id(name, trust_domain=trust_domain, namespace=namespace)
        key = ec.generate_private_key(ec.SECP256R1())
        start = not_before or _now() - datetime.timedelta(minutes=5)
        sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(identity)]
        sans += [x509.DNSName(d) for d in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + lifetime)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        issued = IssuedIdentity(name, directory, identity)
        directory.mkdir(parents=True, exist_ok=True)
        _write_public(issued.ca, self.cert_pem)
        # Key before certificate: a reader that sees the new certificate always finds its key beside it.
        _write_private(issued.key, _private_pem(key))
        _write_public(issued.cert, cert.public_bytes(serialization.Encoding.PEM))
        return issued


def ca_directory(cache: Path) -> Path:
    return cache / CA_VERSION


def identities_directory(run: Path) -> Path:
    return run / "identities"


def is_fresh(issued: IssuedIdentity, ca_pem: bytes | None = None) -> bool:
    """Present, younger than RENEW_AFTER, and (when given) issued by the CA whose certificate is ``ca_pem``."""
    if not (issued.cert.exists() and issued.key.exists() and issued.ca.exists()):
        return False
    if ca_pem is not None and issued.ca.read_bytes() != ca_pem:
        return False
    cert = x509.load_pem_x509_certificate(issued.cert.read_bytes())
    return _now() - cert.not_valid_before_utc < RENEW_AFTER


def ensure_identity(ca: DevCA, name: str, run: Path) -> IssuedIdentity:
    """The workload's certificate under the run dir: reused while young and issued by this CA, else renewed."""
    issued = IssuedIdentity(name, identities_directory(run) / name, spiffe_id(name))
    return issued if is_fresh(issued, ca.cert_pem) else ca.issue(name, issued.directory)


def ensure_identities(cache: Path, run: Path,
                      names: tuple[str, ...] = SERVICE_IDENTITIES + CLIENT_IDENTITIES + WITNESS_IDENTITIES
                      ) -> dict[str, IssuedIdentity]:
    ca = DevCA.load_or_create(ca_directory(cache))
    return {name: ensure_identity(ca, name, run) for name in names}


def issue_for_addresses(cache: Path, name: str, directory: Path, addresses: tuple[str, ...]) -> IssuedIdentity:
    """A certificate for a workload served on other addresses than loopback (a region's own address, say): clients
    verify the address they dial against the certificate's IP SANs."""
    ca = DevCA.load_or_create(ca_directory(cache))
    return ca.issue(name, directory, ip_addresses=tuple(dict.fromkeys((*addresses, *LOCAL_ADDRESSES))))
