"""Several simulated nights of history, built once per test module by running the real sync.

A generated tenant plus a few hand-made users the read side must handle: a guest whose #EXT# UPN
has mixed case and whose display name is a ``<script>`` tag, a guest whose name is a spreadsheet
formula, and an admin with an apostrophe in his UPN who registers and then loses his methods.
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
from shared.domain.runs import RunStatus
from sim.azurite import Azurite
from sim.graph_server import GraphSimulator
from sim.tenant import Tenant, evolve, generate_tenant

NIGHTS = 4

EVE_ID = "0e0e0e0e-0000-4000-8000-00000000e0e0"
EVE_UPN = "Eve.Martin_Fabrikam.example#EXT#@Contoso.example"
EVE_NAME = "<script>alert('x')</script> Ève"
FORMULA_ID = "f0f0f0f0-0000-4000-8000-0000000000f0"
FORMULA_UPN = "formula_evil.example#EXT#@contoso.example"
FORMULA_NAME = '=HYPERLINK("http://evil.example","click")'
OBRIEN_ID = "0b0b0b0b-0000-4000-8000-0000000000b0"
OBRIEN_UPN = "Sean.O'Brien@contoso.example"


def _user(uid: str, upn: str, name: str, *, guest: bool) -> dict[str, Any]:
    return {
        "id": uid,
        "userPrincipalName": upn,
        "displayName": name,
        "mail": None if guest else upn,
        "otherMails": ["someone@fabrikam.example"] if guest else [],
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
        (_user(EVE_ID, EVE_UPN, EVE_NAME, guest=True), False, False),
        (_user(FORMULA_ID, FORMULA_UPN, FORMULA_NAME, guest=True), False, False),
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


async def _drop_tables(connection_string: str) -> None:
    async with TableServiceClient.from_connection_string(connection_string) as service:
        async for table in service.list_tables():
            await service.delete_table(table.name)


def build_history(azurite: Azurite, *, users: int = 240, seed: int = 17) -> Iterator[History]:
    """Generator for a module-scoped fixture: ``NIGHTS`` nights of real syncs, ending today."""
    asyncio.run(_drop_tables(azurite.connection_string))
    tenant = generate_tenant(users, seed=seed)
    today = datetime.now(UTC).replace(hour=2, minute=0, second=0, microsecond=0)
    with GraphSimulator(tenant, page_size=100) as sim, pytest.MonkeyPatch.context() as mp:
        mp.setenv("IDENTITY_ENDPOINT", sim.identity_endpoint)
        mp.setenv("IDENTITY_HEADER", sim.identity_header)
        history = History(azurite.connection_string, tenant, sim)
        for i in range(NIGHTS):
            if i:
                evolve(tenant, seed=seed + i, churn=0.04)
            _pin_special_users(tenant, i)
            when = today - timedelta(days=NIGHTS - 1 - i)
            run = asyncio.run(entrypoints.nightly_sync(history.env(), clock=lambda when=when: when))
            assert run.status is RunStatus.COMPLETED, run.error
            history.nights.append(run.night)
        yield history
