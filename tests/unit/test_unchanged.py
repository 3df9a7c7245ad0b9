"""shared.jobs.unchanged: a page's unchanged steady users, decided a page at a time, must be
exactly those the object-by-object test carries; odd pages go back whole."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from shared.adapters.snapshot import STEADY, Remembered
from shared.domain.steady import (
    NO_ROW,
    REPORT,
    REPORT_STAMP,
    USERS,
    fingerprint,
    fingerprints,
    page_fingerprints,
    report_fingerprint,
)
from shared.jobs.unchanged import unchanged_report_rows, unchanged_users


def user(n: int, **extra: Any) -> dict[str, Any]:
    return {"id": f"id-{n}", "displayName": f"User <b>{n}</b> Ünï", "otherMails": [f"u{n}@x.example"], **extra}


def row(n: int, stamp: str | None = "2026-11-20T01:02:03Z", **extra: Any) -> dict[str, Any]:
    r: dict[str, Any] = {"id": f"id-{n}", "isMfaRegistered": n % 2 == 0, "methodsRegistered": ["sms"], **extra}
    if stamp is not None:
        r[REPORT_STAMP] = stamp
    return r


def remember(obj: dict[str, Any], report: dict[str, Any] | None, flags: int = STEADY) -> Remembered:
    rfp = report_fingerprint(copy.deepcopy(report)) if report is not None else NO_ROW
    return Remembered(fingerprint(obj), rfp, 3, flags, 0, 0)


def test_fingerprints_are_fingerprint_of_each() -> None:
    values = [user(1), {"a": [1, 2.5, None, True]}, "text", None]
    assert fingerprints(values) == [fingerprint(v) for v in values]
    deep: Any = []
    for _ in range(3000):
        deep = [deep]
    with pytest.raises(ValueError):
        fingerprints([user(1), deep])


def test_users_carried_are_exactly_the_steady_unchanged_ones_without_evidence() -> None:
    page = [user(n) for n in range(8)]
    reports = {f"id-{n}": row(n) for n in range(8) if n != 5}
    steady = {u["id"]: remember(u, reports.get(u["id"])) for u in page if u["id"] != "id-1"}  # 1: not steady
    page[2] = user(2, displayName="Renamed")  # its object changed
    reports["id-3"] = row(3, methodsRegistered=["fido2"])  # its report row changed
    prints = {k: report_fingerprint(v) for k, v in reports.items()}
    carried = unchanged_users(page, steady, prints, evidence={"id-4"}, seen=set())
    assert carried.ids == ["id-0", "id-5", "id-6", "id-7"]  # 5 has no report row, as remembered
    assert carried.entries == [steady[i] for i in carried.ids]
    assert [o["id"] for o in carried.rest] == ["id-1", "id-2", "id-3", "id-4"]
    assert carried.rest[1] is page[2]


def test_a_user_whose_report_row_is_gone_is_not_carried() -> None:
    page = [user(0), user(1)]
    steady = {"id-0": remember(page[0], row(0)), "id-1": remember(page[1], row(1))}
    carried = unchanged_users(page, steady, {"id-1": report_fingerprint(row(1))}, evidence=set(), seen=set())
    assert carried.ids == ["id-1"] and carried.rest == [page[0]]


@pytest.mark.parametrize(
    "odd",
    [
        ["not an object"],
        [{"displayName": "no id"}],
        [{"id": ["unhashable"]}],
        [user(0)],  # the same id twice on one page
        [user(9)],  # an id seen on an earlier page
    ],
)
def test_an_odd_page_goes_back_whole(odd: list[Any]) -> None:
    page = [user(0), user(1), *odd]
    steady = {u["id"]: remember(u, None) for u in (user(0), user(1))}
    carried = unchanged_users(page, steady, {}, evidence=set(), seen={"id-9"})
    assert carried.ids == [] and carried.rest == page


def test_report_rows_as_remembered_are_taken_with_their_stamps_and_the_rest_left_as_sent() -> None:
    page = [row(0), row(1, stamp="2026-11-21T00:00:00Z"), row(2), row(3, stamp=None), row(4)]
    sent = copy.deepcopy(page)
    steady = {f"id-{n}": remember(user(n), row(n)) for n in (0, 1, 3, 4)}  # 2: not steady
    page[4]["methodsRegistered"] = ["microsoftAuthenticatorPush"]  # changed since it was remembered
    sent[4] = copy.deepcopy(page[4])
    rows = unchanged_report_rows(page, steady, taken={})
    assert rows.ids == ["id-0", "id-1", "id-3"]  # a restamped row is as remembered: the stamp is not data
    assert rows.stamps == ["2026-11-20T01:02:03Z", "2026-11-21T00:00:00Z", None]
    assert rows.prints == [report_fingerprint(copy.deepcopy(sent[n])) for n in (0, 1, 3)]
    assert rows.rest == [sent[2], sent[4]]  # equal to what was sent, the stamp back in


@pytest.mark.parametrize("taken", [{"id-1": b"x"}, {}])
def test_a_report_page_with_a_row_already_read_or_an_odd_row_goes_back_whole(taken: dict[str, bytes]) -> None:
    page: list[Any] = [row(0), row(1)] + ([] if taken else ["odd"])
    sent = copy.deepcopy(page)
    steady = {f"id-{n}": remember(user(n), row(n)) for n in (0, 1)}
    rows = unchanged_report_rows(page, steady, taken=taken)
    assert rows.ids == [] and rows.rest == sent


def test_a_report_row_too_deep_to_fingerprint_sends_the_page_back_as_it_was() -> None:
    deep: Any = []
    for _ in range(3000):
        deep = [deep]
    page = [row(0), row(1, methodsRegistered=deep)]
    steady = {"id-0": remember(user(0), row(0))}
    rows = unchanged_report_rows(page, steady, taken={})
    assert rows.ids == [] and [r[REPORT_STAMP] for r in rows.rest] == ["2026-11-20T01:02:03Z"] * 2
    assert rows.rest[0] == row(0)


# ------------------------------------------------------------------------------------------------
# A fingerprint worker's answer (``given``): used only when its ids are the page's
# ------------------------------------------------------------------------------------------------
def _raw(objects: list[Any]) -> bytes:
    return json.dumps({"value": objects}).encode()


def test_page_fingerprints_are_the_sync_s_own_fingerprints() -> None:
    users = [user(n) for n in range(5)]
    rows = [row(n) for n in range(4)] + [row(4, stamp=None)]
    assert page_fingerprints(_raw(users), USERS) == ([u["id"] for u in users], fingerprints(users))
    assert page_fingerprints(_raw(rows), REPORT) == (
        [r["id"] for r in rows],
        [report_fingerprint(copy.deepcopy(r)) for r in rows],
    )
    assert page_fingerprints(_raw([]), USERS) == ([], [])


@pytest.mark.parametrize(
    "raw",
    [b"{", b"[]", b'{"value": 3}', b'{"value": [1]}', b'{"value": [{"no": "id"}]}', b"\xff\xfe\x00"],
    ids=["not-json", "not-an-object", "value-not-a-list", "item-not-an-object", "no-id", "not-utf"],
)
def test_page_fingerprints_of_an_odd_page_are_none(raw: bytes) -> None:
    assert page_fingerprints(raw, USERS) is None


def test_given_prints_stand_in_for_the_page_s_own_when_the_ids_match() -> None:
    page = [user(n) for n in range(6)]
    reports = {f"id-{n}": row(n) for n in range(6)}
    steady = {u["id"]: remember(u, reports[u["id"]]) for u in page}
    page[1] = user(1, displayName="Renamed")
    prints = {k: report_fingerprint(v) for k, v in reports.items()}
    own = unchanged_users(copy.deepcopy(page), steady, prints, evidence=set(), seen=set())
    given = page_fingerprints(_raw(page), USERS)
    assert given is not None
    with_given = unchanged_users(copy.deepcopy(page), steady, prints, set(), set(), given)
    assert with_given == own and own.ids == ["id-0", "id-2", "id-3", "id-4", "id-5"]
    # The given prints are what decides: a worker's answer is trusted once its ids match...
    claims_unchanged = ([u["id"] for u in page], [steady[u["id"]].user_fp for u in page])
    assert unchanged_users(copy.deepcopy(page), steady, prints, set(), set(), claims_unchanged).ids == [
        u["id"] for u in page
    ]
    # ...and ignored when they do not (another page, another order): the page is fingerprinted here.
    for other in (claims_unchanged[0][::-1], claims_unchanged[0][:-1]):
        assert unchanged_users(copy.deepcopy(page), steady, prints, set(), set(), (other, claims_unchanged[1])) == own


def test_given_report_prints_stand_in_too_and_the_stamps_go_back() -> None:
    rows = [row(n) for n in range(4)]
    steady = {r["id"]: remember(user(n), r) for n, r in enumerate(rows)}
    rows[2] = row(2, methodsRegistered=["fido2"])
    given = page_fingerprints(_raw(rows), REPORT)
    own = unchanged_report_rows(copy.deepcopy(rows), steady, {})
    with_given = unchanged_report_rows(copy.deepcopy(rows), steady, {}, given)
    assert with_given == own and own.ids == ["id-0", "id-1", "id-3"]
    assert with_given.rest == [rows[2]]  # stamp included, as sent
    wrong = (["id-9", "id-1", "id-2", "id-3"], given[1] if given else [])
    assert unchanged_report_rows(copy.deepcopy(rows), steady, {}, wrong) == own
