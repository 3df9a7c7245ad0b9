"""The HTTP API end to end: the function objects of function_app.py, called with real requests,
reading several nights of history that real syncs wrote to Azurite."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import azure.functions as func
import pytest
from azure.data.tables.aio import TableServiceClient

from shared.adapters import table_schema as schema
from shared.adapters.history_reader import HistoryReader
from shared.adapters.state_store import StateStore
from shared.config import Settings
from shared.domain.readiness import needs_mfa
from shared.wiring import open_reader
from sim.azurite import Azurite
from tests.integration.history_fixtures import (
    EVE_ID,
    EVE_NAME,
    EVE_UPN,
    FORMULA_ID,
    OBRIEN_ID,
    OBRIEN_UPN,
    History,
    build_history,
)

Call = Callable[[func.HttpRequest], Awaitable[func.HttpResponse]]


@pytest.fixture(scope="module")
def history(azurite: Azurite) -> Iterator[History]:
    yield from build_history(azurite)


@pytest.fixture(scope="module")
def functions() -> dict[str, Call]:
    import function_app

    app = function_app.app
    app.functions_bindings = None  # get_functions() may be called only once per app object
    return {f.get_function_name(): f.get_user_function() for f in app.get_functions()}


@pytest.fixture(autouse=True)
def settings_env(history: History, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TABLES_CONNECTION_STRING", history.connection_string)
    monkeypatch.delenv("TABLES_ENDPOINT", raising=False)
    monkeypatch.delenv("ENFORCEMENT_WAVES", raising=False)


@pytest.fixture
async def reader(history: History) -> AsyncIterator[HistoryReader]:
    async with open_reader(Settings.from_env({"TABLES_CONNECTION_STRING": history.connection_string})) as r:
        yield r


def request(
    path: str, params: dict[str, str] | None = None, route: dict[str, str] | None = None, **headers: str
) -> func.HttpRequest:
    query = f"?{urlencode(params)}" if params else ""
    return func.HttpRequest(
        method="GET",
        url=f"https://monitor.example/api/{path}{query}",
        params=params or {},
        route_params=route or {},
        headers={k.replace("_", "-"): v for k, v in headers.items()},
        body=b"",
    )


async def call(fn: Call, req: func.HttpRequest, status: int = 200) -> func.HttpResponse:
    resp = await fn(req)
    assert resp.status_code == status, resp.get_body()[:500]
    assert resp.headers["Cache-Control"] == "no-store"
    return resp


def body(resp: func.HttpResponse) -> Any:
    assert resp.mimetype == "application/json"
    return json.loads(resp.get_body())


def rows(resp: func.HttpResponse) -> list[dict[str, str]]:
    assert resp.mimetype == "text/csv"
    return list(csv.DictReader(io.StringIO(resp.get_body().decode())))


async def follow(fn: Call, path: str, params: dict[str, str], key: str = "items", **kw: Any) -> list[Any]:
    """Every page of a list, following the continuation tokens; checks each page's size."""
    items: list[Any] = []
    token: str | None = None
    for _ in range(1000):
        page = body(await call(fn, request(path, {**params, **({"continuation": token} if token else {})}, **kw)))
        assert len(page[key]) <= int(params.get("limit", 100))
        items.extend(page[key])
        token = page["next"]
        if token is None:
            return items
    raise AssertionError("paging did not end")


# --- bindings ------------------------------------------------------------------------------------


def test_read_endpoints_are_get_routes_behind_function_keys() -> None:
    import function_app

    app = function_app.app
    app.functions_bindings = None
    triggers = {
        f.get_function_name(): json.loads(f.get_raw_bindings()[0]) for f in app.get_functions() if f.is_http_function()
    }
    routes = {name: t["route"] for name, t in triggers.items()}
    assert routes == {
        "history_user": "users/{id_or_upn}/history",
        "history_changes": "changes",
        "history_unregistered": "unregistered",
        "history_coverage": "coverage",
        "history_report": "report",
    }
    for t in triggers.values():
        assert t["authLevel"] == "FUNCTION" and t["methods"] == ["GET"]


# --- one user's history ----------------------------------------------------------------------------


async def test_history_by_object_id(functions: dict[str, Call], history: History) -> None:
    resp = await call(functions["history_user"], request("x", route={"id_or_upn": OBRIEN_ID.upper()}))
    answer = body(resp)
    assert answer["user"]["id"] == OBRIEN_ID
    assert answer["user"]["userPrincipalName"] == OBRIEN_UPN
    assert answer["user"]["isAdmin"] is True and answer["user"]["mfaRegistered"] is False
    assert answer["user"]["inScope"] is True
    kinds = [(e["night"], e["kind"]) for e in answer["events"]]
    assert kinds == [
        (history.nights[0], "new"),
        (history.nights[1], "registered"),
        (history.nights[2], "unregistered"),
    ]
    assert answer["events"][1]["before"]["mfaRegistered"] is False
    assert answer["events"][1]["after"]["mfaRegistered"] is True
    assert answer["next"] is None and "reminders" not in answer  # no reminder data: no key at all


@pytest.mark.parametrize(
    "ref",
    [
        EVE_UPN,  # as Graph spells it
        EVE_UPN.lower(),
        EVE_UPN.upper(),
        quote(EVE_UPN, safe="@"),  # still percent-encoded: %23EXT%23
    ],
)
async def test_history_by_guest_upn_in_any_case(functions: dict[str, Call], ref: str) -> None:
    answer = body(await call(functions["history_user"], request("x", route={"id_or_upn": ref})))
    assert answer["user"]["id"] == EVE_ID
    assert answer["user"]["displayName"] == EVE_NAME  # JSON carries the text as it is
    assert [e["kind"] for e in answer["events"]] == ["new"]


async def test_history_by_upn_with_an_apostrophe(functions: dict[str, Call]) -> None:
    answer = body(
        await call(functions["history_user"], request("x", route={"id_or_upn": "sean.o'brien@CONTOSO.example"}))
    )
    assert answer["user"]["id"] == OBRIEN_ID


@pytest.mark.parametrize(
    ("ref", "status"),
    [
        ("nobody@contoso.example", 404),
        ("12345678-aaaa-4bbb-8ccc-1234567890ab", 404),
        # OData injection attempts: malformed, or well-formed and then just a UPN nobody has
        ("x' or 'a' eq 'a", 400),
        ("x' or 'a' eq 'a@contoso.example", 400),
        ("x'or'a'eq'a@contoso.example", 404),
        ("a@contoso.example' or Upn ne '", 400),
        ("s|" + OBRIEN_ID, 400),
        ("", 400),
    ],
)
async def test_unknown_users_are_404_and_malformed_refs_400(functions: dict[str, Call], ref: str, status: int) -> None:
    answer = body(await call(functions["history_user"], request("x", route={"id_or_upn": ref}), status))
    assert answer["error"]["code"] in ("user_not_found", "bad_request")
    assert "user" not in answer


async def test_history_pages_with_a_token_bound_to_the_user(functions: dict[str, Call], reader: HistoryReader) -> None:
    fn = functions["history_user"]
    route = {"id_or_upn": OBRIEN_UPN}
    first = body(await call(fn, request("x", {"limit": "1"}, route)))
    assert len(first["events"]) == 1 and first["next"]
    events = await follow(fn, "x", {"limit": "1"}, key="events", route=route)
    expected = (await reader.user_history(OBRIEN_ID)).events  # type: ignore[union-attr]
    assert [(e["version"], e["kind"]) for e in events] == [(e.version, e.kind) for e in expected]
    # the token is refused for another user
    other = await fn(request("x", {"limit": "1", "continuation": first["next"]}, {"id_or_upn": EVE_ID}))
    assert other.status_code == 400 and "another query" in body(other)["error"]["message"]


async def test_history_as_csv(functions: dict[str, Call]) -> None:
    resp = await call(functions["history_user"], request("x", {"format": "csv"}, {"id_or_upn": OBRIEN_ID}))
    table = rows(resp)
    assert [r["kind"] for r in table] == ["new", "registered", "unregistered"]
    assert {r["type"] for r in table} == {"change"}
    assert json.loads(table[1]["after"])["mfaRegistered"] is True


# --- a night's changes -------------------------------------------------------------------------------


async def test_changes_default_to_the_latest_completed_night(functions: dict[str, Call], history: History) -> None:
    answer = body(await call(functions["history_changes"], request("changes")))
    assert answer["night"] == history.last_night
    assert answer["count"] == len(answer["items"]) > 0
    assert {c["night"] for c in answer["items"]} == {history.last_night}


async def test_changes_of_a_night_page_through_everything(
    functions: dict[str, Call], history: History, reader: HistoryReader
) -> None:
    night = history.nights[0]
    expected = await reader.changes_on(night)
    assert len(expected) > 200  # the first night: everyone is new
    items = await follow(functions["history_changes"], "changes", {"date": night, "limit": "50"})
    assert [(c["userId"], c["version"], c["kind"]) for c in items] == [(c.user_id, c.version, c.kind) for c in expected]


async def test_next_link_pins_the_night_and_drops_the_function_key(
    functions: dict[str, Call], history: History
) -> None:
    answer = body(await call(functions["history_changes"], request("changes", {"limit": "5", "code": "secret-key"})))
    link = urlsplit(answer["nextLink"])
    query = parse_qs(link.query)
    assert link.path == "/api/changes"
    assert query["date"] == [history.last_night]
    assert query["continuation"] == [answer["next"]]
    assert "code" not in query


async def test_changes_as_csv_by_accept_header_or_format(functions: dict[str, Call], history: History) -> None:
    fn = functions["history_changes"]
    by_header = await call(fn, request("changes", {"date": history.nights[1]}, accept="text/csv"))
    by_param = await call(fn, request("changes", {"date": history.nights[1], "format": "csv"}))
    assert by_header.get_body() == by_param.get_body()
    assert 'filename="changes-' in by_header.headers["Content-Disposition"]
    table = rows(by_header)
    assert table and {r["night"] for r in table} == {history.nights[1]}
    assert "registered" in {r["kind"] for r in table}


async def test_csv_pages_carry_the_token_in_a_header(functions: dict[str, Call], history: History) -> None:
    resp = await call(
        functions["history_changes"], request("changes", {"date": history.nights[0], "limit": "10"}, accept="text/csv")
    )
    assert len(rows(resp)) == 10
    token = resp.headers["X-Continuation-Token"]
    again = await call(
        functions["history_changes"],
        request("changes", {"date": history.nights[0], "limit": "10", "continuation": token, "format": "csv"}),
    )
    assert {r["userId"] for r in rows(again)}.isdisjoint({r["userId"] for r in rows(resp)})


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"date": "2026-13-01"}, "not a real date"),
        ({"date": "yesterday"}, "date must be"),
        ({"date": "2026-11-23' or PartitionKey ne '"}, "date must be"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"continuation": "garbage"}, "continuation token"),
        ({"continuation": "v1.eyJxIjoiY2hhbmdlcyJ9"}, "continuation token"),
        ({"format": "xml"}, "format"),
    ],
)
async def test_changes_bad_parameters_are_400(
    functions: dict[str, Call], params: dict[str, str], fragment: str
) -> None:
    answer = body(await call(functions["history_changes"], request("changes", params), 400))
    assert fragment in answer["error"]["message"]


async def test_a_token_from_another_night_is_refused(functions: dict[str, Call], history: History) -> None:
    fn = functions["history_changes"]
    token = body(await call(fn, request("changes", {"date": history.nights[0], "limit": "5"})))["next"]
    answer = body(await call(fn, request("changes", {"date": history.nights[1], "continuation": token}), 400))
    assert "another query" in answer["error"]["message"]
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    await call(fn, request("changes", {"date": history.nights[0], "continuation": tampered}), 400)


# --- the unregistered ----------------------------------------------------------------------------


async def expected_unregistered(history: History) -> dict[str, Any]:
    async with TableServiceClient.from_connection_string(history.connection_string) as service:
        users = await StateStore(service).load_users()  # the whole state, to compare with
    return {uid: u for uid, u in users.items() if needs_mfa(u)}


async def test_unregistered_lists_exactly_who_needs_mfa(functions: dict[str, Call], history: History) -> None:
    expected = await expected_unregistered(history)
    assert {EVE_ID, FORMULA_ID, OBRIEN_ID} <= set(expected)
    answer = body(await call(functions["history_unregistered"], request("unregistered", {"limit": "1000"})))
    assert answer["asOf"] == datetime.now(UTC).date().isoformat()
    assert {e["id"] for e in answer["items"]} == set(expected)
    obrien = next(e for e in answer["items"] if e["id"] == OBRIEN_ID)
    assert [w["id"] for w in obrien["waves"]] == ["phase1", "phase2"]
    assert obrien["daysLeft"] == min(w["daysLeft"] for w in obrien["waves"])
    assert obrien["daysLeft"] < 0  # the default waves are in the past: already enforced


async def test_unregistered_pages_cover_every_shard_once(functions: dict[str, Call], history: History) -> None:
    expected = await expected_unregistered(history)
    items = await follow(functions["history_unregistered"], "unregistered", {"limit": "2"})
    ids = [e["id"] for e in items]
    assert len(ids) == len(set(ids)) and set(ids) == set(expected)


async def test_unregistered_by_scope_and_wave(functions: dict[str, Call], history: History) -> None:
    fn = functions["history_unregistered"]
    admins = body(await call(fn, request("unregistered", {"scope": "admins", "limit": "1000"})))["items"]
    assert OBRIEN_ID in {e["id"] for e in admins} and all(e["isAdmin"] for e in admins)
    guests = body(await call(fn, request("unregistered", {"scope": "GUESTS", "limit": "1000"})))["items"]
    assert {EVE_ID, FORMULA_ID} <= {e["id"] for e in guests} and all(e["userType"] == "guest" for e in guests)
    phase2 = body(await call(fn, request("unregistered", {"wave": "phase2", "limit": "1000"})))
    assert phase2["wave"] == "phase2" and {e["id"] for e in phase2["items"]} == set(
        await expected_unregistered(history)
    )


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"scope": "everyone"}, "unknown scope"),
        ({"wave": "phase9"}, "unknown wave"),
        ({"wave": "' or ''='"}, "unknown wave"),
    ],
)
async def test_unregistered_unknown_scope_or_wave_is_400(
    functions: dict[str, Call], params: dict[str, str], fragment: str
) -> None:
    answer = body(await call(functions["history_unregistered"], request("unregistered", params), 400))
    assert fragment in answer["error"]["message"]


async def test_unregistered_csv_defuses_formulas(functions: dict[str, Call]) -> None:
    table = rows(
        await call(functions["history_unregistered"], request("unregistered", {"format": "csv", "limit": "1000"}))
    )
    formula = next(r for r in table if r["id"] == FORMULA_ID)
    assert formula["displayName"].startswith("'=HYPERLINK(")
    obrien = next(r for r in table if r["id"] == OBRIEN_ID)
    assert int(obrien["daysLeft:phase2"]) < 0  # numbers stay numbers, even negative
    assert {"daysLeft:phase1", "daysLeft:phase2"} <= set(table[0])


# --- coverage ------------------------------------------------------------------------------------------


async def test_coverage_series_and_its_pages(functions: dict[str, Call], history: History) -> None:
    fn = functions["history_coverage"]
    answer = body(await call(fn, request("coverage")))  # default: the last 90 nights
    assert [p["night"] for p in answer["items"]] == history.nights
    last = answer["items"][-1]
    assert last["registered"] + last["unregistered"] + last["unknown"] == last["enabled"]
    assert last["admins"]["unregistered"] >= 1  # O'Brien
    paged = await follow(fn, "coverage", {"from": history.nights[1], "to": history.nights[2], "limit": "1"})
    assert [p["night"] for p in paged] == history.nights[1:3]
    table = rows(await call(fn, request("coverage", {"format": "csv"})))
    assert [r["night"] for r in table] == history.nights


@pytest.mark.parametrize(
    "params", [{"from": "2026-11-30", "to": "2026-11-01"}, {"from": "2026-02-30"}, {"to": "tomorrow"}]
)
async def test_coverage_bad_ranges_are_400(functions: dict[str, Call], params: dict[str, str]) -> None:
    await call(functions["history_coverage"], request("coverage", params), 400)


# --- the report -------------------------------------------------------------------------------------


async def test_report_is_self_contained_html_with_names_escaped(functions: dict[str, Call], history: History) -> None:
    resp = await call(functions["history_report"], request("report"))
    assert resp.mimetype == "text/html"
    assert "script-src" not in resp.headers["Content-Security-Policy"]
    assert resp.headers["Content-Security-Policy"].startswith("default-src 'none'")
    html = resp.get_body().decode()
    assert "<script" not in html.lower()  # the <script> display name is text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; Ève" in html
    for reference in ("src=", "href=", "url(", "@import", "<link", "<iframe", "<object"):
        assert reference not in html  # nothing to fetch: it opens with no network
    assert "&#34;http://evil.example&#34;" in html  # a name that looks like a link is just text
    assert "<svg" in html and "Unregistered and in scope" in html
    assert f"on the night of {history.last_night}" in html
    assert "Reminders" not in html  # no reminder data, no section


@pytest.mark.parametrize("nights", ["0", "367", "x"])
async def test_report_nights_are_validated(functions: dict[str, Call], nights: str) -> None:
    await call(functions["history_report"], request("report", {"nights": nights}), 400)


async def test_before_the_first_sync_answers_are_clear(
    functions: dict[str, Call], monkeypatch: pytest.MonkeyPatch
) -> None:
    with Azurite() as empty:  # an account where the sync never ran: no tables at all
        monkeypatch.setenv("TABLES_CONNECTION_STRING", empty.connection_string)
        answer = body(await call(functions["history_changes"], request("changes"), 404))
        assert answer["error"]["code"] == "no_history"
        await call(functions["history_user"], request("x", route={"id_or_upn": EVE_ID}), 404)


async def test_user_state_rows_carry_a_lower_case_upn(history: History) -> None:
    async with TableServiceClient.from_connection_string(history.connection_string) as service:
        row = await StateStore(service).users.get_entity(schema.shard_of(EVE_ID), schema.state_key(EVE_ID))
    assert row["Upn"] == EVE_UPN and row["UpnLower"] == EVE_UPN.lower()
