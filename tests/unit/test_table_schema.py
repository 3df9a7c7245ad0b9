"""The table layout: keys, ranges, and records to entities and back. Pure, no I/O."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.adapters import table_schema as schema
from shared.adapters.table_schema import (
    SHARDS,
    coverage_entity,
    event_key,
    night_entity,
    night_key,
    prefix_range,
    run_entity,
    run_status_of,
    shard_of,
    state_key,
    state_range,
    stored_user_from_entity,
    timeline_entity,
    timeline_range,
    user_entity,
)
from shared.domain.census import Census
from shared.domain.deltas import Change, ChangeKind
from shared.domain.normalize import MAX_ID_LENGTH, MAX_METHODS, MAX_TEXT_LENGTH, Skipped, valid_id
from shared.domain.records import StoredUser, UserRecord, UserType
from shared.domain.runs import IoFigures, RunStatus, SyncRun

UID = "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9"
MAX_PROPERTIES = 252  # including PartitionKey, RowKey and Timestamp
STARTED = datetime(2026, 11, 23, 2, 0, 0, tzinfo=UTC)


def rec(**overrides: Any) -> UserRecord:
    base: dict[str, Any] = {
        "id": UID,
        "upn": "ada@contoso.com",
        "display_name": "Ada <b>Lovelace</b> & Zoë 山田",
        "user_type": UserType.MEMBER,
        "enabled": True,
        "mfa_registered": True,
        "mfa_capable": False,
        "is_admin": False,
        "methods": ("fido2", "sms"),
        "default_method": "fido2",
        "email": "ada@contoso.com",
        "created": "2021-03-04T05:06:07Z",
        "external_user_state": "Accepted",
        "on_premises_sync": True,
        "report_updated": "2026-11-22T01:02:03.1234567Z",
        "in_report": True,
    }
    base.update(overrides)
    return UserRecord(**base)


def round_trip(stored: StoredUser, etag: str | None = "etag-1") -> StoredUser:
    entity = user_entity(stored, run_id="run-1", changed_at="2026-11-23T02:00:00+00:00")
    assert None not in entity.values(), "Table Storage cannot store null"
    return stored_user_from_entity(entity, etag)


def assert_storable(entity: dict[str, Any]) -> None:
    assert len(entity) + 1 < MAX_PROPERTIES  # +1: the service's Timestamp
    for name, value in entity.items():
        assert isinstance(value, str | bool | int | float), (name, value)
        assert value is not None, name


def figures() -> Any:
    c = Census()
    c.count_user(rec(id="a"))
    c.count_user(rec(id="b", mfa_registered=False, user_type=UserType.GUEST))
    c.count_user(rec(id="c", enabled=False))
    c.count_skip(Skipped(None, "user has no usable id ('x/y')"))
    return c.figures()


def run(**overrides: Any) -> SyncRun:
    base: dict[str, Any] = {"run_id": "20261123T020000Z-abcdef", "night": "2026-11-23", "started": STARTED}
    base.update(overrides)
    return SyncRun(**base)


# --- users: round trip ---------------------------------------------------------------------------


def test_round_trip_full_record() -> None:
    stored = StoredUser(rec(), version=7, etag="old", deleted=False, first_seen="2026-01-01T02:00:00Z")
    back = round_trip(stored, "etag-9")
    assert back == replace(stored, etag="etag-9")


def test_round_trip_unknowns_are_absent_properties() -> None:
    r = rec(
        mfa_registered=None,
        mfa_capable=None,
        is_admin=None,
        methods=(),
        default_method=None,
        email=None,
        created=None,
        external_user_state=None,
        report_updated=None,
        in_report=False,
        upn="",
        display_name="",
        user_type=UserType.GUEST,
        enabled=False,
        on_premises_sync=False,
    )
    stored = StoredUser(r, version=1, etag=None, deleted=True, first_seen=None)
    entity = user_entity(stored, run_id="run-1", changed_at="t")
    for name in (
        "MfaRegistered",
        "MfaCapable",
        "IsAdmin",
        "DefaultMethod",
        "Email",
        "Created",
        "ExternalUserState",
        "ReportUpdated",
        "FirstSeen",
    ):
        assert name not in entity
    assert entity["Methods"] == ""
    assert round_trip(stored, None) == stored


def test_false_is_not_confused_with_unknown() -> None:
    r = rec(mfa_registered=False, mfa_capable=False, is_admin=False)
    entity = user_entity(StoredUser(r, 1, None), run_id="r", changed_at="t")
    assert entity["MfaRegistered"] is False
    assert round_trip(StoredUser(r, 1, None)).record == r


def test_methods_round_trip() -> None:
    for methods in [(), ("sms",), ("email", "fido2", "unknownFutureMethod")]:
        back = round_trip(StoredUser(rec(methods=methods), 1, None))
        assert back.record.methods == methods


def test_user_entity_keys_and_bookkeeping() -> None:
    stored = StoredUser(rec(), version=12, etag="e", deleted=False, first_seen="f")
    entity = user_entity(stored, run_id="run-1", changed_at="2026-11-23T02:00:00+00:00")
    assert entity["PartitionKey"] == "u-0"
    assert entity["RowKey"] == f"s|{UID}"
    assert entity["Version"] == 12
    assert entity["LastRunId"] == "run-1"
    assert entity["LastChanged"] == "2026-11-23T02:00:00+00:00"
    assert entity["DisplayName"] == "Ada <b>Lovelace</b> & Zoë 山田"  # verbatim: escaping is the renderer's
    assert_storable(entity)


def test_biggest_user_entity_is_storable() -> None:
    r = rec(
        upn="u" * MAX_TEXT_LENGTH,
        display_name="n" * MAX_TEXT_LENGTH,
        methods=tuple(f"method{i:02d}" + "x" * 400 for i in range(MAX_METHODS)),
    )
    entity = user_entity(StoredUser(r, 2**31 - 1, None, first_seen="f"), run_id="r", changed_at="t")
    assert_storable(entity)
    # A string property holds at most 64 KiB (32K UTF-16 characters).
    assert all(len(v) < 32 * 1024 for v in entity.values() if isinstance(v, str))


def test_reading_a_sparse_entity_uses_safe_defaults() -> None:
    back = stored_user_from_entity({"UserId": "abc"}, None)
    assert back == StoredUser(
        record=UserRecord(
            id="abc",
            upn="",
            display_name="",
            user_type=UserType.MEMBER,
            enabled=True,
            mfa_registered=None,
            mfa_capable=None,
            is_admin=None,
            methods=(),
            default_method=None,
            email=None,
            created=None,
            external_user_state=None,
            on_premises_sync=False,
            report_updated=None,
            in_report=True,
        ),
        version=1,
        etag=None,
        deleted=False,
        first_seen=None,
    )


maybe_bool = st.sampled_from([True, False, None])
# Text as normalize produces it: no control characters, stripped, never "" for optional fields.
clean = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=20).map(str.strip)
opt_clean = st.none() | clean.filter(bool)
method_names = clean.filter(lambda m: m != "" and "," not in m)
records = st.builds(
    UserRecord,
    id=st.just(UID),
    upn=clean,
    display_name=clean,
    user_type=st.sampled_from(list(UserType)),
    enabled=st.booleans(),
    mfa_registered=maybe_bool,
    mfa_capable=maybe_bool,
    is_admin=maybe_bool,
    methods=st.lists(method_names, max_size=4, unique=True).map(lambda m: tuple(sorted(m))),
    default_method=opt_clean,
    email=opt_clean,
    created=opt_clean,
    external_user_state=opt_clean,
    on_premises_sync=st.booleans(),
    report_updated=opt_clean,
    in_report=st.booleans(),
)


@settings(max_examples=150, deadline=None)
@given(
    record=records,
    version=st.integers(1, 2**31 - 1),
    deleted=st.booleans(),
    first_seen=opt_clean,
    etag=st.none() | st.text(min_size=1, max_size=10),
)
def test_round_trip_property(
    record: UserRecord, version: int, deleted: bool, first_seen: str | None, etag: str | None
) -> None:
    stored = StoredUser(record, version, etag=None, deleted=deleted, first_seen=first_seen)
    entity = user_entity(stored, run_id="r", changed_at="t")
    assert_storable(entity)
    assert stored_user_from_entity(entity, etag) == replace(stored, etag=etag)


# --- keys and ranges -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user_id", "shard"),
    [(UID, "u-0"), ("f00", "u-f"), ("F00", "u-f"), ("a", "u-a"), ("9x", "u-9"), ("g1", "u-z"), ("", "u-z")],
)
def test_shard_of(user_id: str, shard: str) -> None:
    assert shard_of(user_id) == shard
    assert shard in SHARDS


def test_shards() -> None:
    assert len(SHARDS) == len(set(SHARDS)) == 17
    assert {shard_of(f"{c}000") for c in "0123456789abcdef"} == set(SHARDS) - {"u-z"}


def test_keys() -> None:
    assert state_key("abc") == "s|abc"
    assert event_key("abc", 3, ChangeKind.REGISTERED) == "e|abc|00000003|registered"
    assert night_key("abc", 12, ChangeKind.NEW) == "abc|00000012|new"


def test_event_keys_sort_by_version() -> None:
    keys = [event_key(UID, v, ChangeKind.METHODS_CHANGED) for v in (1, 2, 9, 10, 11, 100, 12_345_678)]
    assert keys == sorted(keys)
    night = [night_key(UID, v, ChangeKind.NEW) for v in (1, 2, 10, 99, 100)]
    assert night == sorted(night)


def in_range(key: str, bounds: tuple[str, str]) -> bool:
    low, high = bounds
    return low <= key < high


def test_prefix_range() -> None:
    assert prefix_range("e|") == ("e|", "e}")
    assert prefix_range("e|abc|") == ("e|abc|", "e|abc}")
    assert state_range() == ("s|", "s}")


def test_state_range_holds_states_not_events() -> None:
    ids = [UID, "a", "zzz", "}", "~~", "ÿ", "山田"]
    for user_id in ids:
        assert in_range(state_key(user_id), state_range())
        assert not in_range(event_key(user_id, 1, ChangeKind.NEW), state_range())
        assert in_range(event_key(user_id, 1, ChangeKind.NEW), prefix_range(schema.EVENT_PREFIX))
        assert not in_range(state_key(user_id), prefix_range(schema.EVENT_PREFIX))


PREFIX_FAMILY = ["ab", "abc", "abcd", "abc-", "abc{", "abc}", "abc~", "abc0", "abcé", "abd", "ab}", "b"]


def test_timeline_range_with_ids_that_prefix_each_other() -> None:
    for owner in PREFIX_FAMILY:
        bounds = timeline_range(owner)
        for other in PREFIX_FAMILY:
            for version in (1, 99_999_999):
                for kind in ChangeKind:
                    key = event_key(other, version, kind)
                    assert in_range(key, bounds) is (other == owner), (owner, other, key)
        assert not in_range(state_key(owner), bounds)


ids = (
    st.text(
        alphabet=st.sampled_from("abc0{}~-_.é|/#"),
        min_size=1,
        max_size=6,
    )
    .map(valid_id)
    .filter(lambda i: i is not None)
)


@settings(max_examples=300, deadline=None)
@given(owner=ids, other=ids, version=st.integers(1, 99_999_999), kind=st.sampled_from(list(ChangeKind)))
def test_timeline_range_property(owner: str, other: str, version: int, kind: ChangeKind) -> None:
    key = event_key(other, version, kind)
    assert in_range(key, timeline_range(owner)) is (owner == other)
    assert in_range(key, prefix_range(schema.EVENT_PREFIX))
    assert shard_of(owner) == shard_of(owner.upper())


# --- changes and the night index ----------------------------------------------------------------


def test_timeline_and_night_entities() -> None:
    r = rec()
    change = Change(UID, ChangeKind.METHODS_CHANGED, {"methods": ["sms"]}, {"methods": ["fido2", "sms"]})
    sync = run()
    row = timeline_entity(change, r, 5, sync, "2026-11-23T02:03:04+00:00")
    assert row["PartitionKey"] == shard_of(UID)
    assert row["RowKey"] == f"e|{UID}|00000005|methods_changed"
    assert in_range(row["RowKey"], timeline_range(UID))
    assert row["Kind"] == "methods_changed"
    assert row["Version"] == 5
    assert json.loads(row["Before"]) == {"methods": ["sms"]}
    assert json.loads(row["After"]) == {"methods": ["fido2", "sms"]}
    assert row["Night"] == "2026-11-23"
    assert row["RunId"] == sync.run_id
    assert row["SeenAt"] == "2026-11-23T02:03:04+00:00"
    assert_storable(row)

    copy = dict(row)
    night = night_entity(row)
    assert row == copy  # the timeline row is not modified
    assert night["PartitionKey"] == "2026-11-23"
    assert night["RowKey"] == f"{UID}|00000005|methods_changed"
    assert {k: v for k, v in night.items() if k not in ("PartitionKey", "RowKey")} == {
        k: v for k, v in row.items() if k not in ("PartitionKey", "RowKey")
    }


def test_change_without_before_or_after_and_unicode_kept() -> None:
    r = rec(display_name="Zoë 山田")
    new = timeline_entity(Change(UID, ChangeKind.NEW, None, {"displayName": "Zoë 山田"}), r, 1, run(), "t")
    assert new["Before"] == ""
    assert "Zoë 山田" in new["After"]  # not \\u-escaped
    gone = timeline_entity(Change(UID, ChangeKind.DELETED, {"upn": "x"}, None), r, 2, run(), "t")
    assert gone["After"] == ""
    assert None not in new.values()
    assert None not in gone.values()


# --- runs and coverage --------------------------------------------------------------------------


def test_run_entity_running() -> None:
    entity = run_entity(run(), index_pending=True)
    assert entity["PartitionKey"] == "run"
    assert entity["RowKey"] == "20261123T020000Z-abcdef"
    assert entity["Status"] == "running"
    assert entity["Started"] == STARTED.isoformat()
    assert entity["IndexPending"] is True
    assert entity["PullComplete"] is False
    for absent in ("Finished", "Seconds", "Error", "Users"):
        assert absent not in entity
    for name in ("GraphRequests", "GraphThrottled", "GraphServerErrors", "GraphPages"):
        assert entity[name] == 0
    assert run_status_of(entity) is RunStatus.RUNNING
    assert_storable(entity)


def test_run_entity_completed_includes_the_figures() -> None:
    f = figures()
    sync = run(
        status=RunStatus.COMPLETED,
        finished=STARTED + timedelta(seconds=83, milliseconds=250),
        pull_complete=True,
        figures=f,
        io=IoFigures(graph_requests=7, graph_throttled=1, table_writes=42, table_batches=3),
    )
    entity = run_entity(sync, index_pending=False)
    assert entity["Status"] == "completed"
    assert run_status_of(entity) is RunStatus.COMPLETED
    assert entity["Seconds"] == 83.25
    assert entity["Finished"] == (STARTED + timedelta(seconds=83.25)).isoformat()
    assert entity["GraphRequests"] == 7
    assert entity["GraphThrottled"] == 1
    assert entity["TableWrites"] == 42
    assert entity["TableBatches"] == 3
    assert entity["Users"] == 3
    assert entity["Members"] == 2
    assert entity["Guests"] == 1
    assert entity["EnabledUsers"] == 2
    assert entity["DisabledUsers"] == 1
    assert entity["Registered"] == 1
    assert entity["Unregistered"] == 1
    assert entity["CoveragePercent"] == 50.0
    assert entity["GuestCoveragePercent"] == 0.0
    assert "AdminCoveragePercent" not in entity  # no admins: no percentage, not null
    assert entity["SkippedTotal"] == 1
    assert json.loads(entity["Skipped"]) == {"user has no usable id": 1}
    assert json.loads(entity["Changes"]) == {k.value: 0 for k in ChangeKind}
    for kind in ChangeKind:
        assert entity[f"Changed_{kind.value}"] == 0
    assert_storable(entity)


def test_run_entity_error_is_bounded() -> None:
    entity = run_entity(run(status=RunStatus.FAILED, error="boom " * 2000), index_pending=True)
    assert entity["Status"] == "failed"
    assert len(entity["Error"]) == 4000
    assert run_status_of(entity) is RunStatus.FAILED


def test_coverage_entity() -> None:
    f = figures()
    entity = coverage_entity(run(status=RunStatus.COMPLETED, figures=f))
    assert entity["PartitionKey"] == "coverage"
    assert entity["RowKey"] == "2026-11-23"
    assert entity["RunId"] == "20261123T020000Z-abcdef"
    assert entity["Users"] == 3
    assert entity["CoveragePercent"] == 50.0
    assert entity["MemberRegistered"] == 1
    assert entity["GuestUnregistered"] == 1
    assert_storable(entity)


def test_coverage_entity_needs_figures() -> None:
    with pytest.raises(ValueError, match="figures"):
        coverage_entity(run())


def test_run_status_of_missing_is_running() -> None:
    assert run_status_of({}) is RunStatus.RUNNING
    assert run_status_of({"Status": "skipped"}) is RunStatus.SKIPPED


def test_table_names() -> None:
    assert schema.ALL_TABLES == ("MfaUsers", "MfaChanges", "MfaRuns")
    assert all(name.isalnum() and 3 <= len(name) <= 63 for name in schema.ALL_TABLES)


def test_longest_keys_fit() -> None:
    longest = "x" * MAX_ID_LENGTH
    for key in (
        state_key(longest),
        event_key(longest, 99_999_999, ChangeKind.NO_LONGER_ADMIN),
        night_key(longest, 99_999_999, ChangeKind.NO_LONGER_ADMIN),
    ):
        assert len(key.encode("utf-8")) < 1024  # RowKey limit: 1 KiB
