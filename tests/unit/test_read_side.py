"""The pure parts of the read side: parameters, continuation tokens, readiness, CSV, charts,
the report and its reminder section."""

from __future__ import annotations

import base64
import csv
import io
import json
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

import pytest

from shared import queries
from shared.adapters.history_reader import ChangeEntry, CoveragePoint, Cursor, ScopeCoverage, coverage_from_entity
from shared.domain.cadence import parse_step
from shared.domain.nudges import LedgerEntry, ReminderKey, Status
from shared.domain.readiness import (
    ScopeFilter,
    UnknownChoice,
    exposure,
    find_wave,
    matches,
    needs_mfa,
    parse_scope,
    readiness_list,
)
from shared.domain.records import StoredUser, UserRecord, UserType
from shared.domain.scope import Phase, ScopeFacts
from shared.domain.waves import Audience, Wave
from shared.params import (
    BadParameter,
    OutputFormat,
    UserRef,
    parse_date,
    parse_format,
    parse_limit,
    parse_user_ref,
)
from shared.presentation import chart, tokens
from shared.presentation.report import ReportData, render_report
from shared.presentation.serialize import (
    COVERAGE_COLUMNS,
    TIMELINE_COLUMNS,
    coverage_json,
    csv_text,
    exposure_columns,
    exposure_row,
    reminder_json,
    safe_cell,
    timeline_row,
)
from shared.presentation.serialize import coverage_row as coverage_row_of
from shared.presentation.text import days_text, describe_change, table
from shared.presentation.timeline import ReminderLine, merge, reminder_line, stage_text

TODAY = date(2026, 6, 1)
WAVES = (
    Wave("phase1", "Portals", date(2025, 9, 30), Phase.PORTALS),
    Wave("phase2", "ARM", date(2026, 7, 1), Phase.ARM),
    Wave("guests2", "Guests, ARM", date(2026, 6, 15), Phase.ARM, Audience.GUESTS),
)


def rec(**overrides: Any) -> UserRecord:
    base: dict[str, Any] = {
        "id": "3f2c9a7e-1111-4222-8333-444455556666",
        "upn": "ada@contoso.example",
        "display_name": "Ada",
        "user_type": UserType.MEMBER,
        "enabled": True,
        "mfa_registered": False,
        "mfa_capable": False,
        "is_admin": True,
        "methods": (),
        "default_method": None,
        "email": "ada@contoso.example",
        "created": None,
        "external_user_state": None,
        "on_premises_sync": False,
    }
    base.update(overrides)
    return UserRecord(**base)


# --- parameters ----------------------------------------------------------------------------------


def test_format_negotiation() -> None:
    assert parse_format(None, None) is OutputFormat.JSON
    assert parse_format(None, "text/csv, application/json;q=0.5") is OutputFormat.CSV
    assert parse_format("JSON", "text/csv") is OutputFormat.JSON  # the parameter wins
    with pytest.raises(BadParameter, match="format"):
        parse_format("xlsx", None)


@pytest.mark.parametrize("text", ["2026-2-1", "2026-02-30", "20260201", "2026-02-01T00:00", "' or 1 eq 1"])
def test_bad_dates(text: str) -> None:
    with pytest.raises(BadParameter):
        parse_date(text)


def test_limits() -> None:
    assert parse_limit(None) == 100 and parse_limit(" 1000 ") == 1000
    for bad in ("0", "1001", "-1", "1e3", "ten"):
        with pytest.raises(BadParameter, match="limit"):
            parse_limit(bad)


def test_user_refs() -> None:
    assert parse_user_ref("3F2C9A7E-1111-4222-8333-444455556666").user_id == "3f2c9a7e-1111-4222-8333-444455556666"
    guest = "eve_fabrikam.example#EXT#@contoso.onmicrosoft.com"
    assert parse_user_ref(guest).upn == guest
    assert parse_user_ref("eve_fabrikam.example%23EXT%23@contoso.onmicrosoft.com").upn == guest
    assert parse_user_ref("o'brien@contoso.example").upn == "o'brien@contoso.example"
    for bad in ("", " ", "a b@c.d", "x' or 'a' eq 'a", "s|abc", "a/b", "@contoso.example", "a@", "a@b\x00"):
        with pytest.raises(BadParameter):
            parse_user_ref(bad)


# --- continuation tokens -------------------------------------------------------------------------


def test_tokens_round_trip_and_are_bound_to_their_query() -> None:
    cursor = Cursor(token={"PartitionKey": "1!12!MjAyNi0xMS0yMw--", "RowKey": "1!8!YWJj"})
    text = tokens.encode("changes", {"night": "2026-11-23"}, cursor)
    assert text.startswith("v1.") and "=" not in text
    assert tokens.decode(text, "changes", {"night": "2026-11-23"}) == cursor
    with pytest.raises(tokens.BadToken, match="another query"):
        tokens.decode(text, "changes", {"night": "2026-11-24"})
    with pytest.raises(tokens.BadToken, match="another query"):
        tokens.decode(text, "coverage", {"night": "2026-11-23"})
    keyset = Cursor(shard=16, after="s|zzz")
    assert tokens.decode(tokens.encode("unregistered", {}, keyset), "unregistered", {}) == keyset


def _forge(body: object) -> str:
    return "v1." + base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "token",
    [
        "",
        "v2.abc",
        "v1.!!!",
        "v1." + "A" * 5000,
        _forge([1, 2]),
        _forge({"q": "unregistered", "b": {}}),  # no position at all
        _forge({"q": "unregistered", "b": {}, "s": 17, "a": "s|x"}),  # no such shard
        _forge({"q": "unregistered", "b": {}, "s": True, "a": "s|x"}),
        _forge({"q": "unregistered", "b": {}, "a": "e|x"}),  # not a state row key
        _forge({"q": "unregistered", "b": {}, "a": "s|x\n"}),
        _forge({"q": "unregistered", "b": {}, "t": {"Filter": "x"}}),
        _forge({"q": "unregistered", "b": {}, "t": {"RowKey": 5}}),
        _forge({"q": "unregistered", "b": {}, "t": {"RowKey": "x"}, "extra": 1}),
    ],
)
def test_malformed_or_forged_tokens_are_refused(token: str) -> None:
    with pytest.raises(tokens.BadToken):
        tokens.decode(token, "unregistered", {})


# --- readiness ---------------------------------------------------------------------------------


def test_who_needs_mfa() -> None:
    assert needs_mfa(StoredUser(rec(), 1, None))
    assert not needs_mfa(StoredUser(rec(), 1, None, deleted=True))
    assert not needs_mfa(StoredUser(rec(enabled=False), 1, None))
    assert not needs_mfa(StoredUser(rec(mfa_registered=None), 1, None))  # unknown is not unregistered
    assert not needs_mfa(StoredUser(rec(mfa_registered=True), 1, None))
    assert not needs_mfa(StoredUser(rec(is_admin=False), 1, None))  # a plain member: out of scope
    assert needs_mfa(StoredUser(rec(is_admin=False, user_type=UserType.GUEST), 1, None))
    known = ScopeFacts(known=True, phases=(Phase.ARM,), reasons=("signin:azure_cli",))
    assert needs_mfa(StoredUser(rec(is_admin=False, scope=known), 1, None))  # scope signals win


def test_days_left_per_wave_and_filters() -> None:
    guest = rec(user_type=UserType.GUEST, is_admin=False)
    e = exposure(guest, WAVES, TODAY)
    assert [(w.wave.id, w.days_left) for w in e.waves] == [("phase1", -244), ("guests2", 14), ("phase2", 30)]
    assert e.days_left == -244
    member = exposure(rec(), WAVES, TODAY)
    assert [w.wave.id for w in member.waves] == ["phase1", "phase2"]  # the guest-only wave skips members
    arm_only = rec(scope=ScopeFacts(known=True, phases=(Phase.ARM,)))
    assert exposure(arm_only, WAVES, TODAY).days_left == 30
    assert matches(guest, ScopeFilter.GUESTS, WAVES[2]) and not matches(rec(), ScopeFilter.ALL, WAVES[2])
    assert matches(rec(), ScopeFilter.ADMINS, None) and not matches(guest, ScopeFilter.ADMINS, None)
    assert matches(arm_only, ScopeFilter.PHASE2, None) and not matches(arm_only, ScopeFilter.PHASE1, None)
    assert matches(rec(), ScopeFilter.MEMBERS, None) and not matches(guest, ScopeFilter.MEMBERS, None)


def test_most_urgent_first() -> None:
    users = [
        StoredUser(rec(id="c", display_name="Zed", is_admin=False, user_type=UserType.GUEST), 1, None),
        StoredUser(rec(id="b", display_name="Bea", scope=ScopeFacts(known=True, phases=(Phase.ARM,))), 1, None),
        StoredUser(rec(id="a", display_name="Al"), 1, None),
    ]
    assert [e.user.id for e in readiness_list(users, WAVES, TODAY)] == ["a", "c", "b"]


def test_scope_and_wave_choices() -> None:
    assert parse_scope(None) is ScopeFilter.ALL and parse_scope(" Admins ") is ScopeFilter.ADMINS
    with pytest.raises(UnknownChoice, match="admins, guests"):
        parse_scope("everyone")
    assert find_wave(WAVES, None) is None and find_wave(WAVES, "phase2") == WAVES[1]
    with pytest.raises(UnknownChoice, match="phase1, phase2, guests2"):
        find_wave(WAVES, "phase3")


# --- CSV -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=1+2", "'=1+2"),
        ("+SUM(A1)", "'+SUM(A1)"),
        ("-2+3", "'-2+3"),
        ("@cmd", "'@cmd"),
        ("\tx", "'\tx"),
        ("plain", "plain"),
        (-244, -244),
        (True, "true"),
        (None, ""),
        (["a"], '["a"]'),
    ],
)
def test_csv_cells_never_become_formulas(value: object, cell: object) -> None:
    assert safe_cell(value) == cell


def test_exposure_csv_has_a_column_per_wave() -> None:
    e = exposure(rec(display_name="=HYPERLINK(1)"), WAVES, TODAY)
    text = csv_text(exposure_columns(WAVES), [exposure_row(e)])
    (row,) = list(csv.DictReader(io.StringIO(text)))
    assert row["displayName"] == "'=HYPERLINK(1)"
    assert (row["daysLeft:phase1"], row["daysLeft:phase2"], row["daysLeft:guests2"]) == ("-244", "30", "")


# --- text, charts, timeline -----------------------------------------------------------------------


def test_days_in_words() -> None:
    assert [days_text(d) for d in (None, 5, 1, 0, -1, -30)] == [
        "-",
        "5 days left",
        "1 day left",
        "enforced today",
        "enforced yesterday",
        "enforced 30 days ago",
    ]


def test_terminal_tables_align_and_clip() -> None:
    text = table(["a", "name"], [["1", "x" * 50], ["22", "\x1b[31mred"]], max_width=10)
    lines = text.splitlines()
    assert lines[0] == "a   name" and lines[2] == "1   xxxxxxxxx…"
    assert "\x1b" not in text  # no terminal escape codes from directory data


def test_bar_geometry_stacks_within_the_frame() -> None:
    c = chart.stacked_bars(
        "t", ["2026-11-01", "2026-11-02"], [chart.Series("r", "reg", [30, 60]), chart.Series("u", "unreg", [10, None])]
    )
    assert chart.nice_max(70) == 100 and chart.nice_max(0) == 1 and chart.nice_max(1800) == 2000
    f = c.frame
    first, second = c.bars
    assert first.segments[0].y + first.segments[0].height == pytest.approx(f.bottom)
    assert second.segments[0].height == pytest.approx(2 * first.segments[0].height)
    assert second.segments[1].height == 0
    assert all(f.left <= b.x and b.x + b.width <= f.right for b in c.bars)
    assert [t.label for t in f.x_ticks] == ["11-01", "11-02"]


def test_line_geometry_skips_missing_nights() -> None:
    c = chart.lines("t", ["a", "b", "c"], [chart.Series("all", "all", [50.0, None, 100.0])])
    (line,) = c.lines
    assert len(line.dots) == 2 and line.dots[1][1] == pytest.approx(c.frame.top)
    assert chart.lines("t", [], []).lines == ()


def change(kind: str, seen_at: str, **kw: Any) -> ChangeEntry:
    base: dict[str, Any] = {
        "user_id": "u1",
        "kind": kind,
        "version": 1,
        "upn": "ada@contoso.example",
        "display_name": "Ada",
        "user_type": "member",
        "before": None,
        "after": None,
        "seen_at": seen_at,
        "night": seen_at[:10],
        "run_id": "r",
    }
    base.update(kw)
    return ChangeEntry(**base)


def test_timeline_merges_reminders_by_time() -> None:
    events = [change("new", "2026-11-01T02:00:00+00:00"), change("registered", "2026-11-03T02:00:00+00:00", version=2)]
    reminder = ReminderLine("u1", "2026-11-02T09:00:00Z", "phase2", "first", "sent")
    assert merge(events, [reminder]) == [events[0], reminder, events[1]]
    assert merge(events, None) == events
    assert describe_change(events[1]) == "- -> -"


# --- the report ------------------------------------------------------------------------------------


def point(night: str, registered: int, unregistered: int) -> CoveragePoint:
    return CoveragePoint(
        night=night,
        run_id="r",
        users=registered + unregistered,
        members=registered,
        guests=unregistered,
        registered=registered,
        unregistered=unregistered,
        unknown=0,
        percent=round(100 * registered / (registered + unregistered), 2),
        admins_registered=3,
        admins_unregistered=1,
        enabled=registered + unregistered,
        admins_percent=75.0,
        guests_registered=2,
        guests_unregistered=2,
        guests_percent=50.0,
        changes={"registered": 1},
    )


def report_data(**overrides: Any) -> ReportData:
    evil = rec(display_name="<img src=x onerror=alert(1)>", upn="mallory@contoso.example")
    base: dict[str, Any] = {
        "generated_at": datetime(2026, 6, 1, 8, 0, tzinfo=UTC),
        "waves": WAVES,
        "coverage": [point("2026-05-31", 90, 10), point("2026-06-01", 91, 9)],
        "exposures": [exposure(evil, WAVES, TODAY)],
        "unregistered_total": 1,
        "night": "2026-06-01",
        "changes": [change("registered", "2026-06-01T02:00:00+00:00", display_name="<b>Bold</b>")],
        "changes_total": 1,
    }
    base.update(overrides)
    return ReportData(**base)


def test_report_escapes_directory_data() -> None:
    html = render_report(report_data())
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<b>Bold</b>" not in html and "&lt;b&gt;Bold&lt;/b&gt;" in html
    assert "enforced 244 days ago" in html and "30 days left" in html and "not affected" in html
    assert html.count("<svg") == 4  # three panels and the coverage line chart
    assert "Reminders" not in html


def test_report_shows_reminders_only_when_given() -> None:
    reminder = ReminderLine("u1", "2026-05-30T09:00:00Z", "phase2", "first", "failed", "<no address>", "ada@x", "Ada")
    html = render_report(report_data(reminders=[reminder]))
    assert "<h2>Reminders</h2>" in html and "&lt;no address&gt;" in html and "failed" in html
    empty = render_report(report_data(reminders=[], reminders_day="2026-06-01"))
    assert "<h2>Reminders on 2026-06-01 (UTC)</h2>" in empty and "No reminder was recorded on 2026-06-01" in empty


def test_report_before_the_first_sync() -> None:
    html = render_report(
        report_data(coverage=[], exposures=[], unregistered_total=0, night=None, changes=[], changes_total=0)
    )
    assert "No completed sync in this period yet." in html and "<svg" not in html
    assert "none yet" in html


def test_report_says_when_it_shows_a_sample() -> None:
    data = report_data()
    html = render_report(replace(data, changes_total=1234, unregistered_total=5000))
    assert "The first 1 of 1,234 changes are shown" in html
    assert "The first 1 are shown" in html


# --- finding a user by UPN -----------------------------------------------------------------------


class _Reader:
    def __init__(self, users: list[StoredUser]) -> None:
        self.users = users

    async def user(self, user_id: str) -> StoredUser | None:
        return next((u for u in self.users if u.record.id == user_id), None)

    async def users_with_upn(self, upn: str) -> list[StoredUser]:
        return [u for u in self.users if u.record.upn.lower() == upn.lower()]


async def test_a_reused_upn_finds_its_live_owner() -> None:
    gone = StoredUser(rec(id="old", upn="Ada@contoso.example"), 3, None, deleted=True, first_seen="2025")
    live = StoredUser(rec(id="new", upn="ada@contoso.example"), 1, None, first_seen="2026")
    reader: Any = _Reader([gone, live])
    assert (await queries.find_user(reader, UserRef(upn="ADA@contoso.example"))).record.id == "new"
    reader = _Reader([gone, replace(live, deleted=True)])
    assert (await queries.find_user(reader, UserRef(upn="ada@contoso.example"))).record.id == "new"
    reader = _Reader([replace(gone, deleted=False), live])
    with pytest.raises(queries.AmbiguousUser, match="new, old"):
        await queries.find_user(reader, UserRef(upn="ada@contoso.example"))
    with pytest.raises(queries.UserNotFound):
        await queries.find_user(_Reader([]), UserRef(user_id="nobody"))  # type: ignore[arg-type]


# --- reminders in the timeline and the report --------------------------------------------------------


def ledger_entry(step: str, status: Status, **kw: Any) -> LedgerEntry:
    key = ReminderKey("u1", "phase2", date(2026, 7, 1), parse_step(step))
    return LedgerEntry(key, status, recorded=datetime(2026, 6, 2, 4, 15, tzinfo=UTC), **kw)


def test_a_ledger_entry_as_a_timeline_line() -> None:
    posted = datetime(2026, 6, 1, 3, 15, tzinfo=UTC)
    line = reminder_line(
        ledger_entry("before-30", Status.SENT, posted=posted, recipient="ada@x"), upn="ada@x", display_name="Ada"
    )
    assert line == ReminderLine(
        "u1",
        posted.isoformat(),
        "phase2",
        "30 days before",
        "sent",
        "",
        "ada@x",
        "Ada",
        "2026-07-01",
        "before-30",
        "ada@x",
    )
    # not handed to ACS: the time its outcome was recorded
    cancelled = reminder_line(ledger_entry("after-1", Status.CANCELLED, detail="registered meanwhile"))
    assert cancelled.at == "2026-06-02T04:15:00+00:00" and cancelled.detail == "registered meanwhile"
    assert [stage_text(parse_step(s)) for s in ("before-1", "before-14", "after-1", "after-3")] == [
        "1 day before",
        "14 days before",
        "now required (first notice)",
        "still blocked (notice 3)",
    ]


def test_reminders_as_json_and_csv_rows() -> None:
    line = reminder_line(ledger_entry("after-2", Status.FAILED, detail="=bad"), upn="u@x", display_name="@Ada")
    assert reminder_json(line) | {"at": ""} == {
        "at": "",
        "userId": "u1",
        "userPrincipalName": "u@x",
        "displayName": "@Ada",
        "wave": "phase2",
        "stage": "still blocked (notice 2)",
        "outcome": "failed",
        "detail": "=bad",
        "waveDate": "2026-07-01",
        "step": "after-2",
        "recipient": "",
    }
    (row,) = csv.DictReader(io.StringIO(csv_text(TIMELINE_COLUMNS, [timeline_row(line)])))
    assert (row["type"], row["displayName"], row["detail"], row["step"]) == ("reminder", "'@Ada", "'=bad", "after-2")


def test_the_report_counts_every_outcome_and_badges_failures() -> None:
    failed = ReminderLine("u1", "2026-06-01T03:15:00+00:00", "phase2", "14 days before", "failed", "no mailbox")
    html = render_report(
        report_data(
            reminders=[failed],
            reminders_day="2026-06-01",
            reminders_total=700,
            reminders_by_outcome={"failed": 1, "sent": 699},
        )
    )
    assert "<li>sent: 699</li>" in html and "<li>failed: 1</li>" in html
    assert "1 of 700 reminders are shown" in html
    assert '<span class="past">failed</span>' in html and "2026-06-01 03:15" in html


# --- coverage by enforcement phase ---------------------------------------------------------------------


def coverage_row(**extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"PartitionKey": "coverage", "RowKey": "2026-06-01", "Users": 10, "Registered": 6}
    row.update(extra)
    return row


def phase_props(prefix: str, users: int, registered: int, unregistered: int, percent: float | None) -> dict[str, Any]:
    props = {
        f"{prefix}InScope" if prefix != "InScope" else "InScope": users,
        f"{prefix}Registered": registered,
        f"{prefix}Unregistered": unregistered,
        f"{prefix}Unknown": users - registered - unregistered,
    }
    if percent is not None:
        props[f"{prefix}CoveragePercent"] = percent
    return props


def test_coverage_rows_with_and_without_phase_figures() -> None:
    old = coverage_from_entity(coverage_row())
    assert old.in_scope is None and old.phases == {}  # recorded before scope: not zeros
    row = coverage_row(
        **phase_props("InScope", 5, 2, 2, 50.0),
        **phase_props("Phase1", 3, 1, 2, 33.33),
        **phase_props("Phase2", 5, 2, 2, 50.0),
    )
    new = coverage_from_entity(row)
    assert new.in_scope == ScopeCoverage(5, 2, 2, 1, 50.0)
    assert new.phases == {"phase1": ScopeCoverage(3, 1, 2, 0, 33.33), "phase2": ScopeCoverage(5, 2, 2, 1, 50.0)}
    nobody = coverage_from_entity(coverage_row(**phase_props("Phase1", 0, 0, 0, None)))
    assert nobody.phases == {"phase1": ScopeCoverage(0, 0, 0, 0, None)}  # in scope of none: a figure, 0

    assert coverage_json(old)["phases"] is None and coverage_json(old)["inScope"] is None
    assert coverage_json(new)["phases"]["phase1"] == {
        "users": 3,
        "registered": 1,
        "unregistered": 2,
        "unknown": 0,
        "percent": 33.33,
    }
    cells = list(csv.DictReader(io.StringIO(csv_text(COVERAGE_COLUMNS, [coverage_row_of(old), coverage_row_of(new)]))))
    assert cells[0]["phase1Unregistered"] == "" and cells[0]["inScopeUsers"] == ""
    assert (cells[1]["phase1Unregistered"], cells[1]["phase2Users"], cells[1]["inScopePercent"]) == ("2", "5", "50.0")


def with_phases(p: CoveragePoint, phase1: tuple[int, int], phase2: tuple[int, int]) -> CoveragePoint:
    def c(registered: int, unregistered: int) -> ScopeCoverage:
        return ScopeCoverage(
            registered + unregistered, registered, unregistered, 0, 100 * registered / (registered + unregistered)
        )

    return replace(p, phases={"phase1": c(*phase1), "phase2": c(*phase2)})


def test_the_chart_by_phase_with_a_fallback_for_old_nights() -> None:
    old, newer, latest = point("2026-05-30", 89, 11), point("2026-05-31", 90, 10), point("2026-06-01", 91, 9)
    html = render_report(
        report_data(coverage=[old, with_phases(newer, (7, 3), (4, 6)), with_phases(latest, (8, 2), (5, 5))])
    )
    assert html.count("<svg") == 4  # all enabled, phase 1, phase 2, and the coverage lines
    assert 'aria-label="Phase 1 in scope: portals, admin centers"' in html
    assert 'aria-label="Phase 2 in scope: CLI, PowerShell, IaC, ARM"' in html
    assert 'aria-label="Admins"' not in html
    assert "<title>2026-06-01: Registered 8, Unregistered 2, Not yet in the report 0</title>" in html
    assert "<title>2026-05-31: Registered 4, Unregistered 6, Not yet in the report 0</title>" in html
    assert "2026-05-30: Registered 89" in html  # the old night is in the all-accounts panel...
    assert html.count("<title>2026-05-30: Registered") == 1  # ...and no phase bar stands for it
    assert '<polyline class="phase1"' in html and '<polyline class="phase2"' in html
    assert "2026-06-01: Phase 2 in scope 50%" in html and "2026-05-30: Phase 1" not in html
    assert "Nights recorded before the figures per phase existed have no phase bar." in html
    assert "no phase bar" not in render_report(report_data(coverage=[with_phases(latest, (8, 2), (5, 5))]))
    # Nights recorded before the scope figures only: admins and guests, as before.
    fallback = render_report(report_data())
    assert (
        'aria-label="Admins"' in fallback and 'aria-label="Guests"' in fallback and "Phase 1 in scope" not in fallback
    )
    assert "recorded before figures per enforcement phase" in fallback


def test_a_bar_chart_leaves_out_nights_without_figures() -> None:
    c = chart.stacked_bars("t", ["2026-05-31", "2026-06-01"], [chart.Series("a", "reg", [None, 3])])
    assert [b.title for b in c.bars] == ["2026-06-01: a 3"]


class _Ledger:
    def __init__(self, entries: list[LedgerEntry]) -> None:
        self.entries = entries
        self.days: list[date] = []

    async def outcomes_on(self, day: date) -> list[LedgerEntry]:
        self.days.append(day)
        return self.entries


async def test_a_days_outcomes_keep_what_needs_a_look_and_name_everyone() -> None:
    def entry(n: int, status: Status) -> LedgerEntry:
        key = ReminderKey(f"u{n}", "phase2", date(2026, 7, 1), parse_step("after-1"))
        return LedgerEntry(key, status, recorded=datetime(2026, 6, 1, 3, n, tzinfo=UTC))

    entries = [entry(n, Status.SENT) for n in range(1, 6)] + [entry(9, Status.FAILED)]
    ledger: Any = _Ledger(entries)
    registered = StoredUser(rec(id="u2", display_name="Gone Registered"), 1, None)  # not in the unregistered list
    reader: Any = _Reader([registered])
    known = [rec(id="u1", display_name="<Ada>"), rec(id="u9", display_name="Bob")]
    outcomes = await queries.reminder_outcomes(ledger, reader, date(2026, 6, 1), known, limit=3)
    assert ledger.days == [date(2026, 6, 1)]
    assert (outcomes.day, outcomes.total, outcomes.by_outcome) == ("2026-06-01", 6, {"failed": 1, "sent": 5})
    # the failure first, then the earliest; shown in time order
    assert [(line.user_id, line.outcome) for line in outcomes.lines] == [
        ("u1", "sent"),
        ("u2", "sent"),
        ("u9", "failed"),
    ]
    assert [line.display_name for line in outcomes.lines] == ["<Ada>", "Gone Registered", "Bob"]
