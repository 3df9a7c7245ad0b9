"""The admin questions, answered: validated parameters in, reader queries, pure logic, results out.

Shared by the HTTP API (shared/http_api.py) and the command line (shared/cli.py), so both give
the same answers. Nothing here parses requests or formats output; nothing reads the clock (callers
pass ``now``).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from shared.adapters.history_reader import ChangeEntry, Cursor, HistoryReader, Page
from shared.adapters.reminder_ledger import ReminderLedger
from shared.adapters.table_schema import upn_key
from shared.domain.nudges import LedgerEntry, Status
from shared.domain.readiness import Exposure, ScopeFilter, exposure, readiness_list, selector
from shared.domain.records import StoredUser, UserRecord
from shared.domain.waves import Wave
from shared.params import UserRef
from shared.presentation.report import ReportData
from shared.presentation.timeline import ReminderLine, reminder_line

DEFAULT_COVERAGE_NIGHTS = 90
REPORT_MAX_CHANGES = 500  # a first night lists every user as `new`: the report shows a sample
REPORT_MAX_UNREGISTERED = 5000
# A first dry run records a reminder for everyone unregistered: the report shows a sample (every
# outcome that needs a look first) and the counts of all.
REPORT_MAX_REMINDERS = 500
NAME_LOOKUPS_AT_ONCE = 16  # point reads for the names of reminded people no longer unregistered
_NEEDS_A_LOOK = frozenset({Status.FAILED, Status.UNCONFIRMED, Status.UNSENT})


class UserNotFound(LookupError):
    """No remembered user has that id or UPN."""


class AmbiguousUser(LookupError):
    """More than one live user has that UPN (the directory should not allow it); use the id."""

    def __init__(self, ids: Sequence[str]) -> None:
        super().__init__("more than one user has that UPN; ask by object id: " + ", ".join(ids))
        self.ids = tuple(ids)


async def find_user(reader: HistoryReader, ref: UserRef) -> StoredUser:
    """The user named by id or UPN. For a UPN reused after its owner was deleted, the live owner
    wins; if every owner was deleted, the one with the latest history."""
    if ref.user_id is not None:
        user = await reader.user(ref.user_id)
        if user is None:
            raise UserNotFound(ref.user_id)
        return user
    assert ref.upn is not None
    wanted = upn_key(ref.upn)
    owners = [u for u in await reader.users_with_upn(ref.upn) if upn_key(u.record.upn) == wanted]
    live = [u for u in owners if not u.deleted]
    if len(live) > 1:
        raise AmbiguousUser(sorted(u.record.id for u in live))
    if live:
        return live[0]
    if owners:
        return max(owners, key=lambda u: (u.first_seen or "", u.version))
    raise UserNotFound(ref.upn)


@dataclass(frozen=True)
class HistoryAnswer:
    user: StoredUser
    events: Page[ChangeEntry]
    reminders: Sequence[ReminderLine] | None  # None: reminders were not asked for / not available


async def history(
    reader: HistoryReader,
    user: StoredUser,
    limit: int,
    cursor: Cursor | None = None,
    reminders: Sequence[ReminderLine] | None = None,
) -> HistoryAnswer:
    """A page of a user's timeline (found with ``find_user``), and their reminders when given."""
    events = await reader.timeline_page(user.record.id, limit, cursor)
    mine = None if reminders is None else [r for r in reminders if r.user_id == user.record.id]
    return HistoryAnswer(user, events, mine)


async def reminders_of(ledger: ReminderLedger, user: StoredUser) -> list[ReminderLine]:
    """Every reminder of the user and its outcome, oldest first (one range query in the user's
    partition; the ledger keeps a handful per wave, so it is never paged)."""
    r = user.record
    entries = sorted(await ledger.reminders_of(r.id), key=_when)
    return [reminder_line(e, upn=r.upn, display_name=r.display_name) for e in entries]


def _when(entry: LedgerEntry) -> datetime:
    return entry.posted or entry.recorded


@dataclass(frozen=True)
class ReminderOutcomes:
    day: str  # the UTC day, YYYY-MM-DD
    lines: list[ReminderLine]  # oldest first; a sample when more than the limit (see total)
    total: int
    by_outcome: dict[str, int]  # status -> reminders, over all of them


async def reminder_outcomes(
    ledger: ReminderLedger,
    reader: HistoryReader,
    day: date,
    known: Iterable[UserRecord] = (),
    limit: int = REPORT_MAX_REMINDERS,
) -> ReminderOutcomes:
    """What happened to reminders on ``day`` (one partition of the ledger's day index), with each
    person's name: from ``known`` (usually the unregistered, who are most of them), else read."""
    entries = await ledger.outcomes_on(day)
    chosen = sorted(entries, key=lambda e: (e.status not in _NEEDS_A_LOOK, _when(e)))[:limit]
    chosen.sort(key=_when)
    names = {r.id: r for r in known}
    missing = sorted({e.key.user_id for e in chosen} - names.keys())
    gate = asyncio.Semaphore(NAME_LOOKUPS_AT_ONCE)

    async def look_up(user_id: str) -> None:
        async with gate:
            stored = await reader.user(user_id)
        if stored is not None:
            names[user_id] = stored.record

    await asyncio.gather(*(look_up(uid) for uid in missing))
    lines = []
    for e in chosen:
        record = names.get(e.key.user_id)
        lines.append(
            reminder_line(e, upn=record.upn if record else "", display_name=record.display_name if record else "")
        )
    by_outcome = Counter(e.status.value for e in entries)
    return ReminderOutcomes(day.isoformat(), lines, len(entries), dict(sorted(by_outcome.items())))


@dataclass(frozen=True)
class ChangesAnswer:
    night: str | None  # None: no sync has completed yet
    changes: Page[ChangeEntry]


async def changes(reader: HistoryReader, night: str | None, limit: int, cursor: Cursor | None = None) -> ChangesAnswer:
    """A night's changes; by default the latest completed run's night."""
    night = night or await reader.latest_night()
    if night is None:
        return ChangesAnswer(None, Page([], None))
    return ChangesAnswer(night, await reader.changes_page(night, limit, cursor))


async def unregistered(
    reader: HistoryReader,
    waves: Sequence[Wave],
    now: datetime,
    scope: ScopeFilter,
    wave: Wave | None,
    limit: int,
    cursor: Cursor | None = None,
) -> Page[Exposure]:
    """A page of who is unregistered and in scope (in storage order: by shard and id)."""
    page = await reader.unregistered_page(selector(scope, wave), limit, cursor)
    today = now.date()
    return Page([exposure(u.record, waves, today) for u in page.items], page.next)


async def all_unregistered(
    reader: HistoryReader, waves: Sequence[Wave], now: datetime, scope: ScopeFilter, wave: Wave | None
) -> list[Exposure]:
    """Everyone unregistered and in scope, most urgent first."""
    return readiness_list(await reader.unregistered(selector(scope, wave)), waves, now.date())


def default_coverage_range(now: datetime, nights: int = DEFAULT_COVERAGE_NIGHTS) -> tuple[str, str]:
    last = now.date()
    return (last - timedelta(days=nights - 1)).isoformat(), last.isoformat()


async def report(
    reader: HistoryReader,
    waves: Sequence[Wave],
    now: datetime,
    *,
    nights: int = DEFAULT_COVERAGE_NIGHTS,
    ledger: ReminderLedger | None = None,
) -> ReportData:
    """Everything the HTML report shows. With ``ledger``, also what happened to reminders on the
    UTC day of the latest completed night (today's, before the first sync)."""
    first, last = default_coverage_range(now, nights)
    coverage = await reader.coverage(first, last)
    exposures = await all_unregistered(reader, waves, now, ScopeFilter.ALL, None)
    night = coverage[-1].night if coverage else await reader.latest_night()
    sample: list[ChangeEntry] = []
    total = 0
    if night is not None:
        cursor: Cursor | None = None
        while len(sample) < REPORT_MAX_CHANGES:
            page = await reader.changes_page(night, REPORT_MAX_CHANGES - len(sample), cursor)
            sample.extend(page.items)
            if page.next is None:
                break
            cursor = page.next
        point = next((p for p in coverage if p.night == night), None)
        total = sum(point.changes.values()) if point and point.changes else len(sample)
        total = max(total, len(sample))
    outcomes = None
    if ledger is not None:
        day = date.fromisoformat(night) if night else now.date()
        outcomes = await reminder_outcomes(ledger, reader, day, (e.user for e in exposures))
    return ReportData(
        generated_at=now,
        waves=tuple(waves),
        coverage=coverage,
        exposures=exposures[:REPORT_MAX_UNREGISTERED],
        unregistered_total=len(exposures),
        night=night,
        changes=sample,
        changes_total=total,
        reminders=outcomes.lines if outcomes else None,
        reminders_day=outcomes.day if outcomes else None,
        reminders_total=outcomes.total if outcomes else 0,
        reminders_by_outcome=outcomes.by_outcome if outcomes else {},
    )
