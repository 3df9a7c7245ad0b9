"""Read the history: a user's timeline, a night's changes, the coverage series, the run log,
the users still unregistered, and a UPN's owner.

Each question is one single-partition query (see docs/table-schema.md), except the two that must
look at every user (a UPN lookup and the unregistered list), which query the 17 user shards. Filters
are always built with the SDK's parameter substitution from validated values, never by pasting
text into OData. (The SDK substitutes whole words split on spaces, so a parameter is always
written with a space on both sides, ``( Upn eq @upn )``.)

Paging. Answers that can be long come as a ``Page`` with a ``Cursor`` to resume from:

- server-filtered queries (a timeline, a night, the coverage range) resume from the Table
  service's own continuation token (NextPartitionKey/NextRowKey, opaque, passed back as is);
- the unregistered list is filtered again in Python by the pure scope rule, so a page ends in the
  middle of what the service returned; it resumes after the last RowKey it returned, in the shard
  it stopped in (keyset paging: RowKeys are unique and ordered within a partition).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables.aio import TableClient, TableServiceClient

from shared.adapters import table_schema as schema
from shared.adapters.state_store import StateStore
from shared.domain.records import StoredUser
from shared.domain.scope import Phase

T = TypeVar("T")

_NIGHT = re.compile(r"\d{4}-\d{2}-\d{2}")
MAX_PAGE = 1000  # Table Storage's largest query page
# State rows that are enabled, live and known to be unregistered; the scope rule runs in Python.
_UNREGISTERED = " and MfaRegistered eq false and Enabled eq true and Deleted eq false"
_FIRST = "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high" + _UNREGISTERED
_RESUMED = "PartitionKey eq @pk and RowKey gt @after and RowKey lt @high" + _UNREGISTERED


def _night(value: str) -> str:
    if not _NIGHT.fullmatch(value):
        raise ValueError(f"a night is a date like 2026-11-23, got {value!r}")
    return value


@dataclass(frozen=True)
class Cursor:
    """Where a paged query resumes.

    ``token``: the Table service's continuation token (``{"PartitionKey", "RowKey"}``, opaque).
    ``shard`` and ``after``: for queries over the user shards, the shard index (into
    ``schema.SHARDS``) and the last RowKey already returned in it.
    """

    token: Mapping[str, str] | None = None
    shard: int = 0
    after: str | None = None


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next: Cursor | None  # None: this was the last page


@dataclass(frozen=True)
class ChangeEntry:
    user_id: str
    kind: str
    version: int
    upn: str
    display_name: str
    user_type: str
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None
    seen_at: str
    night: str
    run_id: str


@dataclass(frozen=True)
class ScopeCoverage:
    """Registration among the enabled accounts in scope (of enforcement, or of one phase)."""

    users: int
    registered: int
    unregistered: int
    unknown: int  # not (yet) in the registration report
    percent: float | None


@dataclass(frozen=True)
class CoveragePoint:
    night: str
    run_id: str
    users: int
    members: int
    guests: int
    registered: int
    unregistered: int
    unknown: int
    percent: float | None
    admins_registered: int
    admins_unregistered: int
    # Fields below were added for the report; rows always had them.
    enabled: int = 0
    admins: int = 0
    admins_percent: float | None = None
    guests_registered: int = 0
    guests_unregistered: int = 0
    guests_percent: float | None = None
    members_registered: int = 0
    members_unregistered: int = 0
    members_percent: float | None = None
    changes: Mapping[str, int] = field(default_factory=dict)
    # In-scope figures, overall and per enforcement phase ("phase1", "phase2"). Rows written before
    # the scope signals existed lack them: None and an empty mapping, never made-up zeros.
    in_scope: ScopeCoverage | None = None
    phases: Mapping[str, ScopeCoverage] = field(default_factory=dict)


@dataclass(frozen=True)
class UserHistory:
    current: StoredUser
    events: list[ChangeEntry]


def _json(value: object) -> Mapping[str, Any] | None:
    if not isinstance(value, str) or not value:
        return None
    parsed = json.loads(value)
    return parsed if isinstance(parsed, dict) else None


def change_from_entity(e: Mapping[str, Any]) -> ChangeEntry:
    return ChangeEntry(
        user_id=str(e["UserId"]),
        kind=str(e["Kind"]),
        version=int(e["Version"]),
        upn=str(e.get("Upn", "")),
        display_name=str(e.get("DisplayName", "")),
        user_type=str(e.get("UserType", "")),
        before=_json(e.get("Before")),
        after=_json(e.get("After")),
        seen_at=str(e.get("SeenAt", "")),
        night=str(e.get("Night", "")),
        run_id=str(e.get("RunId", "")),
    )


def _percent(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _scope_coverage(e: Mapping[str, Any], prefix: str) -> ScopeCoverage | None:
    """``<prefix>InScope``, ``<prefix>Registered``... (table_schema.scope_figures_properties)."""
    users = e.get("InScope" if prefix == "InScope" else f"{prefix}InScope")
    if not isinstance(users, int) or isinstance(users, bool):
        return None
    return ScopeCoverage(
        users=users,
        registered=int(e.get(f"{prefix}Registered", 0)),
        unregistered=int(e.get(f"{prefix}Unregistered", 0)),
        unknown=int(e.get(f"{prefix}Unknown", 0)),
        percent=_percent(e.get(f"{prefix}CoveragePercent")),
    )


def coverage_from_entity(e: Mapping[str, Any]) -> CoveragePoint:
    changes = _json(e.get("Changes")) or {}
    phases = {p.value: c for p in Phase if (c := _scope_coverage(e, p.value.capitalize())) is not None}
    return CoveragePoint(
        night=str(e["RowKey"]),
        run_id=str(e.get("RunId", "")),
        users=int(e.get("Users", 0)),
        members=int(e.get("Members", 0)),
        guests=int(e.get("Guests", 0)),
        registered=int(e.get("Registered", 0)),
        unregistered=int(e.get("Unregistered", 0)),
        unknown=int(e.get("Unknown", 0)),
        percent=_percent(e.get("CoveragePercent")),
        admins_registered=int(e.get("AdminRegistered", 0)),
        admins_unregistered=int(e.get("AdminUnregistered", 0)),
        enabled=int(e.get("EnabledUsers", 0)),
        admins=int(e.get("Admins", 0)),
        admins_percent=_percent(e.get("AdminCoveragePercent")),
        guests_registered=int(e.get("GuestRegistered", 0)),
        guests_unregistered=int(e.get("GuestUnregistered", 0)),
        guests_percent=_percent(e.get("GuestCoveragePercent")),
        members_registered=int(e.get("MemberRegistered", 0)),
        members_unregistered=int(e.get("MemberUnregistered", 0)),
        members_percent=_percent(e.get("MemberCoveragePercent")),
        changes={str(k): int(v) for k, v in changes.items() if isinstance(v, int)},
        in_scope=_scope_coverage(e, "InScope"),
        phases=phases,
    )


def _stored(entity: Any) -> StoredUser:
    return schema.stored_user_from_entity(entity, entity.metadata.get("etag"))


async def _one_page(
    table: TableClient,
    query_filter: str,
    parameters: dict[str, Any],
    limit: int,
    token: Mapping[str, str] | None,
) -> tuple[list[Any], Mapping[str, str] | None]:
    """One page of a query from the service, and its continuation token (None at the end)."""
    # The tables SDK's continuation token is a dict; azure-core's paging types it as str.
    query: Any = table.query_entities(query_filter, parameters=parameters, results_per_page=limit)
    pages = query.by_page(continuation_token=dict(token) if token else None)
    async for page in pages:
        rows = [e async for e in page]
        next_token: Mapping[str, str] | None = pages.continuation_token or None
        return rows, next_token
    return [], None


class HistoryReader:
    def __init__(self, service: TableServiceClient) -> None:
        self._store = StateStore(service)  # same tables, read-only use

    # --- users ---------------------------------------------------------------------------------

    async def user(self, user_id: str) -> StoredUser | None:
        """A user's current state by object id (lower-case, as stored); None if never seen."""
        try:
            state = await self._store.users.get_entity(schema.shard_of(user_id), schema.state_key(user_id))
        except ResourceNotFoundError:
            return None
        return schema.stored_user_from_entity(state, state.metadata.get("etag"))

    async def users_with_upn(self, upn: str) -> list[StoredUser]:
        """Every remembered user with this UPN, case-insensitively (deleted ones too: a UPN can be
        reused after its owner was deleted). All shards are asked at once.

        ``UpnLower`` is written with every state row; ``Upn eq @upn`` also finds a row written
        before that property existed when the caller typed the UPN's exact casing.
        """
        low, high = schema.state_range()
        parameters = {"low": low, "high": high, "upn": upn, "lower": schema.upn_key(upn)}
        query_filter = (
            "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high and ( UpnLower eq @lower or Upn eq @upn )"
        )

        async def shard(pk: str) -> list[StoredUser]:
            query = self._store.users.query_entities(query_filter, parameters={**parameters, "pk": pk})
            return [_stored(e) async for e in query]

        found = await asyncio.gather(*(shard(pk) for pk in schema.SHARDS))
        return [user for part in found for user in part]

    async def timeline_page(self, user_id: str, limit: int, cursor: Cursor | None = None) -> Page[ChangeEntry]:
        """A page of the user's changes, oldest first."""
        low, high = schema.timeline_range(user_id)
        rows, token = await _one_page(
            self._store.users,
            "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high",
            {"pk": schema.shard_of(user_id), "low": low, "high": high},
            limit,
            cursor.token if cursor else None,
        )
        return Page([change_from_entity(e) for e in rows], Cursor(token=token) if token else None)

    async def user_history(self, user_id: str) -> UserHistory | None:
        """The user's current state and every change, oldest first; None if never seen."""
        user_id = user_id.strip().lower()
        current = await self.user(user_id)
        if current is None:
            return None
        events = [e async for e in every(lambda c: self.timeline_page(user_id, MAX_PAGE, c))]
        return UserHistory(current, events)

    # --- the unregistered ----------------------------------------------------------------------

    async def unregistered_page(
        self, keep: Callable[[StoredUser], bool], limit: int, cursor: Cursor | None = None
    ) -> Page[StoredUser]:
        """Enabled, live users known to be unregistered that ``keep`` accepts, shard by shard in
        RowKey order; up to ``limit`` of them."""
        cursor = cursor or Cursor()
        items: list[StoredUser] = []
        for index in range(cursor.shard, len(schema.SHARDS)):
            after = cursor.after if index == cursor.shard else None
            async for user in self._unregistered_in(schema.SHARDS[index], after, keep):
                items.append(user)
                if len(items) == limit:
                    return Page(items, Cursor(shard=index, after=schema.state_key(user.record.id)))
        return Page(items, None)

    async def unregistered(self, keep: Callable[[StoredUser], bool]) -> list[StoredUser]:
        """All of them, shards in parallel (for the report and the command line)."""
        parts = await asyncio.gather(*(self._collect(pk, keep) for pk in schema.SHARDS))
        return [user for part in parts for user in part]

    async def _collect(self, pk: str, keep: Callable[[StoredUser], bool]) -> list[StoredUser]:
        return [user async for user in self._unregistered_in(pk, None, keep)]

    async def _unregistered_in(
        self, pk: str, after: str | None, keep: Callable[[StoredUser], bool]
    ) -> AsyncIterator[StoredUser]:
        low, high = schema.state_range()
        query = self._store.users.query_entities(
            _RESUMED if after else _FIRST,
            parameters={"pk": pk, "low": low, "after": after, "high": high},
            results_per_page=MAX_PAGE,
        )
        async for entity in query:
            user = _stored(entity)
            if keep(user):
                yield user

    # --- nights --------------------------------------------------------------------------------

    async def changes_page(self, night: str, limit: int, cursor: Cursor | None = None) -> Page[ChangeEntry]:
        """A page of everything that changed on a night, in (user, version) order."""
        rows, token = await _one_page(
            self._store.changes,
            "PartitionKey eq @night",
            {"night": _night(night)},
            limit,
            cursor.token if cursor else None,
        )
        return Page([change_from_entity(e) for e in rows], Cursor(token=token) if token else None)

    async def changes_on(self, night: str) -> list[ChangeEntry]:
        _night(night)
        return [e async for e in every(lambda c: self.changes_page(night, MAX_PAGE, c))]

    async def latest_night(self) -> str | None:
        """The night of the latest completed run: coverage rows are written only by those."""
        query = self._store.runs.query_entities(
            "PartitionKey eq @pk", parameters={"pk": schema.COVERAGE_PARTITION}, select=["RowKey"]
        )
        latest: str | None = None
        async for e in query:
            latest = max(latest or "", str(e["RowKey"]))
        return latest

    # --- coverage and runs ---------------------------------------------------------------------

    async def coverage_page(
        self, first_night: str, last_night: str, limit: int, cursor: Cursor | None = None
    ) -> Page[CoveragePoint]:
        rows, token = await _one_page(
            self._store.runs,
            "PartitionKey eq @pk and RowKey ge @first and RowKey le @last",
            {"pk": schema.COVERAGE_PARTITION, "first": _night(first_night), "last": _night(last_night)},
            limit,
            cursor.token if cursor else None,
        )
        return Page([coverage_from_entity(e) for e in rows], Cursor(token=token) if token else None)

    async def coverage(self, first_night: str, last_night: str) -> list[CoveragePoint]:
        """The coverage series, oldest night first."""
        _night(first_night)
        _night(last_night)
        return [p async for p in every(lambda c: self.coverage_page(first_night, last_night, MAX_PAGE, c))]

    async def runs(self, since_night: str) -> list[dict[str, Any]]:
        """Run rows from a night on, oldest first (run ids sort by start time)."""
        query = self._store.runs.query_entities(
            "PartitionKey eq @pk and RowKey ge @since",
            parameters={"pk": schema.RUN_PARTITION, "since": _night(since_night).replace("-", "")},
        )
        return [dict(e) async for e in query]


async def every(fetch: Callable[[Cursor | None], Awaitable[Page[T]]]) -> AsyncIterator[T]:
    """Follow a paged query to its end."""
    cursor: Cursor | None = None
    while True:
        page = await fetch(cursor)
        for item in page.items:
            yield item
        if page.next is None:
            return
        cursor = page.next
