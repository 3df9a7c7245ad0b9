"""The table layout: names, keys, and how records become entities and back. Pure, no I/O.

docs/table-schema.md explains the design; the short version:

- ``MfaUsers``: one partition per shard of user ids (``u-0`` .. ``u-f``). Each user has a state row
  (``s|<id>``) and one event row per change (``e|<id>|<version>|<kind>``) in the same partition, so a
  user's new state and the events that explain it commit in one atomic batch, and a user's whole
  timeline is one single-partition range query.
- ``MfaChanges``: the night index, one partition per night (``2026-11-23``), one row per change.
- ``MfaRuns``: run rows (partition ``run``), the coverage series (partition ``coverage``, one row per
  night) and the sync lease (partition ``lease``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from datetime import datetime
from typing import Any

from shared.domain.census import Coverage, NightFigures
from shared.domain.deltas import Change, ChangeKind
from shared.domain.records import StoredUser, UserRecord, UserType, intern_methods
from shared.domain.runs import RunStatus, SyncRun
from shared.domain.scope import Phase, ScopeFacts

USERS_TABLE = "MfaUsers"
CHANGES_TABLE = "MfaChanges"
RUNS_TABLE = "MfaRuns"
ALL_TABLES = (USERS_TABLE, CHANGES_TABLE, RUNS_TABLE)

RUN_PARTITION = "run"
COVERAGE_PARTITION = "coverage"
LEASE_PARTITION = "lease"
SYNC_LEASE_ROW = "sync"

_HEX = "0123456789abcdef"
# u-z holds the rare id that does not start with a hex digit (replayed or odd data).
SHARDS: tuple[str, ...] = (*(f"u-{c}" for c in _HEX), "u-z")
SNAPSHOT_PARTITION = "snapshot"  # the sync's compact copy of every state row (shared/adapters/snapshot.py)
STATE_PREFIX = "s|"
EVENT_PREFIX = "e|"
# '}' sorts right after '|', so [prefix, prefix with '|' replaced by '}') is exactly the prefix range.
_RANGE_END = "}"


def shard_of(user_id: str) -> str:
    """Object ids are GUIDs, so their first hex digit spreads users evenly over 16 partitions."""
    first = user_id[:1].lower()
    return f"u-{first}" if first and first in _HEX else "u-z"


def state_key(user_id: str) -> str:
    return f"{STATE_PREFIX}{user_id}"


def event_key(user_id: str, version: int, kind: ChangeKind) -> str:
    return f"{EVENT_PREFIX}{user_id}|{version:08d}|{kind.value}"


def prefix_range(prefix: str) -> tuple[str, str]:
    """The RowKey bounds [low, high) of every key that starts with ``prefix`` (ending in '|')."""
    return prefix, prefix[:-1] + _RANGE_END


def state_range() -> tuple[str, str]:
    return prefix_range(STATE_PREFIX)


def timeline_range(user_id: str) -> tuple[str, str]:
    return prefix_range(f"{EVENT_PREFIX}{user_id}|")


def upn_key(upn: str) -> str:
    """How a UPN is matched: Entra treats UPNs case-insensitively."""
    return upn.lower()


def night_key(user_id: str, version: int, kind: ChangeKind) -> str:
    return f"{user_id}|{version:08d}|{kind.value}"


# --- users -------------------------------------------------------------------------------------


def _put(entity: dict[str, Any], name: str, value: object) -> None:
    # Table Storage cannot store null: an absent property means "unknown".
    if value is not None:
        entity[name] = value


def user_entity(stored: StoredUser, *, run_id: str, changed_at: str) -> dict[str, Any]:
    r = stored.record
    entity: dict[str, Any] = {
        "PartitionKey": shard_of(r.id),
        "RowKey": state_key(r.id),
        "UserId": r.id,
        "Upn": r.upn,
        # Table Storage compares strings case-sensitively and Graph keeps the UPN's casing: the
        # lower-case copy makes "find this UPN" one exact-match filter (see history_reader).
        "UpnLower": upn_key(r.upn),
        "DisplayName": r.display_name,
        "UserType": r.user_type.value,
        "Enabled": r.enabled,
        "Methods": ",".join(r.methods),
        "OnPremisesSync": r.on_premises_sync,
        "InReport": r.in_report,
        "Version": stored.version,
        "Deleted": stored.deleted,
        "LastChanged": changed_at,
        "LastRunId": run_id,
    }
    _put(entity, "MfaRegistered", r.mfa_registered)
    _put(entity, "MfaCapable", r.mfa_capable)
    _put(entity, "IsAdmin", r.is_admin)
    _put(entity, "DefaultMethod", r.default_method)
    _put(entity, "Email", r.email)
    _put(entity, "Created", r.created)
    _put(entity, "ExternalUserState", r.external_user_state)
    _put(entity, "ReportUpdated", r.report_updated)
    _put(entity, "FirstSeen", stored.first_seen)
    entity.update(scope_properties(r.scope))
    return entity


# Scope facts on the state row: absent when the signals never ran for the user (``ScopeKnown``
# absent = unknown). Lists are bounded by the scope rules (20 reasons of at most 120 characters,
# at most 10 tools), so a user with many roles stays far below 64 KiB per property; how many
# reasons were left out is ``ScopeMoreReasons``.
def scope_properties(scope: ScopeFacts) -> dict[str, Any]:
    if not scope.known:
        return {}
    props: dict[str, Any] = {
        "ScopeKnown": True,
        "ScopePhases": ",".join(p.value for p in scope.phases),
        "ScopeReasons": json.dumps(list(scope.reasons), ensure_ascii=False, separators=(",", ":")),
        "ScopeTools": ",".join(scope.tools),
    }
    if scope.more_reasons:
        props["ScopeMoreReasons"] = scope.more_reasons
    if scope.tool_last_seen:
        props["ScopeToolLastSeen"] = json.dumps(dict(scope.tool_last_seen), separators=(",", ":"))
    _put(props, "ScopeLastSeen", scope.last_seen)
    _put(props, "ScopeExclusion", scope.exclusion)
    _put(props, "ScopeExclusionCode", scope.exclusion_code)
    _put(props, "HomeMfaTrusted", scope.home_mfa_trusted)
    _put(props, "ScopeMfaSatisfied", scope.mfa_satisfied)
    _put(props, "ScopeEverSignedIn", scope.ever_signed_in)
    return props


def _json_value(entity: Mapping[str, Any], name: str) -> Any:
    raw = entity.get(name)
    if not isinstance(raw, str) or not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _csv(entity: Mapping[str, Any], name: str) -> tuple[str, ...]:
    raw = entity.get(name)
    return tuple(v for v in raw.split(",") if v) if isinstance(raw, str) else ()


# Most users share their scope facts exactly (out of scope; a guest with no other signal): one
# object per distinct value keeps 100,000 remembered users' state compact.
_SHARED_SCOPES: dict[ScopeFacts, ScopeFacts] = {}
_UNKNOWN_SCOPE = ScopeFacts()


def _shared(scope: ScopeFacts) -> ScopeFacts:
    if scope.tool_last_seen:  # per-person times: not worth a lookup
        return scope
    shared = _SHARED_SCOPES.get(scope)
    if shared is None:
        if len(_SHARED_SCOPES) >= 4096:
            return scope
        _SHARED_SCOPES[scope] = shared = scope
    return shared


_SCOPE_PROPERTIES = (
    "ScopePhases",
    "ScopeReasons",
    "ScopeTools",
    "ScopeMoreReasons",
    "ScopeLastSeen",
    "ScopeExclusion",
    "ScopeExclusionCode",
    "HomeMfaTrusted",
    "ScopeMfaSatisfied",
    "ScopeEverSignedIn",
)
_DECODED: dict[tuple[Any, ...], ScopeFacts] = {}


def scope_from_entity(entity: Mapping[str, Any]) -> ScopeFacts:
    if entity.get("ScopeKnown") is not True:
        return _UNKNOWN_SCOPE
    if entity.get("ScopeToolLastSeen"):
        return _scope_from_entity(entity)
    # Rows without per-person times repeat a few values: decode each distinct one once.
    raw = tuple(entity.get(name) for name in _SCOPE_PROPERTIES)
    found = _DECODED.get(raw)
    if found is None:
        found = _shared(_scope_from_entity(entity))
        if len(_DECODED) < 4096:
            _DECODED[raw] = found
    return found


def _scope_from_entity(entity: Mapping[str, Any]) -> ScopeFacts:
    phases = tuple(Phase(v) for v in _csv(entity, "ScopePhases") if v in Phase._value2member_map_)
    reasons = _json_value(entity, "ScopeReasons")
    seen = _json_value(entity, "ScopeToolLastSeen")
    more = entity.get("ScopeMoreReasons")
    return ScopeFacts(
        known=True,
        phases=phases,
        reasons=tuple(str(r) for r in reasons) if isinstance(reasons, list) else (),
        tools=_csv(entity, "ScopeTools"),
        last_seen=_opt_str(entity, "ScopeLastSeen"),
        exclusion=_opt_str(entity, "ScopeExclusion"),
        home_mfa_trusted=_opt_bool(entity, "HomeMfaTrusted"),
        exclusion_code=_opt_str(entity, "ScopeExclusionCode"),
        tool_last_seen=tuple(sorted((str(k), str(v)) for k, v in seen.items())) if isinstance(seen, dict) else (),
        mfa_satisfied=_opt_bool(entity, "ScopeMfaSatisfied"),
        more_reasons=more if isinstance(more, int) and not isinstance(more, bool) else 0,
        ever_signed_in=_opt_bool(entity, "ScopeEverSignedIn"),
    )


def _opt_bool(entity: Mapping[str, Any], name: str) -> bool | None:
    value = entity.get(name)
    return value if isinstance(value, bool) else None


def _opt_str(entity: Mapping[str, Any], name: str) -> str | None:
    value = entity.get(name)
    return value if isinstance(value, str) and value != "" else None


def stored_user_from_entity(entity: Mapping[str, Any], etag: str | None) -> StoredUser:
    methods = entity.get("Methods") or ""
    record = UserRecord(
        id=str(entity["UserId"]),
        upn=str(entity.get("Upn") or ""),
        display_name=str(entity.get("DisplayName") or ""),
        user_type=UserType(entity.get("UserType") or "member"),
        enabled=bool(entity.get("Enabled", True)),
        mfa_registered=_opt_bool(entity, "MfaRegistered"),
        mfa_capable=_opt_bool(entity, "MfaCapable"),
        is_admin=_opt_bool(entity, "IsAdmin"),
        methods=intern_methods(tuple(methods.split(","))) if methods else (),
        default_method=_opt_str(entity, "DefaultMethod"),
        email=_opt_str(entity, "Email"),
        created=_opt_str(entity, "Created"),
        external_user_state=_opt_str(entity, "ExternalUserState"),
        on_premises_sync=bool(entity.get("OnPremisesSync", False)),
        report_updated=_opt_str(entity, "ReportUpdated"),
        in_report=bool(entity.get("InReport", True)),
        scope=scope_from_entity(entity),
    )
    return StoredUser(
        record=record,
        version=int(entity.get("Version", 1)),
        etag=etag,
        deleted=bool(entity.get("Deleted", False)),
        first_seen=_opt_str(entity, "FirstSeen"),
    )


# --- changes -----------------------------------------------------------------------------------


def _change_properties(change: Change, record: UserRecord, version: int, run: SyncRun, seen_at: str) -> dict[str, Any]:
    return {
        "UserId": change.user_id,
        "Kind": change.kind.value,
        "Version": version,
        "Upn": record.upn,
        "DisplayName": record.display_name,
        "UserType": record.user_type.value,
        "Before": json.dumps(change.before, ensure_ascii=False) if change.before is not None else "",
        "After": json.dumps(change.after, ensure_ascii=False) if change.after is not None else "",
        "SeenAt": seen_at,
        "Night": run.night,
        "RunId": run.run_id,
    }


def timeline_entity(change: Change, record: UserRecord, version: int, run: SyncRun, seen_at: str) -> dict[str, Any]:
    entity = {
        "PartitionKey": shard_of(change.user_id),
        "RowKey": event_key(change.user_id, version, change.kind),
    }
    entity.update(_change_properties(change, record, version, run, seen_at))
    return entity


def night_entity(timeline_row: Mapping[str, Any]) -> dict[str, Any]:
    """The night-index copy of a timeline row: same properties, keyed by night."""
    entity = dict(timeline_row)
    entity["PartitionKey"] = str(timeline_row["Night"])
    entity["RowKey"] = night_key(
        str(timeline_row["UserId"]), int(timeline_row["Version"]), ChangeKind(timeline_row["Kind"])
    )
    return entity


# --- runs and coverage -------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def run_entity(run: SyncRun, *, index_pending: bool) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": RUN_PARTITION,
        "RowKey": run.run_id,
        "Night": run.night,
        "Status": run.status.value,
        "Started": run.started.isoformat(),
        "PullComplete": run.pull_complete,
        # True until every committed change is in the night index; a crashed run keeps it and the
        # next run repairs the index from the timeline rows.
        "IndexPending": index_pending,
    }
    _put(entity, "Finished", _iso(run.finished))
    if run.finished:
        entity["Seconds"] = round((run.finished - run.started).total_seconds(), 3)
    _put(entity, "Error", run.error[:4000] if run.error else None)
    for name, value in asdict(run.io).items():
        entity[_camel(name)] = value
    entity.update(signal_properties(run))
    if run.figures:
        entity.update(figures_properties(run.figures))
    return entity


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def signal_properties(run: SyncRun) -> dict[str, Any]:
    """Where the night's facts came from (``RegistrationSource`` report | per_user_methods, ...)."""
    s = run.signals
    return {
        "RegistrationSource": s.registration_source.value,
        "SignInSource": s.sign_in_source.value,
        "SignInsRead": s.sign_ins_read,
        "SignInUsers": s.sign_in_users,
        "RoleAssignments": s.role_assignments,
        "RoleEligibilities": s.role_eligibilities,
        "AzureRbac": s.azure_rbac,
        "AzureRoleAssignments": s.azure_role_assignments,
        "PerUserLookups": s.per_user_lookups,
    }


def _coverage_properties(prefix: str, coverage: Coverage) -> dict[str, Any]:
    props: dict[str, Any] = {
        f"{prefix}Registered": coverage.registered,
        f"{prefix}Unregistered": coverage.unregistered,
        f"{prefix}Unknown": coverage.unknown,
    }
    _put(props, f"{prefix}CoveragePercent", coverage.percent)
    return props


def figures_properties(f: NightFigures) -> dict[str, Any]:
    props: dict[str, Any] = {
        "Users": f.users,
        "Members": f.members,
        "Guests": f.guests,
        "EnabledUsers": f.enabled,
        "DisabledUsers": f.disabled,
        "Admins": f.admins,
        "SilentUpdates": f.silent_updates,
        "Changes": json.dumps(f.changes),
        "Skipped": json.dumps(f.skipped),
        "SkippedTotal": sum(f.skipped.values()),
        "UnknownMethods": ",".join(f.unknown_methods),
    }
    props.update(_coverage_properties("", f.coverage))
    props.update(_coverage_properties("Member", f.member_coverage))
    props.update(_coverage_properties("Guest", f.guest_coverage))
    props.update(_coverage_properties("Admin", f.admin_coverage))
    for kind, count in f.changes.items():
        props[f"Changed_{kind}"] = count
    props.update(scope_figures_properties(f))
    return props


def scope_figures_properties(f: NightFigures) -> dict[str, Any]:
    """In-scope figures (enabled accounts): ``InScope`` and its registration (``InScopeRegistered``
    ...), the same per phase (``Phase1InScope``, ``Phase1Registered``, ``Phase1Unregistered``,
    ``Phase1Unknown``, ``Phase1CoveragePercent``; ``Phase2...``), users in scope per reason kind
    and excluded per code (JSON objects), and ``ScopeKnownUsers``."""
    props: dict[str, Any] = {
        "ScopeKnownUsers": f.scope_known,
        "InScope": f.in_scope,
        "ScopeReasons": json.dumps(f.scope_reasons),
        "ScopeExcluded": json.dumps(f.excluded),
        "ExcludedTotal": sum(f.excluded.values()),
    }
    props.update(_coverage_properties("InScope", f.in_scope_coverage))
    for phase in Phase:
        coverage = f.phase_coverage.get(phase.value, Coverage(0, 0, 0))
        prefix = phase.value.capitalize()  # Phase1, Phase2
        props[f"{prefix}InScope"] = coverage.registered + coverage.unregistered + coverage.unknown
        props.update(_coverage_properties(prefix, coverage))
    return props


def coverage_entity(run: SyncRun) -> dict[str, Any]:
    """One row per night: the latest completed run of that night wins."""
    if run.figures is None:
        raise ValueError("a coverage row needs the run's figures")
    entity: dict[str, Any] = {
        "PartitionKey": COVERAGE_PARTITION,
        "RowKey": run.night,
        "RunId": run.run_id,
    }
    entity.update(figures_properties(run.figures))
    return entity


def run_status_of(entity: Mapping[str, Any]) -> RunStatus:
    return RunStatus(entity.get("Status", RunStatus.RUNNING.value))
