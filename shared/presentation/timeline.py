"""A user's timeline: recorded changes and, when given, the reminders sent to them. Pure.

Reminders are recorded by the nudge job in its ledger (``shared.adapters.reminder_ledger``). This
module fixes the shape in which they are *shown*: ``reminder_line`` maps a ledger entry to a
``ReminderLine``, which the history answer and the report render when present and leave out when
absent (no ledger was read).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from shared.adapters.history_reader import ChangeEntry
from shared.domain.cadence import Stage, Step
from shared.domain.nudges import LedgerEntry


@dataclass(frozen=True)
class ReminderLine:
    """One reminder and its outcome, as the history shows it."""

    user_id: str
    at: str  # ISO 8601 time the reminder was handed to ACS, else when its outcome was recorded
    wave_id: str  # the wave it was about ("" when none)
    stage: str  # which reminder of the cadence, e.g. "14 days before", "now required (first notice)"
    outcome: str  # the ledger's status: "sent", "failed", "cancelled", "dry_run"...
    detail: str = ""  # e.g. why it failed or was cancelled
    upn: str = ""
    display_name: str = ""
    wave_date: str = ""  # the wave's date the reminder was about (YYYY-MM-DD)
    step: str = ""  # the cadence step's id: "before-14", "after-1"...
    recipient: str = ""  # the address it went (or would go) to


def stage_text(step: Step) -> str:
    """A cadence step as an admin reads it."""
    if step.stage is Stage.BEFORE:
        return f"{step.number} day{'s' if step.number != 1 else ''} before"
    if step.number == 1:
        return "now required (first notice)"
    return f"still blocked (notice {step.number})"


def reminder_line(entry: LedgerEntry, *, upn: str = "", display_name: str = "") -> ReminderLine:
    """A ledger entry as the timeline and the report show it (names come from the user's record:
    the ledger keeps ids and addresses only)."""
    key = entry.key
    return ReminderLine(
        user_id=key.user_id,
        at=(entry.posted or entry.recorded).isoformat(),
        wave_id=key.wave_id,
        stage=stage_text(key.step),
        outcome=entry.status.value,
        detail=entry.detail,
        upn=upn,
        display_name=display_name,
        wave_date=key.wave_date.isoformat(),
        step=key.step.id,
        recipient=entry.recipient,
    )


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
