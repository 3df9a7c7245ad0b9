"""The answers as JSON objects and CSV rows. Pure.

JSON uses Graph's camelCase names. CSV is for spreadsheets, so every text cell that a spreadsheet
would treat as a formula (starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return) is
prefixed with a single quote; numbers are written as numbers (a negative "days left" stays a
number). Display names and UPNs come from the directory and may contain anything.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from shared.adapters.history_reader import ChangeEntry, CoveragePoint, ScopeCoverage
from shared.domain.readiness import Exposure
from shared.domain.records import StoredUser
from shared.domain.scope import Phase, in_scope, phases_of
from shared.domain.waves import Wave
from shared.presentation.timeline import ReminderLine, TimelineItem

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

Row = Mapping[str, object]


def user_json(stored: StoredUser) -> dict[str, Any]:
    r = stored.record
    return {
        "id": r.id,
        "userPrincipalName": r.upn,
        "displayName": r.display_name,
        "userType": r.user_type.value,
        "enabled": r.enabled,
        "deleted": stored.deleted,
        "mfaRegistered": r.mfa_registered,
        "mfaCapable": r.mfa_capable,
        "isAdmin": r.is_admin,
        "methods": list(r.methods),
        "defaultMethod": r.default_method,
        "email": r.email,
        "created": r.created,
        "externalUserState": r.external_user_state,
        "inScope": in_scope(r),
        "phases": [p.value for p in phases_of(r)],
        "scopeKnown": r.scope.known,
        "scopeReasons": list(r.scope.reasons),
        "exclusion": r.scope.exclusion,
        "version": stored.version,
        "firstSeen": stored.first_seen,
    }


def change_json(c: ChangeEntry) -> dict[str, Any]:
    return {
        "night": c.night,
        "seenAt": c.seen_at,
        "userId": c.user_id,
        "userPrincipalName": c.upn,
        "displayName": c.display_name,
        "userType": c.user_type,
        "kind": c.kind,
        "version": c.version,
        "before": c.before,
        "after": c.after,
        "runId": c.run_id,
    }


def reminder_json(r: ReminderLine) -> dict[str, Any]:
    return {
        "at": r.at,
        "userId": r.user_id,
        "userPrincipalName": r.upn,
        "displayName": r.display_name,
        "wave": r.wave_id,
        "stage": r.stage,
        "outcome": r.outcome,
        "detail": r.detail,
        "waveDate": r.wave_date,
        "step": r.step,
        "recipient": r.recipient,
    }


def timeline_json(item: TimelineItem) -> dict[str, Any]:
    if isinstance(item, ChangeEntry):
        return {"type": "change", **change_json(item)}
    return {"type": "reminder", **reminder_json(item)}


def coverage_json(p: CoveragePoint) -> dict[str, Any]:
    return {
        "night": p.night,
        "users": p.users,
        "members": p.members,
        "guests": p.guests,
        "enabled": p.enabled,
        "registered": p.registered,
        "unregistered": p.unregistered,
        "unknown": p.unknown,
        "coveragePercent": p.percent,
        "admins": {
            "registered": p.admins_registered,
            "unregistered": p.admins_unregistered,
            "percent": p.admins_percent,
        },
        "guestAccounts": {
            "registered": p.guests_registered,
            "unregistered": p.guests_unregistered,
            "percent": p.guests_percent,
        },
        "memberAccounts": {
            "registered": p.members_registered,
            "unregistered": p.members_unregistered,
            "percent": p.members_percent,
        },
        "changes": dict(p.changes),
        # In scope of enforcement, overall and per phase; null for nights recorded before scope was.
        "inScope": _scope_json(p.in_scope),
        "phases": {phase.value: _scope_json(p.phases.get(phase.value)) for phase in Phase} if p.phases else None,
        "runId": p.run_id,
    }


def _scope_json(c: ScopeCoverage | None) -> dict[str, Any] | None:
    if c is None:
        return None
    return {
        "users": c.users,
        "registered": c.registered,
        "unregistered": c.unregistered,
        "unknown": c.unknown,
        "percent": c.percent,
    }


def exposure_json(e: Exposure) -> dict[str, Any]:
    r = e.user
    return {
        "id": r.id,
        "userPrincipalName": r.upn,
        "displayName": r.display_name,
        "userType": r.user_type.value,
        "isAdmin": r.is_admin,
        "email": r.email,
        "phases": [p.value for p in e.phases],
        "daysLeft": e.days_left,
        "waves": [
            {
                "id": w.wave.id,
                "label": w.wave.label,
                "date": w.wave.date.isoformat(),
                "phase": w.wave.phase.value,
                "daysLeft": w.days_left,
            }
            for w in e.waves
        ],
        "scopeReasons": list(r.scope.reasons),
        "exclusion": r.scope.exclusion,
    }


# --- CSV -----------------------------------------------------------------------------------------

CHANGE_COLUMNS = (
    "night",
    "seenAt",
    "userId",
    "userPrincipalName",
    "displayName",
    "userType",
    "kind",
    "version",
    "before",
    "after",
    "runId",
)
TIMELINE_COLUMNS = (
    "type",
    *CHANGE_COLUMNS,
    "at",
    "wave",
    "waveDate",
    "step",
    "stage",
    "outcome",
    "detail",
    "recipient",
)
_SCOPE_FIGURES = ("users", "registered", "unregistered", "unknown", "percent")
# inScopeUsers, inScopeRegistered, ..., phase1Users, ..., phase2Percent: blank for nights recorded
# before scope was.
_SCOPE_PREFIXES = ("inScope", *(phase.value for phase in Phase))
_SCOPE_COLUMNS = tuple(f"{prefix}{figure.capitalize()}" for prefix in _SCOPE_PREFIXES for figure in _SCOPE_FIGURES)
COVERAGE_COLUMNS = (
    "night",
    "users",
    "enabled",
    "registered",
    "unregistered",
    "unknown",
    "coveragePercent",
    "adminsRegistered",
    "adminsUnregistered",
    "adminsPercent",
    "guestsRegistered",
    "guestsUnregistered",
    "guestsPercent",
    "membersRegistered",
    "membersUnregistered",
    "membersPercent",
    *_SCOPE_COLUMNS,
    "runId",
)


def _compact(value: Mapping[str, Any] | None) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")) if value is not None else ""


def change_row(c: ChangeEntry) -> dict[str, object]:
    row = change_json(c)
    row["before"], row["after"] = _compact(c.before), _compact(c.after)
    return row


def timeline_row(item: TimelineItem) -> dict[str, object]:
    if isinstance(item, ChangeEntry):
        return {"type": "change", **change_row(item)}
    return {"type": "reminder", **reminder_json(item)}


def coverage_row(p: CoveragePoint) -> dict[str, object]:
    return {
        "night": p.night,
        "users": p.users,
        "enabled": p.enabled,
        "registered": p.registered,
        "unregistered": p.unregistered,
        "unknown": p.unknown,
        "coveragePercent": p.percent,
        "adminsRegistered": p.admins_registered,
        "adminsUnregistered": p.admins_unregistered,
        "adminsPercent": p.admins_percent,
        "guestsRegistered": p.guests_registered,
        "guestsUnregistered": p.guests_unregistered,
        "guestsPercent": p.guests_percent,
        "membersRegistered": p.members_registered,
        "membersUnregistered": p.members_unregistered,
        "membersPercent": p.members_percent,
        **_scope_cells("inScope", p.in_scope),
        **{k: v for phase in Phase for k, v in _scope_cells(phase.value, p.phases.get(phase.value)).items()},
        "runId": p.run_id,
    }


def _scope_cells(prefix: str, c: ScopeCoverage | None) -> dict[str, object]:
    figures = _scope_json(c) or {}
    return {f"{prefix}{figure.capitalize()}": figures.get(figure) for figure in _SCOPE_FIGURES}


def exposure_columns(waves: Sequence[Wave]) -> tuple[str, ...]:
    return (
        "id",
        "userPrincipalName",
        "displayName",
        "userType",
        "isAdmin",
        "email",
        "phases",
        "daysLeft",
        *(f"daysLeft:{w.id}" for w in waves),
        "exclusion",
    )


def exposure_row(e: Exposure) -> dict[str, object]:
    r = e.user
    row: dict[str, object] = {
        "id": r.id,
        "userPrincipalName": r.upn,
        "displayName": r.display_name,
        "userType": r.user_type.value,
        "isAdmin": r.is_admin,
        "email": r.email,
        "phases": ";".join(p.value for p in e.phases),
        "daysLeft": e.days_left,
        "exclusion": r.scope.exclusion,
    }
    for w in e.waves:
        row[f"daysLeft:{w.wave.id}"] = w.days_left
    return row


def safe_cell(value: object) -> object:
    """A value as a spreadsheet should see it: text that looks like a formula is quoted."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return value
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def csv_text(columns: Sequence[str], rows: Iterable[Row]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([safe_cell(row.get(c)) for c in columns])
    return out.getvalue()
