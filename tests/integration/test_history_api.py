"""The HTTP API end to end: the function objects of function_app.py, called with real requests,
reading several nights of history that real syncs wrote to Azurite, and the reminders real nudge
runs recorded (through the ACS simulator) after the last two of them."""

from __future__ import annotations

import csv
import html as htmllib
import io
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import azure.functions as func
import pytest
from azure.data.tables.aio import TableServiceClient

from shared.adapters import table_schema as schema
from shared.adapters.history_reader import HistoryReader
from shared.adapters.reminder_ledger import ReminderLedger
from shared.adapters.state_store import StateStore
from shared.config import Settings
from shared.domain.readiness import needs_mfa
from shared.wiring import open_reader
from sim.azurite import Azurite
from tests.integration.history_fixtures import (
    EVE_ID,
    EVE_NAME,
    EVE_UPN,
    FORMULA_EMAIL,
    FORMULA_ID,
    FORMULA_NAME,
    NUDGE_DELAY,
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
    assert answer["next"] is None
    # the nudge runs after the third and fourth nights reminded him of one wave each (one a day)
    assert [(r["wave"], r["step"]) for r in answer["reminders"]] == [("phase1", "after-1"), ("phase2", "after-1")]


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
    assert [r["kind"] for r in table if r["type"] == "change"] == ["new", "registered", "unregistered"]
    assert json.loads(table[1]["after"])["mfaRegistered"] is True


# --- reminders in a user's history -------------------------------------------------------------------


def at(night: str) -> str:
    """When the fixture's nudge run after ``night``'s sync handed its emails to ACS."""
    return (datetime.fromisoformat(f"{night}T02:00:00+00:00") + NUDGE_DELAY).isoformat()


async def ledger_rows(history: History, user_id: str) -> list[Any]:
    async with TableServiceClient.from_connection_string(history.connection_string) as service:
        return await ReminderLedger(service).reminders_of(user_id)


async def test_history_shows_every_reminder_and_its_outcome(functions: dict[str, Call], history: History) -> None:
    answer = body(await call(functions["history_user"], request("x", route={"id_or_upn": OBRIEN_UPN})))
    first, second = answer["reminders"]
    assert first == {
        "at": at(history.nights[2]),
        "userId": OBRIEN_ID,
        "userPrincipalName": OBRIEN_UPN,
        "displayName": "Seán O'Brien",
        "wave": "phase1",
        "waveDate": "2025-09-30",
        "step": "after-1",
        "stage": "now required (first notice)",
        "outcome": "sent",  # settled by the next run from ACS's operation status
        "detail": "",
        "recipient": OBRIEN_UPN,
    }
    assert (second["at"], second["wave"], second["outcome"]) == (at(history.nights[3]), "phase2", "accepted")
    # exactly what the ledger holds, row for row
    ledger = await ledger_rows(history, OBRIEN_ID)
    assert sorted((r["step"], r["wave"], r["outcome"]) for r in answer["reminders"]) == sorted(
        (e.key.step.id, e.key.wave_id, e.status.value) for e in ledger
    )


async def test_a_failed_reminder_says_why(functions: dict[str, Call], history: History) -> None:
    answer = body(await call(functions["history_user"], request("x", route={"id_or_upn": FORMULA_ID})))
    failed = answer["reminders"][0]
    assert (failed["outcome"], failed["recipient"], failed["at"]) == ("failed", FORMULA_EMAIL, at(history.nights[2]))
    assert FORMULA_EMAIL in failed["detail"] and "InvalidRecipients" in failed["detail"]
    assert failed["displayName"] == FORMULA_NAME  # JSON carries the text as it is


async def test_history_csv_is_one_timeline_with_the_reminders(functions: dict[str, Call], history: History) -> None:
    table = rows(await call(functions["history_user"], request("x", {"format": "csv"}, {"id_or_upn": OBRIEN_ID})))
    assert [(r["type"], r["kind"] or r["step"]) for r in table] == [
        ("change", "new"),
        ("change", "registered"),
        ("change", "unregistered"),
        ("reminder", "after-1"),  # an hour after the night he lost his methods
        ("reminder", "after-1"),
    ]
    assert [r["night"] for r in table[:3]] == history.nights[:3]
    assert [(r["wave"], r["outcome"], r["at"]) for r in table[3:]] == [
        ("phase1", "sent", at(history.nights[2])),
        ("phase2", "accepted", at(history.nights[3])),
    ]
    formula = rows(await call(functions["history_user"], request("x", {"format": "csv"}, {"id_or_upn": FORMULA_ID})))
    reminder = next(r for r in formula if r["type"] == "reminder")
    assert reminder["displayName"].startswith("'=HYPERLINK(")  # a reminder row is defused like any other


async def test_reminders_come_with_the_first_page(functions: dict[str, Call]) -> None:
    fn, route = functions["history_user"], {"id_or_upn": OBRIEN_ID}
    first = body(await call(fn, request("x", {"limit": "2"}, route)))
    assert len(first["reminders"]) == 2 and first["next"]
    second = body(await call(fn, request("x", {"limit": "2", "continuation": first["next"]}, route)))
    assert "reminders" not in second and [e["kind"] for e in second["events"]] == ["unregistered"]
    csv_second = rows(
        await call(fn, request("x", {"limit": "2", "continuation": first["next"], "format": "csv"}, route))
    )
    assert [r["type"] for r in csv_second] == ["change"]


async def test_a_user_never_reminded_has_an_empty_list(functions: dict[str, Call], history: History) -> None:
    async with TableServiceClient.from_connection_string(history.connection_string) as service:
        users = await StateStore(service).load_users()
    registered = next(uid for uid, u in users.items() if u.record.mfa_registered and not u.deleted)
    answer = body(await call(functions["history_user"], request("x", route={"id_or_upn": registered})))
    assert answer["reminders"] == []


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


async def coverage_rows(history: History, first: str, last: str) -> dict[str, dict[str, Any]]:
    async with TableServiceClient.from_connection_string(history.connection_string) as service:
        runs = service.get_table_client(schema.RUNS_TABLE)
        query = runs.query_entities(
            "PartitionKey eq @pk and RowKey ge @first and RowKey le @last",
            parameters={"pk": schema.COVERAGE_PARTITION, "first": first, "last": last},
        )
        return {str(e["RowKey"]): dict(e) async for e in query}


async def test_coverage_carries_the_in_scope_figures_per_phase(functions: dict[str, Call], history: History) -> None:
    fn = functions["history_coverage"]
    items = body(await call(fn, request("coverage")))["items"]
    stored = await coverage_rows(history, history.nights[0], history.last_night)
    for item in items:
        row = stored[item["night"]]
        for phase, prefix in (("phase1", "Phase1"), ("phase2", "Phase2")):
            figures = item["phases"][phase]
            assert figures == {
                "users": row[f"{prefix}InScope"],
                "registered": row[f"{prefix}Registered"],
                "unregistered": row[f"{prefix}Unregistered"],
                "unknown": row[f"{prefix}Unknown"],
                "percent": row.get(f"{prefix}CoveragePercent"),
            }
            assert figures["registered"] + figures["unregistered"] + figures["unknown"] == figures["users"]
            assert figures["users"] <= item["inScope"]["users"] <= item["enabled"]
    # the last night's phase figures are the unregistered list of each phase, counted by the sync
    last = items[-1]
    for phase in ("phase1", "phase2"):
        listed = body(await call(functions["history_unregistered"], request("u", {"scope": phase, "limit": "1000"})))
        assert last["phases"][phase]["unregistered"] == len(listed["items"]) > 0
    table = rows(await call(fn, request("coverage", {"format": "csv"})))
    assert [int(r["phase2Unregistered"]) for r in table] == [i["phases"]["phase2"]["unregistered"] for i in items]


async def test_coverage_of_nights_recorded_before_the_scope_figures(
    functions: dict[str, Call], history: History
) -> None:
    """A coverage row written before per-phase figures existed: null, never made-up zeros."""
    async with TableServiceClient.from_connection_string(history.connection_string) as service:
        runs = service.get_table_client(schema.RUNS_TABLE)
        row = await runs.get_entity(schema.COVERAGE_PARTITION, history.last_night)
        old = {k: v for k, v in row.items() if not k.startswith(("Phase", "InScope", "Scope", "Excluded"))}
        await runs.upsert_entity({**old, "RowKey": "2020-01-01"})
    fn = functions["history_coverage"]
    (item,) = body(await call(fn, request("coverage", {"from": "2020-01-01", "to": "2020-01-31"})))["items"]
    assert item["phases"] is None and item["inScope"] is None and item["registered"] == row["Registered"]
    (cells,) = rows(await call(fn, request("coverage", {"from": "2020-01-01", "to": "2020-01-31", "format": "csv"})))
    assert cells["phase1Unregistered"] == "" and cells["registered"] == str(row["Registered"])


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
    assert f"<h2>Reminders on {history.last_night} (UTC)</h2>" in html


def reminder_rows(html: str) -> list[list[str]]:
    """The cells of the report's reminders table, as text (tags dropped, entities unescaped)."""
    section = html[html.index("<h2>Reminders") :]
    section = section[: section.index("</table>")]
    return [
        [htmllib.unescape(re.sub(r"<[^>]+>", "", cell)) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row)]
        for row in re.findall(r"<tr>(<td.*?)</tr>", section, flags=re.S)
    ]


async def test_report_shows_last_nights_reminder_outcomes(functions: dict[str, Call], history: History) -> None:
    html = (await call(functions["history_report"], request("report"))).get_body().decode()
    async with TableServiceClient.from_connection_string(history.connection_string) as service:
        outcomes = await ReminderLedger(service).outcomes_on(date.fromisoformat(history.last_night))
    assert outcomes and history.nudges[history.last_night].sent > 0
    table = reminder_rows(html)
    assert len(table) == len(outcomes)  # the whole day: every reminder whose status changed on it
    for status in {e.status.value for e in outcomes}:
        count = sum(e.status.value == status for e in outcomes)
        assert f"<li>{status}: {count}</li>" in html

    def of(name: str) -> list[list[str]]:
        return [cells for cells in table if cells[1] == name]

    # O'Brien: the reminder sent yesterday (settled today, from ACS's status) and today's (not yet)
    assert [cells[:6] for cells in of("Seán O'Brien")] == [
        [at(night)[:16].replace("T", " "), "Seán O'Brien", OBRIEN_UPN, wave, "now required (first notice)", outcome]
        for night, wave, outcome in ((history.nights[2], "phase1", "sent"), (history.nights[3], "phase2", "accepted"))
    ]
    assert {cells[2] for cells in of(EVE_NAME)} == {EVE_UPN}
    failed = [cells for cells in of(FORMULA_NAME) if cells[5] == "failed"]
    assert len(failed) == 1 and FORMULA_EMAIL in failed[0][6]  # ACS's reason
    # names from the directory are text, in the reminders table as everywhere
    section = html[html.index("<h2>Reminders") :]
    assert "<script" not in section and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; Ève" in section


async def test_report_charts_coverage_by_phase(functions: dict[str, Call], history: History) -> None:
    html = (await call(functions["history_report"], request("report"))).get_body().decode()
    items = body(await call(functions["history_coverage"], request("coverage")))["items"]
    panels = re.findall(r'<svg role="img" aria-label="([^"]+)"', html)
    assert panels == [
        "All enabled accounts",
        "Phase 1 in scope: portals, admin centers",
        "Phase 2 in scope: CLI, PowerShell, IaC, ARM",
        "Coverage: share registered (of those the report lists), all enabled and in scope per phase",
    ]
    svgs = dict(zip(panels, re.findall(r"<svg .*?</svg>", html, flags=re.S), strict=True))
    for title, phase in ((panels[1], "phase1"), (panels[2], "phase2")):
        bars = re.findall(r"<g><title>(.*?)</title>", svgs[title])
        assert bars == [
            f"{i['night']}: Registered {i['phases'][phase]['registered']:,}, "
            f"Unregistered {i['phases'][phase]['unregistered']:,}, "
            f"Not yet in the report {i['phases'][phase]['unknown']:,}"
            for i in items
        ]
        assert 'class="unreg"' in svgs[title]  # O'Brien, Eve...: red on every night
    lines = svgs[panels[3]]
    assert re.findall(r'<polyline class="([^"]+)"', lines) == ["all", "phase1", "phase2"]
    assert len(re.findall(r'<circle class="phase2"', lines)) == len(items)
    assert 'aria-label="Admins"' not in html


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
