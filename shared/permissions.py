"""The Microsoft Graph application permissions the app needs, each with the reason: the one list.

The Bicep module infra/app/graph-permissions.bicep grants exactly these to the Function App's
managed identity, and README's manual commands list them; tests keep all three the same.
Least privilege: each permission is the smallest Microsoft documents for the call that needs it.
Azure RBAC (SCOPE_AZURE_RBAC) needs no Graph permission: the identity needs the Azure **Reader**
role on the subscriptions or management groups Resource Graph should cover (infra/rbac-reader*.bicep).
"""

from __future__ import annotations

from types import MappingProxyType

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"  # Microsoft Graph's application id

GRAPH_PERMISSIONS = MappingProxyType(
    {
        "AuditLog.Read.All": (
            "the registration report, userRegistrationDetails; the sign-in logs, GET /auditLogs/signIns "
            "(v1.0 interactive, beta non-interactive); a user's signInActivity (all need Entra ID P1/P2)"
        ),
        "User.Read.All": "GET /users: who exists, enabled, member or guest, mail addresses (and signInActivity)",
        "RoleManagement.Read.Directory": (
            "Entra roles: roleAssignments (active, least privileged), roleDefinitions, and PIM's "
            "roleEligibilityScheduleInstances, which it also covers (RoleEligibilitySchedule.Read.Directory "
            "would be a second grant for nothing)"
        ),
        "GroupMember.Read.All": (
            "role-assignable groups and the transitive members of groups holding Entra or Azure roles, "
            "and of the exclusion group"
        ),
        "Policy.Read.All": "cross-tenant access policy default and partners: is a guest's home-tenant MFA trusted",
        "CrossTenantInformation.ReadBasic.All": (
            "findTenantInformationByDomainName: a guest's home tenant, only needed when a partner's MFA "
            "trust differs from the default"
        ),
        "UserAuthenticationMethod.Read.All": (
            "GET /users/{id}/authentication/methods: re-check a person's methods just before a reminder "
            "email, because the registration report lags a day or more; and the sync's fallback for "
            "in-scope users on tenants without Entra ID P1/P2"
        ),
    }
)
