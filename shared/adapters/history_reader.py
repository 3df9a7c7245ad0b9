"""Read the history: a user's timeline, a night's changes, the coverage series, the run log.

Each question is one single-partition query (see docs/table-schema.md). Filters are always built
with the SDK's parameter substitution from validated values, never by pasting text into OData.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables.aio import TableServiceClient

from shared.adapters import table_schema as schema
from shared.adapters.state_store import StateStore
from shared.domain.records import StoredUser

_NIGHT = re.compile(r"\d{4}-\d{2}-\d{2}")


def _night(value: str) -> str:
    if not _NIGHT.fullmatch(value):
        raise ValueError(f"a night is a date like 2026-11-23, got {value!r}")
    return value


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


class HistoryReader:
    def __init__(self, service: TableServiceClient) -> None:
        self._store = StateStore(service)  # same tables, read-only use

    async def user_history(self, user_id: str) -> UserHistory | None:
        """The user's current state and every change, oldest first; None if never seen."""
        user_id = user_id.strip().lower()
        shard = schema.shard_of(user_id)
        try:
            state = await self._store.users.get_entity(shard, schema.state_key(user_id))
        except ResourceNotFoundError:
            return None
        low, high = schema.timeline_range(user_id)
        query = self._store.users.query_entities(
            "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high",
            parameters={"pk": shard, "low": low, "high": high},
        )
        events = [change_from_entity(e) async for e in query]
        return UserHistory(schema.stored_user_from_entity(state, state.metadata.get("etag")), events)

    async def changes_on(self, night: str) -> list[ChangeEntry]:
        query = self._store.changes.query_entities(
            "PartitionKey eq @night", parameters={"night": _night(night)}
        )
        return [change_from_entity(e) async for e in query]

    async def coverage(self, first_night: str, last_night: str) -> list[CoveragePoint]:
        query = self._store.runs.query_entities(
            "PartitionKey eq @pk and RowKey ge @first and RowKey le @last",
            parameters={
                "pk": schema.COVERAGE_PARTITION,
                "first": _night(first_night),
                "last": _night(last_night),
            },
        )
        points = []
        async for e in query:
            points.append(
                CoveragePoint(
                    night=str(e["RowKey"]),
                    run_id=str(e.get("RunId", "")),
                    users=int(e.get("Users", 0)),
                    members=int(e.get("Members", 0)),
                    guests=int(e.get("Guests", 0)),
                    registered=int(e.get("Registered", 0)),
                    unregistered=int(e.get("Unregistered", 0)),
                    unknown=int(e.get("Unknown", 0)),
                    percent=e.get("CoveragePercent"),
                    admins_registered=int(e.get("AdminRegistered", 0)),
                    admins_unregistered=int(e.get("AdminUnregistered", 0)),
                )
            )
        return points

    async def runs(self, since_night: str) -> list[dict[str, Any]]:
        """Run rows from a night on, oldest first (run ids sort by start time)."""
        query = self._store.runs.query_entities(
            "PartitionKey eq @pk and RowKey ge @since",
            parameters={"pk": schema.RUN_PARTITION, "since": _night(since_night).replace("-", "")},
        )
        return [dict(e) async for e in query]
