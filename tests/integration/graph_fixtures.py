"""Fixtures for tests that talk to the tenant simulator (Graph + managed-identity endpoint).

Import the ones you use into a test module (or list this module in a conftest's
``pytest_plugins``).  Everything binds 127.0.0.1 only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from shared.adapters.credentials import build_credential
from shared.adapters.graph import GraphReader
from sim.graph_server import GraphSimulator
from sim.tenant import Tenant, generate_tenant
from tests.integration.sim_identity import point_identity_at


@pytest.fixture
def small_tenant() -> Tenant:
    """60 users: enough for 9 pages of 7, small enough to check object by object."""
    return generate_tenant(60, seed=1234)


@pytest.fixture
def graph_sim(small_tenant: Tenant) -> Iterator[GraphSimulator]:
    with GraphSimulator(small_tenant, page_size=7) as sim:
        yield sim


@pytest.fixture
def identity_env(graph_sim: GraphSimulator, monkeypatch: pytest.MonkeyPatch) -> GraphSimulator:
    """Point App Service managed identity at the simulator (set before any credential exists)."""
    point_identity_at(graph_sim, monkeypatch)
    return graph_sim


@pytest.fixture
async def mi_credential(identity_env: GraphSimulator) -> AsyncIterator[Any]:
    """The production credential (system-assigned managed identity) against the simulator."""
    credential = build_credential("managed_identity", None)
    yield credential
    await credential.close()


@pytest.fixture
async def make_reader(graph_sim: GraphSimulator, mi_credential: Any) -> AsyncIterator[Callable[..., GraphReader]]:
    """``make_reader(**overrides)``: a GraphReader on the simulator, closed after the test.

    Defaults keep fault tests fast: page size 7, 2 retries, no base delay.
    """
    readers: list[GraphReader] = []

    def factory(**overrides: Any) -> GraphReader:
        options: dict[str, Any] = {
            "base_url": graph_sim.base_url,
            "page_size": 7,
            "max_retries": 2,
            "retry_delay_seconds": 0.0,
        }
        options.update(overrides)
        reader = GraphReader(mi_credential, **options)
        readers.append(reader)
        return reader

    yield factory
    for reader in readers:
        await reader.aclose()
