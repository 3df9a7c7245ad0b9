"""Who enforcement will stop: the scope facts on a user record, and the one test of "in scope".

Enforcement bites people who sign in to manage Azure. ``ScopeFacts`` holds, per user, which
enforcement phases they are in scope of and why (sign-ins to the enforced apps, Entra roles,
Azure RBAC, guest status), or why they are excluded from nudges. The scope signals fill it in
each night (``shared.domain.scope_rules``); until they have (``known`` is False), the registration
report's ``isAdmin`` flag and guest status are the best evidence we have, and ``in_scope`` falls
back on them.

Reason codes (``ScopeFacts.reasons``, machine-readable, ``kind`` or ``kind:detail``):

==============================  ===============================================================
``signin:<tool>``               signed in to a management app within SCOPE_SIGNIN_MEMORY_DAYS
                                (tools: ``azure_portal``, ``azure_cli``, ``azure_powershell``,
                                ``azure_mobile_app``, ``azure_resource_manager``)
``entra_role:<role>``           an active Entra directory role, direct or through a group
``entra_role_eligible:<role>``  a PIM-eligible Entra directory role, direct or through a group
``report_admin``                the registration report says ``isAdmin`` but no role assignment
                                was found (e.g. PIM for Groups, which is not expanded)
``azure_rbac:<role>``           an Azure role assignment (Resource Graph), direct or by group
``guest``                       a B2B guest (SCOPE_GUESTS=true)
==============================  ===============================================================

Exclusion codes (``ScopeFacts.exclusion_code``; ``exclusion`` is the matching sentence an admin
reads). Only people in scope get one; the first that applies wins, in this order:

=======================  ==========================================================================
``disabled``             the account is disabled (filter ``disabled``)
``exclusion_group``      a (transitive) member of SCOPE_EXCLUSION_GROUP_ID, e.g. break-glass accounts
``upn_pattern``          the UPN matches SCOPE_EXCLUDED_UPN_PATTERNS
``directory_sync``       an on-premises directory synchronization account (``Sync_*`` UPN or the
                         Directory Synchronization Accounts role; filter ``directory_sync``)
``never_signed_in``      has never signed in and is older than SIGNIN_LOOKBACK_DAYS: a room,
                         resource or shared mailbox, or a guest who never redeemed the invitation
                         (filter ``never_signed_in``)
``workload_identity``    behaves like a service account (only non-interactive sign-ins to
                         management apps, no mailbox): "service account: move to a workload
                         identity" (filter ``service_accounts``)
=======================  ==========================================================================

A guest whose home tenant's MFA this tenant trusts (cross-tenant access ``inboundTrust``) is not
excluded: ``home_mfa_trusted`` says so and the nudge policy (NUDGE_GUEST_TRUSTED) decides whether
they get the home-tenant wording or no message. A missing deliverable address is not a scope
matter either: the nudge planner reports it.

Tracked and carried. The nightly sync writes a user only when a *tracked* value changed
(``ScopeFacts.tracked``). ``last_seen`` and the per-tool ``tool_last_seen`` move forward every
night for active admins, so they are *carried*: stored whenever the row is written anyway, and
written on their own only when a tool's last sign-in moved by more than ``LAST_SEEN_PRECISION``
(``last_seen_refresh_due``). The stored last-seen is therefore at most a week behind, which is
what keeps a person in scope after the sign-in logs age out (7 days on Entra ID Free, 30 on P1/P2).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.domain.records import UserRecord


class Phase(StrEnum):
    PORTALS = "phase1"  # Azure portal, Entra admin center, Intune admin center
    ARM = "phase2"  # Azure CLI, Azure PowerShell, Azure mobile app, IaC, REST/ARM writes


class ReasonKind(StrEnum):
    SIGNIN = "signin"
    ENTRA_ROLE = "entra_role"
    ENTRA_ROLE_ELIGIBLE = "entra_role_eligible"
    REPORT_ADMIN = "report_admin"
    AZURE_RBAC = "azure_rbac"
    GUEST = "guest"


class ExclusionCode(StrEnum):
    DISABLED = "disabled"
    EXCLUSION_GROUP = "exclusion_group"
    UPN_PATTERN = "upn_pattern"
    DIRECTORY_SYNC = "directory_sync"
    NEVER_SIGNED_IN = "never_signed_in"
    WORKLOAD_IDENTITY = "workload_identity"


# How far a tool's last sign-in may move before it is worth a write of its own (see module doc).
LAST_SEEN_PRECISION = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class ScopeFacts:
    known: bool = False  # True once the scope signals were computed for this user
    phases: tuple[Phase, ...] = ()  # the phases the person is in scope of (empty: out of scope)
    reasons: tuple[str, ...] = ()  # reason codes (module doc), sorted, at most MAX_REASONS
    tools: tuple[str, ...] = ()  # management apps signed in to within the memory window, sorted
    last_seen: str | None = None  # last sign-in to a management app (ISO 8601), kept after logs age out
    exclusion: str | None = None  # why this person is not nudged (break-glass group, ...), None if not
    home_mfa_trusted: bool | None = None  # guests: this tenant accepts their home tenant's MFA
    exclusion_code: str | None = None  # an ExclusionCode value, with ``exclusion``
    tool_last_seen: tuple[tuple[str, str], ...] = ()  # (tool, ISO 8601) per tool, sorted by tool
    mfa_satisfied: bool | None = None  # their management sign-ins completed MFA (None: none seen)
    more_reasons: int = 0  # reasons left out of ``reasons`` by the cap (a user with many roles)
    # Whether the account has ever signed in (to anything): True is kept for good, so the per-user
    # signInActivity lookup behind the never_signed_in filter is made once per account, not nightly.
    ever_signed_in: bool | None = None

    @property
    def workload_identity(self) -> bool:
        """Flagged as a service account that should become a workload identity."""
        return self.exclusion_code == ExclusionCode.WORKLOAD_IDENTITY.value

    def tracked(self) -> tuple[object, ...]:
        """The values whose change is worth a write (``last_seen``/``tool_last_seen`` are carried)."""
        return (
            self.known,
            self.phases,
            self.reasons,
            self.more_reasons,
            self.tools,
            self.exclusion,
            self.exclusion_code,
            self.home_mfa_trusted,
            self.mfa_satisfied,
            self.ever_signed_in,
        )


def reason_kind(reason: str) -> str:
    return reason.split(":", 1)[0]


def in_scope(record: UserRecord) -> bool:
    """Whether enforcement applies to this person at all (exclusions are a separate question)."""
    if record.scope.known:
        return bool(record.scope.phases)
    return record.is_admin is True or record.is_guest


def phases_of(record: UserRecord) -> tuple[Phase, ...]:
    if record.scope.known:
        return record.scope.phases
    return (Phase.PORTALS, Phase.ARM) if in_scope(record) else ()


def _instant(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def last_seen_refresh_due(stored: ScopeFacts, tonight: ScopeFacts) -> bool:
    """Whether tonight's last-seen moved far enough past the stored one to be worth a write.

    Only forward moves of a tool both sides know count: a tool that appears or ages out changes
    ``tools``, which is tracked anyway.
    """
    before = dict(stored.tool_last_seen)
    for tool, seen in tonight.tool_last_seen:
        old = before.get(tool)
        if old is None or old == seen:
            continue
        new_at, old_at = _instant(seen), _instant(old)
        if new_at is None or old_at is None:
            return True  # unreadable: store what we have rather than compare garbage forever
        if new_at - old_at > LAST_SEEN_PRECISION:
            return True
    return False
