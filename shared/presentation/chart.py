"""The geometry of the report's charts: numbers in, SVG coordinates out. Pure.

The template draws what these functions compute, so the report needs no charting library and no
network: a chart is a few rectangles and a polyline in an inline ``<svg>``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

MARGIN_LEFT = 48.0
MARGIN_RIGHT = 12.0
MARGIN_TOP = 28.0
MARGIN_BOTTOM = 36.0


@dataclass(frozen=True)
class Series:
    name: str
    css: str  # a class the report's stylesheet colours
    values: Sequence[float | None]  # one per night; None: no figure that night


@dataclass(frozen=True)
class Tick:
    pos: float
    label: str


@dataclass(frozen=True)
class Segment:
    y: float
    height: float
    css: str


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    segments: tuple[Segment, ...]
    title: str  # the tooltip: the night and its figures


@dataclass(frozen=True)
class Line:
    name: str
    css: str
    points: str  # "x,y x,y ..." for <polyline>
    dots: tuple[tuple[float, float, str], ...]  # x, y, tooltip


@dataclass(frozen=True)
class Frame:
    title: str
    width: float
    height: float
    left: float
    top: float
    right: float
    bottom: float
    y_ticks: tuple[Tick, ...]
    x_ticks: tuple[Tick, ...]
    legend: tuple[tuple[float, str, str], ...]  # x, name, css


@dataclass(frozen=True)
class BarChart:
    frame: Frame
    bars: tuple[Bar, ...]


@dataclass(frozen=True)
class LineChart:
    frame: Frame
    lines: tuple[Line, ...]


def nice_max(value: float) -> float:
    """The smallest 1, 2 or 5 x 10^k at or above ``value`` (at least 1)."""
    if value <= 1:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return float(step * magnitude)
    return float(10 * magnitude)  # pragma: no cover - the loop always returns


def _label(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"


def _frame(
    title: str, nights: Sequence[str], series: Sequence[Series], width: float, height: float, y_max: float, unit: str
) -> Frame:
    left, top = MARGIN_LEFT, MARGIN_TOP
    right, bottom = width - MARGIN_RIGHT, height - MARGIN_BOTTOM
    y_ticks = tuple(Tick(bottom - (bottom - top) * i / 4, _label(y_max * i / 4) + unit) for i in range(5))
    x_ticks: list[Tick] = []
    if nights:
        step = (right - left) / len(nights)
        every = max(1, math.ceil(len(nights) / 6))  # at most about six date labels
        for i in range(0, len(nights), every):
            x_ticks.append(Tick(left + step * (i + 0.5), nights[i][5:]))  # MM-DD
    legend: list[tuple[float, str, str]] = []
    x = left
    for s in series:
        legend.append((round(x, 2), s.name, s.css))
        x += 24 + 6.5 * len(s.name)  # swatch, gap and about 6.5 px per character at 11 px
    return Frame(title, width, height, left, top, right, bottom, y_ticks, tuple(x_ticks), tuple(legend))


def stacked_bars(
    title: str, nights: Sequence[str], series: Sequence[Series], *, width: float = 380, height: float = 220
) -> BarChart:
    """One bar per night, the series stacked bottom-up; no bar for a night without any figure."""
    totals = [sum(s.values[i] or 0 for s in series) for i in range(len(nights))]
    y_max = nice_max(max(totals, default=0))
    frame = _frame(title, nights, series, width, height, y_max, "")
    if not nights:
        return BarChart(frame, ())
    step = (frame.right - frame.left) / len(nights)
    bar_width = max(1.0, step * 0.8)
    scale = (frame.bottom - frame.top) / y_max
    bars: list[Bar] = []
    for i, night in enumerate(nights):
        if all(s.values[i] is None for s in series):
            continue  # no figure that night (e.g. recorded before these figures existed): no bar
        y = frame.bottom
        segments: list[Segment] = []
        for s in series:
            h = (s.values[i] or 0) * scale
            y -= h
            segments.append(Segment(round(y, 2), round(h, 2), s.css))
        figures = ", ".join(f"{s.name} {_label(s.values[i] or 0)}" for s in series)
        bars.append(
            Bar(
                round(frame.left + step * i + (step - bar_width) / 2, 2),
                round(bar_width, 2),
                tuple(segments),
                f"{night}: {figures}",
            )
        )
    return BarChart(frame, tuple(bars))


def lines(
    title: str,
    nights: Sequence[str],
    series: Sequence[Series],
    *,
    width: float = 400,
    height: float = 220,
    y_max: float = 100.0,
    unit: str = "%",
) -> LineChart:
    """One polyline per series; nights without a figure are skipped."""
    frame = _frame(title, nights, series, width, height, y_max, unit)
    if not nights:
        return LineChart(frame, ())
    step = (frame.right - frame.left) / len(nights)
    scale = (frame.bottom - frame.top) / y_max
    drawn: list[Line] = []
    for s in series:
        dots = tuple(
            (
                round(frame.left + step * (i + 0.5), 2),
                round(frame.bottom - min(v, y_max) * scale, 2),
                f"{nights[i]}: {s.name} {_label(v)}{unit}",
            )
            for i, v in enumerate(s.values)
            if v is not None
        )
        drawn.append(Line(s.name, s.css, " ".join(f"{x},{y}" for x, y, _ in dots), dots))
    return LineChart(frame, tuple(drawn))
