"""A lease row in Table Storage: one holder at a time, expiring, so a crashed holder never blocks.

The sync and the nudge job each hold their own lease row (``MfaRuns``, partition ``lease``).
Taking an expired lease and renewing one are ETag-conditional replaces, so of two runs racing
for the same row exactly one wins; releasing deletes the row only if it is still ours.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from shared.adapters.table_schema import LEASE_PARTITION

log = logging.getLogger(__name__)


class LeaseHeldError(RuntimeError):
    """Another run holds the lease (or took it over meanwhile)."""


@dataclass(frozen=True)
class Lease:
    owner: str
    until: datetime
    etag: str


def renewal_due(lease: Lease, now: datetime, seconds: float) -> bool:
    """Renew once a third of a ``seconds``-long lease has passed, so a slow step never outlives it."""
    return (lease.until - now).total_seconds() <= seconds * 2 / 3


class LeaseRow:
    """The lease kept in row ``name`` of ``table``; ``what`` names the job in messages."""

    def __init__(self, table: TableClient, name: str, what: str) -> None:
        self._table, self._name, self._what = table, name, what

    def _entity(self, owner: str, until: datetime) -> dict[str, Any]:
        return {"PartitionKey": LEASE_PARTITION, "RowKey": self._name, "Owner": owner, "Until": until.isoformat()}

    async def acquire(self, owner: str, now: datetime, seconds: float) -> Lease:
        until = now + timedelta(seconds=seconds)
        try:
            meta = await self._table.create_entity(self._entity(owner, until))
            return Lease(owner, until, str(meta["etag"]))
        except ResourceExistsError:
            pass
        current = await self._table.get_entity(LEASE_PARTITION, self._name)
        held_until = datetime.fromisoformat(str(current["Until"]))
        if held_until > now and current.get("Owner") != owner:
            raise LeaseHeldError(
                f"another {self._what} ({current.get('Owner')}) holds the lease until {held_until.isoformat()}"
            )
        return await self._replace(owner, until, str(current.metadata["etag"]))

    async def renew(self, lease: Lease, now: datetime, seconds: float) -> Lease:
        return await self._replace(lease.owner, now + timedelta(seconds=seconds), lease.etag)

    async def _replace(self, owner: str, until: datetime, etag: str) -> Lease:
        try:
            meta = await self._table.update_entity(
                self._entity(owner, until),
                mode=UpdateMode.REPLACE,
                etag=etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except ResourceNotFoundError as exc:
            raise LeaseHeldError(f"the {self._what} lease was released or taken over meanwhile") from exc
        except HttpResponseError as exc:
            if isinstance(exc, ResourceExistsError) or exc.status_code in (409, 412):
                raise LeaseHeldError(f"another {self._what} took the lease meanwhile") from exc
            raise
        return Lease(owner, until, str(meta["etag"]))

    async def release(self, lease: Lease) -> None:
        try:
            await self._table.delete_entity(
                LEASE_PARTITION, self._name, etag=lease.etag, match_condition=MatchConditions.IfNotModified
            )
        except HttpResponseError as exc:  # someone took an expired lease over: theirs now, leave it
            log.warning("%s lease was not released: %s", self._what, exc.message)
