"""Who is still unregistered and in scope, and how many days each has left per wave. Pure.

"Unregistered" means the registration report says so (``mfa_registered is False``): a user the
report has never listed is *unknown*, not unregistered. Disabled and deleted accounts cannot sign
in, so enforcement cannot stop them: they are not on the list. Whether a person is in scope, and
of which phases, is ``scope.in_scope`` / ``scope.phases_of``; which waves hit them is
``waves.applies``; the days are ``waves.days_left`` (negative once a wave is enforced).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from shared.domain.records import StoredUser, UserRecord
from shared.domain.scope import Phase, in_scope, phases_of
from shared.domain.waves import Wave, applies, days_left


class ScopeFilter(StrEnum):
    """The ``scope=`` choices of the unregistered list."""

    ALL = "all"  # everyone in scope
    ADMINS = "admins"
    GUESTS = "guests"
    MEMBERS = "members"
    PHASE1 = "phase1"  # in scope of phase 1 (portals)
    PHASE2 = "phase2"  # in scope of phase 2 (CLI, PowerShell, IaC, ARM writes)


class UnknownChoice(ValueError):
    """A scope or wave that does not exist; the message lists the valid ones."""


def parse_scope(text: str | None) -> ScopeFilter:
    value = (text or ScopeFilter.ALL.value).strip().lower()
    try:
        return ScopeFilter(value)
    except ValueError:
        choices = ", ".join(s.value for s in ScopeFilter)
        raise UnknownChoice(f"unknown scope {text!r}: expected one of {choices}") from None


def find_wave(waves: Sequence[Wave], wave_id: str | None) -> Wave | None:
    """The configured wave with this id; None for no filter; UnknownChoice for an unknown id."""
    if wave_id is None or wave_id.strip() == "":
        return None
    for wave in waves:
        if wave.id == wave_id.strip():
            return wave
    choices = ", ".join(w.id for w in waves) or "none configured"
    raise UnknownChoice(f"unknown wave {wave_id!r}: expected one of {choices}")


@dataclass(frozen=True)
class WaveDays:
    wave: Wave
    days_left: int  # 0 on the day, negative once enforced


@dataclass(frozen=True)
class Exposure:
    """An unregistered person enforcement stops, and when."""

    user: UserRecord
    phases: tuple[Phase, ...]
    waves: tuple[WaveDays, ...]  # the waves that apply to them, earliest first

    @property
    def days_left(self) -> int | None:
        """Days until the first wave that stops them (negative: already enforced); None if no
        configured wave applies."""
        return min((w.days_left for w in self.waves), default=None)


def needs_mfa(stored: StoredUser) -> bool:
    """Enabled, not deleted, known to be unregistered, and in scope."""
    r = stored.record
    return not stored.deleted and r.enabled and r.mfa_registered is False and in_scope(r)


def matches(record: UserRecord, scope: ScopeFilter, wave: Wave | None) -> bool:
    """Whether an in-scope record passes the ``scope=`` and ``wave=`` filters."""
    phases = phases_of(record)
    if wave is not None and not applies(wave, is_guest=record.is_guest, phases=phases):
        return False
    if scope is ScopeFilter.ADMINS:
        return record.is_admin is True
    if scope is ScopeFilter.GUESTS:
        return record.is_guest
    if scope is ScopeFilter.MEMBERS:
        return not record.is_guest
    if scope is ScopeFilter.PHASE1:
        return Phase.PORTALS in phases
    if scope is ScopeFilter.PHASE2:
        return Phase.ARM in phases
    return True


def selector(scope: ScopeFilter, wave: Wave | None) -> _Selector:
    """The predicate a reader applies to stored users: needs MFA and passes the filters."""
    return _Selector(scope, wave)


@dataclass(frozen=True)
class _Selector:
    scope: ScopeFilter
    wave: Wave | None

    def __call__(self, stored: StoredUser) -> bool:
        return needs_mfa(stored) and matches(stored.record, self.scope, self.wave)


def exposure(record: UserRecord, waves: Sequence[Wave], today: date) -> Exposure:
    phases = phases_of(record)
    hits = tuple(WaveDays(w, days_left(w, today)) for w in waves if applies(w, is_guest=record.is_guest, phases=phases))
    return Exposure(record, phases, tuple(sorted(hits, key=lambda h: (h.wave.date, h.wave.id))))


def readiness_list(users: Iterable[StoredUser], waves: Sequence[Wave], today: date) -> list[Exposure]:
    """Exposures of the given (already selected) users, most urgent first: the fewest days left,
    then admins, then by name."""
    exposures = [exposure(u.record, waves, today) for u in users]

    def urgency(e: Exposure) -> tuple[int, int, str, str]:
        days = e.days_left
        return (
            days if days is not None else 10**6,
            0 if e.user.is_admin else 1,
            e.user.display_name.casefold(),
            e.user.id,
        )

    return sorted(exposures, key=urgency)
