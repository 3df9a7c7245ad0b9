"""Local Azure Communication Services Email simulator, over HTTPS with a test CA, on 127.0.0.1.

The ACS SDK refuses to send a bearer token over plain http, so this server speaks TLS with a
certificate from a throwaway CA (``trustme``); clients trust it with ``connection_verify=sim.ca_file``.
It serves the two calls the app makes (api-version 2025-09-01, also 2023-03-31):

* ``POST /emails:send`` — a long-running operation: validates the message like ACS (sender,
  1-50 recipients, subject, a body), answers **202** with ``Operation-Location`` and the operation
  id, honouring the caller's ``Operation-Id`` header. A second POST with an id it already has sends
  nothing and answers 202 with that operation (counted in ``duplicate_posts``: the app must never
  rely on it, so tests assert it stays 0).
* ``GET /emails/operations/{id}`` — ``Running`` for ``running_polls`` reads, then ``Succeeded``, or
  ``Failed`` with an error for addresses in ``bad_addresses`` / domains in ``bad_domains``; 404 for
  an id it never accepted (or one :meth:`AcsEmailSimulator.forget` dropped).

Quotas (``per_minute`` / ``per_hour`` accepted sends, on the simulator's clock, which tests inject)
answer **429** with ``Retry-After``. Faults for the send call: :class:`Throttle`, :class:`ServerError`,
:class:`Reject` and :class:`DropAfterAccept` (the message is accepted, then the connection closes
before the answer: a send whose outcome the client never learns).

Bearer tokens are checked against the managed-identity endpoint of :mod:`sim.graph_server` (tokens
issued for ``https://communication.azure.com``). Every accepted message is kept in ``messages``;
:func:`to_eml` turns one into an ``.eml`` file a person can open.
"""

from __future__ import annotations

import contextlib
import json
import math
import socket
import ssl
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import trustme

ACS_RESOURCE = "https://communication.azure.com"
API_VERSIONS = frozenset({"2023-03-31", "2024-07-01-preview", "2025-09-01"})
MAX_RECIPIENTS = 50


class TokenChecker(Protocol):
    def check_token_for(self, authorization: str | None, resource: str) -> str | None: ...


# --- faults (for POST /emails:send) ------------------------------------------------------------


@dataclass(frozen=True)
class Throttle:
    retry_after: int = 30


@dataclass(frozen=True)
class ServerError:
    status: int = 503


@dataclass(frozen=True)
class Reject:
    status: int = 400
    code: str = "BadRequest"
    message: str = "Simulated rejection."


@dataclass(frozen=True)
class DropAfterAccept:
    """Accept the message (it will be delivered) and close the connection without answering."""


Fault = Throttle | ServerError | Reject | DropAfterAccept


@dataclass
class SentMessage:
    operation_id: str
    sender: str
    to: list[tuple[str, str]]  # (address, display name)
    subject: str
    plain_text: str
    html: str
    received_at: datetime
    reply_to: list[str] = field(default_factory=list)


@dataclass
class Operation:
    id: str
    message: SentMessage
    final: str  # Succeeded | Failed
    error: dict[str, str] | None
    polls_left: int


class AcsEmailSimulator:
    """``with AcsEmailSimulator(identity=graph_sim) as acs: EmailClient(acs.endpoint, ...)``"""

    def __init__(
        self,
        *,
        identity: TokenChecker | None = None,
        sender_address: str | None = None,
        per_minute: int | None = None,
        per_hour: int | None = None,
        running_polls: int = 1,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.identity = identity
        self.sender_address = sender_address
        self.per_minute, self.per_hour = per_minute, per_hour
        self.running_polls = running_polls
        self.clock = clock
        self.bad_addresses: set[str] = set()
        self.bad_domains: set[str] = set()
        self.messages: list[SentMessage] = []
        self.operations: dict[str, Operation] = {}
        self.posts: list[tuple[str, int]] = []  # (operation id, HTTP status) of every send request
        self.status_reads: list[tuple[str, int]] = []
        self.duplicate_posts = 0
        self.throttled = 0
        self._accepted_at: list[float] = []
        self._faults: list[list[Any]] = []  # [fault, remaining]
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._ca = trustme.CA()
        self._dir = tempfile.TemporaryDirectory(prefix="acs-sim-")
        self.ca_file = str(Path(self._dir.name) / "acs-sim-ca.pem")
        self._ca.cert_pem.write_to_path(self.ca_file)
        self.port = 0

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> AcsEmailSimulator:
        if self._server is not None:
            return self
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        handler = type("AcsHandler", (_Handler,), {"sim": self})
        server = _Server(("127.0.0.1", 0), handler)
        server.tls = context
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="acs-sim", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._dir.cleanup()

    def __enter__(self) -> AcsEmailSimulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        """``https://127.0.0.1:PORT`` (what the app's ACS_ENDPOINT is set to)."""
        if not self.port:
            raise RuntimeError("the simulator is not started")
        return f"https://127.0.0.1:{self.port}"

    # --- test controls ---------------------------------------------------------------------------

    def inject(self, fault: Fault, times: int = 1) -> None:
        """Serve ``fault`` to the next ``times`` send requests."""
        with self._lock:
            self._faults.append([fault, times])

    def forget(self, operation_id: str) -> None:
        """Drop an operation's status, as ACS does after its retention (the message stays sent)."""
        with self._lock:
            self.operations.pop(operation_id, None)

    def delivered_to(self, address: str) -> list[SentMessage]:
        with self._lock:
            return [m for m in self.messages if any(a.lower() == address.lower() for a, _ in m.to)]

    # --- internals -------------------------------------------------------------------------------

    def _take_fault(self) -> Fault | None:
        with self._lock:
            for entry in self._faults:
                fault, remaining = entry
                if remaining > 0:
                    entry[1] = remaining - 1
                    if entry[1] == 0:
                        self._faults.remove(entry)
                    return fault  # type: ignore[no-any-return]
        return None

    def _quota_wait(self, now: float) -> int:
        """Seconds until one more send fits the quotas (0: now). Caller holds the lock."""
        waits = [0.0]
        for limit, window in ((self.per_minute, 60.0), (self.per_hour, 3600.0)):
            if limit is None:
                continue
            recent = [t for t in self._accepted_at if t > now - window]
            if len(recent) >= limit:
                waits.append(recent[-limit] + window - now)
        return math.ceil(max(waits))

    def _send(self, query: dict[str, str], headers: dict[str, str], body: bytes) -> _Response:
        if query.get("api-version") not in API_VERSIONS:
            return _error(400, "InvalidApiVersion", "Unsupported or missing api-version.")
        try:
            message = json.loads(body)
        except ValueError:
            return _error(400, "BadRequest", "The request body is not JSON.")
        problem = _validate(message, self.sender_address)
        if problem:
            return _error(400, "BadRequest", problem)
        operation_id = headers.get("operation-id") or str(uuid.uuid4())
        fault = self._take_fault()
        if isinstance(fault, Throttle):
            with self._lock:
                self.throttled += 1
            return _error(429, "TooManyRequests", "Too many requests.", [("Retry-After", str(fault.retry_after))])
        if isinstance(fault, ServerError):
            return _error(fault.status, "ServiceUnavailable", "The service is temporarily unavailable.")
        if isinstance(fault, Reject):
            return _error(fault.status, fault.code, fault.message)
        with self._lock:
            existing = self.operations.get(operation_id)
            if existing is not None:
                self.duplicate_posts += 1
                return self._accepted(existing)
            now = self.clock()
            wait = self._quota_wait(now)
            if wait > 0:
                self.throttled += 1
                return _error(
                    429,
                    "TooManyRequests",
                    "The sending quota of this resource is exhausted.",
                    [("Retry-After", str(wait))],
                )
            sent = SentMessage(
                operation_id=operation_id,
                sender=str(message["senderAddress"]),
                to=[(str(r["address"]), str(r.get("displayName") or "")) for r in message["recipients"]["to"]],
                subject=str(message["content"]["subject"]),
                plain_text=str(message["content"].get("plainText") or ""),
                html=str(message["content"].get("html") or ""),
                received_at=datetime.fromtimestamp(now, UTC),
                reply_to=[str(r.get("address")) for r in message.get("replyTo") or []],
            )
            bad = [
                a for a, _ in sent.to if a.lower() in self.bad_addresses or a.split("@")[-1].lower() in self.bad_domains
            ]
            error = (
                {"code": "InvalidRecipients", "message": f"Delivery to {', '.join(bad)} failed: no such mailbox."}
                if bad
                else None
            )
            operation = Operation(operation_id, sent, "Failed" if bad else "Succeeded", error, self.running_polls)
            self.operations[operation_id] = operation
            self.messages.append(sent)
            self._accepted_at.append(now)
            response = self._accepted(operation)
        if isinstance(fault, DropAfterAccept):
            response.drop = True
        return response

    def _accepted(self, operation: Operation) -> _Response:
        location = f"{self.endpoint}/emails/operations/{operation.id}?api-version=2025-09-01"
        body = {"id": operation.id, "status": "Running", "error": None}
        return _Response(202, body, [("Operation-Location", location), ("Retry-After", "1")])

    def _status(self, operation_id: str, query: dict[str, str]) -> _Response:
        if query.get("api-version") not in API_VERSIONS:
            return _error(400, "InvalidApiVersion", "Unsupported or missing api-version.")
        with self._lock:
            operation = self.operations.get(operation_id)
            if operation is None:
                return _error(404, "NotFound", f"Operation {operation_id} was not found.")
            if operation.polls_left > 0:
                operation.polls_left -= 1
                return _Response(200, {"id": operation_id, "status": "Running", "error": None}, [("Retry-After", "1")])
            return _Response(200, {"id": operation_id, "status": operation.final, "error": operation.error})


def _validate(message: Any, sender: str | None) -> str | None:
    if not isinstance(message, dict):
        return "The message must be a JSON object."
    if not isinstance(message.get("senderAddress"), str) or "@" not in message["senderAddress"]:
        return "senderAddress is required."
    if sender is not None and message["senderAddress"].lower() != sender.lower():
        return f"The sender address {message['senderAddress']} is not linked to this resource."
    recipients = message.get("recipients")
    to = recipients.get("to") if isinstance(recipients, dict) else None
    if not isinstance(to, list) or not to:
        return "recipients.to must list at least one recipient."
    everyone = to + list(recipients.get("cc") or []) + list(recipients.get("bcc") or [])
    if len(everyone) > MAX_RECIPIENTS:
        return f"At most {MAX_RECIPIENTS} recipients are allowed."
    for r in everyone:
        address = r.get("address") if isinstance(r, dict) else None
        if not isinstance(address, str) or address.count("@") != 1 or "." not in address.split("@")[1]:
            return f"Invalid recipient address {address!r}."
    content = message.get("content")
    if not isinstance(content, dict) or not content.get("subject"):
        return "content.subject is required."
    if not content.get("plainText") and not content.get("html"):
        return "content needs plainText or html."
    return None


@dataclass
class _Response:
    status: int
    body: dict[str, Any]
    headers: list[tuple[str, str]] = field(default_factory=list)
    drop: bool = False


def _error(status: int, code: str, message: str, headers: list[tuple[str, str]] | None = None) -> _Response:
    return _Response(
        status, {"error": {"code": code, "message": message}}, [("x-ms-error-code", code), *(headers or [])]
    )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    tls: ssl.SSLContext

    def get_request(self) -> tuple[Any, Any]:
        sock, address = self.socket.accept()
        # The TLS handshake happens in the handler's thread, so a stalled client blocks only itself.
        return self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: clients hanging up (and the drop fault) are normal here."""


class _Handler(BaseHTTPRequestHandler):
    sim: AcsEmailSimulator
    protocol_version = "HTTP/1.1"
    server_version = "AcsEmailSimulator/1.0"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """No request log on stderr."""

    def setup(self) -> None:
        self.request.settimeout(10)
        self.request.do_handshake()
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        sim = self.sim
        split = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(split.query).items()}
        headers = {k.lower(): v for k, v in self.headers.items()}
        body = self.rfile.read(int(headers.get("content-length") or 0))
        if sim.identity is not None:
            problem = sim.identity.check_token_for(headers.get("authorization"), ACS_RESOURCE)
        else:
            problem = None if (headers.get("authorization") or "").startswith("Bearer ") else "No token."
        if problem is not None:
            response = _error(401, "Unauthorized", problem, [("WWW-Authenticate", "Bearer")])
        elif method == "POST" and split.path == "/emails:send":
            response = sim._send(query, headers, body)
            with sim._lock:
                sim.posts.append((headers.get("operation-id") or "", response.status))
        elif method == "GET" and split.path.startswith("/emails/operations/"):
            operation_id = split.path[len("/emails/operations/") :]
            response = sim._status(operation_id, query)
            with sim._lock:
                sim.status_reads.append((operation_id, response.status))
        else:
            response = _error(404, "NotFound", f"No route for {method} {split.path}.")
        if response.drop:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        payload = json.dumps(response.body).encode()
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("x-ms-request-id", str(uuid.uuid4()))
            for name, value in response.headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            self.close_connection = True


def to_eml(message: SentMessage) -> bytes:
    """The message as an RFC 5322 file (plain text and HTML alternatives) a mail program opens."""
    eml = EmailMessage()
    eml["From"] = message.sender
    eml["To"] = ", ".join(formataddr((name, address)) for address, name in message.to)
    eml["Subject"] = message.subject
    eml["Date"] = format_datetime(message.received_at)
    eml["Message-ID"] = make_msgid(idstring=message.operation_id[:8], domain="acs-simulator.local")
    eml["X-ACS-Operation-Id"] = message.operation_id
    eml.set_content(message.plain_text)
    if message.html:
        eml.add_alternative(message.html, subtype="html")
    return eml.as_bytes()
