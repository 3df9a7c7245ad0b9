"""Local Microsoft Graph v1.0 + App Service managed-identity simulator.

A real HTTP/1.1 server (stdlib ``ThreadingHTTPServer`` in a background thread) bound to 127.0.0.1
only, on a free port.  It serves a :class:`sim.tenant.Tenant`:

* ``GET /v1.0/users`` and ``GET /v1.0/reports/authenticationMethods/userRegistrationDetails``
  (plus ``/{id}`` under each): real paging with an absolute ``@odata.nextLink`` carrying an opaque
  ``$skiptoken``; ``$top`` (1..999), ``$select`` (unknown properties answer 400 like Graph; without
  ``$select`` users get Graph's default property set only), and a ``$filter`` subset
  (``prop eq literal`` joined by ``and``).
* ``GET /msi/token`` — the App Service managed-identity protocol (``api-version=2019-08-01``,
  ``resource``, optional ``client_id``; header ``X-IDENTITY-HEADER``), as used by
  ``azure.identity.aio.ManagedIdentityCredential`` when ``IDENTITY_ENDPOINT``/``IDENTITY_HEADER``
  are set.
* Graph requests need ``Authorization: Bearer <token>`` issued here for
  ``https://graph.microsoft.com``; otherwise 401 ``InvalidAuthenticationToken``.  ``premium=False``
  makes the report answer Graph's 403 ``Authentication_RequestFromNonPremiumTenantOrB2CTenant``;
  ``permissions`` (application roles granted) gates each endpoint like Graph does.
* Faults: ``sim.inject(path=..., fault=Throttle(1), times=2, page=3)``.

Objects are serialised once (lazily, or all at once with :meth:`GraphSimulator.warm`) and reused
until the tenant's ``revision`` (or a list's identity/length) changes, so a warm simulator costs
little CPU next to the client it is measuring.  It runs in the test's process: on a 2-core
machine its serialisation competes with the client for the GIL, so warm it before timing.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import re
import secrets
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from shared.permissions import GRAPH_PERMISSIONS
from sim import scope_server
from sim.tenant import COLLECTIONS, SIGN_INS, CollectionSpec, Tenant

logger = logging.getLogger(__name__)

GRAPH_RESOURCE = "https://graph.microsoft.com"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
MSI_PATH = "/msi/token"
MSI_API_VERSION = "2019-08-01"
JSON_TYPE = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
USER_READ_ROLES = frozenset({"User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"})
# What the app's identity is granted in Azure: exactly shared/permissions.py.
DEFAULT_PERMISSIONS = frozenset(GRAPH_PERMISSIONS)
GRAPH_VERSIONS = ("v1.0", "beta")
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


# ------------------------------------------------------------------------------------------------
# Faults
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Throttle:
    """429 ``TooManyRequests`` with ``Retry-After: retry_after`` (None: no header)."""

    retry_after: int | None = 1


@dataclass(frozen=True)
class ServerError:
    """A 5xx with a Graph error body (``Retry-After`` only when given)."""

    status: int = 503
    retry_after: int | None = None


@dataclass(frozen=True)
class Drop:
    """Close the connection: with no response at all, or after ``after_bytes`` of the body."""

    after_bytes: int | None = None


@dataclass(frozen=True)
class Slow:
    """Sleep ``seconds`` and then answer normally."""

    seconds: float


@dataclass(frozen=True)
class Malformed:
    """200 with a JSON content type and a body that is not what Graph sends."""

    body: bytes = b'{"@odata.context":"x","value":[{"id":"trunc'


@dataclass(frozen=True)
class ErrorResponse:
    """Any Graph-style error, e.g. ``ErrorResponse(403, "Authorization_RequestDenied")``."""

    status: int
    code: str
    message: str = "Simulated error."
    headers: tuple[tuple[str, str], ...] = ()


Fault = Throttle | ServerError | Drop | Slow | Malformed | ErrorResponse


@dataclass
class FaultRule:
    """An injected fault: matches requests whose path starts with ``path`` (and the ``page``-th
    page of a listing when ``page`` is set); lets ``after`` matching requests through first, then
    serves the fault ``remaining`` more times (None: forever)."""

    path: str
    fault: Fault
    remaining: int | None
    page: int | None = None
    after: int = 0
    served: int = 0


@dataclass
class RequestRecord:
    """One request as the simulator saw it (the ``Authorization`` value is never kept)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    status: int = 0  # 0: connection dropped
    fault: str | None = None
    page: int | None = None


@dataclass
class _Response:
    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = JSON_TYPE


class _BadQuery(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


# ------------------------------------------------------------------------------------------------
# $filter subset: clauses joined by "and", each <prop> eq|ne|ge|le|gt|lt <literal> (a datetime
# literal is unquoted, as Graph writes it) or <prop>/any(t: t eq '<value>') on a collection.
# ------------------------------------------------------------------------------------------------
_LITERAL = r"('(?:[^']|'')*'|true|false|null|-?\d+|\d{4}-\d{2}-\d{2}T[0-9:.]+Z)"
_CLAUSE = re.compile(rf"^\s*([A-Za-z][A-Za-z0-9]*)\s+(eq|ne|ge|le|gt|lt)\s+{_LITERAL}\s*$")
_ANY = re.compile(r"^\s*([A-Za-z][A-Za-z0-9]*)/any\(\s*(\w+)\s*:\s*\2\s+eq\s+('(?:[^']|'')*')\s*\)\s*$")
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T[0-9:.]+Z$")


def _instant(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _compare(value: Any, op: str, literal: Any) -> bool:
    if isinstance(literal, datetime):
        at = _instant(value) if isinstance(value, str) else None
        if at is None:
            return False
        value = at
    elif isinstance(value, str):
        value = value.casefold()
    if op == "eq":
        return bool(value == literal and type(value) is type(literal))
    if op == "ne":
        return bool(value != literal or type(value) is not type(literal))
    if value is None or literal is None or type(value) is not type(literal):
        return False
    return bool({"ge": value >= literal, "le": value <= literal, "gt": value > literal, "lt": value < literal}[op])


def _compile_filter(expression: str, spec: CollectionSpec) -> Callable[[dict[str, Any]], bool]:
    tests: list[tuple[str, str, Any]] = []
    for clause in re.split(r"\s+and\s+", expression.strip()):
        any_match = _ANY.match(clause)
        if any_match and any_match.group(1) in spec.properties:
            tests.append((any_match.group(1), "any", any_match.group(3)[1:-1].replace("''", "'").casefold()))
            continue
        m = _CLAUSE.match(clause)
        if not m or m.group(1) not in spec.properties:
            raise _BadQuery("Request_UnsupportedQuery", f"Unsupported or invalid query filter clause: {clause}")
        prop, op, raw = m.group(1), m.group(2), m.group(3)
        literal: Any
        if raw.startswith("'"):
            literal = raw[1:-1].replace("''", "'").casefold()
        elif _TIME.match(raw):
            literal = _instant(raw)
        else:
            literal = {"true": True, "false": False, "null": None}.get(raw, raw)
            if isinstance(literal, str):
                literal = int(literal)
        tests.append((prop, op, literal))

    def predicate(obj: dict[str, Any]) -> bool:
        if not isinstance(obj, dict):
            return False
        for prop, op, literal in tests:
            value = obj.get(prop)
            if op == "any":
                if not isinstance(value, list) or literal not in {str(v).casefold() for v in value}:
                    return False
            elif not _compare(value, op, literal):
                return False
        return True

    return predicate


# ------------------------------------------------------------------------------------------------
# The simulator
# ------------------------------------------------------------------------------------------------
class GraphSimulator:
    """Graph v1.0 + managed-identity token endpoint for one :class:`Tenant`, on 127.0.0.1."""

    def __init__(
        self,
        tenant: Tenant,
        *,
        page_size: int = 100,
        premium: bool = True,
        permissions: set[str] | frozenset[str] | None = None,
        token_lifetime: int = 3600,
        managed_identity_client_id: str | None = None,
    ) -> None:
        if not 1 <= page_size <= 999:
            raise ValueError("page_size must be between 1 and 999")
        self.tenant = tenant
        self.page_size = page_size
        self.premium = premium
        self.permissions: set[str] = set(DEFAULT_PERMISSIONS if permissions is None else permissions)
        self.token_lifetime = token_lifetime
        self.identity_header = secrets.token_urlsafe(24)
        self.system_client_id = managed_identity_client_id or str(uuid.uuid4())
        # Counters (read them from tests; reset_counters() clears them).
        self.request_counts: Counter[str] = Counter()
        self.requests: list[RequestRecord] = []
        self.tokens_issued = 0
        self.token_requests: list[dict[str, str | None]] = []
        self.throttles_served = 0
        self.faults_served: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._faults: list[FaultRule] = []
        self._tokens: dict[str, tuple[str, float]] = {}
        self._cache: dict[tuple[str, tuple[str, ...] | None, str], Any] = {}
        self._ids: dict[str, tuple[Any, dict[Any, list[dict[str, Any]]]]] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self.port = 0

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> GraphSimulator:
        if self._server is not None:
            return self
        handler = type("GraphHandler", (_Handler,), {"sim": self})
        server = _Server(("127.0.0.1", 0), handler)
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="graph-sim", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:  # end keep-alive connections still parked in their threads
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> GraphSimulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def root_url(self) -> str:
        if not self.port:
            raise RuntimeError("the simulator is not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1.0`` (what GraphReader takes as ``base_url``)."""
        return f"{self.root_url}/v1.0"

    @property
    def identity_endpoint(self) -> str:
        """Value for ``IDENTITY_ENDPOINT``."""
        return f"{self.root_url}{MSI_PATH}"

    # -- test controls --------------------------------------------------------------------------
    def inject(
        self, path: str, fault: Fault, times: int | None = 1, *, page: int | None = None, after: int = 0
    ) -> FaultRule:
        """Serve ``fault`` to the next ``times`` (None: all) requests whose path starts with
        ``path`` (e.g. ``"/v1.0/users"``).  ``page=3``: only requests for the 3rd page of a
        listing; ``after=2``: let the first 2 matching requests through first.  Rules are tried in
        injection order; one fault per request."""
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 or None")
        if after < 0:
            raise ValueError("after must be >= 0")
        rule = FaultRule(path=path, fault=fault, remaining=times, page=page, after=after)
        with self._lock:
            self._faults.append(rule)
        return rule

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def issue_token(self, resource: str = GRAPH_RESOURCE) -> str:
        """A bearer token as the token endpoint would issue it (for raw-HTTP tests and floors)."""
        token = "sim." + secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = (resource, time.time() + self.token_lifetime)
            self.tokens_issued += 1
        return token

    def revoke_tokens(self) -> None:
        """Invalidate every token issued so far (Graph then answers 401)."""
        with self._lock:
            self._tokens.clear()

    def reset_counters(self) -> None:
        with self._lock:
            self.request_counts.clear()
            self.requests.clear()
            self.tokens_issued = 0
            self.token_requests.clear()
            self.throttles_served = 0
            self.faults_served.clear()

    def warm(self, collection: str, select: Iterable[str] | None = None, filter_text: str = "") -> int:
        """Serialise a whole listing now (e.g. before a timed run) instead of on first request.

        ``collection`` is a key of :data:`sim.tenant.COLLECTIONS`; ``select`` as the client will
        send it.  Returns the number of objects ready.
        """
        spec = COLLECTIONS[collection]
        query = {"$select": ",".join(select)} if select is not None else {}
        chosen = _parse_select(query, spec)
        objects, encoded, fields = self._encoded(spec, chosen, filter_text)
        for i, obj in enumerate(objects):
            if encoded[i] is None:
                encoded[i] = _encode(obj, fields)
        self._by_id(spec)  # and the index of single-object GETs (a user's signInActivity)
        return len(objects)

    def queries(self, path: str) -> list[dict[str, str]]:
        """The query parameters of every request made to exactly ``path``."""
        with self._lock:
            return [dict(r.query) for r in self.requests if r.path == path]

    # -- internals (called from handler threads) ------------------------------------------------
    def _take_fault(self, path: str, page: int | None) -> Fault | None:
        with self._lock:
            for rule in self._faults:
                if not path.startswith(rule.path):
                    continue
                if rule.page is not None and rule.page != page:
                    continue
                if rule.after > 0:
                    rule.after -= 1
                    continue
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        self._faults.remove(rule)
                rule.served += 1
                self.faults_served[type(rule.fault).__name__] += 1
                if isinstance(rule.fault, Throttle):
                    self.throttles_served += 1
                return rule.fault
        return None

    def _check_token(self, authorization: str | None) -> str | None:
        """None when valid, else the 401 message Graph would give."""
        if not authorization or not authorization.startswith("Bearer "):
            return "Access token is empty."
        token = authorization[len("Bearer ") :].strip()
        with self._lock:
            entry = self._tokens.get(token)
        if entry is None:
            return "Access token validation failure. Invalid token."
        resource, expires = entry
        if resource.rstrip("/") != GRAPH_RESOURCE:
            return "Access token validation failure. Invalid audience."
        if expires <= time.time():
            return "Lifetime validation failed, the token is expired."
        return None

    def _objects(self, spec: CollectionSpec) -> tuple[list[dict[str, Any]], tuple[int, int, int]]:
        """A collection's objects, and the stamp the caches keyed on them compare: it changes when
        the tenant is touched or the list is replaced or resized."""
        objects = self.tenant.collections.get(spec.name, [])
        return objects, (self.tenant.revision, id(objects), len(objects))

    def _encoded(
        self, spec: CollectionSpec, select: tuple[str, ...] | None, filter_text: str, version: str = "v1.0"
    ) -> tuple[list[dict[str, Any]], list[bytes | None], tuple[str, ...] | None]:
        """(objects after $filter, their per-object JSON cache, projected fields)."""
        objects, stamp = self._objects(spec)
        key = (spec.name if version == "v1.0" else f"{spec.name}@{version}", select, filter_text)
        with self._lock:
            entry = self._cache.get(key)
            if entry is not None and entry[0] == stamp:
                return entry[1], entry[2], entry[3]
        if filter_text:
            predicate = _compile_filter(filter_text, spec)
            chosen = [o for o in objects if predicate(o)]
        else:
            chosen = list(objects)
        if spec.name == SIGN_INS:
            chosen = scope_server.sign_in_view(chosen, filter_text, version)
        fields = select if select is not None else spec.default_properties
        if fields is None and spec.beta_only and version == "v1.0":
            fields = tuple(sorted(spec.properties - spec.beta_only))
        encoded: list[bytes | None] = [None] * len(chosen)
        with self._lock:
            # Drop this collection's listings of an older tenant; other collections' stay warm
            # (their stamps differ from this one's: they are not stale).
            self._cache = {k: v for k, v in self._cache.items() if _collection(k[0]) != spec.name or v[0] == stamp}
            self._cache[key] = (stamp, chosen, encoded, fields)
        return chosen, encoded, fields

    def _list(self, spec: CollectionSpec, query: dict[str, str], version: str = "v1.0") -> _Response:
        select = _parse_select(query, spec, version)
        size = self.page_size
        if "$top" in query:
            try:
                size = int(query["$top"])
            except ValueError:
                size = -1
            if not 1 <= size <= spec.max_top:
                raise _BadQuery(
                    "Request_BadRequest",
                    f"Invalid page size specified: '{query['$top']}'. Must be between 1 and {spec.max_top} inclusive.",
                )
        offset = _decode_skiptoken(query.get("$skiptoken"), spec) if "$skiptoken" in query else 0
        objects, encoded, fields = self._encoded(spec, select, query.get("$filter", ""), version)
        end = min(offset + size, len(objects))
        for i in range(offset, end):
            if encoded[i] is None:
                encoded[i] = _encode(objects[i], fields)
        base = f"{self.root_url}/{version}"
        context = f"{base}/$metadata#{spec.path}"
        if select is not None:
            context += "(" + ",".join(select) + ")"
        parts = [b'{"@odata.context":', _ENCODER.encode(context).encode()]
        if end < len(objects):
            params = {k: v for k, v in query.items() if k != "$skiptoken"}
            params["$skiptoken"] = _encode_skiptoken(spec, end)
            link = f"{base}/{spec.path}?" + "&".join(f"{k}={quote(v, safe=_QUERY_SAFE)}" for k, v in params.items())
            parts += [b',"@odata.nextLink":', _ENCODER.encode(link).encode()]
        parts += [b',"value":[', b",".join(e for e in encoded[offset:end] if e is not None), b"]}"]
        return _Response(200, b"".join(parts))

    def _by_id(self, spec: CollectionSpec) -> dict[Any, list[dict[str, Any]]]:
        """A collection's objects by id (a list: a malformed tenant may repeat one), rebuilt when
        the tenant changes as the listing cache is: per-object calls of a 100,000-user tenant
        must not scan it each time."""
        objects, stamp = self._objects(spec)
        with self._lock:  # built once, not by every request thread that finds it missing
            entry = self._ids.get(spec.name)
            if entry is not None and entry[0] == stamp:
                return entry[1]
            by_id: dict[Any, list[dict[str, Any]]] = {}
            for obj in objects:
                if isinstance(obj, dict) and isinstance(obj.get("id"), str):
                    by_id.setdefault(obj["id"], []).append(obj)
            self._ids[spec.name] = (stamp, by_id)
            return by_id

    def _get_one(self, spec: CollectionSpec, object_id: str, query: dict[str, str]) -> _Response:
        select = _parse_select(query, spec)
        fields = select if select is not None else spec.default_properties
        if fields and "signInActivity" in fields:
            scope_server.check_sign_in_activity(self)
        for obj in self._by_id(spec).get(object_id, ()):
            if isinstance(obj, dict) and obj.get("id") == object_id:
                view = dict(obj) if fields is None else {f: obj.get(f) for f in fields}
                if "signInActivity" in view:
                    view["signInActivity"] = scope_server.sign_in_activity(obj)
                body = {"@odata.context": f"{self.base_url}/$metadata#{spec.path}/$entity", **view}
                return _Response(200, _ENCODER.encode(body).encode())
        raise _BadQuery(
            "Request_ResourceNotFound",
            f"Resource '{object_id}' does not exist or one of its queried reference-property objects are not present.",
            404,
        )

    def _authorize(self, spec: CollectionSpec) -> None:
        if spec.name == "users" and not (self.permissions & USER_READ_ROLES):
            raise _BadQuery("Authorization_RequestDenied", "Insufficient privileges to complete the operation.", 403)
        if spec.name == "userRegistrationDetails":
            if "AuditLog.Read.All" not in self.permissions:
                raise _BadQuery(
                    "Authentication_MSGraphPermissionMissing",
                    "Calling principal does not have required MSGraph permissions AuditLog.Read.All",
                    403,
                )
            if not self.premium:
                raise _BadQuery(
                    "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
                    "Neither tenant is B2C or tenant doesn't have premium license",
                    403,
                )
        if spec.permissions and not (self.permissions & set(spec.permissions)):
            raise _BadQuery(
                "Authorization_RequestDenied",
                f"Insufficient privileges to complete the operation. Requires {spec.permissions[0]}.",
                403,
            )
        if spec.premium and not self.premium:
            raise _BadQuery(
                "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
                "Neither tenant is B2C or tenant doesn't have premium license",
                403,
            )

    def _graph(self, method: str, path: str, query: dict[str, str], headers: dict[str, str]) -> _Response:
        problem = self._check_token(headers.get("authorization"))
        if problem is not None:
            raise _BadQuery("InvalidAuthenticationToken", problem, 401)
        if method != "GET":
            raise _BadQuery("Request_BadRequest", f"Method {method} is not supported here.", 405)
        version, _, relative = path.lstrip("/").partition("/")
        relative = relative.rstrip("/")
        methods = self._authentication_methods(relative)  # nudge emails: see the section below
        if methods is not None:
            return methods
        special = scope_server.route(self, version, relative, query)  # scope signals (sim/scope_server.py)
        if special is not None:
            return special
        for spec in COLLECTIONS.values():
            if version not in spec.versions:
                continue
            if relative == spec.path:
                self._authorize(spec)
                return self._list(spec, query, version)
            if relative.startswith(spec.path + "/") and "/" not in relative[len(spec.path) + 1 :]:
                self._authorize(spec)
                return self._get_one(spec, relative[len(spec.path) + 1 :], query)
        segment = relative.split("/")[0]
        raise _BadQuery("BadRequest", f"Resource not found for the segment '{segment}'.", 400)

    # -- nudge emails: per-user authentication methods, tokens for other resources -------------
    def check_token_for(self, authorization: str | None, resource: str) -> str | None:
        """None when ``authorization`` carries a live token issued here for ``resource`` (e.g.
        ``https://communication.azure.com`` for the ACS simulator), else why not."""
        if not authorization or not authorization.startswith("Bearer "):
            return "Access token is empty."
        with self._lock:
            entry = self._tokens.get(authorization[len("Bearer ") :].strip())
        if entry is None:
            return "Access token validation failure. Invalid token."
        if entry[0].rstrip("/") != resource.rstrip("/"):
            return "Access token validation failure. Invalid audience."
        if entry[1] <= time.time():
            return "Lifetime validation failed, the token is expired."
        return None

    def _authentication_methods(self, relative: str) -> _Response | None:
        """``GET /users/{id}/authentication/methods``, derived from the user's report row (so a
        test that registers someone in the report without a sync sees what Graph would say)."""
        parts = relative.split("/")
        if len(parts) != 4 or parts[0] != "users" or parts[2:] != ["authentication", "methods"]:
            return None
        if not self.permissions & METHODS_READ_ROLES:
            raise _BadQuery(
                "accessDenied", "Request Authorization failed: missing UserAuthenticationMethod.Read.All.", 403
            )
        user = self.tenant.user(parts[1])
        if user is None:
            raise _BadQuery("Request_ResourceNotFound", f"Resource '{parts[1]}' does not exist.", 404)
        row = self.tenant.registration(parts[1]) or {}
        body = {
            "@odata.context": f"{self.base_url}/$metadata#users('{parts[1]}')/authentication/methods",
            "value": _method_objects(row.get("methodsRegistered") or []),
        }
        return _Response(200, _ENCODER.encode(body).encode())

    def _token(self, query: dict[str, str], headers: dict[str, str]) -> _Response:
        if headers.get("x-identity-header") != self.identity_header:
            return _Response(
                401,
                _ENCODER.encode({"statusCode": 401, "message": "Missing or invalid X-IDENTITY-HEADER."}).encode(),
                content_type="application/json",
            )
        if query.get("api-version") != MSI_API_VERSION or not query.get("resource"):
            return _Response(
                400,
                _ENCODER.encode(
                    {"statusCode": 400, "message": "api-version=2019-08-01 and resource are required."}
                ).encode(),
                content_type="application/json",
            )
        resource = query["resource"]
        client_id = query.get("client_id")
        token = self.issue_token(resource)
        with self._lock:
            self.token_requests.append({"resource": resource, "client_id": client_id})
        body = {
            "access_token": token,
            "expires_on": str(int(time.time()) + self.token_lifetime),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": client_id or self.system_client_id,
        }
        return _Response(200, _ENCODER.encode(body).encode(), content_type="application/json")


_QUERY_SAFE = "$,'()*:@=/"

# --- nudge emails: the report's method names as /authentication/methods objects -----------------
METHODS_READ_ROLES = frozenset({"UserAuthenticationMethod.Read.All", "UserAuthenticationMethod.ReadWrite.All"})
_METHOD_TYPES = {
    "microsoftAuthenticatorPush": "microsoftAuthenticatorAuthenticationMethod",
    "microsoftAuthenticatorPasswordless": "microsoftAuthenticatorAuthenticationMethod",
    "softwareOneTimePasscode": "softwareOathAuthenticationMethod",
    "hardwareOneTimePasscode": "hardwareOathAuthenticationMethod",
    "mobilePhone": "phoneAuthenticationMethod",
    "alternateMobilePhone": "phoneAuthenticationMethod",
    "officePhone": "phoneAuthenticationMethod",
    "fido2": "fido2AuthenticationMethod",
    "passKeyDeviceBound": "fido2AuthenticationMethod",
    "passKeyDeviceBoundAuthenticator": "fido2AuthenticationMethod",
    "passKeyDeviceBoundWindowsHello": "fido2AuthenticationMethod",
    "windowsHelloForBusiness": "windowsHelloForBusinessAuthenticationMethod",
    "email": "emailAuthenticationMethod",
    "temporaryAccessPass": "temporaryAccessPassAuthenticationMethod",
}


def _method_objects(registered: list[str]) -> list[dict[str, str]]:
    """Every cloud user has a password; then one object per registered method type."""
    types = ["passwordAuthenticationMethod"]
    for name in registered:
        kind = _METHOD_TYPES.get(name)
        if kind and kind not in types:
            types.append(kind)
    return [
        {"@odata.type": f"#microsoft.graph.{kind}", "id": str(uuid.uuid5(uuid.NAMESPACE_OID, kind))} for kind in types
    ]


def _encode(obj: Any, fields: tuple[str, ...] | None) -> bytes:
    """One object as Graph writes it: compact UTF-8 JSON, selected properties (null if unset).

    Anything that is not a dict (a test planting garbage in a collection) is sent as it is.
    """
    view = obj if fields is None or not isinstance(obj, dict) else {f: obj.get(f) for f in fields}
    return _ENCODER.encode(view).encode("utf-8")


def _parse_select(query: dict[str, str], spec: CollectionSpec, version: str = "v1.0") -> tuple[str, ...] | None:
    raw = query.get("$select")
    if raw is None:
        return None
    names = [n.strip() for n in raw.split(",") if n.strip()]
    for name in names:
        if name not in spec.properties or (version == "v1.0" and name in spec.beta_only):
            raise _BadQuery("BadRequest", f"Could not find a property named '{name}' on type '{spec.entity_type}'.")
    if "id" not in names:
        names.insert(0, "id")
    return tuple(dict.fromkeys(names))


def _encode_skiptoken(spec: CollectionSpec, offset: int) -> str:
    raw = _ENCODER.encode({"c": spec.name, "o": offset, "n": secrets.token_hex(4)}).encode()
    return "RFNwdA" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_skiptoken(token: str | None, spec: CollectionSpec) -> int:
    try:
        if not token or not token.startswith("RFNwdA"):
            raise ValueError
        body = token[len("RFNwdA") :]
        data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        if data["c"] != spec.name or not isinstance(data["o"], int) or data["o"] < 0:
            raise ValueError
        return int(data["o"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise _BadQuery("Request_BadRequest", "Invalid paging token.") from None


def _collection(cache_name: str) -> str:
    """The collection a listing cache key names (``signIns@beta`` is ``signIns``)."""
    return cache_name.partition("@")[0]


def _page_number(spec_path: str, query: dict[str, str], page_size: int) -> int | None:
    """1-based page of a listing request (None when not a listing)."""
    for spec in COLLECTIONS.values():
        if spec_path in (f"/{v}/{spec.path}" for v in spec.versions):
            if "$skiptoken" not in query:
                return 1
            try:
                offset = _decode_skiptoken(query["$skiptoken"], spec)
                size = int(query.get("$top", page_size))
            except (_BadQuery, ValueError):
                return None
            return offset // max(size, 1) + 1
    return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: a client hanging up mid-response is normal in fault tests."""


class _Handler(BaseHTTPRequestHandler):
    sim: GraphSimulator
    protocol_version = "HTTP/1.1"
    server_version = "GraphSimulator/1.0"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """No request log on stderr."""

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without TCP_NODELAY, Nagle + delayed ACK
        # add ~40 ms to every response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.sim._lock:
            self.sim._connections.add(self.connection)

    def finish(self) -> None:
        with self.sim._lock:
            self.sim._connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        try:
            self._serve_one(method)
        except Exception:
            # A simulator bug must show up as a loud 500, not as a silently dropped connection.
            logger.exception("graph simulator failed on %s %s", method, urlsplit(self.path).path)
            response = _error(500, "generalException", "Simulator error (see log).", str(uuid.uuid4()), {})
            self._write(response, "", {})

    def _serve_one(self, method: str) -> None:
        sim = self.sim
        split = urlsplit(self.path)
        path = split.path
        query = {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        # Graph v1.0 accepts the OData options without their "$" too.
        for bare in ("select", "top", "filter", "skiptoken"):
            if bare in query and f"${bare}" not in query:
                query[f"${bare}"] = query.pop(bare)
        headers = {k.lower(): v for k, v in self.headers.items()}
        length = int(headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        page = _page_number(path, query, sim.page_size)
        record = RequestRecord(
            method=method,
            path=path,
            query=query,
            headers={k: v for k, v in headers.items() if k not in ("authorization", "x-identity-header")},
            page=page,
        )
        with sim._lock:
            sim.request_counts[path] += 1
            sim.requests.append(record)
        request_id = str(uuid.uuid4())
        fault = sim._take_fault(path, page)
        record.fault = type(fault).__name__ if fault is not None else None
        if isinstance(fault, Slow):
            time.sleep(fault.seconds)
            fault = None
        response = self._fault_response(fault, request_id, headers) if fault is not None else None
        if response is None and not isinstance(fault, Drop):
            try:
                if path == MSI_PATH and method == "GET":
                    response = sim._token(query, headers)
                elif path.startswith(("/v1.0/", "/beta/")):
                    response = sim._graph(method, path, query, headers)
                elif path.startswith(scope_server.ARM_PREFIX):
                    response = scope_server.arm(sim, method, path, query, headers, body)
                else:
                    raise _BadQuery("BadRequest", f"Unknown path {path}.", 404)
            except _BadQuery as bad:
                response = _error(bad.status, bad.code, bad.message, request_id, headers)
                if bad.status == 401:
                    response.headers.append(
                        (
                            "WWW-Authenticate",
                            'Bearer realm="", authorization_uri="https://login.microsoftonline.com/'
                            f'common/oauth2/authorize", client_id="{GRAPH_APP_ID}"',
                        )
                    )
        if isinstance(fault, Drop):
            self.close_connection = True
            if fault.after_bytes is not None:
                try:
                    normal = sim._graph(method, path, query, headers)
                except _BadQuery as bad:
                    normal = _error(bad.status, bad.code, bad.message, request_id, headers)
                self._write(normal, request_id, headers, truncate=fault.after_bytes)
            return
        assert response is not None
        record.status = response.status
        self._write(response, request_id, headers)

    def _fault_response(self, fault: Fault, request_id: str, headers: dict[str, str]) -> _Response | None:
        if isinstance(fault, Throttle):
            response = _error(
                429,
                "TooManyRequests",
                "Too many requests; retry after the time in the Retry-After header.",
                request_id,
                headers,
            )
            if fault.retry_after is not None:
                response.headers.append(("Retry-After", str(fault.retry_after)))
            return response
        if isinstance(fault, ServerError):
            response = _error(
                fault.status, "serviceNotAvailable", "The service is temporarily unavailable.", request_id, headers
            )
            if fault.retry_after is not None:
                response.headers.append(("Retry-After", str(fault.retry_after)))
            return response
        if isinstance(fault, Malformed):
            return _Response(200, fault.body)
        if isinstance(fault, ErrorResponse):
            response = _error(fault.status, fault.code, fault.message, request_id, headers)
            response.headers.extend(fault.headers)
            return response
        return None  # Drop / Slow are handled by the caller

    def _write(
        self, response: _Response, request_id: str, headers: dict[str, str], truncate: int | None = None
    ) -> None:
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            self.send_header("Cache-Control", "no-cache")
            self.send_header("request-id", request_id)
            self.send_header("client-request-id", headers.get("client-request-id", request_id))
            for name, value in response.headers:
                self.send_header(name, value)
            if truncate is not None:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(response.body if truncate is None else response.body[:truncate])
        except OSError:
            self.close_connection = True


def _error(status: int, code: str, message: str, request_id: str, headers: dict[str, str]) -> _Response:
    body = {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                "request-id": request_id,
                "client-request-id": headers.get("client-request-id", request_id),
            },
        }
    }
    return _Response(status, _ENCODER.encode(body).encode())
