"""Scope facts on the record: what costs a write, the scope deltas, the census, the table row,
and the wire-format helpers (addresses, sign-ins, the licence fallback), plus the settings."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from shared.adapters.table_schema import (
    coverage_entity,
    run_entity,
    scope_from_entity,
    stored_user_from_entity,
    user_entity,
)
from shared.config import SETTINGS, Settings, SettingsError
from shared.domain.census import Census
from shared.domain.deltas import ChangeKind, reconcile
from shared.domain.normalize import (
    Skipped,
    deliverable_address,
    person_from_graph,
    registration_from_methods,
    sign_in_from_graph,
)
from shared.domain.records import StoredUser
from shared.domain.runs import RegistrationSource, RunStatus, SignalFigures, SignInSource, SyncRun
from shared.domain.scope import ExclusionCode, Phase, ScopeFacts
from shared.domain.scope_rules import Evidence, Filter, RoleGrant, assess
from tests.unit.test_scope_rules import MEMBER, NO_TRUST, NOW, POLICY, ago, rec

NIGHT2 = "2026-11-23T02:00:00+00:00"
CLI = ScopeFacts(
    known=True,
    phases=(Phase.ARM,),
    reasons=("signin:azure_cli",),
    tools=("azure_cli",),
    last_seen=ago(10),
    tool_last_seen=(("azure_cli", ago(10)),),
    mfa_satisfied=True,
)


def stored(scope: ScopeFacts) -> StoredUser:
    return StoredUser(record=rec(scope=scope), version=4, etag="e", first_seen="2026-01-01T00:00:00Z")


# --- tracked vs carried --------------------------------------------------------------------------


def test_last_seen_moving_by_days_costs_no_write() -> None:
    tonight = replace(CLI, last_seen=ago(5), tool_last_seen=(("azure_cli", ago(5)),))
    assert reconcile(stored(CLI), rec(scope=tonight), NIGHT2) is None


def test_last_seen_moving_past_a_week_is_a_silent_write() -> None:
    tonight = replace(CLI, last_seen=ago(1), tool_last_seen=(("azure_cli", ago(1)),))
    update = reconcile(stored(CLI), rec(scope=tonight), NIGHT2)
    assert update is not None and update.changes == ()
    assert update.stored.record.scope.last_seen == ago(1)


def test_a_new_reason_or_exclusion_is_a_silent_write() -> None:
    more = replace(CLI, reasons=(*CLI.reasons, "azure_rbac:Owner"), phases=(Phase.PORTALS, Phase.ARM))
    update = reconcile(stored(replace(CLI, phases=(Phase.PORTALS, Phase.ARM))), rec(scope=more), NIGHT2)
    assert update is not None and update.changes == ()
    excluded = replace(CLI, exclusion="x", exclusion_code=ExclusionCode.EXCLUSION_GROUP.value)
    update = reconcile(stored(CLI), rec(scope=excluded), NIGHT2)
    assert update is not None and update.changes == ()


def test_entering_and_leaving_scope_are_changes_with_phases_and_reasons() -> None:
    out = ScopeFacts(known=True)
    entered = reconcile(stored(out), rec(scope=CLI), NIGHT2)
    assert entered is not None
    (change,) = entered.changes
    assert change.kind is ChangeKind.ENTERED_SCOPE
    assert change.before == {"phases": [], "reasons": []}
    assert change.after == {"phases": ["phase2"], "reasons": ["signin:azure_cli"]}
    left = reconcile(stored(CLI), rec(scope=out), NIGHT2)
    assert left is not None and [c.kind for c in left.changes] == [ChangeKind.LEFT_SCOPE]
    # Gaining phase 1 while in scope of phase 2 is entering (the scope of a phase).
    both = replace(CLI, phases=(Phase.PORTALS, Phase.ARM), reasons=("signin:azure_cli", "signin:azure_portal"))
    assert [c.kind for c in reconcile(stored(CLI), rec(scope=both), NIGHT2).changes] == [ChangeKind.ENTERED_SCOPE]  # type: ignore[union-attr]


def test_the_signals_running_for_the_first_time_is_not_a_change() -> None:
    update = reconcile(stored(ScopeFacts()), rec(scope=CLI), NIGHT2)
    assert update is not None and update.changes == ()


def test_a_new_user_shows_their_scope_in_the_new_event() -> None:
    update = reconcile(None, rec(scope=CLI), NIGHT2)
    assert update is not None
    (change,) = update.changes
    assert change.kind is ChangeKind.NEW and change.after is not None
    assert change.after["phases"] == ["phase2"] and change.after["reasons"] == ["signin:azure_cli"]


# --- census and run rows -------------------------------------------------------------------------


def test_census_counts_in_scope_users_by_reason_phase_and_exclusion() -> None:
    c = Census()
    c.count_user(rec(id="a", scope=CLI, mfa_registered=True))
    c.count_user(rec(id="b", scope=replace(CLI, phases=(Phase.PORTALS, Phase.ARM), reasons=("entra_role:X", "guest"))))
    excluded = replace(CLI, exclusion="x", exclusion_code="workload_identity")
    c.count_user(rec(id="c", scope=excluded, mfa_registered=None))
    c.count_user(rec(id="d", scope=ScopeFacts(known=True)))  # out of scope
    c.count_user(rec(id="e", scope=CLI, enabled=False))  # disabled: not counted
    f = c.figures()
    assert f.scope_known == 4 and f.in_scope == 3
    assert f.scope_reasons == {"entra_role": 1, "guest": 1, "signin": 2}
    assert f.excluded == {"workload_identity": 1}
    assert (f.in_scope_coverage.registered, f.in_scope_coverage.unregistered, f.in_scope_coverage.unknown) == (1, 1, 1)
    assert f.phase_coverage["phase1"].unregistered == 1 and f.phase_coverage["phase1"].registered == 0
    assert f.phase_coverage["phase2"].registered == 1 and f.phase_coverage["phase2"].unknown == 1

    run = SyncRun(
        run_id="20261123T020000Z-abcdef",
        night="2026-11-23",
        started=NOW,
        status=RunStatus.COMPLETED,
        figures=f,
        signals=SignalFigures(
            registration_source=RegistrationSource.PER_USER_METHODS, sign_in_source=SignInSource.LOGS, sign_ins_read=9
        ),
    )
    row = run_entity(run, index_pending=False)
    assert row["RegistrationSource"] == "per_user_methods" and row["SignInSource"] == "logs" and row["SignInsRead"] == 9
    coverage = coverage_entity(run)
    assert coverage["InScope"] == 3 and coverage["InScopeUnregistered"] == 1
    assert (coverage["Phase1InScope"], coverage["Phase1Unregistered"]) == (1, 1)
    assert (coverage["Phase2InScope"], coverage["Phase2Registered"], coverage["Phase2Unknown"]) == (3, 1, 1)
    assert coverage["Phase2CoveragePercent"] == 50.0
    assert json.loads(coverage["ScopeReasons"]) == {"entra_role": 1, "guest": 1, "signin": 2}
    assert json.loads(coverage["ScopeExcluded"]) == {"workload_identity": 1} and coverage["ExcludedTotal"] == 1
    assert len(row) < 200


# --- the state row -------------------------------------------------------------------------------


def round_trip(scope: ScopeFacts) -> ScopeFacts:
    entity = user_entity(stored(scope), run_id="r", changed_at="t")
    assert None not in entity.values()
    return stored_user_from_entity(entity, "etag").record.scope


def test_scope_facts_round_trip() -> None:
    full = replace(
        CLI,
        phases=(Phase.PORTALS, Phase.ARM),
        reasons=("signin:azure_cli", "entra_role:Global Administrator", "guest"),
        exclusion="service account: move to a workload identity",
        exclusion_code="workload_identity",
        home_mfa_trusted=True,
        mfa_satisfied=False,
        more_reasons=7,
        ever_signed_in=True,
    )
    assert round_trip(full) == full
    assert round_trip(CLI) == CLI
    assert round_trip(ScopeFacts(known=True)) == ScopeFacts(known=True)


def test_unknown_scope_is_absent_from_the_row() -> None:
    entity = user_entity(stored(ScopeFacts()), run_id="r", changed_at="t")
    assert not [k for k in entity if k.startswith("Scope") or k == "HomeMfaTrusted"]
    assert scope_from_entity({}) == ScopeFacts()
    assert scope_from_entity({"ScopeKnown": True, "ScopePhases": "phase9,phase1", "ScopeReasons": "not json"}) == (
        ScopeFacts(known=True, phases=(Phase.PORTALS,))
    )


def test_a_user_with_many_roles_fits_in_an_entity() -> None:
    roles = tuple(RoleGrant(f"Role {i} " + "é" * 300) for i in range(500))
    scope = assess(rec(), MEMBER, Evidence(roles=roles), None, POLICY, NO_TRUST, NOW).facts
    entity = user_entity(stored(scope), run_id="r", changed_at="t")
    assert len(entity) + 1 < 252
    assert all(len(v) < 32 * 1024 for v in entity.values() if isinstance(v, str))
    assert entity["ScopeMoreReasons"] == 480


# --- wire formats --------------------------------------------------------------------------------

GUEST_UPN = "eve_fabrikam.com#EXT#@contoso.onmicrosoft.com"


def test_identities_give_a_guest_an_address_after_mail_and_other_mails() -> None:
    identities = [
        {"signInType": "userPrincipalName", "issuer": "contoso.onmicrosoft.com", "issuerAssignedId": GUEST_UPN},
        {"signInType": "federated", "issuer": "mail", "issuerAssignedId": "eve@fabrikam.com"},
    ]
    assert deliverable_address({"mail": None, "otherMails": [], "identities": identities}) == "eve@fabrikam.com"
    assert deliverable_address({"mail": "m@x.com", "identities": identities}) == "m@x.com"
    # A member's UPN identity is not a mailbox, and #EXT# is never an address.
    upn_only = [{"signInType": "userPrincipalName", "issuer": "contoso.com", "issuerAssignedId": "ada@contoso.com"}]
    assert deliverable_address({"identities": upn_only}) is None
    ext = [{"signInType": "emailAddress", "issuer": "x", "issuerAssignedId": GUEST_UPN}]
    assert deliverable_address({"identities": ext}) is None
    assert deliverable_address({"identities": "junk"}) is None


def test_person_facts_from_the_user_object() -> None:
    guest = {
        "userPrincipalName": GUEST_UPN,
        "userType": "Guest",
        "mail": None,
        "identities": [{"signInType": "federated", "issuer": "ExternalAzureAD", "issuerAssignedId": None}],
    }
    assert person_from_graph(guest) == person_from_graph(guest)
    p = person_from_graph(guest)
    assert (p.has_mailbox, p.home_domain, p.entra_guest) == (False, "fabrikam.com", True)
    gmail = {
        **guest,
        "userPrincipalName": "bob_gmail.com#EXT#@contoso.com",
        "identities": [{"signInType": "federated", "issuer": "mail"}],
    }
    assert person_from_graph(gmail).entra_guest is False
    assert person_from_graph({"userType": "Member", "mail": "a@b.com"}).has_mailbox


def test_sign_ins_from_graph() -> None:
    row = {
        "userId": "AAAA-1",
        "appId": "04B07795-8DDB-461A-BBEE-02F9E1BF7B46",
        "resourceId": "797f4846-ba00-4fd7-ba43-dac1f8f63013",
        "createdDateTime": "2026-11-20T10:00:00Z",
        "isInteractive": False,
        "authenticationRequirement": "multiFactorAuthentication",
        "status": {"errorCode": 0},
    }
    s = sign_in_from_graph(row)
    assert not isinstance(s, Skipped)
    assert (s.user_id, s.tool, s.interactive, s.succeeded, s.mfa) == ("aaaa-1", "azure_cli", False, True, True)
    portal_to_arm = sign_in_from_graph({**row, "appId": "c44b4083-3bb0-49c1-b47d-974e53cbdf3c"})
    assert not isinstance(portal_to_arm, Skipped) and portal_to_arm.tool == "azure_portal"
    other_to_arm = sign_in_from_graph({**row, "appId": "aebc6443-996d-45c2-90f0-388ff96faa56"})
    assert not isinstance(other_to_arm, Skipped) and other_to_arm.tool == "azure_resource_manager"
    for bad in (
        "x",
        {**row, "userId": None},
        {**row, "appId": "x", "resourceId": "y"},
        {**row, "createdDateTime": None},
    ):
        assert isinstance(sign_in_from_graph(bad), Skipped)
    beta = {k: v for k, v in row.items() if k != "isInteractive"} | {"signInEventTypes": ["nonInteractiveUser"]}
    assert sign_in_from_graph(beta).interactive is False  # type: ignore[union-attr]


def test_registration_from_a_users_methods() -> None:
    methods = [
        {"@odata.type": "#microsoft.graph.passwordAuthenticationMethod", "id": "p"},
        {"@odata.type": "#microsoft.graph.phoneAuthenticationMethod", "id": "1", "phoneType": "mobile"},
        {"@odata.type": "#microsoft.graph.microsoftAuthenticatorAuthenticationMethod", "id": "2"},
        "junk",
    ]
    facts = registration_from_methods(methods, is_admin=True)
    assert facts.mfa_registered is True and facts.is_admin is True and facts.mfa_capable is None
    assert facts.methods == ("microsoftAuthenticatorPush", "mobilePhone")
    only_password = registration_from_methods(methods[:1], is_admin=False)
    assert only_password.mfa_registered is False and only_password.methods == ()
    email = registration_from_methods([{"@odata.type": "#microsoft.graph.emailAuthenticationMethod"}], is_admin=None)
    assert email.mfa_registered is False and email.methods == ("email",)


# --- settings ------------------------------------------------------------------------------------

ENDPOINT = "https://monitorstate.table.core.windows.net"


def test_scope_settings_defaults_and_values() -> None:
    s = Settings.from_env({"TABLES_ENDPOINT": ENDPOINT}).scope
    assert s.policy.lookback_days == 30 and s.policy.memory_days == 180 and s.policy.guests_in_scope
    assert s.policy.filters == frozenset(Filter) and s.non_interactive and not s.azure_rbac
    assert s.registration_fallback and s.concurrency == 8 and s.arm_base_url == "https://management.azure.com"
    custom = Settings.from_env(
        {
            "TABLES_ENDPOINT": ENDPOINT,
            "SCOPE_FILTERS": "none",
            "SCOPE_GUESTS": "false",
            "SCOPE_EXCLUSION_GROUP_ID": "0A1B2C3D-4E5F-6071-8293-A4B5C6D7E8F9",
            "SCOPE_EXCLUDED_UPN_PATTERNS": "breakglass*@contoso.com, svc-*",
            "SCOPE_AZURE_RBAC": "true",
            "AZURE_RBAC_MANAGEMENT_GROUPS": "mg-root,mg-prod",
            "SIGNIN_LOOKBACK_DAYS": "7",
        }
    ).scope
    assert custom.policy.filters == frozenset() and not custom.policy.guests_in_scope
    assert custom.exclusion_group_id == "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9"
    assert custom.policy.upn_patterns == ("breakglass*@contoso.com", "svc-*")
    assert custom.azure_rbac and custom.rbac_management_groups == ("mg-root", "mg-prod")
    assert custom.policy.lookback_days == 7


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("SCOPE_FILTERS", "disabled,nonsense", "unknown filter"),
        ("SCOPE_GUESTS", "maybe", "true or false"),
        ("SCOPE_EXCLUSION_GROUP_ID", "breakglass", "GUID"),
        ("SIGNIN_LOOKBACK_DAYS", "31", "between 1 and 30"),
        ("SCOPE_SIGNIN_MEMORY_DAYS", "5", "at least SIGNIN_LOOKBACK_DAYS"),
        ("ARM_BASE_URL", "http://management.azure.com", "https URL"),
        ("AZURE_RBAC_MANAGEMENT_GROUPS", "a b", "management group id"),
        ("GRAPH_CONCURRENCY", "0", "between 1 and 32"),
    ],
)
def test_bad_scope_settings_are_reported(name: str, value: str, fragment: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"TABLES_ENDPOINT": ENDPOINT, name: value})
    assert name in str(caught.value) and fragment in str(caught.value)


def test_every_scope_setting_is_declared_with_a_doc() -> None:
    names = {s.name for s in SETTINGS}
    for name in ("SIGNIN_LOOKBACK_DAYS", "SCOPE_FILTERS", "SCOPE_AZURE_RBAC", "REGISTRATION_FALLBACK", "ARM_BASE_URL"):
        assert name in names
    assert all(s.doc for s in SETTINGS)
