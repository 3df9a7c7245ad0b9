"""Several simulated nights of history, built once per test module by running the real sync, and
reminders recorded by running the real nudge job after the last two nights.

A generated tenant plus a few hand-made users the read side must handle: a guest whose #EXT# UPN
has mixed case and whose display name is a ``<script>`` tag, a guest whose name is a spreadsheet
formula (and whose address ACS reports as failed), and an admin with an apostrophe in his UPN who
registers and then loses his methods (so he is reminded after the third night, not the first).
The tenant simulator stays up for the module, so a test can run one more sync of the same tenant.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables.aio import TableServiceClient

from shared import entrypoints
from shared.domain.nudges import NudgeRun
from shared.domain.runs import RunStatus
from sim.acs_server import AcsEmailSimulator
from sim.azurite import Azurite
from sim.graph_server import GraphSimulator
from sim.tenant import Tenant, evolve, generate_tenant
from tests.integration.nudge_fixtures import FakeClock
from tests.integration.sim_identity import point_identity_at

NIGHTS = 4
NUDGED_NIGHTS = (2, 3)  # the nudge job runs an hour after these nights' syncs
NUDGE_DELAY = timedelta(hours=1, minutes=15)
SENDER = "DoNotReply@monitor.example"

EVE_ID = "0e0e0e0e-0000-4000-8000-00000000e0e0"
EVE_UPN = "Eve.Martin_Fabrikam.example#EXT#@Contoso.example"
EVE_NAME = "<script>alert('x')</script> Ève"
EVE_EMAIL = "eve.martin@fabrikam.example"
FORMULA_ID = "f0f0f0f0-0000-4000-8000-0000000000f0"
FORMULA_UPN = "formula_evil.example#EXT#@contoso.example"
FORMULA_NAME = '=HYPERLINK("http://evil.example","click")'
FORMULA_EMAIL = "formula@evil.example"  # ACS reports every send to it as Failed
OBRIEN_ID = "0b0b0b0b-0000-4000-8000-0000000000b0"
OBRIEN_UPN = "Sean.O'Brien@contoso.example"


def _user(uid: str, upn: str, name: str, *, guest: bool, address: str = "") -> dict[str, Any]:
    return {
        "id": uid,
        "userPrincipalName": upn,
        "displayName": name,
        "mail": None if guest else upn,
        "otherMails": [address] if guest else [],
        "userType": "Guest" if guest else "Member",
        "accountEnabled": True,
        "createdDateTime": "2025-01-01T00:00:00Z",
        "externalUserState": "Accepted" if guest else None,
        "onPremisesSyncEnabled": None,
        "identities": [],
    }


def _registration(user: dict[str, Any], *, registered: bool, admin: bool) -> dict[str, Any]:
    methods = ["microsoftAuthenticatorPush"] if registered else []
    return {
        "id": user["id"],
        "userPrincipalName": user["userPrincipalName"],
        "userDisplayName": user["displayName"],
        "userType": "guest" if user["userType"] == "Guest" else "member",
        "isAdmin": admin,
        "isMfaRegistered": registered,
        "isMfaCapable": registered,
        "isSsprRegistered": False,
        "isPasswordlessCapable": False,
        "methodsRegistered": methods,
        "lastUpdatedDateTime": "2026-11-01T00:00:00.0000000Z",
    }


# night index -> whether O'Brien is registered that night: new (unregistered), registers, loses it
_OBRIEN_REGISTERED = {0: False, 1: True, 2: False, 3: False}


def _pin_special_users(tenant: Tenant, night: int) -> None:
    """Put the hand-made users in the state the tests expect, whatever evolve() did to them."""
    specials = [
        (_user(EVE_ID, EVE_UPN, EVE_NAME, guest=True, address=EVE_EMAIL), False, False),
        (_user(FORMULA_ID, FORMULA_UPN, FORMULA_NAME, guest=True, address=FORMULA_EMAIL), False, False),
        (_user(OBRIEN_ID, OBRIEN_UPN, "Seán O'Brien", guest=False), _OBRIEN_REGISTERED[night], True),
    ]
    for user, registered, admin in specials:
        tenant.remove_users([user["id"]])
        tenant.add_user(user, _registration(user, registered=registered, admin=admin))


@dataclass
class History:
    connection_string: str
    tenant: Tenant
    sim: GraphSimulator
    nights: list[str] = field(default_factory=list)
    nudges: dict[str, NudgeRun] = field(default_factory=dict)  # night -> the nudge run after its sync

    @property
    def last_night(self) -> str:
        return self.nights[-1]

    def env(self) -> dict[str, str]:
        """The settings a sync of this tenant runs with (the identity endpoint is separate)."""
        return {
            "AUTH_MODE": "managed_identity",
            "TABLES_CONNECTION_STRING": self.connection_string,
            "GRAPH_BASE_URL": self.sim.base_url,
            "GRAPH_PAGE_SIZE": "100",
        }

    def nudge_env(self, acs: AcsEmailSimulator) -> dict[str, str]:
        """The nudge job's settings: real sends to the ACS simulator, a quota that never waits."""
        return {
            **self.env(),
            "ACS_ENDPOINT": acs.endpoint,
            "EMAIL_SENDER_ADDRESS": SENDER,
            "NUDGE_DRY_RUN": "false",
            "NUDGE_QUOTA_PER_MINUTE": "10000",
            "NUDGE_QUOTA_PER_HOUR": "100000",
        }


async def _drop_tables(connection_string: str) -> None:
    async with TableServiceClient.from_connection_string(connection_string) as service:
        async for table in service.list_tables():
            await service.delete_table(table.name)


def build_history(azurite: Azurite, *, users: int = 240, seed: int = 17) -> Iterator[History]:
    """Generator for a module-scoped fixture: ``NIGHTS`` nights of real syncs, ending today, each
    of ``NUDGED_NIGHTS`` followed by a real nudge run (the ACS simulator, not a dry run)."""
    asyncio.run(_drop_tables(azurite.connection_string))
    tenant = generate_tenant(users, seed=seed)
    today = datetime.now(UTC).replace(hour=2, minute=0, second=0, microsecond=0)
    clock = FakeClock(today)
    with (
        GraphSimulator(tenant, page_size=100) as sim,
        AcsEmailSimulator(identity=sim, sender_address=SENDER, clock=clock.timestamp) as acs,
        pytest.MonkeyPatch.context() as mp,
    ):
        acs.bad_addresses.add(FORMULA_EMAIL)
        point_identity_at(sim, mp)
        history = History(azurite.connection_string, tenant, sim)
        for i in range(NIGHTS):
            if i:
                evolve(tenant, seed=seed + i, churn=0.04)
            _pin_special_users(tenant, i)
            when = today - timedelta(days=NIGHTS - 1 - i)
            run = asyncio.run(entrypoints.nightly_sync(history.env(), clock=lambda when=when: when))
            assert run.status is RunStatus.COMPLETED, run.error
            history.nights.append(run.night)
            if i in NUDGED_NIGHTS:
                clock.now = when + NUDGE_DELAY
                nudge = asyncio.run(
                    entrypoints.nudge(history.nudge_env(acs), clock=clock, sleep=clock.sleep, email_verify=acs.ca_file)
                )
                assert nudge.status is RunStatus.COMPLETED and nudge.sent, nudge.error
                history.nudges[run.night] = nudge
        yield history
