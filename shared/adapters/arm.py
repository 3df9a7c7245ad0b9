"""Azure Resource Manager reader: who holds Azure roles, from Azure Resource Graph.

One query, ``authorizationresources`` role assignments joined with their role definitions' names,
through ``POST /providers/Microsoft.ResourceGraph/resources`` (api-version 2022-10-01) with
``resultFormat: objectArray`` and ``$skipToken`` paging (at most 1,000 rows a page). The token is
for ``https://management.azure.com``; the identity needs **Reader** (an Azure role, not a Graph
permission) on the subscriptions or management groups to cover. Resource Graph answers only with
what the caller may read: without Reader anywhere the answer is an empty list, not an error, which
is why the run row counts the rows read (``AzureRoleAssignments``).

The HTTP stack is the Graph reader's (``JsonApiReader``): same retry handler for 429 with
``Retry-After``, same counting, same refusal to follow links to another host.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Sequence
from typing import Any, Final

from shared.adapters.graph import GraphDataError, JsonApiReader

ARM_SCOPE: Final = "https://management.azure.com/.default"
DEFAULT_ARM_URL: Final = "https://management.azure.com"
RESOURCE_GRAPH_PATH: Final = "/providers/Microsoft.ResourceGraph/resources"
RESOURCE_GRAPH_API: Final = "2022-10-01"
ARG_PAGE_MAX: Final = 1000

# Role assignments with the assignee's type and the role's name. principalType is User, Group,
# ServicePrincipal (or ForeignGroup/Device): groups are expanded through Graph by the caller.
ROLE_ASSIGNMENTS_QUERY: Final = """authorizationresources
| where type =~ 'microsoft.authorization/roleassignments'
| extend principalId = tostring(properties.principalId), principalType = tostring(properties.principalType),
    roleDefinitionId = tolower(tostring(properties.roleDefinitionId)), scope = tostring(properties.scope)
| join kind=leftouter (authorizationresources
    | where type =~ 'microsoft.authorization/roledefinitions'
    | extend roleDefinitionId = tolower(id), roleName = tostring(properties.roleName)
    | project roleDefinitionId, roleName) on roleDefinitionId
| project id, principalId, principalType, roleDefinitionId, roleName, scope"""


class ArmError(GraphDataError):
    """A Resource Graph answer that is not what the API documents."""


class ArmReader(JsonApiReader):
    API_NAME = "ARM"
    SCOPE = ARM_SCOPE

    def role_assignments(self, management_groups: Sequence[str] = ()) -> AsyncGenerator[list[dict[str, Any]], None]:
        """Azure role assignment rows, one page at a time. Without ``management_groups`` the query
        covers every subscription the identity can read; with them, those groups and below, and
        assignments inherited from above (``authorizationScopeFilter: AtScopeAboveAndBelow``)."""
        return self._query(ROLE_ASSIGNMENTS_QUERY, management_groups)

    async def _query(self, query: str, management_groups: Sequence[str]) -> AsyncGenerator[list[dict[str, Any]], None]:
        url = self._url(RESOURCE_GRAPH_PATH, [("api-version", RESOURCE_GRAPH_API)])
        endpoint = RESOURCE_GRAPH_PATH
        skip_token: str | None = None
        number = 0
        while True:
            number += 1
            options: dict[str, Any] = {
                "resultFormat": "objectArray",
                "$top": min(ARG_PAGE_MAX, self._page_size),
                "authorizationScopeFilter": "AtScopeAboveAndBelow",
            }
            if skip_token:
                options["$skipToken"] = skip_token
            body: dict[str, Any] = {"query": query, "options": options}
            if management_groups:
                body["managementGroups"] = list(management_groups)
            response = await self._fetch(url, endpoint, json.dumps(body).encode())
            if not 200 <= response.status_code < 300:
                raise self._error(response, endpoint, "POST")
            try:
                data = json.loads(response.content)
            except ValueError as exc:
                raise ArmError(
                    f"ARM POST {endpoint} page {number}: body is not JSON ({exc})", endpoint=endpoint
                ) from None
            rows = data.get("data") if isinstance(data, dict) else None
            if not isinstance(rows, list):
                raise ArmError(f"ARM POST {endpoint} page {number}: no 'data' list", endpoint=endpoint)
            self.stats.pages += 1
            yield rows
            token = data.get("$skipToken")
            if not isinstance(token, str) or not token or not rows:
                return
            skip_token = token
