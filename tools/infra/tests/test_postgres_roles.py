"""PostgreSQL least privilege, against the real server ig-infra runs: TLS with client certificates only, one
runtime and one migrator role per service (none a superuser), and a ledger its own service cannot rewrite.

The session's database is migrated the way the services do it at start-up (``prepare_service_schema`` as each
service's migrator for its runtime role), so every check below runs against the real schemas."""

from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
from ig_common.db import create_pool, prepare_service_schema
from ig_infra.components.postgres import LEDGER_OWNER, SERVICE_ROLES, with_database
from ig_infra.pki import DevCA, ca_directory
from ig_infra.pytest_plugin import Infra

pytestmark = pytest.mark.integration

APPEND = "evidence.ledger_append"


def _store(service: str) -> tuple[str, Path]:
    import ig_burn.store
    import ig_evidence.store
    import ig_migration.store
    import ig_policy.store
    import ig_portal.store

    module = {"policy": ig_policy.store, "evidence": ig_evidence.store, "burn": ig_burn.store,
              "migration": ig_migration.store, "audit-portal": ig_portal.store}[service]
    return module.SCHEMA, module.MIGRATIONS


@pytest.fixture(scope="module")
def database_url(infra: Infra) -> Iterator[str]:
    """A database of this module's own, laid out like the suite's: other tests of the session leave schemas made
    by the superuser in the shared one."""
    url = infra.new_database("ig_roles")
    yield url
    infra.drop_database(url)


@pytest.fixture(scope="module")
def suite(infra: Infra, database_url: str) -> Infra:
    async def migrate_all() -> None:
        for service in SERVICE_ROLES:
            schema, migrations = _store(service)
            runtime = await create_pool(infra.service_dsn(service, database_url), max_size=1)
            try:
                await prepare_service_schema(runtime, schema, migrations,
                                             infra.service_dsn(service, database_url, migrator=True))
            finally:
                await runtime.close()

    asyncio.run(migrate_all())
    return infra


async def connect_as(suite: Infra, database_url: str, service: str, *, migrator: bool = False
                     ) -> asyncpg.Connection:
    return await asyncpg.connect(suite.service_dsn(service, database_url, migrator=migrator))


def _with_query(dsn: str, **changes: str) -> str:
    parts = urlsplit(dsn)
    query = dict(item.split("=", 1) for item in parts.query.split("&") if item)
    query.update(changes)
    query = {k: v for k, v in query.items() if v}
    return parts._replace(query="&".join(f"{k}={v}" for k, v in query.items())).geturl()


# -- roles ---------------------------------------------------------------------------------------------------
async def test_no_service_role_is_a_superuser_or_can_make_roles_databases_or_bypass_rls(
        suite: Infra, database_url: str) -> None:
    names = [n for r in SERVICE_ROLES.values() for n in (r.runtime, r.migrator)] + [LEDGER_OWNER]
    admin = await asyncpg.connect(database_url)
    try:
        rows = await admin.fetch(
            """SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolreplication,
                      EXISTS (SELECT FROM pg_roles s WHERE s.rolsuper AND pg_has_role(r.oid, s.oid, 'MEMBER'))
                          AS member_of_superuser
               FROM pg_roles r WHERE rolname = ANY($1::text[])""", names)
    finally:
        await admin.close()
    assert sorted(r["rolname"] for r in rows) == sorted(names)
    privileged = [d for d in map(dict, rows) if any(v for k, v in d.items() if k != "rolname")]
    assert privileged == []
    for service in SERVICE_ROLES:
        conn = await connect_as(suite, database_url, service)
        try:
            assert await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user") is False
            assert await conn.fetchval("SELECT current_user") == SERVICE_ROLES[service].runtime
        finally:
            await conn.close()


async def test_pg_hba_has_no_trust_and_takes_tcp_only_over_tls(suite: Infra, database_url: str) -> None:
    admin = await asyncpg.connect(database_url)
    try:
        rules = await admin.fetch("SELECT type, auth_method, error FROM pg_hba_file_rules")
    finally:
        await admin.close()
    assert rules and all(r["error"] is None for r in rules)
    assert {r["auth_method"] for r in rules} <= {"cert", "peer"}
    assert {r["type"] for r in rules} <= {"hostssl", "local"}


async def test_the_policy_role_cannot_read_the_evidence_schema(suite: Infra, database_url: str) -> None:
    for migrator in (False, True):
        conn = await connect_as(suite, database_url, "policy", migrator=migrator)
        try:
            for table in ("ledger_entries", "bundles", "outbox"):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.fetch(f"SELECT * FROM evidence.{table} LIMIT 1")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetchval(f"SELECT {APPEND}('{{}}', '{{}}', '{{}}', '{{}}', '{{}}', '{{}}', '{{}}', '{{}}', "
                                    "'{}')")
            # Its own schema it can use.
            await conn.fetch("SELECT * FROM policy.outbox LIMIT 1")
        finally:
            await conn.close()


# -- the ledger ----------------------------------------------------------------------------------------------
async def test_the_evidence_role_appends_only_through_the_ledger_functions_and_cannot_rewrite_entries(
        suite: Infra, database_url: str) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from ig_evidence.store.ledger import CheckpointSigner, LedgerStore

    pool = await create_pool(suite.service_dsn("evidence", database_url), max_size=4)
    try:
        signer = CheckpointSigner("roles-test", Ed25519PrivateKey.generate())
        store = LedgerStore(pool, "evidence", signer)
        appended = await asyncio.gather(*(store.append("test.roles", f"subject-{n}", b"{}") for n in range(20)))
        first_seq = min(entry.fields.seq for entry, _ in appended)
        await store.checkpoint()
        await store.close()
        assert (await store.verify()).ok

        conn = await pool.acquire()
        try:
            refused = [
                "UPDATE evidence.ledger_entries SET subject = 'forged' WHERE seq = $1",
                "DELETE FROM evidence.ledger_entries WHERE seq = $1",
                "UPDATE evidence.ledger_head SET size = $1 - 1",
                "INSERT INTO evidence.ledger_entries SELECT $1 + 1000, ts, kind, subject, payload, payload_sha256, "
                "prev_hash, entry_hash FROM evidence.ledger_entries WHERE seq = 1",
            ]
            for statement in refused:
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute(statement, first_seq)
            for statement in ("ALTER TABLE evidence.ledger_entries DISABLE TRIGGER ledger_entries_append_only",
                              "ALTER TABLE evidence.ledger_entries DISABLE TRIGGER ALL",
                              "ALTER TABLE evidence.ledger_head DISABLE TRIGGER ALL",
                              "TRUNCATE evidence.ledger_entries CASCADE",
                              "DROP TABLE evidence.ledger_entries CASCADE",
                              "ALTER FUNCTION evidence.ledger_check_appended() OWNER TO CURRENT_USER",
                              "CREATE OR REPLACE FUNCTION evidence.ledger_check_appended() RETURNS trigger "
                              "LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
                              f"SET ROLE {LEDGER_OWNER}"):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute(statement)
            # The function itself still refuses an entry that does not extend the head (its trigger runs).
            with pytest.raises(asyncpg.IntegrityConstraintViolationError):
                await conn.fetchval(
                    f"SELECT {APPEND}(ARRAY[1]::bigint[], ARRAY[now()], ARRAY['k'], ARRAY['s'], ARRAY['x'::bytea], "
                    "ARRAY[repeat('a', 64)], ARRAY[repeat('0', 64)], ARRAY[repeat('b', 64)], ARRAY['alpha'])")
            assert await conn.fetchval("SELECT count(*) FROM evidence.ledger_entries") >= 20
        finally:
            await pool.release(conn)
        assert (await store.verify()).ok
    finally:
        await pool.close()


async def test_the_ledger_tables_belong_to_their_own_owner_not_the_schema_owner(
        suite: Infra, database_url: str) -> None:
    admin = await asyncpg.connect(database_url)
    try:
        owners = dict(await admin.fetch(
            """SELECT c.relname, c.relowner::regrole::text FROM pg_class c
               WHERE c.relnamespace = 'evidence'::regnamespace AND c.relkind = 'r'"""))
        definers = await admin.fetch(
            """SELECT p.proname, p.proowner::regrole::text AS owner, p.prosecdef FROM pg_proc p
               WHERE p.pronamespace = 'evidence'::regnamespace
                 AND p.proname IN ('ledger_append', 'ledger_lock_head')""")
    finally:
        await admin.close()
    for table in ("ledger_entries", "ledger_head", "ledger_checkpoints"):
        assert owners[table] == LEDGER_OWNER
    assert owners["bundles"] == SERVICE_ROLES["evidence"].migrator
    assert sorted((d["proname"], d["owner"], d["prosecdef"]) for d in definers) == [
        ("ledger_append", LEDGER_OWNER, True), ("ledger_lock_head", LEDGER_OWNER, True)]


# -- migrations and the migration service --------------------------------------------------------------------
async def test_a_migration_role_cannot_touch_another_schema(suite: Infra, database_url: str) -> None:
    for service, migrator in (("migration", False), ("migration", True), ("evidence", True), ("burn", True)):
        conn = await connect_as(suite, database_url, service, migrator=migrator)
        try:
            others = [s.schema for s in SERVICE_ROLES.values() if s.service != service]
            for schema in others:
                for statement in (f"CREATE TABLE {schema}.intruder (id int)",
                                  f"ALTER TABLE {schema}.outbox DISABLE TRIGGER ALL",
                                  f"DROP TABLE {schema}.outbox",
                                  f"SELECT * FROM {schema}.outbox LIMIT 1",
                                  f"DELETE FROM {schema}.outbox"):
                    with pytest.raises(asyncpg.InsufficientPrivilegeError):
                        await conn.execute(statement)
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute("CREATE SCHEMA intruder")
        finally:
            await conn.close()


async def test_the_migration_runtime_role_owns_the_target_schemas_and_runs_a_plans_sql_there(
        suite: Infra, database_url: str) -> None:
    from ig_migration.workload import create_assets

    conn = await connect_as(suite, database_url, "migration")
    try:
        await create_assets(conn, 100)
        await conn.execute("CREATE TABLE IF NOT EXISTS public.assets_v3 (LIKE public.assets INCLUDING ALL)")
        await conn.execute("CREATE INDEX CONCURRENTLY IF NOT EXISTS assets_v3_lookup ON public.assets_v3 (tenant)")
        await conn.execute("CREATE FUNCTION migration.ig_mig_test_to_green() RETURNS trigger LANGUAGE plpgsql "
                           "AS $$ BEGIN RETURN NEW; END $$")
        assert await conn.fetchval("SELECT count(*) FROM app.assets") == 100
        owners = await conn.fetch("SELECT nspname FROM pg_namespace WHERE nspowner = "
                                  "(SELECT oid FROM pg_roles WHERE rolname = current_user) ORDER BY 1")
        assert [o["nspname"] for o in owners] == ["app", "public"]
    finally:
        await conn.close()


async def test_the_runtime_role_cannot_change_its_own_schema(suite: Infra, database_url: str) -> None:
    conn = await connect_as(suite, database_url, "burn")
    try:
        for statement in ("ALTER TABLE burn.outbox ADD COLUMN extra int", "DROP TABLE burn.outbox",
                          "CREATE TABLE burn.extra (id int)", "TRUNCATE burn.outbox",
                          "DELETE FROM burn.schema_migrations"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(statement)
        await conn.execute("DELETE FROM burn.outbox WHERE false")
    finally:
        await conn.close()


# -- authentication ------------------------------------------------------------------------------------------
async def test_a_connection_without_tls_is_refused(suite: Infra, database_url: str) -> None:
    for dsn in (suite.service_dsn("evidence", database_url), database_url):
        plain = _with_query(dsn, sslmode="disable", sslrootcert="", sslcert="", sslkey="")
        with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError, match="no encryption"):
            await asyncpg.connect(plain)


async def test_a_connection_without_a_client_certificate_is_refused(suite: Infra, database_url: str) -> None:
    for dsn in (suite.service_dsn("evidence", database_url), database_url):
        anonymous = _with_query(dsn, sslcert="", sslkey="")
        with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError, match="certificate"):
            await asyncpg.connect(anonymous)


async def test_a_certificate_of_another_ca_is_refused(suite: Infra, database_url: str, tmp_path: Path) -> None:
    rogue = DevCA.load_or_create(tmp_path / "rogue-ca", common_name="rogue CA")
    forged = rogue.issue("evidence", tmp_path / "forged")
    dsn = _with_query(suite.service_dsn("evidence", database_url), sslcert=str(forged.cert), sslkey=str(forged.key))
    # The server ends the handshake (alert: unknown CA); asyncpg reports the closed connection.
    with pytest.raises((ssl.SSLError, ConnectionError, asyncpg.ConnectionDoesNotExistError)):
        await asyncpg.connect(dsn)


async def test_the_client_verifies_the_servers_certificate(suite: Infra, database_url: str, tmp_path: Path) -> None:
    rogue = DevCA.load_or_create(tmp_path / "rogue-ca", common_name="rogue CA")
    dsn = _with_query(suite.service_dsn("evidence", database_url), sslrootcert=str(rogue.directory / "ca.crt"))
    with pytest.raises(ssl.SSLCertVerificationError):
        await asyncpg.connect(dsn)


async def test_a_workload_certificate_logs_in_only_as_its_own_roles(suite: Infra, database_url: str) -> None:
    evidence_dsn = suite.service_dsn("evidence", database_url)
    for role in (SERVICE_ROLES["policy"].runtime, SERVICE_ROLES["migration"].runtime, "ig", LEDGER_OWNER,
                 "postgres"):
        other = urlsplit(evidence_dsn)._replace(netloc=f"{role}@{urlsplit(evidence_dsn).netloc.split('@')[1]}")
        with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError):
            await asyncpg.connect(other.geturl())
    # The same certificate does log in as the evidence roles, to another database of the suite's too.
    conn = await asyncpg.connect(with_database(evidence_dsn, urlsplit(database_url).path.lstrip("/")))
    await conn.close()


def test_server_certificate_is_the_dev_cas_and_private(suite: Infra) -> None:
    from cryptography import x509

    key = suite.postgres.server_tls / "tls.key"
    assert key.stat().st_mode & 0o777 == 0o600
    cert = x509.load_pem_x509_certificate((suite.postgres.server_tls / "tls.crt").read_bytes())
    assert cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC) <= datetime.timedelta(hours=24)


# -- certificates and the data directory ---------------------------------------------------------------------
async def test_a_stale_server_certificate_is_renewed_at_up_and_taken_without_a_restart(
        suite: Infra, database_url: str) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    postgres = suite.postgres
    dev_ca = DevCA.load_or_create(ca_directory(postgres.paths.cache))
    old_start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=13)
    dev_ca.issue("postgres", postgres.server_tls, not_before=old_start)
    postmaster = (postgres.data / "postmaster.pid").read_text().split()[0]
    assert not postgres.healthy()  # a stale certificate makes `up` act
    await asyncio.to_thread(postgres.start)
    renewed = x509.load_pem_x509_certificate((postgres.server_tls / "tls.crt").read_bytes())
    assert renewed.not_valid_before_utc > old_start + datetime.timedelta(hours=12)
    assert (postgres.data / "postmaster.pid").read_text().split()[0] == postmaster  # reloaded, not restarted
    assert (postgres.server_tls / "tls.key").stat().st_mode & 0o777 == 0o600
    expected = renewed.public_bytes(serialization.Encoding.DER)
    served = b""
    for _ in range(50):  # pg_ctl reload signals the postmaster and returns before it has re-read the files
        conn = await connect_as(suite, database_url, "evidence")
        try:
            served = conn._transport.get_extra_info("ssl_object").getpeercert(binary_form=True)
        finally:
            await conn.close()
        if served == expected:
            break
        await asyncio.sleep(0.1)
    assert served == expected  # the server presents the new one
    assert postgres.healthy()


def test_a_data_directory_from_before_roles_is_refused_with_the_way_out(tmp_path: Path) -> None:
    from ig_infra.components.postgres import Postgres
    from ig_infra.paths import Paths
    from ig_infra.process import InfraError

    postgres = Postgres(Paths(cache=tmp_path / "cache", run=tmp_path / "run"))
    postgres.data.mkdir(parents=True)
    (postgres.data / "PG_VERSION").write_text("15\n")
    with pytest.raises(InfraError, match=r"before per-service roles.*rm -rf"):
        postgres._check_layout()
