"""Graph wire objects -> typed records, or a readable reason for skipping them."""

from __future__ import annotations

from typing import Any

import pytest

from shared.domain.normalize import (
    KNOWN_METHODS,
    MAX_ID_LENGTH,
    MAX_METHODS,
    MAX_TEXT_LENGTH,
    RegistrationFacts,
    Skipped,
    clean_text,
    deliverable_address,
    record_from_graph,
    registration_from_graph,
    unknown_methods,
    valid_id,
)
from shared.domain.records import UserRecord, UserType

GUID = "0A1B2C3D-4E5F-6071-8293-A4B5C6D7E8F9"


def user(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": GUID,
        "userPrincipalName": "ada@contoso.com",
        "displayName": "Ada Lovelace",
        "userType": "Member",
        "accountEnabled": True,
        "mail": "ada@contoso.com",
        "otherMails": [],
        "createdDateTime": "2021-03-04T05:06:07Z",
        "externalUserState": None,
        "onPremisesSyncEnabled": None,
    }
    base.update(overrides)
    return base


def reg_row(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": GUID,
        "userPrincipalName": "ada@contoso.com",
        "userType": "member",
        "isAdmin": False,
        "isMfaRegistered": True,
        "isMfaCapable": True,
        "methodsRegistered": ["microsoftAuthenticatorPush", "mobilePhone"],
        "defaultMfaMethod": "microsoftAuthenticatorPush",
        "lastUpdatedDateTime": "2026-11-22T01:02:03.1234567Z",
    }
    base.update(overrides)
    return base


def facts(**overrides: Any) -> RegistrationFacts:
    parsed = registration_from_graph(reg_row(**overrides))
    assert not isinstance(parsed, Skipped), parsed
    return parsed[1]


def record(u: object = None, reg: RegistrationFacts | None = None) -> UserRecord:
    result = record_from_graph(user() if u is None else u, reg)
    assert isinstance(result, UserRecord), result
    return result


# --- ids ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        None,
        "",
        "   ",
        42,
        ["abc"],
        {"id": "abc"},
        "a/b",
        "a\\b",
        "a#b",
        "a?b",
        "a|b",
        "a b",
        "a\tb",
        "a\nb",
        "a\x00b",
        "a\x7fb",
        "a\x85b",
        "x" * (MAX_ID_LENGTH + 1),
    ],
)
def test_valid_id_rejects_unusable_ids(bad: object) -> None:
    assert valid_id(bad) is None


def test_valid_id_lower_cases_and_accepts_max_length() -> None:
    assert valid_id(GUID) == GUID.lower()
    assert valid_id("x" * MAX_ID_LENGTH) == "x" * MAX_ID_LENGTH
    # Surrounding whitespace is trimmed (interior whitespace is refused above).
    assert valid_id("  ABC  ") == "abc"


@pytest.mark.parametrize("bad_id", ["a/b", "a#b", "a|b", "a b", "x" * 200, None, 7])
def test_user_with_bad_id_is_skipped_with_readable_reason(bad_id: object) -> None:
    result = record_from_graph(user(id=bad_id), None)
    assert isinstance(result, Skipped)
    assert result.user_id is None
    assert result.reason.startswith("user has no usable id")
    # The reason quotes (a bounded prefix of) the offending value.
    assert len(result.reason) < 120
    assert repr(str(bad_id)[:60]) in result.reason


def test_user_without_id_is_skipped() -> None:
    u = user()
    del u["id"]
    result = record_from_graph(u, None)
    assert result == Skipped(None, "user has no usable id ('None')")


@pytest.mark.parametrize("row", [None, "abc", 42, ["id", GUID], (GUID,)])
def test_non_dict_user_is_skipped(row: object) -> None:
    assert record_from_graph(row, None) == Skipped(None, "user is not a JSON object")


@pytest.mark.parametrize("row", [None, "abc", 42, [reg_row()]])
def test_non_dict_registration_row_is_skipped(row: object) -> None:
    assert registration_from_graph(row) == Skipped(None, "registration row is not a JSON object")


@pytest.mark.parametrize("bad_id", ["a/b", "a#EXT#b", "a|b", "a b", "", None, "x" * 129])
def test_registration_row_with_bad_id_is_skipped(bad_id: object) -> None:
    result = registration_from_graph(reg_row(id=bad_id))
    assert isinstance(result, Skipped)
    assert result.reason.startswith("registration row has no usable id")


def test_ids_are_lower_cased_in_both_sources() -> None:
    parsed = registration_from_graph(reg_row())
    assert not isinstance(parsed, Skipped)
    assert parsed[0] == GUID.lower()
    assert record().id == GUID.lower()


# --- text --------------------------------------------------------------------------------------


def test_unicode_and_html_in_names_are_kept_verbatim() -> None:
    name = '<script>alert("x")</script> &amp; Zoë 山田 太郎 🚀 Ωμέγα'
    r = record(user(displayName=name))
    assert r.display_name == name


def test_control_characters_are_stripped_from_names() -> None:
    r = record(user(displayName="\x00Ada\x07 \x1b[31mLove\x7flace\x9b\r\n"))
    assert r.display_name == "Ada [31mLovelace"


def test_clean_text_bounds_length_and_handles_non_strings() -> None:
    assert clean_text("x" * (MAX_TEXT_LENGTH + 100)) == "x" * MAX_TEXT_LENGTH
    assert clean_text(None) == ""
    assert clean_text(12) == ""
    assert clean_text(["a"]) == ""
    assert clean_text("  padded  ") == "padded"


@pytest.mark.parametrize("field", ["userPrincipalName", "displayName", "mail"])
def test_null_text_fields_do_not_skip_the_user(field: str) -> None:
    r = record(user(**{field: None}))
    assert r.id == GUID.lower()
    if field == "userPrincipalName":
        assert r.upn == ""
    elif field == "displayName":
        assert r.display_name == ""
    else:
        assert r.email is None


def test_user_with_only_an_id_gets_safe_defaults() -> None:
    r = record({"id": "abc"})
    assert r == UserRecord(
        id="abc",
        upn="",
        display_name="",
        user_type=UserType.MEMBER,
        enabled=True,  # a gap in the data never drops someone from the monitor
        mfa_registered=None,
        mfa_capable=None,
        is_admin=None,
        methods=(),
        default_method=None,
        email=None,
        created=None,
        external_user_state=None,
        on_premises_sync=False,
        report_updated=None,
        in_report=False,
    )


@pytest.mark.parametrize("value", ["", "  ", None, 12, "\x00"])
def test_empty_or_odd_created_is_none(value: object) -> None:
    # "" would be stored as an absent property and come back as None: a write every night.
    assert record(user(createdDateTime=value)).created is None


def test_created_and_external_state_kept() -> None:
    r = record(user(createdDateTime="2021-03-04T05:06:07Z", externalUserState="PendingAcceptance"))
    assert r.created == "2021-03-04T05:06:07Z"
    assert r.external_user_state == "PendingAcceptance"
    assert record(user(externalUserState="")).external_user_state is None


@pytest.mark.parametrize(
    ("value", "expected"), [(True, True), (False, False), (None, True), ("false", True), (0, True)]
)
def test_account_enabled_defaults_to_true_unless_bool(value: object, expected: bool) -> None:
    assert record(user(accountEnabled=value)).enabled is expected


@pytest.mark.parametrize(("value", "expected"), [(True, True), (False, False), (None, False), ("true", False)])
def test_on_premises_sync_only_when_true(value: object, expected: bool) -> None:
    assert record(user(onPremisesSyncEnabled=value)).on_premises_sync is expected


# --- user type and addresses --------------------------------------------------------------------

GUEST_UPN = "ada_fabrikam.com#EXT#@contoso.onmicrosoft.com"


@pytest.mark.parametrize(
    ("user_type", "upn", "expected"),
    [
        ("Member", GUEST_UPN, UserType.MEMBER),  # an explicit userType wins
        ("Guest", "ada@contoso.com", UserType.GUEST),
        ("guest", "ada@contoso.com", UserType.GUEST),
        (" MEMBER ", "ada@contoso.com", UserType.MEMBER),
        (None, GUEST_UPN, UserType.GUEST),
        (None, GUEST_UPN.replace("#EXT#", "#ext#"), UserType.GUEST),
        (None, "ada@contoso.com", UserType.MEMBER),
        ("", GUEST_UPN, UserType.GUEST),
        ("Partner", GUEST_UPN, UserType.GUEST),
        ("Partner", "ada@contoso.com", UserType.MEMBER),
        (1, "ada@contoso.com", UserType.MEMBER),
        (None, None, UserType.MEMBER),
    ],
)
def test_user_type(user_type: object, upn: object, expected: UserType) -> None:
    r = record(user(userType=user_type, userPrincipalName=upn))
    assert r.user_type is expected
    assert r.is_guest is (expected is UserType.GUEST)


def test_missing_user_type_key_uses_ext_marker() -> None:
    u = user(userPrincipalName=GUEST_UPN)
    del u["userType"]
    assert record(u).user_type is UserType.GUEST


def test_guest_ext_upn_never_becomes_the_email() -> None:
    r = record(user(userType="Guest", userPrincipalName=GUEST_UPN, mail=None, otherMails=[]))
    assert r.email is None
    assert r.upn == GUEST_UPN  # kept as the UPN, just not as an address


def test_ext_address_in_mail_or_other_mails_is_refused() -> None:
    u = user(mail=GUEST_UPN, otherMails=[GUEST_UPN.lower(), "ada@fabrikam.com"])
    assert deliverable_address(u) == "ada@fabrikam.com"


def test_mail_preferred_over_other_mails() -> None:
    assert deliverable_address(user(mail="a@x.com", otherMails=["b@y.com"])) == "a@x.com"


def test_falls_back_to_first_valid_other_mail() -> None:
    u = user(mail=None, otherMails=[None, 3, "not an address", "  b@y.com  ", "c@z.com"])
    assert deliverable_address(u) == "b@y.com"


@pytest.mark.parametrize("other", [None, "b@y.com", {"a": "b@y.com"}, 5])
def test_other_mails_not_a_list_is_ignored(other: object) -> None:
    assert deliverable_address(user(mail=None, otherMails=other)) is None


def test_no_address_fields_at_all() -> None:
    assert deliverable_address({}) is None
    assert record({"id": "abc"}).email is None


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "ada",
        "ada@",
        "@contoso.com",
        "ada@contoso",
        "ada@@contoso.com",
        "ada@con@toso.com",
        "ada lovelace@contoso.com",
        "Ada <ada@contoso.com>",
        '"ada"@contoso.com',
        "ada@contoso.com, bob@contoso.com",
        "ada@contoso.com;bob@contoso.com",
        "ada@contoso.com\r\nBcc: evil@x.com",
        "ada\x00@contoso.com",
        "ada\x7f@contoso.com",
        "ada@contoso.com\x9b",
        "ada@[127.0.0.1]",
        "a" * 250 + "@x.com",  # over the 254-character limit
    ],
)
def test_invalid_addresses_rejected(bad: str) -> None:
    assert deliverable_address({"mail": bad}) is None
    assert deliverable_address({"mail": None, "otherMails": [bad]}) is None


@pytest.mark.parametrize("good", ["ada@contoso.com", "Ada.Lovelace+mfa@mail.contoso.co.uk", "zoë@exämple.de"])
def test_valid_addresses_kept_as_written(good: str) -> None:
    assert deliverable_address({"mail": good}) == good


def test_invalid_mail_falls_through_to_other_mails() -> None:
    assert deliverable_address({"mail": "nope", "otherMails": ["ok@x.com"]}) == "ok@x.com"


# --- registration facts -------------------------------------------------------------------------


def test_registration_row_parsed() -> None:
    parsed = registration_from_graph(reg_row())
    assert parsed == (
        GUID.lower(),
        RegistrationFacts(
            mfa_registered=True,
            mfa_capable=True,
            is_admin=False,
            methods=("microsoftAuthenticatorPush", "mobilePhone"),
            default_method="microsoftAuthenticatorPush",
            report_updated="2026-11-22T01:02:03.1234567Z",
        ),
    )


@pytest.mark.parametrize("value", ["true", 1, 0, None, "yes", [True]])
def test_non_bool_flags_are_unknown(value: object) -> None:
    f = facts(isMfaRegistered=value, isMfaCapable=value, isAdmin=value)
    assert f.mfa_registered is None
    assert f.mfa_capable is None
    assert f.is_admin is None


def test_missing_fields_in_registration_row() -> None:
    parsed = registration_from_graph({"id": "abc"})
    assert parsed == (
        "abc",
        RegistrationFacts(
            mfa_registered=None,
            mfa_capable=None,
            is_admin=None,
            methods=(),
            default_method=None,
            report_updated=None,
        ),
    )


@pytest.mark.parametrize("value", ["none", "", None, 5, "  ", "\x00"])
def test_default_method_none_or_empty_is_none(value: object) -> None:
    assert facts(defaultMfaMethod=value).default_method is None


def test_default_method_kept() -> None:
    assert facts(defaultMfaMethod="sms").default_method == "sms"


def test_methods_deduplicated_and_sorted() -> None:
    f = facts(methodsRegistered=["sms", "fido2", "sms", " fido2 ", "email", "", "  ", None, 3])
    assert f.methods == ("email", "fido2", "sms")


@pytest.mark.parametrize("value", [None, "sms", {"sms": True}, 5])
def test_methods_not_a_list_is_empty(value: object) -> None:
    assert facts(methodsRegistered=value).methods == ()


def test_methods_bounded() -> None:
    names = [f"m{i:03d}" for i in range(MAX_METHODS + 20)]
    assert len(facts(methodsRegistered=names).methods) == MAX_METHODS


def test_method_name_with_comma_is_dropped() -> None:
    # Methods are stored comma-separated: such a name would read back as two and look changed nightly.
    assert facts(methodsRegistered=["sms", "a,b"]).methods == ("sms",)


def test_unknown_methods_kept_and_reported() -> None:
    f = facts(methodsRegistered=["sms", "quantumEntanglement", "fido2", "brainScan"])
    assert f.methods == ("brainScan", "fido2", "quantumEntanglement", "sms")
    assert unknown_methods(f.methods) == ("brainScan", "quantumEntanglement")
    assert unknown_methods(tuple(sorted(KNOWN_METHODS))) == ()
    assert unknown_methods(()) == ()


def test_method_names_are_interned() -> None:
    a = facts(methodsRegistered=["".join(["s", "ms"])]).methods[0]
    b = facts(methodsRegistered=["".join(["sm", "s"])]).methods[0]
    assert a is b


@pytest.mark.parametrize("value", [None, 5, "", "  "])
def test_report_updated_only_a_non_empty_string(value: object) -> None:
    assert facts(lastUpdatedDateTime=value).report_updated is None


# --- the join -----------------------------------------------------------------------------------


def test_record_joined_with_registration() -> None:
    r = record(user(), facts())
    assert r.in_report is True
    assert r.mfa_registered is True
    assert r.mfa_capable is True
    assert r.is_admin is False
    assert r.methods == ("microsoftAuthenticatorPush", "mobilePhone")
    assert r.default_method == "microsoftAuthenticatorPush"
    assert r.report_updated == "2026-11-22T01:02:03.1234567Z"
    assert r.email == "ada@contoso.com"
    assert r.upn == "ada@contoso.com"
    assert r.display_name == "Ada Lovelace"
    assert r.created == "2021-03-04T05:06:07Z"


def test_record_not_in_report_is_unknown_not_unregistered() -> None:
    r = record(user(), None)
    assert r.in_report is False
    assert r.mfa_registered is None
    assert r.mfa_capable is None
    assert r.is_admin is None
    assert r.methods == ()
    assert r.default_method is None
    assert r.report_updated is None


def test_weird_values_never_raise() -> None:
    weird: list[object] = [None, 0, -1, 1.5, "", "x", [], {}, [None], {"a": 1}, True, "\x00" * 10]
    keys = list(user())
    for value in weird:
        for key in keys:
            u = user(**{key: value})
            result = record_from_graph(u, None)
            assert isinstance(result, UserRecord | Skipped)
        for key in reg_row():
            parsed = registration_from_graph(reg_row(**{key: value}))
            assert isinstance(parsed, Skipped | tuple)


def test_v1_default_method_property_is_read_and_beta_name_still_accepted() -> None:
    from shared.domain.normalize import registration_from_graph

    v1 = registration_from_graph(
        {"id": "ABC", "isMfaRegistered": True, "userPreferredMethodForSecondaryAuthentication": "push"}
    )
    assert not isinstance(v1, Skipped) and v1[1].default_method == "push"
    none = registration_from_graph({"id": "abc", "userPreferredMethodForSecondaryAuthentication": "None"})
    assert not isinstance(none, Skipped) and none[1].default_method is None
