"""cosign's own encrypted private key format (``cosign generate-key-pair``), read-only.

The PEM block (``ENCRYPTED SIGSTORE PRIVATE KEY``, or ``ENCRYPTED COSIGN PRIVATE KEY`` from older cosign) holds
JSON from go-securesystemslib's ``encrypted`` package: scrypt KDF parameters + salt, a NaCl secretbox nonce and the
ciphertext; the plaintext is the PKCS#8 DER private key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re

import nacl.exceptions
import nacl.secret
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

PEM_TYPES = (b"ENCRYPTED SIGSTORE PRIVATE KEY", b"ENCRYPTED COSIGN PRIVATE KEY")
_BLOCK = re.compile(rb"-----BEGIN ([A-Z ]+)-----\s*(.*?)\s*-----END \1-----", re.S)
MAX_SCRYPT_N = 1 << 20  # refuse absurd work factors in a hostile key file


class CosignKeyError(ValueError):
    pass


def is_cosign_key(pem: bytes) -> bool:
    return any(kind in pem for kind in PEM_TYPES)


def decrypt_cosign_key(pem: bytes, password: bytes) -> PrivateKeyTypes:
    match = _BLOCK.search(pem)
    if match is None or match.group(1) not in PEM_TYPES:
        raise CosignKeyError("not a cosign encrypted private key")
    try:
        document = json.loads(base64.b64decode(b"".join(match.group(2).split())))
        kdf, cipher = document["kdf"], document["cipher"]
        if kdf["name"] != "scrypt" or cipher["name"] != "nacl/secretbox":
            raise CosignKeyError(f"unsupported key encryption {kdf['name']}/{cipher['name']}")
        n, r, p = int(kdf["params"]["N"]), int(kdf["params"]["r"]), int(kdf["params"]["p"])
        salt, nonce = base64.b64decode(kdf["salt"]), base64.b64decode(cipher["nonce"])
        ciphertext = base64.b64decode(document["ciphertext"])
    except (ValueError, KeyError, TypeError) as error:
        raise CosignKeyError(f"malformed cosign key: {error!r}") from error
    if not 1 < n <= MAX_SCRYPT_N or n & (n - 1):
        raise CosignKeyError(f"unsupported scrypt work factor N={n}")
    secret = hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, dklen=32, maxmem=256 * n * r + (1 << 20))
    try:
        der = nacl.secret.SecretBox(secret).decrypt(ciphertext, nonce)
    except nacl.exceptions.CryptoError as error:
        raise CosignKeyError("wrong password") from error
    return serialization.load_der_private_key(der, password=None)
