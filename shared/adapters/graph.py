"""Async Microsoft Graph reader for the nightly sync.

Requests go through the real msgraph stack: ``msgraph_core``'s request adapter with
``AzureIdentityAuthenticationProvider`` (token for ``https://graph.microsoft.com/.default``, sent
only to the base URL's host) and ``GraphClientFactory``'s default middleware (retry on 429/503/504
honouring ``Retry-After``, redirects, telemetry).  What we skip is kiota's model deserialisation,
which is the slow part on a 100,000-user tenant: each page is taken as raw bytes and parsed with
``json.loads``, and ``@odata.nextLink`` (absolute) is followed until absent.  Exactly one page of
Graph objects is held at a time.

Counting: a middleware placed after the retry handler (innermost) sees every HTTP response,
including the ones the retry handler retries, and updates :class:`GraphStats`.

Connection failures (a dropped connection, a timeout) are not retried by msgraph; the reader
retries the page itself, ``max_retries`` times, then raises :class:`GraphError`.

Besides the directory and the registration report, the reader fetches the scope signals, one
method per signal (sign-ins to the management apps, Entra role assignments and eligibility, group
members, the cross-tenant access policy, a guest's home tenant) and the per-user calls of the
licence fallback (a user's authentication methods, sign-in activity). Sign-ins are filtered on the
server by app id and time and only the selected properties come back; the caller folds each page
into per-user tallies, so no more than one page of sign-ins is ever held.

Tokens are never logged: only endpoint paths, status codes, Graph error codes and request ids.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, Protocol, cast
from urllib.parse import quote, urlsplit

import httpx
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ClientAuthenticationError
from kiota_abstractions.method import Method
from kiota_abstractions.request_information import RequestInformation
from kiota_abstractions.response_handler import ResponseHandler
from kiota_abstractions.serialization import ParsableFactory
from kiota_http.kiota_client_factory import KiotaClientFactory
from kiota_http.middleware import BaseMiddleware
from kiota_http.middleware.options import ResponseHandlerOption, RetryHandlerOption
from msgraph_core import AzureIdentityAuthenticationProvider, BaseGraphRequestAdapter, GraphClientFactory
from msgraph_core.middleware import GraphTelemetryHandler

from shared.domain.management_apps import ManagementApp
from shared.domain.steady import REPORT, USERS, PagePrints

logger = logging.getLogger(__name__)

GRAPH_SCOPE: Final = "https://graph.microsoft.com/.default"
DEFAULT_BASE_URL: Final = "https://graph.microsoft.com/v1.0"
LOCAL_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})
MAX_PAGE_SIZE: Final = 999
MAX_RETRIES: Final = RetryHandlerOption.MAX_MAX_RETRIES  # 10, kiota's own ceiling

USERS_PATH: Final = "/users"
REGISTRATION_PATH: Final = "/reports/authenticationMethods/userRegistrationDetails"
# Per user, for the nudge job's re-check before a reminder goes out (the report lags a day or more).
METHODS_PATH: Final = "/users/{id}/authentication/methods"

USER_FIELDS: tuple[str, ...] = (
    "id",
    "userPrincipalName",
    "displayName",
    "mail",
    "otherMails",
    "userType",
    "accountEnabled",
    "createdDateTime",
    "externalUserState",
    "onPremisesSyncEnabled",
    "identities",
)
# v1.0 names.  `defaultMfaMethod` exists only in beta; v1.0 has the two properties below instead
# (values push/oath/voiceMobile/voiceAlternateMobile/voiceOffice/sms/none, sometimes "").
REGISTRATION_FIELDS: tuple[str, ...] = (
    "id",
    "userPrincipalName",
    "userType",
    "isAdmin",
    "isMfaRegistered",
    "isMfaCapable",
    "methodsRegistered",
    "userPreferredMethodForSecondaryAuthentication",
    "systemPreferredAuthenticationMethods",
    "isSystemPreferredAuthenticationMethodEnabled",
    "lastUpdatedDateTime",
)

LICENCE_ERROR_CODE: Final = "Authentication_RequestFromNonPremiumTenantOrB2CTenant"
_REQUIRED_PERMISSION: Final = {
    USERS_PATH: "User.Read.All",
    REGISTRATION_PATH: "AuditLog.Read.All",
    METHODS_PATH: "UserAuthenticationMethod.Read.All",
    # the scope signals (shared/permissions.py says why each)
    "/auditLogs/signIns": "AuditLog.Read.All",
    "/roleManagement/directory/": "RoleManagement.Read.Directory",
    "/groups": "GroupMember.Read.All",
    "/policies/crossTenantAccessPolicy/": "Policy.Read.All",
    "/tenantRelationships/": "CrossTenantInformation.ReadBasic.All",
    "/users/{id}?$select=signInActivity": "AuditLog.Read.All",
}

# The scope signals' endpoints and the properties read from each.
SIGN_INS_PATH: Final = "/auditLogs/signIns"
ROLE_ASSIGNMENTS_PATH: Final = "/roleManagement/directory/roleAssignments"
ROLE_ELIGIBILITY_PATH: Final = "/roleManagement/directory/roleEligibilityScheduleInstances"
ROLE_DEFINITIONS_PATH: Final = "/roleManagement/directory/roleDefinitions"
GROUPS_PATH: Final = "/groups"
CTAP_DEFAULT_PATH: Final = "/policies/crossTenantAccessPolicy/default"
CTAP_PARTNERS_PATH: Final = "/policies/crossTenantAccessPolicy/partners"
TENANT_BY_DOMAIN_PATH: Final = "/tenantRelationships/findTenantInformationByDomainName"
# $select is not listed for signIns (only $filter/$top/$skiptoken) but Graph honours it; were it
# ignored, the parser would just see more fields.
SIGN_IN_FIELDS: tuple[str, ...] = (
    "id",
    "createdDateTime",
    "userId",
    "appId",
    "resourceId",
    "isInteractive",
    "authenticationRequirement",
    "status",
)
ROLE_ASSIGNMENT_FIELDS: tuple[str, ...] = ("id", "principalId", "roleDefinitionId", "directoryScopeId")
ROLE_DEFINITION_FIELDS: tuple[str, ...] = ("id", "displayName", "templateId", "isBuiltIn")
GROUP_FIELDS: tuple[str, ...] = ("id", "displayName")
MEMBER_FIELDS: tuple[str, ...] = ("id",)
PARTNER_FIELDS: tuple[str, ...] = ("tenantId", "inboundTrust")
SIGN_IN_PAGE_MAX: Final = 1000  # signIns allow up to 1,000 per page
_QUERY_SAFE: Final = "$,'()*:@=/"
_PERMISSION_IN_MESSAGE: Final = re.compile(r"\b([A-Z][A-Za-z]+\.[A-Z][A-Za-z]+(?:\.[A-Z][A-Za-z]+)*)\b")


@dataclass
class GraphStats:
    """Mutable counters, read by the sync job for its run row."""

    requests: int = 0  # HTTP responses received, retries included
    throttled: int = 0  # 429 responses seen (retries included)
    server_errors: int = 0  # 5xx responses seen
    pages: int = 0  # pages parsed and handed out
    connection_errors: int = 0  # dropped connections / timeouts (each retried or fatal)


class GraphError(Exception):
    """A Graph call failed; the message names the endpoint, HTTP status, Graph code, request-id."""

    def __init__(
        self,
        message: str,
        *,
        endpoint: str = "",
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.status = status
        self.code = code
        self.request_id = request_id


class GraphLicenceError(GraphError):
    """403 ``Authentication_RequestFromNonPremiumTenantOrB2CTenant``: needs Entra ID P1/P2 (the
    registration report, sign-in logs, users' signInActivity)."""


class GraphPermissionError(GraphError):
    """403 for a missing application permission (the one the endpoint needs is named)."""

    def __init__(self, message: str, *, permission: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.permission = permission


class GraphDataError(GraphError):
    """A 2xx page that is not JSON, has no ``value`` list, or has an unusable nextLink.

    The items of ``value`` are not checked here: callers validate each object."""


class _CountingMiddleware(BaseMiddleware):
    """Innermost middleware: sees each real HTTP response, retried ones included."""

    def __init__(self, stats: GraphStats) -> None:
        super().__init__()
        self._stats = stats

    async def send(self, request: httpx.Request, transport: httpx.AsyncBaseTransport) -> httpx.Response:
        response = await super().send(request, transport)
        stats = self._stats
        stats.requests += 1
        if response.status_code == 429:
            stats.throttled += 1
        elif response.status_code >= 500:
            stats.server_errors += 1
        return response


class _RawResponse(ResponseHandler):
    """Hands the native httpx response back untouched (no kiota deserialisation)."""

    async def handle_response_async(self, response: Any, error_map: dict[str, ParsableFactory[Any]] | None) -> Any:
        return response


_RAW_RESPONSE = ResponseHandlerOption(_RawResponse())


def _check_base_url(base_url: str, what: str = "Graph") -> tuple[str, str]:
    """(normalised base URL, host) or ValueError for anything but https / local http."""
    parts = urlsplit(base_url.rstrip("/"))
    host = (parts.hostname or "").lower()
    if not host or parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError(f"Invalid {what} base URL {base_url!r}")
    if parts.scheme == "http":
        if host not in LOCAL_HOSTS:
            raise ValueError(
                f"Refusing plain http for {what} base URL {base_url!r}: http is only allowed for "
                "127.0.0.1, localhost and ::1 (the local simulator); use https."
            )
    elif parts.scheme != "https":
        raise ValueError(f"{what} base URL {base_url!r} must use https")
    return parts.geturl(), host


def _permission_for(endpoint: str) -> str:
    key = endpoint.split(" ")[0]
    best = max((k for k in _REQUIRED_PERMISSION if key.startswith(k)), key=len, default=None)
    return _REQUIRED_PERMISSION[best] if best else "unknown"


def query_string(params: Sequence[tuple[str, str]]) -> str:
    """OData options percent-encoded the way Graph documents them (``$`` and quotes kept)."""
    return "&".join(f"{name}={quote(value, safe=_QUERY_SAFE)}" for name, value in params)


def odata_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _odata_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Fingerprinter(Protocol):
    """Fingerprints pages' bytes elsewhere (``shared.adapters.fingerprint_worker``)."""

    def submit(self, raw: bytes, kind: str) -> asyncio.Task[PagePrints | None]: ...


class Page(list[dict[str, Any]]):
    """A page of wire objects, and the worker's task fingerprinting the same bytes (its answer:
    the objects' ids and fingerprints, or None)."""

    def __init__(self, objects: list[dict[str, Any]], prints: asyncio.Task[PagePrints | None] | None):
        super().__init__(objects)
        self.prints = prints


class JsonApiReader:
    """The msgraph HTTP stack (auth, retry, counting) for one JSON API: raw pages and objects.

    Subclasses name the API: :class:`GraphReader` here, ``shared.adapters.arm.ArmReader`` for
    Azure Resource Manager. ``credential`` is not closed by :meth:`aclose`: the caller owns it.
    """

    API_NAME = "Graph"
    SCOPE = GRAPH_SCOPE

    def __init__(
        self,
        credential: AsyncTokenCredential,
        *,
        base_url: str = DEFAULT_BASE_URL,
        page_size: int = MAX_PAGE_SIZE,
        max_retries: int = 5,
        retry_delay_seconds: float = 3.0,
        ssl_verify: ssl.SSLContext | str | bool = True,
        timeout_seconds: float = 100.0,
    ) -> None:
        self._base_url, self._host = _check_base_url(base_url, self.API_NAME)
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
        if not 0 <= max_retries <= MAX_RETRIES:
            raise ValueError(f"max_retries must be between 0 and {MAX_RETRIES}")
        if not 0 <= retry_delay_seconds <= RetryHandlerOption.MAX_DELAY:
            raise ValueError(f"retry_delay_seconds must be between 0 and {RetryHandlerOption.MAX_DELAY}")
        if timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be positive")
        self.stats = GraphStats()
        self._page_size = page_size
        self._max_retries = max_retries
        self._retry_delay = retry_delay_seconds
        self._base_parts = urlsplit(self._base_url)

        verify: ssl.SSLContext | bool
        verify = ssl.create_default_context(cafile=ssl_verify) if isinstance(ssl_verify, str) else ssl_verify
        # Our own transport so aclose() can close the pool (msgraph's AsyncGraphTransport wrapper
        # does not forward aclose); being explicit also keeps env proxy settings out of the path.
        self._transport = httpx.AsyncHTTPTransport(verify=verify)
        client = httpx.AsyncClient(
            transport=self._transport,
            timeout=httpx.Timeout(timeout_seconds, connect=min(timeout_seconds, 30.0)),
        )
        retry = RetryHandlerOption(delay=retry_delay_seconds, max_retries=max_retries)
        middleware = KiotaClientFactory.get_default_middleware({RetryHandlerOption.get_key(): retry})
        middleware += [GraphTelemetryHandler(), _CountingMiddleware(self.stats)]
        self._client = GraphClientFactory.create_with_custom_middleware(middleware=middleware, client=client)
        auth = AzureIdentityAuthenticationProvider(credential, scopes=[self.SCOPE], allowed_hosts=[self._host])
        self._adapter = BaseGraphRequestAdapter(auth, http_client=self._client)
        self._closed = False

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._client.aclose()
        await self._transport.aclose()

    async def __aenter__(self) -> JsonApiReader:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- internals ------------------------------------------------------------------------------
    def _url(self, path: str, params: Sequence[tuple[str, str]] = (), base: str | None = None) -> str:
        url = f"{base or self._base_url}{path}"
        return f"{url}?{query_string(params)}" if params else url

    async def _pages(
        self,
        path: str,
        fields: tuple[str, ...],
        *,
        filter_text: str | None = None,
        top: int | None = None,
        base: str | None = None,
        endpoint: str | None = None,
        fingerprints: Fingerprinter | None = None,
        kind: str = "",
    ) -> AsyncGenerator[list[dict[str, Any]], None]:
        """Each page's ``value`` list. With ``fingerprints``, each page is a :class:`Page` whose
        bytes the worker fingerprints (as ``kind``) while this reads the next page."""
        params = [("$select", ",".join(fields))]
        if filter_text:
            params.append(("$filter", filter_text))
        params.append(("$top", str(top or self._page_size)))
        endpoint = endpoint or path
        number = 0
        response: httpx.Response | None = await self._fetch(self._url(path, params, base), endpoint)
        url: str | None
        while response is not None:
            number += 1
            prints = None
            if fingerprints is not None and 200 <= response.status_code < 300:
                prints = fingerprints.submit(response.content, kind)
            page, url = self._parse(response, endpoint, number)
            del response
            # With a worker fingerprinting this page, read the next one meanwhile (its bytes only).
            response = await self._fetch(url, endpoint) if url is not None and prints is not None else None
            self.stats.pages += 1
            logger.debug("%s %s page %d: %d objects", self.API_NAME, endpoint, number, len(page))
            yield Page(page, prints) if fingerprints is not None else page
            del page, prints  # hold at most one page of objects
            if url is not None and response is None:
                response = await self._fetch(url, endpoint)

    async def _object(self, url: str, endpoint: str, *, missing_ok: bool = False) -> dict[str, Any] | None:
        """One JSON object (not a collection); None for a 404 when ``missing_ok``."""
        response = await self._fetch(url, endpoint)
        if missing_ok and response.status_code == 404:
            return None
        if not 200 <= response.status_code < 300:
            raise self._error(response, endpoint)
        try:
            data = json.loads(response.content)
        except ValueError as exc:
            raise GraphDataError(
                f"{self.API_NAME} GET {endpoint}: body is not JSON ({exc})",
                endpoint=endpoint,
                status=response.status_code,
            ) from None
        if not isinstance(data, dict):
            raise GraphDataError(f"{self.API_NAME} GET {endpoint}: not a JSON object", endpoint=endpoint)
        return data

    async def _fetch(self, url: str, endpoint: str, body: bytes | None = None) -> httpx.Response:
        """GET (or POST ``body`` as JSON), retrying dropped connections; the retry handler
        underneath retries 429/503/504."""
        verb = "GET" if body is None else "POST"
        failures = 0
        while True:
            info = RequestInformation()
            info.http_method = Method.GET if body is None else Method.POST
            info.url = url
            info.headers.try_add("Accept", "application/json")
            if body is not None:
                info.set_stream_content(body, "application/json")
            info.add_request_options([_RAW_RESPONSE])
            try:
                response = await self._adapter.send_primitive_async(info, "bytes", None)
            except httpx.TransportError as exc:
                self.stats.connection_errors += 1
                failures += 1
                if failures > self._max_retries:
                    raise GraphError(
                        f"{self.API_NAME} {verb} {endpoint} failed: connection error {type(exc).__name__} "
                        f"({exc}) after {self._max_retries} retries",
                        endpoint=endpoint,
                    ) from exc
                delay = min(self._retry_delay * 2 ** (failures - 1), 60.0)
                logger.warning(
                    "%s %s %s: %s, retry %d/%d in %.1fs",
                    self.API_NAME,
                    verb,
                    endpoint,
                    type(exc).__name__,
                    failures,
                    self._max_retries,
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            except ClientAuthenticationError as exc:
                raise GraphError(
                    f"{self.API_NAME} {verb} {endpoint} failed: could not get a token for {self.SCOPE}: {exc.message}",
                    endpoint=endpoint,
                ) from exc
            return cast(httpx.Response, response)

    def _parse(self, response: httpx.Response, endpoint: str, number: int) -> tuple[list[dict[str, Any]], str | None]:
        if not 200 <= response.status_code < 300:
            raise self._error(response, endpoint)
        where = f"{self.API_NAME} GET {endpoint} page {number}"
        try:
            data = json.loads(response.content)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            raise GraphDataError(
                f"{where}: body is not JSON ({exc}; {len(response.content)} bytes)",
                endpoint=endpoint,
                status=response.status_code,
                request_id=response.headers.get("request-id"),
            ) from None
        value = data.get("value") if isinstance(data, dict) else None
        if not isinstance(value, list):
            raise GraphDataError(
                f"{where}: JSON has no 'value' list",
                endpoint=endpoint,
                status=response.status_code,
                request_id=response.headers.get("request-id"),
            )
        next_link = data.get("@odata.nextLink")
        if next_link is not None:
            parts = urlsplit(next_link) if isinstance(next_link, str) else None
            if (
                parts is None
                or parts.scheme != self._base_parts.scheme
                or parts.netloc.lower() != self._base_parts.netloc.lower()
            ):
                # Refuse to follow (and to send our token) anywhere but the Graph host.
                raise GraphDataError(
                    f"{where}: @odata.nextLink does not point at {self._base_parts.netloc}",
                    endpoint=endpoint,
                    status=response.status_code,
                )
        # Items are handed over as Graph sent them; the domain layer validates each one (a stray
        # non-object is skipped and counted there rather than failing the whole night).
        return cast(list[dict[str, Any]], value), next_link

    def _error(self, response: httpx.Response, endpoint: str, verb: str = "GET") -> GraphError:
        status = response.status_code
        code: str | None = None
        message = ""
        request_id = response.headers.get("request-id")
        try:
            body = json.loads(response.content)
            error = body.get("error") if isinstance(body, dict) else None
            if isinstance(error, dict):
                raw_code, raw_message = error.get("code"), error.get("message")
                code = raw_code if isinstance(raw_code, str) else None
                message = raw_message if isinstance(raw_message, str) else ""
                inner = error.get("innerError")
                if isinstance(inner, dict) and isinstance(inner.get("request-id"), str):
                    request_id = inner["request-id"]
        except ValueError:
            message = response.text[:200]
        text = f"{self.API_NAME} {verb} {endpoint} failed: HTTP {status}"
        if code:
            text += f" {code}"
        if message:
            text += f": {message}"
        if status in (429, 503, 504) and self._max_retries:
            text += f" (still failing after {self._max_retries} retries)"
        if request_id:
            text += f" (request-id {request_id})"
        details: dict[str, Any] = {
            "endpoint": endpoint,
            "status": status,
            "code": code,
            "request_id": request_id,
        }
        if status == 403 and code == LICENCE_ERROR_CODE:
            return GraphLicenceError(text + ". This needs Microsoft Entra ID P1 or P2 in the tenant.", **details)
        if status == 403:  # app-only callers get 403 for missing application permissions
            named = _PERMISSION_IN_MESSAGE.search(message)
            permission = named.group(1) if named else _permission_for(endpoint)
            return GraphPermissionError(
                text + f". Grant the app's identity the Microsoft Graph application permission "
                f"{permission} (with admin consent).",
                permission=permission,
                **details,
            )
        return GraphError(text, **details)


class GraphReader(JsonApiReader):
    """Pages through Graph collections as raw JSON, one page (the ``value`` list) at a time."""

    # -- the directory and the registration report --------------------------------------------
    def users(self, fingerprints: Fingerprinter | None = None) -> AsyncGenerator[list[dict[str, Any]], None]:
        """``GET /users`` with :data:`USER_FIELDS`: yields each page's ``value`` list
        (:class:`Page` objects fingerprinted by ``fingerprints``, if given)."""
        return self._pages(USERS_PATH, USER_FIELDS, fingerprints=fingerprints, kind=USERS)

    def registration_details(
        self, fingerprints: Fingerprinter | None = None
    ) -> AsyncGenerator[list[dict[str, Any]], None]:
        """``GET /reports/authenticationMethods/userRegistrationDetails`` (needs P1/P2 and
        ``AuditLog.Read.All``) with :data:`REGISTRATION_FIELDS`, one page at a time (as ``users``)."""
        return self._pages(REGISTRATION_PATH, REGISTRATION_FIELDS, fingerprints=fingerprints, kind=REPORT)

    # -- scope signals --------------------------------------------------------------------------
    @property
    def beta_url(self) -> str:
        """The beta root next to the configured v1.0 root (same host)."""
        base = self._base_url
        return base[: -len("/v1.0")] + "/beta" if base.endswith("/v1.0") else base

    def sign_ins(
        self, app: ManagementApp, since: datetime, *, non_interactive: bool = False
    ) -> AsyncGenerator[list[dict[str, Any]], None]:
        """Sign-ins to one management app since ``since`` (``AuditLog.Read.All``, Entra ID P1/P2).

        Interactive sign-ins come from v1.0. Non-interactive ones exist only in beta, filtered
        with ``signInEventTypes/any(t: t eq 'nonInteractiveUser')`` (beta has no SLA: they are an
        optional signal, SIGNIN_NON_INTERACTIVE). Filtering is on the server: the app (by
        ``appId``, or ``resourceId`` for ARM) and ``createdDateTime ge``.
        """
        clauses = [f"{app.match.value} eq {odata_literal(app.app_id)}", f"createdDateTime ge {_odata_time(since)}"]
        if non_interactive:
            clauses.append("signInEventTypes/any(t: t eq 'nonInteractiveUser')")
        return self._pages(
            SIGN_INS_PATH,
            SIGN_IN_FIELDS,
            filter_text=" and ".join(clauses),
            top=min(SIGN_IN_PAGE_MAX, max(self._page_size, 1)),
            base=self.beta_url if non_interactive else None,
            endpoint=SIGN_INS_PATH + (" (beta, non-interactive)" if non_interactive else ""),
        )

    def role_assignments(self) -> AsyncGenerator[list[dict[str, Any]], None]:
        """Active Entra role assignments, PIM activations included (``RoleManagement.Read.Directory``)."""
        return self._pages(ROLE_ASSIGNMENTS_PATH, ROLE_ASSIGNMENT_FIELDS)

    def role_eligibilities(self) -> AsyncGenerator[list[dict[str, Any]], None]:
        """PIM-eligible Entra role instances (``RoleManagement.Read.Directory`` covers them too)."""
        return self._pages(ROLE_ELIGIBILITY_PATH, ROLE_ASSIGNMENT_FIELDS)

    def role_definitions(self) -> AsyncGenerator[list[dict[str, Any]], None]:
        return self._pages(ROLE_DEFINITIONS_PATH, ROLE_DEFINITION_FIELDS)

    def role_assignable_groups(self) -> AsyncGenerator[list[dict[str, Any]], None]:
        """Groups that can hold Entra roles: the only groups a role assignment can name
        (``GroupMember.Read.All``)."""
        return self._pages(GROUPS_PATH, GROUP_FIELDS, filter_text="isAssignableToRole eq true")

    def group_members(self, group_id: str) -> AsyncGenerator[list[dict[str, Any]], None]:
        """A group's transitive members (``@odata.type`` tells users from the rest)."""
        path = f"{GROUPS_PATH}/{quote(group_id, safe='')}/transitiveMembers"
        return self._pages(path, MEMBER_FIELDS, endpoint=f"{GROUPS_PATH}/{{id}}/transitiveMembers")

    async def cross_tenant_default(self) -> dict[str, Any]:
        """The cross-tenant access policy's default (``Policy.Read.All``)."""
        found = await self._object(self._url(CTAP_DEFAULT_PATH), CTAP_DEFAULT_PATH)
        return found or {}

    def cross_tenant_partners(self) -> AsyncGenerator[list[dict[str, Any]], None]:
        return self._pages(CTAP_PARTNERS_PATH, PARTNER_FIELDS)

    async def tenant_by_domain(self, domain: str) -> dict[str, Any] | None:
        """``findTenantInformationByDomainName``: the tenant behind a domain; None when no Entra
        tenant owns it (``CrossTenantInformation.ReadBasic.All``)."""
        url = self._url(f"{TENANT_BY_DOMAIN_PATH}(domainName={quote(odata_literal(domain), safe=_QUERY_SAFE)})")
        return await self._object(url, TENANT_BY_DOMAIN_PATH, missing_ok=True)

    # -- per-user calls (bounded by the caller) ---------------------------------------------------
    async def authentication_methods(self, user_id: str) -> list[dict[str, Any]] | None:
        """``GET /users/{id}/authentication/methods`` (``UserAuthenticationMethod.Read.All``; works
        on Entra ID Free). None when the user no longer exists."""
        path = f"{USERS_PATH}/{quote(user_id, safe='')}/authentication/methods"
        endpoint = METHODS_PATH
        methods: list[dict[str, Any]] = []
        url: str | None = self._url(path)
        number = 0
        while url is not None:
            number += 1
            response = await self._fetch(url, endpoint)
            if response.status_code == 404:
                return None
            page, url = self._parse(response, endpoint, number)
            methods.extend(page)
        return methods

    async def sign_in_activity(self, user_id: str) -> dict[str, Any] | None:
        """A user's ``signInActivity`` (``AuditLog.Read.All`` + ``User.Read.All``, Entra ID P1/P2):
        the last interactive and non-interactive sign-in, whatever the app. None when gone."""
        path = f"{USERS_PATH}/{quote(user_id, safe='')}"
        url = self._url(path, [("$select", "id,signInActivity")])
        found = await self._object(url, "/users/{id}?$select=signInActivity", missing_ok=True)
        if found is None:
            return None
        activity = found.get("signInActivity")
        return activity if isinstance(activity, dict) else {}
