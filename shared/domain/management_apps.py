"""The applications mandatory MFA is enforced on, as they appear in the sign-in logs: data, one place.

Source: Microsoft Learn, "Planning for mandatory multifactor authentication for Azure and other
admin portals" (concept-mandatory-multifactor-authentication), table "Applications": the Azure
portal, Microsoft Entra admin center and Microsoft Intune admin center share the Azure portal's
app id; Azure CLI, Azure PowerShell and the Azure mobile app have their own; infrastructure-as-code
tools "use Azure CLI or Azure PowerShell IDs". The Microsoft 365 admin center is listed without an
app id, so the logs cannot single it out.

Phase 2 is enforced at Azure Resource Manager itself. Any client that calls it (the Azure SDKs
through Visual Studio or VS Code credentials, Terraform with its own app registration...) shows up
with the *resource* "Windows Azure Service Management API" (797f4846-...). Reading those sign-ins
is optional (SIGNIN_INCLUDE_ARM_RESOURCE): they overlap with every CLI, PowerShell and portal
sign-in (those call ARM too), so they roughly double the volume read.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from shared.domain.scope import Phase


class Match(StrEnum):
    APP = "appId"  # the client application that signed in
    RESOURCE = "resourceId"  # the resource the token was for


@dataclass(frozen=True, slots=True)
class ManagementApp:
    tool: str  # the code used in ScopeFacts.tools and reasons (signin:<tool>)
    app_id: str
    name: str
    phases: tuple[Phase, ...]
    match: Match = Match.APP


AZURE_PORTAL = ManagementApp(
    "azure_portal",
    "c44b4083-3bb0-49c1-b47d-974e53cbdf3c",
    "Azure portal (also the Entra and Intune admin centers)",
    (Phase.PORTALS,),
)
AZURE_CLI = ManagementApp("azure_cli", "04b07795-8ddb-461a-bbee-02f9e1bf7b46", "Azure CLI", (Phase.ARM,))
AZURE_POWERSHELL = ManagementApp(
    "azure_powershell", "1950a258-227b-4e31-a9cf-717495945fc2", "Azure PowerShell", (Phase.ARM,)
)
AZURE_MOBILE_APP = ManagementApp(
    "azure_mobile_app", "0c1307d4-29d6-4389-a11c-5cbe7f65d7fa", "Azure mobile app", (Phase.ARM,)
)
AZURE_RESOURCE_MANAGER = ManagementApp(
    "azure_resource_manager",
    "797f4846-ba00-4fd7-ba43-dac1f8f63013",
    "Windows Azure Service Management API (any client calling Azure Resource Manager)",
    (Phase.ARM,),
    Match.RESOURCE,
)

# The client apps Microsoft lists; always read.
CLIENT_APPS: tuple[ManagementApp, ...] = (AZURE_PORTAL, AZURE_CLI, AZURE_POWERSHELL, AZURE_MOBILE_APP)
ALL_APPS: tuple[ManagementApp, ...] = (*CLIENT_APPS, AZURE_RESOURCE_MANAGER)
BY_TOOL = {app.tool: app for app in ALL_APPS}
_BY_CLIENT_ID = {app.app_id: app for app in CLIENT_APPS}


def app_of(app_id: object, resource_id: object) -> ManagementApp | None:
    """The management app a sign-in belongs to: by client app id first (a portal sign-in also
    targets ARM, and is phase 1), else by resource (any other client calling ARM: phase 2)."""
    if isinstance(app_id, str):
        app = _BY_CLIENT_ID.get(app_id.lower())
        if app is not None:
            return app
    if isinstance(resource_id, str) and resource_id.lower() == AZURE_RESOURCE_MANAGER.app_id:
        return AZURE_RESOURCE_MANAGER
    return None


def phases_of_tool(tool: str) -> tuple[Phase, ...]:
    app = BY_TOOL.get(tool)
    return app.phases if app else ()


# Entra built-in role templates of on-premises directory synchronization accounts.
DIRECTORY_SYNC_ROLE_TEMPLATES = frozenset(
    {
        "d29b2b05-8046-44ba-8758-1e26182fcf32",  # Directory Synchronization Accounts
        "a92aed5d-d78a-4d16-b381-09adb37eb3b0",  # On Premises Directory Sync Account
    }
)
