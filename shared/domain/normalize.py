"""Turn Graph's wire objects into typed records, or into a reason for skipping them.

Graph data is input like any other: fields go missing, UPNs are null, guests carry ``#EXT#`` UPNs,
names hold HTML, method names appear that did not exist last year. Every function here either
returns a well-formed value or a ``Skipped`` with a reason an admin can read; none raises on bad
data, so one odd user never costs the others.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.domain.management_apps import app_of
from shared.domain.records import UserRecord, UserType, intern_methods
from shared.domain.scope_rules import PersonFacts, SignIn

# Methods Graph documents for userRegistrationDetails.methodsRegistered. Unknown names are kept
# (Microsoft adds methods) and only counted, so a new method never makes someone "unregistered".
KNOWN_METHODS = frozenset(
    {
        "email",
        "fido2",
        "hardwareOneTimePasscode",
        "microsoftAuthenticatorPasswordless",
        "microsoftAuthenticatorPush",
        "mobilePhone",
        "officePhone",
        "alternateMobilePhone",
        "passKeyDeviceBound",
        "passKeyDeviceBoundAuthenticator",
        "passKeyDeviceBoundWindowsHello",
        "securityQuestion",
        "softwareOneTimePasscode",
        "temporaryAccessPass",
        "windowsHelloForBusiness",
        "macOsSecureEnclaveKey",
        "externalAuthenticationMethod",
        "qrCodePin",
        "platformCredential",
        "sms",
        "voiceMobile",
        "voiceAlternateMobile",
        "voiceOffice",
        "appNotification",
        "appCode",
        "passwordlessMicrosoftAuthenticator",
        "push",
    }
)

MAX_ID_LENGTH = 128
MAX_TEXT_LENGTH = 512  # far above real UPNs and names, far below the 64 KiB property limit
MAX_METHODS = 50

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Characters Table Storage refuses in keys, the '|' our row keys use as a separator, and anything that
# would make the id unusable in a URL.
_BAD_ID = re.compile(r"[/\\#?|\x00-\x1f\x7f-\x9f\s]")
# Control characters are excluded too (\s misses NUL, DEL and most of C0/C1).
_ADDR = r"[^@\s<>\"(),;:\[\]\x00-\x1f\x7f-\x9f]+"
_EMAIL = re.compile(rf"{_ADDR}@{_ADDR}\.{_ADDR}")


@dataclass(frozen=True, slots=True)
class Skipped:
    user_id: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class RegistrationFacts:
    """One row of the registration report, reduced to what the monitor uses."""

    mfa_registered: bool | None
    mfa_capable: bool | None
    is_admin: bool | None
    methods: tuple[str, ...]
    default_method: str | None
    report_updated: str | None


def clean_text(value: object) -> str:
    """Text as the person wrote it (unicode and markup kept, escaping is the renderer's job),
    minus control characters, bounded in length."""
    if not isinstance(value, str):
        return ""
    return _CONTROL.sub("", value).strip()[:MAX_TEXT_LENGTH]


def valid_id(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value or len(value) > MAX_ID_LENGTH or _BAD_ID.search(value):
        return None
    return value.lower()


def _address(candidate: object) -> str | None:
    if isinstance(candidate, str):
        address = candidate.strip()
        if "#ext#" not in address.lower() and _EMAIL.fullmatch(address) and len(address) <= 254:
            return address
    return None


def _identity_addresses(identities: object) -> list[object]:
    """Sign-in names that are email addresses: an ``emailAddress`` sign-in, or a federated one
    (B2B guests redeemed with email one-time passcode or a social account carry their address as
    ``issuerAssignedId``). A ``userPrincipalName`` identity is a UPN, not a mailbox: never used."""
    if not isinstance(identities, list):
        return []
    found: list[object] = []
    for identity in identities:
        if isinstance(identity, Mapping) and identity.get("signInType") in ("emailAddress", "federated"):
            found.append(identity.get("issuerAssignedId"))
    return found


def deliverable_address(user: Mapping[str, Any]) -> str | None:
    """The address a nudge can reach: ``mail``, then ``otherMails``, then an email-address
    ``identities`` entry; never a ``#EXT#`` UPN."""
    candidates: list[object] = [user.get("mail")]
    other = user.get("otherMails")
    if isinstance(other, list):
        candidates.extend(other)
    candidates.extend(_identity_addresses(user.get("identities")))
    for candidate in candidates:
        address = _address(candidate)
        if address is not None:
            return address
    return None


# Identity issuers of guests who sign in with something other than an Entra work account: their
# home "tenant" has no MFA this tenant could trust.
_NON_ENTRA_ISSUERS = frozenset({"mail", "microsoftaccount", "google.com", "facebook.com", "phone"})
_GUEST_UPN = re.compile(r"^(?P<local>.+)_(?P<domain>[^_#@]+)#ext#@", re.IGNORECASE)


def _domain_of(address: str | None) -> str | None:
    if address and "@" in address:
        return address.rsplit("@", 1)[1].lower()
    return None


def person_from_graph(user: Mapping[str, Any]) -> PersonFacts:
    """The facts scope needs beyond the record: mailbox, a guest's home domain and kind of account."""
    mail = user.get("mail")
    has_mailbox = isinstance(mail, str) and bool(mail.strip())
    upn = clean_text(user.get("userPrincipalName"))
    guest = _user_type(user.get("userType"), upn) is UserType.GUEST
    if not guest:
        return PersonFacts(has_mailbox=has_mailbox)
    match = _GUEST_UPN.match(upn)
    home_domain = (match.group("domain").lower() if match else None) or _domain_of(deliverable_address(user))
    entra: bool | None = None
    identities = user.get("identities")
    if isinstance(identities, list):
        for identity in identities:
            if not isinstance(identity, Mapping) or identity.get("signInType") != "federated":
                continue
            issuer = str(identity.get("issuer") or "").lower()
            if issuer == "externalazuread":
                entra = True
            elif issuer in _NON_ENTRA_ISSUERS:
                entra = False
    return PersonFacts(has_mailbox=has_mailbox, home_domain=home_domain, entra_guest=entra)


def _bool_or_none(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _methods(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    names = {clean_text(m) for m in value[:MAX_METHODS] if isinstance(m, str)}
    # Stored comma-separated (table_schema): a name holding ',' would not survive the round trip.
    names = {n for n in names if n and "," not in n}
    return intern_methods(tuple(sorted(names)))


def _user_type(raw: object, upn: str) -> UserType:
    if isinstance(raw, str) and raw.strip().lower() in ("member", "guest"):
        return UserType(raw.strip().lower())
    # Missing or odd userType: the #EXT# marker is the one reliable sign of a B2B guest.
    return UserType.GUEST if "#ext#" in upn.lower() else UserType.MEMBER


def registration_from_graph(row: object) -> tuple[str, RegistrationFacts] | Skipped:
    """One ``userRegistrationDetails`` object -> (user id, facts), or why it was skipped."""
    if not isinstance(row, Mapping):
        return Skipped(None, "registration row is not a JSON object")
    user_id = valid_id(row.get("id"))
    if user_id is None:
        return Skipped(None, f"registration row has no usable id ({str(row.get('id'))[:60]!r})")
    # v1.0 names the user's default second factor userPreferredMethodForSecondaryAuthentication;
    # beta calls it defaultMfaMethod. Accept either, so a replayed beta export works too.
    default = (
        clean_text(row.get("userPreferredMethodForSecondaryAuthentication"))
        or clean_text(row.get("defaultMfaMethod"))
        or None
    )
    return user_id, RegistrationFacts(
        mfa_registered=_bool_or_none(row.get("isMfaRegistered")),
        mfa_capable=_bool_or_none(row.get("isMfaCapable")),
        is_admin=_bool_or_none(row.get("isAdmin")),
        methods=_methods(row.get("methodsRegistered")),
        default_method=None if default is None or default.lower() == "none" else default,
        report_updated=clean_text(row.get("lastUpdatedDateTime")) or None,
    )


def record_from_graph(user: object, registration: RegistrationFacts | None) -> UserRecord | Skipped:
    """One ``/users`` object joined with its report row (None when the report does not list it)."""
    if not isinstance(user, Mapping):
        return Skipped(None, "user is not a JSON object")
    user_id = valid_id(user.get("id"))
    if user_id is None:
        return Skipped(None, f"user has no usable id ({str(user.get('id'))[:60]!r})")
    upn = clean_text(user.get("userPrincipalName"))
    enabled = user.get("accountEnabled")
    created = user.get("createdDateTime")
    state = user.get("externalUserState")
    reg = registration
    return UserRecord(
        id=user_id,
        upn=upn,
        display_name=clean_text(user.get("displayName")),
        user_type=_user_type(user.get("userType"), upn),
        # Graph always returns accountEnabled when selected; if it is missing, assume the account
        # can sign in, so nobody is dropped from the monitor by a gap in the data.
        enabled=enabled if isinstance(enabled, bool) else True,
        mfa_registered=reg.mfa_registered if reg else None,
        mfa_capable=reg.mfa_capable if reg else None,
        is_admin=reg.is_admin if reg else None,
        methods=reg.methods if reg else (),
        default_method=reg.default_method if reg else None,
        email=deliverable_address(user),
        # "" would be stored as an absent property and read back as None: a write every night.
        created=clean_text(created) or None,
        external_user_state=clean_text(state) or None,
        on_premises_sync=user.get("onPremisesSyncEnabled") is True,
        report_updated=reg.report_updated if reg else None,
        in_report=reg is not None,
    )


def unknown_methods(methods: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(m for m in methods if m not in KNOWN_METHODS)


# --- sign-ins ----------------------------------------------------------------------------------


def sign_in_from_graph(row: object) -> SignIn | Skipped:
    """One ``signIn`` object (v1.0 or beta) -> what scope needs, or why it is of no use."""
    if not isinstance(row, Mapping):
        return Skipped(None, "sign-in is not a JSON object")
    user_id = valid_id(row.get("userId"))
    if user_id is None:
        return Skipped(None, "sign-in has no usable userId")
    app = app_of(row.get("appId"), row.get("resourceId"))
    if app is None:
        return Skipped(user_id, "sign-in to an app that is not a management app")
    at = row.get("createdDateTime")
    if not isinstance(at, str) or not at.strip():
        return Skipped(user_id, "sign-in has no createdDateTime")
    status = row.get("status")
    error = status.get("errorCode") if isinstance(status, Mapping) else None
    interactive = row.get("isInteractive")
    if not isinstance(interactive, bool):
        kinds = row.get("signInEventTypes")
        interactive = not (isinstance(kinds, list) and "nonInteractiveUser" in kinds)
    return SignIn(
        user_id=sys.intern(user_id),
        tool=app.tool,
        at=at.strip(),
        interactive=interactive,
        succeeded=error == 0,
        mfa=row.get("authenticationRequirement") == "multiFactorAuthentication",
    )


# --- the licence fallback: registration from a user's authentication methods --------------------

# GET /users/{id}/authentication/methods ``@odata.type`` -> the methodsRegistered vocabulary of
# the registration report, so both sources describe methods alike.
_METHOD_TYPES = {
    "#microsoft.graph.microsoftauthenticatorauthenticationmethod": "microsoftAuthenticatorPush",
    "#microsoft.graph.passwordlessmicrosoftauthenticatorauthenticationmethod": "microsoftAuthenticatorPasswordless",
    "#microsoft.graph.fido2authenticationmethod": "fido2",
    "#microsoft.graph.softwareoathauthenticationmethod": "softwareOneTimePasscode",
    "#microsoft.graph.hardwareoathauthenticationmethod": "hardwareOneTimePasscode",
    "#microsoft.graph.windowshelloforbusinessauthenticationmethod": "windowsHelloForBusiness",
    "#microsoft.graph.platformcredentialauthenticationmethod": "macOsSecureEnclaveKey",
    "#microsoft.graph.emailauthenticationmethod": "email",
    "#microsoft.graph.temporaryaccesspassauthenticationmethod": "temporaryAccessPass",
    "#microsoft.graph.qrcodepinauthenticationmethod": "qrCodePin",
    "#microsoft.graph.externalauthenticationmethod": "externalAuthenticationMethod",
}
_PHONE_TYPES = {"mobile": "mobilePhone", "alternatemobile": "alternateMobilePhone", "office": "officePhone"}
# Methods that are a second factor (what isMfaRegistered counts); email, a temporary access pass and
# a password are not.
MFA_METHODS = frozenset(
    {
        "microsoftAuthenticatorPush",
        "microsoftAuthenticatorPasswordless",
        "fido2",
        "softwareOneTimePasscode",
        "hardwareOneTimePasscode",
        "windowsHelloForBusiness",
        "macOsSecureEnclaveKey",
        "mobilePhone",
        "alternateMobilePhone",
        "officePhone",
        "externalAuthenticationMethod",
        "passKeyDeviceBound",
        "passKeyDeviceBoundAuthenticator",
        "passKeyDeviceBoundWindowsHello",
    }
)


def registration_from_methods(methods: object, *, is_admin: bool | None) -> RegistrationFacts:
    """Registration facts from ``GET /users/{id}/authentication/methods`` (Entra ID Free tenants,
    where the registration report answers 403). ``isMfaCapable`` also depends on policy, which this
    API does not tell: it is left unknown. ``is_admin`` comes from the role signals."""
    names: set[str] = set()
    if isinstance(methods, list):
        for method in methods[:MAX_METHODS]:
            if not isinstance(method, Mapping):
                continue
            kind = str(method.get("@odata.type") or "").lower()
            if kind == "#microsoft.graph.phoneauthenticationmethod":
                name = _PHONE_TYPES.get(str(method.get("phoneType") or "").lower(), "mobilePhone")
            else:
                name = _METHOD_TYPES.get(kind, "")
            if name:
                names.add(name)
    found = intern_methods(tuple(sorted(names)))
    return RegistrationFacts(
        mfa_registered=any(m in MFA_METHODS for m in found),
        mfa_capable=None,
        is_admin=is_admin,
        methods=found,
        default_method=None,
        report_updated=None,
    )
