"""Counting a night: how many users, how many registered, what changed, what was skipped.

A ``Census`` is filled user by user while the sync streams the directory, and frozen into
``NightFigures`` for the run row and the coverage series. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

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


@dataclass(frozen=True, slots=True)
class Profile:
    """What ``Census.count_user`` counts of a record: ``count_profile(profile_of(r))`` is
    ``count_user(r)``. The sync remembers it for users it does not recompute (``domain.steady``)."""

    guest: bool
    enabled: bool
    admin: bool
    registered: bool | None
    unknown_methods: tuple[str, ...] = ()
    scope_known: bool = False
    in_scope: bool = False
    phases: tuple[str, ...] = ()
    reason_kinds: tuple[str, ...] = ()
    exclusion_code: str | None = None

    def to_json(self) -> list[Any]:
        return [
            self.guest,
            self.enabled,
            self.admin,
            self.registered,
            list(self.unknown_methods),
            self.scope_known,
            self.in_scope,
            list(self.phases),
            list(self.reason_kinds),
            self.exclusion_code,
        ]

    @classmethod
    def from_json(cls, data: Any) -> Profile:
        """The inverse of ``to_json``; ValueError for anything else."""
        if not isinstance(data, list) or len(data) != 10:
            raise ValueError("a profile is a list of 10 values")
        g, e, a, r, unknown, known, scoped, phases, kinds, code = data
        if not all(isinstance(v, bool) for v in (g, e, a, known, scoped)) or not (r is None or isinstance(r, bool)):
            raise ValueError("a profile's flags must be booleans")
        if not all(isinstance(x, list) and all(isinstance(s, str) for s in x) for x in (unknown, phases, kinds)):
            raise ValueError("a profile's lists must hold strings")
        if not (code is None or isinstance(code, str)):
            raise ValueError("a profile's exclusion code must be a string or null")
        return cls(g, e, a, r, tuple(unknown), known, scoped, tuple(phases), tuple(kinds), code)


def profile_of(record: UserRecord) -> Profile:
    scope = record.scope
    scoped = record.enabled and in_scope(record)
    return Profile(
        guest=record.is_guest,
        enabled=record.enabled,
        admin=record.is_admin is True,
        registered=record.mfa_registered,
        unknown_methods=unknown_methods(record.methods),
        scope_known=scope.known,
        in_scope=scoped,
        phases=tuple(p.value for p in phases_of(record)) if scoped else (),
        reason_kinds=tuple(sorted({reason_kind(r) for r in scope.reasons})) if scoped else (),
        exclusion_code=scope.exclusion_code if scoped else None,
    )


@dataclass
class _Tally:
    registered: int = 0
    unregistered: int = 0
    unknown: int = 0

    def add(self, registered: bool | None, n: int = 1) -> None:
        if registered is True:
            self.registered += n
        elif registered is False:
            self.unregistered += n
        else:
            self.unknown += n

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
        self.count_profile(profile_of(record))

    def count_profile(self, profile: Profile, n: int = 1) -> None:
        """Count ``n`` users of this profile (``steady.profile_of``): what ``count_user`` counts."""
        self.users += n
        if profile.guest:
            self.guests += n
        else:
            self.members += n
        self.unknown_method_names.update(profile.unknown_methods)
        if not profile.enabled:
            self.disabled += n
            return
        if profile.admin:
            self.admins += n
            self.admins_tally.add(profile.registered, n)
        self.everyone.add(profile.registered, n)
        (self.guests_tally if profile.guest else self.members_tally).add(profile.registered, n)
        if profile.scope_known:
            self.scope_known += n
        if not profile.in_scope:
            return
        self.in_scope_tally.add(profile.registered, n)
        for phase in profile.phases:
            self.phase_tallies[Phase(phase)].add(profile.registered, n)
        for kind in profile.reason_kinds:
            self.scope_reasons[kind] += n
        if profile.exclusion_code:
            self.excluded[profile.exclusion_code] += n

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
