"""Point azure-identity's App Service managed identity at the tenant simulator, for any test.

A plain module, not a pytest plugin: fixture modules and tests import it freely.
"""

from __future__ import annotations

import pytest

from sim.graph_server import GraphSimulator

# Other managed-identity flavours azure-identity would pick before App Service, and the ones
# DefaultAzureCredential may try: none of them may leak in from the environment.
_OTHER_IDENTITY_ENV = (
    "IDENTITY_SERVER_THUMBPRINT",
    "IMDS_ENDPOINT",
    "MSI_ENDPOINT",
    "MSI_SECRET",
    "AZURE_POD_IDENTITY_AUTHORITY_HOST",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_SECRET",
)


def point_identity_at(sim: GraphSimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point App Service managed identity at the simulator's token endpoint, with no other
    identity flavour left in the environment (call before any credential exists)."""
    for name in _OTHER_IDENTITY_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IDENTITY_ENDPOINT", sim.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", sim.identity_header)
