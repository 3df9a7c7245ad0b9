"""The reminder cadence: the steps of a wave's reminders and when each one falls due. Pure.

Ahead of a wave's date a person gets reminders a configured number of days before it (default 30,
14, 7, 3 and 1). From the date on, enforcement is live: the first post-deadline notice is due at
once, and further notices follow every ``blocked_every_days`` until ``blocked_max`` notices were
recorded. Post-deadline notices are anchored on the previous notice, not on the wave's date, so a
person who falls into scope long after the date (a new admin, a new guest) gets a prompt first
notice and then the weekly ones, never a burst of catch-up mail.

A step is named by what it is (``before-14``, ``after-2``), so it stays meaningful when a date
moves; the ledger key adds the wave's date (see ``shared.domain.nudges.ReminderKey``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum

DEFAULT_DAYS_BEFORE: tuple[int, ...] = (30, 14, 7, 3, 1)
MAX_DAYS_BEFORE = 366


class Stage(StrEnum):
    BEFORE = "before"  # ahead of the wave's date
    AFTER = "after"  # the date has passed: enforcement is live


@dataclass(frozen=True, slots=True)
class Step:
    """``before-N``: N days before the date. ``after-N``: the N-th notice from the date on."""

    stage: Stage
    number: int

    @property
    def id(self) -> str:
        return f"{self.stage.value}-{self.number}"

    def __str__(self) -> str:
        return self.id


_STEP = re.compile(r"(before|after)-([1-9][0-9]{0,3})")


def parse_step(text: str) -> Step:
    match = _STEP.fullmatch(text)
    if not match:
        raise ValueError(f"not a reminder step: {text!r}")
    return Step(Stage(match.group(1)), int(match.group(2)))


@dataclass(frozen=True, slots=True)
class Cadence:
    days_before: tuple[int, ...] = DEFAULT_DAYS_BEFORE  # descending, unique, each 1..366
    blocked_every_days: int = 7  # between post-deadline notices
    blocked_max: int = 4  # post-deadline notices at most (0: none)

    def __post_init__(self) -> None:
        if tuple(sorted(set(self.days_before), reverse=True)) != self.days_before:
            raise ValueError("days_before must be unique and in descending order")
        if any(not 1 <= d <= MAX_DAYS_BEFORE for d in self.days_before):
            raise ValueError(f"days before a date must be between 1 and {MAX_DAYS_BEFORE}")
        if self.blocked_every_days < 1:
            raise ValueError("blocked_every_days must be at least 1")
        if self.blocked_max < 0:
            raise ValueError("blocked_max must not be negative")

    def latest_due_before(self, wave_date: date, today: date) -> Step | None:
        """The pre-deadline step whose day has come most recently (None: none yet, or past the date).

        Earlier steps that were never sent are superseded by it: someone who becomes eligible ten
        days before the date gets the "14 days" step at once (saying 10 days left), not three mails.
        """
        if today >= wave_date:
            return None
        left = (wave_date - today).days
        due = [d for d in self.days_before if d >= left]
        return Step(Stage.BEFORE, min(due)) if due else None

    def next_due_before(self, wave_date: date, today: date) -> date | None:
        """The day the next pre-deadline step falls due after ``today`` (None: no more before the date)."""
        left = (wave_date - today).days
        upcoming = [d for d in self.days_before if d < left]
        return wave_date - timedelta(days=max(upcoming)) if upcoming else None

    def after_due(self, number: int, previous_notice: date | None, wave_date: date) -> date | None:
        """When post-deadline notice ``number`` is due, given the day the previous one was recorded.

        Notice 1 is due on the wave's date; notice N > 1 ``blocked_every_days`` after notice N-1.
        None when the cap is reached or the previous notice is not recorded yet.
        """
        if number > self.blocked_max:
            return None
        if number == 1:
            return wave_date
        if previous_notice is None:
            return None
        return previous_notice + timedelta(days=self.blocked_every_days)


def parse_days_before(text: str) -> tuple[int, ...]:
    """``"30,14,7,3,1"`` -> (30, 14, 7, 3, 1); any order, duplicates dropped; ValueError if bad."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise ValueError("give at least one number of days, e.g. 30,14,7,3,1")
    days: set[int] = set()
    for part in parts:
        if not part.isdigit() or not 1 <= int(part) <= MAX_DAYS_BEFORE:
            raise ValueError(f"each number of days must be a whole number from 1 to {MAX_DAYS_BEFORE}, got {part!r}")
        days.add(int(part))
    return tuple(sorted(days, reverse=True))
