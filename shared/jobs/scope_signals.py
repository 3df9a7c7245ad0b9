"""Gather the scope signals for one night: the I/O half of "who will be locked out".

Each signal comes from its own adapter call (``GraphReader`` / ``ArmReader``); this module folds
their pages into the compact per-user evidence of ``shared.domain.scope_rules.ScopeSignals`` and
makes the few per-user calls the rules ask for (sign-in activity, a guest's home tenant, and the
licence fallback's authentication methods), with bounded concurrency.

Memory stays bounded: sign-ins are folded into one small tally per user while paging, and only
the current page is held. A signal that fails raises, and the sync fails the run cleanly (no
partial scope, so no spurious ``left_scope``); the exceptions are the ones the tenant's licence
explains (sign-in logs on Entra ID Free: the scope keeps the remembered sign-ins and the run row
says ``SignInSource=unavailable_licence``) and signals switched off by a setting.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from shared.adapters.graph import GraphLicenceError
from shared.domain.management_apps import ALL_APPS, CLIENT_APPS, ManagementApp
from shared.domain.normalize import Skipped, sign_in_from_graph, valid_id
from shared.domain.runs import SignInSource
from shared.domain.scope_rules import GuestTrust, RoleGrant, ScopePolicy, ScopeSignals, SignInTally

log = logging.getLogger(__name__)

Pages = AsyncIterator[list[dict[str, Any]]]
Tick = Callable[[], Awaitable[None]]
_USER_TYPE = "#microsoft.graph.user"
_GUID = re.compile(r"[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}")


class ScopeReader(Protocol):
    """What the scope signals need from Graph (``shared.adapters.graph.GraphReader``)."""

    def sign_ins(self, app: ManagementApp, since: datetime, *, non_interactive: bool = False) -> Pages: ...

    def role_assignments(self) -> Pages: ...

    def role_eligibilities(self) -> Pages: ...

    def role_definitions(self) -> Pages: ...

    def role_assignable_groups(self) -> Pages: ...

    def group_members(self, group_id: str) -> Pages: ...

    async def cross_tenant_default(self) -> dict[str, Any]: ...

    def cross_tenant_partners(self) -> Pages: ...

    async def tenant_by_domain(self, domain: str) -> dict[str, Any] | None: ...

    async def authentication_methods(self, user_id: str) -> list[dict[str, Any]] | None: ...

    async def sign_in_activity(self, user_id: str) -> dict[str, Any] | None: ...


class RbacReader(Protocol):
    """Azure RBAC from Resource Graph (``shared.adapters.arm.ArmReader``)."""

    def role_assignments(self, management_groups: tuple[str, ...] = ()) -> Pages: ...


@dataclass(frozen=True)
class SignalOptions:
    """How the signals are gathered (built from the settings by shared.config / wiring)."""

    policy: ScopePolicy = field(default_factory=ScopePolicy)
    non_interactive: bool = True  # beta non-interactive sign-ins too
    include_arm_resource: bool = False  # sign-ins to the ARM resource from any client
    azure_rbac: bool = False
    rbac_management_groups: tuple[str, ...] = ()
    exclusion_group_id: str | None = None
    registration_fallback: bool = True  # per-user methods when the report needs a licence
    concurrency: int = 8  # per-user calls in flight


@dataclass
class ScopeSources:
    """The readers and options the sync hands to the signals (None readers: signal off)."""

    graph: ScopeReader
    options: SignalOptions = field(default_factory=SignalOptions)
    arm: RbacReader | None = None


@dataclass
class GatherFigures:
    sign_in_source: SignInSource = SignInSource.LOGS
    sign_ins_read: int = 0
    sign_ins_skipped: int = 0
    role_assignments: int = 0
    role_eligibilities: int = 0
    azure_role_assignments: int = 0
    lookups: int = 0


async def _no_tick() -> None:
    return None


async def gather_signals(
    sources: ScopeSources, now: datetime, tick: Tick = _no_tick
) -> tuple[ScopeSignals, GatherFigures]:
    """Every signal, in turn (one at a time: the reports family is throttled per app)."""
    options, graph = sources.options, sources.graph
    figures = GatherFigures()
    tallies, available = await _sign_ins(graph, options, now, figures, tick)
    roles = await _directory_roles(graph, figures, tick)
    rbac: dict[str, tuple[str, ...]] = {}
    if options.azure_rbac and sources.arm is not None:
        rbac = await _azure_rbac(sources.arm, graph, options, figures, tick)
    excluded: frozenset[str] = frozenset()
    if options.exclusion_group_id:
        excluded = frozenset(await _user_members(graph, options.exclusion_group_id, tick))
    trust = await _guest_trust(graph, tick)
    signals = ScopeSignals(
        sign_ins=tallies,
        sign_ins_available=available,
        roles=roles,
        rbac=rbac,
        exclusion_group=excluded,
        guest_trust=trust,
    )
    return signals, figures


async def _sign_ins(
    graph: ScopeReader, options: SignalOptions, now: datetime, figures: GatherFigures, tick: Tick
) -> tuple[dict[str, SignInTally], bool]:
    since = now - timedelta(days=options.policy.lookback_days)
    apps = ALL_APPS if options.include_arm_resource else CLIENT_APPS
    kinds = (False, True) if options.non_interactive else (False,)
    tallies: dict[str, SignInTally] = {}
    for app in apps:
        for non_interactive in kinds:
            try:
                async for page in graph.sign_ins(app, since, non_interactive=non_interactive):
                    for row in page:
                        sign_in = sign_in_from_graph(row)
                        if isinstance(sign_in, Skipped):
                            figures.sign_ins_skipped += 1
                            continue
                        figures.sign_ins_read += 1
                        tally = tallies.get(sign_in.user_id)
                        if tally is None:
                            tally = tallies[sign_in.user_id] = SignInTally()
                        tally.add(sign_in)
                    await tick()
            except GraphLicenceError:
                # Entra ID Free: no sign-in logs through Graph. Scope keeps the sign-ins remembered
                # from earlier nights (none on a tenant that never had P1/P2).
                log.warning("sign-in logs need Entra ID P1/P2: scope uses the remembered sign-ins only")
                figures.sign_in_source = SignInSource.UNAVAILABLE
                return {}, False
    return tallies, True


async def _collect(pages: Pages, tick: Tick) -> AsyncIterator[dict[str, Any]]:
    async for page in pages:
        for row in page:
            if isinstance(row, dict):
                yield row
        await tick()


async def _user_members(graph: ScopeReader, group_id: str, tick: Tick) -> set[str]:
    """The users among a group's transitive members."""
    members: set[str] = set()
    async for obj in _collect(graph.group_members(group_id), tick):
        kind = obj.get("@odata.type")
        user_id = valid_id(obj.get("id"))
        if user_id and (kind is None or str(kind).lower() == _USER_TYPE):
            members.add(user_id)
    return members


async def _directory_roles(graph: ScopeReader, figures: GatherFigures, tick: Tick) -> dict[str, tuple[RoleGrant, ...]]:
    """Active and eligible Entra roles per user, expanded through role-assignable groups."""
    definitions: dict[str, tuple[str, str | None]] = {}
    async for d in _collect(graph.role_definitions(), tick):
        def_id = valid_id(d.get("id"))
        if def_id:
            template = valid_id(d.get("templateId"))
            definitions[def_id] = (str(d.get("displayName") or def_id)[:100], template)
    groups = {
        gid for g in [x async for x in _collect(graph.role_assignable_groups(), tick)] if (gid := valid_id(g.get("id")))
    }

    by_principal: dict[str, set[RoleGrant]] = defaultdict(set)

    async def read(pages: Pages, eligible: bool) -> int:
        count = 0
        async for a in _collect(pages, tick):
            principal = valid_id(a.get("principalId"))
            role_id = valid_id(a.get("roleDefinitionId"))
            if not principal or not role_id:
                continue
            count += 1
            name, template = definitions.get(role_id, (role_id, role_id if _GUID.fullmatch(role_id) else None))
            by_principal[principal].add(RoleGrant(name, template, eligible))
        return count

    figures.role_assignments = await read(graph.role_assignments(), False)
    figures.role_eligibilities = await read(graph.role_eligibilities(), True)

    roles: dict[str, set[RoleGrant]] = defaultdict(set)
    for principal, grants in by_principal.items():
        if principal in groups:
            for member in await _user_members(graph, principal, tick):
                roles[member].update(grants)
        else:
            roles[principal].update(grants)  # a user (service principals never match a user id)
    return {uid: tuple(sorted(g, key=lambda r: (r.eligible, r.name))) for uid, g in roles.items()}


async def _azure_rbac(
    arm: RbacReader, graph: ScopeReader, options: SignalOptions, figures: GatherFigures, tick: Tick
) -> dict[str, tuple[str, ...]]:
    by_user: dict[str, set[str]] = defaultdict(set)
    by_group: dict[str, set[str]] = defaultdict(set)
    async for row in _collect(arm.role_assignments(options.rbac_management_groups), tick):
        principal = valid_id(row.get("principalId"))
        if not principal:
            continue
        figures.azure_role_assignments += 1
        role = str(row.get("roleName") or str(row.get("roleDefinitionId") or "").rsplit("/", 1)[-1] or "unknown")[:100]
        kind = str(row.get("principalType") or "").lower()
        if kind == "user":
            by_user[principal].add(role)
        elif kind == "group":
            by_group[principal].add(role)
    for group_id, names in by_group.items():
        for member in await _user_members(graph, group_id, tick):
            by_user[member].update(names)
    return {uid: tuple(sorted(names)) for uid, names in by_user.items()}


def _mfa_accepted(config: object) -> bool | None:
    if not isinstance(config, dict):
        return None
    trust = config.get("inboundTrust")
    if not isinstance(trust, dict):
        return None
    value = trust.get("isMfaAccepted")
    return value if isinstance(value, bool) else None


async def _guest_trust(graph: ScopeReader, tick: Tick) -> GuestTrust:
    default = await graph.cross_tenant_default()
    partners: dict[str, bool | None] = {}
    async for p in _collect(graph.cross_tenant_partners(), tick):
        tenant = valid_id(p.get("tenantId"))
        if tenant:
            partners[tenant] = _mfa_accepted(p)  # None: inherits the default
    return GuestTrust(default_mfa_accepted=bool(_mfa_accepted(default)), partners=partners)


# --- per-user calls ------------------------------------------------------------------------------


async def bounded(calls: Iterable[Callable[[], Awaitable[Any]]], concurrency: int) -> list[Any]:
    """Run the calls with at most ``concurrency`` in flight; results in order."""
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(call: Callable[[], Awaitable[Any]]) -> Any:
        async with gate:
            return await call()

    return list(await asyncio.gather(*(one(c) for c in calls)))


def ever_signed_in(activity: dict[str, Any] | None) -> bool | None:
    """From ``signInActivity``: None for a user that is gone or unreadable."""
    if activity is None:
        return None
    keys = ("lastSignInDateTime", "lastNonInteractiveSignInDateTime", "lastSuccessfulSignInDateTime")
    return any(isinstance(activity.get(k), str) and activity.get(k) for k in keys)


def tenant_id_of(info: dict[str, Any] | None) -> str:
    """``findTenantInformationByDomainName`` -> tenant id, or "" when no Entra tenant owns it."""
    if not info:
        return ""
    return valid_id(info.get("tenantId")) or ""
