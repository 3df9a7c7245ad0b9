"""Azure Functions entry point (v2 programming model): triggers only, no logic.

nightly_sync  timer %SYNC_SCHEDULE% -> shared.entrypoints.nightly_sync
              Graph (managed identity) -> diff with stored users -> Table Storage history
"""

import azure.functions as func

from shared import entrypoints

app = func.FunctionApp()


@app.timer_trigger(schedule="%SYNC_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
async def nightly_sync(timer: func.TimerRequest) -> None:
    """Pull every user's MFA registration and record what changed since last night."""
    await entrypoints.nightly_sync()
