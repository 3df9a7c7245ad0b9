"""Property: whatever transient faults and crashes hit a day of nudge runs, every due reminder is
delivered exactly once, and nobody is emailed after they registered.

Each example replays a random sequence of runs against Azurite and the simulators, with faults from
ACS (429 with a short or a long Retry-After, 503, a dropped answer after ACS accepted the email) or
a crash of the process right after the claim or right after the send (a BaseException: nothing in
the job catches it, its lease stays held and its claim unsettled, as when a host kills the worker),
and people registering in between. Then the faults stop and the next runs drain what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables.aio import TableServiceClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shared.adapters.email import EmailSender, OperationStatus
from shared.adapters.graph import GraphReader
from shared.adapters.reminder_ledger import ReminderLedger
from shared.adapters.state_store import StateStore
from shared.domain.nudges import Quota, Status
from sim.acs_server import AcsEmailSimulator, DropAfterAccept, ServerError, Throttle
from sim.azurite import Azurite
from sim.graph_server import GraphSimulator
from sim.tenant import Tenant
from tests.integration.nudge_fixtures import (
    SENDER,
    WAVE_DATE,
    FakeClock,
    Person,
    World,
    register_in_graph,
    remember,
    tenant_of,
)

PEOPLE = [Person(1, "Ada"), Person(2, "Ben"), Person(3, "Cy")]
LAGGING = Person(4, "Dee")  # registered already; the report (and our state) do not know yet


class Crash(BaseException):
    """The process dies here: no except clause of the job runs."""


class FaultySender(EmailSender):
    crash: str | None = None  # "before_send" | "after_send", once

    async def send(self, **kwargs: Any) -> OperationStatus:
        crash, self.crash = self.crash, None
        if crash == "before_send":
            raise Crash(crash)
        status = await super().send(**kwargs)
        if crash == "after_send":
            raise Crash(crash)
        return status


FAULTS = ("none", "throttle_short", "throttle_long", "server_error", "drop_after_accept", "before_send", "after_send")


@dataclass(frozen=True)
class Run:
    fault: str


@dataclass(frozen=True)
class Registers:
    who: int  # index into PEOPLE


steps = st.lists(
    st.one_of(st.builds(Run, st.sampled_from(FAULTS)), st.builds(Registers, st.integers(0, len(PEOPLE) - 1))),
    min_size=1,
    max_size=5,
)


@pytest.fixture(scope="module")
def sims() -> Iterator[tuple[GraphSimulator, AcsEmailSimulator]]:
    saved = {k: os.environ.get(k) for k in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER")}
    with GraphSimulator(Tenant()) as graph_sim, AcsEmailSimulator(identity=graph_sim, sender_address=SENDER) as acs:
        os.environ["IDENTITY_ENDPOINT"] = graph_sim.identity_endpoint
        os.environ["IDENTITY_HEADER"] = graph_sim.identity_header
        try:
            yield graph_sim, acs
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def _reset(acs: AcsEmailSimulator, clock: FakeClock) -> None:
    acs.messages.clear()
    acs.operations.clear()
    acs.posts.clear()
    acs.status_reads.clear()
    acs._faults.clear()
    acs._accepted_at.clear()
    acs.duplicate_posts = 0
    acs.clock = clock.timestamp


async def _scenario(azurite: Azurite, graph_sim: GraphSimulator, acs: AcsEmailSimulator, plan: list[Any]) -> None:
    from azure.identity.aio import ManagedIdentityCredential

    clock = FakeClock(datetime.combine(WAVE_DATE + timedelta(days=20), datetime.min.time(), UTC))
    clock.now += timedelta(hours=9)
    _reset(acs, clock)
    tenant = tenant_of([*PEOPLE, LAGGING])
    register_in_graph(tenant, LAGGING)
    graph_sim.tenant = tenant
    async with (
        TableServiceClient.from_connection_string(azurite.connection_string) as service,
        ManagedIdentityCredential() as credential,
        GraphReader(credential, base_url=graph_sim.base_url, max_retries=0) as graph,
        FaultySender(acs.endpoint, credential, SENDER, connection_verify=acs.ca_file) as email,
    ):
        async for table in service.list_tables():
            await service.delete_table(table.name)
        store = StateStore(service)
        await store.ensure_tables()
        await remember(store, [*PEOPLE, LAGGING], clock.now - timedelta(hours=6))
        world = World(
            clock=clock,
            tenant=tenant,
            graph_sim=graph_sim,
            acs=acs,
            store=store,
            ledger=ReminderLedger(service),
            graph=graph,
            email=email,
        )
        world.quota = Quota(per_minute=100, per_hour=1000)
        registered_at: dict[str, datetime] = {LAGGING.id: clock.now - timedelta(days=1)}

        async def run(fault: str) -> None:
            if fault == "throttle_short":
                acs.inject(Throttle(retry_after=5))
            elif fault == "throttle_long":
                acs.inject(Throttle(retry_after=900))
            elif fault == "server_error":
                acs.inject(ServerError(503))
            elif fault == "drop_after_accept":
                acs.inject(DropAfterAccept())
            elif fault in ("before_send", "after_send"):
                email.crash = fault
            with contextlib.suppress(Crash):  # the "process" died; the next run picks up
                await world.nudge(lease_seconds=60)
            email.crash = None
            acs._faults.clear()
            clock.now += timedelta(minutes=3)  # past a crashed run's lease

        for step in plan:
            if isinstance(step, Registers):
                person = PEOPLE[step.who]
                if person.id not in registered_at:
                    register_in_graph(tenant, person)
                    registered_at[person.id] = clock.now
            else:
                await run(step.fault)
        for _ in range(3):  # faults over: the next runs drain and settle what is left
            await run("none")

        for person in [*PEOPLE, LAGGING]:
            received = acs.delivered_to(person.address)
            assert len(received) <= 1, f"{person.name} got {len(received)} emails"
            if person.id in registered_at:
                assert all(m.received_at < registered_at[person.id] for m in received), person.name
            else:
                assert len(received) == 1, f"{person.name} was never reminded"
        assert acs.duplicate_posts == 0
        rows = await world.ledger_rows()
        assert not [r for r in rows.values() if r.status in (Status.CLAIMED, Status.UNSENT)], rows
        delivered = {m.operation_id for m in acs.messages}
        assert delivered == {r.key.operation_id for r in rows.values() if r.status in (Status.SENT, Status.ACCEPTED)}


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=steps)
# Every kind of fault at least once, whatever the random draw:
@example(plan=[Run("after_send"), Run("before_send")])
@example(plan=[Run("drop_after_accept"), Registers(0), Run("throttle_long")])
@example(plan=[Run("before_send"), Registers(0), Run("server_error"), Run("throttle_short")])
def test_every_due_reminder_is_delivered_exactly_once(
    plan: list[Any], azurite: Azurite, sims: tuple[GraphSimulator, AcsEmailSimulator]
) -> None:
    graph_sim, acs = sims
    asyncio.run(_scenario(azurite, graph_sim, acs, plan))
