"""Counting a night, and the run bookkeeping it ends up in."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from shared.domain.census import Census, Coverage
from shared.domain.deltas import Change, ChangeKind, UserUpdate
from shared.domain.normalize import Skipped
from shared.domain.records import StoredUser, UserRecord, UserType
from shared.domain.runs import IoFigures, RunStatus, SyncRun, new_run_id, night_of


def rec(uid: str = "u1", **overrides: Any) -> UserRecord:
    base: dict[str, Any] = {
        "id": uid,
        "upn": f"{uid}@contoso.com",
        "display_name": uid,
        "user_type": UserType.MEMBER,
        "enabled": True,
        "mfa_registered": True,
        "mfa_capable": True,
        "is_admin": False,
        "methods": ("sms",),
        "default_method": "sms",
        "email": None,
        "created": None,
        "external_user_state": None,
        "on_premises_sync": False,
    }
    base.update(overrides)
    return UserRecord(**base)


def update(*kinds: ChangeKind) -> UserUpdate:
    stored = StoredUser(rec(), version=2, etag=None)
    return UserUpdate(stored, tuple(Change("u1", k, None, None) for k in kinds), "etag")


def test_empty_night() -> None:
    f = Census().figures()
    assert (f.users, f.members, f.guests, f.enabled, f.disabled, f.admins) == (0, 0, 0, 0, 0, 0)
    assert f.coverage == Coverage(0, 0, 0)
    assert f.coverage.percent is None
    assert f.changes == {kind.value: 0 for kind in ChangeKind}
    assert f.skipped == {}
    assert f.silent_updates == 0
    assert f.unknown_methods == ()


def test_counts_members_guests_disabled_admins() -> None:
    c = Census()
    c.count_user(rec("m1"))
    c.count_user(rec("m2", is_admin=True))
    c.count_user(rec("m3", enabled=False, is_admin=True))  # a disabled admin is not counted as admin
    c.count_user(rec("g1", user_type=UserType.GUEST))
    c.count_user(rec("g2", user_type=UserType.GUEST, enabled=False))
    c.count_user(rec("m4", is_admin=None))
    f = c.figures()
    assert f.users == 6
    assert f.members == 4
    assert f.guests == 2
    assert f.disabled == 2
    assert f.enabled == 4
    assert f.admins == 1


def test_coverage_only_among_enabled_users() -> None:
    c = Census()
    c.count_user(rec("a", mfa_registered=True))
    c.count_user(rec("b", mfa_registered=False))
    c.count_user(rec("c", mfa_registered=None))
    c.count_user(rec("d", mfa_registered=False, enabled=False))
    c.count_user(rec("e", mfa_registered=True, enabled=False))
    c.count_user(rec("g", mfa_registered=True, user_type=UserType.GUEST))
    c.count_user(rec("h", mfa_registered=None, user_type=UserType.GUEST))
    c.count_user(rec("x", mfa_registered=False, is_admin=True))
    f = c.figures()
    assert f.coverage == Coverage(registered=2, unregistered=2, unknown=2)
    assert f.coverage.percent == 50.0
    assert f.member_coverage == Coverage(1, 2, 1)
    assert f.guest_coverage == Coverage(1, 0, 1)
    assert f.admin_coverage == Coverage(0, 1, 0)
    assert f.admin_coverage.percent == 0.0


@pytest.mark.parametrize(
    ("coverage", "percent"),
    [
        (Coverage(0, 0, 0), None),
        (Coverage(0, 0, 12), None),  # nothing known: no percentage, not 0 %
        (Coverage(1, 0, 5), 100.0),
        (Coverage(0, 3, 0), 0.0),
        (Coverage(1, 2, 0), 33.33),
        (Coverage(2, 1, 0), 66.67),
    ],
)
def test_coverage_percent(coverage: Coverage, percent: float | None) -> None:
    assert coverage.percent == percent


def test_unknown_methods_collected_across_users() -> None:
    c = Census()
    c.count_user(rec("a", methods=("sms", "zzNew")))
    c.count_user(rec("b", methods=("aaNew", "fido2"), enabled=False))
    c.count_user(rec("c", methods=("zzNew",)))
    assert c.figures().unknown_methods == ("aaNew", "zzNew")


def test_changes_counted_by_kind_with_every_key_present() -> None:
    c = Census()
    c.count_update(update(ChangeKind.NEW))
    c.count_update(update(ChangeKind.REGISTERED, ChangeKind.BECAME_ADMIN))
    c.count_update(update(ChangeKind.REGISTERED))
    c.count_update(update())  # a silent update
    c.count_update(update())
    f = c.figures()
    assert set(f.changes) == {kind.value for kind in ChangeKind}
    assert f.changes["new"] == 1
    assert f.changes["registered"] == 2
    assert f.changes["became_admin"] == 1
    assert sum(f.changes.values()) == 4
    assert f.silent_updates == 2


def test_skipped_grouped_by_reason_without_detail() -> None:
    c = Census()
    c.count_skip(Skipped(None, "user has no usable id ('a/b')"))
    c.count_skip(Skipped(None, "user has no usable id ('a#b')"))
    c.count_skip(Skipped(None, "user is not a JSON object"))
    c.count_skip(Skipped("x", "duplicate user id across pages"))
    c.count_skip(Skipped(None, "registration row has no usable id (None)"))
    assert c.figures().skipped == {
        "user has no usable id": 2,
        "user is not a JSON object": 1,
        "duplicate user id across pages": 1,
        "registration row has no usable id": 1,
    }


def test_figures_is_a_snapshot() -> None:
    c = Census()
    c.count_skip(Skipped(None, "odd"))
    c.count_update(update(ChangeKind.NEW))
    f = c.figures()
    c.count_skip(Skipped(None, "odd"))
    c.count_update(update(ChangeKind.NEW))
    assert f.skipped == {"odd": 1}
    assert f.changes["new"] == 1


# --- runs --------------------------------------------------------------------------------------


def test_new_run_id_sortable_and_unique() -> None:
    t = datetime(2026, 11, 23, 2, 0, 5, tzinfo=UTC)
    ids = {new_run_id(t) for _ in range(50)}
    assert len(ids) == 50
    for run_id in ids:
        assert re.fullmatch(r"20261123T020005Z-[0-9a-f]{6}", run_id)
    later = new_run_id(t + timedelta(seconds=1))
    assert all(later > i for i in ids)


def test_run_id_and_night_are_utc() -> None:
    # 01:30 in UTC+3 is 22:30 the previous day in UTC.
    t = datetime(2026, 11, 23, 1, 30, tzinfo=timezone(timedelta(hours=3)))
    assert night_of(t) == "2026-11-22"
    assert new_run_id(t).startswith("20261122T223000Z-")
    assert night_of(datetime(2026, 1, 2, 23, 59, 59, tzinfo=UTC)) == "2026-01-02"


def test_sync_run_defaults() -> None:
    run = SyncRun(run_id="r", night="2026-11-23", started=datetime(2026, 11, 23, tzinfo=UTC))
    assert run.status is RunStatus.RUNNING
    assert run.finished is None
    assert run.pull_complete is False
    assert run.figures is None
    assert run.io == IoFigures()
    done = replace(run, status=RunStatus.COMPLETED)
    assert done.status.value == "completed"
    assert {s.value for s in RunStatus} == {"running", "completed", "failed", "skipped"}
