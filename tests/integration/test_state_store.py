"""StateStore against Azurite: the lease, atomic per-user commits, ETag conflicts, index repair."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableServiceClient

from shared.adapters import table_schema as schema
from shared.adapters.leases import LeaseHeldError
from shared.adapters.state_store import IN_FLIGHT, MAX_BATCH, ConcurrentWriteError, StateStore
from shared.domain.deltas import reconcile
from shared.domain.records import UserRecord, UserType
from shared.domain.runs import SyncRun

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
RUN = SyncRun(run_id="20261123T020000Z-aaaaaa", night="2026-11-23", started=NOW)


def record(i: int, *, registered: bool | None = False) -> UserRecord:
    return UserRecord(
        id=f"{(i * 2654435761) % 2**32:08x}-0000-4000-8000-{i:012x}",  # spread over the 16 shards
        upn=f"user{i}@contoso.example",
        display_name=f"User <b>{i}</b>",
        user_type=UserType.MEMBER,
        enabled=True,
        mfa_registered=registered,
        mfa_capable=registered,
        is_admin=False,
        methods=("microsoftAuthenticatorPush",) if registered else (),
        default_method=None,
        email=f"user{i}@contoso.example",
        created="2024-01-01T00:00:00Z",
        external_user_state=None,
        on_premises_sync=False,
    )


async def store_with_tables(service: TableServiceClient) -> StateStore:
    store = StateStore(service)
    await store.ensure_tables()
    return store


async def commit_all(store: StateStore, updates, run: SyncRun = RUN) -> list[dict]:
    rows: list[dict] = []
    async for batch in store.commit_updates(updates, run, run.started.isoformat()):
        rows.extend(batch.timeline_rows)
    await store.write_night_index(rows)
    return rows


async def test_lease_is_exclusive_until_it_expires(table_service: TableServiceClient) -> None:
    store = await store_with_tables(table_service)
    first = await store.acquire_lease("run-1", NOW, 60)
    with pytest.raises(LeaseHeldError, match="run-1"):
        await store.acquire_lease("run-2", NOW + timedelta(seconds=30), 60)
    # Expired: a crashed holder never blocks the next night.
    second = await store.acquire_lease("run-2", NOW + timedelta(seconds=61), 60)
    assert second.owner == "run-2"
    # The old holder can no longer renew or release what it lost.
    with pytest.raises(LeaseHeldError):
        await store.renew_lease(first, NOW + timedelta(seconds=62), 60)
    await store.release_lease(first)  # logs, does not remove run-2's lease
    with pytest.raises(LeaseHeldError, match="run-2"):
        await store.acquire_lease("run-3", NOW + timedelta(seconds=63), 60)
    await store.release_lease(second)
    third = await store.acquire_lease("run-3", NOW + timedelta(seconds=64), 60)
    assert third.owner == "run-3"


async def test_commit_round_trips_and_batches_stay_within_limits(table_service: TableServiceClient) -> None:
    store = await store_with_tables(table_service)
    updates = [reconcile(None, record(i), NOW.isoformat()) for i in range(250)]
    rows = await commit_all(store, [u for u in updates if u])
    assert len(rows) == 250  # one `new` event each

    loaded = await store.load_users()
    assert len(loaded) == 250
    some = loaded[record(7).id]
    assert some.record == record(7)
    assert some.version == 1 and some.etag and not some.deleted

    # Transactions are per partition (shard) and at most 100 operations: 250 users spread over
    # 16 shards need one per shard for state + events, then 3 for the night index.
    assert len({schema.shard_of(record(i).id) for i in range(250)}) == 16
    assert store.counters.batches == 16 + 3
    assert store.counters.writes == 250 * 2 + 250  # state + timeline, then the night index

    night = [e async for e in store.changes.query_entities("PartitionKey eq @n", parameters={"n": RUN.night})]
    assert len(night) == 250
    assert {e["Kind"] for e in night} == {"new"}


async def test_user_timeline_is_one_partition_range(table_service: TableServiceClient) -> None:
    store = await store_with_tables(table_service)
    first = reconcile(None, record(1), NOW.isoformat())
    assert first
    await commit_all(store, [first])
    stored = (await store.load_users())[record(1).id]
    later = SyncRun(run_id="20261124T020000Z-bbbbbb", night="2026-11-24", started=NOW + timedelta(days=1))
    update = reconcile(stored, record(1, registered=True), later.started.isoformat())
    assert update
    await commit_all(store, [update], later)

    uid = record(1).id
    low, high = schema.timeline_range(uid)
    events = [
        e
        async for e in store.users.query_entities(
            "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high",
            parameters={"pk": schema.shard_of(uid), "low": low, "high": high},
        )
    ]
    assert [(e["Kind"], e["Version"], e["Night"]) for e in events] == [
        ("new", 1, "2026-11-23"),
        ("registered", 2, "2026-11-24"),
    ]


async def test_stale_etag_is_refused_and_nothing_of_that_batch_lands(table_service: TableServiceClient) -> None:
    store = await store_with_tables(table_service)
    await commit_all(store, [u for u in (reconcile(None, record(i), NOW.isoformat()) for i in range(3)) if u])
    loaded = await store.load_users()

    # Another writer changes user 1 after we loaded it.
    intruder = dict(await store.users.get_entity(schema.shard_of(record(1).id), schema.state_key(record(1).id)))
    intruder["DisplayName"] = "changed by another run"
    await store.users.update_entity(intruder, mode=UpdateMode.REPLACE)

    updates = [reconcile(loaded[record(i).id], record(i, registered=True), NOW.isoformat()) for i in range(3)]
    with pytest.raises(ConcurrentWriteError, match="another sync"):
        await commit_all(store, [u for u in updates if u])
    after = await store.users.get_entity(schema.shard_of(record(1).id), schema.state_key(record(1).id))
    assert after["DisplayName"] == "changed by another run"  # not overwritten
    assert after.get("MfaRegistered") is False


async def test_existing_row_blocks_a_second_create(table_service: TableServiceClient) -> None:
    store = await store_with_tables(table_service)
    update = reconcile(None, record(5), NOW.isoformat())
    assert update
    await commit_all(store, [update])
    with pytest.raises(ConcurrentWriteError):
        await commit_all(store, [update])


async def test_big_shard_splits_into_transactions_of_at_most_100(table_service: TableServiceClient) -> None:
    store = await store_with_tables(table_service)
    # Ids all starting with "0" land in one shard: 150 users -> 300 operations -> 4 transactions.
    updates = []
    for i in range(150):
        r = record(i)
        r = UserRecord(**{**{f: getattr(r, f) for f in r.__slots__}, "id": f"0{i:07x}-0000-4000-8000-000000000000"})
        u = reconcile(None, r, NOW.isoformat())
        assert u
        updates.append(u)
    batches = 0
    etags: dict[str, str | None] = {}
    async for committed in store.commit_updates(updates, RUN, NOW.isoformat()):
        assert 1 <= len(committed.timeline_rows) <= MAX_BATCH // 2
        # every user's new ETag comes back with the transaction, and is the stored row's
        assert len(committed.etags) == len(committed.timeline_rows)
        assert all(committed.etags.values())
        etags.update(committed.etags)
        batches += 1
    assert batches == 3  # 50 users (100 operations) fill each transaction exactly
    loaded = await store.load_users()
    assert len(loaded) == 150
    assert {uid: u.etag for uid, u in loaded.items()} == etags


async def test_repair_rebuilds_a_crashed_runs_index(table_service: TableServiceClient) -> None:
    store = await store_with_tables(table_service)
    await store.save_run(RUN, index_pending=True)
    updates = [u for u in (reconcile(None, record(i), NOW.isoformat()) for i in range(40)) if u]
    async for _rows in store.commit_updates(updates, RUN, NOW.isoformat()):
        pass  # "crash": the timeline committed, the night index was never written

    pending = await store.runs_with_pending_index(exclude_run_id="another-run")
    assert [p["RowKey"] for p in pending] == [RUN.run_id]
    repaired = await store.repair_night_index(pending[0])
    assert repaired == 40
    night = [e async for e in store.changes.query_entities("PartitionKey eq @n", parameters={"n": RUN.night})]
    assert len(night) == 40
    run_row = await store.runs.get_entity(schema.RUN_PARTITION, RUN.run_id)
    assert run_row["Status"] == "failed" and run_row["IndexPending"] is False
    assert "stopped without finishing" in run_row["Error"]
    assert await store.runs_with_pending_index(exclude_run_id="another-run") == []


class _Staggered(StateStore):
    """Transactions that finish out of order, the ``fail_at``-th of them refused."""

    def __init__(self, service: TableServiceClient, fail_at: int | None = None) -> None:
        super().__init__(service)
        self.fail_at, self.started, self.finished = fail_at, 0, 0

    async def _submit(self, operations: list[Any]) -> list[str | None]:
        n = self.started
        self.started += 1
        await asyncio.sleep(0.02 * (2 - n % 3))  # the first sent finishes last
        if n == self.fail_at:
            self.finished += 1
            raise ConcurrentWriteError("row changed under this run")
        etags = await super()._submit(operations)
        self.finished += 1
        return etags


def _many_users(n: int) -> list[Any]:
    return [u for u in (reconcile(None, record(i), NOW.isoformat()) for i in range(n)) if u]


async def test_transactions_go_out_together_and_a_failure_stops_the_rest(table_service: TableServiceClient) -> None:
    await store_with_tables(table_service)
    store = _Staggered(table_service, fail_at=4)
    updates = _many_users(400)  # 16 shards of about 25 users: 16 transactions
    seen: list[str] = []
    order: list[int] = []
    with pytest.raises(ConcurrentWriteError):
        async for committed in store.commit_updates(updates, RUN, NOW.isoformat()):
            seen.extend(committed.etags)
            order.append(store.started)
    assert 4 < store.started <= 4 + IN_FLIGHT  # nothing new was sent once one had failed
    assert store.finished == store.started  # what was on the wire landed before the error came out
    # Every committed transaction was reported, and only those: the caller can index exactly them.
    assert sorted(seen) == sorted(await store.load_users())
    assert order and order[0] > 1  # more than one was on the wire before the first came back


async def test_a_caller_that_stops_early_leaves_nothing_on_the_wire(table_service: TableServiceClient) -> None:
    await store_with_tables(table_service)
    store = _Staggered(table_service)
    stream = store.commit_updates(_many_users(400), RUN, NOW.isoformat())
    async with contextlib.aclosing(stream):
        async for _committed in stream:
            break
    assert 1 < store.started < 16
    assert store.finished == store.started  # the ones already sent landed before the stream closed
    assert len(await store.load_users()) > 25  # more than the one transaction the caller saw
