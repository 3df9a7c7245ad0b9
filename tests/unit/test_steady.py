"""Steady users, fingerprints and profiles (shared.domain.steady, Census.count_profile)."""

from __future__ import annotations

from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.domain.census import Census, Profile, profile_of
from shared.domain.deltas import reconcile
from shared.domain.normalize import person_from_graph
from shared.domain.records import StoredUser, UserRecord, UserType
from shared.domain.scope import ScopeFacts
from shared.domain.scope_rules import NO_EVIDENCE, GuestTrust, PersonFacts, RoleGrant, ScopePolicy, assess
from shared.domain.scope_rules import Evidence as Ev
from shared.domain.steady import NEVER, NO_ROW, ScopeRules, fingerprint, is_steady, report_fingerprint
from tests.unit.tenant_records import tenant_records

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
RULES = ScopeRules(ScopePolicy(), GuestTrust(default_mfa_accepted=False), fallback=False)
OLD = "2020-01-01T00:00:00Z"


def member(**changes: object) -> UserRecord:
    base = UserRecord(
        id="0a0a0a0a-0000-4000-8000-000000000001",
        upn="ana@contoso.example",
        display_name="Ana",
        user_type=UserType.MEMBER,
        enabled=True,
        mfa_registered=True,
        mfa_capable=True,
        is_admin=False,
        methods=("microsoftAuthenticatorPush",),
        default_method="push",
        email="ana@contoso.example",
        created=OLD,
        external_user_state=None,
        on_premises_sync=False,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def settle(base: UserRecord, evidence: Ev = NO_EVIDENCE) -> StoredUser:
    """The user as stored after a first night with this evidence."""
    facts = assess(base, PersonFacts(), evidence, None, RULES.policy, RULES.trust, NOW).facts
    update = reconcile(None, replace(base, scope=facts), NOW.isoformat())
    assert update is not None
    return update.stored


# --- fingerprints ----------------------------------------------------------------------------


def test_fingerprints_follow_every_value_and_key_but_not_the_report_stamp() -> None:
    row = {"id": "a", "isMfaRegistered": True, "methodsRegistered": ["sms"], "lastUpdatedDateTime": "2026-11-22T01:00Z"}
    same = dict(row)
    assert fingerprint(row) == fingerprint(same) and len(fingerprint(row)) == 8
    for changed in (
        {**row, "isMfaRegistered": False},
        {**row, "isMfaRegistered": None},
        {**row, "methodsRegistered": ["sms", "email"]},
        {**row, "methodsRegistered": []},
        {k: v for k, v in row.items() if k != "methodsRegistered"},
        {**row, "extra": None},
    ):
        assert fingerprint(changed) != fingerprint(row)
        assert report_fingerprint(changed) != report_fingerprint(row)
    restamped = {**row, "lastUpdatedDateTime": "2026-11-23T01:00Z"}
    assert report_fingerprint(restamped) == report_fingerprint(row)
    assert fingerprint(restamped) != fingerprint(row)
    # 1 and True and 1.0 are different JSON values
    assert len({fingerprint({"v": v}) for v in (1, True, 1.0, "1")}) == 4
    assert fingerprint(None) == NO_ROW


def test_what_cannot_be_fingerprinted_matches_nothing() -> None:
    deep: object = []
    for _ in range(5000):
        deep = [deep]
    assert fingerprint({"id": "x", "nested": deep}) == NEVER
    assert NEVER != NO_ROW and len(NEVER) != 8


# --- profiles --------------------------------------------------------------------------------


def _records() -> list[UserRecord]:
    """A generated tenant through the real normaliser and scope rules, plus odd cases."""
    records = []
    for i, (obj, record) in enumerate(tenant_records(400, seed=21)):
        if i % 3:  # a third without scope facts (signals off), the rest assessed
            evidence = Ev(roles=(RoleGrant("Global Administrator"),)) if i % 7 == 0 else NO_EVIDENCE
            facts = assess(record, person_from_graph(obj), evidence, None, RULES.policy, RULES.trust, NOW).facts
            record = replace(record, scope=facts)
        records.append(record)
    records.append(member(methods=("someFutureMethod", "sms")))
    records.append(member(enabled=False, is_admin=True))
    return records


def test_counting_profiles_counts_exactly_what_counting_records_does() -> None:
    records = _records()
    by_record, by_profile, grouped = Census(), Census(), Census()
    for r in records:
        by_record.count_user(r)
        by_profile.count_profile(profile_of(r))
    counts: dict[Profile, int] = {}
    for r in records:
        counts[profile_of(r)] = counts.get(profile_of(r), 0) + 1
    for profile, n in counts.items():
        grouped.count_profile(profile, n)
    assert asdict(by_record.figures()) == asdict(by_profile.figures()) == asdict(grouped.figures())
    figures = by_record.figures()
    assert figures.in_scope > 0 and figures.guests > 0 and figures.disabled > 0 and figures.unknown_methods
    assert len(counts) < len(records) / 10  # few distinct profiles: they are what the snapshot lists


def test_profiles_round_trip_through_json_and_refuse_anything_else() -> None:
    for profile in {profile_of(r) for r in _records()}:
        assert Profile.from_json(profile.to_json()) == profile
    good = profile_of(member()).to_json()
    for bad in (None, {}, good[:-1], [*good[:3], "yes", *good[4:]], [*good[:7], "phase1", *good[8:]]):
        with pytest.raises(ValueError):
            Profile.from_json(bad)


# --- steadiness --------------------------------------------------------------------------------


def test_a_quiet_member_is_steady() -> None:
    base = member()
    assert is_steady(settle(base), base, PersonFacts(), RULES, NOW)


def test_without_scope_signals_the_stored_scope_is_carried_so_everyone_known_is_steady() -> None:
    base = member(created=(NOW - timedelta(days=2)).isoformat())
    stored = StoredUser(record=base, version=1, etag="e")
    assert is_steady(stored, base, PersonFacts(), None, NOW)


@pytest.mark.parametrize(
    ("why", "base", "evidence", "rules"),
    [
        (
            "an account younger than the lookback",
            member(created=(NOW - timedelta(days=3)).isoformat()),
            NO_EVIDENCE,
            RULES,
        ),
        ("a remembered management sign-in", member(), "signin", RULES),
        ("an admin whose sign-in activity must be looked up", member(is_admin=True), NO_EVIDENCE, RULES),
        ("a role held tonight (tomorrow without it would differ)", member(), Ev(roles=(RoleGrant("Reader"),)), RULES),
        ("unknown method names (each night reports them)", member(methods=("futureMethod",)), NO_EVIDENCE, RULES),
        (
            "per-user methods every night (Entra ID Free)",
            member(is_admin=True),
            NO_EVIDENCE,
            replace(RULES, fallback=True),
        ),
    ],
)
def test_who_is_not_steady(why: str, base: UserRecord, evidence: object, rules: ScopeRules) -> None:
    if evidence == "signin":
        stored = settle(base)
        memory = (("azure_portal", (NOW - timedelta(days=2)).isoformat()),)
        scope = replace(stored.record.scope, tool_last_seen=memory)
        stored = replace(stored, record=replace(stored.record, scope=scope))
    else:
        assert isinstance(evidence, Ev)
        stored = settle(base, evidence=evidence)
    assert not is_steady(stored, base, PersonFacts(), rules, NOW), why


def test_a_deleted_user_is_not_steady() -> None:
    base = member()
    assert not is_steady(replace(settle(base), deleted=True), base, PersonFacts(), RULES, NOW)


def test_an_admin_becomes_steady_once_known_to_have_signed_in() -> None:
    base = member(is_admin=True)
    stored = settle(base)
    assert not is_steady(stored, base, PersonFacts(), RULES, NOW)
    known = replace(stored, record=replace(stored.record, scope=replace(stored.record.scope, ever_signed_in=True)))
    assert is_steady(known, base, PersonFacts(), RULES, NOW)


_TEXT = st.sampled_from(["", "a", "sync_x", "Room 1"])
_WHEN = st.sampled_from([None, "garbage", OLD, "2026-11-20T00:00:00Z", "2026-11-22T23:00:00Z"])


@st.composite
def _cases(draw: st.DrawFn) -> tuple[StoredUser, UserRecord, PersonFacts, ScopeRules]:
    guest = draw(st.booleans())
    base = member(
        upn=draw(_TEXT) + "@contoso.example",
        user_type=UserType.GUEST if guest else UserType.MEMBER,
        enabled=draw(st.booleans()),
        mfa_registered=draw(st.sampled_from([True, False, None])),
        is_admin=draw(st.sampled_from([True, False, None])),
        created=draw(_WHEN),
        external_user_state=draw(st.sampled_from([None, "PendingAcceptance", "Accepted"])),
    )
    person = PersonFacts(has_mailbox=draw(st.booleans()), home_domain="fabrikam.example" if guest else None)
    previous = ScopeFacts(
        known=True,
        mfa_satisfied=draw(st.sampled_from([None, True, False])),
        ever_signed_in=draw(st.sampled_from([None, True, False])),
        tool_last_seen=draw(st.sampled_from([(), (("azure_cli", "2026-11-01T00:00:00Z"),)])),
        exclusion_code=draw(st.sampled_from([None, "workload_identity"])),
    )
    rules = ScopeRules(
        ScopePolicy(lookback_days=draw(st.sampled_from([7, 30])), guests_in_scope=draw(st.booleans())),
        GuestTrust(default_mfa_accepted=draw(st.sampled_from([None, True, False]))),
        fallback=draw(st.booleans()),
    )
    # The stored user: tonight's assessment of ``base`` given ``previous``, as the sync stores it.
    tonight = assess(base, person, NO_EVIDENCE, previous, rules.policy, rules.trust, NOW).facts
    stored = StoredUser(record=replace(base, scope=tonight), version=3, etag="e")
    return stored, base, person, rules


@settings(max_examples=400, deadline=None)
@given(case=_cases(), later_days=st.integers(min_value=0, max_value=800))
def test_steady_means_no_change_on_any_later_night_with_the_same_objects(
    case: tuple[StoredUser, UserRecord, PersonFacts, ScopeRules], later_days: int
) -> None:
    """The promise the sync's fast path rests on, checked against the rules themselves."""
    stored, base, person, rules = case
    if not is_steady(stored, base, person, rules, NOW):
        return
    later = NOW + timedelta(days=later_days, hours=later_days % 5)
    assessment = assess(base, person, NO_EVIDENCE, stored.record.scope, rules.policy, rules.trust, later)
    assert not assessment.needs
    assert reconcile(stored, replace(base, scope=assessment.facts), later.isoformat()) is None
