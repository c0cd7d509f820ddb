"""The ledger's Ed25519 checkpoint key: from a PEM file (IG_LEDGER_KEY_PATH) or generated once and kept.

Without a key file the first replica generates a key and stores it in the schema (INSERT ... ON CONFLICT, so
concurrent first starts agree on one key). Production mounts a key file instead (a Kubernetes secret).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ig_evidence.store.ledger import CheckpointSigner


def _pem(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _load(pem: bytes, where: str) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{where}: the ledger checkpoint key must be Ed25519")
    return key


async def checkpoint_signer(pool: asyncpg.Pool, schema: str, origin: str, key_path: Path | None) -> CheckpointSigner:
    if key_path is not None:
        pem = await asyncio.to_thread(key_path.read_bytes)
        return CheckpointSigner(origin, _load(pem, str(key_path)))
    await pool.execute(f"""INSERT INTO {schema}.ledger_signing_key (singleton, origin, private_pem)
                           VALUES (true, $1, $2) ON CONFLICT (singleton) DO NOTHING""",
                       origin, _pem(Ed25519PrivateKey.generate()))
    row = await pool.fetchrow(f"SELECT origin, private_pem FROM {schema}.ledger_signing_key WHERE singleton")
    return CheckpointSigner(row["origin"], _load(row["private_pem"].encode(), f"{schema}.ledger_signing_key"))
