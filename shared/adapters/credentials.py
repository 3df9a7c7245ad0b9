"""The one place that decides how the app authenticates to Microsoft Graph (and other Azure APIs).

Production runs with the Function App's managed identity: no secret exists to leak or rotate, and
the identity's Graph application permissions (``User.Read.All``, ``AuditLog.Read.All``) are the
whole grant.  ``DefaultAzureCredential`` is only for a developer's machine (Azure CLI, VS Code...),
and even there managed identity is excluded: it would probe the instance metadata address
169.254.169.254, which tests must never reach and which hangs on a laptop.  Keeping the choice in
one factory makes "which credential ran?" a configuration value (``mode``) rather than whatever
``DefaultAzureCredential`` happened to find.

The caller owns the credential and must ``await credential.close()`` (or use ``async with``).
"""

from __future__ import annotations

from azure.core.credentials_async import AsyncTokenCredential

MANAGED_IDENTITY = "managed_identity"
DEVELOPER = "developer"
MODES = (MANAGED_IDENTITY, DEVELOPER)


def build_credential(mode: str, client_id: str | None) -> AsyncTokenCredential:
    """Return the async credential for ``mode``.

    ``"managed_identity"`` (production): ``ManagedIdentityCredential``; ``client_id`` selects a
    user-assigned identity, None means the system-assigned one.  On App Service / Functions it
    uses ``IDENTITY_ENDPOINT`` + ``IDENTITY_HEADER``.

    ``"developer"`` (local development only): ``DefaultAzureCredential`` without its managed
    identity step; ``client_id`` is ignored.

    Raises ValueError for any other mode.
    """
    # Imported here: azure.identity.aio costs ~0.4 s and only the caller that authenticates pays.
    if mode == MANAGED_IDENTITY:
        from azure.identity.aio import ManagedIdentityCredential

        return ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()
    if mode == DEVELOPER:
        from azure.identity.aio import DefaultAzureCredential

        return DefaultAzureCredential(exclude_managed_identity_credential=True)
    raise ValueError(
        f"Unknown credential mode {mode!r}: expected one of {', '.join(repr(m) for m in MODES)} "
        "('managed_identity' in Azure, 'developer' only on a developer's machine)."
    )
