"""Counting a night: how many users, how many registered, what changed, what was skipped.

A ``Census`` is filled user by user while the sync streams the directory, and frozen into
``NightFigures`` for the run row and the coverage series. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from shared.domain.deltas import ChangeKind, UserUpdate
from shared.domain.normalize import Skipped, unknown_methods
from shared.domain.records import UserRecord
from shared.domain.scope import Phase, in_scope, phases_of, reason_kind


@dataclass(frozen=True)
class Coverage:
    """Registration among enabled accounts, the people who can still sign in."""

    registered: int
    unregistered: int
    unknown: int  # not (yet) in the registration report

    @property
    def percent(self) -> float | None:
        known = self.registered + self.unregistered
        return round(100.0 * self.registered / known, 2) if known else None


@dataclass(frozen=True)
class NightFigures:
    users: int
    members: int
    guests: int
    enabled: int
    disabled: int
    admins: int
    coverage: Coverage
    member_coverage: Coverage
    guest_coverage: Coverage
    admin_coverage: Coverage
    changes: dict[str, int]
    silent_updates: int
    skipped: dict[str, int]
    unknown_methods: tuple[str, ...]
    # Scope, among enabled accounts (in scope = enforcement applies; exclusions are counted apart
    # and stay in the figures: an excluded break-glass account still needs MFA).
    scope_known: int = 0  # users whose scope the signals computed (the rest fall back on isAdmin/guest)
    in_scope: int = 0
    in_scope_coverage: Coverage = field(default_factory=lambda: Coverage(0, 0, 0))
    phase_coverage: dict[str, Coverage] = field(default_factory=dict)  # phase -> in-scope registration
    scope_reasons: dict[str, int] = field(default_factory=dict)  # reason kind -> in-scope users
    excluded: dict[str, int] = field(default_factory=dict)  # exclusion code -> in-scope users


@dataclass
class _Tally:
    registered: int = 0
    unregistered: int = 0
    unknown: int = 0

    def add(self, record: UserRecord) -> None:
        if record.mfa_registered is True:
            self.registered += 1
        elif record.mfa_registered is False:
            self.unregistered += 1
        else:
            self.unknown += 1

    def frozen(self) -> Coverage:
        return Coverage(self.registered, self.unregistered, self.unknown)

    def frozen_counts(self) -> tuple[int, int, int]:
        return self.registered, self.unregistered, self.unknown


@dataclass
class Census:
    users: int = 0
    members: int = 0
    guests: int = 0
    disabled: int = 0
    admins: int = 0
    silent_updates: int = 0
    everyone: _Tally = field(default_factory=_Tally)
    members_tally: _Tally = field(default_factory=_Tally)
    guests_tally: _Tally = field(default_factory=_Tally)
    admins_tally: _Tally = field(default_factory=_Tally)
    changes: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    unknown_method_names: set[str] = field(default_factory=set)
    scope_known: int = 0
    in_scope_tally: _Tally = field(default_factory=_Tally)
    phase_tallies: dict[Phase, _Tally] = field(default_factory=lambda: {p: _Tally() for p in Phase})
    scope_reasons: Counter[str] = field(default_factory=Counter)
    excluded: Counter[str] = field(default_factory=Counter)

    def count_user(self, record: UserRecord) -> None:
        """Count tonight's record (after registration facts were carried forward)."""
        self.users += 1
        if record.is_guest:
            self.guests += 1
        else:
            self.members += 1
        self.unknown_method_names.update(unknown_methods(record.methods))
        if not record.enabled:
            self.disabled += 1
            return
        if record.is_admin:
            self.admins += 1
            self.admins_tally.add(record)
        self.everyone.add(record)
        (self.guests_tally if record.is_guest else self.members_tally).add(record)
        self._count_scope(record)

    def _count_scope(self, record: UserRecord) -> None:
        scope = record.scope
        if scope.known:
            self.scope_known += 1
        if not in_scope(record):
            return
        self.in_scope_tally.add(record)
        for phase in phases_of(record):
            self.phase_tallies[phase].add(record)
        self.scope_reasons.update({reason_kind(r) for r in scope.reasons})
        if scope.exclusion_code:
            self.excluded[scope.exclusion_code] += 1

    def count_update(self, update: UserUpdate) -> None:
        if not update.changes:
            self.silent_updates += 1
        for change in update.changes:
            self.changes[change.kind.value] += 1

    def count_skip(self, skipped: Skipped) -> None:
        # Reasons are grouped by their text before any detail in parentheses.
        self.skipped[skipped.reason.split(" (", 1)[0]] += 1

    def figures(self) -> NightFigures:
        return NightFigures(
            users=self.users,
            members=self.members,
            guests=self.guests,
            enabled=self.users - self.disabled,
            disabled=self.disabled,
            admins=self.admins,
            coverage=self.everyone.frozen(),
            member_coverage=self.members_tally.frozen(),
            guest_coverage=self.guests_tally.frozen(),
            admin_coverage=self.admins_tally.frozen(),
            changes={kind.value: self.changes.get(kind.value, 0) for kind in ChangeKind},
            silent_updates=self.silent_updates,
            skipped=dict(self.skipped),
            unknown_methods=tuple(sorted(self.unknown_method_names)),
            scope_known=self.scope_known,
            in_scope=sum(self.in_scope_tally.frozen_counts()),
            in_scope_coverage=self.in_scope_tally.frozen(),
            phase_coverage={p.value: t.frozen() for p, t in self.phase_tallies.items()},
            scope_reasons=dict(sorted(self.scope_reasons.items())),
            excluded=dict(sorted(self.excluded.items())),
        )
