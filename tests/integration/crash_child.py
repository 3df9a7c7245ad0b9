"""A sync that dies mid-commit, as a process would (os._exit: no finally, no cleanup).

Run by test_crash.py as a child process: ``python -m tests.integration.crash_child``, configured
by environment variables. It commits CRASH_AFTER_BATCHES user transactions and then exits hard,
before the night index and the run row are written and before the lease is released.
"""

from __future__ import annotations

import asyncio
import os
from datetime import datetime
from typing import Any

from azure.data.tables.aio import TableServiceClient
from azure.identity.aio import ManagedIdentityCredential

from shared.adapters.graph import GraphReader
from shared.adapters.state_store import StateStore
from shared.jobs.sync import SyncOptions, run_sync


class CrashingStore(StateStore):
    def __init__(self, service: TableServiceClient, crash_after: int) -> None:
        super().__init__(service)
        self.crash_after = crash_after
        self.submitted = 0

    async def _submit(self, operations: list[Any]) -> list[str | None]:
        if self.submitted >= self.crash_after:  # transactions go out concurrently: counts can skip
            os._exit(86)
        etags = await super()._submit(operations)
        self.submitted += 1
        return etags


async def main() -> None:
    night = datetime.fromisoformat(os.environ["CRASH_NIGHT"])
    async with (
        TableServiceClient.from_connection_string(os.environ["TABLES_CONNECTION_STRING"]) as service,
        ManagedIdentityCredential() as credential,
        GraphReader(credential, base_url=os.environ["GRAPH_BASE_URL"], page_size=50) as graph,
    ):
        store = CrashingStore(service, int(os.environ["CRASH_AFTER_BATCHES"]))
        await store.ensure_tables()
        await run_sync(graph, store, options=SyncOptions(lease_seconds=2), clock=lambda: night)
    os._exit(0)  # not reached when the crash happens


if __name__ == "__main__":
    asyncio.run(main())
