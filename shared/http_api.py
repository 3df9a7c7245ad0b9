"""The HTTP API: what the HTTP triggers in function_app.py call. Request in, response out.

    GET /api/users/{id or UPN}/history   a user's current state, timeline and reminders
    GET /api/changes?date=YYYY-MM-DD     what changed on a night (default: the latest completed one)
    GET /api/unregistered?scope=&wave=   who is unregistered and in scope, days left per wave
    GET /api/coverage?from=&to=          the coverage series (all enabled, and in scope per phase)
    GET /api/report                      the HTML report

JSON by default; CSV with ``Accept: text/csv`` or ``?format=csv``. Lists come in pages of
``?limit=`` (1-1000, default 100) with a continuation token (``next`` in JSON, the
``X-Continuation-Token`` header in CSV) to pass back as ``?continuation=``. Errors are JSON
``{"error": {"code", "message"}}``: 400 for a bad parameter, 404 for an unknown user.

Each handler validates its parameters (shared.params), opens the tables (shared.wiring), asks
shared.queries and serialises (shared.presentation); none builds a query itself.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import azure.functions as func
from azure.core.exceptions import ResourceNotFoundError

from shared import entrypoints, queries
from shared.adapters.history_reader import Cursor, Page
from shared.config import Settings, SettingsError
from shared.domain.readiness import UnknownChoice, find_wave, parse_scope
from shared.params import BadParameter, OutputFormat, parse_date, parse_format, parse_limit, parse_user_ref
from shared.presentation import serialize as ser
from shared.presentation import tokens
from shared.presentation.report import CONTENT_SECURITY_POLICY, render_report
from shared.presentation.timeline import merge
from shared.wiring import ReadSide, open_read_side

log = logging.getLogger(__name__)

MAX_REPORT_NIGHTS = 366
_COMMON_HEADERS = {
    "Cache-Control": "no-store",  # personal data: never cached by a proxy or browser
    "X-Content-Type-Options": "nosniff",
}


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class _Answer:
    body: dict[str, Any]
    csv_columns: Sequence[str]
    csv_rows: Sequence[ser.Row]
    filename: str
    next_token: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


_Handler = Callable[[func.HttpRequest, ReadSide, Settings, datetime], Awaitable[_Answer]]


# --- the endpoints --------------------------------------------------------------------------------


async def user_history(req: func.HttpRequest) -> func.HttpResponse:
    return await _serve(req, _user_history)


async def changes(req: func.HttpRequest) -> func.HttpResponse:
    return await _serve(req, _changes)


async def unregistered(req: func.HttpRequest) -> func.HttpResponse:
    return await _serve(req, _unregistered)


async def coverage(req: func.HttpRequest) -> func.HttpResponse:
    return await _serve(req, _coverage)


async def report(req: func.HttpRequest) -> func.HttpResponse:
    """The HTML report, with what happened to reminders on the latest night's day."""
    try:
        nights = _nights(req.params.get("nights"))
        settings = entrypoints.load_settings()
        async with open_read_side(settings) as side:
            data = await queries.report(side.history, settings.waves, now(), nights=nights, ledger=side.ledger)
    except Exception as exc:
        return _failure(exc)
    headers = {**_COMMON_HEADERS, "Content-Security-Policy": CONTENT_SECURITY_POLICY}
    return func.HttpResponse(
        render_report(data), status_code=200, mimetype="text/html", charset="utf-8", headers=headers
    )


# --- what each endpoint asks ---------------------------------------------------------------------


async def _user_history(req: func.HttpRequest, side: ReadSide, _s: Settings, _now: datetime) -> _Answer:
    ref = parse_user_ref(req.route_params.get("id_or_upn", ""))
    limit = parse_limit(req.params.get("limit"))
    user = await queries.find_user(side.history, ref)
    binding = {"user": user.record.id}
    cursor = _cursor(req, "history", binding)
    # Every reminder comes with the first page (a handful per wave); later pages page the changes.
    reminders = await queries.reminders_of(side.ledger, user) if cursor is None else None
    answer = await queries.history(side.history, user, limit, cursor, reminders=reminders)
    body: dict[str, Any] = {
        "user": ser.user_json(answer.user),
        "events": [ser.change_json(e) for e in answer.events.items],
    }
    if answer.reminders is not None:
        body["reminders"] = [ser.reminder_json(r) for r in answer.reminders]
    # CSV: one timeline, changes and reminders in time order
    items = merge(answer.events.items, answer.reminders)
    return _paged(
        req,
        body,
        "history",
        binding,
        answer.events,
        ser.TIMELINE_COLUMNS,
        [ser.timeline_row(i) for i in items],
        f"history-{user.record.id}",
    )


async def _changes(req: func.HttpRequest, side: ReadSide, _s: Settings, _now: datetime) -> _Answer:
    reader = side.history
    asked = req.params.get("date")
    night = parse_date(asked, "date").isoformat() if asked else None
    limit = parse_limit(req.params.get("limit"))
    if night is None:
        night = await reader.latest_night()
    if night is None:
        body: dict[str, Any] = {"night": None, "items": [], "count": 0, "message": "no sync has completed yet"}
        return _Answer(body, ser.CHANGE_COLUMNS, [], "changes")
    binding = {"night": night}
    answer = await queries.changes(reader, night, limit, _cursor(req, "changes", binding))
    page = answer.changes
    body = {"night": night, "items": [ser.change_json(c) for c in page.items]}
    return _paged(
        req,
        body,
        "changes",
        binding,
        page,
        ser.CHANGE_COLUMNS,
        [ser.change_row(c) for c in page.items],
        f"changes-{night}",
    )


async def _unregistered(req: func.HttpRequest, side: ReadSide, settings: Settings, at: datetime) -> _Answer:
    scope = parse_scope(req.params.get("scope"))
    wave = find_wave(settings.waves, req.params.get("wave"))
    limit = parse_limit(req.params.get("limit"))
    binding = {"scope": scope.value, "wave": wave.id if wave else ""}
    page = await queries.unregistered(
        side.history, settings.waves, at, scope, wave, limit, _cursor(req, "unregistered", binding)
    )
    body = {
        "asOf": at.date().isoformat(),
        "scope": scope.value,
        "wave": wave.id if wave else None,
        "items": [ser.exposure_json(e) for e in page.items],
    }
    return _paged(
        req,
        body,
        "unregistered",
        binding,
        page,
        ser.exposure_columns(settings.waves),
        [ser.exposure_row(e) for e in page.items],
        "unregistered",
    )


async def _coverage(req: func.HttpRequest, side: ReadSide, _s: Settings, at: datetime) -> _Answer:
    default_from, default_to = queries.default_coverage_range(at)
    first = parse_date(req.params.get("from") or default_from, "from").isoformat()
    last = parse_date(req.params.get("to") or default_to, "to").isoformat()
    if first > last:
        raise BadParameter(f"from ({first}) is after to ({last})")
    limit = parse_limit(req.params.get("limit"))
    binding = {"from": first, "to": last}
    page = await side.history.coverage_page(first, last, limit, _cursor(req, "coverage", binding))
    body = {"from": first, "to": last, "items": [ser.coverage_json(p) for p in page.items]}
    return _paged(
        req,
        body,
        "coverage",
        binding,
        page,
        ser.COVERAGE_COLUMNS,
        [ser.coverage_row(p) for p in page.items],
        "coverage",
    )


# --- plumbing ------------------------------------------------------------------------------------


def _nights(value: str | None) -> int:
    if value is None or value.strip() == "":
        return queries.DEFAULT_COVERAGE_NIGHTS
    text = value.strip()
    if not text.isdigit() or not 1 <= int(text) <= MAX_REPORT_NIGHTS:
        raise BadParameter(f"nights must be a whole number from 1 to {MAX_REPORT_NIGHTS}, got {value!r}")
    return int(text)


def _cursor(req: func.HttpRequest, query: str, binding: dict[str, str]) -> Cursor | None:
    token = req.params.get("continuation")
    return tokens.decode(token, query, binding) if token else None


def _paged(
    req: func.HttpRequest,
    body: dict[str, Any],
    query: str,
    binding: dict[str, str],
    page: Page[Any],
    columns: Sequence[str],
    rows: Sequence[ser.Row],
    filename: str,
) -> _Answer:
    token = tokens.encode(query, binding, page.next) if page.next else None
    count_key = "events" if "events" in body else "items"
    body["count"] = len(body[count_key])
    body["next"] = token
    body["nextLink"] = _next_link(req.url, token, binding if query == "changes" else {}) if token else None
    return _Answer(body, columns, rows, filename, token)


def _next_link(url: str, token: str, pinned: dict[str, str]) -> str:
    """The request's URL with the next token, the resolved night pinned (so a night completing
    meanwhile does not change the answer) and without a function key in ``code=``."""
    parts = urlsplit(url)
    params = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("continuation", "code")]
    if "night" in pinned and not any(k == "date" for k, _ in params):
        params.append(("date", pinned["night"]))
    params.append(("continuation", token))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(params), ""))


async def _serve(req: func.HttpRequest, handler: _Handler) -> func.HttpResponse:
    try:
        output = parse_format(req.params.get("format"), req.headers.get("accept"))
        settings = entrypoints.load_settings()
        async with open_read_side(settings) as side:
            answer = await handler(req, side, settings, now())
    except Exception as exc:
        return _failure(exc)
    headers = dict(_COMMON_HEADERS)
    if answer.next_token:
        headers["X-Continuation-Token"] = answer.next_token
    if output is OutputFormat.CSV:
        headers["Content-Disposition"] = f'attachment; filename="{answer.filename}.csv"'
        return func.HttpResponse(
            ser.csv_text(answer.csv_columns, answer.csv_rows),
            status_code=200,
            mimetype="text/csv",
            charset="utf-8",
            headers=headers,
        )
    return func.HttpResponse(
        json.dumps(answer.body, ensure_ascii=False),
        status_code=200,
        mimetype="application/json",
        charset="utf-8",
        headers=headers,
    )


def _error(status: int, code: str, message: str) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps({"error": {"code": code, "message": message}}, ensure_ascii=False),
        status_code=status,
        mimetype="application/json",
        charset="utf-8",
        headers=dict(_COMMON_HEADERS),
    )


def _failure(exc: Exception) -> func.HttpResponse:
    if isinstance(exc, BadParameter | UnknownChoice):
        return _error(400, "bad_request", str(exc))
    if isinstance(exc, queries.UserNotFound):
        return _error(404, "user_not_found", "no user with that id or UPN has been seen by the sync")
    if isinstance(exc, queries.AmbiguousUser):
        return _error(409, "ambiguous_user", str(exc))
    if isinstance(exc, ResourceNotFoundError):  # the sync has not created its tables yet
        return _error(404, "no_history", "no history has been recorded yet: the nightly sync has not run")
    if isinstance(exc, SettingsError):
        log.error("the app's settings are invalid: %s", exc)
        return _error(500, "bad_settings", "the app's settings are invalid; see the function log")
    log.exception("history API request failed")
    return _error(500, "internal_error", "the request failed; see the function log")
