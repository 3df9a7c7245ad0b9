"""Azure Communication Services Email: send one message with a chosen operation id, read a status.

The async ``EmailClient`` authenticates with the app's managed identity (a token for
``https://communication.azure.com``). Two calls:

- :meth:`EmailSender.send` posts ``/emails:send`` with an ``Operation-Id`` the caller chose (the
  reminder's deterministic id) and returns as soon as ACS has accepted it (202); it does not wait for
  delivery. The SDK's retries are off: a 429 must reach the job, which decides whether to wait or to
  carry the rest over to the next run (and its clock is injected, so tests never sleep).
- :meth:`EmailSender.status` reads ``GET /emails/operations/{id}`` through the client's own
  pipeline (the SDK has no method for it): ``Running``, ``Succeeded``, ``Failed`` or not found. This
  is how a send whose answer was lost (a crash, a dropped connection) is settled later.

Errors are sorted by what the caller should do: :class:`Throttled` (wait or stop for now),
:class:`Rejected` (this message will never go: a bad address...), :class:`SendUncertain` (ACS may
or may not have it: read the status), :class:`EmailAccessError` (the identity cannot send at all).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Any

from azure.communication.email.aio import EmailClient
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.rest import HttpRequest

from shared.domain.messages import Email, one_line

log = logging.getLogger(__name__)

API_VERSION = "2025-09-01"
ACS_SCOPE = "https://communication.azure.com/.default"


class OperationState(StrEnum):
    NOT_FOUND = "NotFound"  # ACS has never heard of this operation id (or no longer keeps it)
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@dataclass(frozen=True)
class OperationStatus:
    state: OperationState
    error: str = ""  # code: message, for a Failed operation


class Throttled(Exception):
    """429: the sending quota is used up for now. ``retry_after`` seconds, when ACS said."""

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Rejected(Exception):
    """ACS refused this message (4xx other than 401/403/408/409/429): it will never be sent as is."""


class SendUncertain(Exception):
    """The request failed in a way that leaves open whether ACS accepted it (5xx, connection)."""


class EmailAccessError(Exception):
    """401/403 or no token: the identity cannot send at all (role, endpoint, credential)."""


def _error_text(exc: HttpResponseError) -> str:
    code = getattr(exc, "error", None)
    code_text = getattr(code, "code", None) or ""
    message = getattr(code, "message", None) or exc.reason or ""
    return one_line(f"HTTP {exc.status_code} {code_text}: {message}".replace("  ", " "), 300)


def _retry_after(exc: HttpResponseError) -> float | None:
    response: Any = exc.response
    raw = response.headers.get("Retry-After") if response is not None else None
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


class EmailSender:
    """Sends from ``sender_address`` through the ACS resource at ``endpoint``.

    ``connection_verify``: True (system CAs), or a CA bundle path (the local simulator's test CA).
    The caller owns ``credential``.
    """

    def __init__(
        self,
        endpoint: str,
        credential: AsyncTokenCredential,
        sender_address: str,
        *,
        connection_verify: bool | str = True,
        timeout_seconds: float = 30.0,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.sender_address = sender_address
        self.requests = 0  # HTTP calls made (sends and status reads)
        self.throttled = 0
        self._client = EmailClient(
            self.endpoint,
            credential,
            retry_total=0,  # the job handles 429/5xx itself (see the module docstring)
            connection_verify=connection_verify,
            connection_timeout=timeout_seconds,
            read_timeout=timeout_seconds,
        )

    async def send(
        self,
        *,
        to_address: str,
        to_name: str,
        email: Email,
        operation_id: str,
        reply_to: str | None = None,
    ) -> OperationStatus:
        """Hand one message to ACS under ``operation_id``; returns the status ACS answered with."""
        recipient = {"address": to_address}
        if one_line(to_name):
            recipient["displayName"] = one_line(to_name, 100)
        message: dict[str, Any] = {
            "senderAddress": self.sender_address,
            "recipients": {"to": [recipient]},
            "content": {"subject": one_line(email.subject, 250), "plainText": email.plain_text, "html": email.html},
            "userEngagementTrackingDisabled": True,
        }
        if reply_to:
            message["replyTo"] = [{"address": reply_to}]
        self.requests += 1
        try:
            poller = await self._client.begin_send(message, operation_id=operation_id, polling=False)
            body = await poller.result()
        except ClientAuthenticationError as exc:
            raise EmailAccessError(f"ACS refused the app's identity: {exc.message}") from exc
        except HttpResponseError as exc:
            raise self._classify(exc) from exc
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise SendUncertain(f"connection to ACS failed: {type(exc).__name__}: {exc}") from exc
        return _status_from(body, default=OperationState.RUNNING)

    async def status(self, operation_id: str) -> OperationStatus:
        """The status of an earlier send, by its operation id (NOT_FOUND if ACS never got it)."""
        request = HttpRequest(
            "GET",
            f"{self.endpoint}/emails/operations/{operation_id}",
            params={"api-version": API_VERSION},
            headers={"Accept": "application/json"},
        )
        self.requests += 1
        try:
            response = await self._client.send_request(request)
        except ClientAuthenticationError as exc:
            raise EmailAccessError(f"ACS refused the app's identity: {exc.message}") from exc
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise SendUncertain(f"connection to ACS failed: {type(exc).__name__}: {exc}") from exc
        if response.status_code == 404:
            return OperationStatus(OperationState.NOT_FOUND)
        if response.status_code == 429:
            self.throttled += 1
            raw = response.headers.get("Retry-After")
            raise Throttled("ACS throttled a status read", float(raw) if raw and raw.isdigit() else None)
        if response.status_code in (401, 403):
            raise EmailAccessError(f"ACS refused the app's identity reading a status: HTTP {response.status_code}")
        if response.status_code >= 300:
            raise SendUncertain(f"ACS status read failed: HTTP {response.status_code}")
        return _status_from(response.json(), default=OperationState.RUNNING)

    def _classify(self, exc: HttpResponseError) -> Exception:
        status = exc.status_code or 0
        text = _error_text(exc)
        if status == 429:
            self.throttled += 1
            return Throttled(f"ACS quota reached ({text})", _retry_after(exc))
        if status in (401, 403):
            return EmailAccessError(f"ACS refused the app's identity ({text})")
        if status in (408, 409) or status >= 500 or status == 0:
            # 409: an operation with this id exists already; whether it is this message, its status says.
            return SendUncertain(f"ACS send failed ({text})")
        return Rejected(text)

    async def aclose(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> EmailSender:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


def _status_from(body: Any, *, default: OperationState) -> OperationStatus:
    if not isinstance(body, dict):
        return OperationStatus(default)
    raw = str(body.get("status") or "")
    state = {s.value.lower(): s for s in OperationState}.get(raw.lower())
    if state is None:
        # NotStarted / Running / other non-terminal words: not final yet. Canceled counts as failed.
        state = OperationState.FAILED if raw.lower() == "canceled" else default
    error = body.get("error")
    text = ""
    if isinstance(error, dict):
        text = one_line(f"{error.get('code') or ''}: {error.get('message') or ''}", 300)
    return OperationStatus(state, text)
