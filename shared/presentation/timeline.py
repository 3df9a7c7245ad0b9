"""A user's timeline: recorded changes and, when given, the reminders sent to them. Pure.

Reminders are recorded by the nudge job (a separate feature). This module only fixes the shape in
which they are *shown*: whoever reads reminders maps them to ``ReminderLine`` and passes them to
the history answer and the report, which render them when present and say nothing when absent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from shared.adapters.history_reader import ChangeEntry


@dataclass(frozen=True)
class ReminderLine:
    """One reminder and its outcome, as the history shows it."""

    user_id: str
    at: str  # ISO 8601 time the reminder was sent or attempted
    wave_id: str  # the wave it was about ("" when none)
    stage: str  # which reminder of the cadence, e.g. "30 days before", "overdue"
    outcome: str  # e.g. "sent", "failed", "suppressed"
    detail: str = ""  # e.g. why it failed or was suppressed
    upn: str = ""
    display_name: str = ""


TimelineItem = ChangeEntry | ReminderLine


def _when(item: TimelineItem) -> datetime:
    text = item.seen_at if isinstance(item, ChangeEntry) else item.at
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def merge(events: Sequence[ChangeEntry], reminders: Sequence[ReminderLine] | None) -> list[TimelineItem]:
    """Changes and reminders in time order (a change before a reminder at the same instant)."""
    items: list[TimelineItem] = [*events, *(reminders or ())]
    return sorted(items, key=lambda i: (_when(i), 0 if isinstance(i, ChangeEntry) else 1))
