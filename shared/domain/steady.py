"""Steady users: people whose record is decided by tonight's Graph objects alone.

Most of a tenant is the same person night after night: same user object, same row in the
registration report, no management sign-in, no role. For such a user the nightly pipeline
(normalise, assess scope, reconcile) provably ends in "no change", and recomputing it for
100,000 people is most of a night's CPU. So the sync remembers, per user:

- a *fingerprint* of the ``/users`` object and one of the report row (``lastUpdatedDateTime``
  left out: the report restamps it without the person changing, and it is not a tracked value);
- the user's *profile*, the few facts the night's census counts (``census.Profile``);
- whether the user is *steady* (``is_steady``): fed the same objects again, with no scope
  evidence, the pipeline would compute a record that ``reconcile`` finds unchanged, at any later
  time.

A user whose two fingerprints match, who is steady, and who has no scope evidence tonight is
counted from the profile and costs nothing else; everyone else goes through the whole pipeline.
``is_steady`` does not restate the rules: it runs them (``assess`` then ``reconcile``) on the
record as stored. The clock enters the rules in two places only (``scope_rules.steady_in_time``):
the sign-in memory's horizon and an account's age, so it requires no remembered sign-in and an
account past the lookback age.

Fingerprints are 8 bytes of BLAKE2b over ``marshal`` version 2 of the decoded JSON (exact for
the JSON types, no references). A different encoding of equal data (another key order, another
Python) only costs a slow path; equal fingerprints of different data would need a 64-bit
collision. Pure: no I/O, no clock.
"""

from __future__ import annotations

import json
import marshal
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from hashlib import blake2b
from itertools import repeat
from operator import itemgetter, methodcaller
from typing import Any

from shared.domain.deltas import reconcile
from shared.domain.normalize import unknown_methods
from shared.domain.records import StoredUser, UserRecord
from shared.domain.scope import in_scope
from shared.domain.scope_rules import NO_EVIDENCE, GuestTrust, PersonFacts, ScopePolicy, assess, steady_in_time

FINGERPRINT_SIZE = 8
REPORT_STAMP = "lastUpdatedDateTime"


NEVER = b""  # the fingerprint of what cannot be fingerprinted: matches nothing remembered


def fingerprint(value: Any) -> bytes:
    """A Graph object's fingerprint (see the module doc). ``None`` (no object) has one too;
    an object marshal refuses (nested deeper than it goes) gets ``NEVER``."""
    try:
        return blake2b(marshal.dumps(value, 2), digest_size=FINGERPRINT_SIZE).digest()
    except ValueError:
        return NEVER


_HASH = partial(blake2b, digest_size=FINGERPRINT_SIZE)
_DIGEST = methodcaller("digest")


def fingerprints(values: Sequence[Any]) -> list[bytes]:
    """``fingerprint`` of each value, in one pass that calls no Python code per value (a page
    of 999 objects at a time); ValueError where ``fingerprint`` would answer ``NEVER``."""
    return list(map(_DIGEST, map(_HASH, map(marshal.dumps, values, repeat(2, len(values))))))


def report_fingerprint(row: dict[str, Any]) -> bytes:
    """A report row's fingerprint, without the report's own refresh stamp. The stamp is taken out
    and put back (last): the row is left equal, and no copy of it is made for each of 100,000 rows."""
    if REPORT_STAMP not in row:
        return fingerprint(row)
    stamp = row.pop(REPORT_STAMP)
    try:
        return fingerprint(row)
    finally:
        row[REPORT_STAMP] = stamp


NO_ROW = fingerprint(None)  # the report does not list the user

USERS, REPORT = "users", "report"  # which fingerprint ``page_fingerprints`` takes of a page's objects
_ID = itemgetter("id")
PagePrints = tuple[list[Any], list[bytes]]  # a page's ids, and the fingerprint of each object


def page_fingerprints(raw: bytes, kind: str) -> PagePrints | None:
    """The ids and fingerprints of a Graph page's objects, from the page's bytes as sent: what a
    fingerprint worker computes beside the sync (``shared.adapters.fingerprint_worker``). ``kind``
    REPORT takes each row's ``report_fingerprint``, USERS each object's ``fingerprint``.

    None when the page is not a JSON object whose ``value`` is a list of JSON objects that all
    have an ``id``, or when an object cannot be fingerprinted: the sync then fingerprints what it
    parsed itself. Equal bytes parse to equal objects, so these are the fingerprints the sync
    would compute; it still checks the ids against its own before it uses them."""
    if kind not in (USERS, REPORT):
        raise ValueError(f"unknown kind of page: {kind!r}")
    try:
        value = json.loads(raw)["value"]
        if type(value) is not list or set(map(type, value)) - {dict}:
            return None
        ids = list(map(_ID, value))
        if kind == REPORT:  # the worker's own copy of the rows: the stamps need not go back
            list(map(dict.pop, value, repeat(REPORT_STAMP), repeat(None)))
        return ids, fingerprints(value)
    except (ValueError, KeyError, TypeError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None


@dataclass(frozen=True)
class ScopeRules:
    """The scope inputs that are the same for every user tonight (None in the sync: no signals)."""

    policy: ScopePolicy
    trust: GuestTrust
    fallback: bool  # Entra ID Free: in-scope users' methods are read one by one, every night


def is_steady(
    stored: StoredUser,
    base: UserRecord,
    person: PersonFacts,
    rules: ScopeRules | None,
    now: datetime,
) -> bool:
    """Whether the same ``base`` record (tonight's Graph objects, before scope) and no scope
    evidence would leave ``stored`` (the user as stored after tonight) unchanged on any later
    night. Unknown method names are kept out, so each night still reports them."""
    if stored.deleted or unknown_methods(stored.record.methods):
        return False
    if rules is None:  # no scope signals: the stored scope facts are carried
        tomorrow = replace(base, scope=stored.record.scope)
    else:
        previous = stored.record.scope
        if not steady_in_time(previous, base.created, now, rules.policy):
            return False
        assessment = assess(base, person, NO_EVIDENCE, previous, rules.policy, rules.trust, now)
        if assessment.needs:
            return False
        tomorrow = replace(base, scope=assessment.facts)
        if rules.fallback and tomorrow.enabled and in_scope(tomorrow):
            return False
    return reconcile(stored, tomorrow, "") is None
