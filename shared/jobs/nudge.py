"""The nudge job: email the reminders that are due, each exactly once.

    lease -> run row -> load the ledger, repair its day index
      -> settle earlier claims whose outcome was never recorded (read each one's status from ACS)
      -> load the remembered users -> plan (pure) -> mark superseded rows
      -> for each due reminder, most urgent first, while the quota and the time budget allow:
           re-check the person's methods with Graph (the report lags): registered -> cancelled
           dry run -> record a dry_run row and log it; otherwise:
           claim (create-only / ETag) -> send with the claim's operation id -> record the outcome
      -> settle this run's accepted sends -> admin digest -> run row + one log line -> release

Exactly once: a claim is written before the send and the outcome after it. A crash between the
two leaves a ``claimed`` row; the next run asks ACS for that operation id: ACS has it -> record
its outcome (never resend); ACS never heard of it -> mark it ``unsent`` and send it now. Two runs
cannot both claim a reminder (conditional writes), and a lease keeps a second run (a timer retry)
from sending at all while the first holds it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from shared.adapters.email import (
    EmailAccessError,
    OperationState,
    OperationStatus,
    Rejected,
    SendUncertain,
    Throttled,
)
from shared.adapters.graph import GraphError, GraphPermissionError
from shared.adapters.leases import Lease, LeaseHeldError, renewal_due
from shared.adapters.reminder_ledger import ClaimConflict, ReminderLedger
from shared.domain.messages import Digest, DigestLine, Email, Sender, render_digest, render_reminder
from shared.domain.nudges import (
    OPERATION_NAMESPACE,
    UNSETTLED,
    DueReminder,
    LedgerEntry,
    NudgePolicy,
    NudgeRun,
    Quota,
    Status,
    has_mfa_method,
    method_types,
    plan_reminders,
    quota_wait,
    quota_warnings,
)
from shared.domain.records import StoredUser
from shared.domain.runs import RunStatus, new_run_id
from shared.domain.waves import Wave

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Sleep = Callable[[float], Awaitable[None]]


class UserSource(Protocol):
    async def load_users(self) -> dict[str, StoredUser]: ...


class MethodsSource(Protocol):
    """``GraphReader.authentication_methods``: the user's method objects, None when the user is gone."""

    async def authentication_methods(self, user_id: str) -> list[dict[str, Any]] | None: ...


class EmailPort(Protocol):
    async def send(
        self, *, to_address: str, to_name: str, email: Email, operation_id: str, reply_to: str | None = None
    ) -> OperationStatus: ...

    async def status(self, operation_id: str) -> OperationStatus: ...


@dataclass(frozen=True)
class NudgeOptions:
    policy: NudgePolicy = field(default_factory=NudgePolicy)
    quota: Quota = field(default_factory=Quota)
    sender: Sender = field(default_factory=Sender)
    digest_to: tuple[str, ...] = ()
    time_budget_seconds: float = 900.0
    lease_seconds: float = 300.0
    # The longest wait inside a run (a per-minute window, a short Retry-After); longer: carry over.
    max_wait_seconds: float = 65.0
    # A claim older than this that ACS does not know is not resent (it may have gone out long ago).
    settle_horizon: timedelta = timedelta(hours=24)


def utc_now() -> datetime:
    return datetime.now(UTC)


class NudgeFailed(RuntimeError):
    """Raised by the entry point after the failed run was recorded, so the host marks it failed."""


class _LeaseLost(Exception):
    pass


class _Stop(Exception):
    """Stop sending for this run (quota, time, throttling); what is left is carried over."""


async def run_nudge(
    users: UserSource,
    ledger: ReminderLedger,
    graph: MethodsSource,
    email: EmailPort | None,
    waves: Sequence[Wave],
    options: NudgeOptions = NudgeOptions(),
    *,
    clock: Clock = utc_now,
    sleep: Sleep = asyncio.sleep,
) -> NudgeRun:
    """One nudge run. Always returns the run as recorded; never raises for a failed run."""
    started = clock()
    run = NudgeRun(run_id=new_run_id(started), started=started, dry_run=options.policy.dry_run)
    try:
        lease = await ledger.acquire_lease(run.run_id, started, options.lease_seconds)
    except LeaseHeldError as exc:
        run.status, run.error, run.finished = RunStatus.SKIPPED, str(exc), clock()
        await ledger.save_run(run)
        _log_run(run)
        return run

    job = _Job(run, users, ledger, graph, email, waves, options, clock, sleep, lease)
    try:
        await ledger.save_run(run)
        await job.run()
        run.status = RunStatus.COMPLETED
    except EmailAccessError as exc:
        run.status, run.error = RunStatus.FAILED, f"ACS cannot be used: {exc}"
    except GraphPermissionError as exc:
        run.status, run.error = RunStatus.FAILED, f"the methods re-check is not allowed: {exc}"
    except _LeaseLost as exc:
        run.status, run.error = RunStatus.FAILED, f"lost the nudge lease, stopped sending: {exc}"
    except Exception as exc:
        log.exception("nudge run %s failed", run.run_id)
        run.status, run.error = RunStatus.FAILED, f"{type(exc).__name__}: {exc}"
    run.finished = clock()
    try:
        await ledger.save_run(run)
    finally:
        await ledger.release_lease(job.lease)
    _log_run(run)
    return run


class _Job:
    def __init__(
        self,
        run: NudgeRun,
        users: UserSource,
        ledger: ReminderLedger,
        graph: MethodsSource,
        email: EmailPort | None,
        waves: Sequence[Wave],
        options: NudgeOptions,
        clock: Clock,
        sleep: Sleep,
        lease: Lease,
    ) -> None:
        self.run_row, self.users, self.ledger, self.graph, self.email = run, users, ledger, graph, email
        self.waves, self.options, self.clock, self.sleep, self.lease = waves, options, clock, sleep, lease
        self.deadline = run.started + timedelta(seconds=options.time_budget_seconds)
        self.today: date = run.started.astimezone(UTC).date()
        self.posted: list[datetime] = []  # when emails went to ACS in the last hour (quota windows)
        self.accepted: list[LedgerEntry] = []  # sent in this run, delivery status not final yet
        self.sent_lines: list[DigestLine] = []
        self.failed_lines: list[DigestLine] = []
        self.cancelled_lines: list[DigestLine] = []
        # Reminders leave room in the hourly quota for the digest that follows them.
        reserve = len(options.digest_to) if options.digest_to and not options.policy.dry_run else 0
        quota = options.quota
        self.send_quota = replace(quota, per_hour=max(1, quota.per_hour - reserve)) if reserve else quota

    # --- the run -------------------------------------------------------------------------------

    async def run(self) -> None:
        run, options = self.run_row, self.options
        ledger, stored = await asyncio.gather(self.ledger.load(), self.users.load_users())
        repaired = await self.ledger.repair_index(ledger, (self.today - timedelta(days=1), self.today))
        if repaired:
            log.warning("nudge run %s repaired %d day-index rows left behind by a crash", run.run_id, repaired)
        await self._settle_earlier(ledger)

        plan = plan_reminders(stored.values(), self.waves, self.today, ledger, options.policy)
        del stored
        run.due, run.eligible, run.not_emailed = len(plan.due), plan.eligible, len(plan.not_emailed)
        for entry, why in plan.supersede:
            if await self._record(entry, Status.SUPERSEDED, why) is not None:
                run.superseded += 1

        now = self.clock()
        self.posted = list(await self.ledger.posted_since(now - timedelta(hours=1), now))
        for index, due in enumerate(plan.due):
            try:
                await self._one(due)
            except _Stop as stop:
                run.carried_over += len(plan.due) - index
                log.info("nudge run %s stops sending: %s; %d carried over", run.run_id, stop, run.carried_over)
                break
        await self._settle_accepted()

        run.warnings = quota_warnings(self.waves, self.today, plan.unreminded, run.carried_over, options.quota)
        for warning in run.warnings:
            log.warning("nudge quota: %s", warning)
        await self._digest(plan.not_emailed)

    # --- one reminder --------------------------------------------------------------------------

    async def _one(self, due: DueReminder) -> None:
        run, options = self.run_row, self.options
        if self.clock() >= self.deadline:
            raise _Stop("the time budget is used up")
        if not options.policy.dry_run:
            await self._wait_for_quota()
        await self._keep_lease()

        user = due.user
        try:
            found = await self.graph.authentication_methods(user.id)
        except GraphPermissionError:
            raise
        except GraphError as exc:
            run.deferred += 1
            log.warning("nudge: methods of %s could not be checked (%s); tried again next run", user.id, exc)
            return
        if found is None:
            await self._cancel(due, "the account no longer exists")
            return
        methods = method_types(found)
        if has_mfa_method(methods):
            await self._cancel(due, "registered by the time of sending (methods: " + ", ".join(sorted(methods)) + ")")
            return

        content = render_reminder(due, self.today, options.sender)
        now = self.clock()
        base = LedgerEntry(
            key=due.key,
            status=Status.CLAIMED,
            recorded=now,
            kind=due.kind,
            attempt=(due.previous.attempt + 1) if due.previous else 1,
            recipient=user.email or "",
            subject=content.subject,
            run_id=run.run_id,
        )
        if options.policy.dry_run:
            try:
                await self.ledger.write(replace(base, status=Status.DRY_RUN), expected=due.previous)
            except ClaimConflict:
                run.conflicts += 1
                return
            run.would_send += 1
            self.sent_lines.append(DigestLine(user.display_name, user.email or "", _what(due)))
            log.info("nudge dry run: would email %s <%s> %s: %s", user.id, user.upn, due.key.id, content.subject)
            return

        await self._send(due, base, content)

    async def _send(self, due: DueReminder, base: LedgerEntry, content: Email) -> None:
        run, email = self.run_row, self.email
        assert email is not None  # the entry point gives a sender whenever dry run is off
        expected = due.previous
        while True:
            now = self.clock()
            try:
                claim = await self.ledger.write(replace(base, recorded=now, posted=now), expected=expected)
            except ClaimConflict:
                run.conflicts += 1
                return
            try:
                status = await email.send(
                    to_address=base.recipient,
                    to_name=due.user.display_name,
                    email=content,
                    operation_id=due.key.operation_id,
                )
            except Throttled as exc:
                run.throttled += 1
                unsent = await self._record(claim, Status.UNSENT, f"ACS throttled the send (429): {exc}")
                wait = exc.retry_after if exc.retry_after is not None else 60.0
                if unsent is None or not self._can_wait(wait):
                    raise _Stop(f"ACS answers 429 (Retry-After {wait:g} s)") from None
                await self.sleep(wait)
                expected, base = unsent, replace(base, attempt=base.attempt + 1)
                continue
            except Rejected as exc:
                await self._outcome(claim, OperationStatus(OperationState.FAILED, str(exc)), due)
                return
            except SendUncertain as exc:
                log.warning("nudge: send of %s uncertain (%s); reading its status", due.key.id, exc)
                try:
                    status = await email.status(due.key.operation_id)
                except (SendUncertain, Throttled) as again:
                    log.warning("nudge: %s stays claimed; the next run settles it (%s)", due.key.id, again)
                    self.posted.append(now)
                    return
                if status.state is OperationState.NOT_FOUND:
                    await self._record(claim, Status.UNSENT, f"ACS did not receive it ({exc}); sent next run")
                    run.carried_over += 1
                    return
            self.posted.append(now)
            run.sent += 1
            if due.previous is not None and due.previous.status is Status.UNSENT:
                run.resent += 1
            await self._outcome(claim, status, due)
            return

    async def _outcome(self, claim: LedgerEntry, status: OperationStatus, due: DueReminder | None) -> None:
        """Record what ACS said about a send: Running -> accepted (settled at the end or next run)."""
        run = self.run_row
        name = due.user.display_name if due else claim.recipient
        if status.state is OperationState.SUCCEEDED:
            if await self._record(claim, Status.SENT, "") is not None:
                run.delivered += 1
                self.sent_lines.append(DigestLine(name, claim.recipient, _what_entry(claim)))
        elif status.state is OperationState.FAILED:
            if await self._record(claim, Status.FAILED, status.error or "ACS reports the send failed") is not None:
                run.failed += 1
                self.failed_lines.append(DigestLine(name, claim.recipient, status.error or "failed"))
        else:
            accepted = await self._record(claim, Status.ACCEPTED, "")
            if accepted is not None:
                self.accepted.append(accepted)
                self.sent_lines.append(DigestLine(name, claim.recipient, _what_entry(claim)))

    async def _cancel(self, due: DueReminder, why: str) -> None:
        entry = LedgerEntry(
            key=due.key,
            status=Status.CANCELLED,
            recorded=self.clock(),
            kind=due.kind,
            attempt=due.previous.attempt if due.previous else 0,
            detail=why,
            recipient=due.user.email or "",
            run_id=self.run_row.run_id,
        )
        try:
            await self.ledger.write(entry, expected=due.previous)
        except ClaimConflict:
            self.run_row.conflicts += 1
            return
        self.run_row.cancelled += 1
        self.cancelled_lines.append(DigestLine(due.user.display_name, due.user.email or "", why))
        log.info("nudge: %s cancelled: %s", due.key.id, why)

    async def _record(self, entry: LedgerEntry, status: Status, detail: str) -> LedgerEntry | None:
        """Move a row this run holds to ``status`` (ETag-conditional); None if another run moved it."""
        updated = replace(entry, status=status, detail=detail, recorded=self.clock(), run_id=self.run_row.run_id)
        try:
            return await self.ledger.write(updated, expected=entry)
        except ClaimConflict:
            self.run_row.conflicts += 1
            log.warning("nudge: reminder %s changed under this run; left as the other run wrote it", entry.key.id)
            return None

    # --- settling ------------------------------------------------------------------------------

    async def _settle_earlier(self, ledger: dict[str, list[LedgerEntry]]) -> None:
        """Read back the outcome of claims a crashed or interrupted run left unsettled."""
        unsettled = [e for entries in ledger.values() for e in entries if e.status in UNSETTLED]
        if not unsettled:
            return
        if self.email is None:
            log.warning("nudge: %d earlier sends are unsettled but no ACS endpoint is set", len(unsettled))
            return
        now = self.clock()
        for entry in unsettled:
            try:
                status = await self.email.status(entry.key.operation_id)
            except (SendUncertain, Throttled) as exc:
                log.warning("nudge: could not read the status of %s (%s); next run", entry.key.id, exc)
                continue
            settled = await self._settle(entry, status, now)
            if settled is not None and settled is not entry:
                self.run_row.settled += 1
                ledger[entry.key.user_id] = [settled if e.key == entry.key else e for e in ledger[entry.key.user_id]]

    async def _settle(self, entry: LedgerEntry, status: OperationStatus, now: datetime) -> LedgerEntry | None:
        run = self.run_row
        if status.state is OperationState.NOT_FOUND:
            if entry.status is Status.ACCEPTED:
                return await self._record(entry, Status.UNCONFIRMED, "ACS accepted it but no longer reports its status")
            if now - entry.recorded > self.options.settle_horizon:
                return await self._record(
                    entry, Status.UNCONFIRMED, "an old claim ACS does not know: not resent, it may have gone out"
                )
            return await self._record(entry, Status.UNSENT, "the run stopped before ACS received it; sent again")
        if status.state is OperationState.RUNNING:
            return entry if entry.status is Status.ACCEPTED else await self._record(entry, Status.ACCEPTED, "")
        if status.state is OperationState.SUCCEEDED:
            done = await self._record(entry, Status.SENT, "")
            run.delivered += done is not None
            return done
        done = await self._record(entry, Status.FAILED, status.error or "ACS reports the send failed")
        if done is not None:
            run.failed += 1
            self.failed_lines.append(DigestLine(entry.recipient, entry.recipient, status.error or "failed"))
        return done

    async def _settle_accepted(self) -> None:
        """This run's sends that ACS had not finished when it answered: ask once more."""
        if self.email is None:
            return
        now = self.clock()
        for entry in self.accepted:
            try:
                status = await self.email.status(entry.key.operation_id)
            except (SendUncertain, Throttled):
                continue
            if status.state in (OperationState.SUCCEEDED, OperationState.FAILED):
                await self._settle(entry, status, now)

    # --- quota, time, lease ----------------------------------------------------------------------

    def _can_wait(self, seconds: float) -> bool:
        return seconds <= self.options.max_wait_seconds and self.clock() + timedelta(seconds=seconds) < self.deadline

    async def _wait_for_quota(self) -> None:
        wait = quota_wait(self.posted, self.clock(), self.send_quota)
        if wait <= 0:
            return
        if not self._can_wait(wait):
            raise _Stop(f"the sending quota is used up for {wait:.0f} s")
        await self.sleep(wait)

    async def _keep_lease(self) -> None:
        now = self.clock()
        if not renewal_due(self.lease, now, self.options.lease_seconds):
            return
        try:
            self.lease = await self.ledger.renew_lease(self.lease, now, self.options.lease_seconds)
        except LeaseHeldError as exc:
            raise _LeaseLost(str(exc)) from exc

    # --- the admin digest ----------------------------------------------------------------------

    async def _digest(self, not_emailed: Sequence[Any]) -> None:
        run, options = self.run_row, self.options
        if not options.digest_to:
            return
        if not (run.sent or run.would_send or run.failed or run.cancelled or run.warnings or run.delivered):
            return
        digest = Digest(
            run_id=run.run_id,
            day=self.today,
            dry_run=options.policy.dry_run,
            sent=self.sent_lines,
            failed=self.failed_lines,
            cancelled=self.cancelled_lines,
            not_emailed=not_emailed,
            carried_over=run.carried_over,
            eligible=run.eligible,
            warnings=run.warnings,
            counts={
                k: v for k, v in run.counts().items() if v and k in ("superseded", "settled", "resent", "deferred")
            },
        )
        content = render_digest(digest, options.sender)
        if options.policy.dry_run or self.email is None:
            log.info("nudge digest (dry run, not sent): %s", content.subject)
            return
        for address in options.digest_to:
            wait = quota_wait(self.posted, self.clock(), options.quota)
            if wait > 0 and not self._can_wait(wait):
                log.warning("nudge digest not sent to %s: no room in the sending quota", address)
                continue
            if wait > 0:
                await self.sleep(wait)
            operation_id = str(uuid.uuid5(OPERATION_NAMESPACE, f"digest|{run.run_id}|{address}"))
            try:
                await self.email.send(to_address=address, to_name="", email=content, operation_id=operation_id)
            except (Throttled, Rejected, SendUncertain) as exc:
                log.warning("nudge digest to %s not sent: %s", address, exc)
                continue
            self.posted.append(self.clock())
            run.digest_sent = True


def _what(due: DueReminder) -> str:
    return f"{due.wave.label} ({due.key.wave_date.isoformat()}), {due.key.step.id}"


def _what_entry(entry: LedgerEntry) -> str:
    return f"{entry.key.wave_id} ({entry.key.wave_date.isoformat()}), {entry.key.step.id}"


def run_event(run: NudgeRun) -> dict[str, Any]:
    """The one structured event per nudge run (the alert rules read ``status`` and ``failed``)."""
    event: dict[str, Any] = {
        "event": "mfa_nudge_run",
        "runId": run.run_id,
        "status": run.status.value,
        "dryRun": run.dry_run,
        "seconds": round((run.finished - run.started).total_seconds(), 3) if run.finished else None,
        "error": run.error,
    }
    event.update(run.counts())
    event["digestSent"] = run.digest_sent
    event["quotaWarnings"] = len(run.warnings)
    return event


def _log_run(run: NudgeRun) -> None:
    level = logging.INFO if run.status in (RunStatus.COMPLETED, RunStatus.SKIPPED) else logging.ERROR
    log.log(level, "mfa_nudge_run %s", json.dumps(run_event(run), separators=(",", ":")))
