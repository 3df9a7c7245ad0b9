"""Plain-text pieces shared by the terminal and the report: a change in words, days in words,
and aligned tables for a terminal. Pure."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from shared.adapters.history_reader import ChangeEntry


def facts(values: Mapping[str, Any] | None) -> str:
    if not values:
        return "-"
    parts = []
    for key, value in values.items():
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value) or "none"
        elif value is None:
            value = "unknown"
        parts.append(f"{key}={value}")
    return "; ".join(parts)


def describe_change(entry: ChangeEntry) -> str:
    """What changed, in one line: the facts of a new/restored/deleted user, else before -> after."""
    if entry.kind in ("new", "restored"):
        return facts(entry.after)
    if entry.kind == "deleted":
        return facts(entry.before)
    return f"{facts(entry.before)} -> {facts(entry.after)}"


def days_text(days: int | None) -> str:
    if days is None:
        return "-"
    if days > 1:
        return f"{days} days left"
    if days == 1:
        return "1 day left"
    if days == 0:
        return "enforced today"
    return f"enforced {-days} days ago" if days < -1 else "enforced yesterday"


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _clip(text: str, limit: int) -> str:
    text = "".join(ch if ch.isprintable() else " " for ch in text)  # no terminal control codes
    if _width(text) <= limit:
        return text
    out, used = "", 0
    for ch in text:
        w = _width(ch)
        if used + w > limit - 1:
            break
        out, used = out + ch, used + w
    return out + "…"


def table(columns: Sequence[str], rows: Sequence[Sequence[object]], *, max_width: int = 40) -> str:
    """An aligned text table; cells longer than ``max_width`` are cut with an ellipsis."""
    cells = [[_clip("" if v is None else str(v), max_width) for v in row] for row in rows]
    widths = [_width(c) for c in columns]
    for row in cells:
        widths = [max(w, _width(c)) for w, c in zip(widths, row, strict=True)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v + " " * (w - _width(v)) for v, w in zip(values, widths, strict=True)).rstrip()

    out = [line(list(columns)), line(["-" * w for w in widths])]
    out.extend(line(row) for row in cells)
    return "\n".join(out)
