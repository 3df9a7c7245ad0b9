"""The readiness report: one self-contained HTML page. Pure (data in, text out).

Inline CSS, inline SVG charts, no scripts, no external references: it opens from a file or an
email attachment with no network. Jinja2 autoescapes everything, so a display name such as
``<script>`` is shown as text; the HTTP API also sends a Content-Security-Policy that forbids
scripts, as a second line of defence.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache

from jinja2 import Environment, PackageLoader, StrictUndefined

from shared.adapters.history_reader import ChangeEntry, CoveragePoint
from shared.domain.readiness import Exposure
from shared.domain.scope import Phase
from shared.domain.waves import Wave, days_left
from shared.presentation import chart
from shared.presentation.text import days_text, describe_change
from shared.presentation.timeline import ReminderLine

# The Content-Security-Policy the report is served with: inline styles only, nothing else.
CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'"


@dataclass(frozen=True)
class ReportData:
    generated_at: datetime
    waves: tuple[Wave, ...]
    coverage: Sequence[CoveragePoint]  # oldest night first
    exposures: Sequence[Exposure]  # most urgent first (possibly cut; see unregistered_total)
    unregistered_total: int
    night: str | None  # the latest completed night
    changes: Sequence[ChangeEntry]  # that night's changes (possibly a sample; see changes_total)
    changes_total: int
    reminders: Sequence[ReminderLine] | None = None  # None: no reminder data, no section
    reminders_day: str | None = None  # the UTC day the reminders are of
    reminders_total: int = 0  # reminders recorded that day (``reminders`` may be a sample)
    reminders_by_outcome: Mapping[str, int] = field(default_factory=dict)  # over all of them


@cache
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("shared.presentation", "templates"),
        autoescape=True,  # always, whatever the template's name
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


# The panels per enforcement phase, with the apps each phase covers (shared/domain/scope.py).
PHASE_TITLES = {
    Phase.PORTALS: "Phase 1 in scope: portals, admin centers",
    Phase.ARM: "Phase 2 in scope: CLI, PowerShell, IaC, ARM",
}
_PHASE_LINES = {Phase.PORTALS: "Phase 1 in scope", Phase.ARM: "Phase 2 in scope"}


def by_phase(points: Sequence[CoveragePoint]) -> bool:
    """Whether the series can be charted by enforcement phase: any night recorded the figures
    (nights recorded before them show no bar; with none at all, admins and guests stand in)."""
    return any(p.phases for p in points)


def _charts(points: Sequence[CoveragePoint]) -> tuple[list[chart.BarChart], chart.LineChart]:
    nights = [p.night for p in points]
    registered, unregistered, unknown = "Registered", "Unregistered", "Not yet in the report"
    everyone = chart.stacked_bars(
        "All enabled accounts",
        nights,
        [
            chart.Series(registered, "reg", [p.registered for p in points]),
            chart.Series(unregistered, "unreg", [p.unregistered for p in points]),
            chart.Series(unknown, "unknown", [p.unknown for p in points]),
        ],
    )
    if by_phase(points):
        panels = [everyone]
        lines = [chart.Series("All enabled", "all", [p.percent for p in points])]
        for phase in Phase:
            figures = [p.phases.get(phase.value) for p in points]
            panels.append(
                chart.stacked_bars(
                    PHASE_TITLES[phase],
                    nights,
                    [
                        chart.Series(registered, "reg", [f.registered if f else None for f in figures]),
                        chart.Series(unregistered, "unreg", [f.unregistered if f else None for f in figures]),
                        chart.Series(unknown, "unknown", [f.unknown if f else None for f in figures]),
                    ],
                )
            )
            lines.append(chart.Series(_PHASE_LINES[phase], phase.value, [f.percent if f else None for f in figures]))
        title = "Coverage: share registered (of those the report lists), all enabled and in scope per phase"
    else:  # nights recorded before scope was: admins and guests are who enforcement applies to
        panels = [
            everyone,
            chart.stacked_bars(
                "Admins",
                nights,
                [
                    chart.Series(registered, "reg", [p.admins_registered for p in points]),
                    chart.Series(unregistered, "unreg", [p.admins_unregistered for p in points]),
                ],
            ),
            chart.stacked_bars(
                "Guests",
                nights,
                [
                    chart.Series(registered, "reg", [p.guests_registered for p in points]),
                    chart.Series(unregistered, "unreg", [p.guests_unregistered for p in points]),
                ],
            ),
        ]
        lines = [
            chart.Series("All enabled", "all", [p.percent for p in points]),
            chart.Series("Admins", "admins", [p.admins_percent for p in points]),
            chart.Series("Guests", "guests", [p.guests_percent for p in points]),
        ]
        title = "Coverage: share registered (of those the report lists)"
    return panels, chart.lines(title, nights, lines, width=1160, height=240)


# How an outcome is badged: red needs a look, green reached the person, grey did not go out.
_OUTCOME_CSS = {"failed": "past", "unconfirmed": "soon", "unsent": "soon", "sent": "later", "accepted": "later"}


def outcome_css(outcome: str) -> str:
    return _OUTCOME_CSS.get(outcome, "na")


@dataclass(frozen=True)
class _DaysCell:
    text: str
    css: str  # "past" (enforced), "soon" (30 days or fewer), "later", "na" (wave does not apply)


def _days_cells(exposure: Exposure, waves: Sequence[Wave]) -> list[_DaysCell]:
    days = {w.wave.id: w.days_left for w in exposure.waves}
    cells = []
    for wave in waves:
        left = days.get(wave.id)
        if left is None:
            cells.append(_DaysCell("not affected", "na"))
        else:
            cells.append(_DaysCell(days_text(left), "past" if left <= 0 else "soon" if left <= 30 else "later"))
    return cells


def render_report(data: ReportData) -> str:
    today = data.generated_at.date()
    panels, percent = _charts(data.coverage)
    by_kind = Counter(c.kind for c in data.changes)
    latest = data.coverage[-1] if data.coverage else None
    if latest is not None and latest.night == data.night and latest.changes:
        by_kind = Counter({k: v for k, v in latest.changes.items() if v})
    reminder_counts = data.reminders_by_outcome or Counter(r.outcome for r in data.reminders or ())
    template = _environment().get_template("report.html.j2")
    return template.render(
        data=data,
        today=today,
        latest=latest,
        panels=panels,
        percent=percent,
        by_kind=sorted(by_kind.items(), key=lambda kv: (-kv[1], kv[0])),
        by_phase=by_phase(data.coverage),
        phase_gaps=by_phase(data.coverage) and not all(p.phases for p in data.coverage),
        reminder_counts=sorted(reminder_counts.items(), key=lambda kv: (-kv[1], kv[0])),
        reminders_total=max(data.reminders_total, len(data.reminders or ())),
        waves=[(w, days_left(w, today)) for w in data.waves],
        exposure_rows=[(e, _days_cells(e, data.waves)) for e in data.exposures],
        days_text=days_text,
        describe_change=describe_change,
        outcome_css=outcome_css,
    )
