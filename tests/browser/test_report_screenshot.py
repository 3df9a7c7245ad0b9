"""The report as a browser shows it: headless Chromium renders the file with no network, and the
screenshot has the page's colours (its charts by enforcement phase and badges), not a blank or an
error page. (docs/report.png comes from real simulated nights: ``python -m tests.browser.docs_screenshot``.)"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from shared.adapters.history_reader import ChangeEntry, CoveragePoint, ScopeCoverage
from shared.domain.readiness import exposure
from shared.domain.records import UserRecord, UserType
from shared.domain.waves import DEFAULT_WAVES_JSON, parse_waves
from shared.presentation.report import ReportData, render_report
from shared.presentation.timeline import ReminderLine
from tests.browser.chromium import chromium, screenshot
from tests.browser.png import decode

NOW = datetime(2026, 6, 1, 7, 30, tzinfo=UTC)
GREEN, RED, BACKGROUND = (46, 125, 50), (198, 40, 40), (246, 248, 250)
PHASE1, PHASE2 = (106, 27, 154), (239, 108, 0)  # the coverage lines' colours per phase


def _coverage(nights: int) -> list[CoveragePoint]:
    rng = random.Random(4)
    points, registered, unregistered = [], 1400, 600
    for i in range(nights):
        moved = rng.randint(5, 25)
        registered, unregistered = registered + moved, max(0, unregistered - moved + rng.randint(0, 6))
        points.append(
            CoveragePoint(
                night=(date(2026, 6, 1) - timedelta(days=nights - 1 - i)).isoformat(),
                run_id="r",
                users=registered + unregistered + 40,
                members=1800,
                guests=200,
                registered=registered,
                unregistered=unregistered,
                unknown=12,
                percent=round(100 * registered / (registered + unregistered), 2),
                admins_registered=30 + i // 5,
                admins_unregistered=max(0, 8 - i // 4),
                enabled=registered + unregistered + 12,
                admins_percent=round(100 * (30 + i // 5) / (30 + i // 5 + max(0, 8 - i // 4)), 2),
                guests_registered=120 + i,
                guests_unregistered=max(0, 60 - i),
                guests_percent=round(100 * (120 + i) / (120 + i + max(0, 60 - i)), 2),
                changes={"registered": moved, "new": 3},
                phases={
                    "phase1": _in_scope(300 + 2 * i, max(0, 90 - 2 * i)),
                    "phase2": _in_scope(280 + 3 * i, 140 - i),
                },
            )
        )
    return points


def _in_scope(registered: int, unregistered: int) -> ScopeCoverage:
    total = registered + unregistered
    return ScopeCoverage(total + 4, registered, unregistered, 4, round(100 * registered / total, 2))


def _user(i: int) -> UserRecord:
    guest = i % 3 == 0
    return UserRecord(
        id=f"{i:08x}-0000-4000-8000-000000000000",
        upn=f"person{i}_fabrikam.example#EXT#@contoso.example" if guest else f"person{i}@contoso.example",
        display_name="<script>alert(1)</script>" if i == 0 else f"Person {i}",
        user_type=UserType.GUEST if guest else UserType.MEMBER,
        enabled=True,
        mfa_registered=False,
        mfa_capable=False,
        is_admin=not guest,
        methods=(),
        default_method=None,
        email=None,
        created=None,
        external_user_state=None,
        on_premises_sync=False,
    )


def report_html() -> str:
    waves = parse_waves(DEFAULT_WAVES_JSON)
    changes = [
        ChangeEntry(
            f"{i:08x}",
            "registered",
            2,
            f"person{i}@contoso.example",
            f"Person {i}",
            "member",
            {"mfaRegistered": False, "methods": []},
            {"mfaRegistered": True, "methods": ["fido2"]},
            NOW.isoformat(),
            "2026-06-01",
            "r",
        )
        for i in range(8)
    ]
    return render_report(
        ReportData(
            generated_at=NOW,
            waves=waves,
            coverage=_coverage(60),
            exposures=[exposure(_user(i), waves, NOW.date()) for i in range(12)],
            unregistered_total=12,
            night="2026-06-01",
            changes=changes,
            changes_total=8,
            reminders=[
                ReminderLine(
                    f"{i:08x}",
                    NOW.isoformat(),
                    "phase2",
                    "now required (first notice)",
                    outcome,
                    detail,
                    "",
                    f"Person {i}",
                )
                for i, (outcome, detail) in enumerate([("sent", ""), ("failed", "no such mailbox"), ("accepted", "")])
            ],
            reminders_day="2026-06-01",
            reminders_total=3,
        )
    )


def test_chromium_renders_the_report(tmp_path: Path) -> None:
    if chromium() is None:
        pytest.fail("chromium is not installed: run `make browser` (apt-get install chromium)")
    page = tmp_path / "report.html"
    page.write_text(report_html(), encoding="utf-8")
    png = tmp_path / "report.png"
    screenshot(page, png)

    assert png.exists() and png.stat().st_size > 20_000
    image = decode(png.read_bytes())
    assert (image.width, image.height) == (1280, 1600)
    colours = {image.pixel(x, y) for y in range(0, image.height, 3) for x in range(0, image.width, 3)}
    assert len(colours) > 100  # text, badges, charts: not a blank page
    assert image.pixel(2, 2) == BACKGROUND  # the page's own background, not an error page
    assert GREEN in colours and RED in colours  # the chart's bars and the "enforced" badges were drawn
    assert PHASE1 in colours and PHASE2 in colours  # the per-phase coverage lines (their legend swatches)
