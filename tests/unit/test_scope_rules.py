"""Who is in scope and why, who is not nudged and why: the pure scope rules."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.domain.records import UserRecord, UserType
from shared.domain.scope import (
    ExclusionCode,
    Phase,
    ScopeFacts,
    in_scope,
    last_seen_refresh_due,
    phases_of,
)
from shared.domain.scope_rules import (
    ALL_FILTERS,
    MAX_REASONS,
    NO_EVIDENCE,
    Evidence,
    Filter,
    GuestTrust,
    Lookup,
    LookupResults,
    PersonFacts,
    RoleGrant,
    ScopePolicy,
    ScopeSignals,
    SignIn,
    SignInTally,
    assess,
)

NOW = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
OLD = "2021-01-01T00:00:00Z"
MEMBER = PersonFacts(has_mailbox=True)
NO_TRUST = GuestTrust(default_mfa_accepted=False)
POLICY = ScopePolicy()


def rec(**overrides: Any) -> UserRecord:
    base: dict[str, Any] = {
        "id": "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9",
        "upn": "ada@contoso.com",
        "display_name": "Ada Lovelace",
        "user_type": UserType.MEMBER,
        "enabled": True,
        "mfa_registered": False,
        "mfa_capable": False,
        "is_admin": False,
        "methods": (),
        "default_method": None,
        "email": "ada@contoso.com",
        "created": OLD,
        "external_user_state": None,
        "on_premises_sync": False,
    }
    base.update(overrides)
    return UserRecord(**base)


def ago(days: float) -> str:
    return (NOW - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


def tally(*sign_ins: tuple[str, float, bool, bool]) -> SignInTally:
    """(tool, days ago, interactive, mfa) per sign-in, all successful."""
    t = SignInTally()
    for tool, days, interactive, mfa in sign_ins:
        t.add(SignIn("u", tool, ago(days), interactive, True, mfa))
    return t


def facts(
    record: UserRecord | None = None,
    evidence: Evidence = Evidence(),  # noqa: B008 - frozen
    *,
    person: PersonFacts = MEMBER,
    previous: ScopeFacts | None = None,
    policy: ScopePolicy = POLICY,
    trust: GuestTrust = NO_TRUST,
    lookups: LookupResults = LookupResults(),  # noqa: B008 - frozen
) -> ScopeFacts:
    return assess(record or rec(), person, evidence, previous, policy, trust, NOW, lookups).facts


# --- each signal -------------------------------------------------------------------------------


def test_nobody_is_in_scope_without_a_signal() -> None:
    f = facts()
    assert f.known and f.phases == () and f.reasons == () and f.exclusion is None
    assert not in_scope(replace(rec(), scope=f))


def test_portal_sign_in_is_phase1_and_cli_is_phase2() -> None:
    portal = facts(evidence=Evidence(sign_ins=tally(("azure_portal", 3, True, True))))
    assert portal.phases == (Phase.PORTALS,)
    assert portal.reasons == ("signin:azure_portal",)
    assert portal.tools == ("azure_portal",) and portal.last_seen == ago(3)
    cli = facts(evidence=Evidence(sign_ins=tally(("azure_cli", 1, True, False), ("azure_mobile_app", 2, True, True))))
    assert cli.phases == (Phase.ARM,)
    assert cli.reasons == ("signin:azure_cli", "signin:azure_mobile_app")
    assert dict(cli.tool_last_seen) == {"azure_cli": ago(1), "azure_mobile_app": ago(2)}
    assert cli.last_seen == ago(1)


@pytest.mark.parametrize(
    ("grant", "reason"),
    [
        (RoleGrant("Global Administrator", "62e90394-69f5-4237-9190-012177145e10"), "entra_role:Global Administrator"),
        (RoleGrant("User Administrator", eligible=True), "entra_role_eligible:User Administrator"),
    ],
)
def test_entra_roles_active_or_eligible_put_both_phases_in_scope(grant: RoleGrant, reason: str) -> None:
    f = facts(evidence=Evidence(roles=(grant,)))
    assert f.phases == (Phase.PORTALS, Phase.ARM)
    assert f.reasons == (reason,)


def test_report_admin_flag_counts_when_no_role_was_found() -> None:
    f = facts(rec(is_admin=True))
    assert f.reasons == ("report_admin",) and f.phases == (Phase.PORTALS, Phase.ARM)
    with_role = facts(rec(is_admin=True), Evidence(roles=(RoleGrant("Global Reader"),)))
    assert with_role.reasons == ("entra_role:Global Reader",)


def test_azure_rbac_and_guests() -> None:
    assert facts(evidence=Evidence(rbac_roles=("Contributor", "Owner"))).reasons == (
        "azure_rbac:Contributor",
        "azure_rbac:Owner",
    )
    guest = rec(user_type=UserType.GUEST, upn="eve_fabrikam.com#EXT#@contoso.com")
    assert facts(guest).reasons == ("guest",)
    assert facts(guest, policy=ScopePolicy(guests_in_scope=False)).phases == ()


def test_reasons_are_the_union_of_every_signal_in_a_stable_order() -> None:
    evidence = Evidence(
        sign_ins=tally(("azure_portal", 2, True, True), ("azure_cli", 5, True, True)),
        roles=(RoleGrant("Security Administrator"), RoleGrant("Global Administrator", eligible=True)),
        rbac_roles=("Reader",),
    )
    f = facts(rec(user_type=UserType.GUEST), evidence)
    assert f.reasons == (
        "signin:azure_cli",
        "signin:azure_portal",
        "entra_role:Security Administrator",
        "entra_role_eligible:Global Administrator",
        "azure_rbac:Reader",
        "guest",
    )
    assert f.phases == (Phase.PORTALS, Phase.ARM)


def test_many_roles_are_capped_and_counted() -> None:
    roles = tuple(RoleGrant(f"Custom role {i:02d} " + "x" * 200) for i in range(45))
    f = facts(evidence=Evidence(roles=roles))
    assert len(f.reasons) == MAX_REASONS and f.more_reasons == 45 - MAX_REASONS
    assert all(len(r) <= 120 for r in f.reasons)


# --- sign-in memory ----------------------------------------------------------------------------


def test_a_user_who_stops_signing_in_stays_in_scope_with_last_seen_kept() -> None:
    night1 = facts(evidence=Evidence(sign_ins=tally(("azure_cli", 1, True, True))))
    # 40 nights later the logs (30 days) no longer have the sign-in: the memory keeps it.
    later = assess(rec(), MEMBER, Evidence(), night1, POLICY, NO_TRUST, NOW + timedelta(days=40)).facts
    assert later.phases == (Phase.ARM,) and later.reasons == ("signin:azure_cli",)
    assert later.last_seen == night1.last_seen == ago(1)
    assert later.mfa_satisfied is True  # kept from the last night with sign-ins
    # ...until the memory window (SCOPE_SIGNIN_MEMORY_DAYS) has passed.
    forgotten = assess(rec(), MEMBER, Evidence(), night1, POLICY, NO_TRUST, NOW + timedelta(days=200)).facts
    assert forgotten.phases == () and forgotten.last_seen is None and forgotten.tools == ()


def test_tonights_sign_in_moves_the_memory_forward_never_back() -> None:
    before = facts(evidence=Evidence(sign_ins=tally(("azure_portal", 1, True, True))))
    older = facts(evidence=Evidence(sign_ins=tally(("azure_portal", 5, True, True))), previous=before)
    assert older.last_seen == ago(1)


def test_mfa_satisfied_is_false_after_a_single_factor_sign_in() -> None:
    f = facts(evidence=Evidence(sign_ins=tally(("azure_portal", 1, True, True), ("azure_cli", 2, True, False))))
    assert f.mfa_satisfied is False
    failed = SignInTally()
    failed.add(SignIn("u", "azure_portal", ago(1), True, False, False))
    assert facts(evidence=Evidence(sign_ins=failed)).mfa_satisfied is None  # only a failure: unknown


# --- noise filters -----------------------------------------------------------------------------

ADMIN = Evidence(roles=(RoleGrant("Global Administrator"),))


def code(f: ScopeFacts) -> str | None:
    return f.exclusion_code


def test_disabled_accounts_are_excluded_unless_the_filter_is_off() -> None:
    f = facts(rec(enabled=False), ADMIN)
    assert code(f) == ExclusionCode.DISABLED and f.exclusion == "account disabled"
    assert f.phases  # still in scope: exclusion is a separate question
    off = facts(rec(enabled=False), ADMIN, policy=ScopePolicy(filters=ALL_FILTERS - {Filter.DISABLED}))
    assert code(off) is None


def test_exclusion_group_and_upn_patterns() -> None:
    grouped = facts(evidence=replace(ADMIN, in_exclusion_group=True))
    assert code(grouped) == ExclusionCode.EXCLUSION_GROUP
    patterned = facts(
        rec(upn="BreakGlass2@Contoso.com"), ADMIN, policy=ScopePolicy(upn_patterns=("breakglass*@contoso.com",))
    )
    assert code(patterned) == ExclusionCode.UPN_PATTERN
    assert code(facts(rec(upn="ada@contoso.com"), ADMIN, policy=ScopePolicy(upn_patterns=("breakglass*",)))) is None


def test_directory_sync_accounts_by_upn_or_role() -> None:
    by_upn = facts(rec(upn="Sync_SRV01_1a2b3c4d5e6f@contoso.onmicrosoft.com"), ADMIN)
    assert code(by_upn) == ExclusionCode.DIRECTORY_SYNC
    role = RoleGrant("Directory Synchronization Accounts", "d29b2b05-8046-44ba-8758-1e26182fcf32")
    assert code(facts(rec(upn="aadconnect@contoso.com"), Evidence(roles=(role,)))) == ExclusionCode.DIRECTORY_SYNC
    off = ScopePolicy(filters=frozenset())
    assert code(facts(rec(upn="Sync_SRV01_x@contoso.com"), ADMIN, policy=off)) is None


def test_never_signed_in_needs_a_lookup_and_spares_new_accounts() -> None:
    a = assess(rec(), MEMBER, ADMIN, None, POLICY, NO_TRUST, NOW)
    assert a.needs == {Lookup.SIGN_IN_ACTIVITY} and a.facts.exclusion is None
    never = facts(evidence=ADMIN, lookups=LookupResults(ever_signed_in=False))
    assert code(never) == ExclusionCode.NEVER_SIGNED_IN
    assert code(facts(evidence=ADMIN, lookups=LookupResults(ever_signed_in=True))) is None
    # A new admin who has not signed in yet is exactly who must be reached: no lookup, no exclusion.
    fresh = assess(rec(created=ago(3)), MEMBER, ADMIN, None, POLICY, NO_TRUST, NOW)
    assert fresh.needs == frozenset() and fresh.facts.exclusion is None
    # Someone with a management sign-in has signed in.
    active = assess(
        rec(), MEMBER, replace(ADMIN, sign_ins=tally(("azure_portal", 1, True, True))), None, POLICY, NO_TRUST, NOW
    )
    assert active.needs == frozenset()


def test_having_signed_in_is_remembered_so_the_lookup_is_made_once() -> None:
    checked = facts(evidence=ADMIN, lookups=LookupResults(ever_signed_in=True))
    assert checked.ever_signed_in is True
    again = assess(rec(), MEMBER, ADMIN, checked, POLICY, NO_TRUST, NOW)
    assert again.needs == frozenset() and again.facts.ever_signed_in is True
    # "Never" is checked again each night (the mailbox may start being used).
    never = facts(evidence=ADMIN, lookups=LookupResults(ever_signed_in=False))
    assert assess(rec(), MEMBER, ADMIN, never, POLICY, NO_TRUST, NOW).needs == {Lookup.SIGN_IN_ACTIVITY}
    # A management sign-in is proof enough.
    assert facts(evidence=Evidence(sign_ins=tally(("azure_portal", 1, True, True)))).ever_signed_in is True


def test_a_guest_who_never_redeemed_the_invitation_never_signed_in() -> None:
    guest = rec(user_type=UserType.GUEST, external_user_state="PendingAcceptance")
    assert code(facts(guest)) == ExclusionCode.NEVER_SIGNED_IN
    assert code(facts(replace(guest, external_user_state="Accepted"))) is None


def test_service_accounts_are_flagged_move_to_a_workload_identity() -> None:
    scripted = tally(("azure_powershell", 1, False, False), ("azure_powershell", 2, False, False))
    svc = facts(rec(email=None), Evidence(sign_ins=scripted), person=PersonFacts(has_mailbox=False))
    assert code(svc) == ExclusionCode.WORKLOAD_IDENTITY
    assert svc.exclusion == "service account: move to a workload identity" and svc.workload_identity
    # A mailbox, or one interactive sign-in, and it is a person.
    assert code(facts(evidence=Evidence(sign_ins=scripted))) is None
    mixed = tally(("azure_cli", 1, True, True), ("azure_cli", 2, False, True))
    assert code(facts(evidence=Evidence(sign_ins=mixed), person=PersonFacts(has_mailbox=False))) is None
    # Kept on nights without sign-ins while the memory lasts.
    later = assess(rec(), PersonFacts(has_mailbox=False), Evidence(), svc, POLICY, NO_TRUST, NOW + timedelta(days=35))
    assert later.facts.workload_identity


def test_the_first_exclusion_wins_and_people_out_of_scope_get_none() -> None:
    both = facts(rec(enabled=False), replace(ADMIN, in_exclusion_group=True))
    assert code(both) == ExclusionCode.DISABLED
    assert facts(rec(enabled=False)).exclusion is None  # not in scope: nothing to exclude from


# --- guests' home-tenant MFA ---------------------------------------------------------------------

GUEST = rec(user_type=UserType.GUEST, upn="eve_fabrikam.com#EXT#@contoso.com", email="eve@fabrikam.com")
ENTRA_GUEST = PersonFacts(has_mailbox=True, home_domain="fabrikam.com", entra_guest=True)
FABRIKAM = "6f0b8c1e-5b1a-4f3e-9c62-2b7f1f6f0a01"


def test_guest_trust_follows_the_default_when_no_partner_differs() -> None:
    assert facts(GUEST, person=ENTRA_GUEST, trust=GuestTrust(True)).home_mfa_trusted is True
    assert facts(GUEST, person=ENTRA_GUEST, trust=GuestTrust(False, {FABRIKAM: None})).home_mfa_trusted is False
    assert facts(rec()).home_mfa_trusted is None  # members: not a question


def test_a_consumer_account_guest_is_never_trusted() -> None:
    gmail = PersonFacts(has_mailbox=True, home_domain="gmail.com", entra_guest=False)
    assert facts(GUEST, person=gmail, trust=GuestTrust(True)).home_mfa_trusted is False


def test_partner_overrides_need_the_home_tenant() -> None:
    trust = GuestTrust(False, {FABRIKAM: True})
    a = assess(GUEST, ENTRA_GUEST, Evidence(), None, POLICY, trust, NOW)
    assert a.needs == {Lookup.HOME_TENANT} and a.facts.home_mfa_trusted is None
    assert facts(
        GUEST, person=ENTRA_GUEST, trust=trust, lookups=LookupResults(home_tenant_id=FABRIKAM)
    ).home_mfa_trusted
    other = LookupResults(home_tenant_id="11111111-2222-4333-8444-555555555555")
    assert facts(GUEST, person=ENTRA_GUEST, trust=trust, lookups=other).home_mfa_trusted is False
    assert (
        facts(GUEST, person=ENTRA_GUEST, trust=trust, lookups=LookupResults(home_tenant_id="")).home_mfa_trusted
        is False
    )


def test_a_trusted_guest_is_still_in_scope_and_not_excluded() -> None:
    f = facts(GUEST, person=ENTRA_GUEST, trust=GuestTrust(True))
    assert f.phases and f.home_mfa_trusted is True and f.exclusion is None


def test_a_guest_without_a_deliverable_address_is_in_scope_and_reported_by_the_planner() -> None:
    nowhere = replace(GUEST, email=None)
    f = facts(nowhere, person=ENTRA_GUEST, trust=GuestTrust(False))
    assert f.phases and f.exclusion is None  # reaching them is the nudge planner's question


# --- the contract other modules read -------------------------------------------------------------


def test_in_scope_and_phases_of_use_the_facts_once_known() -> None:
    unknown = rec(is_admin=True)
    assert in_scope(unknown) and phases_of(unknown) == (Phase.PORTALS, Phase.ARM)  # the fallback
    known = replace(unknown, scope=ScopeFacts(known=True, phases=(Phase.ARM,)))
    assert in_scope(known) and phases_of(known) == (Phase.ARM,)
    assert not in_scope(replace(unknown, scope=ScopeFacts(known=True)))


def test_signals_give_each_user_their_evidence() -> None:
    t = tally(("azure_portal", 1, True, True))
    signals = ScopeSignals(sign_ins={"a": t}, roles={"b": (RoleGrant("X"),)}, exclusion_group=frozenset({"c"}))
    assert signals.for_user("a").sign_ins is t
    assert signals.for_user("b").roles == (RoleGrant("X"),)
    assert signals.for_user("c").in_exclusion_group
    assert signals.for_user("d") == Evidence()
    assert signals.candidate_ids() == {"a", "b"}
    assert signals.evidence_ids() == {"a", "b", "c"}
    # a signal that names a user with nothing in it is no evidence
    empty = ScopeSignals(roles={"e": ()}, rbac={"f": ()}, exclusion_group=frozenset({"c"}))
    assert empty.for_user("e") is NO_EVIDENCE and empty.evidence_ids() == {"c"}


def test_last_seen_refresh_is_due_only_past_a_week() -> None:
    stored = ScopeFacts(known=True, tool_last_seen=(("azure_cli", ago(10)),))
    assert not last_seen_refresh_due(stored, replace(stored, tool_last_seen=(("azure_cli", ago(4)),)))
    assert last_seen_refresh_due(stored, replace(stored, tool_last_seen=(("azure_cli", ago(2)),)))
    assert not last_seen_refresh_due(stored, replace(stored, tool_last_seen=(("azure_portal", ago(0)),)))
