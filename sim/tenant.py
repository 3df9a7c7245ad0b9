"""Simulated Entra ID tenant: the data the tenant simulator serves.

Every object is kept in Microsoft Graph v1.0's own wire format (camelCase keys, ISO-8601 ``Z``
timestamps, Graph's enum spellings), so a real tenant's exported JSON can be replayed as-is and the
code under test never sees anything Graph would not send.

Facts this module encodes (checked against the v1.0 docs, see the report in the PR):

* ``GET /v1.0/reports/authenticationMethods/userRegistrationDetails`` (v1.0) has NO
  ``defaultMfaMethod``; that property is beta-only.  v1.0 has
  ``userPreferredMethodForSecondaryAuthentication`` (``push``, ``oath``, ``voiceMobile``,
  ``voiceAlternateMobile``, ``voiceOffice``, ``sms``, ``none``; the docs' own example also shows
  ``""`` for an unregistered user) and ``systemPreferredAuthenticationMethods`` (same values).
* ``userType`` is ``Member``/``Guest`` on users but ``member``/``guest`` in the report.
* Disabled and deleted users have no row in the report, and new users appear only after the
  report refreshes (up to ~36 h), so a missing row never means "not registered".
* ``lastUpdatedDateTime`` is the report's refresh time (7 fractional digits on the wire): it moves
  for every row at every refresh, so it must never be treated as a change of the user.

A :class:`Tenant` is a small bag of named collections (``users``, ``userRegistrationDetails``,
and whatever a replayed file or later work adds: signIns, role assignments, groups...).  The
collections are plain lists of dicts.  Mutate them through the methods here, or call
:meth:`Tenant.touch` after editing dicts in place, so that caches keyed on :attr:`Tenant.revision`
(the simulator pre-serialises pages) see the change.
"""

from __future__ import annotations

import bisect
import functools
import json
import os
import random
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

USERS = "users"
USER_REGISTRATION_DETAILS = "userRegistrationDetails"

Obj = dict[str, Any]


@dataclass(frozen=True)
class CollectionSpec:
    """How a collection is exposed by Graph: its path under ``/v1.0``, entity type and properties.

    ``properties`` is what ``$select`` accepts (Graph answers 400 for an unknown property);
    ``default_properties`` is what Graph returns without ``$select`` (``None``: every property).
    """

    name: str
    path: str
    entity_type: str
    properties: frozenset[str]
    default_properties: tuple[str, ...] | None = None
    max_top: int = 999
    # Where Graph serves it, and what it takes: ``permissions`` (any one, least privileged first;
    # empty: the simulator's older special cases), ``premium`` (Entra ID P1/P2 or 403).
    versions: tuple[str, ...] = ("v1.0",)
    permissions: tuple[str, ...] = ()
    premium: bool = False
    beta_only: frozenset[str] = frozenset()  # properties $select refuses on v1.0


# The documented v1.0 user properties we may meet (plus the ones replayed exports commonly carry).
USER_PROPERTIES = frozenset(
    {
        "id",
        "accountEnabled",
        "ageGroup",
        "businessPhones",
        "city",
        "companyName",
        "country",
        "createdDateTime",
        "creationType",
        "deletedDateTime",
        "department",
        "displayName",
        "employeeId",
        "employeeType",
        "externalUserState",
        "externalUserStateChangeDateTime",
        "givenName",
        "identities",
        "jobTitle",
        "lastPasswordChangeDateTime",
        "mail",
        "mailNickname",
        "mobilePhone",
        "officeLocation",
        "onPremisesDistinguishedName",
        "onPremisesDomainName",
        "onPremisesImmutableId",
        "onPremisesLastSyncDateTime",
        "onPremisesSamAccountName",
        "onPremisesSecurityIdentifier",
        "onPremisesSyncEnabled",
        "onPremisesUserPrincipalName",
        "otherMails",
        "preferredLanguage",
        "proxyAddresses",
        "securityIdentifier",
        "signInActivity",
        "surname",
        "usageLocation",
        "userPrincipalName",
        "userType",
    }
)
# What GET /v1.0/users returns when no $select is given (Graph's documented default set).
USER_DEFAULT_PROPERTIES = (
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
)
REGISTRATION_PROPERTIES = frozenset(
    {
        "id",
        "isAdmin",
        "isMfaCapable",
        "isMfaRegistered",
        "isPasswordlessCapable",
        "isSsprCapable",
        "isSsprEnabled",
        "isSsprRegistered",
        "isSystemPreferredAuthenticationMethodEnabled",
        "lastUpdatedDateTime",
        "methodsRegistered",
        "systemPreferredAuthenticationMethods",
        "userDisplayName",
        "userPreferredMethodForSecondaryAuthentication",
        "userPrincipalName",
        "userType",
    }
)

COLLECTIONS: dict[str, CollectionSpec] = {
    USERS: CollectionSpec(
        name=USERS,
        path="users",
        entity_type="microsoft.graph.user",
        properties=USER_PROPERTIES,
        default_properties=USER_DEFAULT_PROPERTIES,
    ),
    USER_REGISTRATION_DETAILS: CollectionSpec(
        name=USER_REGISTRATION_DETAILS,
        path="reports/authenticationMethods/userRegistrationDetails",
        entity_type="microsoft.graph.userRegistrationDetails",
        properties=REGISTRATION_PROPERTIES,
    ),
}

# --- the scope signals' collections (sim/scope_data.py generates them) ---------------------------
SIGN_INS = "signIns"
ROLE_ASSIGNMENTS = "roleAssignments"
ROLE_ELIGIBILITY = "roleEligibilityScheduleInstances"
ROLE_DEFINITIONS = "roleDefinitions"
GROUPS = "groups"
AZURE_ROLE_ASSIGNMENTS = "azureRoleAssignments"  # Azure Resource Graph rows (not Graph)
# Not lists of objects with ids, so kept in Tenant.extra (see the README's simulator section):
GROUP_MEMBERS = "groupMembers"  # {groupId: [directoryObject {"@odata.type", "id"}]} (direct members)
CROSS_TENANT_ACCESS_POLICY = "crossTenantAccessPolicy"  # {"default": {...}, "partners": [{tenantId, inboundTrust}]}
USER_AUTHENTICATION_METHODS = "userAuthenticationMethods"  # {userId: [authenticationMethod]}
TENANT_INFORMATION = "tenantInformation"  # {domain: tenantInformation}, findTenantInformationByDomainName

SIGN_IN_V1_PROPERTIES = frozenset(
    {
        "id",
        "createdDateTime",
        "userDisplayName",
        "userPrincipalName",
        "userId",
        "appId",
        "appDisplayName",
        "ipAddress",
        "clientAppUsed",
        "correlationId",
        "conditionalAccessStatus",
        "isInteractive",
        "riskDetail",
        "riskLevelAggregated",
        "riskLevelDuringSignIn",
        "riskState",
        "riskEventTypes",
        "riskEventTypes_v2",
        "resourceDisplayName",
        "resourceId",
        "status",
        "deviceDetail",
        "location",
        "appliedConditionalAccessPolicies",
        "authenticationRequirement",
        "mfaDetail",
    }
)
SIGN_IN_BETA_ONLY = frozenset(
    {
        "signInEventTypes",
        "homeTenantId",
        "resourceTenantId",
        "userType",
        "crossTenantAccessType",
        "authenticationDetails",
    }
)
_ROLE_ASSIGNMENT_PROPERTIES = frozenset(
    {"id", "principalId", "roleDefinitionId", "directoryScopeId", "appScopeId", "resourceScope"}
)
_ROLE_ELIGIBILITY_PROPERTIES = frozenset(
    {
        "id",
        "principalId",
        "roleDefinitionId",
        "directoryScopeId",
        "appScopeId",
        "startDateTime",
        "endDateTime",
        "memberType",
        "roleEligibilityScheduleId",
    }
)
COLLECTIONS.update(
    {
        SIGN_INS: CollectionSpec(
            name=SIGN_INS,
            path="auditLogs/signIns",
            entity_type="microsoft.graph.signIn",
            properties=SIGN_IN_V1_PROPERTIES | SIGN_IN_BETA_ONLY,
            max_top=1000,
            versions=("v1.0", "beta"),
            permissions=("AuditLog.Read.All", "Directory.Read.All"),
            premium=True,
            beta_only=SIGN_IN_BETA_ONLY,
        ),
        ROLE_ASSIGNMENTS: CollectionSpec(
            name=ROLE_ASSIGNMENTS,
            path="roleManagement/directory/roleAssignments",
            entity_type="microsoft.graph.unifiedRoleAssignment",
            properties=_ROLE_ASSIGNMENT_PROPERTIES,
            permissions=("RoleManagement.Read.Directory", "RoleManagement.Read.All", "Directory.Read.All"),
        ),
        ROLE_ELIGIBILITY: CollectionSpec(
            name=ROLE_ELIGIBILITY,
            path="roleManagement/directory/roleEligibilityScheduleInstances",
            entity_type="microsoft.graph.unifiedRoleEligibilityScheduleInstance",
            properties=_ROLE_ELIGIBILITY_PROPERTIES,
            permissions=(
                "RoleEligibilitySchedule.Read.Directory",
                "RoleManagement.Read.Directory",
                "RoleManagement.Read.All",
            ),
        ),
        ROLE_DEFINITIONS: CollectionSpec(
            name=ROLE_DEFINITIONS,
            path="roleManagement/directory/roleDefinitions",
            entity_type="microsoft.graph.unifiedRoleDefinition",
            properties=frozenset({"id", "displayName", "description", "templateId", "isBuiltIn", "isEnabled"}),
            permissions=("RoleManagement.Read.Directory", "RoleManagement.Read.All", "Directory.Read.All"),
        ),
        GROUPS: CollectionSpec(
            name=GROUPS,
            path="groups",
            entity_type="microsoft.graph.group",
            properties=frozenset(
                {
                    "id",
                    "displayName",
                    "description",
                    "isAssignableToRole",
                    "securityEnabled",
                    "mailEnabled",
                    "groupTypes",
                }
            ),
            default_properties=("id", "displayName", "description", "securityEnabled", "mailEnabled", "groupTypes"),
            permissions=("GroupMember.Read.All", "Group.Read.All", "Directory.Read.All"),
        ),
    }
)

# Strings seen in methodsRegistered.  MFA_METHODS count for isMfaRegistered.
MFA_METHODS = frozenset(
    {
        "microsoftAuthenticatorPush",
        "microsoftAuthenticatorPasswordless",
        "softwareOneTimePasscode",
        "hardwareOneTimePasscode",
        "mobilePhone",
        "alternateMobilePhone",
        "officePhone",
        "fido2",
        "windowsHelloForBusiness",
        "passKeyDeviceBound",
        "passKeyDeviceBoundAuthenticator",
        "passKeyDeviceBoundWindowsHello",
    }
)
PASSWORDLESS_METHODS = frozenset(
    {
        "microsoftAuthenticatorPasswordless",
        "fido2",
        "windowsHelloForBusiness",
        "passKeyDeviceBound",
        "passKeyDeviceBoundAuthenticator",
        "passKeyDeviceBoundWindowsHello",
    }
)
SSPR_METHODS = frozenset(
    {
        "email",
        "mobilePhone",
        "alternateMobilePhone",
        "officePhone",
        "microsoftAuthenticatorPush",
        "softwareOneTimePasscode",
        "securityQuestion",
    }
)
# (method, weight) for a registered user's methods; the first pick is biased to the common ones.
_METHOD_WEIGHTS: tuple[tuple[str, int], ...] = (
    ("microsoftAuthenticatorPush", 40),
    ("mobilePhone", 25),
    ("softwareOneTimePasscode", 12),
    ("email", 8),
    ("windowsHelloForBusiness", 5),
    ("fido2", 3),
    ("passKeyDeviceBound", 2),
    ("microsoftAuthenticatorPasswordless", 2),
    ("alternateMobilePhone", 1),
    ("officePhone", 1),
    ("hardwareOneTimePasscode", 1),
)
_METHODS = tuple(m for m, _ in _METHOD_WEIGHTS)
_METHOD_CUM = tuple(sum(w for _, w in _METHOD_WEIGHTS[: i + 1]) for i in range(len(_METHOD_WEIGHTS)))
# Second-factor value (systemPreferred/userPreferred vocabulary) for a registered method.
_SECOND_FACTOR = {
    "microsoftAuthenticatorPush": "push",
    "softwareOneTimePasscode": "oath",
    "hardwareOneTimePasscode": "oath",
    "mobilePhone": "sms",
    "alternateMobilePhone": "voiceAlternateMobile",
    "officePhone": "voiceOffice",
}
_SYSTEM_PREFERENCE = ("push", "oath", "sms", "voiceMobile", "voiceAlternateMobile", "voiceOffice")

_FIRST = (
    "Alice", "Bob", "Carol", "David", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy", "Mallory",
    "Niaj", "Olivia", "Peggy", "Rupert", "Sybil", "Trent", "Victor", "Walter", "Yusuf", "Zoë",
    "José", "Jürgen", "Łukasz", "Siobhán", "Ngọc", "Ines", "Mats", "Priya", "Arjun", "Mei", "Kenji",
    "Aisha", "Omar", "Fatima", "Lars", "Sofía", "Mateo", "Chloé", "Björn", "Anaïs", "Dmitri",
    "Hana", "Tomás", "Amara", "Kwame", "Noor", "Elif", "Søren", "Ana",
)  # fmt: skip
_LAST = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Martínez",
    "Müller", "Schmidt", "Nowak", "Kowalski", "Rossi", "Bianchi", "Dubois", "Lefèvre", "Andersson",
    "Nielsen", "Østergaard", "O'Brien", "Murphy", "Kelly", "Nguyen", "Tanaka", "Sato", "Kim",
    "Park", "Chen", "Wang", "Singh", "Patel", "Khan", "Ahmed", "Yılmaz", "Kaya", "Silva", "Santos",
    "Costa", "Ivanov", "Novák", "Horváth", "Papadopoulos", "Cohen", "Levi", "Mensah", "Okafor",
    "Haddad", "Jansen", "de Vries",
)  # fmt: skip
# Display names that have bitten real templates and tables: HTML, quotes, RTL, CJK, emoji.
_AWKWARD_NAMES = (
    "Zoë <b>Ünïcode</b>",
    "O'Brien & Sons <script>alert(1)</script>",
    'Ñoño "Quoted" Pérez',
    "李小龙",
    "محمد الأحمد",
    "Dev Ops 🚀",
    "<img src=x onerror=alert(1)>",
    "Ann\u200bZero\u200dWidth",
    "Ævar Þór Ðórsson",
    "  Leading and trailing spaces  ",
)
_GUEST_DOMAINS = (
    "fabrikam.example",
    "northwind.example",
    "adatum.example",
    "tailspin.example",
    "wingtip.example",
    "outlook.example",
    "gmail.example",
)
_JOBS = (None, None, "Engineer", "Analyst", "Manager", "Consultant", "Sales", "Support", "Director")
_DEFAULT_NOW = datetime(2025, 11, 20, 2, 0, 0, tzinfo=UTC)


_DAY_PREFIX: dict[int, str] = {}


def _iso_epoch(seconds: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` for epoch seconds, without strftime (hot in generation)."""
    day, rest = divmod(seconds, 86400)
    prefix = _DAY_PREFIX.get(day)
    if prefix is None:
        prefix = _DAY_PREFIX[day] = datetime.fromtimestamp(day * 86400, UTC).strftime("%Y-%m-%dT")
    hours, rest = divmod(rest, 3600)
    return f"{prefix}{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"


def _iso(dt: datetime) -> str:
    return _iso_epoch(int(dt.timestamp())) + "Z"


def _iso7(dt: datetime, ticks: int) -> str:
    """Report timestamps carry 7 fractional digits, e.g. ``2023-03-13T19:15:41.6195833Z``."""
    return f"{_iso_epoch(int(dt.timestamp()))}.{ticks:07d}Z"


def _parse_iso(value: str) -> datetime:
    head = value.rstrip("Z").split(".")[0]
    return datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)


@functools.cache
def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return "".join(c for c in folded.lower() if c.isalnum())


def _pick(rng: random.Random, seq: Sequence[T]) -> T:
    return seq[int(rng.random() * len(seq))]


def _guid(rng: random.Random) -> str:
    """A version-4 GUID string from the seeded RNG (what ``uuid.UUID(int=..., version=4)`` gives)."""
    h = f"{(rng.getrandbits(128) & _UUID_CLEAR) | _UUID_SET:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_UUID_CLEAR = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_UUID_SET = (0x4000 << 64) | (0x8000 << 48)


class Tenant:
    """Named collections of Graph objects (wire format) plus lookups by id.

    ``collections`` maps a top-level key of the JSON file to its list of objects; keys that are
    not collections (anything not a list) are kept in ``extra`` so a file round-trips unchanged.
    """

    def __init__(
        self,
        collections: Mapping[str, list[Obj]] | None = None,
        *,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.collections: dict[str, list[Obj]] = {USERS: [], USER_REGISTRATION_DETAILS: []}
        if collections:
            for name, objects in collections.items():
                self.collections[name] = list(objects)
        self.extra: dict[str, Any] = dict(extra or {})
        self.revision = 0
        self._index_key: tuple[int, int, int] | None = None
        self._users_by_id: dict[str, Obj] = {}
        self._registrations_by_id: dict[str, Obj] = {}

    # -- collections ----------------------------------------------------------------------------
    @property
    def users(self) -> list[Obj]:
        """``GET /v1.0/users`` objects (the live list)."""
        return self.collections[USERS]

    @property
    def user_registration_details(self) -> list[Obj]:
        """``GET /v1.0/reports/authenticationMethods/userRegistrationDetails`` rows (live list)."""
        return self.collections[USER_REGISTRATION_DETAILS]

    def collection(self, name: str) -> list[Obj]:
        """A collection by its JSON/Graph name; an unknown name gives a new empty collection."""
        return self.collections.setdefault(name, [])

    def touch(self) -> None:
        """Declare that objects were changed in place (invalidates indexes and server caches)."""
        self.revision += 1

    # -- lookups --------------------------------------------------------------------------------
    def _index(self) -> None:
        key = (self.revision, len(self.users), len(self.user_registration_details))
        if key != self._index_key:
            # Tolerate garbage a test may plant in a collection (non-objects, missing ids).
            self._users_by_id = {u["id"]: u for u in self.users if isinstance(u, dict) and "id" in u}
            self._registrations_by_id = {
                r["id"]: r for r in self.user_registration_details if isinstance(r, dict) and "id" in r
            }
            self._index_key = key

    def user(self, user_id: str) -> Obj | None:
        """The ``users`` object with this id, or None."""
        self._index()
        return self._users_by_id.get(user_id)

    def registration(self, user_id: str) -> Obj | None:
        """The report row for this user id, or None (disabled, deleted, or not yet in the report)."""
        self._index()
        return self._registrations_by_id.get(user_id)

    # -- mutations ------------------------------------------------------------------------------
    def add_user(self, user: Obj, registration: Obj | None = None) -> None:
        if self.user(user["id"]) is not None:
            raise ValueError(f"user {user['id']} already exists")
        self.users.append(user)
        if registration is not None:
            self.user_registration_details.append(registration)
        self.touch()

    def set_registration(self, user_id: str, row: Obj | None) -> None:
        """Replace (or with None remove) a user's report row."""
        rows = self.user_registration_details
        for i, existing in enumerate(rows):
            if existing["id"] == user_id:
                if row is None:
                    del rows[i]
                else:
                    rows[i] = row
                break
        else:
            if row is not None:
                rows.append(row)
        self.touch()

    def remove_users(self, user_ids: Iterable[str]) -> int:
        """Delete users and their report rows (one pass per collection).  Returns users removed."""
        gone = set(user_ids)
        before = len(self.users)
        self.collections[USERS] = [u for u in self.users if u["id"] not in gone]
        self.collections[USER_REGISTRATION_DETAILS] = [r for r in self.user_registration_details if r["id"] not in gone]
        self.touch()
        return before - len(self.users)

    # -- JSON -----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)
        out.update(self.collections)
        return out

    def to_json(self, path: str | os.PathLike[str]) -> None:
        """Write ``{"users": [...], "userRegistrationDetails": [...], ...}`` (UTF-8)."""
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False), encoding="utf-8")

    @classmethod
    def from_json(cls, source: str | os.PathLike[str] | Mapping[str, Any]) -> Tenant:
        """Load a file (or an already-parsed dict) of Graph objects.

        Each top-level list is a collection; a Graph response object (``{"value": [...]}``) is
        accepted in place of a list.  Other top-level keys are kept.  Objects need an ``id``;
        every other property is optional.
        """
        if isinstance(source, Mapping):
            data: Mapping[str, Any] = source
        else:
            data = json.loads(Path(source).read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError(f"{source}: expected a JSON object at the top level")
        collections: dict[str, list[Obj]] = {}
        extra: dict[str, Any] = {}
        for key, value in data.items():
            if isinstance(value, Mapping) and isinstance(value.get("value"), list):
                value = value["value"]
            if isinstance(value, list):
                for i, obj in enumerate(value):
                    if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
                        raise ValueError(f"{key}[{i}]: expected an object with a string 'id'")
                collections[key] = [dict(obj) for obj in value]
            else:
                extra[key] = value
        return cls(collections, extra=extra)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={len(v)}" for k, v in self.collections.items())
        return f"Tenant({sizes}, revision={self.revision})"


# ------------------------------------------------------------------------------------------------
# Generation
# ------------------------------------------------------------------------------------------------
class _Factory:
    """Builds users and report rows from one seeded RNG."""

    def __init__(self, rng: random.Random, domain: str, now: datetime) -> None:
        self.rng = rng
        self.domain = domain
        self.now = now
        self.now_s = int(now.timestamp())
        self.used: set[str] = set()  # UPNs taken
        self.next_suffix: dict[str, int] = {}

    def unique_upn(self, base: str, make: Callable[[str], str]) -> str:
        """``make(base)``, or ``make(base + "2")``... whichever UPN is still free."""
        n = self.next_suffix.get(make(base), 1)
        upn = make(base) if n == 1 else make(f"{base}{n}")
        while upn in self.used:
            n += 1
            upn = make(f"{base}{n}")
        self.next_suffix[make(base)] = n
        self.used.add(upn)
        return upn

    def _name(self) -> tuple[str, str, str]:
        rng = self.rng
        first, last = _pick(rng, _FIRST), _pick(rng, _LAST)
        display = f"{first} {last}"
        if rng.random() < 0.005:
            display = _pick(rng, _AWKWARD_NAMES)
        return first, last, display

    def _created(self, max_days: int, min_days: int = 0) -> str:
        seconds = int(self.rng.random() * (max_days - min_days) * 86400) + min_days * 86400
        return _iso_epoch(self.now_s - seconds) + "Z"

    def user(self, *, guest: bool, enabled: bool = True, created: str | None = None) -> Obj:
        rng = self.rng
        first, last, display = self._name()
        uid = _guid(rng)
        if not guest:
            domain = self.domain
            upn = self.unique_upn(f"{_ascii(first)}.{_ascii(last)}", lambda x: f"{x}@{domain}")
            synced = rng.random() < 0.4
            return {
                "id": uid,
                "userPrincipalName": upn,
                "displayName": display,
                "givenName": first,
                "surname": last,
                "jobTitle": _pick(rng, _JOBS),
                "mail": upn if rng.random() < 0.92 else None,
                "otherMails": [],
                "userType": "Member",
                "accountEnabled": enabled,
                "createdDateTime": created or self._created(3650),
                "externalUserState": None,
                "onPremisesSyncEnabled": True if synced else None,
                "identities": [{"signInType": "userPrincipalName", "issuer": self.domain, "issuerAssignedId": upn}],
            }
        home_domain = _pick(rng, _GUEST_DOMAINS)
        tail = f"_{home_domain}#EXT#@{self.domain}"
        upn = self.unique_upn(f"{_ascii(first)}.{_ascii(last)}", lambda x: x + tail)
        local = upn[: -len(tail)]
        home = f"{local}@{home_domain}"
        roll = rng.random()
        mail: str | None
        if roll < 0.80:
            mail, other = home, [home]
        elif roll < 0.95:
            mail, other = None, [home]
        else:
            mail, other = None, []
        issuer = "ExternalAzureAD" if home_domain not in ("outlook.example", "gmail.example") else "mail"
        identities: list[Obj] = [{"signInType": "userPrincipalName", "issuer": self.domain, "issuerAssignedId": upn}]
        if roll < 0.95 or rng.random() < 0.5:
            identities.append(
                {
                    "signInType": "federated",
                    "issuer": issuer,
                    "issuerAssignedId": home if issuer == "mail" and roll < 0.95 else None,
                }
            )
        return {
            "id": uid,
            "userPrincipalName": upn,
            "displayName": display,
            "givenName": first if rng.random() < 0.5 else None,
            "surname": last if rng.random() < 0.5 else None,
            "jobTitle": None,
            "mail": mail,
            "otherMails": other,
            "userType": "Guest",
            "accountEnabled": enabled,
            "createdDateTime": created or self._created(1500),
            "externalUserState": "Accepted" if rng.random() < 0.85 else "PendingAcceptance",
            "onPremisesSyncEnabled": None,
            "identities": identities,
        }

    def methods(self) -> list[str]:
        """1-3 distinct methods, weighted; a few users end up with only ``email`` (SSPR only)."""
        rng = self.rng
        if rng.random() < 0.03:
            return ["email"]
        roll = rng.random()
        count = 1 if roll < 0.45 else 2 if roll < 0.85 else 3
        chosen: list[str] = []
        total = _METHOD_CUM[-1]
        while len(chosen) < count:
            m = _METHODS[bisect.bisect_right(_METHOD_CUM, rng.random() * total)]
            if m not in chosen:
                chosen.append(m)
        if not any(m in MFA_METHODS for m in chosen):
            chosen.insert(0, "microsoftAuthenticatorPush")
        return chosen

    def registration(self, user: Obj, *, registered: bool, is_admin: bool, methods: list[str] | None = None) -> Obj:
        rng = self.rng
        if methods is None:
            methods = self.methods() if registered else []
        if methods:
            held = set(methods)
            mfa = not held.isdisjoint(MFA_METHODS)
            passwordless = not held.isdisjoint(PASSWORDLESS_METHODS)
            sspr_registered = not held.isdisjoint(SSPR_METHODS)
            second = [_SECOND_FACTOR[m] for m in methods if m in _SECOND_FACTOR]
        else:
            mfa = passwordless = sspr_registered = False
            second = []
        system_enabled = rng.random() < 0.9
        system_pref = None
        for candidate in _SYSTEM_PREFERENCE:
            if candidate in second:
                system_pref = candidate
                break
        if second:
            preferred = _pick(rng, second)
            if preferred == "sms" and rng.random() < 0.3:
                preferred = "voiceMobile"
        else:
            preferred = "none" if rng.random() < 0.8 else ""
        sspr_enabled = rng.random() < 0.6
        refreshed = _iso_epoch(self.now_s - int(rng.random() * 36 * 3600))
        return {
            "id": user["id"],
            "userPrincipalName": user.get("userPrincipalName"),
            "userDisplayName": user.get("displayName"),
            "userType": "guest" if user.get("userType") == "Guest" else "member",
            "isAdmin": is_admin,
            "isSsprRegistered": sspr_registered,
            "isSsprEnabled": sspr_enabled,
            "isSsprCapable": sspr_enabled and sspr_registered,
            "isMfaRegistered": mfa,
            "isMfaCapable": mfa and rng.random() < 0.97,
            "isPasswordlessCapable": passwordless,
            "lastUpdatedDateTime": f"{refreshed}.{int(rng.random() * 1e7):07d}Z",
            "methodsRegistered": list(methods),
            "isSystemPreferredAuthenticationMethodEnabled": system_enabled,
            "systemPreferredAuthenticationMethods": [system_pref] if system_pref else [],
            "userPreferredMethodForSecondaryAuthentication": preferred,
        }


def generate_tenant(n_users: int, seed: int, *, domain: str = "contoso.example", now: datetime | None = None) -> Tenant:
    """A deterministic tenant of ``n_users`` users (same seed, same bytes).

    Mix: ~85% members / ~15% guests (guests: ~80% with ``mail``, ~15% with only ``otherMails``,
    ~5% with neither); ~2% disabled (no report row); ~1.5% of enabled users created in the last
    36 hours with no report row yet; ~3% admins; ~70% of report rows registered with 1-3 methods
    (a few with ``email`` only, so not MFA-registered); ~0.5% awkward display names (HTML, RTL,
    CJK, emoji).  ``now`` defaults to a fixed instant so output never depends on the clock.
    """
    if n_users < 0:
        raise ValueError("n_users must be >= 0")
    rng = random.Random(seed)
    when = now or _DEFAULT_NOW
    f = _Factory(rng, domain, when)
    users: list[Obj] = []
    rows: list[Obj] = []
    for _ in range(n_users):
        guest = rng.random() < 0.15
        enabled = rng.random() >= 0.02
        lagging = enabled and rng.random() < 0.015
        created = f._created(1, 0) if lagging else None
        user = f.user(guest=guest, enabled=enabled, created=created)
        users.append(user)
        if not enabled or lagging:
            continue
        is_admin = rng.random() < (0.034 if not guest else 0.005)
        registered = rng.random() < (0.9 if is_admin else 0.7)
        rows.append(f.registration(user, registered=registered, is_admin=is_admin))
    # The report is not in the directory's order.
    rng.shuffle(rows)
    return Tenant({USERS: users, USER_REGISTRATION_DETAILS: rows})


# ------------------------------------------------------------------------------------------------
# One night of change
# ------------------------------------------------------------------------------------------------
EVOLVE_CATEGORIES = (
    "registered",  # isMfaRegistered false -> true
    "unregistered",  # had MFA methods, now none at all
    "methods_changed",  # still MFA-registered, different methodsRegistered
    "disabled",  # accountEnabled -> false, report row disappears
    "enabled",  # accountEnabled -> true, report row (re)appears
    "admin_added",  # isAdmin false -> true
    "admin_removed",  # isAdmin true -> false
    "deleted",  # gone from users and the report
    "joined_members",  # new Member users (about half already in the report, unregistered)
    "joined_guests",  # new Guest users (likewise)
    "report_added",  # users who had no report row (lag) and now have one
)
_WEIGHTS = {
    "registered": 1.0,
    "unregistered": 0.2,
    "methods_changed": 0.5,
    "disabled": 0.2,
    "enabled": 0.1,
    "admin_added": 0.05,
    "admin_removed": 0.05,
    "deleted": 0.2,
    "joined_members": 0.4,
    "joined_guests": 0.2,
}


def evolve(
    tenant: Tenant,
    seed: int,
    churn: float = 0.01,
    *,
    now: datetime | None = None,
    refresh_timestamps: bool = True,
) -> dict[str, Any]:
    """Apply one simulated night to ``tenant`` in place and return what was done.

    Each category touches about ``len(users) * churn * weight`` distinct users (at least one when
    the tenant has a candidate), and no user is in two categories.  ``now`` defaults to one day
    after the newest report timestamp (or the generator's fixed instant).  With
    ``refresh_timestamps`` every report row gets the new refresh time, as the real report does.

    Returns ``{"now": iso, "seed": seed, "counts": {category: n}, "ids": {category: [ids]}}``
    with every category of :data:`EVOLVE_CATEGORIES`, and ``"scope"`` (sim.scope_data.evolve_scope:
    who signed in again, who started using the CLI, roles added and removed) when the tenant has
    scope data.
    """
    rng = random.Random(seed)
    if now is None:
        # ISO-8601 Z strings of one format sort like the instants they name.
        stamps = [r.get("lastUpdatedDateTime") for r in tenant.user_registration_details]
        newest = max((s for s in stamps if isinstance(s, str)), default=None)
        latest = _parse_iso(newest) if newest else _DEFAULT_NOW
        now = latest + timedelta(days=1)
    domain = _tenant_domain(tenant)
    f = _Factory(rng, domain, now)
    f.used = {u.get("userPrincipalName") or "" for u in tenant.users}  # new UPNs stay unique

    n = len(tenant.users)

    def quota(category: str) -> int:
        return max(1, round(n * churn * _WEIGHTS[category])) if n else 0

    ids: dict[str, list[str]] = {c: [] for c in EVOLVE_CATEGORIES}
    touched: set[str] = set()
    rows = {r["id"]: r for r in tenant.user_registration_details}
    users = {u["id"]: u for u in tenant.users}
    row_ids = list(rows)  # candidate order is the lists' order: deterministic
    user_ids = list(users)

    def pick(category: str, candidates: list[str]) -> list[str]:
        pool = [c for c in candidates if c not in touched]
        chosen = rng.sample(pool, min(quota(category), len(pool)))
        touched.update(chosen)
        ids[category] = sorted(chosen)
        return chosen

    def owner(uid: str) -> Obj:
        """The user behind a report row (a replayed file may have a row without its user)."""
        if uid in users:
            return users[uid]
        row = rows[uid]
        return {
            "id": uid,
            "userPrincipalName": row.get("userPrincipalName"),
            "displayName": row.get("userDisplayName"),
            "userType": "Guest" if row.get("userType") == "guest" else "Member",
        }

    def rebuild(uid: str, *, registered: bool, methods: list[str] | None = None) -> None:
        admin = bool(rows[uid].get("isAdmin"))
        rows[uid] = f.registration(owner(uid), registered=registered, is_admin=admin, methods=methods)

    for uid in pick("registered", [i for i in row_ids if not rows[i].get("isMfaRegistered")]):
        rebuild(uid, registered=True)
        if not rows[uid]["isMfaRegistered"]:  # drew "email only": make it MFA
            rebuild(uid, registered=True, methods=["microsoftAuthenticatorPush", "email"])
    for uid in pick("unregistered", [i for i in row_ids if rows[i].get("isMfaRegistered")]):
        rebuild(uid, registered=False)
    for uid in pick("methods_changed", [i for i in row_ids if rows[i].get("isMfaRegistered")]):
        previous = sorted(rows[uid].get("methodsRegistered") or [])
        methods = f.methods()
        while sorted(methods) == previous or not any(m in MFA_METHODS for m in methods):
            methods = f.methods()
        rebuild(uid, registered=True, methods=methods)
    for uid in pick("admin_added", [i for i in row_ids if not rows[i].get("isAdmin")]):
        rows[uid] = {**rows[uid], "isAdmin": True}
    for uid in pick("admin_removed", [i for i in row_ids if rows[i].get("isAdmin")]):
        rows[uid] = {**rows[uid], "isAdmin": False}

    for uid in pick("disabled", [i for i in user_ids if users[i].get("accountEnabled") is not False]):
        users[uid] = {**users[uid], "accountEnabled": False}
        rows.pop(uid, None)  # disabled users leave the report
    for uid in pick("enabled", [i for i in user_ids if users[i].get("accountEnabled") is False]):
        users[uid] = {**users[uid], "accountEnabled": True}
        rows[uid] = f.registration(users[uid], registered=rng.random() < 0.7, is_admin=False)
    added = [i for i in user_ids if i not in rows and i not in touched and users[i].get("accountEnabled") is not False]
    for uid in added:  # the report caught up with users it did not list yet
        rows[uid] = f.registration(users[uid], registered=rng.random() < 0.3, is_admin=False)
    touched.update(added)
    ids["report_added"] = sorted(added)
    deleted = set(pick("deleted", user_ids))

    new_users: list[Obj] = []
    for category, guest in (("joined_members", False), ("joined_guests", True)):
        joined: list[str] = []
        for _ in range(quota(category)):
            user = f.user(guest=guest, created=f._created(1, 0))
            new_users.append(user)
            joined.append(user["id"])
            if rng.random() < 0.5:  # the other half waits for the next report refresh
                rows[user["id"]] = f.registration(user, registered=False, is_admin=False)
        ids[category] = sorted(joined)

    # Rebuild both lists once, keeping order (new objects at the end).  Changed objects are new
    # dicts, so a caller holding the previous objects still sees the previous state.
    tenant.collections[USERS] = [users[i] for i in user_ids if i not in deleted] + new_users
    known = set(row_ids)
    kept = [rows[i] for i in row_ids if i in rows and i not in deleted]
    kept += [r for i, r in rows.items() if i not in known and i not in deleted]
    if refresh_timestamps:
        stamp = _iso7(now, rng.randrange(10_000_000))
        kept = [{**r, "lastUpdatedDateTime": stamp} for r in kept]
    tenant.collections[USER_REGISTRATION_DETAILS] = kept
    tenant.touch()
    summary: dict[str, Any] = {
        "now": _iso(now),
        "seed": seed,
        "counts": {c: len(v) for c, v in ids.items()},
        "ids": ids,
    }
    from sim import scope_data  # the scope signals, when the tenant has them (sim/scope_data.py)

    if scope_data.has_scope_data(tenant):
        summary["scope"] = scope_data.evolve_scope(tenant, seed, now, ids)
    return summary


def _tenant_domain(tenant: Tenant) -> str:
    for u in tenant.users:
        upn = u.get("userPrincipalName") or ""
        if "@" in upn and "#EXT#" not in upn:
            return upn.rsplit("@", 1)[1]
    return "contoso.example"
