"""The per-user record: what the monitor knows about one person after a night's pull.

A ``UserRecord`` joins a Graph user object with its row in the registration report. It is the unit
the sync compares night to night; ``StoredUser`` is the same record as remembered in Table Storage,
with the bookkeeping needed to update it safely.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, fields, replace
from enum import StrEnum

from shared.domain.scope import ScopeFacts


class UserType(StrEnum):
    MEMBER = "member"
    GUEST = "guest"


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: str
    upn: str
    display_name: str
    user_type: UserType
    enabled: bool
    # The three registration facts are None when the report has never listed the user (a new user
    # before the report's refresh, which can lag about 36 hours): unknown is not "unregistered".
    mfa_registered: bool | None
    mfa_capable: bool | None
    is_admin: bool | None
    methods: tuple[str, ...]
    default_method: str | None
    email: str | None  # a deliverable address, never a guest's #EXT# UPN
    created: str | None
    external_user_state: str | None
    on_premises_sync: bool
    # Who enforcement will stop and why (filled by the scope signals; empty until they run).
    scope: ScopeFacts = ScopeFacts()  # noqa: RUF009 - frozen, so one shared default is safe
    # Not compared night to night: the report refreshes it daily, and whether tonight's report
    # listed the user (disabled users drop out of it) says nothing about the person.
    report_updated: str | None = None
    in_report: bool = True

    @property
    def is_guest(self) -> bool:
        return self.user_type is UserType.GUEST

    def tracked(self) -> tuple[object, ...]:
        """The values whose change is worth a write (of the scope facts, only the tracked ones:
        a management sign-in's time moves every night; see ``ScopeFacts.tracked``)."""
        return tuple(self.scope.tracked() if name == "scope" else getattr(self, name) for name in TRACKED_FIELDS)

    def without_report(self) -> UserRecord:
        return replace(self, in_report=False)


UNTRACKED_FIELDS = frozenset({"report_updated", "in_report"})
TRACKED_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(UserRecord) if f.name not in UNTRACKED_FIELDS)
REGISTRATION_FIELDS: tuple[str, ...] = (
    "mfa_registered",
    "mfa_capable",
    "is_admin",
    "methods",
    "default_method",
    "report_updated",
)


@dataclass(frozen=True, slots=True)
class StoredUser:
    """A user as remembered: the last record plus the bookkeeping of its table row."""

    record: UserRecord
    version: int  # bumped on every stored change; orders the user's timeline
    etag: str | None  # the row's ETag, so an overlapping writer is detected, not overwritten
    deleted: bool = False
    first_seen: str | None = None


def intern_methods(methods: tuple[str, ...]) -> tuple[str, ...]:
    """Method names repeat across every user: share one string per name to keep state compact."""
    return tuple(sys.intern(m) for m in methods)
