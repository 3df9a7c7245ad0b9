"""The tenant simulator's endpoints for the scope signals (used by ``sim.graph_server``).

Graph (v1.0 unless said):

* ``/auditLogs/signIns`` (the ``signIns`` collection; v1.0 serves the interactive ones with v1.0's
  properties, beta serves every kind and filters on ``signInEventTypes/any(t: t eq '...')``;
  without that filter beta too answers with interactive sign-ins only; P1/P2 or 403).
* ``/roleManagement/directory/roleAssignments``, ``.../roleEligibilityScheduleInstances``,
  ``.../roleDefinitions``, ``/groups`` (collections, ``$filter=isAssignableToRole eq true``).
* ``/groups/{id}/members`` and ``/groups/{id}/transitiveMembers`` (from ``groupMembers``; nested
  groups are flattened, and listed themselves, as Graph does).
* ``/policies/crossTenantAccessPolicy/default`` and ``/partners`` (from ``crossTenantAccessPolicy``).
* ``/tenantRelationships/findTenantInformationByDomainName(domainName='...')`` (from
  ``tenantInformation``; 404 for a domain no tenant owns).
* ``/users/{id}?$select=signInActivity``: the user's ``signInActivity`` if the tenant file has one,
  else one made up from ``createdDateTime`` (the user signed in when created); P1/P2 or 403.

Azure Resource Manager, on the same server (token audience ``https://management.azure.com``):
``POST /providers/Microsoft.ResourceGraph/resources?api-version=...`` answers any query over
``authorizationresources`` with the ``azureRoleAssignments`` rows, paged with ``$skipToken``.
``sim.arm_reader = False`` plays an identity without Reader: Resource Graph then answers with no
rows, as the real service does.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from sim.tenant import (
    AZURE_ROLE_ASSIGNMENTS,
    CROSS_TENANT_ACCESS_POLICY,
    GROUP_MEMBERS,
    GROUPS,
    TENANT_INFORMATION,
    CollectionSpec,
)

if TYPE_CHECKING:
    from sim.graph_server import GraphSimulator, _Response

ARM_PREFIX = "/providers/"
ARM_RESOURCE = "https://management.azure.com"
RESOURCE_GRAPH_PATH = "/providers/Microsoft.ResourceGraph/resources"
GROUP_READ_ROLES = frozenset({"GroupMember.Read.All", "Group.Read.All", "Directory.Read.All"})
POLICY_READ_ROLES = frozenset({"Policy.Read.All", "Policy.ReadWrite.CrossTenantAccess"})
TENANT_INFO_ROLES = frozenset({"CrossTenantInformation.ReadBasic.All"})
_DOMAIN_CALL = re.compile(r"^tenantRelationships/findTenantInformationByDomainName\(domainName='((?:[^']|'')*)'\)$")
_MEMBER_PROPERTIES = frozenset({"id", "@odata.type", "displayName", "userPrincipalName", "mail"})
_PARTNER_PROPERTIES = frozenset(
    {
        "tenantId",
        "inboundTrust",
        "isServiceProvider",
        "isInMultiTenantOrganization",
        "b2bCollaborationInbound",
        "b2bCollaborationOutbound",
        "b2bDirectConnectInbound",
        "b2bDirectConnectOutbound",
        "automaticUserConsentSettings",
        "tenantRestrictions",
    }
)


def _gs() -> Any:
    from sim import graph_server  # imported late: graph_server imports this module

    return graph_server


def _bad(code: str, message: str, status: int = 400) -> Exception:
    return _gs()._BadQuery(code, message, status)


def _require(sim: GraphSimulator, roles: frozenset[str], least: str) -> None:
    if not sim.permissions & roles:
        raise _bad(
            "Authorization_RequestDenied", f"Insufficient privileges to complete the operation. Requires {least}.", 403
        )


def _json(status: int, body: object) -> _Response:
    return _gs()._Response(status, json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode())


# --- sign-ins --------------------------------------------------------------------------------


def sign_in_view(objects: list[dict[str, Any]], filter_text: str, version: str) -> list[dict[str, Any]]:
    """v1.0 lists interactive sign-ins only; beta too, unless the filter asks for other kinds."""
    if version != "v1.0" and "signInEventTypes" in filter_text:
        return objects
    return [o for o in objects if isinstance(o, dict) and o.get("isInteractive") is not False]


def check_sign_in_activity(sim: GraphSimulator) -> None:
    if "AuditLog.Read.All" not in sim.permissions:
        raise _bad(
            "Authentication_MSGraphPermissionMissing",
            "Calling principal does not have required MSGraph permissions AuditLog.Read.All",
            403,
        )
    if not sim.premium:
        raise _bad(
            "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
            "Neither tenant is B2C or tenant doesn't have premium license",
            403,
        )


def sign_in_activity(user: dict[str, Any]) -> dict[str, Any]:
    if isinstance(user.get("signInActivity"), dict):
        return dict(user["signInActivity"])
    created = user.get("createdDateTime")
    return {
        "lastSignInDateTime": created,
        "lastSignInRequestId": None,
        "lastNonInteractiveSignInDateTime": None,
        "lastNonInteractiveSignInRequestId": None,
        "lastSuccessfulSignInDateTime": created,
        "lastSuccessfulSignInRequestId": None,
    }


# --- lists that are not plain collections ---------------------------------------------------------


def _page(
    sim: GraphSimulator,
    name: str,
    objects: list[dict[str, Any]],
    query: dict[str, str],
    path: str,
    version: str,
    properties: frozenset[str],
) -> _Response:
    gs = _gs()
    spec = CollectionSpec(name=name, path=path, entity_type=name, properties=properties)
    select = gs._parse_select(query, spec)
    size = sim.page_size
    if "$top" in query:
        try:
            size = int(query["$top"])
        except ValueError:
            size = -1
        if not 1 <= size <= 999:
            raise _bad("Request_BadRequest", f"Invalid page size specified: '{query['$top']}'.")
    offset = gs._decode_skiptoken(query.get("$skiptoken"), spec) if "$skiptoken" in query else 0
    end = min(offset + size, len(objects))
    keep = None if select is None else set(select) | {"@odata.type"}
    view = [o if keep is None else {k: v for k, v in o.items() if k in keep} for o in objects[offset:end]]
    base = f"{sim.root_url}/{version}"
    body: dict[str, Any] = {"@odata.context": f"{base}/$metadata#{path}"}
    if end < len(objects):
        params = {k: v for k, v in query.items() if k != "$skiptoken"}
        params["$skiptoken"] = gs._encode_skiptoken(spec, end)
        body["@odata.nextLink"] = f"{base}/{path}?" + "&".join(
            f"{k}={quote(v, safe=gs._QUERY_SAFE)}" for k, v in params.items()
        )
    body["value"] = view
    return _json(200, body)


def _members(sim: GraphSimulator, group_id: str, transitive: bool) -> list[dict[str, Any]]:
    listing = sim.tenant.extra.get(GROUP_MEMBERS)
    listing = listing if isinstance(listing, dict) else {}
    groups = {g.get("id"): g for g in sim.tenant.collections.get(GROUPS, []) if isinstance(g, dict)}
    if group_id not in groups and group_id not in listing:
        raise _bad(
            "Request_ResourceNotFound",
            f"Resource '{group_id}' does not exist or one of its queried reference-property objects are not present.",
            404,
        )
    found: dict[str, dict[str, Any]] = {}
    pending, visited = [group_id], set()
    while pending:
        current = pending.pop(0)
        if current in visited:
            continue
        visited.add(current)
        for member in listing.get(current, []):
            if not isinstance(member, dict) or "id" not in member:
                continue
            kind = str(member.get("@odata.type") or "#microsoft.graph.user")
            obj: dict[str, Any] = {"@odata.type": kind, "id": member["id"]}
            user = sim.tenant.user(member["id"]) if kind.endswith(".user") else None
            if user is not None:
                obj.update(displayName=user.get("displayName"), userPrincipalName=user.get("userPrincipalName"))
            found.setdefault(member["id"], obj)
            if transitive and kind.endswith(".group"):
                pending.append(member["id"])
    return list(found.values())


def route(sim: GraphSimulator, version: str, relative: str, query: dict[str, str]) -> _Response | None:
    """The scope endpoints that are not plain collections; None for any other path."""
    parts = relative.split("/")
    if len(parts) == 3 and parts[0] == "groups" and parts[2] in ("members", "transitiveMembers"):
        _require(sim, GROUP_READ_ROLES, "GroupMember.Read.All")
        members = _members(sim, parts[1], parts[2] == "transitiveMembers")
        return _page(sim, f"{relative}", members, query, relative, version, _MEMBER_PROPERTIES)
    if relative.startswith("policies/crossTenantAccessPolicy/"):
        _require(sim, POLICY_READ_ROLES, "Policy.Read.All")
        policy = sim.tenant.extra.get(CROSS_TENANT_ACCESS_POLICY)
        policy = policy if isinstance(policy, dict) else {}
        if relative == "policies/crossTenantAccessPolicy/default":
            default = policy.get("default") or {
                "id": "default",
                "isServiceDefault": True,
                "inboundTrust": {"isMfaAccepted": False, "isCompliantDeviceAccepted": False},
            }
            return _json(
                200,
                {
                    "@odata.context": f"{sim.root_url}/{version}/$metadata#policies/crossTenantAccessPolicy/default"
                    "/$entity",
                    **default,
                },
            )
        if relative == "policies/crossTenantAccessPolicy/partners":
            partners = [p for p in policy.get("partners", []) if isinstance(p, dict)]
            return _page(sim, "partners", partners, query, relative, version, _PARTNER_PROPERTIES)
        return None
    match = _DOMAIN_CALL.match(relative)
    if match:
        _require(sim, TENANT_INFO_ROLES, "CrossTenantInformation.ReadBasic.All")
        domain = match.group(1).replace("''", "'").lower()
        known = sim.tenant.extra.get(TENANT_INFORMATION)
        info = known.get(domain) if isinstance(known, dict) else None
        if not isinstance(info, dict):
            raise _bad("Request_ResourceNotFound", f"Domain '{domain}' was not found.", 404)
        return _json(
            200, {"@odata.context": f"{sim.root_url}/{version}/$metadata#microsoft.graph.tenantInformation", **info}
        )
    return None


# --- Azure Resource Graph ---------------------------------------------------------------------------


def _skip_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode()


def _offset(token: object) -> int:
    try:
        data = json.loads(base64.urlsafe_b64decode(str(token)))
        value = int(data["o"])
        if value < 0:
            raise ValueError
        return value
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise _bad("InvalidSkipToken", "The $skipToken is not valid.") from None


def arm(
    sim: GraphSimulator, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
) -> _Response:
    """``POST /providers/Microsoft.ResourceGraph/resources`` over ``authorizationresources``."""
    problem = sim.check_token_for(headers.get("authorization"), ARM_RESOURCE)
    if problem is not None:
        raise _bad("InvalidAuthenticationToken", problem, 401)
    if path.rstrip("/") != RESOURCE_GRAPH_PATH or method != "POST":
        raise _bad("InvalidResourceType", f"The resource type could not be found for {method} {path}.", 404)
    if not query.get("api-version"):
        raise _bad("MissingApiVersionParameter", "The api-version query parameter (?api-version=) is required.")
    try:
        request = json.loads(body or b"{}")
    except ValueError:
        raise _bad("InvalidRequestContent", "The request content was invalid and could not be deserialized.") from None
    text = request.get("query") if isinstance(request, dict) else None
    if not isinstance(text, str) or "authorizationresources" not in text.lower():
        raise _bad("BadRequest", "The simulator answers queries over authorizationresources only.")
    options = request.get("options") if isinstance(request.get("options"), dict) else {}
    top = options.get("$top", 1000)
    if not isinstance(top, int) or not 1 <= top <= 1000:
        raise _bad("BadRequest", "$top must be between 1 and 1000.")
    offset = _offset(options["$skipToken"]) if options.get("$skipToken") else 0
    rows = sim.tenant.collections.get(AZURE_ROLE_ASSIGNMENTS, []) if getattr(sim, "arm_reader", True) else []
    end = min(offset + top, len(rows))
    answer: dict[str, Any] = {
        "totalRecords": len(rows),
        "count": end - offset,
        "data": rows[offset:end],
        "facets": [],
        "resultTruncated": "false",
    }
    if end < len(rows):
        answer["$skipToken"] = _skip_token(end)
    response = _json(200, answer)
    response.content_type = "application/json; charset=utf-8"
    return response
