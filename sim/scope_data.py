"""Scope signals for a simulated tenant: sign-ins, roles, groups, RBAC, cross-tenant policy.

``add_scope_data(tenant, seed, now)`` adds to a generated (or replayed) tenant what the scope
signals read, in Graph's and Resource Graph's wire formats, consistent with the directory: admins
of the registration report hold Entra roles (active, PIM-eligible, or through a role-assignable
group), some members use the Azure portal, CLI, PowerShell or the mobile app, some guests use the
portal, a few accounts are there to be filtered out (two break-glass accounts in an exclusion
group, an Entra Connect sync account, a service account with only non-interactive sign-ins and no
mailbox, a role holder that never signed in). ``evolve_scope`` is the nightly part of
``sim.tenant.evolve``: new sign-ins (so last-seen moves), logs ageing out, people starting to use
the CLI, roles granted and removed.

A separate seeded RNG is used, so a tenant's users and report rows are the same with or without
scope data.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from sim.tenant import (
    AZURE_ROLE_ASSIGNMENTS,
    CROSS_TENANT_ACCESS_POLICY,
    GROUP_MEMBERS,
    GROUPS,
    ROLE_ASSIGNMENTS,
    ROLE_DEFINITIONS,
    ROLE_ELIGIBILITY,
    SIGN_INS,
    TENANT_INFORMATION,
    Obj,
    Tenant,
    _guid,
    _iso,
    _tenant_domain,
)

ARM_RESOURCE = ("797f4846-ba00-4fd7-ba43-dac1f8f63013", "Windows Azure Service Management API")
APPS = {
    "azure_portal": ("c44b4083-3bb0-49c1-b47d-974e53cbdf3c", "Azure Portal", "Browser"),
    "azure_cli": ("04b07795-8ddb-461a-bbee-02f9e1bf7b46", "Microsoft Azure CLI", "Mobile Apps and Desktop clients"),
    "azure_powershell": (
        "1950a258-227b-4e31-a9cf-717495945fc2",
        "Microsoft Azure PowerShell",
        "Mobile Apps and Desktop clients",
    ),
    "azure_mobile_app": ("0c1307d4-29d6-4389-a11c-5cbe7f65d7fa", "Azure Mobile App", "Mobile Apps and Desktop clients"),
    "office": ("4765445b-32c6-49b0-83e6-1d93765276ca", "OfficeHome", "Browser"),  # not a management app
}
# Built-in Entra roles: (template id = role definition id, display name).
GLOBAL_ADMIN = ("62e90394-69f5-4237-9190-012177145e10", "Global Administrator")
ROLES = (
    GLOBAL_ADMIN,
    ("e8611ab8-c189-46e8-94e1-60213ab1f814", "Privileged Role Administrator"),
    ("fe930be7-5e62-47db-91af-98c3a49a38b1", "User Administrator"),
    ("194ae4cb-b126-40b2-bd5b-6091b380977d", "Security Administrator"),
    ("f2ef992c-3afb-46b9-b7cf-a126ee74c451", "Global Reader"),
    ("3a2c62db-5318-420d-8d74-23affee5d9d5", "Intune Administrator"),
    ("729827e3-9c14-49f7-bb1b-9608f156bbb8", "Helpdesk Administrator"),
    ("29232cdf-9323-42fd-ade2-1d097af3e4de", "Exchange Administrator"),
    ("4a5d8f65-41da-4de4-8968-e035b65339cf", "Reports Reader"),
)
DIRECTORY_SYNC_ROLE = ("d29b2b05-8046-44ba-8758-1e26182fcf32", "Directory Synchronization Accounts")
HELPDESK_ROLE = ROLES[6]
# Azure built-in roles.
AZURE_ROLES = {
    "Owner": "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "Contributor": "b24988ac-6180-42a0-ab88-20f7382dd24c",
    "Reader": "acdd72a7-3385-48ef-bd42-f606fba81ae7",
}
# Home tenants of the generator's guest domains that are Entra tenants (the others are consumer mail).
HOME_TENANTS = {
    "fabrikam.example": "6f0b8c1e-5b1a-4f3e-9c62-2b7f1f6f0a01",
    "northwind.example": "6f0b8c1e-5b1a-4f3e-9c62-2b7f1f6f0a02",
    "adatum.example": "6f0b8c1e-5b1a-4f3e-9c62-2b7f1f6f0a03",
    "tailspin.example": "6f0b8c1e-5b1a-4f3e-9c62-2b7f1f6f0a04",
    "wingtip.example": "6f0b8c1e-5b1a-4f3e-9c62-2b7f1f6f0a05",
}
TRUSTED_PARTNER = "fabrikam.example"  # its guests' MFA is accepted (the default is not)
RETENTION_DAYS = 30  # what the sign-in logs keep (Entra ID P1/P2)
_USER_TYPE = "#microsoft.graph.user"
_GROUP_TYPE = "#microsoft.graph.group"


def _rng(seed: int) -> random.Random:
    return random.Random(seed * 7919 + 104729)


def _at(now: datetime, rng: random.Random, max_days: float, min_days: float = 0.0) -> str:
    seconds = int((min_days + rng.random() * (max_days - min_days)) * 86400)
    return _iso(now - timedelta(seconds=seconds))


def _home_tenant(user: Obj) -> str | None:
    upn = str(user.get("userPrincipalName") or "")
    if "#EXT#" not in upn:
        return None
    domain = upn.split("#EXT#")[0].rsplit("_", 1)[-1].lower()
    return HOME_TENANTS.get(domain)


def sign_in(
    rng: random.Random,
    user: Obj,
    tool: str,
    at: str,
    *,
    interactive: bool = True,
    mfa: bool = True,
    error: int = 0,
) -> Obj:
    """One sign-in in Graph's wire format (beta's superset; v1.0 serves its own properties)."""
    app_id, app_name, client = APPS[tool]
    guest = user.get("userType") == "Guest"
    return {
        "id": _guid(rng),
        "createdDateTime": at,
        "userDisplayName": user.get("displayName"),
        "userPrincipalName": user.get("userPrincipalName"),
        "userId": user["id"],
        "appId": app_id,
        "appDisplayName": app_name,
        "ipAddress": f"203.0.113.{int(rng.random() * 250) + 1}",
        "clientAppUsed": client,
        "correlationId": _guid(rng),
        "conditionalAccessStatus": "notApplied",
        "isInteractive": interactive,
        "riskDetail": "none",
        "riskLevelAggregated": "none",
        "riskLevelDuringSignIn": "none",
        "riskState": "none",
        "riskEventTypes_v2": [],
        "resourceDisplayName": ARM_RESOURCE[1] if tool != "office" else "Office 365 Exchange Online",
        "resourceId": ARM_RESOURCE[0] if tool != "office" else "00000002-0000-0ff1-ce00-000000000000",
        "status": {
            "errorCode": error,
            "failureReason": None if error == 0 else "Invalid username or password.",
            "additionalDetails": None,
        },
        "authenticationRequirement": "multiFactorAuthentication" if mfa else "singleFactorAuthentication",
        "signInEventTypes": ["interactiveUser" if interactive else "nonInteractiveUser"],
        "userType": "guest" if guest else "member",
        "homeTenantId": _home_tenant(user) if guest else None,
        "crossTenantAccessType": "b2bCollaboration" if guest else "none",
    }


def _member(tenant: Tenant, rng: random.Random, local: str, display: str, *, mail: bool, created: str) -> Obj:
    domain = _tenant_domain(tenant)
    upn = f"{local}@{domain}"
    user: Obj = {
        "id": _guid(rng),
        "userPrincipalName": upn,
        "displayName": display,
        "mail": upn if mail else None,
        "otherMails": [],
        "userType": "Member",
        "accountEnabled": True,
        "createdDateTime": created,
        "externalUserState": None,
        "onPremisesSyncEnabled": None,
        "identities": [{"signInType": "userPrincipalName", "issuer": domain, "issuerAssignedId": upn}],
    }
    return user


def _row(user: Obj, *, admin: bool, registered: bool, at: str) -> Obj:
    methods = ["microsoftAuthenticatorPush"] if registered else []
    return {
        "id": user["id"],
        "userPrincipalName": user["userPrincipalName"],
        "userDisplayName": user["displayName"],
        "userType": "member",
        "isAdmin": admin,
        "isSsprRegistered": False,
        "isSsprEnabled": False,
        "isSsprCapable": False,
        "isMfaRegistered": registered,
        "isMfaCapable": registered,
        "isPasswordlessCapable": False,
        "lastUpdatedDateTime": at,
        "methodsRegistered": methods,
        "isSystemPreferredAuthenticationMethodEnabled": True,
        "systemPreferredAuthenticationMethods": ["push"] if registered else [],
        "userPreferredMethodForSecondaryAuthentication": "push" if registered else "none",
    }


def _assignment(rng: random.Random, principal: str, role_id: str) -> Obj:
    return {
        "id": _guid(rng),
        "principalId": principal,
        "roleDefinitionId": role_id,
        "directoryScopeId": "/",
        "appScopeId": None,
        "resourceScope": "/",
    }


def _eligibility(rng: random.Random, principal: str, role_id: str, now: datetime) -> Obj:
    return {
        "id": _guid(rng),
        "principalId": principal,
        "roleDefinitionId": role_id,
        "directoryScopeId": "/",
        "appScopeId": None,
        "startDateTime": _iso(now - timedelta(days=200)),
        "endDateTime": None,
        "memberType": "Direct",
        "roleEligibilityScheduleId": _guid(rng),
    }


def _azure_row(rng: random.Random, principal: str, kind: str, role: str, scope: str) -> Obj:
    sub = scope.split("/resourceGroups/")[0]
    return {
        "id": f"{scope}/providers/Microsoft.Authorization/roleAssignments/{_guid(rng)}",
        "principalId": principal,
        "principalType": kind,
        "roleDefinitionId": f"{sub}/providers/Microsoft.Authorization/roleDefinitions/{AZURE_ROLES[role]}",
        "roleName": role,
        "scope": scope,
    }


def _group(rng: random.Random, name: str, *, assignable: bool) -> Obj:
    return {
        "id": _guid(rng),
        "displayName": name,
        "description": name,
        "isAssignableToRole": assignable,
        "securityEnabled": True,
        "mailEnabled": False,
        "groupTypes": [],
    }


def add_scope_data(tenant: Tenant, seed: int, now: datetime | None = None) -> dict[str, Any]:
    """Add the scope signals' data to ``tenant`` (in place), as of ``now`` (sign-ins fall in the 30
    days before it). Returns who plays which part, for tests and the demo:
    ``{"exclusionGroupId", "breakGlass", "syncAccount", "serviceAccount", "neverSignedIn",
    "cliUsers", "portalUsers", "guestSignIns", "roleHolders", "rbacUsers", "trustedGuests"}``."""
    rng = _rng(seed)
    now = now or datetime.now(UTC)
    old = _iso(now - timedelta(days=900))
    refreshed = _iso(now - timedelta(hours=20)).replace("Z", ".0000000Z")
    info: dict[str, Any] = {
        "breakGlass": [],
        "cliUsers": [],
        "portalUsers": [],
        "guestSignIns": [],
        "roleHolders": [],
        "rbacUsers": [],
        "trustedGuests": [],
    }

    # Accounts that the noise filters are for.
    specials: list[tuple[Obj, bool, bool]] = []
    for n in (1, 2):
        bg = _member(tenant, rng, f"breakglass{n}", f"Break Glass {n}", mail=False, created=old)
        specials.append((bg, True, True))
        info["breakGlass"].append(bg["id"])
    sync = _member(
        tenant,
        rng,
        f"Sync_SRV01_{_guid(rng).replace('-', '')[:12]}",
        "On-Premises Directory Synchronization Service Account",
        mail=False,
        created=old,
    )
    svc = _member(tenant, rng, "svc-deploy", "Deployment service account", mail=False, created=old)
    never = _member(tenant, rng, "shared-reports", "Shared reports mailbox", mail=True, created=old)
    never["signInActivity"] = {
        "lastSignInDateTime": None,
        "lastSignInRequestId": None,
        "lastNonInteractiveSignInDateTime": None,
        "lastNonInteractiveSignInRequestId": None,
        "lastSuccessfulSignInDateTime": None,
        "lastSuccessfulSignInRequestId": None,
    }
    specials += [(sync, False, False), (svc, False, False), (never, True, False)]
    for user, admin, registered in specials:
        tenant.add_user(user, _row(user, admin=admin, registered=registered, at=refreshed))
    info.update(syncAccount=sync["id"], serviceAccount=svc["id"], neverSignedIn=never["id"])

    definitions = [
        {"id": tid, "displayName": name, "templateId": tid, "isBuiltIn": True, "isEnabled": True}
        for tid, name in (*ROLES, DIRECTORY_SYNC_ROLE)
    ]
    break_glass = _group(rng, "Break glass accounts", assignable=False)
    helpdesk = _group(rng, "Tier-1 Helpdesk Admins", assignable=True)
    platform = _group(rng, "Azure Platform Team", assignable=False)
    contractors = _group(rng, "Platform Contractors", assignable=False)
    members: dict[str, list[Obj]] = {g["id"]: [] for g in (break_glass, helpdesk, platform, contractors)}
    members[break_glass["id"]] = [{"@odata.type": _USER_TYPE, "id": i} for i in info["breakGlass"]]
    members[platform["id"]].append({"@odata.type": _GROUP_TYPE, "id": contractors["id"]})  # nested

    assignments: list[Obj] = [_assignment(rng, i, GLOBAL_ADMIN[0]) for i in info["breakGlass"]]
    assignments += [
        _assignment(rng, sync["id"], DIRECTORY_SYNC_ROLE[0]),
        _assignment(rng, helpdesk["id"], HELPDESK_ROLE[0]),
    ]
    assignments.append(_assignment(rng, never["id"], ROLES[8][0]))
    eligible: list[Obj] = [_eligibility(rng, info["breakGlass"][1], ROLES[1][0], now)]
    subscription = f"/subscriptions/{_guid(rng)}"
    azure: list[Obj] = [
        _azure_row(rng, svc["id"], "User", "Contributor", subscription),
        _azure_row(rng, platform["id"], "Group", "Contributor", f"{subscription}/resourceGroups/platform"),
    ]
    sign_ins: list[Obj] = []
    for _ in range(12):  # the service account: scripted, token refreshes only
        sign_ins.append(sign_in(rng, svc, "azure_powershell", _at(now, rng, 29), interactive=False, mfa=False))

    rows = {r["id"]: r for r in tenant.user_registration_details if isinstance(r, dict) and "id" in r}
    special_ids = {u["id"] for u, _, _ in specials}
    for user in list(tenant.users):
        uid = user.get("id")
        if not isinstance(uid, str) or uid in special_ids or user.get("accountEnabled") is False:
            continue
        row = rows.get(uid)
        registered = bool(row and row.get("isMfaRegistered"))
        guest = user.get("userType") == "Guest"
        if row and row.get("isAdmin"):
            info["roleHolders"].append(uid)
            roll = rng.random()
            role_id = (GLOBAL_ADMIN if rng.random() < 0.15 else ROLES[1 + int(rng.random() * (len(ROLES) - 1))])[0]
            if roll < 0.6:
                assignments.append(_assignment(rng, uid, role_id))
            elif roll < 0.85:
                eligible.append(_eligibility(rng, uid, role_id, now))
            else:
                members[helpdesk["id"]].append({"@odata.type": _USER_TYPE, "id": uid})
            if rng.random() < 0.8:
                for _ in range(1 + int(rng.random() * 3)):
                    mfa = registered and rng.random() < 0.95
                    sign_ins.append(sign_in(rng, user, "azure_portal", _at(now, rng, 29), mfa=mfa))
            if rng.random() < 0.4:
                tool = "azure_cli" if rng.random() < 0.6 else "azure_powershell"
                sign_ins.append(sign_in(rng, user, tool, _at(now, rng, 29), mfa=registered))
                for _ in range(int(rng.random() * 4)):
                    sign_ins.append(sign_in(rng, user, tool, _at(now, rng, 29), interactive=False, mfa=registered))
            if rng.random() < 0.5:
                role = "Owner" if rng.random() < 0.3 else "Contributor"
                azure.append(_azure_row(rng, uid, "User", role, subscription))
                info["rbacUsers"].append(uid)
            continue
        roll = rng.random()
        if guest:
            if roll < 0.1:
                sign_ins.append(sign_in(rng, user, "azure_portal", _at(now, rng, 29), mfa=registered))
                info["guestSignIns"].append(uid)
                if rng.random() < 0.3:
                    members[contractors["id"]].append({"@odata.type": _USER_TYPE, "id": uid})
            if _home_tenant(user) == HOME_TENANTS[TRUSTED_PARTNER]:
                info["trustedGuests"].append(uid)
            continue
        if roll < 0.04:  # developers: the CLI or PowerShell, interactive then refreshes
            tool = "azure_cli" if rng.random() < 0.7 else "azure_powershell"
            mfa = registered or rng.random() < 0.2
            sign_ins.append(sign_in(rng, user, tool, _at(now, rng, 29), mfa=mfa))
            for _ in range(1 + int(rng.random() * 3)):
                sign_ins.append(sign_in(rng, user, tool, _at(now, rng, 29), interactive=False, mfa=mfa))
            info["cliUsers"].append(uid)
            if rng.random() < 0.5:
                members[platform["id"]].append({"@odata.type": _USER_TYPE, "id": uid})
        elif roll < 0.06:
            sign_ins.append(sign_in(rng, user, "azure_mobile_app", _at(now, rng, 29), mfa=registered))
            info["cliUsers"].append(uid)
        elif roll < 0.09:
            error = 50126 if rng.random() < 0.2 else 0
            sign_ins.append(sign_in(rng, user, "azure_portal", _at(now, rng, 29), mfa=registered, error=error))
            info["portalUsers"].append(uid)
        elif roll < 0.3:  # everyone else who signs in: not a management app, never read
            sign_ins.append(sign_in(rng, user, "office", _at(now, rng, 29), mfa=registered))

    if not members[helpdesk["id"]] and info["roleHolders"]:  # the group-based admin path always exists
        members[helpdesk["id"]].append({"@odata.type": _USER_TYPE, "id": info["roleHolders"][0]})
    tenant.collections[SIGN_INS] = sorted(sign_ins, key=lambda s: s["createdDateTime"], reverse=True)
    tenant.collections[ROLE_DEFINITIONS] = definitions
    tenant.collections[ROLE_ASSIGNMENTS] = assignments
    tenant.collections[ROLE_ELIGIBILITY] = eligible
    tenant.collections[GROUPS] = [break_glass, helpdesk, platform, contractors]
    tenant.collections[AZURE_ROLE_ASSIGNMENTS] = azure
    tenant.extra[GROUP_MEMBERS] = members
    trust = {"isMfaAccepted": False, "isCompliantDeviceAccepted": False, "isHybridAzureADJoinedDeviceAccepted": False}
    tenant.extra[CROSS_TENANT_ACCESS_POLICY] = {
        "default": {"id": "default", "isServiceDefault": True, "inboundTrust": trust},
        "partners": [
            {"tenantId": HOME_TENANTS[TRUSTED_PARTNER], "inboundTrust": {**trust, "isMfaAccepted": True}},
            {"tenantId": HOME_TENANTS["northwind.example"], "inboundTrust": None},
        ],
    }
    tenant.extra[TENANT_INFORMATION] = {
        domain: {
            "tenantId": tid,
            "displayName": domain.split(".")[0].capitalize(),
            "defaultDomainName": domain,
            "federationBrandName": None,
        }
        for domain, tid in HOME_TENANTS.items()
    }
    tenant.touch()
    info["exclusionGroupId"] = break_glass["id"]
    return info


def has_scope_data(tenant: Tenant) -> bool:
    return bool(tenant.collections.get(ROLE_DEFINITIONS))


def evolve_scope(tenant: Tenant, seed: int, now: datetime, ids: dict[str, list[str]]) -> dict[str, list[str]]:
    """One night of the signals, after ``evolve`` changed the directory (``ids`` says how)."""
    rng = _rng(seed + 1)
    users = {u["id"]: u for u in tenant.users if isinstance(u, dict) and "id" in u}
    gone = set(ids.get("deleted", []))
    added, removed = set(ids.get("admin_added", [])), set(ids.get("admin_removed", []))
    horizon = _iso(now - timedelta(days=RETENTION_DAYS))
    old_sign_ins = [s for s in tenant.collection(SIGN_INS) if str(s.get("createdDateTime", "")) >= horizon]

    # Yesterday's sign-ins: about half the people who used a management app use it again.
    latest: dict[str, Obj] = {}
    for s in old_sign_ins:
        if s.get("appId") != APPS["office"][0] and s.get("userId") in users and s.get("isInteractive"):
            latest.setdefault(str(s["userId"]), s)
    signed_in: list[str] = []
    fresh: list[Obj] = []
    for uid, last in sorted(latest.items()):
        if uid in gone or rng.random() >= 0.5:
            continue
        tool = next(t for t, (app, _, _) in APPS.items() if app == last.get("appId"))
        mfa = last.get("authenticationRequirement") == "multiFactorAuthentication"
        fresh.append(sign_in(rng, users[uid], tool, _at(now, rng, 0.5), mfa=mfa))
        signed_in.append(uid)

    # A few members start using the CLI: they enter scope of phase 2.
    rows = {r["id"]: r for r in tenant.user_registration_details if isinstance(r, dict) and "id" in r}
    quiet = [
        uid
        for uid, u in users.items()
        if u.get("userType") == "Member"
        and u.get("accountEnabled") is not False
        and uid not in latest
        and not (rows.get(uid) or {}).get("isAdmin")
    ]
    started = sorted(rng.sample(quiet, min(len(quiet), 1 + int(rng.random() * 3)))) if quiet else []
    for uid in started:
        fresh.append(sign_in(rng, users[uid], "azure_cli", _at(now, rng, 0.5), mfa=False))

    # The directory's role changes follow the report's admin changes.
    assignments = [a for a in tenant.collection(ROLE_ASSIGNMENTS) if a.get("principalId") not in gone | removed]
    assignments += [_assignment(rng, uid, ROLES[2][0]) for uid in sorted(added)]
    eligible = [e for e in tenant.collection(ROLE_ELIGIBILITY) if e.get("principalId") not in gone | removed]
    members = tenant.extra.get(GROUP_MEMBERS)
    if isinstance(members, dict):
        for group_id, listed in members.items():
            members[group_id] = [m for m in listed if m.get("id") not in gone | removed]

    tenant.collections[SIGN_INS] = sorted(old_sign_ins + fresh, key=lambda s: s["createdDateTime"], reverse=True)
    tenant.collections[ROLE_ASSIGNMENTS] = assignments
    tenant.collections[ROLE_ELIGIBILITY] = eligible
    tenant.touch()
    return {
        "signed_in": signed_in,
        "started_cli": started,
        "roles_added": sorted(added),
        "roles_removed": sorted(removed),
    }
