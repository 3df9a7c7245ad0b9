"""Refresh docs/report.png: the report of 21 simulated nights of a 1,500-user tenant, as Chromium shows it.

    .venv/bin/python -m tests.browser.docs_screenshot [--nights 21] [--users 1500] [--output docs/report.png]

Everything is real but the tenant: Azurite, the tenant simulator (Graph, Resource Graph, the
managed-identity endpoint), the ACS Email simulator, the nightly sync with its scope signals and the
hourly nudge job (one run after each sync), then ``python -m shared.cli report`` and headless
Chromium. Runs on 127.0.0.1 only; takes about a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared import cli, entrypoints
from shared.domain.runs import RunStatus
from sim.acs_server import AcsEmailSimulator
from sim.azurite import Azurite
from sim.graph_server import GraphSimulator
from sim.scope_data import add_scope_data
from sim.tenant import evolve, generate_tenant
from tests.browser.chromium import screenshot
from tests.integration.nudge_fixtures import FakeClock
from tests.integration.sim_identity import point_identity_at

SENDER = "DoNotReply@contoso-demo.example"


def build(nights: int, users: int, seed: int, html: Path) -> None:
    today = datetime.now(UTC).replace(hour=2, minute=0, second=0, microsecond=0)
    first = today - timedelta(days=nights - 1)
    tenant = generate_tenant(users, seed=seed, now=first)
    add_scope_data(tenant, seed=seed, now=first)
    clock = FakeClock(first)
    with (
        Azurite() as azurite,
        GraphSimulator(tenant, page_size=999) as sim,
        AcsEmailSimulator(identity=sim, sender_address=SENDER, clock=clock.timestamp) as acs,
        pytest.MonkeyPatch.context() as mp,
    ):
        point_identity_at(sim, mp)
        env = {
            "AUTH_MODE": "managed_identity",
            "TABLES_CONNECTION_STRING": azurite.connection_string,
            "GRAPH_BASE_URL": sim.base_url,
            "GRAPH_PAGE_SIZE": "999",
            "SCOPE_AZURE_RBAC": "true",
            "ARM_BASE_URL": sim.root_url,
        }
        nudge_env = {
            **env,
            "ACS_ENDPOINT": acs.endpoint,
            "EMAIL_SENDER_ADDRESS": SENDER,
            "NUDGE_DRY_RUN": "false",
            "NUDGE_QUOTA_PER_MINUTE": "30",
            "NUDGE_QUOTA_PER_HOUR": "100",  # a custom domain's starting quota: some carry over
        }
        for i in range(nights):
            night = first + timedelta(days=i)
            if i:
                evolve(tenant, seed=seed + i, churn=0.02, now=night - timedelta(hours=3))
            run = asyncio.run(entrypoints.nightly_sync(env, clock=lambda night=night: night))
            assert run.status is RunStatus.COMPLETED, run.error
            clock.now = night + timedelta(hours=1, minutes=15)
            nudge = asyncio.run(entrypoints.nudge(nudge_env, clock=clock, sleep=clock.sleep, email_verify=acs.ca_file))
            assert nudge.status is RunStatus.COMPLETED, nudge.error
            print(f"{run.night}: synced, {nudge.sent} reminders sent, {nudge.carried_over} carried over", flush=True)
        code = cli.main(["report", "--connection-string", azurite.connection_string, "--output", str(html)])
        assert code == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nights", type=int, default=21)
    parser.add_argument("--users", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output", type=Path, default=Path("docs/report.png"))
    parser.add_argument("--keep-html", type=Path, help="also keep the report's HTML here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="report-") as work:
        html = args.keep_html or Path(work) / "report.html"
        build(args.nights, args.users, args.seed, html)
        screenshot(html, args.output)
    print(f"Screenshot written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
