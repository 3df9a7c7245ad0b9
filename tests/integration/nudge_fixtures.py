"""A small world for the nudge tests: people in a simulated tenant, their remembered state in
Azurite, the Graph simulator (methods re-check + managed-identity tokens), the ACS Email simulator
over https, and a clock that moves only when told (``sleep`` advances it: nothing really sleeps).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableServiceClient

from shared.adapters import table_schema as schema
from shared.adapters.email import EmailSender
from shared.adapters.graph import GraphReader
from shared.adapters.reminder_ledger import ReminderLedger
from shared.adapters.state_store import StateStore
from shared.domain.cadence import Cadence
from shared.domain.messages import Sender
from shared.domain.nudges import LedgerEntry, NudgePolicy, NudgeRun, Quota
from shared.domain.records import StoredUser, UserRecord, UserType
from shared.domain.scope import Phase
from shared.domain.waves import Wave
from shared.jobs.nudge import NudgeOptions, run_nudge
from sim.acs_server import AcsEmailSimulator
from sim.graph_server import GraphSimulator
from sim.tenant import Tenant
from tests.integration.sim_identity import point_identity_at

SENDER = "DoNotReply@mfa.example"
WAVE_DATE = date(2026, 7, 1)
WAVE = Wave("phase2", "Azure CLI, Azure PowerShell and IaC tools", WAVE_DATE, Phase.ARM)


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now
        self.slept = 0.0

    def __call__(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.slept += seconds

    def at(self, day: date, hour: int = 3, minute: int = 0) -> None:
        self.now = datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)

    def timestamp(self) -> float:
        return self.now.timestamp()


def uid(n: int) -> str:
    return f"{n:08x}-0000-4000-8000-{n:012x}"


@dataclass(frozen=True)
class Person:
    n: int
    name: str = ""
    email: str | None = None
    guest: bool = False
    admin: bool = True
    registered: bool = False

    @property
    def id(self) -> str:
        return uid(self.n)

    @property
    def address(self) -> str:
        return self.email if self.email is not None else f"user{self.n}@contoso.example"

    def record(self) -> UserRecord:
        return UserRecord(
            id=self.id,
            upn=f"user{self.n}@contoso.example",
            display_name=self.name or f"User {self.n}",
            user_type=UserType.GUEST if self.guest else UserType.MEMBER,
            enabled=True,
            mfa_registered=self.registered,
            mfa_capable=self.registered,
            is_admin=self.admin,
            methods=("microsoftAuthenticatorPush",) if self.registered else (),
            default_method=None,
            email=self.address or None,
            created=None,
            external_user_state=None,
            on_premises_sync=False,
        )

    def graph_user(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "userPrincipalName": f"user{self.n}@contoso.example",
            "displayName": self.name or f"User {self.n}",
            "mail": self.address or None,
            "userType": "Guest" if self.guest else "Member",
            "accountEnabled": True,
        }

    def report_row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "userPrincipalName": f"user{self.n}@contoso.example",
            "isAdmin": self.admin,
            "isMfaRegistered": self.registered,
            "methodsRegistered": ["microsoftAuthenticatorPush"] if self.registered else [],
        }


def tenant_of(people: list[Person]) -> Tenant:
    return Tenant(
        {"users": [p.graph_user() for p in people], "userRegistrationDetails": [p.report_row() for p in people]}
    )


def register_in_graph(tenant: Tenant, person: Person) -> None:
    """The person registers: Graph's methods say so at once; the report (and our state) lag."""
    tenant.set_registration(person.id, replace(person, registered=True).report_row())


async def remember(store: StateStore, people: list[Person], when: datetime) -> None:
    """Write the people's state rows as the nightly sync would have."""
    for p in people:
        stored = StoredUser(p.record(), version=1, etag=None, first_seen=when.isoformat())
        entity = schema.user_entity(stored, run_id="seed", changed_at=when.isoformat())
        await store.users.upsert_entity(entity, mode=UpdateMode.REPLACE)


class World:
    def __init__(
        self,
        *,
        clock: FakeClock,
        tenant: Tenant,
        graph_sim: GraphSimulator,
        acs: AcsEmailSimulator,
        store: StateStore,
        ledger: ReminderLedger,
        graph: GraphReader,
        email: EmailSender,
    ) -> None:
        self.clock, self.tenant, self.graph_sim, self.acs = clock, tenant, graph_sim, acs
        self.store, self.ledger, self.graph, self.email = store, ledger, graph, email
        self.waves: tuple[Wave, ...] = (WAVE,)
        self.policy = NudgePolicy(cadence=Cadence(), dry_run=False)
        self.quota = Quota(per_minute=100, per_hour=1000)
        self.runs: list[NudgeRun] = []

    def options(self, **overrides: Any) -> NudgeOptions:
        base = NudgeOptions(
            policy=self.policy,
            quota=self.quota,
            sender=Sender(organization="Contoso", contact="the IT desk"),
            lease_seconds=120,
        )
        return replace(base, **overrides)

    async def nudge(self, **overrides: Any) -> NudgeRun:
        run = await run_nudge(
            self.store,
            self.ledger,
            self.graph,
            self.email,
            self.waves,
            self.options(**overrides),
            clock=self.clock,
            sleep=self.clock.sleep,
        )
        self.runs.append(run)
        return run

    async def ledger_rows(self) -> dict[str, LedgerEntry]:
        return {e.key.id: e for entries in (await self.ledger.load()).values() for e in entries}

    def subjects_to(self, person: Person) -> list[str]:
        return [m.subject for m in self.acs.delivered_to(person.address)]

    def deliveries(self) -> Counter[str]:
        """Messages per operation id: the exactly-once check."""
        return Counter(m.operation_id for m in self.acs.messages)


MakeWorld = Callable[..., Awaitable[World]]


@pytest.fixture
def nudge_graph_sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[GraphSimulator]:
    """The Graph simulator, whose managed-identity endpoint also issues the ACS tokens."""
    with GraphSimulator(Tenant()) as server:
        point_identity_at(server, monkeypatch)
        yield server


@pytest.fixture
async def make_world(nudge_graph_sim: GraphSimulator, table_service: TableServiceClient) -> AsyncIterator[MakeWorld]:
    """``await make_world(people, days_before=30, **acs_simulator_options)``: a World whose clock
    stands ``days_before`` days before WAVE_DATE, 03:00 UTC, with the people remembered."""
    from azure.identity.aio import ManagedIdentityCredential

    graph_sim = nudge_graph_sim
    async with AsyncExitStack() as stack:

        async def build(people: list[Person], *, days_before: int = 30, **acs_options: Any) -> World:
            clock = FakeClock(datetime.combine(WAVE_DATE - timedelta(days=days_before), time(3), UTC))
            tenant = tenant_of(people)
            graph_sim.tenant = tenant
            acs = stack.enter_context(
                AcsEmailSimulator(identity=graph_sim, sender_address=SENDER, clock=clock.timestamp, **acs_options)
            )
            store = StateStore(table_service)
            await store.ensure_tables()
            await remember(store, people, clock.now - timedelta(hours=1))
            credential = await stack.enter_async_context(ManagedIdentityCredential())
            graph = await stack.enter_async_context(
                GraphReader(credential, base_url=graph_sim.base_url, max_retries=0, retry_delay_seconds=0)
            )
            email = await stack.enter_async_context(
                EmailSender(acs.endpoint, credential, SENDER, connection_verify=acs.ca_file)
            )
            return World(
                clock=clock,
                tenant=tenant,
                graph_sim=graph_sim,
                acs=acs,
                store=store,
                ledger=ReminderLedger(table_service),
                graph=graph,
                email=email,
            )

        yield build
