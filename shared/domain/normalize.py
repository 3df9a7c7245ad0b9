"""Turn Graph's wire objects into typed records, or into a reason for skipping them.

Graph data is input like any other: fields go missing, UPNs are null, guests carry ``#EXT#`` UPNs,
names hold HTML, method names appear that did not exist last year. Every function here either
returns a well-formed value or a ``Skipped`` with a reason an admin can read; none raises on bad
data, so one odd user never costs the others.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.domain.records import UserRecord, UserType, intern_methods

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


def deliverable_address(user: Mapping[str, Any]) -> str | None:
    """The address a nudge can reach: ``mail``, then ``otherMails``; never a ``#EXT#`` UPN."""
    candidates: list[object] = [user.get("mail")]
    other = user.get("otherMails")
    if isinstance(other, list):
        candidates.extend(other)
    for candidate in candidates:
        if isinstance(candidate, str):
            address = candidate.strip()
            if "#ext#" not in address.lower() and _EMAIL.fullmatch(address) and len(address) <= 254:
                return address
    return None


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
