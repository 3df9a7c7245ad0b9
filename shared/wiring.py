"""The composition root: the one place that turns settings into open clients.

Jobs receive what they talk to; they never read the environment or build a client themselves.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from azure.core.credentials_async import AsyncTokenCredential
from azure.data.tables.aio import TableServiceClient

from shared.adapters.arm import ArmReader
from shared.adapters.credentials import build_credential
from shared.adapters.email import EmailSender
from shared.adapters.graph import GraphReader
from shared.adapters.history_reader import HistoryReader
from shared.adapters.reminder_ledger import ReminderLedger
from shared.adapters.state_store import StateStore
from shared.config import Settings
from shared.jobs.scope_signals import ScopeSources, SignalOptions


def _credential(settings: Settings) -> AsyncTokenCredential:
    return build_credential(settings.auth_mode, settings.managed_identity_client_id)


def _tables(settings: Settings, credential: AsyncTokenCredential | None) -> TableServiceClient:
    if settings.tables_connection_string:  # local development against Azurite only
        return TableServiceClient.from_connection_string(settings.tables_connection_string)
    assert settings.tables_endpoint is not None and credential is not None  # Settings guarantees it
    return TableServiceClient(endpoint=settings.tables_endpoint, credential=credential)


def _graph(settings: Settings, credential: AsyncTokenCredential) -> GraphReader:
    return GraphReader(
        credential,
        base_url=settings.graph_base_url,
        page_size=settings.graph_page_size,
        max_retries=settings.graph_max_retries,
    )


@dataclass(frozen=True)
class Services:
    graph: GraphReader
    store: StateStore
    scope: ScopeSources | None = None  # the scope signals' readers (Graph, and ARM when enabled)


def scope_sources(settings: Settings, graph: GraphReader, arm: ArmReader | None) -> ScopeSources:
    s = settings.scope
    options = SignalOptions(
        policy=s.policy,
        non_interactive=s.non_interactive,
        include_arm_resource=s.include_arm_resource,
        azure_rbac=s.azure_rbac,
        rbac_management_groups=s.rbac_management_groups,
        exclusion_group_id=s.exclusion_group_id,
        registration_fallback=s.registration_fallback,
        concurrency=s.concurrency,
    )
    return ScopeSources(graph=graph, options=options, arm=arm)


@asynccontextmanager
async def open_services(settings: Settings) -> AsyncIterator[Services]:
    """Open the credential, Graph and Table clients for one job, and close them all after it."""
    async with AsyncExitStack() as stack:
        credential = await stack.enter_async_context(_credential(settings))
        tables = await stack.enter_async_context(_tables(settings, credential))
        graph = _graph(settings, credential)
        await stack.enter_async_context(graph)
        arm: ArmReader | None = None
        if settings.scope.azure_rbac:
            arm = ArmReader(
                credential,
                base_url=settings.scope.arm_base_url,
                page_size=settings.graph_page_size,
                max_retries=settings.graph_max_retries,
            )
            await stack.enter_async_context(arm)
        yield Services(graph=graph, store=StateStore(tables), scope=scope_sources(settings, graph, arm))


@dataclass(frozen=True)
class ReadSide:
    """What the admin questions read: the history, and the reminder ledger (read only here)."""

    history: HistoryReader
    ledger: ReminderLedger


@asynccontextmanager
async def open_read_side(settings: Settings) -> AsyncIterator[ReadSide]:
    """Open the Table client to read the history (one HTTP request or one command), then close it.

    Per request on purpose: the admin API is called a few times a day, a client per request
    cannot outlive its event loop, and opening one costs little (measured locally: about 16 ms
    for a whole request against Azurite, 5 ms for a fresh managed-identity token).
    """
    async with AsyncExitStack() as stack:
        credential = None
        if not settings.tables_connection_string:  # Azurite needs no token
            credential = await stack.enter_async_context(_credential(settings))
        tables = await stack.enter_async_context(_tables(settings, credential))
        yield ReadSide(history=HistoryReader(tables), ledger=ReminderLedger(tables))


@asynccontextmanager
async def open_reader(settings: Settings) -> AsyncIterator[HistoryReader]:
    """``open_read_side`` for callers that read the history only."""
    async with open_read_side(settings) as side:
        yield side.history


@dataclass(frozen=True)
class NudgeServices:
    graph: GraphReader
    store: StateStore
    ledger: ReminderLedger
    email: EmailSender | None  # None: no ACS endpoint (allowed in dry run)


@asynccontextmanager
async def open_nudge_services(settings: Settings, *, email_verify: bool | str = True) -> AsyncIterator[NudgeServices]:
    """The nudge job's clients: Tables, Graph (the methods re-check) and ACS Email, one credential.

    ``email_verify``: a CA bundle for the ACS endpoint (the local simulator's test CA); True in Azure.
    """
    async with AsyncExitStack() as stack:
        credential = await stack.enter_async_context(_credential(settings))
        tables = await stack.enter_async_context(_tables(settings, credential))
        graph = _graph(settings, credential)
        await stack.enter_async_context(graph)
        nudge = settings.nudge
        email: EmailSender | None = None
        if nudge.acs_endpoint and nudge.sender_address:
            email = EmailSender(nudge.acs_endpoint, credential, nudge.sender_address, connection_verify=email_verify)
            await stack.enter_async_context(email)
        yield NudgeServices(graph=graph, store=StateStore(tables), ledger=ReminderLedger(tables), email=email)
