"""Tonight's unchanged steady users, found a Graph page at a time.

Most of a page is steady users whose objects did not change (``shared.domain.steady``). Deciding
that object by object costs more than parsing the page did; here each page is decided in a few
passes (ids, fingerprints, the remembered fingerprints, comparisons) that call no Python code per
object. What these functions pick out is exactly what the sync's object-by-object test would
carry; everything else is handed back for that test and the whole pipeline.

The fingerprints are the costly pass. On a big night a fingerprint worker computes them from
the page's bytes in another process (``shared.adapters.fingerprint_worker``); its answer
(``given``) stands in for this process's own only when its ids are exactly the page's ids.

A page that breaks a pass's assumptions (an object that is not a JSON object or has no ``id``, an
id that is not hashable, an id twice, an id seen on an earlier page, an object too deeply nested
to fingerprint) is handed back whole: odd data costs speed, never correctness.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from itertools import compress, repeat
from operator import and_, attrgetter, eq, itemgetter, not_
from typing import Any, NamedTuple

from shared.adapters.snapshot import Remembered
from shared.domain.steady import NO_ROW, REPORT_STAMP, PagePrints, fingerprints

_ID = itemgetter("id")
_USER_FP = attrgetter("user_fp")
_REPORT_FP = attrgetter("report_fp")
# Stands in for a user the snapshot does not remember as steady: its fingerprints have the wrong
# length, so they equal no fingerprint (not even ``steady.NEVER``, which is empty).
_UNKNOWN = Remembered(b"?", b"?", 0, 0, 0, 0)
_ABSENT = object()


class Carried(NamedTuple):
    ids: list[str]
    entries: list[Remembered]
    rest: list[Any]  # the page's other objects, in order


class ReportRows(NamedTuple):
    ids: list[str]
    prints: list[bytes]
    stamps: list[Any]  # each row's lastUpdatedDateTime as sent (None if it had none)
    rest: list[Any]  # the page's other rows, in order, untouched


def _ids(page: list[Any], taken: Set[str] | Mapping[str, Any]) -> list[Any] | None:
    """Each object's raw id, or None when the page must go object by object."""
    if set(map(type, page)) - {dict}:
        return None
    try:
        ids = list(map(_ID, page))
        unique = set(ids)
    except (KeyError, TypeError):
        return None
    if len(unique) != len(ids) or any(map(taken.__contains__, unique)):  # the page's ids, not all taken
        return None
    return ids


def _given(ids: list[Any], given: PagePrints | None) -> list[bytes] | None:
    """A fingerprint worker's prints for the page, if its ids are the page's ids."""
    return given[1] if given is not None and given[0] == ids else None


def unchanged_report_rows(
    page: list[Any], steady: Mapping[str, Remembered], taken: Mapping[str, Any], given: PagePrints | None = None
) -> ReportRows:
    """The report rows of steady users that are as remembered (``steady.report_fingerprint``
    equal); ``taken``: the ids of the rows already read; ``given``: the page's ids and report
    fingerprints from a fingerprint worker (used only if its ids are the page's)."""
    ids = _ids(page, taken) if page else None
    if ids is None:
        return ReportRows([], [], [], page)
    stamps = list(map(dict.pop, page, repeat(REPORT_STAMP), repeat(_ABSENT)))
    try:
        prints = _given(ids, given) or fingerprints(page)
        same = list(map(eq, map(_REPORT_FP, map(steady.get, ids, repeat(_UNKNOWN))), prints))
    except ValueError:
        prints, same = [], [False] * len(page)
    rest = []
    for row, stamp in compress(zip(page, stamps, strict=True), map(not_, same)):
        if stamp is not _ABSENT:  # the stamp goes back: the row is left as it was sent
            row[REPORT_STAMP] = stamp
        rest.append(row)
    kept = [None if stamp is _ABSENT else stamp for stamp in compress(stamps, same)]
    return ReportRows(list(compress(ids, same)), list(compress(prints, same)), kept, rest)


def unchanged_users(
    page: list[Any],
    steady: Mapping[str, Remembered],
    report_prints: Mapping[str, bytes],
    evidence: Set[str],
    seen: Set[str],
    given: PagePrints | None = None,
) -> Carried:
    """The steady users whose ``/users`` object and report row (``report_prints``; none: ``NO_ROW``)
    are as remembered and who have no scope evidence tonight (``evidence``: their ids); ``given``
    as for ``unchanged_report_rows``."""
    ids = _ids(page, seen) if page else None
    if ids is None:
        return Carried([], [], page)
    try:
        prints = _given(ids, given) or fingerprints(page)
    except ValueError:
        return Carried([], [], page)
    remembered = list(map(steady.get, ids, repeat(_UNKNOWN)))
    same = list(
        map(
            and_,
            map(eq, map(_USER_FP, remembered), prints),
            map(eq, map(_REPORT_FP, remembered), map(report_prints.get, ids, repeat(NO_ROW))),
        )
    )
    if not evidence.isdisjoint(ids):
        same = [matched and user_id not in evidence for matched, user_id in zip(same, ids, strict=True)]
    rest = [obj for obj, matched in zip(page, same, strict=True) if not matched]
    return Carried(list(compress(ids, same)), list(compress(remembered, same)), rest)
