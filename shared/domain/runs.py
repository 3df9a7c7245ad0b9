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


def new_run_id(now: datetime) -> str:
    """Sortable by start time, unique across overlapping starts."""
    return now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def night_of(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%d")
