"""Who enforcement will stop: the scope facts on a user record, and the one test of "in scope".

Enforcement bites people who sign in to manage Azure. ``ScopeFacts`` holds, per user, which
enforcement phases they are in scope of and why (sign-ins to the enforced apps, Entra roles,
Azure RBAC, guest status), or why they are excluded from nudges. The scope signals fill it in
each night; until they have (``known`` is False), the registration report's ``isAdmin`` flag and
guest status are the best evidence we have, and ``in_scope`` falls back on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.domain.records import UserRecord


class Phase(StrEnum):
    PORTALS = "phase1"  # Azure portal, Entra admin center, Intune admin center
    ARM = "phase2"  # Azure CLI, Azure PowerShell, Azure mobile app, IaC, REST/ARM writes


@dataclass(frozen=True, slots=True)
class ScopeFacts:
    known: bool = False  # True once the scope signals were computed for this user
    phases: tuple[Phase, ...] = ()  # the phases the person is in scope of (empty: out of scope)
    reasons: tuple[str, ...] = ()  # machine-readable, e.g. "signin:azure_cli", "entra_role:Global Administrator"
    tools: tuple[str, ...] = ()  # management apps seen in sign-ins, e.g. "azure_portal", "azure_cli"
    last_seen: str | None = None  # last sign-in to a management app (ISO 8601), kept after logs age out
    exclusion: str | None = None  # why this person is not nudged (break-glass group, ...), None if not
    home_mfa_trusted: bool | None = None  # guests: this tenant accepts their home tenant's MFA


def in_scope(record: UserRecord) -> bool:
    """Whether enforcement applies to this person at all (exclusions are a separate question)."""
    if record.scope.known:
        return bool(record.scope.phases)
    return record.is_admin is True or record.is_guest


def phases_of(record: UserRecord) -> tuple[Phase, ...]:
    if record.scope.known:
        return record.scope.phases
    return (Phase.PORTALS, Phase.ARM) if in_scope(record) else ()
