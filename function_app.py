"""Azure Functions entry point (v2 programming model): triggers only, no logic.

nightly_sync  timer %SYNC_SCHEDULE% -> shared.entrypoints.nightly_sync
              Graph (managed identity) -> diff with stored users -> Table Storage history
nudge         timer %NUDGE_SCHEDULE% -> shared.entrypoints.nudge
              due reminders -> methods re-check (Graph) -> ACS Email, each exactly once
history_*     HTTP GET /api/users/{id_or_upn}/history, /api/changes, /api/unregistered,
              /api/coverage, /api/report (function key) -> shared.http_api
"""

import azure.functions as func

from shared import entrypoints, http_api

app = func.FunctionApp()


@app.timer_trigger(schedule="%SYNC_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
async def nightly_sync(timer: func.TimerRequest) -> None:
    """Pull every user's MFA registration and record what changed since last night."""
    await entrypoints.nightly_sync()


@app.timer_trigger(schedule="%NUDGE_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
async def nudge(timer: func.TimerRequest) -> None:
    """Email the MFA reminders that are due (dry run by default: record them, send nothing)."""
    await entrypoints.nudge()


# --- reading the history (HTTP, function key; see README "Reading the history") ---------------


@app.route(route="users/{id_or_upn}/history", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def history_user(req: func.HttpRequest) -> func.HttpResponse:
    """A user's current state and timeline, by object id or UPN."""
    return await http_api.user_history(req)


@app.route(route="changes", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def history_changes(req: func.HttpRequest) -> func.HttpResponse:
    """What changed on a night (?date=YYYY-MM-DD; default the latest completed night)."""
    return await http_api.changes(req)


@app.route(route="unregistered", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def history_unregistered(req: func.HttpRequest) -> func.HttpResponse:
    """Who is unregistered and in scope, with days left per wave (?scope=&wave=)."""
    return await http_api.unregistered(req)


@app.route(route="coverage", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def history_coverage(req: func.HttpRequest) -> func.HttpResponse:
    """The coverage series (?from=&to=)."""
    return await http_api.coverage(req)


@app.route(route="report", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def history_report(req: func.HttpRequest) -> func.HttpResponse:
    """The self-contained HTML readiness report."""
    return await http_api.report(req)
