"""A nudge run killed between its claim and the send, or between the send and its outcome, never
sends a reminder twice nor drops it: the next run reads the operation's status back from ACS.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import timedelta

import pytest

from shared.domain.nudges import Status
from shared.domain.runs import RunStatus
from sim.azurite import Azurite
from tests.integration.nudge_crash_child import CRASH_EXIT
from tests.integration.nudge_fixtures import (
    SENDER,
    MakeWorld,
    Person,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("crash_at", ["before_send", "after_send"])
async def test_a_crash_is_settled_from_acs_next_run(crash_at: str, make_world: MakeWorld, azurite: Azurite) -> None:
    ada, grace = Person(1, "Ada"), Person(2, "Grace")
    w = await make_world([ada, grace], days_before=7)
    env = {
        **os.environ,
        "TABLES_CONNECTION_STRING": azurite.connection_string,
        "GRAPH_BASE_URL": w.graph_sim.base_url,
        "ACS_ENDPOINT": w.acs.endpoint,
        "ACS_CA_FILE": w.acs.ca_file,
        "EMAIL_SENDER_ADDRESS": SENDER,
        "CRASH_AT": crash_at,
        "CRASH_NOW": w.clock.now.isoformat(),
    }
    child = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "tests.integration.nudge_crash_child"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert child.returncode == CRASH_EXIT, child.stderr.decode()[-2000:]
    rows = await w.ledger_rows()
    assert [r.status for r in rows.values()] == [Status.CLAIMED]  # the outcome was never recorded
    assert len(w.acs.messages) == (1 if crash_at == "after_send" else 0)
    runs = [e async for e in w.ledger.runs.query_entities("PartitionKey eq 'nudge-run'")]
    assert [r["Status"] for r in runs] == ["running"]

    w.clock.now += timedelta(seconds=10)  # the crashed run's lease (2 s) has expired
    run = await w.nudge()
    assert run.status is RunStatus.COMPLETED, run.error
    assert run.settled == 1
    assert run.resent == (1 if crash_at == "before_send" else 0)
    assert len(w.acs.messages) == 2 and max(w.deliveries().values()) == 1
    assert w.acs.duplicate_posts == 0
    assert {m.to[0][0] for m in w.acs.messages} == {ada.address, grace.address}
    assert all(r.status in (Status.ACCEPTED, Status.SENT) for r in (await w.ledger_rows()).values())
