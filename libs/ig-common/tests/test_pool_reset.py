"""create_pool(reset_session=False) drops asyncpg's reset round trip on release but still never hands out a
connection with a transaction left open; the default still resets session state (burn's leader lock relies on it)."""

import pytest
from ig_common.db import create_pool


@pytest.mark.integration
@pytest.mark.parametrize(("reset_session", "name_after_release"), [(True, ""), (False, "left-behind")])
async def test_session_state_survives_release_only_without_reset(database_url: str, reset_session: bool,
                                                                 name_after_release: str) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=1, reset_session=reset_session)
    try:
        async with pool.acquire() as conn:
            await conn.execute("SET application_name = 'left-behind'")
        async with pool.acquire() as conn:  # max_size=1: the same backend again
            assert await conn.fetchval("SHOW application_name") == name_after_release
    finally:
        await pool.close()


@pytest.mark.integration
@pytest.mark.parametrize("reset_session", [True, False])
async def test_an_open_transaction_is_rolled_back_on_release_either_way(database_url: str,
                                                                        reset_session: bool) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=1, reset_session=reset_session)
    try:
        async with pool.acquire() as conn:
            await conn.execute("CREATE TABLE IF NOT EXISTS pool_reset_probe (n int)")
            await conn.execute("TRUNCATE pool_reset_probe")
            transaction = conn.transaction()
            await transaction.start()
            await conn.execute("INSERT INTO pool_reset_probe VALUES (1)")
            # released without commit or rollback (a cancelled request would do this)
        async with pool.acquire() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT count(*) FROM pool_reset_probe") == 0
    finally:
        await pool.close()
