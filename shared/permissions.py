"""The Microsoft Graph application permissions the app needs, each with the reason: the one list.

The Bicep module infra/app/graph-permissions.bicep grants exactly these to the Function App's
managed identity, and README's manual commands list them; tests keep all three the same.
Least privilege: each permission is the smallest Microsoft documents for the call that needs it.
"""

from __future__ import annotations

from types import MappingProxyType

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"  # Microsoft Graph's application id

GRAPH_PERMISSIONS = MappingProxyType(
    {
        "AuditLog.Read.All": "the registration report, userRegistrationDetails (needs Entra ID P1/P2)",
        "User.Read.All": "GET /users: who exists, enabled, member or guest, mail addresses",
    }
)
