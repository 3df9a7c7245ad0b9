"""The composition root: the one place that turns settings into open clients.

Jobs receive what they talk to; they never read the environment or build a client themselves.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from azure.data.tables.aio import TableServiceClient

from shared.adapters.credentials import build_credential
from shared.adapters.graph import GraphReader
from shared.adapters.history_reader import HistoryReader
from shared.adapters.state_store import StateStore
from shared.config import Settings


@dataclass(frozen=True)
class Services:
    graph: GraphReader
    store: StateStore


@asynccontextmanager
async def open_services(settings: Settings) -> AsyncIterator[Services]:
    """Open the credential, Graph and Table clients for one job, and close them all after it."""
    async with AsyncExitStack() as stack:
        credential = build_credential(settings.auth_mode, settings.managed_identity_client_id)
        await stack.enter_async_context(credential)
        if settings.tables_connection_string:  # local development against Azurite only
            tables = TableServiceClient.from_connection_string(settings.tables_connection_string)
        else:
            assert settings.tables_endpoint is not None  # Settings guarantees one of the two
            tables = TableServiceClient(endpoint=settings.tables_endpoint, credential=credential)
        await stack.enter_async_context(tables)
        graph = GraphReader(
            credential,
            base_url=settings.graph_base_url,
            page_size=settings.graph_page_size,
            max_retries=settings.graph_max_retries,
        )
        await stack.enter_async_context(graph)
        yield Services(graph=graph, store=StateStore(tables))


@asynccontextmanager
async def open_reader(settings: Settings) -> AsyncIterator[HistoryReader]:
    """Open the Table client to read the history (one HTTP request or one command), then close it.

    Per request on purpose: the admin API is called a few times a day, a client per request
    cannot outlive its event loop, and opening one costs little (measured locally: about 16 ms
    for a whole request against Azurite, 5 ms for a fresh managed-identity token).
    """
    async with AsyncExitStack() as stack:
        if settings.tables_connection_string:  # local development against Azurite only
            tables = TableServiceClient.from_connection_string(settings.tables_connection_string)
        else:
            assert settings.tables_endpoint is not None  # Settings guarantees one of the two
            credential = build_credential(settings.auth_mode, settings.managed_identity_client_id)
            await stack.enter_async_context(credential)
            tables = TableServiceClient(endpoint=settings.tables_endpoint, credential=credential)
        await stack.enter_async_context(tables)
        yield HistoryReader(tables)
