"""A sync run as the history remembers it: when, how it ended, and the night's figures."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from shared.domain.census import NightFigures


class RunStatus(StrEnum):
    RUNNING = "running"  # still running, or crashed before it could say otherwise
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"  # another sync held the lease (a timer retry overlapping a running sync)


@dataclass(frozen=True)
class IoFigures:
    graph_requests: int = 0
    graph_throttled: int = 0
    graph_server_errors: int = 0
    graph_pages: int = 0
    table_reads: int = 0  # entities read
    table_writes: int = 0  # entities written
    table_batches: int = 0  # entity-group transactions submitted
    arm_requests: int = 0  # Azure Resource Manager (Resource Graph) responses, retries included
    arm_throttled: int = 0
    remembered_from: str = ""  # last night's users came from the "snapshot" or the "state_rows"
    users_carried: int = 0  # steady users with unchanged Graph objects: counted, not recomputed
    users_recomputed: int = 0


class RegistrationSource(StrEnum):
    REPORT = "report"  # the registration report (Entra ID P1/P2)
    PER_USER_METHODS = "per_user_methods"  # licence fallback: each in-scope user's methods


class SignInSource(StrEnum):
    LOGS = "logs"  # v1.0 interactive sign-ins (and beta non-interactive ones when enabled)
    UNAVAILABLE = "unavailable_licence"  # the tenant has no P1/P2: scope kept from remembered sign-ins
    OFF = "off"  # the run had no scope signals


@dataclass(frozen=True)
class SignalFigures:
    """Where tonight's facts came from and how much evidence was read (for the run row)."""

    registration_source: RegistrationSource = RegistrationSource.REPORT
    sign_in_source: SignInSource = SignInSource.OFF
    sign_ins_read: int = 0  # sign-ins to management apps read (interactive + non-interactive)
    sign_in_users: int = 0  # distinct users among them
    role_assignments: int = 0  # active Entra role assignments read
    role_eligibilities: int = 0  # PIM eligibility instances read
    azure_rbac: bool = False  # whether the Azure RBAC signal ran
    azure_role_assignments: int = 0  # Resource Graph role assignment rows read
    per_user_lookups: int = 0  # per-user calls (methods, sign-in activity, home tenants)


@dataclass(frozen=True)
class SyncRun:
    run_id: str
    night: str  # YYYY-MM-DD, the UTC date the run started: the key of "what changed that night"
    started: datetime
    status: RunStatus = RunStatus.RUNNING
    finished: datetime | None = None
    pull_complete: bool = False
    error: str | None = None
    figures: NightFigures | None = None
    io: IoFigures = field(default_factory=IoFigures)
    signals: SignalFigures = field(default_factory=SignalFigures)


def new_run_id(now: datetime) -> str:
    """Sortable by start time, unique across overlapping starts."""
    return now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def night_of(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%d")
