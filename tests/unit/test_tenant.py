"""The simulated tenant: deterministic, realistic in its mix, Graph's wire format, replayable."""

from __future__ import annotations

import copy
import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from sim.tenant import (
    EVOLVE_CATEGORIES,
    MFA_METHODS,
    REGISTRATION_PROPERTIES,
    USER_PROPERTIES,
    Tenant,
    evolve,
    generate_tenant,
)

ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{7})?Z$")
SECOND_FACTOR = {"push", "oath", "voiceMobile", "voiceAlternateMobile", "voiceOffice", "sms", "none", ""}


@pytest.fixture(scope="module")
def big() -> Tenant:
    return generate_tenant(20_000, seed=11)


def test_same_seed_same_tenant_other_seed_other_tenant() -> None:
    a = generate_tenant(500, seed=1)
    b = generate_tenant(500, seed=1)
    c = generate_tenant(500, seed=2)
    assert json.dumps(a.to_dict()) == json.dumps(b.to_dict())
    assert [u["id"] for u in a.users] != [u["id"] for u in c.users]


def test_objects_are_graph_wire_format(big: Tenant) -> None:
    for user in big.users[:2000]:
        assert set(user) <= USER_PROPERTIES
        assert uuid.UUID(user["id"]).version == 4
        assert user["userType"] in ("Member", "Guest")
        assert isinstance(user["accountEnabled"], bool)
        assert ISO_Z.match(user["createdDateTime"])
        assert isinstance(user["otherMails"], list)
        assert isinstance(user["identities"], list) and user["identities"]
    for row in big.user_registration_details[:2000]:
        assert set(row) <= REGISTRATION_PROPERTIES
        assert "defaultMfaMethod" not in row  # beta-only property; v1.0 does not have it
        assert row["userType"] in ("member", "guest")
        assert ISO_Z.match(row["lastUpdatedDateTime"]) and "." in row["lastUpdatedDateTime"]
        assert row["userPreferredMethodForSecondaryAuthentication"] in SECOND_FACTOR
        assert set(row["systemPreferredAuthenticationMethods"]) <= SECOND_FACTOR
        assert row["isMfaRegistered"] == any(m in MFA_METHODS for m in row["methodsRegistered"])
        assert not row["isMfaCapable"] or row["isMfaRegistered"]
        owner = big.user(row["id"])
        assert owner is not None
        assert row["userPrincipalName"] == owner["userPrincipalName"]
        assert row["userType"] == owner["userType"].lower()


def test_mix_is_roughly_realistic(big: Tenant) -> None:
    users, rows = big.users, big.user_registration_details
    n = len(users)
    guests = [u for u in users if u["userType"] == "Guest"]
    disabled = [u for u in users if not u["accountEnabled"]]
    assert 0.12 < len(guests) / n < 0.18
    assert 0.01 < len(disabled) / n < 0.03
    assert 0.02 < sum(r["isAdmin"] for r in rows) / len(rows) < 0.045
    registered = [r for r in rows if r["methodsRegistered"]]
    assert 0.65 < len(registered) / len(rows) < 0.75
    assert all(1 <= len(r["methodsRegistered"]) <= 4 for r in registered)
    unregistered = [r for r in rows if not r["methodsRegistered"]]
    assert all(not r["isMfaRegistered"] for r in unregistered)
    assert {r["userPreferredMethodForSecondaryAuthentication"] for r in unregistered} <= {"none", ""}
    # Some registered users have no MFA method (email only): registered is not MFA-registered.
    assert any(r["methodsRegistered"] == ["email"] and not r["isMfaRegistered"] for r in rows)

    # Disabled users are not in the report; a few enabled users are not in it yet (lag).
    row_ids = {r["id"] for r in rows}
    assert not any(u["id"] in row_ids for u in disabled)
    lagging = [u for u in users if u["accountEnabled"] and u["id"] not in row_ids]
    assert 0.005 < len(lagging) / n < 0.03

    # Guests: #EXT# UPNs; mostly a home mail, some only otherMails, a few with neither.
    assert all("#EXT#@contoso.example" in g["userPrincipalName"] for g in guests)
    with_mail = [g for g in guests if g["mail"]]
    only_other = [g for g in guests if not g["mail"] and g["otherMails"]]
    neither = [g for g in guests if not g["mail"] and not g["otherMails"]]
    assert len(with_mail) > len(only_other) > len(neither) > 0
    assert all("#EXT#" not in g["mail"] for g in with_mail)

    # Awkward display names exist, and UPNs and ids are unique.
    assert any("<" in u["displayName"] for u in users)
    assert any(not u["displayName"].isascii() for u in users)
    assert len({u["userPrincipalName"] for u in users}) == n
    assert len({u["id"] for u in users}) == n


def test_lookup_by_id(big: Tenant) -> None:
    user = big.users[123]
    assert big.user(user["id"]) is user
    assert big.user("00000000-0000-4000-8000-000000000000") is None
    row = big.user_registration_details[7]
    assert big.registration(row["id"]) is row


def test_json_round_trip_keeps_everything(tmp_path: Path) -> None:
    tenant = generate_tenant(300, seed=5)
    tenant.extra["signIns"] = "not a list: kept as is"
    tenant.collection("groups").append({"id": "g1", "displayName": "Admins"})
    path = tmp_path / "tenant.json"
    tenant.to_json(path)
    again = Tenant.from_json(path)
    assert again.to_dict() == tenant.to_dict()
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert set(raw) == {"users", "userRegistrationDetails", "groups", "signIns"}
    assert not path.read_text(encoding="utf-8").isascii()  # UTF-8 as Graph sends it, not \u escapes


def test_from_json_accepts_graph_exports_with_missing_keys() -> None:
    exported: dict[str, Any] = {
        "users": {"@odata.context": "x", "value": [{"id": "u1", "userPrincipalName": "a@b.example"}]},
        "userRegistrationDetails": [{"id": "u1", "isMfaRegistered": True}],
        "auditLogs": [{"id": "s1"}],
        "exportedBy": {"tool": "manual"},
    }
    tenant = Tenant.from_json(exported)
    assert tenant.user("u1") == {"id": "u1", "userPrincipalName": "a@b.example"}
    assert tenant.registration("u1") == {"id": "u1", "isMfaRegistered": True}
    assert tenant.collection("auditLogs") == [{"id": "s1"}]
    assert tenant.extra == {"exportedBy": {"tool": "manual"}}
    # evolve copes with the sparse objects of a replayed export
    summary = evolve(tenant, seed=1, churn=0.5)
    assert summary["counts"]["joined_members"] >= 1
    with pytest.raises(ValueError, match="id"):
        Tenant.from_json({"users": [{"displayName": "no id"}]})


def _state(tenant: Tenant) -> tuple[dict[str, Any], dict[str, Any]]:
    return (
        {u["id"]: copy.deepcopy(u) for u in tenant.users},
        {r["id"]: copy.deepcopy(r) for r in tenant.user_registration_details},
    )


def test_evolve_summary_matches_what_changed() -> None:
    tenant = generate_tenant(3000, seed=21)
    users0, rows0 = _state(tenant)
    revision = tenant.revision
    summary = evolve(tenant, seed=99, churn=0.01)
    users1, rows1 = _state(tenant)
    ids = summary["ids"]
    assert set(ids) == set(EVOLVE_CATEGORIES) == set(summary["counts"])
    assert all(summary["counts"][c] == len(ids[c]) for c in EVOLVE_CATEGORIES)
    assert tenant.revision > revision

    every = [i for c in EVOLVE_CATEGORIES for i in ids[c]]
    assert len(every) == len(set(every)), "a user is in two categories"
    for category in ("registered", "unregistered", "methods_changed", "disabled", "deleted"):
        assert ids[category], category

    # Recompute the truth from before/after and compare with the summary.
    def mfa(rows: dict[str, Any], i: str) -> bool:
        return bool(rows.get(i, {}).get("isMfaRegistered"))

    assert set(ids["deleted"]) == set(users0) - set(users1)
    assert set(ids["joined_members"]) | set(ids["joined_guests"]) == set(users1) - set(users0)
    assert all(users1[i]["userType"] == "Guest" for i in ids["joined_guests"])
    assert all(users1[i]["userType"] == "Member" for i in ids["joined_members"])
    common = set(users0) & set(users1)
    assert {i for i in common if users0[i]["accountEnabled"] and not users1[i]["accountEnabled"]} == set(
        ids["disabled"]
    )
    assert {i for i in common if not users0[i]["accountEnabled"] and users1[i]["accountEnabled"]} == set(ids["enabled"])
    both = set(rows0) & set(rows1)
    assert {i for i in both if not mfa(rows0, i) and mfa(rows1, i)} == set(ids["registered"])
    assert {i for i in both if mfa(rows0, i) and not rows1[i]["methodsRegistered"]} == set(ids["unregistered"])
    changed = {
        i
        for i in both
        if mfa(rows0, i)
        and mfa(rows1, i)
        and sorted(rows0[i]["methodsRegistered"]) != sorted(rows1[i]["methodsRegistered"])
    }
    assert changed == set(ids["methods_changed"])
    admin_on = {i for i in both if not rows0[i]["isAdmin"] and rows1[i]["isAdmin"]}
    admin_off = {i for i in both if rows0[i]["isAdmin"] and not rows1[i]["isAdmin"]}
    assert admin_on == set(ids["admin_added"]) and admin_off == set(ids["admin_removed"])

    # The report: disabled users left it, lagging users joined it, deleted users are gone.
    assert not set(ids["disabled"]) & set(rows1)
    assert set(ids["report_added"]) <= set(rows1) - set(rows0)
    assert not set(ids["deleted"]) & set(rows1)
    assert all(users1[i]["accountEnabled"] for i in rows1)
    # Every row carries the new refresh time: lastUpdatedDateTime is not a per-user change.
    assert {r["lastUpdatedDateTime"][:19] for r in rows1.values()} == {summary["now"][:19]}
    # Untouched users are unchanged apart from that timestamp.
    untouched = both - set(every)
    assert untouched
    for i in list(untouched)[:500]:
        a = {k: v for k, v in rows0[i].items() if k != "lastUpdatedDateTime"}
        b = {k: v for k, v in rows1[i].items() if k != "lastUpdatedDateTime"}
        assert a == b
        assert users0[i] == users1[i]


def test_evolve_is_deterministic_and_keeps_upns_unique() -> None:
    a, b = generate_tenant(1000, seed=3), generate_tenant(1000, seed=3)
    for night in range(3):
        sa, sb = evolve(a, seed=night), evolve(b, seed=night)
        assert sa == sb
    assert json.dumps(a.to_dict()) == json.dumps(b.to_dict())
    assert len({u["userPrincipalName"] for u in a.users}) == len(a.users)
    assert len({u["id"] for u in a.users}) == len(a.users)


def test_evolve_does_not_mutate_objects_callers_hold() -> None:
    tenant = generate_tenant(500, seed=8)
    held_users = list(tenant.users)
    snapshot = copy.deepcopy(held_users)
    evolve(tenant, seed=1, churn=0.1)
    assert held_users == snapshot


def test_generates_100k_users() -> None:
    tenant = generate_tenant(100_000, seed=2024)
    assert len(tenant.users) == 100_000
    assert 93_000 < len(tenant.user_registration_details) < 98_000
