"""shared.jobs.unchanged: a page's unchanged steady users, decided a page at a time, must be
exactly those the object-by-object test carries; odd pages go back whole."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from shared.adapters.snapshot import STEADY, Remembered
from shared.domain.steady import NO_ROW, REPORT_STAMP, fingerprint, fingerprints, report_fingerprint
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
