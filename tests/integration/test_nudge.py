"""Nudge emails end to end: Azurite (the ledger and the remembered users), the real Graph adapter
against the Graph simulator (the methods re-check), the real ACS SDK against the ACS simulator over
https. Time is a FakeClock: waiting for a quota window advances it, nothing sleeps.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import timedelta

import pytest
from azure.data.tables.aio import TableServiceClient

from shared.adapters.reminder_ledger import ReminderLedger
from shared.domain.cadence import Cadence
from shared.domain.nudges import NudgePolicy, Quota, Status
from shared.domain.runs import RunStatus
from sim.acs_server import DropAfterAccept, ServerError, Throttle
from tests.integration.nudge_fixtures import (
    WAVE,
    WAVE_DATE,
    MakeWorld,
    Person,
    register_in_graph,
    remember,
)

ADA = Person(1, "Ada Lovelace")
GRACE = Person(2, "Grace Hopper", guest=True, admin=False, email="grace@fabrikam.example")
NOBODY = Person(3, "No Address", email="")
REGISTERED = Person(4, "Already Registered", registered=True)
MEMBER = Person(5, "Plain Member", admin=False)


async def test_the_cadence_over_a_simulated_month(make_world: MakeWorld) -> None:
    w = await make_world([ADA, GRACE, NOBODY, REGISTERED, MEMBER], days_before=31)
    w.policy = NudgePolicy(cadence=Cadence(blocked_every_days=7, blocked_max=2), dry_run=False)
    start = w.clock.now.date()
    sent_on: dict[str, list[tuple[int, str]]] = {ADA.id: [], GRACE.id: []}
    for day in range(0, 40):  # a run every day, from 31 days before the date to 8 days after
        w.clock.at(start + timedelta(days=day), hour=3)
        before = len(w.acs.messages)
        run = await w.nudge()
        assert run.status is RunStatus.COMPLETED, run.error
        for message in w.acs.messages[before:]:
            who = ADA.id if message.to[0][0] == ADA.address else GRACE.id
            days_left = (WAVE_DATE - w.clock.now.date()).days
            sent_on[who].append((days_left, message.subject.split(":")[0]))
        if day == 0:
            assert run.not_emailed == 1  # NOBODY: in scope, no address

    expected = [30, 14, 7, 3, 1, 0, -7]  # then the cap (2 notices after the date)
    assert [d for d, _ in sent_on[ADA.id]] == expected
    assert [d for d, _ in sent_on[GRACE.id]] == expected
    assert [s for _, s in sent_on[ADA.id]][:5] == ["Action needed"] * 5
    assert sent_on[ADA.id][5][1] == "MFA is now required for Azure CLI, Azure PowerShell and IaC tools"
    assert all(s.startswith("Reminder") for _, s in sent_on[ADA.id][6:])
    assert max(w.deliveries().values()) == 1 and w.acs.duplicate_posts == 0
    assert w.subjects_to(REGISTERED) == [] and w.subjects_to(MEMBER) == []
    rows = await w.ledger_rows()
    assert {r.status for r in rows.values()} == {Status.SENT}
    assert len(rows) == 14
    # the timeline's view: one range query in the user's partition
    assert [e.key.step.id for e in await w.ledger.reminders_of(ADA.id)] == sorted(
        e.key.step.id for e in rows.values() if e.key.user_id == ADA.id
    )


async def test_registration_mid_cadence_stops_the_mail_at_once(make_world: MakeWorld) -> None:
    w = await make_world([ADA, GRACE], days_before=30)
    first = await w.nudge()
    assert first.sent == 2
    # Ada registers during the day; the report (and so our state) will not say so for a day or two.
    register_in_graph(w.tenant, ADA)
    w.clock.at(WAVE_DATE - timedelta(days=14))
    second = await w.nudge()
    assert (second.sent, second.cancelled) == (1, 1)
    assert len(w.subjects_to(ADA)) == 1 and len(w.subjects_to(GRACE)) == 2
    rows = await w.ledger_rows()
    cancelled = [r for r in rows.values() if r.status is Status.CANCELLED]
    assert [r.key.user_id for r in cancelled] == [ADA.id]
    assert (
        "registered by the time of sending" in cancelled[0].detail and "microsoftAuthenticator" in cancelled[0].detail
    )
    # the sync catches up: Ada is remembered as registered; nothing is planned for her any more
    await remember(w.store, [replace(ADA, registered=True)], w.clock.now)
    w.clock.at(WAVE_DATE - timedelta(days=7))
    third = await w.nudge()
    assert (third.sent, third.cancelled, third.due) == (1, 0, 1)
    assert len(w.subjects_to(ADA)) == 1


async def test_overlapping_runs_send_each_reminder_once(
    make_world: MakeWorld, table_service: TableServiceClient
) -> None:
    people = [Person(n) for n in range(10, 16)]
    w = await make_world(people, days_before=7)
    runs = await asyncio.gather(w.nudge(), w.nudge())
    statuses = sorted(r.status.value for r in runs)
    assert statuses == ["completed", "skipped"]
    assert sum(r.sent for r in runs) == 6 and max(w.deliveries().values()) == 1

    # Even without the lease (it expired under a slow run), the conditional claims keep it to one:
    class NoLease(ReminderLedger):
        async def acquire_lease(self, owner, now, seconds):  # type: ignore[no-untyped-def]
            from shared.adapters.leases import Lease

            return Lease(owner, now + timedelta(seconds=seconds), "*")

        async def renew_lease(self, lease, now, seconds):  # type: ignore[no-untyped-def]
            return lease

        async def release_lease(self, lease) -> None:  # type: ignore[no-untyped-def]
            return None

    w.clock.at(WAVE_DATE - timedelta(days=3))
    w.ledger = NoLease(table_service)  # the same tables, no lease
    racing = await asyncio.gather(w.nudge(), w.nudge(), w.nudge())
    assert all(r.status is RunStatus.COMPLETED for r in racing)
    assert sum(r.sent for r in racing) == 6
    assert len(w.acs.messages) == 12 and max(w.deliveries().values()) == 1
    assert w.acs.duplicate_posts == 0


async def test_quota_exhaustion_carries_the_rest_over(make_world: MakeWorld) -> None:
    people = [Person(n) for n in range(100, 125)]  # 25 people due on the same day
    w = await make_world(people, days_before=3)
    w.quota = Quota(per_minute=5, per_hour=10)
    first = await w.nudge()
    assert (first.sent, first.carried_over) == (10, 15)
    assert w.clock.slept == pytest.approx(60, abs=1)  # waited once for the minute window, not the hour
    times = [m.received_at for m in w.acs.messages]
    assert (times[5] - times[0]).total_seconds() >= 60
    # the next hourly runs carry on where it stopped
    w.clock.now += timedelta(hours=1)
    assert (await w.nudge()).sent == 10
    w.clock.now += timedelta(hours=1)
    third = await w.nudge()
    assert (third.sent, third.carried_over) == (5, 0)
    assert len(w.acs.messages) == 25 and max(w.deliveries().values()) == 1


async def test_acs_429_is_honoured_and_what_is_left_waits(make_world: MakeWorld) -> None:
    people = [Person(n) for n in range(200, 206)]
    w = await make_world(people, days_before=3, per_minute=2)  # ACS is stricter than our setting
    run = await w.nudge(max_wait_seconds=65)
    # 2 sent, 429 with Retry-After ~60 s -> waited, 2 more, waited, 2 more
    assert run.sent == 6 and run.throttled >= 2 and run.status is RunStatus.COMPLETED
    assert max(w.deliveries().values()) == 1
    w.acs.inject(Throttle(retry_after=600))  # a long Retry-After: stop and carry over
    more = [Person(n) for n in range(300, 303)]
    await remember(w.store, more, w.clock.now)
    w.graph_sim.tenant.collections["users"] += [p.graph_user() for p in more]
    w.graph_sim.tenant.touch()
    w.clock.now += timedelta(minutes=5)
    stopped = await w.nudge()
    assert (stopped.sent, stopped.carried_over, stopped.throttled) == (0, 3, 1)
    rows = await w.ledger_rows()
    assert sum(r.status is Status.UNSENT for r in rows.values()) == 1
    w.clock.now += timedelta(minutes=15)
    later = await w.nudge()
    assert (later.sent, later.resent) == (3, 1)
    assert len(w.acs.messages) == 9 and max(w.deliveries().values()) == 1


async def test_bad_addresses_fail_alone(make_world: MakeWorld) -> None:
    bounced = Person(30, "Bounce", email="gone@nowhere.example")
    malformed = Person(31, "Malformed", email="bob@localhost")  # ACS refuses it outright (400)
    w = await make_world([ADA, bounced, malformed, GRACE], days_before=14)
    w.acs.bad_addresses.add("gone@nowhere.example")
    run = await w.nudge()
    assert run.status is RunStatus.COMPLETED
    assert (run.sent, run.failed) == (3, 1)  # the malformed one is refused; the others are accepted
    rows = {r.key.user_id: r for r in (await w.ledger_rows()).values()}
    assert rows[malformed.id].status is Status.FAILED and "400" in rows[malformed.id].detail
    assert {rows[p.id].status for p in (ADA, bounced, GRACE)} == {Status.ACCEPTED}  # delivery not final yet
    # the next run reads the outcomes: two delivered, the bounce failed; a failed step is not retried
    w.clock.now += timedelta(hours=1)
    later = await w.nudge()
    assert (later.sent, later.settled, later.delivered, later.failed) == (0, 3, 2, 1)
    rows = {r.key.user_id: r for r in (await w.ledger_rows()).values()}
    assert rows[bounced.id].status is Status.FAILED and "InvalidRecipients" in rows[bounced.id].detail
    assert rows[ADA.id].status is Status.SENT and rows[GRACE.id].status is Status.SENT
    assert len(w.acs.messages) == 3


async def test_a_display_name_cannot_inject_html(make_world: MakeWorld) -> None:
    evil = Person(40, '<script>alert("pwned")</script><img src=x onerror=alert(1)>\r\nBcc: eve@evil.example')
    w = await make_world([evil], days_before=7)
    await w.nudge()
    (message,) = w.acs.messages
    assert "<script" not in message.html and "<img" not in message.html
    assert "&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;" in message.html
    assert "\n" not in message.to[0][1] and "\r" not in message.to[0][1]
    assert "\n" not in message.subject


async def test_dry_run_records_and_logs_but_sends_nothing(
    make_world: MakeWorld, caplog: pytest.LogCaptureFixture
) -> None:
    w = await make_world([ADA, GRACE], days_before=14)
    w.policy = NudgePolicy(dry_run=True)
    with caplog.at_level(logging.INFO, logger="shared.jobs.nudge"):
        run = await w.nudge(digest_to=("it@contoso.example",))
    assert (run.would_send, run.sent, run.dry_run) == (2, 0, True)
    assert w.acs.posts == [] and w.acs.messages == []
    assert sum("nudge dry run: would email" in r.message for r in caplog.records) == 2
    assert any('"dryRun":true' in r.message and '"wouldSend":2' in r.message for r in caplog.records)
    rows = await w.ledger_rows()
    assert {r.status for r in rows.values()} == {Status.DRY_RUN}
    # logged once: the next dry run the same day records nothing new
    w.clock.now += timedelta(hours=1)
    assert (await w.nudge()).would_send == 0
    # switching dry run off sends the same reminders for real, once
    w.policy = NudgePolicy(dry_run=False)
    w.clock.now += timedelta(hours=1)
    real = await w.nudge()
    assert real.sent == 2 and len(w.acs.messages) == 2
    assert {r.status for r in (await w.ledger_rows()).values()} == {Status.ACCEPTED}  # settled next run


async def test_a_changed_wave_date_replans_cleanly(make_world: MakeWorld) -> None:
    w = await make_world([ADA], days_before=14)
    assert (await w.nudge()).sent == 1  # "14 days left" about 1 July
    postponed = replace(WAVE, date=WAVE_DATE + timedelta(days=30))
    w.waves = (postponed,)
    w.clock.now += timedelta(days=1)
    assert (await w.nudge()).sent == 0  # 43 days to the new date: nothing due, nothing resent
    w.clock.at(postponed.date - timedelta(days=30))
    run = await w.nudge()
    assert run.sent == 1
    assert "31 July 2026 (in 30 days)" in w.acs.messages[-1].subject
    # moved back to the old date: its 14-day reminder was sent already; the next due step comes
    w.waves = (WAVE,)
    w.clock.at(WAVE_DATE - timedelta(days=7))
    assert (await w.nudge()).sent == 1
    assert "(in 7 days)" in w.acs.messages[-1].subject
    assert len(w.acs.messages) == 3 and max(w.deliveries().values()) == 1


async def test_uncertain_sends_are_settled_never_doubled(make_world: MakeWorld) -> None:
    people = [Person(n) for n in range(50, 54)]
    w = await make_world(people, days_before=7)
    w.acs.inject(DropAfterAccept())  # ACS takes the first one, the answer is lost
    w.acs.inject(ServerError(503))  # the second: ACS never got it
    run = await w.nudge()
    assert run.status is RunStatus.COMPLETED
    assert len(w.acs.messages) == 3  # dropped one delivered, 503 one not (yet)
    rows = await w.ledger_rows()
    assert sum(r.status is Status.UNSENT for r in rows.values()) == 1
    w.clock.now += timedelta(hours=1)
    again = await w.nudge()
    assert again.resent == 1 and len(w.acs.messages) == 4
    assert max(w.deliveries().values()) == 1 and w.acs.duplicate_posts == 0


async def test_the_admin_digest(make_world: MakeWorld) -> None:
    bounced = Person(60, "Bounce", email="gone@nowhere.example")
    w = await make_world([ADA, bounced, NOBODY], days_before=3)
    w.acs.bad_addresses.add("gone@nowhere.example")
    run = await w.nudge(digest_to=("it@contoso.example",))
    assert run.digest_sent
    (digest,) = w.acs.delivered_to("it@contoso.example")
    assert digest.subject.startswith("MFA reminders 28 June 2026: emailed")
    assert "Ada Lovelace <user1@contoso.example>" in digest.plain_text
    assert "no address (1)" in digest.plain_text and "No Address" in digest.plain_text
