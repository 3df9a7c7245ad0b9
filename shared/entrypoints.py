"""What the triggers in function_app.py call: build from settings, run one job, report failure.

Each entry point reads the environment once, opens the clients through ``shared.wiring``, runs a
job from ``shared.jobs`` and raises after recording a failed run, so the Functions host marks the
invocation failed and the alert rules see it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from datetime import datetime

from shared.config import Settings
from shared.domain.runs import RunStatus, SyncRun
from shared.jobs.sync import SyncFailed, SyncOptions, run_sync, utc_now
from shared.wiring import open_services


def quiet_sdk_logging() -> None:
    """The Azure SDKs log every HTTP request at INFO; keep the app's own events readable."""
    for name in ("azure", "azure.core.pipeline.policies.http_logging_policy", "httpx", "kiota_http"):
        logging.getLogger(name).setLevel(logging.WARNING)


def environment(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The process environment, with ``overrides`` (the command line's flags) on top."""
    return {**os.environ, **(overrides or {})}


def load_settings(overrides: Mapping[str, str] | None = None) -> Settings:
    """Settings for the HTTP API and the command line (validated; SettingsError lists problems)."""
    return Settings.from_env(environment(overrides))


async def nightly_sync(env: Mapping[str, str] | None = None, clock: Callable[[], datetime] = utc_now) -> SyncRun:
    """The timer's job. ``env`` and ``clock`` are for the demo and tests (simulated nights)."""
    quiet_sdk_logging()
    settings = Settings.from_env(os.environ if env is None else env)
    async with open_services(settings) as services:
        await services.store.ensure_tables()
        run = await run_sync(
            services.graph,
            services.store,
            options=SyncOptions(time_budget_seconds=settings.sync_time_budget_seconds),
            clock=clock,
        )
    if run.status is RunStatus.FAILED:
        raise SyncFailed(f"sync run {run.run_id} failed: {run.error}")
    return run
