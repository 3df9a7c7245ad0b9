"""Who is in scope and why, and who is not nudged and why: the scope rules, pure.

The adapters gather *evidence* (sign-ins to the enforced apps, Entra role assignments and PIM
eligibility, Azure RBAC, the exclusion group, the cross-tenant access policy); the sync turns each
user's evidence into ``ScopeFacts`` with ``assess``. Nothing here does I/O or reads a clock: "now"
is an argument, so every rule is a unit test away.

Phases per signal (see ``shared.domain.scope`` for the reason and exclusion codes):

- a sign-in to a management app: that app's phase (portal: phase 1; CLI, PowerShell, mobile app,
  ARM: phase 2), remembered for ``memory_days`` after the last sign-in, so a person stays in scope
  after the logs age out;
- an Entra role (active, eligible, or the report's ``isAdmin``), an Azure RBAC role, being a
  guest: both phases. Which tool such a person will use is not known; a wrongly included person
  gets a reminder too many, a wrongly left out one is locked out.

Some facts cost a call per user and are only worth it for a few: ``assess`` answers with the
lookups that would refine the facts (``Assessment.needs``), the sync makes them, and calls
``assess`` again with the results.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from shared.domain.management_apps import DIRECTORY_SYNC_ROLE_TEMPLATES, phases_of_tool
from shared.domain.records import UserRecord
from shared.domain.scope import ExclusionCode, Phase, ReasonKind, ScopeFacts

MAX_REASONS = 20  # a user with many roles: the rest are counted in ScopeFacts.more_reasons
MAX_REASON_LENGTH = 120
MAX_TOOLS = 10


class Filter(StrEnum):
    """Noise filters (SCOPE_FILTERS); the exclusion group and UPN patterns apply when configured."""

    DISABLED = "disabled"
    NEVER_SIGNED_IN = "never_signed_in"
    DIRECTORY_SYNC = "directory_sync"
    SERVICE_ACCOUNTS = "service_accounts"


ALL_FILTERS = frozenset(Filter)

EXCLUSION_TEXT = {
    ExclusionCode.DISABLED: "account disabled",
    ExclusionCode.EXCLUSION_GROUP: "in the exclusion group (break-glass or other excluded accounts)",
    ExclusionCode.UPN_PATTERN: "UPN matches an excluded pattern",
    ExclusionCode.DIRECTORY_SYNC: "on-premises directory synchronization account",
    ExclusionCode.NEVER_SIGNED_IN: "has never signed in (room, resource or shared mailbox, or an unredeemed guest)",
    ExclusionCode.WORKLOAD_IDENTITY: "service account: move to a workload identity",
}


# --- evidence --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignIn:
    """One sign-in to a management app, reduced to what scope needs (see normalize.sign_in_from_graph)."""

    user_id: str
    tool: str
    at: str  # createdDateTime, ISO 8601
    interactive: bool
    succeeded: bool
    mfa: bool  # MFA was required and completed (authenticationRequirement = multiFactorAuthentication)


@dataclass(slots=True)
class SignInTally:
    """A user's sign-ins in the lookback window, folded while paging (a few fields per user, never
    the sign-ins themselves)."""

    last_seen: dict[str, str] = field(default_factory=dict)  # tool -> latest createdDateTime
    interactive: bool = False
    non_interactive: bool = False
    mfa_success: bool = False
    single_factor_success: bool = False

    def add(self, sign_in: SignIn) -> None:
        seen = self.last_seen.get(sign_in.tool)
        if seen is None or _later(sign_in.at, seen):
            self.last_seen[sign_in.tool] = sign_in.at
        if sign_in.interactive:
            self.interactive = True
        else:
            self.non_interactive = True
        if sign_in.succeeded:
            if sign_in.mfa:
                self.mfa_success = True
            else:
                self.single_factor_success = True


@dataclass(frozen=True, slots=True)
class RoleGrant:
    """An Entra directory role a user holds, directly or through a role-assignable group."""

    name: str
    template_id: str | None = None
    eligible: bool = False  # PIM-eligible rather than active


@dataclass(frozen=True)
class GuestTrust:
    """The cross-tenant access policy's inbound MFA trust: the default and per-partner overrides."""

    default_mfa_accepted: bool | None = None  # None: the policy could not be read
    partners: Mapping[str, bool | None] = field(default_factory=dict)  # tenantId -> isMfaAccepted

    @property
    def partner_overrides(self) -> bool:
        """Whether any partner decides differently from the default (then a guest's home tenant
        must be known to classify them)."""
        return any(v is not None and v != self.default_mfa_accepted for v in self.partners.values())

    def accepts(self, home_tenant_id: str) -> bool | None:
        value = self.partners.get(home_tenant_id.lower())
        return self.default_mfa_accepted if value is None else value


@dataclass(frozen=True, slots=True)
class Evidence:
    """One user's signals."""

    sign_ins: SignInTally | None = None  # None: no sign-in to a management app in the window
    roles: tuple[RoleGrant, ...] = ()
    rbac_roles: tuple[str, ...] = ()  # Azure role names
    in_exclusion_group: bool = False


NO_EVIDENCE = Evidence()


@dataclass(frozen=True)
class ScopeSignals:
    """Every user's evidence, keyed by (lower-case) user id."""

    sign_ins: Mapping[str, SignInTally] = field(default_factory=dict)
    sign_ins_available: bool = True  # False: the logs could not be read (licence): memory only
    roles: Mapping[str, tuple[RoleGrant, ...]] = field(default_factory=dict)
    rbac: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    exclusion_group: frozenset[str] = frozenset()
    guest_trust: GuestTrust = field(default_factory=GuestTrust)

    def for_user(self, user_id: str) -> Evidence:
        tally = self.sign_ins.get(user_id)
        roles = self.roles.get(user_id, ())
        rbac = self.rbac.get(user_id, ())
        member = user_id in self.exclusion_group
        if tally is None and not roles and not rbac and not member:
            return NO_EVIDENCE
        return Evidence(tally, roles, rbac, member)

    def evidence_ids(self) -> set[str]:
        """The users ``for_user`` finds evidence for (everyone else gets ``NO_EVIDENCE``)."""
        named = self.candidate_ids() | self.exclusion_group  # no one else can have any
        return {user_id for user_id in named if self.for_user(user_id) is not NO_EVIDENCE}

    def candidate_ids(self) -> set[str]:
        """Users some signal names (everyone else can only be in scope as a guest or by isAdmin)."""
        return set(self.sign_ins) | set(self.roles) | set(self.rbac)


@dataclass(frozen=True, slots=True)
class PersonFacts:
    """What scope needs from the Graph user object beyond the UserRecord (normalize.person_from_graph)."""

    has_mailbox: bool = True  # ``mail`` is set: a service account usually has none
    home_domain: str | None = None  # guests: their home organisation's domain
    entra_guest: bool | None = None  # guests: signs in with an Entra (work) account; None: unknown


@dataclass(frozen=True)
class ScopePolicy:
    """The scope settings (shared.config builds it from SCOPE_* and SIGNIN_* settings)."""

    lookback_days: int = 30
    memory_days: int = 180
    guests_in_scope: bool = True
    filters: frozenset[Filter] = ALL_FILTERS
    upn_patterns: tuple[str, ...] = ()  # fnmatch patterns, matched case-insensitively


class Lookup(StrEnum):
    SIGN_IN_ACTIVITY = "sign_in_activity"  # GET /users/{id}?$select=signInActivity
    HOME_TENANT = "home_tenant"  # findTenantInformationByDomainName(home domain)


@dataclass(frozen=True, slots=True)
class LookupResults:
    ever_signed_in: bool | None = None  # None: not looked up or not available (licence)
    home_tenant_id: str | None = None  # "" when the domain is not an Entra tenant; None: unknown


@dataclass(frozen=True, slots=True)
class Assessment:
    facts: ScopeFacts
    needs: frozenset[Lookup] = frozenset()


# --- the rules -------------------------------------------------------------------------------


def _instant(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


def _later(a: str, b: str) -> bool:
    ta, tb = _instant(a), _instant(b)
    if ta is None or tb is None:
        return ta is not None
    return ta > tb


def remembered_tools(
    previous: ScopeFacts | None, tally: SignInTally | None, now: datetime, memory_days: int
) -> dict[str, str]:
    """Tonight's per-tool last sign-in: the stored memory and tonight's logs, the later of the
    two per tool, forgetting tools not used for ``memory_days``."""
    memory: dict[str, str] = dict(previous.tool_last_seen) if previous else {}
    if tally is not None:
        for tool, seen in tally.last_seen.items():
            old = memory.get(tool)
            if old is None or _later(seen, old):
                memory[tool] = seen
    horizon = now - timedelta(days=memory_days)
    kept = {}
    for tool, seen in memory.items():
        at = _instant(seen)
        if at is not None and at >= horizon and phases_of_tool(tool):
            kept[tool] = seen
    return dict(sorted(kept.items())[:MAX_TOOLS])


def _bounded(reason: str) -> str:
    return reason[:MAX_REASON_LENGTH]


def _reasons(memory: Mapping[str, str], record: UserRecord, evidence: Evidence, policy: ScopePolicy) -> list[str]:
    reasons = [f"{ReasonKind.SIGNIN}:{tool}" for tool in memory]
    active = sorted({_bounded(f"{ReasonKind.ENTRA_ROLE}:{r.name}") for r in evidence.roles if not r.eligible})
    eligible = sorted({_bounded(f"{ReasonKind.ENTRA_ROLE_ELIGIBLE}:{r.name}") for r in evidence.roles if r.eligible})
    reasons += active + eligible
    if record.is_admin is True and not evidence.roles:
        reasons.append(ReasonKind.REPORT_ADMIN.value)
    reasons += sorted({_bounded(f"{ReasonKind.AZURE_RBAC}:{name}") for name in evidence.rbac_roles})
    if record.is_guest and policy.guests_in_scope:
        reasons.append(ReasonKind.GUEST.value)
    return reasons


def _phases(memory: Mapping[str, str], reasons: list[str]) -> tuple[Phase, ...]:
    phases: set[Phase] = set()
    for tool in memory:
        phases.update(phases_of_tool(tool))
    if any(not r.startswith(f"{ReasonKind.SIGNIN}:") for r in reasons):
        phases.update((Phase.PORTALS, Phase.ARM))
    return tuple(p for p in Phase if p in phases)


def _mfa_satisfied(tally: SignInTally | None, previous: ScopeFacts | None) -> bool | None:
    """Whether their management sign-ins completed MFA: False if any succeeded with a single
    factor in the window; kept from the last night with sign-ins when the window has none."""
    if tally is not None and (tally.mfa_success or tally.single_factor_success):
        return not tally.single_factor_success
    return previous.mfa_satisfied if previous else None


def _is_sync_account(record: UserRecord, evidence: Evidence) -> bool:
    upn = record.upn.lower()
    if upn.startswith("sync_") or upn.startswith("adtoaadsyncserviceaccount@"):
        return True
    return any(r.template_id in DIRECTORY_SYNC_ROLE_TEMPLATES for r in evidence.roles if r.template_id)


def _older_than(created: str | None, now: datetime, days: int) -> bool:
    at = _instant(created) if created else None
    return at is not None and now - at > timedelta(days=days)


def _home_trust(
    record: UserRecord, person: PersonFacts, trust: GuestTrust, lookups: LookupResults
) -> tuple[bool | None, bool]:
    """(home_mfa_trusted, whether the home tenant must be looked up to know)."""
    if not record.is_guest:
        return None, False
    if person.entra_guest is False:
        return False, False  # a Microsoft account, Google, email one-time passcode: no home MFA to trust
    if not trust.partner_overrides:
        return trust.default_mfa_accepted, False
    if lookups.home_tenant_id is None:
        return None, person.home_domain is not None
    if lookups.home_tenant_id == "":
        return False, False  # the home domain is not an Entra tenant
    return trust.accepts(lookups.home_tenant_id), False


def _service_like(tally: SignInTally | None, person: PersonFacts, previous: ScopeFacts | None, memory: bool) -> bool:
    if person.has_mailbox:
        return False
    if tally is not None and (tally.interactive or tally.non_interactive):
        return tally.non_interactive and not tally.interactive
    # No sign-in in the window: keep last night's verdict while the memory lasts.
    return memory and previous is not None and previous.workload_identity


def _exclusion(
    record: UserRecord,
    person: PersonFacts,
    evidence: Evidence,
    previous: ScopeFacts | None,
    memory: Mapping[str, str],
    policy: ScopePolicy,
    now: datetime,
    lookups: LookupResults,
) -> tuple[ExclusionCode | None, bool]:
    """(the first exclusion that applies, whether a sign-in-activity lookup could decide one)."""
    filters = policy.filters
    if Filter.DISABLED in filters and not record.enabled:
        return ExclusionCode.DISABLED, False
    if evidence.in_exclusion_group:
        return ExclusionCode.EXCLUSION_GROUP, False
    upn = record.upn.lower()
    if upn and any(fnmatch.fnmatchcase(upn, p.lower()) for p in policy.upn_patterns):
        return ExclusionCode.UPN_PATTERN, False
    if Filter.DIRECTORY_SYNC in filters and _is_sync_account(record, evidence):
        return ExclusionCode.DIRECTORY_SYNC, False
    # Never signed in: only for accounts old enough to have, and with no management sign-in
    # remembered (a new admin who has not signed in yet is exactly who must be reached).
    if (
        Filter.NEVER_SIGNED_IN in filters
        and not memory
        and record.enabled
        and _older_than(record.created, now, policy.lookback_days)
    ):
        if record.is_guest:
            # An invitation never redeemed: the guest has never signed in here.
            if (record.external_user_state or "").lower() == "pendingacceptance":
                return ExclusionCode.NEVER_SIGNED_IN, False
        else:
            ever = _ever_signed_in(memory, previous, lookups)
            if ever is False:
                return ExclusionCode.NEVER_SIGNED_IN, False
            if ever is None:
                return None, True
    if Filter.SERVICE_ACCOUNTS in filters and _service_like(evidence.sign_ins, person, previous, bool(memory)):
        return ExclusionCode.WORKLOAD_IDENTITY, False
    return None, False


def steady_in_time(previous: ScopeFacts, created: str | None, now: datetime, policy: ScopePolicy) -> bool:
    """Whether the clock alone can no longer change this user's assessment. The rules read the
    clock in two places: the sign-in memory's horizon (so: nothing remembered) and an account's
    age for the never-signed-in filter (so: older than the lookback already, or no usable
    creation date, which never counts as old)."""
    if previous.tool_last_seen:
        return False
    at = _instant(created) if created else None
    return at is None or now - at > timedelta(days=policy.lookback_days)


def _ever_signed_in(memory: Mapping[str, str], previous: ScopeFacts | None, lookups: LookupResults) -> bool | None:
    """True once known (kept for good); False only from tonight's lookup (re-checked each night)."""
    if lookups.ever_signed_in is not None:
        return lookups.ever_signed_in
    if memory or (previous is not None and previous.ever_signed_in):
        return True
    return None


def _timestamp(value: str) -> float:
    at = _instant(value)
    return at.timestamp() if at else 0.0


def assess(
    record: UserRecord,
    person: PersonFacts,
    evidence: Evidence,
    previous: ScopeFacts | None,
    policy: ScopePolicy,
    trust: GuestTrust,
    now: datetime,
    lookups: LookupResults = LookupResults(),
) -> Assessment:
    """Tonight's scope facts for one user, and the lookups that would refine them.

    ``previous`` is the stored facts (None for a new user): the sign-in memory and the verdicts
    that only sign-ins can renew are carried from it.
    """
    if (
        evidence is NO_EVIDENCE
        and not record.is_guest
        and record.is_admin is not True
        and (previous is None or not previous.tool_last_seen)
        and lookups.ever_signed_in is None
    ):
        # The common case, most of a tenant: no signal at all. Same answer as below, shared.
        mfa = previous.mfa_satisfied if previous else None
        ever = True if previous is not None and previous.ever_signed_in else None
        return _OUT_OF_SCOPE[(mfa, ever)]
    memory = remembered_tools(previous, evidence.sign_ins, now, policy.memory_days)
    reasons = _reasons(memory, record, evidence, policy)
    phases = _phases(memory, reasons)
    trusted, needs_home = _home_trust(record, person, trust, lookups)
    needs: set[Lookup] = set()
    code: ExclusionCode | None = None
    if phases:
        code, needs_activity = _exclusion(record, person, evidence, previous, memory, policy, now, lookups)
        if needs_activity:
            needs.add(Lookup.SIGN_IN_ACTIVITY)
        if needs_home:
            needs.add(Lookup.HOME_TENANT)
    facts = ScopeFacts(
        known=True,
        phases=phases,
        reasons=tuple(reasons[:MAX_REASONS]),
        tools=tuple(memory),
        last_seen=max(memory.values(), key=_timestamp) if memory else None,
        exclusion=EXCLUSION_TEXT[code] if code else None,
        home_mfa_trusted=trusted,
        exclusion_code=code.value if code else None,
        tool_last_seen=tuple(memory.items()),
        mfa_satisfied=_mfa_satisfied(evidence.sign_ins, previous),
        more_reasons=max(0, len(reasons) - MAX_REASONS),
        ever_signed_in=_ever_signed_in(memory, previous, lookups),
    )
    return Assessment(facts, frozenset(needs))


_OUT_OF_SCOPE = {
    (mfa, ever): Assessment(ScopeFacts(known=True, mfa_satisfied=mfa, ever_signed_in=ever))
    for mfa in (None, True, False)
    for ever in (None, True)
}
