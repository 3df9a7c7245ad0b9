"""The tenant's enforcement waves: configuration, validated, and the arithmetic of "days left".

No API exposes a tenant's enforcement date: Microsoft tells Global Administrators by email and
Service Health, and postponements move it (phase 2 at the latest to 2026-07-01). So the waves are
configuration (the ENFORCEMENT_WAVES setting, a JSON list) and a changed date simply re-plans.
A wave in the past is the normal case, not an error.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from shared.domain.scope import Phase


class Audience(StrEnum):
    ALL = "all"
    MEMBERS = "members"
    GUESTS = "guests"


@dataclass(frozen=True, slots=True)
class Wave:
    id: str
    label: str
    date: date
    phase: Phase
    applies_to: Audience = Audience.ALL


class WaveConfigError(ValueError):
    """ENFORCEMENT_WAVES is not valid; the message lists every problem."""


# The latest dates Microsoft allowed by postponement; most tenants' real dates are earlier.
DEFAULT_WAVES_JSON = json.dumps(
    [
        {
            "id": "phase1",
            "label": "Azure portal, Microsoft Entra and Intune admin centers",
            "date": "2025-09-30",
            "phase": "phase1",
            "appliesTo": "all",
        },
        {
            "id": "phase2",
            "label": "Azure CLI, Azure PowerShell, Azure mobile app, IaC tools and ARM writes",
            "date": "2026-07-01",
            "phase": "phase2",
            "appliesTo": "all",
        },
    ]
)

_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


def parse_waves(text: str) -> tuple[Wave, ...]:
    """Parse and validate the waves; every problem is reported at once."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise WaveConfigError(f"ENFORCEMENT_WAVES is not valid JSON: {exc}") from None
    if not isinstance(raw, list) or not raw:
        raise WaveConfigError("ENFORCEMENT_WAVES must be a non-empty JSON list of waves")
    problems: list[str] = []
    waves: list[Wave] = []
    seen: set[str] = set()
    for i, item in enumerate(raw, start=1):
        where = f"wave {i}"
        if not isinstance(item, dict):
            problems.append(f"{where} is not an object")
            continue
        wave_id = item.get("id")
        if not isinstance(wave_id, str) or not _ID.fullmatch(wave_id):
            problems.append(f"{where}: id must be 1-32 of a-z, 0-9, '-', '_', got {wave_id!r}")
            continue
        where = f"wave {wave_id!r}"
        if wave_id in seen:
            problems.append(f"{where}: the id is used twice")
        seen.add(wave_id)
        try:
            when = date.fromisoformat(str(item.get("date")))
        except ValueError:
            problems.append(f"{where}: date must be YYYY-MM-DD, got {item.get('date')!r}")
            continue
        phase_raw = item.get("phase")
        if phase_raw not in {p.value for p in Phase}:
            problems.append(f"{where}: phase must be one of phase1, phase2, got {phase_raw!r}")
            continue
        audience_raw = item.get("appliesTo", "all")
        if audience_raw not in {a.value for a in Audience}:
            problems.append(f"{where}: appliesTo must be all, members or guests, got {audience_raw!r}")
            continue
        label = item.get("label") or f"Mandatory MFA {phase_raw}"
        waves.append(Wave(wave_id, str(label)[:200], when, Phase(phase_raw), Audience(audience_raw)))
    if problems:
        raise WaveConfigError("Invalid ENFORCEMENT_WAVES:\n- " + "\n- ".join(problems))
    return tuple(sorted(waves, key=lambda w: (w.date, w.id)))


def days_left(wave: Wave, today: date) -> int:
    """Days until the wave's date; 0 on the day, negative once enforced."""
    return (wave.date - today).days


def applies(wave: Wave, *, is_guest: bool, phases: tuple[Phase, ...]) -> bool:
    """Whether a person in scope of ``phases`` is affected by ``wave``."""
    if wave.phase not in phases:
        return False
    if wave.applies_to is Audience.MEMBERS:
        return not is_guest
    if wave.applies_to is Audience.GUESTS:
        return is_guest
    return True
