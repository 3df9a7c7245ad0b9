"""Each scope signal's adapter against the tenant simulator (real HTTP on 127.0.0.1): wire format,
server-side filters, paging, throttling, licences and permissions."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.adapters.arm import ArmReader
from shared.adapters.credentials import build_credential
from shared.adapters.graph import SIGN_IN_FIELDS, GraphLicenceError, GraphPermissionError, GraphReader
from shared.domain.management_apps import AZURE_CLI, AZURE_PORTAL, AZURE_POWERSHELL
from shared.jobs.scope_signals import ScopeSources, SignalOptions, ever_signed_in, gather_signals
from sim.graph_server import GraphSimulator, ServerError, Throttle
from sim.scope_data import HELPDESK_ROLE, HOME_TENANTS, add_scope_data
from sim.scope_server import ARM_RESOURCE
from sim.tenant import Tenant, generate_tenant
from tests.integration.sim_identity import point_identity_at

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
SINCE = NOW - timedelta(days=30)
V1_SIGN_INS = "/v1.0/auditLogs/signIns"
BETA_SIGN_INS = "/beta/auditLogs/signIns"


@pytest.fixture
def world() -> tuple[Tenant, dict[str, Any]]:
    tenant = generate_tenant(400, seed=31)
    return tenant, add_scope_data(tenant, seed=31, now=NOW)


@pytest.fixture
def scope_sim(world: tuple[Tenant, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> Iterator[GraphSimulator]:
    with GraphSimulator(world[0], page_size=50) as server:
        point_identity_at(server, monkeypatch)
        yield server


@pytest.fixture
async def readers(scope_sim: GraphSimulator) -> AsyncIterator[tuple[GraphReader, ArmReader]]:
    credential = build_credential("managed_identity", None)
    options: dict[str, Any] = {"page_size": 7, "max_retries": 2, "retry_delay_seconds": 0.0}
    graph = GraphReader(credential, base_url=scope_sim.base_url, **options)
    arm = ArmReader(credential, base_url=scope_sim.root_url, **options)
    yield graph, arm
    await graph.aclose()
    await arm.aclose()
    await credential.close()


async def rows(pages: AsyncIterator[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [row async for page in pages for row in page]


# --- sign-ins ----------------------------------------------------------------------------------


async def test_interactive_sign_ins_come_from_v1_filtered_selected_and_paged(
    readers: tuple[GraphReader, ArmReader], scope_sim: GraphSimulator, world: tuple[Tenant, dict[str, Any]]
) -> None:
    graph, _ = readers
    found = await rows(graph.sign_ins(AZURE_PORTAL, SINCE))
    expected = [
        s
        for s in world[0].collection("signIns")
        if s["appId"] == AZURE_PORTAL.app_id and s["isInteractive"] and s["createdDateTime"] >= "2026-10-23T02:00:00Z"
    ]
    assert len(found) == len(expected) > 7  # more than one page
    assert {s["id"] for s in found} == {s["id"] for s in expected}
    assert all(set(s) == set(SIGN_IN_FIELDS) for s in found)  # only what scope reads
    queries = scope_sim.queries(V1_SIGN_INS)
    assert len(queries) == -(-len(found) // 7)
    first = queries[0]
    assert first["$filter"] == f"appId eq '{AZURE_PORTAL.app_id}' and createdDateTime ge 2026-10-23T02:00:00Z"
    assert first["$select"].split(",") == list(SIGN_IN_FIELDS) and first["$top"] == "7"
    assert all("$skiptoken" in q for q in queries[1:])


async def test_non_interactive_sign_ins_come_from_beta(
    readers: tuple[GraphReader, ArmReader], scope_sim: GraphSimulator, world: tuple[Tenant, dict[str, Any]]
) -> None:
    graph, _ = readers
    found = await rows(graph.sign_ins(AZURE_POWERSHELL, SINCE, non_interactive=True))
    assert found and all(s["isInteractive"] is False and s["appId"] == AZURE_POWERSHELL.app_id for s in found)
    assert world[1]["serviceAccount"] in {s["userId"] for s in found}
    (first, *_) = scope_sim.queries(BETA_SIGN_INS)
    assert first["$filter"].endswith("and signInEventTypes/any(t: t eq 'nonInteractiveUser')")
    assert scope_sim.queries(V1_SIGN_INS) == []


async def test_sign_in_throttling_is_honoured_and_counted(
    readers: tuple[GraphReader, ArmReader], scope_sim: GraphSimulator
) -> None:
    graph, _ = readers
    scope_sim.inject(V1_SIGN_INS, Throttle(retry_after=1), times=1, page=2)
    found = await rows(graph.sign_ins(AZURE_CLI, SINCE))
    assert found and graph.stats.throttled == 1
    assert [r.status for r in scope_sim.requests if r.path == V1_SIGN_INS and r.page == 2] == [429, 200]


async def test_sign_ins_need_a_premium_licence(
    readers: tuple[GraphReader, ArmReader], scope_sim: GraphSimulator
) -> None:
    graph, _ = readers
    scope_sim.premium = False
    with pytest.raises(GraphLicenceError):
        await rows(graph.sign_ins(AZURE_PORTAL, SINCE))
    signals, figures = await gather_signals(ScopeSources(graph, SignalOptions()), NOW)
    assert not signals.sign_ins_available and signals.sign_ins == {}
    assert figures.sign_in_source.value == "unavailable_licence"
    assert signals.roles  # the other signals do not need the licence


# --- Entra roles, groups -------------------------------------------------------------------------


async def test_roles_active_eligible_and_through_role_assignable_groups(
    readers: tuple[GraphReader, ArmReader], world: tuple[Tenant, dict[str, Any]]
) -> None:
    graph, _ = readers
    tenant, info = world
    signals, figures = await gather_signals(ScopeSources(graph, SignalOptions(non_interactive=False)), NOW)
    assert figures.role_assignments == len(tenant.collection("roleAssignments"))
    assert figures.role_eligibilities == len(tenant.collection("roleEligibilityScheduleInstances"))
    for instance in tenant.collection("roleEligibilityScheduleInstances"):
        assert any(r.eligible for r in signals.roles[instance["principalId"]])
    helpdesk = next(g for g in tenant.collection("groups") if g["isAssignableToRole"])
    members = [m["id"] for m in tenant.extra["groupMembers"][helpdesk["id"]]]
    assert members and all(HELPDESK_ROLE[1] in {r.name for r in signals.roles[m]} for m in members)
    assert helpdesk["id"] not in signals.roles  # the group itself is not a person
    (sync_role,) = signals.roles[info["syncAccount"]]
    assert sync_role.template_id == "d29b2b05-8046-44ba-8758-1e26182fcf32"
    assert set(info["roleHolders"]) <= set(signals.roles)


async def test_exclusion_group_members_are_transitive_users(
    readers: tuple[GraphReader, ArmReader], world: tuple[Tenant, dict[str, Any]], scope_sim: GraphSimulator
) -> None:
    graph, _ = readers
    tenant, info = world
    options = SignalOptions(non_interactive=False, exclusion_group_id=info["exclusionGroupId"])
    signals, _ = await gather_signals(ScopeSources(graph, options), NOW)
    assert signals.exclusion_group == set(info["breakGlass"])
    platform = next(g for g in tenant.collection("groups") if g["displayName"] == "Azure Platform Team")
    members = await rows(graph.group_members(platform["id"]))
    kinds = {m["@odata.type"] for m in members}
    assert kinds == {"#microsoft.graph.user", "#microsoft.graph.group"}  # the nested group, and its members
    contractors = next(g for g in tenant.collection("groups") if g["displayName"] == "Platform Contractors")
    nested = {m["id"] for m in tenant.extra["groupMembers"][contractors["id"]]}
    assert nested <= {m["id"] for m in members}


# --- guests --------------------------------------------------------------------------------------


async def test_cross_tenant_policy_and_home_tenant_lookup(readers: tuple[GraphReader, ArmReader]) -> None:
    graph, _ = readers
    signals, _ = await gather_signals(ScopeSources(graph, SignalOptions(non_interactive=False)), NOW)
    trust = signals.guest_trust
    assert trust.default_mfa_accepted is False and trust.partner_overrides
    assert trust.accepts(HOME_TENANTS["fabrikam.example"]) is True
    assert trust.accepts(HOME_TENANTS["northwind.example"]) is False  # inherits the default
    assert (await graph.tenant_by_domain("fabrikam.example") or {})["tenantId"] == HOME_TENANTS["fabrikam.example"]
    assert await graph.tenant_by_domain("gmail.example") is None  # no Entra tenant owns it


async def test_a_missing_permission_is_named(readers: tuple[GraphReader, ArmReader], scope_sim: GraphSimulator) -> None:
    graph, _ = readers
    scope_sim.permissions.discard("Policy.Read.All")
    with pytest.raises(GraphPermissionError) as policy:
        await graph.cross_tenant_default()
    assert policy.value.permission == "Policy.Read.All"
    scope_sim.permissions.discard("RoleManagement.Read.Directory")
    with pytest.raises(GraphPermissionError) as roles:
        await rows(graph.role_assignments())
    assert roles.value.permission == "RoleManagement.Read.Directory"


# --- per-user calls ------------------------------------------------------------------------------


async def test_per_user_calls(readers: tuple[GraphReader, ArmReader], world: tuple[Tenant, dict[str, Any]]) -> None:
    graph, _ = readers
    tenant, info = world
    registered = next(r for r in tenant.user_registration_details if r["isMfaRegistered"])
    methods = await graph.authentication_methods(registered["id"])
    assert methods and "#microsoft.graph.passwordAuthenticationMethod" in {m["@odata.type"] for m in methods}
    assert len(methods) > 1
    assert await graph.authentication_methods("00000000-0000-4000-8000-000000000000") is None
    assert ever_signed_in(await graph.sign_in_activity(info["neverSignedIn"])) is False
    assert ever_signed_in(await graph.sign_in_activity(info["serviceAccount"])) is True
    assert ever_signed_in(await graph.sign_in_activity("00000000-0000-4000-8000-000000000000")) is None


# --- Azure RBAC (Resource Graph) ------------------------------------------------------------------


async def test_resource_graph_pages_with_skip_tokens_and_expands_groups(
    readers: tuple[GraphReader, ArmReader], scope_sim: GraphSimulator, world: tuple[Tenant, dict[str, Any]]
) -> None:
    graph, arm = readers
    tenant, info = world
    scope_sim.inject("/providers", Throttle(retry_after=1), times=1)
    async with (
        build_credential("managed_identity", None) as credential,
        ArmReader(credential, base_url=scope_sim.root_url, page_size=2, retry_delay_seconds=0) as small,
    ):
        found = await rows(small.role_assignments())
        assert len(found) == len(tenant.collection("azureRoleAssignments")) > 2
        assert small.stats.pages == -(-len(found) // 2) and small.stats.throttled == 1
    posts = [r for r in scope_sim.requests if r.path.startswith("/providers")]
    assert all(r.method == "POST" and r.query["api-version"] == "2022-10-01" for r in posts)
    assert {"resource": ARM_RESOURCE, "client_id": None} in scope_sim.token_requests

    options = SignalOptions(non_interactive=False, azure_rbac=True)
    signals, figures = await gather_signals(ScopeSources(graph, options, arm), NOW)
    assert figures.azure_role_assignments == len(found)
    assert signals.rbac[info["serviceAccount"]] == ("Contributor",)
    platform = next(g for g in tenant.collection("groups") if g["displayName"] == "Azure Platform Team")
    users = [m["id"] for m in tenant.extra["groupMembers"][platform["id"]] if m["@odata.type"].endswith("user")]
    assert users and all("Contributor" in signals.rbac[u] for u in users)


async def test_resource_graph_without_reader_answers_nothing(
    readers: tuple[GraphReader, ArmReader], scope_sim: GraphSimulator
) -> None:
    _, arm = readers
    scope_sim.arm_reader = False  # type: ignore[attr-defined]
    assert await rows(arm.role_assignments()) == []


async def test_a_failing_signal_raises(readers: tuple[GraphReader, ArmReader], scope_sim: GraphSimulator) -> None:
    graph, _ = readers
    scope_sim.inject("/v1.0/roleManagement", ServerError(503, retry_after=0), times=None)
    with pytest.raises(Exception, match="503"):
        await gather_signals(ScopeSources(graph, SignalOptions(non_interactive=False)), NOW)
