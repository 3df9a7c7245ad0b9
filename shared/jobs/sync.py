"""The nightly sync: pull the directory and the registration report, record what changed.

    lease -> run row -> repair a crashed run's index -> load remembered users
      -> on a big night with a CPU to spare, start a fingerprint worker (a child process that
         fingerprints each page's bytes while this process parses them and reads the next page)
      -> gather the scope signals (sign-ins, roles, RBAC, exclusion group, cross-tenant policy)
      -> pull the registration report (compact, keyed by user id; on Entra ID Free, nothing:
         the in-scope users' authentication methods are read one by one instead)
      -> stream /users page by page: the page's unchanged steady users at once (counted from
         the snapshot), then everyone else: normalise, join, assess scope, reconcile with the
         remembered user (the few users a per-user lookup must settle wait for it)
      -> stop the worker
      -> only if the pull completed: deletions, then commit (state+events per user, atomically,
         three transactions on the wire at once) and the night index as they commit, while a
         worker thread compresses the users the commit does not write into the next snapshot
         (on a night with few changes, only those not in the snapshot's base as they are)
      -> the next snapshot (an overlay on the base, or a new base) -> coverage row -> run row
      -> release the lease

Nothing is written for users before the whole pull has succeeded, so a pull that fails part way
(an error, a 5xx storm, the time budget running out, a scope signal that could not be read)
leaves the stored state exactly as it was: no spurious ``deleted`` and no spurious ``left_scope``.
Without scope sources (``scope=None``) the stored scope facts are carried unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from shared.adapters.fingerprint_worker import FingerprintWorker, usable_cpus
from shared.adapters.graph import Fingerprinter, GraphLicenceError, Page
from shared.adapters.leases import Lease, LeaseHeldError, renewal_due
from shared.adapters.snapshot import STEADY, Head, Remembered, SnapshotError
from shared.adapters.state_store import MAX_BATCH, StateStore
from shared.domain.census import Census
from shared.domain.deltas import UserUpdate, deletions, reconcile
from shared.domain.normalize import (
    RegistrationFacts,
    Skipped,
    clean_text,
    person_from_graph,
    record_from_graph,
    registration_from_graph,
    registration_from_methods,
    valid_id,
)
from shared.domain.records import StoredUser, UserRecord
from shared.domain.runs import (
    IoFigures,
    RegistrationSource,
    RunStatus,
    SignalFigures,
    SignInSource,
    SyncRun,
    new_run_id,
    night_of,
)
from shared.domain.scope import in_scope
from shared.domain.scope_rules import NO_EVIDENCE, Lookup, LookupResults, PersonFacts, ScopeSignals, assess
from shared.domain.steady import (
    NO_ROW,
    REPORT_STAMP,
    PagePrints,
    ScopeRules,
    fingerprint,
    is_steady,
    report_fingerprint,
)
from shared.jobs.scope_signals import GatherFigures, ScopeSources, bounded, ever_signed_in, gather_signals, tenant_id_of
from shared.jobs.sync_memory import Fingerprints, Memory, NextSnapshot, context, load_memory
from shared.jobs.unchanged import unchanged_report_rows, unchanged_users

log = logging.getLogger(__name__)

_LOGGED_SKIPS = 20  # per run; a malformed export of 100,000 users must not flood the logs
_NO_PERSON = PersonFacts()  # without scope signals, nothing reads the person's facts


class GraphCounters(Protocol):
    requests: int
    throttled: int
    server_errors: int
    pages: int


class DirectorySource(Protocol):
    """What the sync needs from Graph: pages of wire objects (see shared.adapters.graph)."""

    @property
    def stats(self) -> GraphCounters: ...

    def registration_details(
        self, fingerprints: Fingerprinter | None = None
    ) -> AsyncIterator[list[dict[str, Any]]]: ...

    def users(self, fingerprints: Fingerprinter | None = None) -> AsyncIterator[list[dict[str, Any]]]: ...


@dataclass(frozen=True)
class SyncOptions:
    time_budget_seconds: float = 1500.0
    lease_seconds: float = 600.0
    # A fingerprint worker (a second process, on a second CPU) once the snapshot remembers this
    # many steady users; None: never. Below it, starting the process costs more than it saves.
    fingerprint_worker_from: int | None = 20_000


def utc_now() -> datetime:
    return datetime.now(UTC)


class SyncFailed(RuntimeError):
    """Raised by the entry point after the failed run was recorded, so the host marks it failed."""


@dataclass
class _Pull:
    updates: list[UserUpdate]
    census: Census
    seen: set[str]
    next: NextSnapshot
    context: str
    signals: SignalFigures = field(default_factory=SignalFigures)


async def run_sync(
    graph: DirectorySource,
    store: StateStore,
    *,
    options: SyncOptions = SyncOptions(),
    clock: Callable[[], datetime] = utc_now,
    scope: ScopeSources | None = None,
) -> SyncRun:
    """One sync. Always returns the run as recorded; never raises for a failed pull or write.

    ``scope``: the scope signals' readers and options; None keeps the stored scope facts."""
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
    memory_figures: dict[str, Any] = {}
    frozen = False
    try:
        await store.save_run(run, index_pending=True)
        for pending in await store.runs_with_pending_index(exclude_run_id=run.run_id):
            repaired = await store.repair_night_index(pending)
            log.warning("repaired the night index of unfinished run %s (%d rows)", pending["RowKey"], repaired)

        memory = await load_memory(store)
        frozen = _freeze()
        worker = await _start_worker(memory, options)
        try:
            async with asyncio.timeout(options.time_budget_seconds):
                pull = await _pull(graph, memory, run.started.isoformat(), leases, scope, run.started, worker)
        except TimeoutError:
            raise _PullFailed(
                f"the pull did not finish within the time budget of {options.time_budget_seconds:g} s"
            ) from None
        except _PullFailed:
            raise
        except SnapshotError as exc:
            # Not the tenant's fault: stop trusting the snapshot, so the next run reads the state rows.
            await store.snapshot.invalidate(memory.head)
            raise _PullFailed(f"the snapshot could not be used ({exc}); the next run reads the state rows") from exc
        except Exception as exc:
            raise _PullFailed(f"the pull failed: {type(exc).__name__}: {exc}") from exc
        finally:
            if worker is not None:
                await _stop_worker(worker)
        run = replace(run, pull_complete=True, signals=pull.signals)
        memory_figures = {
            "remembered_from": "snapshot" if memory.snapshot is not None else "state_rows",
            "users_carried": pull.next.carried_users,
            "users_recomputed": len(pull.seen) - pull.next.carried_users,
        }

        unseen = list(memory.unseen(pull.seen))
        try:
            gone_users = [memory.stored(user_id) for user_id, deleted in unseen if not deleted]
        except SnapshotError as exc:  # as in the pull: nothing written yet, the next run reads the state rows
            await store.snapshot.invalidate(memory.head)
            raise _PullFailed(f"the snapshot could not be used ({exc}); the next run reads the state rows") from exc
        gone = deletions([u for u in gone_users if u is not None], pull.seen, run.started.isoformat())
        for update in gone:
            pull.census.count_update(update)
        pull.updates.extend(gone)
        for user_id, deleted in unseen:
            if deleted:
                pull.next.keep_unseen(user_id)
        if gone:
            pull.next.changed = True

        head = memory.head
        saving = pull.next.changed or bool(pull.updates)
        pull.next.plan(same_context=head.context == pull.context, written=len(pull.updates))
        # Compress everyone the commit does not write while its transactions are on the wire.
        sealing = asyncio.create_task(asyncio.to_thread(pull.next.seal_unwritten)) if saving else None
        committing = _Committing()
        try:
            if pull.updates:  # the state rows are about to change: the snapshot stops being true
                head = await store.snapshot.invalidate(head)
            await _commit(store, pull.updates, run, leases, committing)
        finally:
            index_pending = not committing.indexed_all
            if sealing is not None:
                await asyncio.wait([sealing])  # the worker thread never outlives the commit
        if sealing is not None:
            await _save_snapshot(store, head, pull, committing.etags, run.run_id, sealing)
        del memory, pull.next
        run = replace(run, status=RunStatus.COMPLETED, figures=pull.census.figures())
    except _PullFailed as exc:
        run = replace(run, status=RunStatus.FAILED, error=str(exc))
    except Exception as exc:
        log.exception("sync run %s failed", run.run_id)
        run = replace(run, status=RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}")

    run = replace(run, finished=clock(), io=replace(_io_figures(graph, store, scope), **memory_figures))
    try:
        if run.status is RunStatus.COMPLETED:
            await store.save_coverage(run)
        await store.save_run(run, index_pending=index_pending)
    finally:
        if frozen:
            gc.unfreeze()
        await store.release_lease(leases.lease)
    _log_run(run)
    return run


class _PullFailed(Exception):
    pass


async def _start_worker(memory: Memory, options: SyncOptions) -> FingerprintWorker | None:
    """A fingerprint worker for a big night on a machine with a CPU to spare (None otherwise)."""
    threshold = options.fingerprint_worker_from
    steady = len(memory.snapshot.steady) if memory.snapshot is not None else 0
    if threshold is None or not steady or steady < threshold or usable_cpus() < 2:
        return None
    return await FingerprintWorker.start()


async def _stop_worker(worker: FingerprintWorker) -> None:
    """Stop the worker; stopping it can cost nothing but a log line."""
    try:
        await worker.aclose()
    except Exception as exc:
        log.warning("the fingerprint worker did not stop cleanly: %s: %s", type(exc).__name__, exc)
    log.info("the fingerprint worker fingerprinted %d pages", worker.pages)


async def _prints(page: list[dict[str, Any]]) -> PagePrints | None:
    """The fingerprint worker's answer for ``page`` (None without one)."""
    task = page.prints if isinstance(page, Page) else None
    return await task if task is not None else None


def _freeze() -> bool:
    """``gc.freeze`` what exists now, unless something else in the process froze objects (the
    run's end would thaw theirs too); True when the run must ``gc.unfreeze`` at its end.

    A run holds its remembered users (100,000 entries and their dicts) from the load to the end;
    frozen, the cyclic GC's full collections, which each page of Graph objects triggers, skip them
    instead of walking them again and again (~0.3 s a night at 100,000 users). Freezing only moves
    objects between the GC's lists: nothing is kept alive by it, and unfreezing hands them back to
    the oldest generation."""
    if gc.get_freeze_count():
        return False
    gc.freeze()
    return True


@dataclass
class _Committing:
    etags: dict[str, str | None] = field(default_factory=dict)  # each written user's new ETag
    indexed_all: bool = False  # the night index holds every event that committed


async def _commit(
    store: StateStore, updates: list[UserUpdate], run: SyncRun, leases: _LeaseKeeper, into: _Committing
) -> None:
    """Each user's state and events atomically, then their copies in the night index, in full
    transactions as they commit, so a first night of 100,000 new users never holds all its event
    rows at once. What committed is indexed even when a later transaction fails; ``into`` says,
    even when this raises, whether the index is complete."""
    unindexed: list[dict[str, Any]] = []
    every_commit_seen = True
    commits = store.commit_updates(updates, run, run.started.isoformat())
    try:
        async with contextlib.aclosing(commits):  # on any error, what is on the wire lands first
            async for committed in commits:
                try:
                    unindexed.extend(committed.timeline_rows)
                    into.etags.update(committed.etags)
                    if len(unindexed) >= MAX_BATCH:
                        full = len(unindexed) - len(unindexed) % MAX_BATCH
                        await store.write_night_index(unindexed[:full])
                        del unindexed[:full]
                    await leases.keep()
                except BaseException:
                    # Transactions already on the wire may still commit, unseen: the run row
                    # keeps IndexPending and the next run rebuilds the index from the timeline.
                    every_commit_seen = False
                    raise
    finally:
        await store.write_night_index(unindexed)
        into.indexed_all = every_commit_seen


async def _save_snapshot(
    store: StateStore,
    head: Head,
    pull: _Pull,
    etags: dict[str, str | None],
    run_id: str,
    sealing: asyncio.Task[None],
) -> None:
    """Remember tonight for tomorrow. A failure here costs tomorrow's speed, never correctness:
    the head stays invalid and tomorrow reads the state rows."""
    try:
        sealing.result()  # what could not be sealed cannot be saved
        blob = pull.next.blob((u.stored for u in pull.updates), etags)
        if blob is not None and pull.next.overlay:
            await store.snapshot.save_overlay(head, blob, pull.context, run_id)
        elif blob is not None:
            await store.snapshot.save(head, blob, pull.context, run_id)
    except Exception as exc:
        log.warning("could not save the snapshot (tomorrow reads every state row): %s: %s", type(exc).__name__, exc)
        if isinstance(exc, SnapshotError):  # tonight's snapshot could not give what it holds: stop trusting it
            with contextlib.suppress(Exception):
                await store.snapshot.invalidate(head)


class _LeaseKeeper:
    """Renews the lease once a third of it has passed, at page and batch boundaries."""

    def __init__(self, store: StateStore, lease: Lease, seconds: float, clock: Callable[[], datetime]) -> None:
        self.store, self.lease, self.seconds, self.clock = store, lease, seconds, clock

    async def keep(self) -> None:
        now = self.clock()
        if renewal_due(self.lease, now, self.seconds):
            self.lease = await self.store.renew_lease(self.lease, now, self.seconds)


@dataclass
class _Deferred:
    """A user whose facts wait for per-user lookups."""

    record: UserRecord
    base: UserRecord  # the record from Graph's objects, before scope
    person: PersonFacts
    old: StoredUser | None
    needs: frozenset[Lookup]
    methods: bool  # licence fallback: read their authentication methods
    prints: Fingerprints


class _UserPass:
    """Tonight's records, reconciled one by one as /users streams past."""

    def __init__(self, memory: Memory, census: Census, seen_at: str, rules: ScopeRules | None, now: datetime) -> None:
        self.memory, self.census, self.seen_at, self.rules, self.now = memory, census, seen_at, rules, now
        self.updates: list[UserUpdate] = []
        self.seen: set[str] = set()
        self.next = NextSnapshot(memory)

    def finish(
        self, record: UserRecord, old: StoredUser | None, base: UserRecord, person: PersonFacts, prints: Fingerprints
    ) -> None:
        update = reconcile(old, record, self.seen_at)
        stored = update.stored if update is not None else old
        assert stored is not None  # reconcile answers a new user with an update
        steady = is_steady(stored, base, person, self.rules, self.now)
        self.census.count_user(stored.record)
        if update is not None:
            self.census.count_update(update)
            self.updates.append(update)
            self.next.will_write(record.id, prints, steady)
        else:  # unchanged: the remembered record is tonight's record
            self.next.keep(stored, prints, steady)


@dataclass
class _Report:
    """The registration report, compactly by user id. Rows whose fingerprint matches a steady
    user's remembered one are not parsed: their facts are the remembered record's."""

    facts: dict[str, RegistrationFacts] = field(default_factory=dict)
    prints: dict[str, bytes] = field(default_factory=dict)
    stamps: dict[str, str | None] = field(default_factory=dict)  # lastUpdatedDateTime of unparsed rows

    def facts_for(self, user_id: str, old: StoredUser | None) -> RegistrationFacts | None:
        found = self.facts.get(user_id)
        if found is not None or user_id not in self.stamps:
            return found
        if old is None:  # the snapshot named the user, so it must hold their state
            raise SnapshotError(f"user {user_id} is in the snapshot but their state is not")
        r = old.record
        stamp = clean_text(self.stamps[user_id]) or None
        return RegistrationFacts(r.mfa_registered, r.mfa_capable, r.is_admin, r.methods, r.default_method, stamp)


def _identify(obj: object, entries: Mapping[str, Remembered]) -> tuple[str | None, Remembered | None]:
    """A Graph object's user id (None if it has no valid one) and what the snapshot remembers of
    them. An id found among the remembered ones exactly as sent is valid as it is: most of a
    tenant skips ``valid_id``."""
    raw_id = obj.get("id") if isinstance(obj, dict) else None
    e = entries.get(raw_id) if type(raw_id) is str else None
    if e is not None:
        return raw_id, e
    user_id = valid_id(raw_id)
    return user_id, (entries.get(user_id) if user_id is not None else None)


async def _registrations(
    graph: DirectorySource,
    census: Census,
    leases: _LeaseKeeper,
    fallback_ok: bool,
    memory: Memory,
    fast: bool,
    worker: Fingerprinter | None = None,
) -> _Report | None:
    """The report; None when the tenant's licence forbids it and the per-user fallback may stand in."""
    report = _Report()
    entries = memory.snapshot.entries if fast and memory.snapshot is not None else {}
    steady = memory.snapshot.steady if fast and memory.snapshot is not None else {}
    try:
        async for page in graph.registration_details(fingerprints=worker if steady else None):
            rows: list[Any] = page
            if steady:  # most rows are steady users' rows as remembered: decided a page at a time
                unchanged = unchanged_report_rows(page, steady, report.prints, await _prints(page))
                report.prints.update(zip(unchanged.ids, unchanged.prints, strict=True))
                report.stamps.update(zip(unchanged.ids, unchanged.stamps, strict=True))
                rows = unchanged.rest
            for row in rows:
                user_id, e = _identify(row, entries)
                if user_id is not None and user_id not in report.prints:
                    fp = report_fingerprint(row)
                    if e is not None and e.flags == STEADY and e.report_fp == fp:
                        report.prints[user_id] = fp
                        report.stamps[user_id] = row.get(REPORT_STAMP)
                        continue
                parsed = registration_from_graph(row)
                if isinstance(parsed, Skipped):
                    census.count_skip(parsed)
                elif parsed[0] in report.prints:
                    census.count_skip(Skipped(parsed[0], "duplicate registration row"))
                else:
                    report.facts[parsed[0]] = parsed[1]
                    report.prints[parsed[0]] = report_fingerprint(row)
            await leases.keep()
    except GraphLicenceError:
        if not fallback_ok:
            raise
        log.warning("the registration report needs Entra ID P1/P2: reading in-scope users' methods instead")
        return None
    return report


async def _pull(
    graph: DirectorySource,
    memory: Memory,
    seen_at: str,
    leases: _LeaseKeeper,
    scope: ScopeSources | None = None,
    now: datetime | None = None,
    worker: Fingerprinter | None = None,
) -> _Pull:
    now = now or utc_now()
    signals: ScopeSignals | None = None
    gathered = GatherFigures(sign_in_source=SignInSource.OFF)
    if scope is not None:
        signals, gathered = await gather_signals(scope, now, leases.keep)
    policy = scope.options.policy if scope is not None else None
    trust = signals.guest_trust if signals is not None else None
    census = Census()
    report = await _registrations(
        graph,
        census,
        leases,
        fallback_ok=scope is not None and scope.options.registration_fallback,
        memory=memory,
        fast=memory.fast(context(policy, trust, fallback=False)),
        worker=worker,
    )
    fallback = report is None
    report = report or _Report()
    context_now = context(policy, trust, fallback)
    fast = memory.fast(context_now)
    rules = ScopeRules(policy, trust, fallback) if policy is not None and trust is not None else None
    users = _UserPass(memory, census, seen_at, rules, now)
    if memory.snapshot is not None and not fast:
        log.info("the snapshot was computed under other code or settings: recomputing every user tonight")
        users.next.changed = True  # remember tonight under tonight's code and settings, changes or not
    entries = memory.snapshot.entries if fast and memory.snapshot is not None else {}
    steady = memory.snapshot.steady if fast and memory.snapshot is not None else {}
    evidence = signals.evidence_ids() if signals is not None else set()
    report_prints = report.prints

    deferred: list[_Deferred] = []
    async for page in graph.users(fingerprints=worker if steady else None):
        objects: list[Any] = page
        if steady:  # the unchanged steady users of the page at once; the rest one by one below
            carried = unchanged_users(page, steady, report_prints, evidence, users.seen, await _prints(page))
            users.seen.update(carried.ids)
            users.next.carry_all(carried.ids, carried.entries)
            objects = carried.rest
        for obj in objects:
            user_id, e = _identify(obj, entries)
            user_fp = fingerprint(obj) if user_id is not None else NO_ROW
            if (
                e is not None
                and user_id is not None
                and user_id not in users.seen
                and e.flags == STEADY
                and e.user_fp == user_fp
                and e.report_fp == report_prints.get(user_id, NO_ROW)
                and (signals is None or signals.for_user(user_id) is NO_EVIDENCE)
            ):
                users.seen.add(user_id)
                users.next.carry(user_id, e)
                continue
            old = memory.stored(user_id) if user_id is not None else None
            record = record_from_graph(obj, report.facts_for(user_id, old) if user_id else None)
            if isinstance(record, Skipped):
                census.count_skip(record)
                # A few examples are enough: the run row counts every skip by reason.
                if sum(census.skipped.values()) <= _LOGGED_SKIPS:
                    log.warning("skipped a user: %s", record.reason)
                continue
            if record.id in users.seen:
                census.count_skip(Skipped(record.id, "duplicate user id across pages"))
                continue
            users.seen.add(record.id)
            prints = Fingerprints(user_fp, report_prints.get(record.id, NO_ROW))
            base = record
            if scope is None or signals is None:
                if old is not None:  # no signals tonight: the stored scope facts stand
                    record = replace(record, scope=old.record.scope)
                users.finish(record, old, base, _NO_PERSON, prints)
                continue
            person = person_from_graph(obj)
            assessment = assess(
                record,
                person,
                signals.for_user(record.id),
                old.record.scope if old else None,
                scope.options.policy,
                signals.guest_trust,
                now,
            )
            record = replace(record, scope=assessment.facts)
            needs_methods = fallback and record.enabled and in_scope(record)
            if assessment.needs or needs_methods:
                deferred.append(_Deferred(record, base, person, old, assessment.needs, needs_methods, prints))
                continue
            users.finish(record, old, base, person, prints)
        await leases.keep()
    users.next.count_carried(census)
    log.info(
        "users: %d carried unchanged from the snapshot, %d recomputed (%d of them waiting for lookups)",
        users.next.carried_users,
        len(users.seen) - users.next.carried_users,
        len(deferred),
    )

    lookups = 0
    if deferred and scope is not None and signals is not None:
        lookups = await _settle(deferred, users, scope, signals, now)
    return _Pull(
        users.updates,
        census,
        users.seen,
        users.next,
        context_now,
        SignalFigures(
            registration_source=RegistrationSource.PER_USER_METHODS if fallback else RegistrationSource.REPORT,
            sign_in_source=gathered.sign_in_source,
            sign_ins_read=gathered.sign_ins_read,
            sign_in_users=len(signals.sign_ins) if signals else 0,
            role_assignments=gathered.role_assignments,
            role_eligibilities=gathered.role_eligibilities,
            azure_rbac=bool(scope and scope.options.azure_rbac and scope.arm is not None),
            azure_role_assignments=gathered.azure_role_assignments,
            per_user_lookups=gathered.lookups + lookups,
        ),
    )


async def _settle(
    deferred: list[_Deferred], users: _UserPass, scope: ScopeSources, signals: ScopeSignals, now: datetime
) -> int:
    """Make the per-user calls the deferred users need (bounded), then assess and reconcile them."""
    graph, options = scope.graph, scope.options
    calls = 0

    # A guest's home tenant, once per domain.
    domains = sorted({d.person.home_domain for d in deferred if Lookup.HOME_TENANT in d.needs and d.person.home_domain})
    tenants: dict[str, str] = {}
    if domains:
        found = await bounded([lambda d=d: graph.tenant_by_domain(d) for d in domains], options.concurrency)  # type: ignore[misc]
        tenants = {domain: tenant_id_of(info) for domain, info in zip(domains, found, strict=True)}
        calls += len(domains)

    activity_available = True

    async def lookup(d: _Deferred) -> tuple[LookupResults, list[dict[str, Any]] | None]:
        nonlocal activity_available, calls
        ever: bool | None = None
        if Lookup.SIGN_IN_ACTIVITY in d.needs and activity_available:
            try:
                ever = ever_signed_in(await graph.sign_in_activity(d.record.id))
                calls += 1
            except GraphLicenceError:
                activity_available = False  # Entra ID Free: nobody is judged "never signed in"
        home = tenants.get(d.person.home_domain or "") if Lookup.HOME_TENANT in d.needs else None
        methods = None
        if d.methods:
            methods = await graph.authentication_methods(d.record.id)
            calls += 1
        return LookupResults(ever_signed_in=ever, home_tenant_id=home), methods

    results = await bounded([lambda d=d: lookup(d) for d in deferred], options.concurrency)  # type: ignore[misc]
    for d, (found, methods) in zip(deferred, results, strict=True):
        record = d.record
        if d.methods and methods is not None:
            roles = signals.roles.get(record.id, ())
            reg = registration_from_methods(methods, is_admin=bool(roles))
            record = replace(
                record,
                mfa_registered=reg.mfa_registered,
                mfa_capable=reg.mfa_capable,
                is_admin=reg.is_admin,
                methods=reg.methods,
                default_method=reg.default_method,
                report_updated=None,
                in_report=True,
            )
        if d.needs:
            assessment = assess(
                record,
                d.person,
                signals.for_user(record.id),
                d.old.record.scope if d.old else None,
                options.policy,
                signals.guest_trust,
                now,
                found,
            )
            record = replace(record, scope=assessment.facts)
        users.finish(record, d.old, d.base, d.person, d.prints)
    return calls


def _io_figures(graph: DirectorySource, store: StateStore, scope: ScopeSources | None = None) -> IoFigures:
    s, c = graph.stats, store.counters
    arm = getattr(scope.arm, "stats", None) if scope is not None else None
    return IoFigures(
        arm_requests=getattr(arm, "requests", 0),
        arm_throttled=getattr(arm, "throttled", 0),
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
        "rememberedFrom": run.io.remembered_from,
        "usersRecomputed": run.io.users_recomputed,
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
            inScope=f.in_scope,
            inScopeUnregistered=f.in_scope_coverage.unregistered,
            scopeReasons=f.scope_reasons,
            excluded=f.excluded,
        )
    event.update(
        registrationSource=run.signals.registration_source.value, signInSource=run.signals.sign_in_source.value
    )
    return event


def _log_run(run: SyncRun) -> None:
    level = logging.INFO if run.status in (RunStatus.COMPLETED, RunStatus.SKIPPED) else logging.ERROR
    log.log(level, "mfa_sync_run %s", json.dumps(run_event(run), separators=(",", ":")))
