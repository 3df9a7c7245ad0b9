"""The nightly sync end to end: simulated tenant (real HTTP) -> GraphReader -> Azurite.

Each test builds a tenant, serves it from the simulator, runs real syncs and checks what the
tables say against what the tenant truly did.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableServiceClient

from shared.adapters import table_schema as schema
from shared.adapters.graph import GraphReader
from shared.adapters.history_reader import HistoryReader
from shared.adapters.state_store import StateStore
from shared.domain.runs import RunStatus
from shared.jobs.sync import SyncOptions, run_sync
from sim.graph_server import GraphSimulator, ServerError, Slow, Throttle
from sim.tenant import Tenant, evolve, generate_tenant
from tests.integration.sim_identity import point_identity_at

NIGHT_1 = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)


class Nights:
    """A clock that moves a day per sync, so each run lands on its own night."""

    def __init__(self, start: datetime = NIGHT_1) -> None:
        self.now = start - timedelta(days=1)

    def next_night(self) -> None:
        self.now += timedelta(days=1)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def tenant() -> Tenant:
    return generate_tenant(300, seed=7)


@pytest.fixture
def sim(tenant: Tenant, monkeypatch: pytest.MonkeyPatch) -> Iterator[GraphSimulator]:
    with GraphSimulator(tenant, page_size=40) as server:
        point_identity_at(server, monkeypatch)
        yield server


@pytest.fixture
async def store(table_service: TableServiceClient) -> StateStore:
    s = StateStore(table_service)
    await s.ensure_tables()
    return s


@pytest.fixture
async def graph(sim: GraphSimulator) -> AsyncIterator[GraphReader]:
    from azure.identity.aio import ManagedIdentityCredential

    async with (
        ManagedIdentityCredential() as credential,
        GraphReader(credential, base_url=sim.base_url, page_size=40, max_retries=2, retry_delay_seconds=0.1) as reader,
    ):
        yield reader


async def sync(graph: GraphReader, store: StateStore, clock: Nights, **options: Any):
    clock.next_night()
    store.counters.__init__()  # type: ignore[misc]  # per-run counters
    return await run_sync(graph, store, options=SyncOptions(**options), clock=clock)


def truth(tenant: Tenant) -> dict[str, Any]:
    enabled = {u["id"] for u in tenant.users if u.get("accountEnabled") is not False}
    rows = {r["id"]: r for r in tenant.user_registration_details}
    return {
        "users": len(tenant.users),
        "guests": sum(1 for u in tenant.users if u.get("userType") == "Guest"),
        "registered": sum(1 for i in enabled if i in rows and rows[i]["isMfaRegistered"]),
        "unregistered": sum(1 for i in enabled if i in rows and not rows[i]["isMfaRegistered"]),
    }


async def night_kinds(store: StateStore, night: str) -> dict[str, set[str]]:
    kinds: dict[str, set[str]] = {}
    async for e in store.changes.query_entities("PartitionKey eq @n", parameters={"n": night}):
        kinds.setdefault(e["Kind"], set()).add(e["UserId"])
    return kinds


async def test_first_night_records_everyone_and_the_figures(
    tenant: Tenant, graph: GraphReader, store: StateStore
) -> None:
    clock = Nights()
    run = await sync(graph, store, clock)
    assert run.status is RunStatus.COMPLETED, run.error
    expected = truth(tenant)
    f = run.figures
    assert f is not None
    assert (f.users, f.guests) == (expected["users"], expected["guests"])
    assert (f.coverage.registered, f.coverage.unregistered) == (expected["registered"], expected["unregistered"])
    assert f.changes["new"] == expected["users"]
    assert (await night_kinds(store, run.night)) == {"new": {u["id"] for u in tenant.users}}
    assert run.io.graph_requests >= 2 * (300 // 40)  # paged, both endpoints
    assert run.io.graph_pages >= 300 // 40

    # the run row and the coverage row say the same
    row = await store.runs.get_entity(schema.RUN_PARTITION, run.run_id)
    assert row["Status"] == "completed" and row["PullComplete"] is True and row["IndexPending"] is False
    coverage = await HistoryReader(store._service).coverage(run.night, run.night)
    assert [(p.night, p.registered, p.unregistered) for p in coverage] == [
        (run.night, expected["registered"], expected["unregistered"])
    ]


async def test_an_unchanged_tenant_costs_no_writes(graph: GraphReader, store: StateStore) -> None:
    clock = Nights()
    await sync(graph, store, clock)
    second = await sync(graph, store, clock)
    assert second.status is RunStatus.COMPLETED
    assert second.figures and sum(second.figures.changes.values()) == 0
    assert second.figures.silent_updates == 0
    assert second.io.table_batches == 0  # no user, event or index rows; only run/coverage/lease rows
    assert await night_kinds(store, second.night) == {}


async def test_a_night_of_churn_is_recorded_exactly(tenant: Tenant, graph: GraphReader, store: StateStore) -> None:
    clock = Nights()
    await sync(graph, store, clock)
    did = evolve(tenant, seed=11, churn=0.03)["ids"]
    run = await sync(graph, store, clock)
    assert run.status is RunStatus.COMPLETED, run.error
    kinds = await night_kinds(store, run.night)

    assert kinds.get("registered", set()) >= set(did["registered"])
    assert kinds.get("unregistered", set()) >= set(did["unregistered"])
    assert set(did["methods_changed"]) <= kinds.get("methods_changed", set())
    assert kinds.get("disabled", set()) == set(did["disabled"])
    assert kinds.get("enabled", set()) == set(did["enabled"])
    assert kinds.get("became_admin", set()) == set(did["admin_added"])
    assert kinds.get("no_longer_admin", set()) == set(did["admin_removed"])
    assert kinds.get("deleted", set()) == set(did["deleted"])
    assert kinds.get("new", set()) == set(did["joined_members"]) | set(did["joined_guests"])
    # a disabled user leaves the report but keeps the registration facts last known
    for uid in did["disabled"]:
        history = await HistoryReader(store._service).user_history(uid)
        assert history and history.current.record.enabled is False
        assert history.current.record.mfa_registered is not None
    # registration / method changes only for users the tenant changed that way (or re-enabled)
    explained = set(did["registered"]) | set(did["unregistered"]) | set(did["methods_changed"]) | set(did["enabled"])
    for kind in ("registered", "unregistered", "methods_changed"):
        assert kinds.get(kind, set()) <= explained

    # the same night again: nothing new
    again = await sync(graph, store, clock)
    assert again.figures and sum(again.figures.changes.values()) == 0


async def test_a_pull_that_fails_part_way_writes_nothing_and_the_next_run_recovers(
    tenant: Tenant, sim: GraphSimulator, graph: GraphReader, store: StateStore
) -> None:
    clock = Nights()
    await sync(graph, store, clock)
    did = evolve(tenant, seed=3, churn=0.05)["ids"]
    before = [dict(e) async for e in store.users.list_entities()]

    # Page 3 of /users answers 503 more often than the retry policy allows.
    sim.inject(path="/v1.0/users", fault=ServerError(status=503, retry_after=0), times=10, page=3)
    failed = await sync(graph, store, clock)
    assert failed.status is RunStatus.FAILED and not failed.pull_complete
    assert "503" in (failed.error or "")
    assert gc.get_freeze_count() == 0  # the run froze its remembered users and thawed them, failing or not
    gc.freeze()  # something else in the process froze its objects: the run leaves them frozen
    try:
        assert (await sync(graph, store, clock)).status is RunStatus.FAILED
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
    after = [dict(e) async for e in store.users.list_entities()]
    assert after == before  # no partial state, no `deleted` events
    assert await night_kinds(store, failed.night) == {}
    row = await store.runs.get_entity(schema.RUN_PARTITION, failed.run_id)
    assert row["Status"] == "failed" and "503" in row["Error"]

    sim.clear_faults()
    recovered = await sync(graph, store, clock)
    assert recovered.status is RunStatus.COMPLETED
    assert gc.get_freeze_count() == 0
    kinds = await night_kinds(store, recovered.night)
    assert kinds.get("deleted", set()) == set(did["deleted"])


async def test_throttling_is_honoured_and_counted(graph: GraphReader, sim: GraphSimulator, store: StateStore) -> None:
    sim.inject(path="/v1.0/reports", fault=Throttle(retry_after=1), times=1)
    sim.inject(path="/v1.0/users", fault=Throttle(retry_after=1), times=1)
    run = await sync(graph, store, Nights())
    assert run.status is RunStatus.COMPLETED
    assert run.io.graph_throttled == 2
    assert run.figures and run.figures.changes["new"] == 300


async def test_time_budget_stops_a_slow_pull_without_writing(
    graph: GraphReader, sim: GraphSimulator, store: StateStore
) -> None:
    sim.inject(path="/v1.0/users", fault=Slow(seconds=3), times=5)
    run = await sync(graph, store, Nights(), time_budget_seconds=1.0)
    assert run.status is RunStatus.FAILED
    assert "time budget" in (run.error or "")
    assert [e async for e in store.users.list_entities()] == []


async def test_odd_users_are_skipped_or_normalised_and_the_rest_recorded(
    tenant: Tenant, graph: GraphReader, store: StateStore
) -> None:
    users = tenant.users
    odd: list[dict[str, Any]] = [
        {"id": None, "displayName": "no id"},
        {"id": "bad/id", "displayName": "slash"},
        {"id": "0d0d0d0d-0000-4000-8000-000000000001", "userPrincipalName": None, "mail": None},
        {
            "id": "0d0d0d0d-0000-4000-8000-000000000002",
            "userPrincipalName": "eve_fabrikam.example#EXT#@contoso.example",
            "displayName": "<script>alert('x')</script> Ève 🚀",
            "mail": None,
            "otherMails": ["not an address", "eve@fabrikam.example"],
        },
        dict(users[0]),  # the same user again on a later page
    ]
    tenant.collections["users"] = [*users, *odd]
    tenant.collections["userRegistrationDetails"] = [
        *tenant.user_registration_details,
        {"id": "0d0d0d0d-0000-4000-8000-000000000002", "isMfaRegistered": "yes", "methodsRegistered": ["quantumToken"]},
        "not an object",
    ]
    tenant.touch()
    run = await sync(graph, store, Nights())
    assert run.status is RunStatus.COMPLETED, run.error
    f = run.figures
    assert f is not None
    assert f.users == 300 + 2
    assert sum(f.skipped.values()) == 4  # two bad ids, one duplicate, one non-object report row
    assert "duplicate user id across pages" in f.skipped
    assert "quantumToken" in f.unknown_methods
    eve = await HistoryReader(store._service).user_history("0d0d0d0d-0000-4000-8000-000000000002")
    assert eve is not None
    assert eve.current.record.email == "eve@fabrikam.example"
    assert eve.current.record.user_type.value == "guest"
    assert eve.current.record.display_name.startswith("<script>")  # stored as text, escaped when shown
    assert eve.current.record.mfa_registered is None  # "yes" is not a boolean: unknown, not registered


async def test_overlapping_runs_cannot_both_write(graph: GraphReader, sim: GraphSimulator, store: StateStore) -> None:
    sim.inject(path="/v1.0/users", fault=Slow(seconds=0.5), times=1)
    clock = Nights()
    clock.next_night()
    first, second = await asyncio.gather(run_sync(graph, store, clock=clock), run_sync(graph, store, clock=clock))
    statuses = sorted([first.status.value, second.status.value])
    assert statuses == ["completed", "skipped"]
    skipped = first if first.status is RunStatus.SKIPPED else second
    assert "holds the lease" in (skipped.error or "")
    assert len(await night_kinds(store, first.night)) == 1  # only `new`, written once
    news = [e async for e in store.changes.query_entities("PartitionKey eq @n", parameters={"n": first.night})]
    assert len(news) == 300


async def test_a_writer_that_sneaks_in_is_detected_not_overwritten(
    tenant: Tenant, graph: GraphReader, store: StateStore
) -> None:
    clock = Nights()
    await sync(graph, store, clock)
    evolve(tenant, seed=5, churn=0.05)
    victim = tenant.users[0]["id"]
    for u in tenant.users[:1]:
        u["displayName"] = "renamed tonight"
    tenant.touch()

    class Sneaky:
        """Wraps the real reader; after the pull, another writer changes the victim's row."""

        def __init__(self, inner: GraphReader) -> None:
            self.inner = inner
            self.stats = inner.stats

        def registration_details(self, fingerprints=None):
            return self.inner.registration_details(fingerprints)

        async def users(self, fingerprints=None):
            async for page in self.inner.users(fingerprints):
                yield page
            row = dict(await store.users.get_entity(schema.shard_of(victim), schema.state_key(victim)))
            row["DisplayName"] = "written by another run"
            await store.users.update_entity(row, mode=UpdateMode.REPLACE)

    run = await sync(Sneaky(graph), store, clock)  # type: ignore[arg-type]
    assert run.status is RunStatus.FAILED
    assert "another sync" in (run.error or "")
    row = await store.users.get_entity(schema.shard_of(victim), schema.state_key(victim))
    assert row["DisplayName"] == "written by another run"
    # what did commit is indexed; the next run finishes the job
    recovered = await sync(graph, store, clock)
    assert recovered.status is RunStatus.COMPLETED
    assert gc.get_freeze_count() == 0
    row = await store.users.get_entity(schema.shard_of(victim), schema.state_key(victim))
    assert row["DisplayName"] == "renamed tonight"


async def test_a_flood_of_bad_users_is_counted_but_logged_only_a_few_times(
    tenant: Tenant, graph: GraphReader, store: StateStore, caplog: pytest.LogCaptureFixture
) -> None:
    tenant.collections["users"] = [*tenant.users, *({"id": f"bad/{i}"} for i in range(50))]
    tenant.touch()
    with caplog.at_level("WARNING", logger="shared.jobs.sync"):
        run = await sync(graph, store, Nights())
    assert run.status is RunStatus.COMPLETED
    assert run.figures and sum(run.figures.skipped.values()) == 50
    assert run.figures.users == 300  # everyone else recorded
    logged = [r for r in caplog.records if r.getMessage().startswith("skipped a user")]
    assert len(logged) == 20


async def test_an_index_write_that_fails_mid_commit_is_repaired_by_the_next_run(
    tenant: Tenant, graph: GraphReader, store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Nights()
    await sync(graph, store, clock)
    evolve(tenant, seed=6, churn=0.4)  # enough events for the night index to be written mid-commit
    real = store.write_night_index
    calls = 0

    async def failing_once(rows: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("the changes table went away")
        await real(rows)

    monkeypatch.setattr(store, "write_night_index", failing_once)
    failed = await sync(graph, store, clock)
    assert failed.status is RunStatus.FAILED and "went away" in (failed.error or "")
    row = await store.runs.get_entity(schema.RUN_PARTITION, failed.run_id)
    # Transactions still on the wire may have committed unseen: the index is left to the repair.
    assert row["IndexPending"] is True

    recovered = await sync(graph, store, clock)
    assert recovered.status is RunStatus.COMPLETED, recovered.error
    row = await store.runs.get_entity(schema.RUN_PARTITION, failed.run_id)
    assert row["IndexPending"] is False and row["IndexRepairedRows"] > 0
    # Every event the failed run committed is in its night's index, exactly once.
    timeline: set[tuple[str, int, str]] = set()
    for shard in schema.SHARDS:
        async for e in store.users.query_entities(
            "PartitionKey eq @pk and RunId eq @run", parameters={"pk": shard, "run": failed.run_id}
        ):
            timeline.add((e["UserId"], int(e["Version"]), e["Kind"]))
    index = [
        (e["UserId"], int(e["Version"]), e["Kind"])
        async for e in store.changes.query_entities(
            "PartitionKey eq @n and RunId eq @run", parameters={"n": failed.night, "run": failed.run_id}
        )
    ]
    assert timeline and sorted(index) == sorted(timeline)
