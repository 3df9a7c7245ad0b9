"""GraphReader and the credential factory against the tenant simulator (real HTTP on 127.0.0.1)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from azure.core.exceptions import ClientAuthenticationError

from shared.adapters.credentials import build_credential
from shared.adapters.fingerprint_worker import FingerprintWorker
from shared.adapters.graph import (
    GRAPH_SCOPE,
    REGISTRATION_FIELDS,
    USER_FIELDS,
    GraphDataError,
    GraphError,
    GraphLicenceError,
    GraphPermissionError,
    GraphReader,
    Page,
)
from shared.domain import steady
from sim.graph_server import (
    GRAPH_RESOURCE,
    Drop,
    ErrorResponse,
    GraphSimulator,
    Malformed,
    ServerError,
    Slow,
    Throttle,
)
from sim.tenant import Tenant

pytest_plugins = ["tests.integration.graph_fixtures"]
pytestmark = pytest.mark.integration

USERS = "/v1.0/users"
REPORT = "/v1.0/reports/authenticationMethods/userRegistrationDetails"
MakeReader = Callable[..., GraphReader]


async def collect(pages: AsyncIterator[list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
    return [page async for page in pages]


def flat(pages: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [obj for page in pages for obj in page]


# ------------------------------------------------------------------------------------------------
# Managed identity and the credential factory
# ------------------------------------------------------------------------------------------------
async def test_managed_identity_credential_gets_token_from_simulator(identity_env: GraphSimulator) -> None:
    sim = identity_env
    credential = build_credential("managed_identity", None)
    try:
        token = await credential.get_token(GRAPH_SCOPE)
        again = await credential.get_token(GRAPH_SCOPE)
    finally:
        await credential.close()
    assert token.token.startswith("sim.")
    assert token.expires_on > time.time() + 3000
    assert again.token == token.token  # cached: one trip to the endpoint
    assert sim.tokens_issued == 1
    assert sim.token_requests == [{"resource": GRAPH_RESOURCE, "client_id": None}]
    (request,) = sim.requests
    assert request.path == "/msi/token" and request.query["api-version"] == "2019-08-01"
    # The token is good for Graph.
    async with httpx.AsyncClient() as client:
        r = await client.get(f"{sim.base_url}/users?$top=1", headers={"Authorization": f"Bearer {token.token}"})
    assert r.status_code == 200 and len(r.json()["value"]) == 1


async def test_user_assigned_identity_sends_client_id(identity_env: GraphSimulator) -> None:
    client_id = "6c7e1f2a-3b4c-4d5e-8f90-a1b2c3d4e5f6"
    credential = build_credential("managed_identity", client_id)
    try:
        await credential.get_token(GRAPH_SCOPE)
    finally:
        await credential.close()
    assert identity_env.token_requests == [{"resource": GRAPH_RESOURCE, "client_id": client_id}]


async def test_token_endpoint_rejects_a_wrong_identity_header(
    identity_env: GraphSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IDENTITY_HEADER", "not-the-secret")
    credential = build_credential("managed_identity", None)
    try:
        with pytest.raises(ClientAuthenticationError):
            await credential.get_token(GRAPH_SCOPE)
    finally:
        await credential.close()
    assert identity_env.tokens_issued == 0


async def test_build_credential_modes() -> None:
    from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential

    managed = build_credential("managed_identity", None)
    developer = build_credential("developer", None)
    try:
        assert isinstance(managed, ManagedIdentityCredential)
        assert isinstance(developer, DefaultAzureCredential)
        names = [type(c).__name__ for c in developer.credentials]
        assert "ManagedIdentityCredential" not in names
    finally:
        await managed.close()
        await developer.close()
    with pytest.raises(ValueError, match="managed_identity"):
        build_credential("client_secret", None)


# ------------------------------------------------------------------------------------------------
# Paging
# ------------------------------------------------------------------------------------------------
async def test_reader_pages_every_user_and_row_exactly_once(
    make_reader: MakeReader, graph_sim: GraphSimulator, small_tenant: Tenant
) -> None:
    reader = make_reader()
    user_pages = await collect(reader.users())
    row_pages = await collect(reader.registration_details())

    users, rows = flat(user_pages), flat(row_pages)
    assert sorted(u["id"] for u in users) == sorted(u["id"] for u in small_tenant.users)
    assert len(users) == len({u["id"] for u in users}) == 60
    assert sorted(r["id"] for r in rows) == sorted(r["id"] for r in small_tenant.user_registration_details)
    assert len(rows) == len({r["id"] for r in rows})
    assert all(len(p) <= 7 for p in user_pages + row_pages)
    assert len(user_pages) == math.ceil(60 / 7)
    assert len(row_pages) == math.ceil(len(rows) / 7)
    # Objects arrive exactly as the tenant holds them, restricted to the selected fields.
    assert all(set(u) == set(USER_FIELDS) for u in users)
    first = small_tenant.user(users[0]["id"])
    assert first is not None and users[0] == {k: first.get(k) for k in USER_FIELDS}
    row = small_tenant.registration(rows[0]["id"])
    assert row is not None and rows[0] == {k: row.get(k) for k in REGISTRATION_FIELDS}

    stats = reader.stats
    assert stats.pages == len(user_pages) + len(row_pages)
    assert stats.requests == stats.pages == graph_sim.request_counts[USERS] + graph_sim.request_counts[REPORT]
    assert stats.throttled == stats.server_errors == 0
    assert graph_sim.tokens_issued == 1  # one managed-identity token for every page


async def test_select_and_top_are_sent_and_nextlinks_followed(
    make_reader: MakeReader, graph_sim: GraphSimulator
) -> None:
    reader = make_reader()
    await collect(reader.users())
    await collect(reader.registration_details())
    user_queries, report_queries = graph_sim.queries(USERS), graph_sim.queries(REPORT)
    for queries, fields in ((user_queries, USER_FIELDS), (report_queries, REGISTRATION_FIELDS)):
        assert all(q["$select"].split(",") == list(fields) for q in queries)
        assert all(q["$top"] == "7" for q in queries)
        assert "$skiptoken" not in queries[0]
        assert all("$skiptoken" in q for q in queries[1:])
        assert len({q["$skiptoken"] for q in queries[1:]}) == len(queries) - 1


async def test_pages_are_fetched_lazily(make_reader: MakeReader, graph_sim: GraphSimulator) -> None:
    pages = make_reader().users()
    first = await anext(pages)
    assert len(first) == 7
    assert graph_sim.request_counts[USERS] == 1  # no prefetch: one page held at a time
    await anext(pages)
    assert graph_sim.request_counts[USERS] == 2
    await pages.aclose()


async def test_with_a_fingerprint_worker_pages_come_fingerprinted_and_the_next_is_read_meanwhile(
    make_reader: MakeReader, graph_sim: GraphSimulator
) -> None:
    plain_users = await collect(make_reader().users())
    plain_rows = await collect(make_reader().registration_details())
    before = dict(graph_sim.request_counts)
    worker = await FingerprintWorker.start()
    assert worker is not None
    try:
        reader = make_reader()
        pages = reader.users(fingerprints=worker)
        first = await anext(pages)
        assert graph_sim.request_counts[USERS] - before[USERS] == 2  # the second page is read meanwhile
        users = [first] + [page async for page in pages]
        rows = await collect(reader.registration_details(fingerprints=worker))
        for got, plain, kind in ((users, plain_users, steady.USERS), (rows, plain_rows, steady.REPORT)):
            assert got == plain  # the same objects, page for page
            for page in got:
                assert isinstance(page, Page) and page.prints is not None
                ids = [o["id"] for o in page]
                expected = [steady.report_fingerprint(dict(o)) for o in page] if kind == steady.REPORT else None
                assert await page.prints == (ids, expected or steady.fingerprints(page))
        assert reader.stats.pages == len(users) + len(rows)
        assert graph_sim.request_counts[USERS] - before[USERS] == len(plain_users)  # nothing read twice
        assert graph_sim.request_counts[REPORT] - before[REPORT] == len(plain_rows)
    finally:
        await worker.aclose()


# ------------------------------------------------------------------------------------------------
# Faults
# ------------------------------------------------------------------------------------------------
async def test_throttling_is_retried_after_retry_after_and_counted(
    make_reader: MakeReader, graph_sim: GraphSimulator
) -> None:
    graph_sim.inject(USERS, Throttle(retry_after=1), times=2, page=3)
    reader = make_reader(max_retries=3)
    started = time.monotonic()
    users = flat(await collect(reader.users()))
    elapsed = time.monotonic() - started
    assert len({u["id"] for u in users}) == 60
    assert elapsed >= 2.0  # Retry-After: 1, twice
    assert graph_sim.throttles_served == 2
    # The counting middleware sits inside the retry loop: it saw both 429s and the retry.
    assert reader.stats.throttled == 2
    assert reader.stats.pages == 9
    assert reader.stats.requests == 11 == graph_sim.request_counts[USERS]
    third_page = [r for r in graph_sim.requests if r.path == USERS and r.page == 3]
    assert [r.status for r in third_page] == [429, 429, 200]


async def test_server_error_storm_raises_after_max_retries(make_reader: MakeReader, graph_sim: GraphSimulator) -> None:
    graph_sim.inject(USERS, ServerError(503, retry_after=1), times=None, page=2)
    reader = make_reader(max_retries=2)
    pages = reader.users()
    assert len(await anext(pages)) == 7
    with pytest.raises(GraphError) as caught:
        await anext(pages)
    error = caught.value
    assert type(error) is GraphError
    assert error.status == 503 and error.code == "serviceNotAvailable"
    assert "/users" in str(error) and "503" in str(error) and "2 retries" in str(error)
    assert error.request_id and error.request_id in str(error)
    assert reader.stats.server_errors == 3  # first try + 2 retries
    assert graph_sim.request_counts[USERS] == 4


async def test_connection_drops_are_retried(make_reader: MakeReader, graph_sim: GraphSimulator) -> None:
    graph_sim.inject(USERS, Drop(), times=1, after=1)  # no response at all, for page 2
    graph_sim.inject(USERS, Drop(after_bytes=200), times=1, page=5)  # cut mid-body
    reader = make_reader()
    users = flat(await collect(reader.users()))
    assert len({u["id"] for u in users}) == 60
    assert reader.stats.connection_errors == 2
    assert graph_sim.faults_served["Drop"] == 2
    dropped = [r.page for r in graph_sim.requests if r.fault == "Drop"]
    assert dropped == [2, 5]


async def test_persistent_drops_raise_graph_error(make_reader: MakeReader, graph_sim: GraphSimulator) -> None:
    graph_sim.inject(USERS, Drop(after_bytes=10), times=None)
    reader = make_reader(max_retries=2)
    with pytest.raises(GraphError, match=r"/users.*connection error.*2 retries"):
        await collect(reader.users())
    assert graph_sim.request_counts[USERS] == 3
    assert reader.stats.connection_errors == 3


async def test_timeouts_are_retried(make_reader: MakeReader, graph_sim: GraphSimulator) -> None:
    graph_sim.inject(REPORT, Slow(1.0), times=1, page=1)
    reader = make_reader(timeout_seconds=0.3)
    rows = flat(await collect(reader.registration_details()))
    assert len(rows) == len(graph_sim.tenant.user_registration_details)
    assert reader.stats.connection_errors == 1


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b'{"value": [{"id": "trunc', "not JSON"),
        (b'{"error": "no value here"}', "no 'value' list"),
        (b'{"value": {"id": "not a list"}}', "no 'value' list"),
        (
            b'{"value": [], "@odata.nextLink": "https://attacker.example/v1.0/users?$skiptoken=x"}',
            "nextLink does not point at",
        ),
    ],
)
async def test_malformed_pages_raise_graph_data_error(
    make_reader: MakeReader, graph_sim: GraphSimulator, body: bytes, match: str
) -> None:
    graph_sim.inject(USERS, Malformed(body), times=1, page=2)
    pages = make_reader().users()
    assert len(await anext(pages)) == 7
    with pytest.raises(GraphDataError, match=match) as caught:
        await anext(pages)
    assert "/users page 2" in str(caught.value)
    assert graph_sim.request_counts[USERS] == 2  # never retried, never followed elsewhere


async def test_items_are_passed_through_for_the_caller_to_validate(
    make_reader: MakeReader, graph_sim: GraphSimulator
) -> None:
    graph_sim.tenant.user_registration_details.append("not an object")  # type: ignore[arg-type]
    graph_sim.tenant.touch()
    rows = flat(await collect(make_reader().registration_details()))
    last: object = rows[-1]
    assert last == "not an object"
    assert len(rows) == len(graph_sim.tenant.user_registration_details)


async def test_non_premium_tenant_raises_licence_error(make_reader: MakeReader, graph_sim: GraphSimulator) -> None:
    graph_sim.premium = False
    reader = make_reader()
    with pytest.raises(GraphLicenceError) as caught:
        await collect(reader.registration_details())
    message = str(caught.value)
    assert "Authentication_RequestFromNonPremiumTenantOrB2CTenant" in message
    assert "P1 or P2" in message and "403" in message
    assert caught.value.status == 403
    # Users still work without the premium licence.
    assert len(flat(await collect(reader.users()))) == 60


async def test_missing_permissions_name_the_permission(make_reader: MakeReader, graph_sim: GraphSimulator) -> None:
    graph_sim.permissions = {"User.Read.All"}
    reader = make_reader()
    with pytest.raises(GraphPermissionError) as report_error:
        await collect(reader.registration_details())
    assert report_error.value.permission == "AuditLog.Read.All"
    assert "Authentication_MSGraphPermissionMissing" in str(report_error.value)

    graph_sim.permissions = set()
    with pytest.raises(GraphPermissionError) as users_error:
        await collect(reader.users())
    assert users_error.value.permission == "User.Read.All"
    assert "Authorization_RequestDenied" in str(users_error.value)
    assert "User.Read.All" in str(users_error.value)


async def test_rejected_token_is_a_graph_error(make_reader: MakeReader, graph_sim: GraphSimulator) -> None:
    reader = make_reader()
    assert len(flat(await collect(reader.users()))) == 60  # the credential now caches a token
    graph_sim.revoke_tokens()
    with pytest.raises(GraphError) as caught:
        await collect(reader.users())
    assert caught.value.status == 401 and caught.value.code == "InvalidAuthenticationToken"
    assert "401" in str(caught.value)
    assert "sim." not in str(caught.value)  # never the token


async def test_other_graph_errors_keep_code_and_request_id(make_reader: MakeReader, graph_sim: GraphSimulator) -> None:
    graph_sim.inject(USERS, ErrorResponse(400, "Request_BadRequest", "Invalid filter clause"), times=1)
    with pytest.raises(GraphError) as caught:
        await collect(make_reader().users())
    assert type(caught.value) is GraphError
    assert caught.value.code == "Request_BadRequest" and "Invalid filter clause" in str(caught.value)
    assert caught.value.request_id


@pytest.mark.parametrize(
    "url",
    ["http://graph.microsoft.com/v1.0", "http://10.0.0.5:8080/v1.0", "ftp://127.0.0.1/v1.0", "127.0.0.1/v1.0"],
)
async def test_refuses_plain_http_except_loopback(mi_credential: Any, url: str) -> None:
    with pytest.raises(ValueError):
        GraphReader(mi_credential, base_url=url)


async def test_accepts_https_and_loopback_http(mi_credential: Any) -> None:
    for url in ("https://graph.microsoft.com/v1.0", "http://localhost:1/v1.0", "http://[::1]:1/v1.0/"):
        await GraphReader(mi_credential, base_url=url).aclose()


# ------------------------------------------------------------------------------------------------
# The simulator speaks Graph (raw HTTP, no SDK)
# ------------------------------------------------------------------------------------------------
def test_simulator_answers_like_graph(graph_sim: GraphSimulator) -> None:
    base = graph_sim.base_url
    with httpx.Client() as client:
        missing = client.get(f"{base}/users")
        assert missing.status_code == 401
        assert missing.json()["error"]["code"] == "InvalidAuthenticationToken"
        assert missing.headers["www-authenticate"].startswith("Bearer")

        auth = {"Authorization": f"Bearer {graph_sim.issue_token()}"}
        wrong_audience = {"Authorization": f"Bearer {graph_sim.issue_token('https://management.azure.com')}"}
        assert client.get(f"{base}/users", headers=wrong_audience).status_code == 401

        default = client.get(f"{base}/users", headers=auth).json()
        assert "userType" not in default["value"][0]  # not in Graph's default property set
        assert len(default["value"]) == 7 and default["@odata.nextLink"].startswith(base + "/users?")

        bad_select = client.get(
            f"{base}/reports/authenticationMethods/userRegistrationDetails?$select=defaultMfaMethod", headers=auth
        )
        assert bad_select.status_code == 400 and "defaultMfaMethod" in bad_select.json()["error"]["message"]
        assert client.get(f"{base}/users?$top=1000", headers=auth).status_code == 400
        assert client.get(f"{base}/users?$skiptoken=forged", headers=auth).status_code == 400

        guests = client.get(f"{base}/users?$filter=userType eq 'Guest'&$select=userType&$top=999", headers=auth)
        expected = sum(u["userType"] == "Guest" for u in graph_sim.tenant.users)
        assert [u["userType"] for u in guests.json()["value"]] == ["Guest"] * expected

        unsupported = client.get(f"{base}/users?$filter=startswith(displayName,'A')", headers=auth)
        assert unsupported.status_code == 400
        assert unsupported.json()["error"]["code"] == "Request_UnsupportedQuery"

        one = graph_sim.tenant.users[0]
        single = client.get(f"{base}/users/{one['id']}?$select=mail", headers=auth).json()
        assert single["id"] == one["id"] and single["mail"] == one["mail"]
        assert client.get(f"{base}/users/nope", headers=auth).status_code == 404

        # A real nextLink keeps $select/$top and pages on.
        page = client.get(f"{base}/users?$select=displayName&$top=25", headers=auth).json()
        following = client.get(page["@odata.nextLink"], headers=auth).json()
        assert set(following["value"][0]) == {"id", "displayName"} and len(following["value"]) == 25
        assert "@odata.nextLink" not in client.get(following["@odata.nextLink"], headers=auth).json()


async def test_warmed_simulator_serves_the_same_pages(make_reader: MakeReader, graph_sim: GraphSimulator) -> None:
    assert graph_sim.warm("users", USER_FIELDS) == 60
    assert graph_sim.warm("userRegistrationDetails", REGISTRATION_FIELDS) == len(
        graph_sim.tenant.user_registration_details
    )
    users = flat(await collect(make_reader().users()))
    assert [u["id"] for u in users] == [u["id"] for u in graph_sim.tenant.users]
    assert users[5] == {k: graph_sim.tenant.users[5].get(k) for k in USER_FIELDS}


def test_simulator_serves_changes_after_the_tenant_changes(graph_sim: GraphSimulator) -> None:
    auth = {"Authorization": f"Bearer {graph_sim.issue_token()}"}
    url = f"{graph_sim.base_url}/users?$select=displayName&$top=999"
    before = httpx.get(url, headers=auth).json()["value"]
    graph_sim.tenant.users[0]["displayName"] = "Renamed <i>User</i>"
    graph_sim.tenant.touch()  # in-place edit: tell the simulator's page cache
    graph_sim.tenant.remove_users([graph_sim.tenant.users[1]["id"]])
    after = httpx.get(url, headers=auth).json()["value"]
    assert len(after) == len(before) - 1
    assert after[0]["displayName"] == "Renamed <i>User</i>"
    assert json.loads(json.dumps(after[0]))["displayName"] == "Renamed <i>User</i>"


def test_listing_other_collections_keeps_a_warmed_listing_warm(graph_sim: GraphSimulator) -> None:
    """A timed run reads the groups, roles and sign-in logs before the directory: listing them
    again under a new tenant revision must drop only their own stale pages, not the directory's
    that ``warm`` has just serialised."""
    auth = {"Authorization": f"Bearer {graph_sim.issue_token()}"}
    groups = f"{graph_sim.base_url}/groups?$select=id,displayName"
    assert httpx.get(groups, headers=auth).status_code == 200  # last night's listing
    graph_sim.tenant.touch()  # the tenant changed overnight: every listing above is stale
    assert graph_sim.warm("users", USER_FIELDS) == 60
    assert graph_sim.warm("userRegistrationDetails", REGISTRATION_FIELDS) > 0
    assert httpx.get(groups, headers=auth).status_code == 200  # tonight's run starts
    names = sorted(key[0] for key in graph_sim._cache)
    assert names == ["groups", "userRegistrationDetails", "users"]
    unserialised = [sum(e is None for e in entry[2]) for key, entry in graph_sim._cache.items() if key[0] != "groups"]
    assert unserialised == [0, 0]
