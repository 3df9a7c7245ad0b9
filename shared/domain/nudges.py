"""Which reminder emails are due, and the ledger that makes each one exactly-once. Pure.

Every reminder has a stable key: (user, wave, wave date, step). The wave's date is part of the key
because a date is configuration that moves (postponements): a moved date starts a fresh cadence
for the new date instead of pretending the old reminders ("14 days left" about the old date) were
about it, and reminders already sent for the old date are never sent again.

The ledger remembers each key's outcome. The planner reads it, with the remembered users, the
waves and today, and answers which reminders are due now, in the order a limited sending quota
should send them. It never decides twice for one person per run: at most one reminder per person
per day, the most urgent of their waves.

Rules (README "Nudge emails" says the same for people):
- who: enabled, known to be unregistered (the report listed them without MFA; unknown is not
  unregistered), in scope (``shared.domain.scope``) of a phase a wave covers, not excluded, with a
  deliverable address; a guest whose home tenant's MFA this tenant trusts follows ``guest_trust``;
- before a date: the latest cadence step whose day has come, unless it or a closer one was done;
- from the date on: the first notice at once, then one every ``blocked_every_days``, up to
  ``blocked_max``, each anchored on the previous notice;
- a step is done when it was sent, claimed, failed for good, cancelled or superseded; an
  ``unsent`` one (a claim ACS never received) is sent again; in dry-run mode a ``dry_run`` row
  counts as done, so a dry run logs each reminder once, and once dry run is off it is sent for real.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum

from shared.domain.cadence import Cadence, Stage, Step, parse_step
from shared.domain.records import StoredUser, UserRecord
from shared.domain.runs import RunStatus
from shared.domain.scope import in_scope, phases_of
from shared.domain.waves import Wave, applies, days_left

# Operation ids sent to ACS are uuid5(this, key): deterministic per reminder, so the outcome of a
# send whose answer was lost (a crash) can be read back from ACS by the same id.
OPERATION_NAMESPACE = uuid.UUID("6f7d1b0e-3c55-4a55-9d43-5b1f7e0c2a91")


class Status(StrEnum):
    CLAIMED = "claimed"  # written just before the send; outcome not recorded yet
    ACCEPTED = "accepted"  # ACS accepted the send; its delivery status was not final yet
    SENT = "sent"  # ACS reports the send Succeeded
    FAILED = "failed"  # ACS refused it or reports it Failed (a bad address...): not retried
    UNSENT = "unsent"  # claimed, but ACS never received it (crash before the send, throttled)
    CANCELLED = "cancelled"  # not sent on purpose (registered at the last check, user gone...)
    SUPERSEDED = "superseded"  # never sent: a closer step or a moved date replaced it
    UNCONFIRMED = "unconfirmed"  # an old claim ACS no longer knows: maybe sent, never resent
    DRY_RUN = "dry_run"  # dry-run mode: what would have been sent


UNSETTLED = frozenset({Status.CLAIMED, Status.ACCEPTED})
# Reached ACS (or may have): counts for "emailed today" and against the hourly quota.
ATTEMPTED = frozenset({Status.CLAIMED, Status.ACCEPTED, Status.SENT, Status.FAILED, Status.UNCONFIRMED})
_DONE_ALWAYS = frozenset(
    {
        Status.CLAIMED,
        Status.ACCEPTED,
        Status.SENT,
        Status.FAILED,
        Status.CANCELLED,
        Status.SUPERSEDED,
        Status.UNCONFIRMED,
    }
)
_REACHED_PERSON = frozenset({Status.ACCEPTED, Status.SENT, Status.CLAIMED, Status.UNCONFIRMED})


def is_done(status: Status, *, dry_run: bool) -> bool:
    """Whether a step with this status must not be planned again."""
    return status in _DONE_ALWAYS or (dry_run and status is Status.DRY_RUN)


def is_open(status: Status, *, dry_run: bool) -> bool:
    """A row that a new claim replaces (ETag-conditional) rather than creates."""
    return status is Status.UNSENT or (not dry_run and status is Status.DRY_RUN)


class MessageKind(StrEnum):
    UPCOMING = "upcoming"  # before the date: "N days left"
    NOW_REQUIRED = "now_required"  # first notice from the date on: "MFA is already required"
    STILL_BLOCKED = "still_blocked"  # the weekly notice after that


@dataclass(frozen=True, slots=True)
class ReminderKey:
    user_id: str
    wave_id: str
    wave_date: date
    step: Step

    @property
    def id(self) -> str:
        """``<user>|<wave>|<YYYY-MM-DD>|<step>``: the ledger's row key after ``r|``."""
        return f"{self.user_id}|{self.wave_id}|{self.wave_date.isoformat()}|{self.step.id}"

    @property
    def operation_id(self) -> str:
        """The ACS operation id of this reminder's send (a GUID, as ACS expects)."""
        return str(uuid.uuid5(OPERATION_NAMESPACE, self.id))


def parse_key(text: str) -> ReminderKey:
    parts = text.split("|")
    if len(parts) != 4:
        raise ValueError(f"not a reminder key: {text!r}")
    user_id, wave_id, wave_date, step = parts
    return ReminderKey(user_id, wave_id, date.fromisoformat(wave_date), parse_step(step))


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """What the ledger remembers of one reminder."""

    key: ReminderKey
    status: Status
    recorded: datetime  # when the status was last written
    kind: MessageKind = MessageKind.UPCOMING
    attempt: int = 1  # claims made for this key (a claim ACS never received is claimed again)
    posted: datetime | None = None  # when it was last handed to ACS
    detail: str = ""  # why it failed / was cancelled / superseded
    recipient: str = ""  # the address it went (or would go) to
    subject: str = ""
    run_id: str = ""
    etag: str | None = None  # the row's ETag: every change of a row is conditional on it

    @property
    def anchor(self) -> date:
        """The day that counts for "the previous notice": when it was sent, else recorded."""
        return (self.posted or self.recorded).date()


class GuestTrust(StrEnum):
    MESSAGE = "message"  # email them, saying their home tenant's MFA is enough here
    SKIP = "skip"  # do not email them: registering at home is all they need and they may have


class Unreachable(StrEnum):
    NO_ADDRESS = "no_address"
    EXCLUDED = "excluded"
    HOME_MFA_TRUSTED = "home_mfa_trusted"


@dataclass(frozen=True, slots=True)
class NotEmailed:
    """An unregistered in-scope person the app cannot (or must not) email, and why."""

    user_id: str
    upn: str
    display_name: str
    reason: Unreachable
    detail: str = ""


@dataclass(frozen=True)
class NudgePolicy:
    cadence: Cadence = field(default_factory=Cadence)
    guest_trust: GuestTrust = GuestTrust.MESSAGE
    dry_run: bool = True


@dataclass(frozen=True, slots=True)
class DueReminder:
    key: ReminderKey
    user: UserRecord
    wave: Wave
    kind: MessageKind
    days_left: int  # negative: enforced that many days ago
    warned: bool  # a reminder before the date reached them (changes the first notice's wording)
    previous: LedgerEntry | None  # an open row (unsent / dry run) the claim replaces, ETag-conditional

    @property
    def priority(self) -> tuple[int, int, str]:
        """Sending order under a quota: who is already blocked and not told first, then the
        closest dates, then the weekly repeats."""
        rank = {MessageKind.NOW_REQUIRED: 0, MessageKind.UPCOMING: 1, MessageKind.STILL_BLOCKED: 2}[self.kind]
        return rank, self.days_left if self.kind is MessageKind.UPCOMING else 0, self.key.id


@dataclass(frozen=True)
class Plan:
    due: tuple[DueReminder, ...]  # in sending order
    supersede: tuple[tuple[LedgerEntry, str], ...]  # open rows that will never be sent, and why
    not_emailed: tuple[NotEmailed, ...]
    eligible: int  # people who can be emailed (a reminder due now or later)
    emailed_today: int  # eligible people skipped because they got a reminder today already
    awaiting_report: int  # enabled, in-scope people the registration report has not listed yet
    # Upcoming wave id -> eligible people who have had no reminder for its date yet (quota check).
    unreminded: Mapping[str, int]


def plan_reminders(
    users: Iterable[StoredUser],
    waves: Sequence[Wave],
    today: date,
    ledger: Mapping[str, Sequence[LedgerEntry]],
    policy: NudgePolicy = NudgePolicy(),
) -> Plan:
    """Which reminders are due ``today``. ``ledger``: user id -> that user's ledger entries."""
    due: list[DueReminder] = []
    supersede: list[tuple[LedgerEntry, str]] = []
    not_emailed: list[NotEmailed] = []
    unreminded: Counter[str] = Counter()
    eligible = emailed_today = awaiting_report = 0
    dry_run = policy.dry_run
    current = {(w.id, w.date) for w in waves}

    for stored in users:
        record = stored.record
        entries = ledger.get(record.id, ())
        why_not = None if not stored.deleted else "the account was deleted"
        applicable: list[Wave] = []
        if why_not is None:
            why_not, applicable = _candidate(record, waves)
            if why_not == "registration unknown":
                awaiting_report += 1
        if why_not is not None:
            supersede.extend((e, f"no longer due: {why_not}") for e in entries if e.status is Status.UNSENT)
            continue

        reason = _unreachable(record, policy)
        if reason is not None:
            not_emailed.append(reason)
            if reason.reason is not Unreachable.NO_ADDRESS:
                supersede.extend(
                    (e, f"not emailed: {reason.reason.value}") for e in entries if e.status is Status.UNSENT
                )
            continue
        eligible += 1

        by_wave: dict[tuple[str, date], list[LedgerEntry]] = {}
        for e in entries:
            if e.status is Status.UNSENT and (e.key.wave_id, e.key.wave_date) not in current:
                supersede.append((e, "the wave's date changed (or the wave was removed)"))
            by_wave.setdefault((e.key.wave_id, e.key.wave_date), []).append(e)

        candidates: list[DueReminder] = []
        for wave in applicable:
            wave_entries = by_wave.get((wave.id, wave.date), [])
            found, stale = _plan_wave(record, wave, wave_entries, today, policy)
            supersede.extend(stale)
            if found is not None:
                candidates.append(found)
            if today < wave.date and not any(
                e.key.step.stage is Stage.BEFORE and is_done(e.status, dry_run=dry_run) for e in wave_entries
            ):
                unreminded[wave.id] += 1
        if not candidates:
            continue
        if _emailed_on(entries, today, dry_run=dry_run):
            emailed_today += 1
            continue
        due.append(min(candidates, key=lambda c: c.priority))

    due.sort(key=lambda d: d.priority)
    return Plan(
        due=tuple(due),
        supersede=tuple(supersede),
        not_emailed=tuple(not_emailed),
        eligible=eligible,
        emailed_today=emailed_today,
        awaiting_report=awaiting_report,
        unreminded=dict(unreminded),
    )


def _candidate(record: UserRecord, waves: Sequence[Wave]) -> tuple[str | None, list[Wave]]:
    """(why the person gets no reminder, or None; the waves that apply to them)."""
    if not record.enabled:
        return "the account is disabled", []
    if record.mfa_registered is True:
        return "registered", []
    if not in_scope(record):
        return "out of scope", []
    if record.mfa_registered is None:
        return "registration unknown", []
    phases = phases_of(record)
    applicable = [w for w in waves if applies(w, is_guest=record.is_guest, phases=phases)]
    if not applicable:
        return "no enforcement wave applies", []
    return None, applicable


def _unreachable(record: UserRecord, policy: NudgePolicy) -> NotEmailed | None:
    scope = record.scope
    if scope.exclusion:
        return NotEmailed(record.id, record.upn, record.display_name, Unreachable.EXCLUDED, scope.exclusion)
    if record.is_guest and scope.home_mfa_trusted and policy.guest_trust is GuestTrust.SKIP:
        return NotEmailed(
            record.id,
            record.upn,
            record.display_name,
            Unreachable.HOME_MFA_TRUSTED,
            "their home tenant's MFA is trusted here (NUDGE_GUEST_TRUSTED=skip)",
        )
    if not record.email:
        return NotEmailed(record.id, record.upn, record.display_name, Unreachable.NO_ADDRESS)
    return None


def _plan_wave(
    record: UserRecord, wave: Wave, entries: Sequence[LedgerEntry], today: date, policy: NudgePolicy
) -> tuple[DueReminder | None, list[tuple[LedgerEntry, str]]]:
    cadence, dry_run = policy.cadence, policy.dry_run
    done = {e.key.step: e for e in entries if is_done(e.status, dry_run=dry_run)}
    stale: list[tuple[LedgerEntry, str]] = []
    step: Step | None
    if today < wave.date:
        step = cadence.latest_due_before(wave.date, today)
        if step is not None and any(s.stage is Stage.BEFORE and s.number <= step.number for s in done):
            step = None  # this step, or a closer one, was done already
        kind = MessageKind.UPCOMING
        for e in entries:
            if (
                e.status is Status.UNSENT
                and e.key.step.stage is Stage.BEFORE
                and step
                and e.key.step.number > step.number
            ):
                stale.append((e, f"superseded by {step.id}"))
    else:
        numbers = [s.number for s in done if s.stage is Stage.AFTER]
        number = max(numbers, default=0) + 1
        previous = done.get(Step(Stage.AFTER, number - 1))
        when = cadence.after_due(number, previous.anchor if previous else None, wave.date)
        step = Step(Stage.AFTER, number) if when is not None and when <= today else None
        kind = MessageKind.NOW_REQUIRED if number == 1 else MessageKind.STILL_BLOCKED
        stale.extend(
            (e, "the date passed before it was sent")
            for e in entries
            if e.status is Status.UNSENT and e.key.step.stage is Stage.BEFORE
        )
    if step is None:
        return None, stale
    reached = _REACHED_PERSON | ({Status.DRY_RUN} if dry_run else set())
    warned = any(e.key.step.stage is Stage.BEFORE and e.status in reached for e in entries)
    key = ReminderKey(record.id, wave.id, wave.date, step)
    previous_row = next((e for e in entries if e.key.step == step and is_open(e.status, dry_run=dry_run)), None)
    return DueReminder(key, record, wave, kind, days_left(wave, today), warned, previous_row), stale


def _emailed_on(entries: Sequence[LedgerEntry], today: date, *, dry_run: bool) -> bool:
    for e in entries:
        if e.status in ATTEMPTED and e.posted is not None and e.posted.date() == today:
            return True
        if dry_run and e.status is Status.DRY_RUN and e.recorded.date() == today:
            return True
    return False


# --- the re-check before sending -------------------------------------------------------------------

# Method types of GET /users/{id}/authentication/methods (without "#microsoft.graph." and
# "AuthenticationMethod") that are not a second factor. Anything else counts as MFA, including
# types this list does not know yet: Microsoft adds strong methods (passkeys...), and emailing a
# registered person is the worse mistake for a reminder that says "you have no method".
NOT_MFA_METHODS = frozenset({"password", "email", "temporaryAccessPass", "qrCodePin"})


def method_types(methods: Iterable[object]) -> list[str]:
    """``[{"@odata.type": "#microsoft.graph.phoneAuthenticationMethod", ...}]`` -> ``["phone"]``."""
    types: list[str] = []
    for method in methods:
        raw = method.get("@odata.type") if isinstance(method, dict) else None
        if isinstance(raw, str) and raw:
            types.append(raw.removeprefix("#microsoft.graph.").removesuffix("AuthenticationMethod"))
    return types


def has_mfa_method(types: Iterable[str]) -> bool:
    return any(t not in NOT_MFA_METHODS for t in types)


# --- the quota ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Quota:
    per_minute: int = 5
    per_hour: int = 10

    @property
    def per_day(self) -> int:
        """What hourly runs can send in a day at most."""
        return min(self.per_hour, self.per_minute * 60) * 24


def quota_wait(posted: Sequence[datetime], now: datetime, quota: Quota) -> float:
    """Seconds until one more email fits both the per-minute and the per-hour window (0: now).

    ``posted``: when earlier emails were handed to ACS, oldest first (this run's and earlier runs')."""
    hour_ago, minute_ago = now - timedelta(hours=1), now - timedelta(minutes=1)
    in_hour = [p for p in posted if p > hour_ago]
    in_minute = [p for p in in_hour if p > minute_ago]
    waits = [0.0]
    if len(in_hour) >= quota.per_hour:
        waits.append((in_hour[-quota.per_hour] + timedelta(hours=1) - now).total_seconds())
    if len(in_minute) >= quota.per_minute:
        waits.append((in_minute[-quota.per_minute] + timedelta(minutes=1) - now).total_seconds())
    return max(waits)


def quota_warnings(
    waves: Sequence[Wave], today: date, unreminded: Mapping[str, int], backlog: int, quota: Quota
) -> list[str]:
    """Warnings for the admin digest: the quota cannot reach everyone before a date.

    ``unreminded``: per upcoming wave, eligible people with no reminder for its date yet;
    ``backlog``: reminders due now that this run could not send (carried over).
    """
    warnings: list[str] = []
    for wave in waves:
        waiting = unreminded.get(wave.id, 0)
        left = days_left(wave, today)
        if left <= 0 or waiting == 0:
            continue
        capacity = quota.per_day * left
        if waiting > capacity:
            warnings.append(
                f"{waiting} people still need a first reminder before {wave.label} on "
                f"{wave.date.isoformat()} ({left} days), but the sending quota ({quota.per_minute}/minute, "
                f"{quota.per_hour}/hour) allows about {capacity} emails until then: raise the quota "
                "(a custom email domain) or some will be reminded late."
            )
    if backlog and not warnings and backlog > quota.per_day:
        warnings.append(
            f"{backlog} reminders are waiting for the quota: more than a day's worth at "
            f"{quota.per_hour}/hour. They are sent in order of urgency over the next runs."
        )
    return warnings


# --- a nudge run ---------------------------------------------------------------------------------


@dataclass
class NudgeRun:
    """One run of the nudge job, as its run row and its ``mfa_nudge_run`` log line record it."""

    run_id: str
    started: datetime
    dry_run: bool
    status: RunStatus = RunStatus.RUNNING
    finished: datetime | None = None
    error: str | None = None
    due: int = 0  # reminders the plan said are due now
    sent: int = 0  # handed to ACS (accepted) in this run
    would_send: int = 0  # dry run: recorded, not sent
    delivered: int = 0  # ACS reported Succeeded (this run's sends and earlier ones settled now)
    failed: int = 0  # refused by ACS or reported Failed
    cancelled: int = 0  # registered at the last check, or the user is gone
    superseded: int = 0
    settled: int = 0  # earlier claims whose outcome was read back from ACS
    resent: int = 0  # earlier claims ACS never received, sent now
    carried_over: int = 0  # due but left for the next run (quota, time budget, throttling)
    deferred: int = 0  # due but the methods check failed for now; tried again next run
    conflicts: int = 0  # claimed by another run first
    not_emailed: int = 0  # in scope and unregistered but unreachable (no address, excluded...)
    eligible: int = 0
    digest_sent: bool = False
    throttled: int = 0  # 429 answers from ACS
    warnings: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "due": self.due,
            "sent": self.sent,
            "wouldSend": self.would_send,
            "delivered": self.delivered,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "superseded": self.superseded,
            "settled": self.settled,
            "resent": self.resent,
            "carriedOver": self.carried_over,
            "deferred": self.deferred,
            "conflicts": self.conflicts,
            "notEmailed": self.not_emailed,
            "eligible": self.eligible,
            "throttled": self.throttled,
        }
