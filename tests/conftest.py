"""Shared fixtures: Azurite (real Table Storage protocol) for the session, fresh tables per test.

Nothing here pretends to be a table: tests that need storage talk to Azurite on 127.0.0.1.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest
from azure.data.tables.aio import TableServiceClient

from sim.azurite import Azurite

# Never let an Azure credential probe the instance metadata service from a test run.
os.environ.pop("IDENTITY_ENDPOINT", None)
os.environ.pop("MSI_ENDPOINT", None)


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    with Azurite() as server:
        yield server


@pytest.fixture
async def table_service(azurite: Azurite) -> AsyncIterator[TableServiceClient]:
    """An open client on an empty Azurite account (every table dropped before the test)."""
    async with TableServiceClient.from_connection_string(azurite.connection_string) as service:
        async for table in service.list_tables():
            await service.delete_table(table.name)
        yield service
