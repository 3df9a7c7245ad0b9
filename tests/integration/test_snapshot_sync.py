"""The snapshot's fast nights against the full nights: the same tenant, the same evolution, the
same answers, whether the sync reads last night's users from the snapshot and skips the steady
ones, or reads every state row and recomputes everyone.

Simulated tenant with scope signals (real HTTP) -> readers -> Azurite.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableServiceClient

from shared.adapters import table_wire as wire
from shared.adapters.arm import ArmReader
from shared.adapters.credentials import build_credential
from shared.adapters.fingerprint_worker import FingerprintWorker
from shared.adapters.graph import GraphReader
from shared.adapters.snapshot import HEAD_ROW, PARTITION, Encoder, SnapshotStore
from shared.adapters.state_store import StateStore
from shared.domain.runs import RunStatus, SyncRun
from shared.domain.scope_rules import ScopePolicy
from shared.jobs import sync as sync_job
from shared.jobs.scope_signals import ScopeSources, SignalOptions
from shared.jobs.sync import SyncOptions, run_sync
from shared.jobs.sync_memory import NextSnapshot
from sim.graph_server import GraphSimulator
from sim.scope_data import add_scope_data
from sim.tenant import evolve, generate_tenant
from tests.integration.sim_identity import point_identity_at

pytestmark = pytest.mark.integration

NIGHT_1 = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
USERS = 240
# Days between nights: one 35-day gap crosses the 30-day lookback, so accounts created in between
# age past it (the never-signed-in filter's clock) and sign-in memories move towards their horizon.
GAPS = (1, 1, 35, 1, 1)


async def _wipe(service: TableServiceClient) -> StateStore:
    async for table in service.list_tables():
        await service.delete_table(table.name)
    store = StateStore(service)
    await store.ensure_tables()
    return store


async def _forget_snapshot(store: StateStore) -> None:
    await store.users.delete_entity(PARTITION, HEAD_ROW)


def _sources(sim: GraphSimulator, exclusion_group: str, policy: ScopePolicy) -> ScopeSources:
    credential = build_credential("managed_identity", None)
    options: dict[str, Any] = {"page_size": 60, "max_retries": 1, "retry_delay_seconds": 0.0}
    return ScopeSources(
        graph=GraphReader(credential, base_url=sim.base_url, **options),
        options=SignalOptions(policy=policy, azure_rbac=True, exclusion_group_id=exclusion_group),
        arm=ArmReader(credential, base_url=sim.root_url, **options),
    )


async def _close(sources: ScopeSources) -> None:
    graph, arm = sources.graph, sources.arm
    assert isinstance(graph, GraphReader) and isinstance(arm, ArmReader)
    await graph.aclose()
    await arm.aclose()


async def _night_changes(store: StateStore, night: str) -> set[tuple[str, str, int]]:
    found = set()
    async for e in store.changes.query_entities("PartitionKey eq @n", parameters={"n": night}):
        found.add((e["UserId"], e["Kind"], int(e["Version"])))
    return found


async def _history(
    service: TableServiceClient,
    monkeypatch: pytest.MonkeyPatch,
    *,
    full: bool,
    policy: ScopePolicy | None = None,
    options: SyncOptions | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run the nights of GAPS on a fresh tenant; ``full`` forgets the snapshot before each night."""
    store = await _wipe(service)
    night_options = options or SyncOptions()
    tenant = generate_tenant(USERS, seed=11)
    info = add_scope_data(tenant, seed=11, now=NIGHT_1)
    nights: list[dict[str, Any]] = []
    now = NIGHT_1 - timedelta(days=1)
    with GraphSimulator(tenant, page_size=60) as sim:
        point_identity_at(sim, monkeypatch)
        sources = _sources(sim, info["exclusionGroupId"], policy or ScopePolicy())
        graph = sources.graph
        assert isinstance(graph, GraphReader)
        try:
            for n, gap in enumerate((1, *GAPS)):
                now += timedelta(days=gap)
                if n:
                    evolve(tenant, seed=100 + n, churn=0.04, now=now - timedelta(hours=3))
                if full and n:
                    await _forget_snapshot(store)
                store.counters.__init__()  # type: ignore[misc]
                run = await run_sync(graph, store, options=night_options, clock=lambda t=now: t, scope=sources)
                assert run.status is RunStatus.COMPLETED, run.error
                assert run.figures is not None
                nights.append(
                    {
                        "figures": asdict(run.figures),
                        "changes": await _night_changes(store, run.night),
                        "reads": run.io.table_reads,
                        "from": run.io.remembered_from,
                        "carried": run.io.users_carried,
                        "recomputed": run.io.users_recomputed,
                    }
                )
        finally:
            await _close(sources)
    users = await store.load_users()
    final = {
        uid: (u.record, u.version, u.deleted, u.first_seen)
        for uid, u in users.items()  # ETags differ between the histories; nothing else may
    }
    return nights, final


async def test_fast_nights_answer_exactly_as_full_nights(
    table_service: TableServiceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast, fast_state = await _history(table_service, monkeypatch, full=False)
    full, full_state = await _history(table_service, monkeypatch, full=True)

    assert fast_state == full_state
    for night, (a, b) in enumerate(zip(fast, full, strict=True)):
        assert a["figures"] == b["figures"], f"night {night}"
        assert a["changes"] == b["changes"], f"night {night}"
    # Something happened: changes of several kinds, and scope moves among them.
    kinds = {kind for night in fast[1:] for _, kind, _ in night["changes"]}
    assert {"registered", "deleted", "new", "entered_scope"} <= kinds
    # And the fast nights were fast: a few snapshot rows read instead of every state row.
    for a, b in zip(fast[1:], full[1:], strict=True):
        assert a["reads"] <= 5 and a["from"] == "snapshot"
        assert b["reads"] >= USERS and b["from"] == "state_rows" and b["carried"] == 0
        assert a["carried"] + a["recomputed"] == b["recomputed"] == a["figures"]["users"]
    assert sum(a["carried"] for a in fast[1:]) > sum(a["recomputed"] for a in fast[1:])  # most were skipped


async def test_a_fingerprint_worker_moves_work_to_another_process_and_changes_no_answer(
    table_service: TableServiceClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sync_job, "usable_cpus", lambda: 2)  # as on any machine with a CPU to spare
    alone, alone_state = await _history(table_service, monkeypatch, full=False)  # 240 users: no worker
    with caplog.at_level(logging.INFO, logger=sync_job.__name__):
        helped, helped_state = await _history(
            table_service, monkeypatch, full=False, options=SyncOptions(fingerprint_worker_from=0)
        )
    assert helped_state == alone_state and helped == alone
    answered = [int(m[1]) for r in caplog.records if (m := re.search(r"fingerprinted (\d+) pages", r.getMessage()))]
    assert len(answered) == len(GAPS) and all(n >= 2 * USERS // 60 for n in answered)  # every page, every fast night

    # A worker that dies part way through a night costs nothing but its help.
    submit = FingerprintWorker.submit
    sent = 0

    def dies_after_three_pages(self: FingerprintWorker, raw: bytes, kind: str) -> Any:
        nonlocal sent
        sent += 1
        if sent == 3:
            self._process.kill()
        return submit(self, raw, kind)

    monkeypatch.setattr(FingerprintWorker, "submit", dies_after_three_pages)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        dying, dying_state = await _history(
            table_service, monkeypatch, full=False, options=SyncOptions(fingerprint_worker_from=0)
        )
    assert dying_state == alone_state and dying == alone
    assert any("fingerprint worker stopped" in r.getMessage() for r in caplog.records)


async def test_nights_that_write_an_overlay_answer_exactly_as_nights_that_write_a_new_base(
    table_service: TableServiceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    overlays = 0
    save_overlay = SnapshotStore.save_overlay

    async def counted(self: SnapshotStore, *args: Any) -> Any:
        nonlocal overlays
        overlays += 1
        return await save_overlay(self, *args)

    monkeypatch.setattr(SnapshotStore, "save_overlay", counted)
    monkeypatch.setattr(NextSnapshot, "OVERLAY_SHARE", 0.0)  # a new base every night
    bases, bases_state = await _history(table_service, monkeypatch, full=False)
    assert overlays == 0
    monkeypatch.setattr(NextSnapshot, "OVERLAY_SHARE", 1.0)  # an overlay on the first night's base every night
    layered, layered_state = await _history(table_service, monkeypatch, full=False)
    assert overlays == len(GAPS)
    assert layered_state == bases_state
    same = ("figures", "changes", "from", "carried", "recomputed")
    assert [{k: night[k] for k in same} for night in layered] == [{k: night[k] for k in same} for night in bases]
    assert all(night["reads"] <= 7 for night in layered[1:])  # the base's rows and the overlay's


async def _two_nights(
    store: StateStore, sources: ScopeSources, *, before_second: Any = None
) -> tuple[SyncRun, SyncRun]:
    graph = sources.graph
    assert isinstance(graph, GraphReader)
    first = await run_sync(graph, store, clock=lambda: NIGHT_1, scope=sources)
    if before_second is not None:
        await before_second()
    store.counters.__init__()  # type: ignore[misc]
    second = await run_sync(graph, store, clock=lambda: NIGHT_1 + timedelta(days=1), scope=sources)
    return first, second


@pytest.fixture
async def world(table_service: TableServiceClient, monkeypatch: pytest.MonkeyPatch) -> Any:
    store = await _wipe(table_service)
    tenant = generate_tenant(120, seed=3)
    info = add_scope_data(tenant, seed=3, now=NIGHT_1)
    with GraphSimulator(tenant, page_size=50) as sim:
        point_identity_at(sim, monkeypatch)
        sources = _sources(sim, info["exclusionGroupId"], ScopePolicy())
        yield store, sources, tenant
        await _close(sources)


async def _head(store: StateStore) -> dict[str, Any]:
    head = await wire.get_entity(store.users, PARTITION, HEAD_ROW)
    assert head is not None
    return head


async def test_a_damaged_snapshot_is_noticed_and_replaced(world: Any, caplog: pytest.LogCaptureFixture) -> None:
    store, sources, _ = world

    async def damage() -> None:
        row = await store.users.get_entity(PARTITION, f"{(await _head(store))['Slot']}|00000")
        part = bytearray(row["P00"])
        part[len(part) // 2] ^= 0xFF
        row["P00"] = bytes(part)
        await store.users.upsert_entity(row, mode=UpdateMode.REPLACE)

    with caplog.at_level(logging.WARNING):
        first, second = await _two_nights(store, sources, before_second=damage)
    assert second.status is RunStatus.COMPLETED, second.error
    assert "reading every state row instead of the snapshot" in caplog.text
    assert "do not match their head" in caplog.text
    assert second.io.table_reads >= first.figures.users  # type: ignore[union-attr]
    assert sum(second.figures.changes.values()) == 0  # type: ignore[union-attr]
    assert (await _head(store))["Valid"] is True  # written anew

    # and the next night trusts it again
    store.counters.__init__()  # type: ignore[misc]
    graph = sources.graph
    third = await run_sync(graph, store, clock=lambda: NIGHT_1 + timedelta(days=2), scope=sources)
    assert third.status is RunStatus.COMPLETED and third.io.table_reads <= 5


async def test_a_run_that_fails_mid_commit_leaves_the_snapshot_untrusted(world: Any) -> None:
    store, sources, tenant = world
    graph = sources.graph
    first = await run_sync(graph, store, clock=lambda: NIGHT_1, scope=sources)
    assert (await _head(store))["Valid"] is True
    evolve(tenant, seed=9, churn=0.05)

    async def failing_commit(*_: Any, **__: Any) -> Any:
        raise ConnectionError("the storage account went away mid-commit")
        yield  # an async generator, like the real one

    store.commit_updates = failing_commit  # type: ignore[method-assign]
    failed = await run_sync(graph, store, clock=lambda: NIGHT_1 + timedelta(days=1), scope=sources)
    assert failed.status is RunStatus.FAILED and "went away" in (failed.error or "")
    assert (await _head(store))["Valid"] is False  # invalidated before the first write

    del store.commit_updates
    store.counters.__init__()  # type: ignore[misc]
    again = await run_sync(graph, store, clock=lambda: NIGHT_1 + timedelta(days=2), scope=sources)
    assert again.status is RunStatus.COMPLETED, again.error
    assert again.io.table_reads >= first.figures.users  # type: ignore[union-attr]  # the state rows
    assert sum(again.figures.changes.values()) > 0  # type: ignore[union-attr]  # the churn, recorded now
    assert (await _head(store))["Valid"] is True


async def test_other_settings_recompute_everyone_from_the_snapshot(
    world: Any, caplog: pytest.LogCaptureFixture
) -> None:
    store, sources, _ = world
    graph = sources.graph
    await run_sync(graph, store, clock=lambda: NIGHT_1, scope=sources)
    changed = ScopeSources(
        graph=sources.graph,
        options=SignalOptions(
            policy=ScopePolicy(lookback_days=45),
            azure_rbac=True,
            exclusion_group_id=sources.options.exclusion_group_id,
        ),
        arm=sources.arm,
    )
    store.counters.__init__()  # type: ignore[misc]
    with caplog.at_level(logging.INFO):
        run = await run_sync(graph, store, clock=lambda: NIGHT_1 + timedelta(days=1), scope=changed)
    assert run.status is RunStatus.COMPLETED, run.error
    assert run.io.table_reads <= 5  # last night's users still came from the snapshot
    assert "0 carried unchanged from the snapshot" in caplog.text  # but nobody was skipped
    assert run.io.users_carried == 0

    # Whatever changed or not, the snapshot is now remembered under the new settings: the next
    # night under them carries the steady users again (an upgrade must not leave every later
    # night slow on a tenant where nobody changed).
    await store.users.delete_entity(PARTITION, HEAD_ROW)
    store.counters.__init__()  # type: ignore[misc]
    await run_sync(graph, store, clock=lambda: NIGHT_1 + timedelta(days=2), scope=changed)  # from the state rows
    again = await run_sync(graph, store, clock=lambda: NIGHT_1 + timedelta(days=3), scope=changed)
    assert again.io.users_carried > 0
    assert again.figures is not None and not any(again.figures.changes.values())
    settled = await run_sync(graph, store, clock=lambda: NIGHT_1 + timedelta(days=4), scope=sources)
    assert settled.io.users_carried == 0 and settled.figures is not None
    third = await run_sync(graph, store, clock=lambda: NIGHT_1 + timedelta(days=5), scope=sources)
    assert third.io.users_carried > 0, "the snapshot was not saved again under the settings it changed to"


async def test_a_snapshot_that_cannot_give_a_users_state_fails_the_run_once_then_is_set_aside(world: Any) -> None:
    store, sources, _ = world
    graph = sources.graph
    first = await run_sync(graph, store, clock=lambda: NIGHT_1, scope=sources)
    head = await store.snapshot.head()
    snapshot = await store.snapshot.load(head, head.context)
    # A blob whose digest is right but one user's remembered state is not JSON (a bug, not damage).
    victim = next(iter(snapshot.entries))
    encoder = Encoder(snapshot.profiles, snapshot.columns)
    for user_id, e in snapshot.entries.items():
        state = b"{broken" if user_id == victim else snapshot.state_bytes(user_id) or b""
        flags = 0 if user_id == victim else e.flags  # not steady: tonight recomputes them
        encoder.add_raw(user_id, e.user_fp, e.report_fp, e.profile, flags, state)
    await store.snapshot.save(head, encoder.blob(), head.context, "test")

    failed = await run_sync(graph, store, clock=lambda: NIGHT_1 + timedelta(days=1), scope=sources)
    assert failed.status is RunStatus.FAILED
    assert f"the remembered state of {victim} is not JSON" in (failed.error or "")
    assert (await _head(store))["Valid"] is False

    store.counters.__init__()  # type: ignore[misc]
    again = await run_sync(graph, store, clock=lambda: NIGHT_1 + timedelta(days=2), scope=sources)
    assert again.status is RunStatus.COMPLETED, again.error
    assert again.io.remembered_from == "state_rows" and again.io.table_reads >= first.figures.users  # type: ignore[union-attr]
    assert sum(again.figures.changes.values()) == 0  # type: ignore[union-attr]


async def test_a_snapshot_whose_states_cannot_be_read_is_set_aside_even_when_only_a_deletion_needs_them(
    world: Any,
) -> None:
    """The states decompress behind the night; the first to need them here is a user who left
    (every other user is carried). The run fails with the reason, writes nothing, stops trusting
    the snapshot, and the next night reads the state rows and records the deletion."""
    store, sources, tenant = world
    graph = sources.graph
    await run_sync(graph, store, clock=lambda: NIGHT_1)  # without scope signals: everyone is steady
    head = await store.snapshot.head()
    blob = b"".join([await _blob_rows(store, head)])[
        :-3
    ]  # the states stream cut short: the index is whole, the digest is the blob's (a bug, not damage)
    await store.snapshot.save(head, blob, head.context, "test")
    leaver = tenant.users[7]["id"]
    assert tenant.remove_users([leaver]) == 1

    failed = await run_sync(graph, store, clock=lambda: NIGHT_1 + timedelta(days=1))
    assert failed.status is RunStatus.FAILED
    assert "the snapshot could not be used" in (failed.error or "") and "cut short" in (failed.error or "")
    assert failed.io.users_carried == len(tenant.users)  # every remaining user was carried
    assert (await _head(store))["Valid"] is False
    assert await _night_changes(store, failed.night) == set()

    again = await run_sync(graph, store, clock=lambda: NIGHT_1 + timedelta(days=2))
    assert again.status is RunStatus.COMPLETED, again.error
    assert again.io.remembered_from == "state_rows"
    assert {(u, k) for u, k, _ in await _night_changes(store, again.night)} == {(leaver, "deleted")}


async def _blob_rows(store: StateStore, head: Any) -> bytes:
    """The base blob the head names, as stored."""
    parts = []
    for n in range(head.rows):
        row = await wire.get_entity(store.users, PARTITION, f"{head.slot}|{n:05d}")
        assert row is not None
        parts.extend(wire.binary_value(row, f"P{i:02d}") or b"" for i in range(10))
    return b"".join(parts)


async def test_a_snapshot_that_cannot_be_sealed_costs_speed_not_correctness(
    world: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker thread that compresses the snapshot during the commit fails: the night still
    completes, the head stays invalid, and the next night reads the state rows and is whole."""
    store, sources, tenant = world
    graph = sources.graph
    await run_sync(graph, store, clock=lambda: NIGHT_1, scope=sources)
    evolve(tenant, seed=21, churn=0.05)

    def broken(self: NextSnapshot) -> None:
        raise MemoryError("no room to compress")

    working = NextSnapshot.seal_unwritten
    monkeypatch.setattr(NextSnapshot, "seal_unwritten", broken)
    with caplog.at_level(logging.WARNING):
        night = await run_sync(graph, store, clock=lambda: NIGHT_1 + timedelta(days=1), scope=sources)
    assert night.status is RunStatus.COMPLETED, night.error
    assert sum(night.figures.changes.values()) > 0  # type: ignore[union-attr]
    assert "could not save the snapshot" in caplog.text and "no room to compress" in caplog.text
    assert (await _head(store))["Valid"] is False

    monkeypatch.setattr(NextSnapshot, "seal_unwritten", working)
    store.counters.__init__()  # type: ignore[misc]
    after = await run_sync(graph, store, clock=lambda: NIGHT_1 + timedelta(days=2), scope=sources)
    assert after.status is RunStatus.COMPLETED, after.error
    assert after.io.remembered_from == "state_rows"
    assert not any(after.figures.changes.values())  # type: ignore[union-attr]  # the night before was recorded whole
    assert (await _head(store))["Valid"] is True
