"""The nudge emails' pure core: cadence, planner, quota arithmetic, message content, settings."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from shared.config import Settings, SettingsError
from shared.domain.cadence import Cadence, Stage, Step, parse_days_before, parse_step
from shared.domain.messages import Digest, DigestLine, Sender, one_line, render_digest, render_reminder
from shared.domain.nudges import (
    GuestTrust,
    LedgerEntry,
    MessageKind,
    NotEmailed,
    NudgePolicy,
    Quota,
    ReminderKey,
    Status,
    Unreachable,
    has_mfa_method,
    method_types,
    parse_key,
    plan_reminders,
    quota_wait,
    quota_warnings,
)
from shared.domain.records import StoredUser, UserRecord, UserType
from shared.domain.scope import Phase, ScopeFacts
from shared.domain.waves import Audience, Wave

D = date(2026, 7, 1)
WAVE = Wave("phase2", "Azure CLI, PowerShell and IaC", D, Phase.ARM)
PORTAL = Wave("phase1", "Azure portal", date(2025, 9, 30), Phase.PORTALS)
REAL = NudgePolicy(dry_run=False)


def uid(n: int) -> str:
    return f"{n:08x}-0000-4000-8000-{n:012x}"


def person(
    n: int = 1,
    *,
    registered: bool | None = False,
    admin: bool | None = True,
    guest: bool = False,
    email: str | None = "ada@contoso.example",
    enabled: bool = True,
    scope: ScopeFacts | None = None,
    name: str = "Ada Lovelace",
) -> StoredUser:
    record = UserRecord(
        id=uid(n),
        upn=f"user{n}@contoso.example",
        display_name=name,
        user_type=UserType.GUEST if guest else UserType.MEMBER,
        enabled=enabled,
        mfa_registered=registered,
        mfa_capable=registered,
        is_admin=admin,
        methods=(),
        default_method=None,
        email=email,
        created=None,
        external_user_state=None,
        on_premises_sync=False,
        scope=scope or ScopeFacts(),
    )
    return StoredUser(record, 1, None)


def entry(
    n: int,
    step: str,
    status: Status,
    at: datetime,
    *,
    wave: Wave = WAVE,
    wave_date: date | None = None,
    posted: bool = True,
) -> LedgerEntry:
    key = ReminderKey(uid(n), wave.id, wave_date or wave.date, parse_step(step))
    return LedgerEntry(key, status, at, posted=at if posted else None, etag="W/1")


def at(day: date, hour: int = 3) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


# --- cadence -------------------------------------------------------------------------------------


def test_steps_before_the_date_catch_up_to_the_latest_only() -> None:
    c = Cadence()
    assert c.latest_due_before(D, D - timedelta(days=31)) is None
    assert c.latest_due_before(D, D - timedelta(days=30)) == Step(Stage.BEFORE, 30)
    assert c.latest_due_before(D, D - timedelta(days=10)) == Step(Stage.BEFORE, 14)  # not 30 and 14
    assert c.latest_due_before(D, D - timedelta(days=1)) == Step(Stage.BEFORE, 1)
    assert c.latest_due_before(D, D) is None
    assert c.next_due_before(D, D - timedelta(days=10)) == D - timedelta(days=7)


def test_notices_after_the_date_are_anchored_on_the_previous_one() -> None:
    c = Cadence(blocked_every_days=7, blocked_max=3)
    assert c.after_due(1, None, D) == D
    assert c.after_due(2, D + timedelta(days=40), D) == D + timedelta(days=47)
    assert c.after_due(2, None, D) is None
    assert c.after_due(4, D, D) is None  # the cap


def test_cadence_settings_parse_and_validate() -> None:
    assert parse_days_before(" 1, 30,7,7 ") == (30, 7, 1)
    for bad in ("", "0", "x", "400", "-3"):
        with pytest.raises(ValueError):
            parse_days_before(bad)
    with pytest.raises(ValueError):
        Cadence(days_before=(1, 30))
    assert parse_step("after-12") == Step(Stage.AFTER, 12)
    with pytest.raises(ValueError):
        parse_step("during-3")


def test_keys_and_operation_ids_are_stable() -> None:
    key = ReminderKey(uid(1), "phase2", D, Step(Stage.BEFORE, 14))
    assert key.id == f"{uid(1)}|phase2|2026-07-01|before-14"
    assert parse_key(key.id) == key
    assert key.operation_id == ReminderKey(uid(1), "phase2", D, Step(Stage.BEFORE, 14)).operation_id
    assert key.operation_id != replace(key, wave_date=D + timedelta(days=1)).operation_id
    assert len(key.operation_id) == 36


# --- the planner ---------------------------------------------------------------------------------


def plan(users: list[StoredUser], today: date, ledger: dict[str, list[LedgerEntry]] | None = None, **kw: object):
    policy = kw.pop("policy", REAL)
    waves = kw.pop("waves", (WAVE,))
    return plan_reminders(users, waves, today, ledger or {}, policy)  # type: ignore[arg-type]


def test_who_gets_a_reminder() -> None:
    today = D - timedelta(days=14)
    users = [
        person(1),  # unregistered admin: yes
        person(2, registered=True),  # registered: nothing at once
        person(3, registered=None),  # the report has not listed them yet: unknown, not unregistered
        person(4, admin=False),  # a member who is not an admin (no scope signals yet): out of scope
        person(5, guest=True, admin=False),  # a guest: in scope
        person(6, enabled=False),
        person(7, email=None),  # in scope but no address: reported
        person(8, scope=ScopeFacts(known=True, phases=(Phase.ARM,), exclusion="break-glass account")),
        person(9, scope=ScopeFacts(known=True, phases=(Phase.PORTALS,))),  # phase 1 only: wave is phase 2
    ]
    p = plan(users, today)
    assert [d.key.user_id for d in p.due] == [uid(1), uid(5)]
    assert all(d.key.step == Step(Stage.BEFORE, 14) and d.days_left == 14 for d in p.due)
    assert {(x.user_id, x.reason) for x in p.not_emailed} == {
        (uid(7), Unreachable.NO_ADDRESS),
        (uid(8), Unreachable.EXCLUDED),
    }
    assert p.awaiting_report == 1 and p.eligible == 2


def test_a_done_step_is_not_planned_again_and_the_next_one_comes() -> None:
    today = D - timedelta(days=14)
    sent = entry(1, "before-14", Status.SENT, at(today))
    assert plan([person(1)], today, {uid(1): [sent]}).due == ()
    later = D - timedelta(days=7)
    (due,) = plan([person(1)], later, {uid(1): [sent]}).due
    assert due.key.step == Step(Stage.BEFORE, 7) and due.previous is None


def test_failed_cancelled_and_claimed_steps_count_as_done() -> None:
    today = D - timedelta(days=14)
    for status in (Status.FAILED, Status.CANCELLED, Status.CLAIMED, Status.ACCEPTED, Status.SUPERSEDED):
        assert plan([person(1)], today, {uid(1): [entry(1, "before-14", status, at(today))]}).due == ()


def test_an_unsent_claim_is_planned_again_replacing_its_row() -> None:
    today = D - timedelta(days=14)
    unsent = entry(1, "before-14", Status.UNSENT, at(today))
    (due,) = plan([person(1)], today, {uid(1): [unsent]}).due
    assert due.previous == unsent


def test_a_late_joiner_after_the_date_gets_one_prompt_notice_then_weekly_up_to_the_cap() -> None:
    policy = NudgePolicy(cadence=Cadence(blocked_every_days=7, blocked_max=3), dry_run=False)
    today = D + timedelta(days=200)  # a new admin, long after the date
    (first,) = plan([person(1)], today, policy=policy).due
    assert first.key.step == Step(Stage.AFTER, 1) and first.kind is MessageKind.NOW_REQUIRED
    assert not first.warned and first.days_left == -200
    ledger = {uid(1): [entry(1, "after-1", Status.SENT, at(today))]}
    assert plan([person(1)], today + timedelta(days=6), ledger, policy=policy).due == ()
    (second,) = plan([person(1)], today + timedelta(days=7), ledger, policy=policy).due
    assert second.key.step == Step(Stage.AFTER, 2) and second.kind is MessageKind.STILL_BLOCKED
    ledger[uid(1)] += [
        entry(1, "after-2", Status.SENT, at(today + timedelta(days=7))),
        entry(1, "after-3", Status.SENT, at(today + timedelta(days=14))),
    ]
    assert plan([person(1)], today + timedelta(days=60), ledger, policy=policy).due == ()  # capped


def test_warned_people_get_the_deadline_notice_wording() -> None:
    ledger = {uid(1): [entry(1, "before-1", Status.SENT, at(D - timedelta(days=1)))]}
    (due,) = plan([person(1)], D, ledger).due
    assert due.kind is MessageKind.NOW_REQUIRED and due.warned


def test_unsent_rows_are_superseded_when_a_closer_step_or_the_date_overtakes_them() -> None:
    unsent = entry(1, "before-14", Status.UNSENT, at(D - timedelta(days=14)))
    p = plan([person(1)], D - timedelta(days=7), {uid(1): [unsent]})
    assert p.due[0].key.step == Step(Stage.BEFORE, 7)
    assert [(e, why) for e, why in p.supersede] == [(unsent, "superseded by before-7")]
    p = plan([person(1)], D + timedelta(days=1), {uid(1): [unsent]})
    assert p.due[0].key.step == Step(Stage.AFTER, 1) and len(p.supersede) == 1
    p = plan([person(1, registered=True)], D - timedelta(days=14), {uid(1): [unsent]})
    assert p.due == () and p.supersede[0][1] == "no longer due: registered"


def test_a_moved_date_replans_cleanly() -> None:
    old = entry(1, "before-30", Status.SENT, at(D - timedelta(days=30)))
    pending = entry(1, "before-14", Status.UNSENT, at(D - timedelta(days=14)))
    ledger = {uid(1): [old, pending]}
    postponed = replace(WAVE, date=D + timedelta(days=31))
    # The day after the move: 45 days to the new date, nothing due; the old pending row is dropped.
    p = plan([person(1)], D - timedelta(days=14), ledger, waves=(postponed,))
    assert p.due == () and [e for e, _ in p.supersede] == [pending]
    # The new date's own cadence: its 30-day reminder, keyed by the new date.
    (due,) = plan([person(1)], postponed.date - timedelta(days=30), ledger, waves=(postponed,)).due
    assert due.key.wave_date == postponed.date and due.key.step == Step(Stage.BEFORE, 30)
    # Brought forward: one catch-up reminder with the true days left, not a burst.
    earlier = replace(WAVE, date=D - timedelta(days=20))
    (due,) = plan([person(1)], earlier.date - timedelta(days=5), ledger, waves=(earlier,)).due
    assert due.key.step == Step(Stage.BEFORE, 7) and due.days_left == 5


def test_one_reminder_per_person_per_day_the_most_urgent_first() -> None:
    today = D - timedelta(days=3)
    waves = (PORTAL, WAVE)
    (due,) = plan([person(1)], today, waves=waves).due
    assert due.wave == PORTAL and due.kind is MessageKind.NOW_REQUIRED  # already blocked: first
    ledger = {uid(1): [entry(1, "after-1", Status.SENT, at(today), wave=PORTAL)]}
    p = plan([person(1)], today, ledger, waves=waves)
    assert p.due == () and p.emailed_today == 1
    (due,) = plan([person(1)], today + timedelta(days=1), ledger, waves=waves).due
    assert due.wave == WAVE and due.key.step == Step(Stage.BEFORE, 3)


def test_sending_order_under_a_quota() -> None:
    users = [person(1), person(2), person(3)]
    ledger = {uid(2): [entry(2, "after-1", Status.SENT, at(D + timedelta(days=1)), wave=PORTAL)]}
    today = D - timedelta(days=1)
    due = plan(users, today + timedelta(days=7), ledger, waves=(PORTAL, WAVE)).due
    kinds = [d.kind for d in due]
    assert kinds == sorted(kinds, key=[MessageKind.NOW_REQUIRED, MessageKind.UPCOMING, MessageKind.STILL_BLOCKED].index)


def test_audience_and_guest_trust() -> None:
    members_only = replace(WAVE, applies_to=Audience.MEMBERS)
    assert plan([person(1, guest=True, admin=False)], D - timedelta(days=1), waves=(members_only,)).due == ()
    trusted = person(
        2, guest=True, admin=False, scope=ScopeFacts(known=True, phases=(Phase.ARM,), home_mfa_trusted=True)
    )
    assert len(plan([trusted], D - timedelta(days=1)).due) == 1
    skip = NudgePolicy(guest_trust=GuestTrust.SKIP, dry_run=False)
    p = plan([trusted], D - timedelta(days=1), policy=skip)
    assert p.due == () and p.not_emailed[0].reason is Unreachable.HOME_MFA_TRUSTED


def test_dry_run_rows_count_as_done_only_in_dry_run() -> None:
    today = D - timedelta(days=14)
    dry = entry(1, "before-14", Status.DRY_RUN, at(today), posted=False)
    assert plan([person(1)], today + timedelta(days=1), {uid(1): [dry]}, policy=NudgePolicy(dry_run=True)).due == ()
    (due,) = plan([person(1)], today + timedelta(days=1), {uid(1): [dry]}).due
    assert due.previous == dry  # switching dry run off sends it for real, replacing the row


def test_methods_recheck() -> None:
    objects = [
        {"@odata.type": "#microsoft.graph.passwordAuthenticationMethod"},
        {"@odata.type": "#microsoft.graph.emailAuthenticationMethod"},
    ]
    assert method_types(objects) == ["password", "email"]
    assert not has_mfa_method(method_types(objects))
    assert has_mfa_method(["password", "microsoftAuthenticator"])
    assert has_mfa_method(["someFutureStrongMethod"])  # unknown types count as MFA
    assert not has_mfa_method(["temporaryAccessPass"])


# --- quotas --------------------------------------------------------------------------------------


def test_quota_wait() -> None:
    q = Quota(per_minute=5, per_hour=10)
    now = datetime(2026, 6, 1, 12, tzinfo=UTC)
    assert quota_wait([], now, q) == 0
    five = [now - timedelta(seconds=s) for s in (50, 40, 30, 20, 10)]
    assert quota_wait(five, now, q) == pytest.approx(10)
    ten = [now - timedelta(minutes=m) for m in (55, 50, 45, 40, 35, 30, 25, 20, 15, 10)]
    assert quota_wait(ten, now, q) == pytest.approx(5 * 60)
    assert Quota(per_minute=30, per_hour=100).per_day == 2400


def test_quota_warning_when_the_date_cannot_be_reached() -> None:
    q = Quota(per_minute=5, per_hour=10)  # 240 a day
    today = D - timedelta(days=2)
    assert quota_warnings([WAVE], today, {WAVE.id: 400}, 0, q) == []
    (warning,) = quota_warnings([WAVE], today, {WAVE.id: 600}, 0, q)
    assert "600 people" in warning and "2026-07-01" in warning and "480" in warning
    assert quota_warnings([PORTAL], today, {PORTAL.id: 10_000}, 0, q) == []  # past: nothing to race


# --- messages ------------------------------------------------------------------------------------


def _render(user: StoredUser, today: date, ledger: dict[str, list[LedgerEntry]] | None = None, **sender: str):
    (due,) = plan([user], today, ledger).due
    return render_reminder(due, today, Sender(**sender))


def test_reminder_content_is_personal_and_specific() -> None:
    scope = ScopeFacts(known=True, phases=(Phase.ARM,), tools=("azure_cli", "azure_powershell"))
    email = _render(person(1, scope=scope), D - timedelta(days=14), contact="the IT desk, help@contoso.example")
    assert email.subject == (
        "Action needed: set up MFA before 1 July 2026 (in 14 days) for Azure CLI, PowerShell and IaC"
    )
    for part in (email.plain_text, email.html):
        assert "Ada Lovelace" in part
        assert "Azure CLI, Azure PowerShell" in part
        assert "https://aka.ms/mysecurityinfo" in part
        assert "in 14 days" in part
        assert "help@contoso.example" in part
        assert "fail" in part  # what happens then
    tomorrow = _render(person(1), D - timedelta(days=1))
    assert "(tomorrow)" in tomorrow.subject


def test_after_the_date_the_wording_says_it_is_already_required() -> None:
    email = _render(person(1), D + timedelta(days=3))
    assert email.subject.startswith("MFA is now required for")
    assert "MFA is already required" in email.plain_text and "blocked at your next sign-in" in email.plain_text
    ledger = {uid(1): [entry(1, "after-1", Status.SENT, at(D))]}
    repeat = _render(person(1), D + timedelta(days=7), ledger)
    assert repeat.subject.startswith("Reminder: without MFA you are blocked") and "7 days ago" in repeat.plain_text


def test_guests_are_sent_to_their_home_tenant() -> None:
    trusted = person(
        1, guest=True, admin=False, scope=ScopeFacts(known=True, phases=(Phase.ARM,), home_mfa_trusted=True)
    )
    email = _render(trusted, D - timedelta(days=7), organization="Contoso")
    assert (
        "your own organisation" in email.plain_text
        and "Contoso accepts MFA from your home organisation" in email.plain_text
    )
    unknown = person(2, guest=True, admin=False)
    email = _render(unknown, D - timedelta(days=7))
    assert "may trust your home organisation's MFA" in email.plain_text


def test_html_is_escaped_and_subjects_are_one_line() -> None:
    name = '<script>alert("x")</script> "><img src=x onerror=alert(1)>'
    email = _render(person(1, name=name), D - timedelta(days=7), organization="<b>Evil</b>")
    assert "<script" not in email.html and "<img" not in email.html and "<b>Evil" not in email.html
    assert "&lt;script&gt;" in email.html
    assert name in email.plain_text  # plain text shows the name as it is
    assert one_line("a\r\nBcc: eve@x\u2028b") == "a Bcc: eve@x b"


def test_the_digest_lists_who_was_emailed_and_who_could_not_be() -> None:
    digest = Digest(
        run_id="r1",
        day=D,
        dry_run=False,
        sent=[DigestLine("<b>Ada</b>", "ada@contoso.example", "phase2 before-1")],
        failed=[DigestLine("Bob", "bob@nowhere.example", "InvalidRecipients: no such mailbox")],
        not_emailed=[NotEmailed(uid(3), "c@contoso.example", "Cy", Unreachable.NO_ADDRESS)] * 60,
        warnings=["the quota cannot reach everyone"],
    )
    email = render_digest(digest, Sender())
    assert email.subject == "MFA reminders 1 July 2026: emailed 1, 1 failed - quota warning"
    assert "&lt;b&gt;Ada" in email.html and "<b>Ada" not in email.html
    assert "no such mailbox" in email.plain_text and "no address (60)" in email.plain_text
    assert "... and 10 more" in email.plain_text
    assert "WARNING: the quota cannot reach everyone" in email.plain_text


# --- settings ------------------------------------------------------------------------------------

BASE = {"TABLES_ENDPOINT": "https://x.table.core.windows.net"}


def test_nudge_settings_default_to_a_safe_dry_run() -> None:
    n = Settings.from_env(BASE).nudge
    assert n.dry_run is True and n.acs_endpoint is None
    assert (n.quota_per_minute, n.quota_per_hour) == (5, 10)
    assert n.cadence == Cadence()


def test_nudge_settings_are_read_and_validated() -> None:
    n = Settings.from_env(
        {
            **BASE,
            "NUDGE_DRY_RUN": "FALSE",
            "ACS_ENDPOINT": "https://acs-x.europe.communication.azure.com/",
            "EMAIL_SENDER_ADDRESS": "DoNotReply@abc.azurecomm.net",
            "NUDGE_CADENCE_DAYS": "21,7",
            "NUDGE_BLOCKED_MAX": "0",
            "NUDGE_DIGEST_TO": "it@contoso.example; sec@contoso.example",
            "NUDGE_GUEST_TRUSTED": "skip",
        }
    ).nudge
    assert n.dry_run is False and n.acs_endpoint == "https://acs-x.europe.communication.azure.com"
    assert n.cadence.days_before == (21, 7) and n.cadence.blocked_max == 0
    assert n.digest_to == ("it@contoso.example", "sec@contoso.example") and n.guest_trust is GuestTrust.SKIP
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(
            {
                **BASE,
                "NUDGE_DRY_RUN": "false",
                "ACS_ENDPOINT": "http://acs.example",
                "NUDGE_QUOTA_PER_HOUR": "0",
                "NUDGE_GUEST_TRUSTED": "maybe",
                "NUDGE_DIGEST_TO": "not-an-address",
            }
        )
    message = str(caught.value)
    for expected in (
        "ACS_ENDPOINT must be an https URL",
        "NUDGE_DRY_RUN=false needs ACS_ENDPOINT and EMAIL_SENDER_ADDRESS",
        "NUDGE_QUOTA_PER_HOUR must be between",
        "NUDGE_GUEST_TRUSTED must be message or skip",
        "NUDGE_DIGEST_TO must be email addresses",
    ):
        assert expected in message
