"""A nudge run that dies at the worst moment, as a process would (os._exit: no finally, no cleanup).

Run by test_nudge_crash.py as ``python -m tests.integration.nudge_crash_child`` with environment
variables. CRASH_AT=before_send: the claim is written, then the process dies before ACS hears of
it. CRASH_AT=after_send: ACS accepted the email, then the process dies before the outcome is
recorded. Either way the lease is not released and the run row says ``running``.
"""

from __future__ import annotations

import asyncio
import os
from datetime import datetime
from typing import Any

from azure.data.tables.aio import TableServiceClient
from azure.identity.aio import ManagedIdentityCredential

from shared.adapters.email import EmailSender, OperationStatus
from shared.adapters.graph import GraphReader
from shared.adapters.reminder_ledger import ReminderLedger
from shared.adapters.state_store import StateStore
from shared.domain.nudges import NudgePolicy, Quota
from shared.jobs.nudge import NudgeOptions, run_nudge

CRASH_EXIT = 86


class CrashingSender(EmailSender):
    async def send(self, **kwargs: Any) -> OperationStatus:
        if os.environ["CRASH_AT"] == "before_send":
            os._exit(CRASH_EXIT)
        status = await super().send(**kwargs)
        os._exit(CRASH_EXIT)
        return status  # not reached


async def main() -> None:
    now = datetime.fromisoformat(os.environ["CRASH_NOW"])
    async with (
        TableServiceClient.from_connection_string(os.environ["TABLES_CONNECTION_STRING"]) as service,
        ManagedIdentityCredential() as credential,
        GraphReader(credential, base_url=os.environ["GRAPH_BASE_URL"], max_retries=0) as graph,
        CrashingSender(
            os.environ["ACS_ENDPOINT"],
            credential,
            os.environ["EMAIL_SENDER_ADDRESS"],
            connection_verify=os.environ["ACS_CA_FILE"],
        ) as email,
    ):
        from tests.integration.nudge_fixtures import WAVE

        options = NudgeOptions(policy=NudgePolicy(dry_run=False), quota=Quota(100, 1000), lease_seconds=2)
        await run_nudge(StateStore(service), ReminderLedger(service), graph, email, (WAVE,), options, clock=lambda: now)
    os._exit(0)  # not reached when the crash happens


if __name__ == "__main__":
    asyncio.run(main())
