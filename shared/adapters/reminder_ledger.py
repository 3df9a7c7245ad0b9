"""The reminder ledger in Table Storage: one row per reminder, claimed before it is sent.

Layout (docs/table-schema.md, "Reminder ledger"):

- ``MfaUsers``, the user's shard, RowKey ``r|<userId>|<waveId>|<YYYY-MM-DD>|<step>``: the reminder
  itself, the source of truth. It sits next to the user's state row and timeline, so one range
  query (``r|<userId>|`` .. ``r|<userId>}``) gives a user's reminders.
- ``MfaRuns``, PartitionKey ``reminders-<YYYY-MM-DD>``, RowKey ``<userId>|<waveId>|<date>|<step>``:
  a copy of the row as it stood at the end of that UTC day ("reminder outcomes last night" is one
  partition); the hourly quota is counted from it too. Written after the ledger row, repaired by
  the next run if a crash came in between.
- ``MfaRuns``, ``nudge-run`` / run id: one row per nudge run. ``lease`` / ``nudge``: the nudge lease.

Every write to a reminder row is conditional: a claim is create-only (or replaces an ``unsent`` /
``dry_run`` row only if its ETag is unchanged), and every later change replaces the row only if
its ETag is the one this run wrote. Two runs can therefore never both claim one reminder.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient, TableServiceClient

from shared.adapters import table_schema as schema
from shared.adapters.leases import Lease, LeaseRow
from shared.domain.nudges import LedgerEntry, MessageKind, NudgeRun, Status, parse_key

log = logging.getLogger(__name__)

REMINDER_PREFIX = "r|"
DAY_PARTITION_PREFIX = "reminders-"
NUDGE_RUN_PARTITION = "nudge-run"
NUDGE_LEASE_ROW = "nudge"
_PAGE = 1000


def reminder_row_key(key_id: str) -> str:
    return f"{REMINDER_PREFIX}{key_id}"


def reminder_range(user_id: str | None = None) -> tuple[str, str]:
    """RowKey bounds of one user's reminders, or of every reminder in a shard."""
    return schema.prefix_range(f"{REMINDER_PREFIX}{user_id}|" if user_id else REMINDER_PREFIX)


def day_partition(day: date) -> str:
    return f"{DAY_PARTITION_PREFIX}{day.isoformat()}"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def reminder_properties(entry: LedgerEntry) -> dict[str, Any]:
    key = entry.key
    props: dict[str, Any] = {
        "UserId": key.user_id,
        "WaveId": key.wave_id,
        "WaveDate": key.wave_date.isoformat(),
        "Step": key.step.id,
        "Kind": entry.kind.value,
        "Status": entry.status.value,
        "Recorded": entry.recorded.isoformat(),
        "Day": entry.recorded.date().isoformat(),
        "Attempt": entry.attempt,
        "OperationId": key.operation_id,
        "Detail": entry.detail[:2000],
        "Recipient": entry.recipient,
        "Subject": entry.subject[:500],
        "RunId": entry.run_id,
    }
    if entry.posted is not None:
        props["Posted"] = entry.posted.isoformat()
    return props


def reminder_entity(entry: LedgerEntry) -> dict[str, Any]:
    entity = {
        "PartitionKey": schema.shard_of(entry.key.user_id),
        "RowKey": reminder_row_key(entry.key.id),
    }
    entity.update(reminder_properties(entry))
    return entity


def day_entity(entry: LedgerEntry) -> dict[str, Any]:
    entity = {"PartitionKey": day_partition(entry.recorded.date()), "RowKey": entry.key.id}
    entity.update(reminder_properties(entry))
    return entity


def entry_from_entity(entity: Any, etag: str | None) -> LedgerEntry:
    row_key = str(entity["RowKey"])
    key_id = row_key[len(REMINDER_PREFIX) :] if row_key.startswith(REMINDER_PREFIX) else row_key
    posted = entity.get("Posted")
    return LedgerEntry(
        key=parse_key(key_id),
        status=Status(entity.get("Status", Status.CLAIMED.value)),
        recorded=datetime.fromisoformat(str(entity["Recorded"])),
        kind=MessageKind(entity.get("Kind") or MessageKind.UPCOMING.value),
        attempt=int(entity.get("Attempt", 1)),
        posted=datetime.fromisoformat(str(posted)) if posted else None,
        detail=str(entity.get("Detail") or ""),
        recipient=str(entity.get("Recipient") or ""),
        subject=str(entity.get("Subject") or ""),
        run_id=str(entity.get("RunId") or ""),
        etag=etag,
    )


def nudge_run_entity(run: NudgeRun) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": NUDGE_RUN_PARTITION,
        "RowKey": run.run_id,
        "Status": run.status.value,
        "Started": run.started.isoformat(),
        "DryRun": run.dry_run,
    }
    if run.finished:
        entity["Finished"] = run.finished.isoformat()
        entity["Seconds"] = round((run.finished - run.started).total_seconds(), 3)
    if run.error:
        entity["Error"] = run.error[:4000]
    for name, value in run.counts().items():
        entity[name[:1].upper() + name[1:]] = value
    if run.warnings:
        entity["Warnings"] = "\n".join(run.warnings)[:4000]
    return entity


class ClaimConflict(RuntimeError):
    """Another run wrote this reminder first (create-only or ETag condition failed)."""


def _conflict(exc: Exception) -> bool:
    return isinstance(exc, ResourceExistsError) or getattr(exc, "status_code", None) in (409, 412)


class ReminderLedger:
    """The nudge job's (and the history's) view of the reminder rows. Give it an open service client."""

    def __init__(self, service: TableServiceClient) -> None:
        self.users: TableClient = service.get_table_client(schema.USERS_TABLE)
        self.runs: TableClient = service.get_table_client(schema.RUNS_TABLE)
        self.reads = 0
        self.writes = 0
        self._lease = LeaseRow(self.runs, NUDGE_LEASE_ROW, "nudge run")

    # --- reading -----------------------------------------------------------------------------

    async def load(self) -> dict[str, list[LedgerEntry]]:
        """Every reminder, by user id (one range query per shard, in parallel)."""
        parts = await asyncio.gather(*(self._load_shard(s) for s in schema.SHARDS))
        ledger: dict[str, list[LedgerEntry]] = {}
        for part in parts:
            for entry in part:
                ledger.setdefault(entry.key.user_id, []).append(entry)
        return ledger

    async def _load_shard(self, shard: str) -> list[LedgerEntry]:
        low, high = reminder_range()
        return await self._query(
            self.users,
            "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high",
            {"pk": shard, "low": low, "high": high},
        )

    async def reminders_of(self, user_id: str) -> list[LedgerEntry]:
        """One user's reminders (for the timeline): one range query in the user's partition."""
        low, high = reminder_range(user_id.lower())
        return await self._query(
            self.users,
            "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high",
            {"pk": schema.shard_of(user_id.lower()), "low": low, "high": high},
        )

    async def outcomes_on(self, day: date) -> list[LedgerEntry]:
        """Every reminder whose status changed on ``day`` (UTC), as it stood at the end of that day."""
        return await self._query(self.runs, "PartitionKey eq @pk", {"pk": day_partition(day)})

    async def posted_since(self, since: datetime, now: datetime) -> list[datetime]:
        """When each reminder handed to ACS in [since, now] was posted (the hourly quota's count)."""
        posted: dict[str, datetime] = {}
        day = since.date()
        while day <= now.date():
            for entry in await self.outcomes_on(day):
                if entry.posted is not None and since <= entry.posted <= now:
                    posted[entry.key.id] = entry.posted
            day += timedelta(days=1)
        return sorted(posted.values())

    async def _query(self, table: TableClient, query: str, parameters: dict[str, Any]) -> list[LedgerEntry]:
        entries: list[LedgerEntry] = []
        async for entity in table.query_entities(query, parameters=parameters, results_per_page=_PAGE):
            self.reads += 1
            try:
                entries.append(entry_from_entity(entity, entity.metadata.get("etag")))
            except (KeyError, ValueError) as exc:  # a row this version cannot read: leave it alone
                log.warning("skipped an unreadable reminder row %s: %s", entity.get("RowKey"), exc)
        return entries

    # --- writing -----------------------------------------------------------------------------

    async def write(self, entry: LedgerEntry, *, expected: LedgerEntry | None) -> LedgerEntry:
        """Write ``entry``: create-only when ``expected`` is None, else replace only if the row still
        has ``expected``'s ETag. Raises ClaimConflict when another run got there first. The day
        index copy follows (best effort: the next run repairs it)."""
        entity = reminder_entity(entry)
        try:
            if expected is None:
                meta = await self.users.create_entity(entity)
            else:
                meta = await self.users.update_entity(
                    entity, mode=UpdateMode.REPLACE, etag=expected.etag, match_condition=MatchConditions.IfNotModified
                )
        except (ResourceExistsError, ResourceNotFoundError, HttpResponseError) as exc:
            if _conflict(exc) or isinstance(exc, ResourceNotFoundError):
                raise ClaimConflict(f"reminder {entry.key.id} was written by another run") from exc
            raise
        self.writes += 1
        written = replace(entry, etag=str(meta["etag"]))
        await self.index([written])
        return written

    async def index(self, entries: Iterable[LedgerEntry]) -> None:
        for entry in entries:
            try:
                await self.runs.upsert_entity(day_entity(entry), mode=UpdateMode.REPLACE)
                self.writes += 1
            except HttpResponseError as exc:
                log.warning("the day index of reminder %s was not written: %s", entry.key.id, exc.message)

    async def repair_index(self, ledger: dict[str, list[LedgerEntry]], days: Iterable[date]) -> int:
        """Rewrite the day index rows that a crash left behind the ledger (for the given days)."""
        wanted = set(days)
        repaired = 0
        for day in sorted(wanted):
            indexed = {e.key.id: e for e in await self.outcomes_on(day)}
            stale = [
                entry
                for entries in ledger.values()
                for entry in entries
                if entry.recorded.date() == day
                and (
                    (found := indexed.get(entry.key.id)) is None
                    or (found.status, found.attempt, found.recorded) != (entry.status, entry.attempt, entry.recorded)
                )
            ]
            await self.index(stale)
            repaired += len(stale)
        return repaired

    async def save_run(self, run: NudgeRun) -> None:
        await self.runs.upsert_entity(nudge_run_entity(run), mode=UpdateMode.REPLACE)
        self.writes += 1

    # --- the nudge lease (same protocol as the sync's, its own row) --------------------------

    async def acquire_lease(self, owner: str, now: datetime, seconds: float) -> Lease:
        return await self._lease.acquire(owner, now, seconds)

    async def renew_lease(self, lease: Lease, now: datetime, seconds: float) -> Lease:
        return await self._lease.renew(lease, now, seconds)

    async def release_lease(self, lease: Lease) -> None:
        await self._lease.release(lease)
