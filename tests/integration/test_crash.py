"""A process that dies in the middle of writing loses nothing and duplicates nothing.

The child process commits part of a night and exits hard. The next run waits out the lease,
repairs the crashed run's night index, and commits the rest; every change is then recorded
exactly once in the timelines and in the night index.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from azure.data.tables.aio import TableServiceClient
from azure.identity.aio import ManagedIdentityCredential

from shared.adapters import table_schema as schema
from shared.adapters.graph import GraphReader
from shared.adapters.state_store import StateStore
from shared.domain.runs import RunStatus
from shared.jobs.sync import SyncOptions, run_sync
from sim.azurite import Azurite
from sim.graph_server import GraphSimulator
from sim.tenant import generate_tenant
from tests.integration.sim_identity import point_identity_at

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NIGHT = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[GraphSimulator]:
    with GraphSimulator(generate_tenant(400, seed=21), page_size=50) as server:
        point_identity_at(server, monkeypatch)
        yield server


async def test_crash_mid_commit_is_recovered_exactly_once(
    azurite: Azurite, sim: GraphSimulator, table_service: TableServiceClient
) -> None:
    env = {
        **os.environ,
        "TABLES_CONNECTION_STRING": azurite.connection_string,
        "GRAPH_BASE_URL": sim.base_url,
        "CRASH_AFTER_BATCHES": "5",
        "CRASH_NIGHT": NIGHT.isoformat(),
    }
    child = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "tests.integration.crash_child"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert child.returncode == 86, child.stderr.decode()[-2000:]

    store = StateStore(table_service)
    committed = len(await store.load_users())
    assert 0 < committed < 400  # part of the night landed
    crashed = [e async for e in store.runs.query_entities("PartitionKey eq 'run'")]
    assert [(r["Status"], r["IndexPending"]) for r in crashed] == [("running", True)]

    later = NIGHT + timedelta(seconds=3)  # the crashed run's lease (2 s) has expired by then
    async with (
        ManagedIdentityCredential() as credential,
        GraphReader(credential, base_url=sim.base_url, page_size=50) as graph,
    ):
        run = await run_sync(graph, store, options=SyncOptions(), clock=lambda: later)
    assert run.status is RunStatus.COMPLETED, run.error
    assert run.figures and run.figures.changes["new"] == 400 - committed

    # Every user exactly once: one state row, one `new` event in the timeline and in the index.
    users = await store.load_users()
    assert len(users) == 400 and all(u.version == 1 for u in users.values())
    timeline = Counter()
    for shard in schema.SHARDS:
        async for e in store.users.query_entities(
            "PartitionKey eq @pk and RowKey ge 'e|' and RowKey lt 'e}'", parameters={"pk": shard}
        ):
            timeline[e["UserId"]] += 1
    assert set(timeline.values()) == {1} and len(timeline) == 400
    index = Counter(
        [e["UserId"] async for e in store.changes.query_entities("PartitionKey eq @n", parameters={"n": run.night})]
    )
    assert set(index.values()) == {1} and len(index) == 400

    runs = {r["RowKey"]: r async for r in store.runs.query_entities("PartitionKey eq 'run'")}
    (crashed_id,) = [k for k in runs if k != run.run_id]
    assert runs[crashed_id]["Status"] == "failed" and runs[crashed_id]["IndexPending"] is False
    assert runs[crashed_id]["IndexRepairedRows"] == committed
