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

Tokens are never logged: only endpoint paths, status codes, Graph error codes and request ids.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, cast
from urllib.parse import urlsplit

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

logger = logging.getLogger(__name__)

GRAPH_SCOPE: Final = "https://graph.microsoft.com/.default"
DEFAULT_BASE_URL: Final = "https://graph.microsoft.com/v1.0"
LOCAL_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})
MAX_PAGE_SIZE: Final = 999
MAX_RETRIES: Final = RetryHandlerOption.MAX_MAX_RETRIES  # 10, kiota's own ceiling

USERS_PATH: Final = "/users"
REGISTRATION_PATH: Final = "/reports/authenticationMethods/userRegistrationDetails"

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
_REQUIRED_PERMISSION: Final = {USERS_PATH: "User.Read.All", REGISTRATION_PATH: "AuditLog.Read.All"}
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
    """403 ``Authentication_RequestFromNonPremiumTenantOrB2CTenant``: needs Entra ID P1/P2."""


class GraphPermissionError(GraphError):
    """403 for a missing application permission (``User.Read.All`` / ``AuditLog.Read.All``)."""

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


def _check_base_url(base_url: str) -> tuple[str, str]:
    """(normalised base URL, host) or ValueError for anything but https / local http."""
    parts = urlsplit(base_url.rstrip("/"))
    host = (parts.hostname or "").lower()
    if not host or parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError(f"Invalid Graph base URL {base_url!r}")
    if parts.scheme == "http":
        if host not in LOCAL_HOSTS:
            raise ValueError(
                f"Refusing plain http for Graph base URL {base_url!r}: http is only allowed for "
                "127.0.0.1, localhost and ::1 (the local simulator); use https."
            )
    elif parts.scheme != "https":
        raise ValueError(f"Graph base URL {base_url!r} must use https")
    return parts.geturl(), host


class GraphReader:
    """Pages through Graph collections as raw JSON, one page (the ``value`` list) at a time.

    ``credential`` is not closed by :meth:`aclose`: the caller owns it.
    """

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
        self._base_url, self._host = _check_base_url(base_url)
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
        auth = AzureIdentityAuthenticationProvider(credential, scopes=[GRAPH_SCOPE], allowed_hosts=[self._host])
        self._adapter = BaseGraphRequestAdapter(auth, http_client=self._client)
        self._closed = False

    # -- public API -----------------------------------------------------------------------------
    def users(self) -> AsyncGenerator[list[dict[str, Any]], None]:
        """``GET /users`` with :data:`USER_FIELDS`: yields each page's ``value`` list."""
        return self._pages(USERS_PATH, USER_FIELDS)

    def registration_details(self) -> AsyncGenerator[list[dict[str, Any]], None]:
        """``GET /reports/authenticationMethods/userRegistrationDetails`` (needs P1/P2 and
        ``AuditLog.Read.All``) with :data:`REGISTRATION_FIELDS`, one page at a time."""
        return self._pages(REGISTRATION_PATH, REGISTRATION_FIELDS)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._client.aclose()
        await self._transport.aclose()

    async def __aenter__(self) -> GraphReader:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- internals ------------------------------------------------------------------------------
    async def _pages(self, path: str, fields: tuple[str, ...]) -> AsyncGenerator[list[dict[str, Any]], None]:
        url: str | None = f"{self._base_url}{path}?$select={','.join(fields)}&$top={self._page_size}"
        number = 0
        while url is not None:
            number += 1
            response = await self._fetch(url, path)
            page, url = self._parse(response, path, number)
            del response
            self.stats.pages += 1
            logger.debug("Graph %s page %d: %d objects", path, number, len(page))
            yield page
            del page  # hold at most one page

    async def _fetch(self, url: str, endpoint: str) -> httpx.Response:
        failures = 0
        while True:
            info = RequestInformation()
            info.http_method = Method.GET
            info.url = url
            info.headers.try_add("Accept", "application/json")
            info.add_request_options([_RAW_RESPONSE])
            try:
                response = await self._adapter.send_primitive_async(info, "bytes", None)
            except httpx.TransportError as exc:
                self.stats.connection_errors += 1
                failures += 1
                if failures > self._max_retries:
                    raise GraphError(
                        f"Graph GET {endpoint} failed: connection error {type(exc).__name__} "
                        f"({exc}) after {self._max_retries} retries",
                        endpoint=endpoint,
                    ) from exc
                delay = min(self._retry_delay * 2 ** (failures - 1), 60.0)
                logger.warning(
                    "Graph GET %s: %s, retry %d/%d in %.1fs",
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
                    f"Graph GET {endpoint} failed: could not get a token for {GRAPH_SCOPE}: {exc.message}",
                    endpoint=endpoint,
                ) from exc
            return cast(httpx.Response, response)

    def _parse(self, response: httpx.Response, endpoint: str, number: int) -> tuple[list[dict[str, Any]], str | None]:
        if not 200 <= response.status_code < 300:
            raise self._error(response, endpoint)
        where = f"Graph GET {endpoint} page {number}"
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

    def _error(self, response: httpx.Response, endpoint: str) -> GraphError:
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
        text = f"Graph GET {endpoint} failed: HTTP {status}"
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
            return GraphLicenceError(text + ". This report needs Microsoft Entra ID P1 or P2 in the tenant.", **details)
        if status == 403:  # app-only callers get 403 for missing application permissions
            named = _PERMISSION_IN_MESSAGE.search(message)
            permission = named.group(1) if named else _REQUIRED_PERMISSION.get(endpoint, "unknown")
            return GraphPermissionError(
                text + f". Grant the app's identity the Microsoft Graph application permission "
                f"{permission} (with admin consent).",
                permission=permission,
                **details,
            )
        return GraphError(text, **details)
