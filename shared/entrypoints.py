"""What the triggers in function_app.py call: build from settings, run one job, report failure.

Each entry point reads the environment once, opens the clients through ``shared.wiring``, runs a
job from ``shared.jobs`` and raises after recording a failed run, so the Functions host marks the
invocation failed and the alert rules see it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime

from shared.config import Settings
from shared.domain.messages import Sender
from shared.domain.nudges import NudgePolicy, NudgeRun, Quota
from shared.domain.runs import RunStatus, SyncRun
from shared.jobs.nudge import NudgeFailed, NudgeOptions, run_nudge
from shared.jobs.sync import SyncFailed, SyncOptions, run_sync, utc_now
from shared.wiring import open_nudge_services, open_services


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
            scope=services.scope,
        )
    if run.status is RunStatus.FAILED:
        raise SyncFailed(f"sync run {run.run_id} failed: {run.error}")
    return run


async def nudge(
    env: Mapping[str, str] | None = None,
    clock: Callable[[], datetime] = utc_now,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    email_verify: bool | str = True,
) -> NudgeRun:
    """The nudge timer's job: email the reminders that are due. ``env``, ``clock``, ``sleep`` and
    ``email_verify`` (the simulator's CA) are for the demo and tests."""
    quiet_sdk_logging()
    settings = Settings.from_env(os.environ if env is None else env)
    n = settings.nudge
    options = NudgeOptions(
        policy=NudgePolicy(cadence=n.cadence, guest_trust=n.guest_trust, dry_run=n.dry_run),
        quota=Quota(per_minute=n.quota_per_minute, per_hour=n.quota_per_hour),
        sender=Sender(organization=n.organization, contact=n.contact),
        digest_to=n.digest_to,
        time_budget_seconds=n.time_budget_seconds,
    )
    async with open_nudge_services(settings, email_verify=email_verify) as services:
        await services.store.ensure_tables()
        run = await run_nudge(
            services.store,
            services.ledger,
            services.graph,
            services.email,
            settings.waves,
            options,
            clock=clock,
            sleep=sleep,
        )
    if run.status is RunStatus.FAILED:
        raise NudgeFailed(f"nudge run {run.run_id} failed: {run.error}")
    return run
