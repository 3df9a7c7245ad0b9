"""What changed for a user between two nights, and what to store because of it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.adapters.table_schema import stored_user_from_entity, user_entity
from shared.domain.deltas import (
    Change,
    ChangeKind,
    UserUpdate,
    carry_registration_forward,
    deletions,
    field_changes,
    reconcile,
    summary,
)
from shared.domain.normalize import Skipped, record_from_graph, registration_from_graph
from shared.domain.records import (
    REGISTRATION_FIELDS,
    TRACKED_FIELDS,
    StoredUser,
    UserRecord,
    UserType,
    intern_methods,
)

UID = "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9"
NIGHT1 = "2026-11-22T02:00:00+00:00"
NIGHT2 = "2026-11-23T02:00:00+00:00"


def rec(**overrides: Any) -> UserRecord:
    base: dict[str, Any] = {
        "id": UID,
        "upn": "ada@contoso.com",
        "display_name": "Ada Lovelace",
        "user_type": UserType.MEMBER,
        "enabled": True,
        "mfa_registered": True,
        "mfa_capable": True,
        "is_admin": False,
        "methods": ("microsoftAuthenticatorPush", "mobilePhone"),
        "default_method": "microsoftAuthenticatorPush",
        "email": "ada@contoso.com",
        "created": "2021-03-04T05:06:07Z",
        "external_user_state": None,
        "on_premises_sync": False,
        "report_updated": "2026-11-21T01:00:00Z",
        "in_report": True,
    }
    base.update(overrides)
    return UserRecord(**base)


def stored(record: UserRecord | None = None, **overrides: Any) -> StoredUser:
    base: dict[str, Any] = {
        "record": record or rec(),
        "version": 3,
        "etag": "W/\"datetime'2026-11-22T02%3A00%3A01Z'\"",
        "deleted": False,
        "first_seen": "2026-01-01T02:00:00+00:00",
    }
    base.update(overrides)
    return StoredUser(**base)


def must(update: UserUpdate | None) -> UserUpdate:
    assert update is not None
    return update


def kinds(update: UserUpdate) -> list[ChangeKind]:
    return [c.kind for c in update.changes]


# --- new and unchanged --------------------------------------------------------------------------


def test_new_user() -> None:
    r = rec()
    u = must(reconcile(None, r, NIGHT1))
    assert u.expected_etag is None
    assert u.stored == StoredUser(record=r, version=1, etag=None, deleted=False, first_seen=NIGHT1)
    assert u.changes == (Change(UID, ChangeKind.NEW, None, summary(r)),)
    assert u.changes[0].after == {
        "upn": "ada@contoso.com",
        "displayName": "Ada Lovelace",
        "userType": "member",
        "enabled": True,
        "mfaRegistered": True,
        "methods": ["microsoftAuthenticatorPush", "mobilePhone"],
        "isAdmin": False,
    }


def test_new_user_not_in_report_is_stored_as_unknown() -> None:
    r = rec(
        mfa_registered=None,
        mfa_capable=None,
        is_admin=None,
        methods=(),
        default_method=None,
        report_updated=None,
        in_report=False,
    )
    u = must(reconcile(None, r, NIGHT1))
    assert kinds(u) == [ChangeKind.NEW]
    assert u.stored.record == r
    assert u.changes[0].after is not None
    assert u.changes[0].after["mfaRegistered"] is None


def test_unchanged_user_needs_no_write() -> None:
    assert reconcile(stored(), rec(), NIGHT2) is None


def test_report_refresh_alone_needs_no_write() -> None:
    # lastUpdatedDateTime moves for every row at every refresh: never a change of the user.
    assert reconcile(stored(), rec(report_updated="2026-11-23T01:00:00Z"), NIGHT2) is None


def test_dropping_out_of_the_report_alone_needs_no_write() -> None:
    tonight = rec(
        mfa_registered=None,
        mfa_capable=None,
        is_admin=None,
        methods=(),
        default_method=None,
        report_updated=None,
        in_report=False,
    )
    assert reconcile(stored(), tonight, NIGHT2) is None


# --- field changes ------------------------------------------------------------------------------

REG_BEFORE = {
    "mfaRegistered": True,
    "methods": ["microsoftAuthenticatorPush", "mobilePhone"],
    "defaultMethod": "microsoftAuthenticatorPush",
}
REG_NONE = {"mfaRegistered": False, "methods": [], "defaultMethod": None}


@pytest.mark.parametrize(
    ("before", "after", "kind", "before_facts", "after_facts"),
    [
        (
            {},
            {"mfa_registered": False, "methods": (), "default_method": None},
            ChangeKind.UNREGISTERED,
            REG_BEFORE,
            REG_NONE,
        ),
        (
            {"mfa_registered": False, "methods": (), "default_method": None},
            {},
            ChangeKind.REGISTERED,
            REG_NONE,
            REG_BEFORE,
        ),
        (
            {},
            {"methods": ("fido2", "mobilePhone"), "default_method": "fido2"},
            ChangeKind.METHODS_CHANGED,
            REG_BEFORE,
            {"mfaRegistered": True, "methods": ["fido2", "mobilePhone"], "defaultMethod": "fido2"},
        ),
        ({}, {"enabled": False}, ChangeKind.DISABLED, {"enabled": True}, {"enabled": False}),
        ({"enabled": False}, {}, ChangeKind.ENABLED, {"enabled": False}, {"enabled": True}),
        ({}, {"is_admin": True}, ChangeKind.BECAME_ADMIN, {"isAdmin": False}, {"isAdmin": True}),
        ({"is_admin": True}, {}, ChangeKind.NO_LONGER_ADMIN, {"isAdmin": True}, {"isAdmin": False}),
    ],
)
def test_each_change_kind(
    before: dict[str, Any],
    after: dict[str, Any],
    kind: ChangeKind,
    before_facts: dict[str, object],
    after_facts: dict[str, object],
) -> None:
    prev = stored(rec(**before))
    tonight = rec(**after)
    u = must(reconcile(prev, tonight, NIGHT2))
    assert u.changes == (Change(UID, kind, before_facts, after_facts),)
    assert u.stored.record == tonight
    assert u.stored.version == prev.version + 1
    assert u.stored.etag is None
    assert u.stored.deleted is False
    assert u.stored.first_seen == prev.first_seen
    assert u.expected_etag == prev.etag


def test_registration_flip_does_not_also_emit_methods_changed() -> None:
    prev = stored(rec(mfa_registered=False, methods=("email",), default_method=None))
    u = must(reconcile(prev, rec(), NIGHT2))
    assert kinds(u) == [ChangeKind.REGISTERED]
    u = must(reconcile(stored(), rec(mfa_registered=False, methods=("email",)), NIGHT2))
    assert kinds(u) == [ChangeKind.UNREGISTERED]


def test_several_changes_at_once_in_a_stable_order() -> None:
    tonight = rec(mfa_registered=False, methods=(), enabled=False, is_admin=True, display_name="Ada L.")
    u = must(reconcile(stored(), tonight, NIGHT2))
    assert kinds(u) == [ChangeKind.UNREGISTERED, ChangeKind.DISABLED, ChangeKind.BECAME_ADMIN]
    assert all(c.user_id == UID for c in u.changes)


def test_default_method_only_change_is_silent() -> None:
    u = must(reconcile(stored(), rec(default_method="mobilePhone"), NIGHT2))
    assert u.changes == ()
    assert u.stored.record.default_method == "mobilePhone"


@pytest.mark.parametrize(
    "field_value",
    [
        {"display_name": "Ada King, Countess of Lovelace"},
        {"upn": "ada.king@contoso.com"},
        {"email": "ada.king@contoso.com"},
        {"email": None},
        {"mfa_capable": False},
        {"external_user_state": "Accepted"},
        {"on_premises_sync": True},
        {"user_type": UserType.GUEST},
        {"created": None},
    ],
)
def test_other_tracked_fields_update_silently(field_value: dict[str, Any]) -> None:
    prev = stored()
    tonight = rec(**field_value)
    u = must(reconcile(prev, tonight, NIGHT2))
    assert u.changes == ()
    assert u.stored.record == tonight
    assert u.stored.version == prev.version + 1
    assert u.expected_etag == prev.etag


@pytest.mark.parametrize(
    ("field", "value"),
    [("mfa_registered", True), ("mfa_registered", False), ("is_admin", True), ("is_admin", False)],
)
def test_transition_out_of_unknown_is_silent_update(field: str, value: bool) -> None:
    prev = stored(rec(**{field: None}))
    u = must(reconcile(prev, rec(**{field: value}), NIGHT2))
    assert u.changes == ()
    assert getattr(u.stored.record, field) is value
    assert u.stored.version == prev.version + 1


def test_unknown_registration_with_new_methods_emits_nothing() -> None:
    prev = stored(rec(mfa_registered=None, methods=()))
    u = must(reconcile(prev, rec(mfa_registered=None, methods=("sms",)), NIGHT2))
    assert u.changes == ()


def test_field_changes_of_equal_records_is_empty() -> None:
    assert field_changes(rec(), rec()) == []


# --- the report gap -----------------------------------------------------------------------------


def test_carry_forward_only_when_not_in_report() -> None:
    previous = rec()
    tonight = rec(mfa_registered=False, methods=())
    assert carry_registration_forward(previous, tonight) is tonight


def test_carry_forward_copies_every_registration_field() -> None:
    previous = rec(is_admin=True)
    gap = rec(
        mfa_registered=None,
        mfa_capable=None,
        is_admin=None,
        methods=(),
        default_method=None,
        report_updated=None,
        in_report=False,
        display_name="New Name",
        enabled=False,
    )
    carried = carry_registration_forward(previous, gap)
    for name in REGISTRATION_FIELDS:
        assert getattr(carried, name) == getattr(previous, name)
    assert carried.in_report is False
    assert carried.display_name == "New Name"  # only registration facts are carried
    assert carried.enabled is False


def test_disabled_user_dropping_out_of_report_is_disabled_not_unregistered() -> None:
    tonight = rec(
        enabled=False,
        mfa_registered=None,
        mfa_capable=None,
        is_admin=None,
        methods=(),
        default_method=None,
        in_report=False,
    )
    u = must(reconcile(stored(), tonight, NIGHT2))
    assert kinds(u) == [ChangeKind.DISABLED]
    assert u.stored.record.mfa_registered is True
    assert u.stored.record.methods == rec().methods
    assert u.stored.record.in_report is False


def test_report_gap_emits_nothing_even_against_unregistered() -> None:
    prev = stored(rec(mfa_registered=False, methods=()))
    gap = rec(mfa_registered=None, methods=(), in_report=False)
    assert reconcile(prev, gap, NIGHT2) is None


# --- deletion and restore -----------------------------------------------------------------------


def test_deleted_user_reappearing_is_restored() -> None:
    prev = stored(rec(display_name="Old"), deleted=True, version=7)
    tonight = rec(enabled=False)
    u = must(reconcile(prev, tonight, NIGHT2))
    assert u.changes == (Change(UID, ChangeKind.RESTORED, summary(prev.record), summary(tonight)),)
    assert u.stored.deleted is False
    assert u.stored.version == 8
    assert u.stored.record == tonight
    assert u.stored.first_seen == prev.first_seen
    assert u.expected_etag == prev.etag


def test_restored_even_if_nothing_else_changed() -> None:
    prev = stored(deleted=True)
    u = must(reconcile(prev, rec(), NIGHT2))
    assert kinds(u) == [ChangeKind.RESTORED]


def test_restore_through_report_gap_keeps_known_facts() -> None:
    prev = stored(deleted=True)
    gap = rec(mfa_registered=None, methods=(), in_report=False)
    u = must(reconcile(prev, gap, NIGHT2))
    assert u.stored.record.mfa_registered is True
    assert u.changes[0].after is not None
    assert u.changes[0].after["mfaRegistered"] is True


def test_deletions_only_for_unseen_live_users() -> None:
    seen = stored(rec(id="seen"), etag="e-seen")
    gone = stored(rec(id="gone"), etag="e-gone", version=4)
    already = stored(rec(id="already"), etag="e-already", deleted=True)
    updates = deletions([seen, gone, already], {"seen"}, NIGHT2)
    assert len(updates) == 1
    (u,) = updates
    assert u.expected_etag == "e-gone"
    assert u.stored.deleted is True
    assert u.stored.version == 5
    assert u.stored.etag is None
    assert u.stored.record == gone.record
    assert u.stored.first_seen == gone.first_seen
    assert u.changes == (Change("gone", ChangeKind.DELETED, summary(gone.record), None),)


def test_a_deleted_user_is_not_deleted_twice() -> None:
    gone = stored(rec(id="gone"))
    (first,) = deletions([gone], set(), NIGHT1)
    assert deletions([first.stored], set(), NIGHT2) == []


def test_deletions_of_nothing() -> None:
    assert deletions([], set(), NIGHT2) == []
    assert deletions([stored()], {UID}, NIGHT2) == []


# --- properties ---------------------------------------------------------------------------------

maybe_bool = st.sampled_from([True, False, None])
method_sets = st.lists(st.sampled_from(["email", "fido2", "sms", "newThing"]), max_size=3, unique=True).map(
    lambda m: tuple(sorted(m))
)
small_text = st.sampled_from(["", "a", "b"])
opt_text = st.sampled_from([None, "a", "b"])

records = st.builds(
    UserRecord,
    id=st.just(UID),
    upn=small_text,
    display_name=small_text,
    user_type=st.sampled_from(list(UserType)),
    enabled=st.booleans(),
    mfa_registered=maybe_bool,
    mfa_capable=maybe_bool,
    is_admin=maybe_bool,
    methods=method_sets,
    default_method=opt_text,
    email=opt_text,
    created=opt_text,
    external_user_state=opt_text,
    on_premises_sync=st.booleans(),
    report_updated=opt_text,
    in_report=st.booleans(),
)
stored_users = st.builds(
    StoredUser,
    record=records,
    version=st.integers(1, 10_000),
    etag=st.text(min_size=1, max_size=5),
    deleted=st.booleans(),
    first_seen=opt_text,
)

FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(prev=stored_users, cur=records)
def test_reconcile_properties(prev: StoredUser, cur: UserRecord) -> None:
    update = reconcile(prev, cur, NIGHT2)
    effective = carry_registration_forward(prev.record, cur)
    unchanged = effective.tracked() == prev.record.tracked()
    if prev.deleted:
        assert update is not None
        assert [c.kind for c in update.changes] == [ChangeKind.RESTORED]
    else:
        assert (update is None) == unchanged
    if update is None:
        return
    assert update.stored.version == prev.version + 1
    assert update.stored.deleted is False
    assert update.stored.record == effective
    assert update.expected_etag == prev.etag
    assert all(c.user_id == cur.id for c in update.changes)
    assert len({c.kind for c in update.changes}) == len(update.changes)
    assert ChangeKind.NEW not in {c.kind for c in update.changes}
    # Running the sync again on an unchanged tenant records nothing...
    again = replace(update.stored, etag="after-write")
    assert reconcile(again, cur, NIGHT2) is None
    # ...including after the state went through its table entity and back.
    entity = user_entity(update.stored, run_id="r", changed_at=NIGHT2)
    assert reconcile(stored_user_from_entity(entity, "after-write"), cur, NIGHT2) is None


@FAST
@given(prev=records, cur=records)
def test_events_only_between_known_facts(prev: UserRecord, cur: UserRecord) -> None:
    for change in field_changes(prev, cur):
        if change.kind in (ChangeKind.REGISTERED, ChangeKind.UNREGISTERED):
            assert prev.mfa_registered is not None and cur.mfa_registered is not None
        if change.kind is ChangeKind.METHODS_CHANGED:
            assert prev.mfa_registered is not None
        if change.kind in (ChangeKind.BECAME_ADMIN, ChangeKind.NO_LONGER_ADMIN):
            assert prev.is_admin is not None and cur.is_admin is not None
        assert change.before != change.after


@FAST
@given(cur=records)
def test_new_user_properties(cur: UserRecord) -> None:
    update = must(reconcile(None, cur, NIGHT1))
    assert update.stored.version == 1
    assert update.expected_etag is None
    assert [c.kind for c in update.changes] == [ChangeKind.NEW]
    entity = user_entity(update.stored, run_id="r", changed_at=NIGHT1)
    assert reconcile(stored_user_from_entity(entity, "e1"), cur, NIGHT2) is None


# Graph wire data, odd values included, end to end: normalize -> reconcile -> entity -> reconcile.
wire_text = st.one_of(st.none(), st.integers(), st.text(max_size=8), st.sampled_from(["", " ", "a,b"]))
wire_bool = st.one_of(st.none(), st.booleans(), st.sampled_from(["true", 1]))
wire_users = st.fixed_dictionaries(
    {"id": st.just(UID)},
    optional={
        "userPrincipalName": wire_text,
        "displayName": wire_text,
        "userType": st.sampled_from([None, "Member", "Guest", "", "Partner"]),
        "accountEnabled": wire_bool,
        "mail": st.one_of(wire_text, st.just("a@b.co")),
        "otherMails": st.one_of(st.none(), st.lists(st.one_of(wire_text, st.just("x@y.zz")), max_size=3)),
        "createdDateTime": wire_text,
        "externalUserState": wire_text,
        "onPremisesSyncEnabled": wire_bool,
    },
)
wire_regs = st.fixed_dictionaries(
    {"id": st.just(UID)},
    optional={
        "isMfaRegistered": wire_bool,
        "isMfaCapable": wire_bool,
        "isAdmin": wire_bool,
        "methodsRegistered": st.one_of(
            st.none(), st.lists(st.one_of(wire_text, st.sampled_from(["sms", "fido2"])), max_size=4)
        ),
        "defaultMfaMethod": st.one_of(wire_text, st.just("none")),
        "lastUpdatedDateTime": wire_text,
    },
)


def _normalize(u: dict[str, Any], r: dict[str, Any] | None) -> UserRecord:
    facts = None
    if r is not None:
        parsed = registration_from_graph(r)
        assert not isinstance(parsed, Skipped)
        facts = parsed[1]
    result = record_from_graph(u, facts)
    assert isinstance(result, UserRecord)
    return result


@FAST
@given(u1=wire_users, r1=st.none() | wire_regs, u2=wire_users, r2=st.none() | wire_regs)
def test_two_nights_of_odd_graph_data_settle(
    u1: dict[str, Any], r1: dict[str, Any] | None, u2: dict[str, Any], r2: dict[str, Any] | None
) -> None:
    state: StoredUser | None = None
    etag = 0
    for night, (u, r) in enumerate([(u1, r1), (u2, r2), (u2, r2)]):
        update = reconcile(state, _normalize(u, r), f"night-{night}")
        if night == 2:
            assert update is None, "the same tenant twice must record nothing"
        if update is not None:
            etag += 1
            entity = user_entity(update.stored, run_id=f"run-{night}", changed_at=f"night-{night}")
            state = stored_user_from_entity(entity, f"etag-{etag}")
            assert state.record.tracked() == update.stored.record.tracked()


def test_tracked_fields_exclude_only_report_bookkeeping() -> None:
    assert "report_updated" not in TRACKED_FIELDS
    assert "in_report" not in TRACKED_FIELDS
    assert {"id", "mfa_registered", "methods", "enabled", "is_admin", "email"} <= set(TRACKED_FIELDS)


def test_record_helpers() -> None:
    r = rec()
    assert r.is_guest is False
    assert rec(user_type=UserType.GUEST).is_guest is True
    gap = r.without_report()
    assert gap.in_report is False
    assert gap.tracked() == r.tracked()  # whether the report listed someone is not a change of them
    assert len(r.tracked()) == len(TRACKED_FIELDS)
    a, b = intern_methods(("".join(["fi", "do2"]),)), intern_methods(("".join(["fid", "o2"]),))
    assert a == b and a[0] is b[0]
