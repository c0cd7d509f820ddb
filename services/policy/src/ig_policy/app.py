"""Wiring only: settings -> adapters -> servers."""

import asyncio

from ig_common.service import run_service
from ig_common.settings import load_settings

from ig_policy.settings import Settings
from ig_policy.store import MIGRATIONS, SCHEMA


def main() -> None:
    settings = load_settings(Settings)
    asyncio.run(run_service(settings, schema=SCHEMA, migrations=MIGRATIONS, grpc_services=lambda runtime: []))


if __name__ == "__main__":
    main()
