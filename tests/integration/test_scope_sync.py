"""The nightly sync with the scope signals: simulated tenant (real HTTP) -> readers -> Azurite.

Who is in scope and why, each filter, the deltas, what a night of sign-ins costs, the licence
fallback, and a failing signal.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables.aio import TableServiceClient

from shared.adapters import table_schema as schema
from shared.adapters.arm import ArmReader
from shared.adapters.credentials import build_credential
from shared.adapters.graph import GraphReader
from shared.adapters.history_reader import HistoryReader
from shared.adapters.state_store import StateStore
from shared.domain.records import StoredUser
from shared.domain.runs import RunStatus, SyncRun
from shared.domain.scope import Phase
from shared.domain.scope_rules import ScopePolicy
from shared.jobs.scope_signals import ScopeSources, SignalOptions
from shared.jobs.sync import SyncOptions, run_sync
from sim.graph_server import GraphSimulator, ServerError
from sim.scope_data import add_scope_data
from sim.tenant import Tenant, evolve, generate_tenant
from tests.integration.sim_identity import point_identity_at

pytestmark = pytest.mark.integration

NIGHT_1 = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = NIGHT_1

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def world() -> tuple[Tenant, dict[str, Any]]:
    tenant = generate_tenant(250, seed=5)
    return tenant, add_scope_data(tenant, seed=5, now=NIGHT_1)


@pytest.fixture
def sim(world: tuple[Tenant, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> Iterator[GraphSimulator]:
    with GraphSimulator(world[0], page_size=100) as server:
        point_identity_at(server, monkeypatch)
        yield server


@pytest.fixture
async def store(table_service: TableServiceClient) -> StateStore:
    s = StateStore(table_service)
    await s.ensure_tables()
    return s


@pytest.fixture
async def sources(sim: GraphSimulator, world: tuple[Tenant, dict[str, Any]]) -> AsyncIterator[ScopeSources]:
    credential = build_credential("managed_identity", None)
    options: dict[str, Any] = {"page_size": 100, "max_retries": 1, "retry_delay_seconds": 0.0}
    graph = GraphReader(credential, base_url=sim.base_url, **options)
    arm = ArmReader(credential, base_url=sim.root_url, **options)
    signal_options = SignalOptions(
        policy=ScopePolicy(),
        azure_rbac=True,
        exclusion_group_id=world[1]["exclusionGroupId"],
    )
    yield ScopeSources(graph=graph, options=signal_options, arm=arm)
    await graph.aclose()
    await arm.aclose()
    await credential.close()


async def sync(sources: ScopeSources, store: StateStore, clock: Clock, *, days: float = 1.0, **kw: Any) -> SyncRun:
    clock.now += timedelta(days=days)
    store.counters.__init__()  # type: ignore[misc]
    graph = sources.graph
    assert isinstance(graph, GraphReader)
    return await run_sync(graph, store, options=SyncOptions(**kw), clock=clock, scope=sources)


async def state(store: StateStore) -> dict[str, StoredUser]:
    return await store.load_users()


async def night_kinds(store: StateStore, night: str) -> dict[str, set[str]]:
    kinds: dict[str, set[str]] = {}
    async for e in store.changes.query_entities("PartitionKey eq @n", parameters={"n": night}):
        kinds.setdefault(e["Kind"], set()).add(e["UserId"])
    return kinds


async def test_first_night_knows_who_is_in_scope_and_why(
    world: tuple[Tenant, dict[str, Any]], sources: ScopeSources, store: StateStore
) -> None:
    _, info = world
    clock = Clock()
    clock.now -= timedelta(days=1)
    run = await sync(sources, store, clock)
    assert run.status is RunStatus.COMPLETED, run.error
    users = await state(store)
    scope = {uid: u.record.scope for uid, u in users.items()}
    assert all(s.known for s in scope.values())

    for uid in info["breakGlass"]:
        assert scope[uid].exclusion_code == "exclusion_group" and Phase.PORTALS in scope[uid].phases
    assert scope[info["syncAccount"]].exclusion_code == "directory_sync"
    svc = scope[info["serviceAccount"]]
    assert svc.exclusion_code == "workload_identity" and svc.exclusion == "service account: move to a workload identity"
    assert "signin:azure_powershell" in svc.reasons and "azure_rbac:Contributor" in svc.reasons
    assert scope[info["neverSignedIn"]].exclusion_code == "never_signed_in"
    for uid in info["cliUsers"]:
        assert Phase.ARM in scope[uid].phases and scope[uid].last_seen
    for uid in info["roleHolders"]:
        assert scope[uid].phases == (Phase.PORTALS, Phase.ARM)
    for uid in info["rbacUsers"]:
        assert any(r.startswith("azure_rbac:") for r in scope[uid].reasons)
    trusted = [uid for uid in info["trustedGuests"] if users[uid].record.enabled]
    assert trusted and all(scope[uid].home_mfa_trusted is True for uid in trusted)
    members_without_signals = [
        u for uid, u in users.items() if not u.record.is_guest and not scope[uid].reasons and u.record.enabled
    ]
    assert members_without_signals and all(not s.record.scope.phases for s in members_without_signals)

    # A guest with no deliverable address: in scope, stored without one (the planner reports it).
    nowhere = [u for u in users.values() if u.record.is_guest and u.record.email is None and u.record.enabled]
    assert nowhere and all(u.record.scope.phases and u.record.scope.exclusion is None for u in nowhere)

    # The run row and the coverage row carry the scope figures.
    f = run.figures
    assert f is not None and f.in_scope == sum(1 for u in users.values() if u.record.enabled and u.record.scope.phases)
    assert f.scope_reasons["signin"] >= len(info["cliUsers"]) and f.excluded["exclusion_group"] == 2
    row = await store.runs.get_entity(schema.RUN_PARTITION, run.run_id)
    assert row["RegistrationSource"] == "report" and row["SignInSource"] == "logs" and row["AzureRbac"] is True
    assert row["SignInsRead"] > 0 and row["RoleAssignments"] > 0 and row["AzureRoleAssignments"] > 0
    coverage = await store.runs.get_entity(schema.COVERAGE_PARTITION, run.night)
    assert (
        coverage["Phase2InScope"]
        == f.phase_coverage["phase2"].registered
        + f.phase_coverage["phase2"].unregistered
        + f.phase_coverage["phase2"].unknown
    )
    assert await night_kinds(store, run.night) == {"new": set(users)}  # no scope events for new users


def _fresh(tenant: Tenant, older_than: timedelta | None, newer_than: timedelta | None) -> list[dict[str, Any]]:
    """A new sign-in tonight (20 hours after night 1) for each (user, management app) whose latest
    sign-in is newer than ``newer_than`` / older than ``older_than`` before night 1."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for s in tenant.collection("signIns"):
        if s["appId"] == "4765445b-32c6-49b0-83e6-1d93765276ca":  # not a management app
            continue
        key = (s["userId"], s["appId"])
        if key not in latest or s["createdDateTime"] > latest[key]["createdDateTime"]:
            latest[key] = s
    fresh = []
    for s in latest.values():
        at = datetime.fromisoformat(s["createdDateTime"].replace("Z", "+00:00"))
        if newer_than is not None and at < NIGHT_1 - newer_than:
            continue
        if older_than is not None and at > NIGHT_1 - older_than:
            continue
        copy_ = copy.deepcopy(s)
        copy_["id"] = f"{s['id'][:-4]}beef"
        copy_["createdDateTime"] = (NIGHT_1 + timedelta(hours=20)).strftime("%Y-%m-%dT%H:%M:%SZ")
        fresh.append(copy_)
    return fresh


async def test_an_unchanged_tenant_with_sign_in_activity_costs_no_writes(
    world: tuple[Tenant, dict[str, Any]], sources: ScopeSources, store: StateStore
) -> None:
    tenant, _ = world
    clock = Clock()
    await sync(sources, store, clock, days=0)
    # Tonight everyone seen in the last 6 days signs in again: their last-seen moves, by less than
    # a week. Carried, not tracked: no write.
    recent = _fresh(tenant, None, timedelta(days=6))
    assert len(recent) > 10
    tenant.collections["signIns"] = recent + tenant.collection("signIns")
    tenant.touch()
    second = await sync(sources, store, clock)
    assert second.status is RunStatus.COMPLETED, second.error
    assert second.figures and sum(second.figures.changes.values()) == 0
    assert second.figures.silent_updates == 0
    assert second.io.table_batches == 0  # only the run, coverage and lease rows

    # Someone last seen over a week ago signs in: one silent write keeps the stored last-seen close.
    (stale, *_) = _fresh(tenant, timedelta(days=9), None)
    tenant.collections["signIns"] = [stale, *tenant.collection("signIns")]
    tenant.touch()
    third = await sync(sources, store, clock, days=0)
    assert third.figures and third.figures.silent_updates == 1 and sum(third.figures.changes.values()) == 0
    stored = (await state(store))[stale["userId"]].record.scope
    assert stored.last_seen == stale["createdDateTime"]


async def test_entering_and_leaving_scope_are_recorded(
    world: tuple[Tenant, dict[str, Any]], sources: ScopeSources, store: StateStore
) -> None:
    tenant, _ = world
    clock = Clock()
    await sync(sources, store, clock, days=0)
    before = await state(store)
    did = evolve(tenant, seed=3, churn=0.03, now=NIGHT_1 + timedelta(hours=22))
    run = await sync(sources, store, clock)
    assert run.status is RunStatus.COMPLETED, run.error
    kinds = await night_kinds(store, run.night)
    started = set(did["scope"]["started_cli"])
    assert started and started <= kinds.get("entered_scope", set())
    after = await state(store)
    for uid in kinds.get("entered_scope", set()):
        assert set(after[uid].record.scope.phases) - set(before[uid].record.scope.phases)
    for uid in kinds.get("left_scope", set()):
        assert uid in set(did["scope"]["roles_removed"]) | set(did["ids"]["disabled"])
        assert set(before[uid].record.scope.phases) - set(after[uid].record.scope.phases)
    events = [e async for e in store.changes.query_entities("PartitionKey eq @n", parameters={"n": run.night})]
    entered = next(e for e in events if e["Kind"] == "entered_scope" and e["UserId"] in started)
    assert '"signin:azure_cli"' in entered["After"] and '"phase2"' in entered["After"]
    history = await HistoryReader(store._service).user_history(entered["UserId"])
    assert history is not None and [e.kind for e in history.events][-1] == "entered_scope"


async def test_a_user_who_stops_signing_in_stays_in_scope_with_last_seen_kept(
    world: tuple[Tenant, dict[str, Any]], sources: ScopeSources, store: StateStore
) -> None:
    _, info = world
    clock = Clock()
    await sync(sources, store, clock, days=0)
    developer = info["cliUsers"][0]
    seen = (await state(store))[developer].record.scope
    assert seen.phases and seen.last_seen
    # 45 days later the logs (30 days) hold none of tonight's sign-ins.
    run = await sync(sources, store, clock, days=45)
    assert run.status is RunStatus.COMPLETED, run.error
    later = (await state(store))[developer].record.scope
    assert later.phases == seen.phases and later.reasons == seen.reasons and later.last_seen == seen.last_seen
    assert "left_scope" not in await night_kinds(store, run.night)


async def test_without_a_premium_licence_in_scope_users_methods_are_read_one_by_one(
    world: tuple[Tenant, dict[str, Any]], sim: GraphSimulator, sources: ScopeSources, store: StateStore
) -> None:
    tenant, info = world
    sim.premium = False
    clock = Clock()
    run = await sync(sources, store, clock, days=0)
    assert run.status is RunStatus.COMPLETED, run.error
    row = await store.runs.get_entity(schema.RUN_PARTITION, run.run_id)
    assert row["RegistrationSource"] == "per_user_methods" and row["SignInSource"] == "unavailable_licence"
    users = await state(store)
    in_scope = {uid for uid, u in users.items() if u.record.enabled and u.record.scope.phases}
    fetched = {r.path.split("/")[3] for r in sim.requests if r.path.endswith("/authentication/methods")}
    assert fetched == in_scope  # the in-scope users only, once each
    assert row["PerUserLookups"] >= len(in_scope)
    for uid in in_scope:
        report = tenant.registration(uid)
        assert users[uid].record.mfa_registered is bool(report and report["isMfaRegistered"])
    outside = [u for uid, u in users.items() if uid not in in_scope and u.record.enabled]
    assert outside and all(u.record.mfa_registered is None for u in outside)  # unknown, not "unregistered"
    # Roles still put admins in scope; sign-ins cannot (Entra ID Free has no sign-in logs in Graph).
    assert all(users[uid].record.scope.phases for uid in info["roleHolders"])


async def test_a_failing_signal_fails_the_run_without_writing(
    world: tuple[Tenant, dict[str, Any]], sim: GraphSimulator, sources: ScopeSources, store: StateStore
) -> None:
    tenant, _ = world
    clock = Clock()
    await sync(sources, store, clock, days=0)
    before = [dict(e) async for e in store.users.list_entities()]
    tenant.collections["roleAssignments"] = []  # a storm hides the roles: must not read as "left scope"
    tenant.touch()
    sim.inject("/v1.0/roleManagement/directory/roleAssignments", ServerError(503, retry_after=0), times=None)
    failed = await sync(sources, store, clock)
    assert failed.status is RunStatus.FAILED and "503" in (failed.error or "")
    assert [dict(e) async for e in store.users.list_entities()] == before
    assert await night_kinds(store, failed.night) == {}
