"""The nightly sync: pull the directory and the registration report, record what changed.

    lease -> run row -> repair a crashed run's index -> load remembered users
      -> pull the registration report (compact, keyed by user id)
      -> stream /users page by page: normalise, join, reconcile with the remembered user
      -> only if the pull completed: deletions, then commit (state+events per user, atomically)
      -> night index -> coverage row -> run row -> release the lease

Nothing is written for users before the whole pull has succeeded, so a pull that fails part way
(an error, a 5xx storm, the time budget running out) leaves the stored state exactly as it was.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from shared.adapters.state_store import Lease, LeaseHeldError, StateStore
from shared.domain.census import Census
from shared.domain.deltas import UserUpdate, deletions, reconcile
from shared.domain.normalize import (
    RegistrationFacts,
    Skipped,
    record_from_graph,
    registration_from_graph,
    valid_id,
)
from shared.domain.records import StoredUser
from shared.domain.runs import IoFigures, RunStatus, SyncRun, new_run_id, night_of

log = logging.getLogger(__name__)


class GraphCounters(Protocol):
    requests: int
    throttled: int
    server_errors: int
    pages: int


class DirectorySource(Protocol):
    """What the sync needs from Graph: pages of wire objects (see shared.adapters.graph)."""

    @property
    def stats(self) -> GraphCounters: ...

    def registration_details(self) -> AsyncIterator[list[dict[str, Any]]]: ...

    def users(self) -> AsyncIterator[list[dict[str, Any]]]: ...


@dataclass(frozen=True)
class SyncOptions:
    time_budget_seconds: float = 1500.0
    lease_seconds: float = 600.0


def utc_now() -> datetime:
    return datetime.now(UTC)


class SyncFailed(RuntimeError):
    """Raised by the entry point after the failed run was recorded, so the host marks it failed."""


@dataclass
class _Pull:
    updates: list[UserUpdate]
    census: Census
    seen: set[str]


async def run_sync(
    graph: DirectorySource,
    store: StateStore,
    *,
    options: SyncOptions = SyncOptions(),
    clock: Callable[[], datetime] = utc_now,
) -> SyncRun:
    """One sync. Always returns the run as recorded; never raises for a failed pull or write."""
    started = clock()
    run = SyncRun(run_id=new_run_id(started), night=night_of(started), started=started)
    try:
        lease = await store.acquire_lease(run.run_id, started, options.lease_seconds)
    except LeaseHeldError as exc:
        run = replace(run, status=RunStatus.SKIPPED, finished=clock(), error=str(exc))
        await store.save_run(run, index_pending=False)
        _log_run(run)
        return run

    leases = _LeaseKeeper(store, lease, options.lease_seconds, clock)
    index_pending = False
    try:
        await store.save_run(run, index_pending=True)
        for pending in await store.runs_with_pending_index(exclude_run_id=run.run_id):
            repaired = await store.repair_night_index(pending)
            log.warning("repaired the night index of unfinished run %s (%d rows)", pending["RowKey"], repaired)

        previous = await store.load_users()
        try:
            async with asyncio.timeout(options.time_budget_seconds):
                pull = await _pull(graph, previous, run.started.isoformat(), leases)
        except TimeoutError:
            raise _PullFailed(
                f"the pull did not finish within the time budget of {options.time_budget_seconds:g} s"
            ) from None
        except _PullFailed:
            raise
        except Exception as exc:
            raise _PullFailed(f"the pull failed: {type(exc).__name__}: {exc}") from exc
        run = replace(run, pull_complete=True)

        gone = deletions(previous.values(), pull.seen, run.started.isoformat())
        for update in gone:
            pull.census.count_update(update)
        pull.updates.extend(gone)
        del previous  # the remembered state is no longer needed: free it before writing

        committed: list[dict[str, Any]] = []
        index_pending = True
        try:
            async for rows in store.commit_updates(pull.updates, run, run.started.isoformat()):
                committed.extend(rows)
                await leases.keep()
        finally:
            # Index whatever committed, even when a later batch failed.
            await store.write_night_index(committed)
            index_pending = False
        run = replace(run, status=RunStatus.COMPLETED, figures=pull.census.figures())
    except _PullFailed as exc:
        run = replace(run, status=RunStatus.FAILED, error=str(exc))
    except Exception as exc:
        log.exception("sync run %s failed", run.run_id)
        run = replace(run, status=RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}")

    run = replace(run, finished=clock(), io=_io_figures(graph, store))
    try:
        if run.status is RunStatus.COMPLETED:
            await store.save_coverage(run)
        await store.save_run(run, index_pending=index_pending)
    finally:
        await store.release_lease(leases.lease)
    _log_run(run)
    return run


class _PullFailed(Exception):
    pass


class _LeaseKeeper:
    """Renews the lease once a third of it has passed, at page and batch boundaries."""

    def __init__(self, store: StateStore, lease: Lease, seconds: float, clock: Callable[[], datetime]) -> None:
        self.store, self.lease, self.seconds, self.clock = store, lease, seconds, clock
        self._renewed = time.monotonic()

    async def keep(self) -> None:
        if time.monotonic() - self._renewed >= self.seconds / 3:
            self.lease = await self.store.renew_lease(self.lease, self.clock(), self.seconds)
            self._renewed = time.monotonic()


async def _pull(graph: DirectorySource, previous: dict[str, StoredUser], seen_at: str, leases: _LeaseKeeper) -> _Pull:
    census = Census()
    registrations: dict[str, RegistrationFacts] = {}
    async for page in graph.registration_details():
        for row in page:
            parsed = registration_from_graph(row)
            if isinstance(parsed, Skipped):
                census.count_skip(parsed)
            elif parsed[0] in registrations:
                census.count_skip(Skipped(parsed[0], "duplicate registration row"))
            else:
                registrations[parsed[0]] = parsed[1]
        await leases.keep()

    updates: list[UserUpdate] = []
    seen: set[str] = set()
    async for page in graph.users():
        for obj in page:
            user_id = valid_id(obj.get("id")) if isinstance(obj, dict) else None
            record = record_from_graph(obj, registrations.get(user_id) if user_id else None)
            if isinstance(record, Skipped):
                census.count_skip(record)
                log.warning("skipped a user: %s", record.reason)
                continue
            if record.id in seen:
                census.count_skip(Skipped(record.id, "duplicate user id across pages"))
                continue
            seen.add(record.id)
            old = previous.get(record.id)
            update = reconcile(old, record, seen_at)
            if update is not None:
                census.count_update(update)
                updates.append(update)
                census.count_user(update.stored.record)
            elif old is not None:  # unchanged: the remembered record is tonight's record
                census.count_user(old.record)
        await leases.keep()
    return _Pull(updates, census, seen)


def _io_figures(graph: DirectorySource, store: StateStore) -> IoFigures:
    s, c = graph.stats, store.counters
    return IoFigures(
        graph_requests=s.requests,
        graph_throttled=s.throttled,
        graph_server_errors=s.server_errors,
        graph_pages=s.pages,
        table_reads=c.reads,
        table_writes=c.writes,
        table_batches=c.batches,
    )


def run_event(run: SyncRun) -> dict[str, Any]:
    """The one structured event per run that the alert rules and dashboards read."""
    event: dict[str, Any] = {
        "event": "mfa_sync_run",
        "runId": run.run_id,
        "night": run.night,
        "status": run.status.value,
        "pullComplete": run.pull_complete,
        "seconds": round((run.finished - run.started).total_seconds(), 3) if run.finished else None,
        "error": run.error,
        "graphRequests": run.io.graph_requests,
        "graphThrottled": run.io.graph_throttled,
        "tableWrites": run.io.table_writes,
        "tableBatches": run.io.table_batches,
    }
    if run.figures:
        f = run.figures
        event.update(
            users=f.users,
            members=f.members,
            guests=f.guests,
            registered=f.coverage.registered,
            unregistered=f.coverage.unregistered,
            coveragePercent=f.coverage.percent,
            changes=f.changes,
            skipped=sum(f.skipped.values()),
        )
    return event


def _log_run(run: SyncRun) -> None:
    level = logging.INFO if run.status in (RunStatus.COMPLETED, RunStatus.SKIPPED) else logging.ERROR
    log.log(level, "mfa_sync_run %s", json.dumps(run_event(run), separators=(",", ":")))
