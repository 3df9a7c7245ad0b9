"""Table Storage for the sync: load remembered users, commit updates atomically, keep the run log.

Writes follow three rules (docs/table-schema.md has the why):
1. A user's new state row and its event rows go in one entity-group transaction, with an ETag
   condition on the state row, so an overlapping writer is detected instead of overwritten.
2. The night index is written after the timeline it copies; a run that dies in between leaves
   ``IndexPending`` on its run row and the next run rebuilds the index from the timeline rows.
3. Only one sync holds the lease at a time; the lease expires, so a crashed holder never blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncGenerator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient, TableServiceClient

from shared.adapters import table_schema as schema
from shared.adapters import table_wire as wire
from shared.adapters.leases import Lease, LeaseRow
from shared.adapters.snapshot import SnapshotStore
from shared.domain.deltas import UserUpdate
from shared.domain.records import StoredUser
from shared.domain.runs import RunStatus, SyncRun

log = logging.getLogger(__name__)

MAX_BATCH = 100  # Table Storage's limit of operations in one entity-group transaction
_LOAD_PAGE = 1000  # Table Storage's largest query page
IN_FLIGHT = 3  # user transactions on the wire at once: the next is built while the service works


_CONFLICT_CODES = ("EntityAlreadyExists", "UpdateConditionNotSatisfied")


@dataclass(frozen=True)
class Committed:
    """One committed transaction: its timeline rows (to index) and each written user's new ETag
    (None if the service did not say)."""

    timeline_rows: list[dict[str, Any]]
    etags: dict[str, str | None]


class ConcurrentWriteError(RuntimeError):
    """Another run changed a user this run was about to write; nothing of that batch was written."""


@dataclass
class TableCounters:
    reads: int = 0  # entities read
    writes: int = 0  # entities written
    batches: int = 0  # transactions submitted


class StateStore:
    """The sync's view of the tables. Build it with an open ``TableServiceClient``."""

    def __init__(self, service: TableServiceClient) -> None:
        self._service = service
        self.users: TableClient = service.get_table_client(schema.USERS_TABLE)
        self.changes: TableClient = service.get_table_client(schema.CHANGES_TABLE)
        self.runs: TableClient = service.get_table_client(schema.RUNS_TABLE)
        self.counters = TableCounters()
        self._lease = LeaseRow(self.runs, schema.SYNC_LEASE_ROW, "sync")
        self.snapshot = SnapshotStore(self.users, self.counters)

    async def ensure_tables(self) -> None:
        for name in schema.ALL_TABLES:
            with contextlib.suppress(ResourceExistsError):
                await self._service.create_table(name)

    # --- the lease ---------------------------------------------------------------------------

    async def acquire_lease(self, owner: str, now: datetime, seconds: float) -> Lease:
        return await self._lease.acquire(owner, now, seconds)

    async def renew_lease(self, lease: Lease, now: datetime, seconds: float) -> Lease:
        return await self._lease.renew(lease, now, seconds)

    async def release_lease(self, lease: Lease) -> None:
        await self._lease.release(lease)

    # --- runs ----------------------------------------------------------------------------------

    async def save_run(self, run: SyncRun, *, index_pending: bool) -> None:
        await self.runs.upsert_entity(schema.run_entity(run, index_pending=index_pending), mode=UpdateMode.REPLACE)
        self.counters.writes += 1

    async def save_coverage(self, run: SyncRun) -> None:
        await self.runs.upsert_entity(schema.coverage_entity(run), mode=UpdateMode.REPLACE)
        self.counters.writes += 1

    async def runs_with_pending_index(self, exclude_run_id: str) -> list[dict[str, Any]]:
        query = self.runs.query_entities(
            "PartitionKey eq @pk and IndexPending eq true",
            parameters={"pk": schema.RUN_PARTITION},
            select=["RowKey", "Night", "Status"],
        )
        return [dict(e) async for e in query if e["RowKey"] != exclude_run_id]

    async def repair_night_index(self, run_row: dict[str, Any]) -> int:
        """Copy a crashed run's timeline rows into the night index (idempotent upserts)."""
        run_id = str(run_row["RowKey"])
        rows: list[dict[str, Any]] = []
        low, high = schema.prefix_range(schema.EVENT_PREFIX)
        for shard in schema.SHARDS:
            query = self.users.query_entities(
                "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high and RunId eq @run",
                parameters={"pk": shard, "low": low, "high": high, "run": run_id},
            )
            async for entity in query:
                self.counters.reads += 1
                rows.append(schema.night_entity(entity))
        await self._upsert_partitioned(self.changes, rows)
        status = schema.run_status_of(run_row)
        patch = {
            "PartitionKey": schema.RUN_PARTITION,
            "RowKey": run_id,
            "IndexPending": False,
            "IndexRepairedRows": len(rows),
        }
        if status is RunStatus.RUNNING:
            patch["Status"] = RunStatus.FAILED.value
            patch["Error"] = "the run stopped without finishing (crash or timeout); its index was repaired"
        await self.runs.update_entity(patch, mode=UpdateMode.MERGE)
        self.counters.writes += 1
        return len(rows)

    # --- users ---------------------------------------------------------------------------------

    async def load_users(self) -> dict[str, StoredUser]:
        """Every remembered user (deleted ones too, so a restore is recognised), shards in parallel."""
        results = await asyncio.gather(*(self._load_shard(s) for s in schema.SHARDS))
        users: dict[str, StoredUser] = {}
        for part in results:
            users.update(part)
        return users

    async def _load_shard(self, shard: str) -> dict[str, StoredUser]:
        low, high = schema.state_range()
        users: dict[str, StoredUser] = {}
        async for page in wire.query_pages(self.users, wire.range_filter(shard, low, high), page_size=_LOAD_PAGE):
            for entity in page:
                stored = schema.stored_user_from_entity(entity, entity.get("odata.etag"))
                users[stored.record.id] = stored
            self.counters.reads += len(page)
        return users

    async def commit_updates(
        self, updates: Sequence[UserUpdate], run: SyncRun, seen_at: str
    ) -> AsyncGenerator[Committed, None]:
        """Write each user's state and events atomically, batch by batch, yielding what each
        committed batch wrote (the caller indexes it, even if a later batch fails).

        Up to ``IN_FLIGHT`` transactions are on the wire at once (each holds other users' rows, so
        their order does not matter), and they are yielded as they commit. If one fails, no new
        one is sent: those already sent are awaited and what committed is yielded, then the failure
        is raised. If the caller stops early, those already sent are still awaited, so nothing of
        this call is written after it ends (what they committed is not yielded: the caller leaves
        the night index to the next run's repair)."""
        by_shard: dict[str, list[UserUpdate]] = defaultdict(list)
        for update in updates:
            by_shard[schema.shard_of(update.stored.record.id)].append(update)
        batches = (b for shard in sorted(by_shard) for b in _batches(by_shard[shard], run, seen_at))
        sent: set[asyncio.Task[Committed]] = set()
        failure: BaseException | None = None
        try:
            while True:
                while failure is None and len(sent) < IN_FLIGHT and (batch := next(batches, None)) is not None:
                    sent.add(asyncio.create_task(self._commit(*batch)))
                if not sent:
                    break
                done, sent = await asyncio.wait(sent, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task.exception() is not None:
                        failure = failure or task.exception()
                    else:
                        yield task.result()
            if failure is not None:
                raise failure
        finally:
            if sent:  # the caller stopped early: let what is on the wire land before returning
                await asyncio.wait(sent)
                for task in sent:
                    task.exception()  # retrieved: the caller's own error is the one that counts

    async def _commit(
        self, operations: list[wire.BatchOp], timeline_rows: list[dict[str, Any]], state_at: list[int]
    ) -> Committed:
        etags = await self._submit(operations)
        return Committed(
            timeline_rows,
            {operations[i].entity["UserId"]: etags[i] if i < len(etags) else None for i in state_at},
        )

    async def _submit(self, operations: list[wire.BatchOp]) -> list[str | None]:
        try:
            etags = await wire.submit_batch(self.users, operations)
        except wire.BatchRejected as exc:
            if exc.status in (409, 412) or exc.code in _CONFLICT_CODES:
                at = exc.index if exc.index is not None and 0 <= exc.index < len(operations) else None
                row = operations[at].entity["RowKey"] if at is not None else "?"
                raise ConcurrentWriteError(
                    f"row {row} changed under this run ({exc.code or exc.status}); another sync is writing"
                ) from exc
            raise
        self.counters.batches += 1
        self.counters.writes += len(operations)
        return etags

    async def write_night_index(self, timeline_rows: Iterable[dict[str, Any]]) -> None:
        await self._upsert_partitioned(self.changes, [schema.night_entity(r) for r in timeline_rows])

    async def _upsert_partitioned(self, table: TableClient, rows: list[dict[str, Any]]) -> None:
        by_partition: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            by_partition[row["PartitionKey"]].append(row)
        for partition_rows in by_partition.values():
            for start in range(0, len(partition_rows), MAX_BATCH):
                chunk = partition_rows[start : start + MAX_BATCH]
                await wire.submit_batch(table, [wire.BatchOp("upsert", r) for r in chunk])
                self.counters.batches += 1
                self.counters.writes += len(chunk)


def _batches(
    updates: Sequence[UserUpdate], run: SyncRun, seen_at: str
) -> Iterable[tuple[list[wire.BatchOp], list[dict[str, Any]], list[int]]]:
    """Pack users into transactions of at most 100 operations, never splitting one user; with
    each, the positions of its state-row operations."""
    operations: list[wire.BatchOp] = []
    timeline_rows: list[dict[str, Any]] = []
    state_at: list[int] = []
    for update in updates:
        user_ops, user_rows = _operations_for(update, run, seen_at)
        if operations and len(operations) + len(user_ops) > MAX_BATCH:
            yield operations, timeline_rows, state_at
            operations, timeline_rows, state_at = [], [], []
        state_at.append(len(operations))  # the state row comes first
        operations.extend(user_ops)
        timeline_rows.extend(user_rows)
    if operations:
        yield operations, timeline_rows, state_at


def _operations_for(update: UserUpdate, run: SyncRun, seen_at: str) -> tuple[list[wire.BatchOp], list[dict[str, Any]]]:
    stored = update.stored
    state = schema.user_entity(stored, run_id=run.run_id, changed_at=seen_at)
    # Create-only for a new user, replace-if-unchanged for a known one: a row another run
    # wrote since we loaded it makes the whole transaction fail instead of being overwritten.
    if update.expected_etag is None:
        ops = [wire.BatchOp("create", state)]
    else:
        ops = [wire.BatchOp("update", state, update.expected_etag)]
    rows = [schema.timeline_entity(c, stored.record, stored.version, run, seen_at) for c in update.changes]
    # Events are keyed by (user, version, kind): a retried write of the same update is idempotent.
    ops.extend(wire.BatchOp("upsert", row) for row in rows)
    return ops, rows
