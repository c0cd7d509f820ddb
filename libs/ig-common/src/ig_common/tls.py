"""A workload's certificate on disk, reloaded when it is renewed, as gRPC credentials and ``ssl`` contexts.

The directory holds ``tls.crt``, ``tls.key`` and ``ca.crt``: the layout cert-manager writes into a Secret, and the
one ``ig-infra`` writes locally. A renewed certificate is picked up by the next TLS handshake, with no restart.
"""

from __future__ import annotations

import os
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ig_common.spiffe import SpiffeId

log = structlog.get_logger(__name__)

CERT_FILE, KEY_FILE, CA_FILE = "tls.crt", "tls.key", "ca.crt"
TLS_DIR_VARIABLE = "IG_TLS_DIR"
IDENTITIES_VARIABLE = "IG_IDENTITIES"


class IdentityError(RuntimeError):
    """The workload's certificate is missing or unusable: nothing that needs it may start."""


@dataclass(frozen=True)
class Material:
    key_pem: bytes
    cert_pem: bytes
    ca_pem: bytes
    spiffe_id: SpiffeId


def _read(directory: Path) -> Material:
    try:
        key_pem, cert_pem, ca_pem = ((directory / name).read_bytes() for name in (KEY_FILE, CERT_FILE, CA_FILE))
    except OSError as error:
        raise IdentityError(f"workload certificate in {directory}: {error.strerror}: {error.filename}") from error
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
    except ValueError as error:
        raise IdentityError(f"workload certificate in {directory}: {error}") from error
    if cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) \
            != key.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo):
        raise IdentityError(f"workload certificate in {directory}: {KEY_FILE} does not match {CERT_FILE}")
    uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier)
    ids = [found for found in map(SpiffeId.parse, uris) if found is not None]
    if len(ids) != 1:
        raise IdentityError(f"workload certificate in {directory}: needs exactly one SPIFFE ID URI SAN, has {uris}")
    return Material(key_pem, cert_pem, ca_pem, ids[0])


class WorkloadCertificate:
    """The files of one identity; ``current()`` rereads them once they change on disk."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self._material = _read(directory)

    def _stat(self) -> tuple[int, ...]:
        try:
            return tuple(os.stat(self.directory / n).st_mtime_ns for n in (CERT_FILE, KEY_FILE, CA_FILE))
        except OSError:
            return ()

    @property
    def spiffe_id(self) -> SpiffeId:
        return self._material.spiffe_id

    def current(self) -> Material:
        return self._material

    def refresh(self) -> bool:
        """Reload when the files changed; True when new material was taken. A half-renewed or broken set is
        logged and the old one kept, so a renewal in progress never takes a serving process down."""
        stamp = self._stat()
        if stamp == self._stamp or not stamp:
            return False
        with self._lock:
            if stamp == self._stamp:
                return False
            try:
                material = _read(self.directory)
            except IdentityError as error:
                log.warning("workload_certificate_reload_failed", error=str(error))
                return False
            self._stamp, self._material = stamp, material
        log.info("workload_certificate_reloaded", spiffe_id=str(material.spiffe_id))
        return True

    def server_credentials(self) -> grpc.ServerCredentials:
        """mTLS server credentials: a client certificate from ``ca.crt`` is required; renewed files are taken at
        the next handshake (gRPC asks the fetcher on each one)."""

        def config(material: Material) -> grpc.ServerCertificateConfiguration:
            return grpc.ssl_server_certificate_configuration([(material.key_pem, material.cert_pem)],
                                                             root_certificates=material.ca_pem)

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            return config(self._material) if self.refresh() else None

        # grpcio's stub says the fetcher always returns a configuration; None ("unchanged") is documented.
        return grpc.dynamic_ssl_server_credentials(config(self._material), fetch,  # type: ignore[arg-type]
                                                   require_client_authentication=True)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """Client credentials: present this certificate, verify the server's chain against ``ca.crt`` and its
        name (DNS/IP SAN) against the address dialled."""
        self.refresh()
        material = self._material
        return grpc.ssl_channel_credentials(material.ca_pem, material.key_pem, material.cert_pem)

    def client_ssl_context(self) -> ssl.SSLContext:
        """For TLS clients outside gRPC (Kafka, PostgreSQL, HTTP): verify the server, present this certificate."""
        self.refresh()
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=self._material.ca_pem.decode())
        context.load_cert_chain(self.directory / CERT_FILE, self.directory / KEY_FILE)
        return context

    def server_ssl_context(self, *, require_client_certificate: bool = True) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cadata=self._material.ca_pem.decode())
        context.load_cert_chain(self.directory / CERT_FILE, self.directory / KEY_FILE)
        context.verify_mode = ssl.CERT_REQUIRED if require_client_certificate else ssl.CERT_NONE
        return context


def workload_directory(own_name: str | None = None) -> Path:
    """Where this process's identity lives: ``IG_TLS_DIR``, or ``$IG_IDENTITIES/<own_name>`` for a client tool
    that runs as its own identity (``ig-infra env`` exports ``IG_IDENTITIES``)."""
    explicit = os.environ.get(TLS_DIR_VARIABLE)
    if explicit:
        return Path(explicit)
    root = os.environ.get(IDENTITIES_VARIABLE)
    if root and own_name:
        return Path(root) / own_name
    raise IdentityError(f"no workload certificate: set {TLS_DIR_VARIABLE} (a directory with {CERT_FILE}, {KEY_FILE}, "
                        f"{CA_FILE}){f' or {IDENTITIES_VARIABLE}' if own_name else ''}; "
                        "`eval \"$(uv run ig-infra env)\"` sets them for the local suite")


def load_workload_certificate(own_name: str | None = None) -> WorkloadCertificate:
    return WorkloadCertificate(workload_directory(own_name))


# What a child process of the suite needs to find its certificate and the authorization table.
INHERITED_VARIABLES = (IDENTITIES_VARIABLE, "IG_AUTHZ_TABLE")


def inherited_identity() -> dict[str, str]:
    """The identity settings of this environment, for a process that starts a service with an environment of its
    own making (which would otherwise start it without a certificate, and it would refuse to run)."""
    return {name: os.environ[name] for name in INHERITED_VARIABLES if name in os.environ}
