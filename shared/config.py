"""The app's settings: one declared list, read from the environment once and validated.

Every setting the code reads is declared in ``SETTINGS`` below, with its default and what it is for.
That list is the contract that ``local.settings.sample.json`` and the Bicep app settings are tested
against, so adding a setting here without adding it there fails the suite.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from shared.domain.cadence import Cadence, parse_days_before
from shared.domain.nudges import GuestTrust
from shared.domain.scope_rules import Filter, ScopePolicy
from shared.domain.waves import DEFAULT_WAVES_JSON, Wave, WaveConfigError, parse_waves


class SettingsError(ValueError):
    """One or more settings are missing or malformed; the message lists every problem."""


@dataclass(frozen=True)
class Setting:
    name: str
    default: str | None
    doc: str
    # Local-only settings (e.g. a connection string for Azurite) are never set by the Bicep
    # deployment, which uses the managed identity instead of secrets.
    local_only: bool = False
    # Read by the Functions host (binding expressions like %SYNC_SCHEDULE%), not by Python code.
    host_only: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "SYNC_SCHEDULE",
        "0 0 2 * * *",
        "NCRONTAB schedule of the nightly sync, in UTC (Flex Consumption has no time zone setting).",
        host_only=True,
    ),
    Setting(
        "AUTH_MODE",
        "managed_identity",
        "managed_identity (production) or developer (DefaultAzureCredential, local development only).",
    ),
    Setting(
        "AZURE_CLIENT_ID",
        "",
        "Client id of the user-assigned managed identity; empty for a system-assigned identity.",
    ),
    Setting(
        "TABLES_ENDPOINT",
        "",
        "Table service endpoint, e.g. https://<account>.table.core.windows.net (managed identity).",
    ),
    Setting(
        "TABLES_CONNECTION_STRING",
        "",
        "Local development only: a connection string (Azurite). Never set in Azure.",
        local_only=True,
    ),
    Setting(
        "GRAPH_BASE_URL",
        "https://graph.microsoft.com/v1.0",
        "Microsoft Graph root. Only the local tenant simulator changes it.",
    ),
    Setting(
        "GRAPH_PAGE_SIZE",
        "999",
        "$top sent to Graph list endpoints (1-999).",
    ),
    Setting(
        "GRAPH_MAX_RETRIES",
        "5",
        "Retries of a throttled (429) or unavailable (503/504) Graph request, honouring Retry-After.",
    ),
    Setting(
        "ENFORCEMENT_WAVES",
        DEFAULT_WAVES_JSON,
        "The tenant's enforcement waves as JSON: [{id, label, date YYYY-MM-DD, phase phase1|phase2, "
        "appliesTo all|members|guests}]. Defaults to the latest postponement dates.",
    ),
    Setting(
        "SYNC_TIME_BUDGET_SECONDS",
        "1500",
        "A sync that has not finished pulling within this many seconds stops and records a failed run "
        "(keep it below functionTimeout in host.json).",
    ),
    # --- nudge emails (README "Nudge emails") ---
    Setting(
        "NUDGE_SCHEDULE",
        "0 15 * * * *",
        "NCRONTAB schedule of the nudge job (reminder emails), in UTC. Hourly by default: each run sends "
        "what the hourly quota allows and carries the rest over.",
        host_only=True,
    ),
    Setting(
        "NUDGE_DRY_RUN",
        "true",
        "true (the default on a fresh deployment): record and log who would be emailed and what, send "
        "nothing. false: send.",
    ),
    Setting(
        "ACS_ENDPOINT",
        "",
        "Azure Communication Services endpoint, https://<resource>.communication.azure.com (managed "
        "identity). Required when NUDGE_DRY_RUN is false.",
    ),
    Setting(
        "EMAIL_SENDER_ADDRESS",
        "",
        "Sender address of the reminders, e.g. DoNotReply@<id>.azurecomm.net (a domain linked to the ACS "
        "resource). Required when NUDGE_DRY_RUN is false.",
    ),
    Setting(
        "NUDGE_QUOTA_PER_MINUTE",
        "5",
        "Emails per minute at most (ACS: about 5 on an Azure managed domain, 30 on a custom domain).",
    ),
    Setting(
        "NUDGE_QUOTA_PER_HOUR",
        "10",
        "Emails per hour at most (ACS: about 10 on an Azure managed domain, 100 on a custom domain).",
    ),
    Setting(
        "NUDGE_CADENCE_DAYS",
        "30,14,7,3,1",
        "Days before a wave's date on which a reminder is due, comma-separated.",
    ),
    Setting(
        "NUDGE_BLOCKED_INTERVAL_DAYS",
        "7",
        "Days between the notices sent after a wave's date to people still unregistered.",
    ),
    Setting(
        "NUDGE_BLOCKED_MAX",
        "4",
        "Notices after a wave's date at most, the first one included (0: none after the date).",
    ),
    Setting(
        "NUDGE_CONTACT",
        "your IT service desk",
        "Who people should contact with questions, as it appears in the email (text, may include an address).",
    ),
    Setting(
        "NUDGE_ORGANIZATION",
        "",
        'Your organisation\'s name as people know it, used in the email (empty: "your organisation").',
    ),
    Setting(
        "NUDGE_DIGEST_TO",
        "",
        "Where the admin digest of each run that emailed anyone goes (addresses, comma-separated); empty: no digest.",
    ),
    Setting(
        "NUDGE_GUEST_TRUSTED",
        "message",
        "Guests whose home tenant's MFA this tenant trusts: message (email them, saying that registering at "
        "home is enough) or skip (do not email them).",
    ),
    Setting(
        "NUDGE_TIME_BUDGET_SECONDS",
        "900",
        "A nudge run stops sending after this many seconds and carries the rest over (below functionTimeout).",
    ),
    # --- who is in scope (README "Who will be locked out") ---
    Setting(
        "SIGNIN_LOOKBACK_DAYS",
        "30",
        "Days of sign-in logs read each night (1-30; the logs keep 30 days on Entra ID P1/P2).",
    ),
    Setting(
        "SIGNIN_NON_INTERACTIVE",
        "true",
        "Also read non-interactive sign-ins (token refreshes of Azure CLI/PowerShell, scripts); they "
        "exist only in Graph beta.",
    ),
    Setting(
        "SIGNIN_INCLUDE_ARM_RESOURCE",
        "false",
        "Also read sign-ins of any client to Azure Resource Manager (SDKs, VS Code, Terraform with its own "
        "app); roughly doubles the sign-ins read.",
    ),
    Setting(
        "SCOPE_SIGNIN_MEMORY_DAYS",
        "180",
        "A sign-in to a management app keeps a person in scope this many days after it (after the logs age out).",
    ),
    Setting(
        "SCOPE_GUESTS",
        "true",
        "Every B2B guest is in scope (true) or only guests another signal puts in scope (false).",
    ),
    Setting(
        "SCOPE_FILTERS",
        "disabled,never_signed_in,directory_sync,service_accounts",
        "Noise filters recorded as exclusions, comma-separated (disabled, never_signed_in, directory_sync, "
        "service_accounts), or none.",
    ),
    Setting(
        "SCOPE_EXCLUSION_GROUP_ID",
        "",
        "Object id of a group whose (transitive) members are never nudged, e.g. break-glass accounts; empty: none.",
    ),
    Setting(
        "SCOPE_EXCLUDED_UPN_PATTERNS",
        "",
        "UPN patterns never nudged, comma-separated, * and ? wildcards, case-insensitive "
        "(e.g. breakglass*@contoso.com).",
    ),
    Setting(
        "SCOPE_AZURE_RBAC",
        "false",
        "Read Azure role assignments from Azure Resource Graph (needs Reader on the subscriptions or "
        "management groups to cover).",
    ),
    Setting(
        "AZURE_RBAC_MANAGEMENT_GROUPS",
        "",
        "Management group ids the Azure RBAC query covers, comma-separated; empty: every subscription the "
        "identity can read.",
    ),
    Setting(
        "ARM_BASE_URL",
        "https://management.azure.com",
        "Azure Resource Manager root. Only the local tenant simulator changes it.",
    ),
    Setting(
        "REGISTRATION_FALLBACK",
        "true",
        "On a tenant without Entra ID P1/P2 (the registration report answers 403), read each in-scope "
        "user's authentication methods instead.",
    ),
    Setting(
        "GRAPH_CONCURRENCY",
        "8",
        "Per-user Graph calls in flight at once (licence fallback, sign-in activity, guests' home tenants).",
    ),
)

SETTING_NAMES: frozenset[str] = frozenset(s.name for s in SETTINGS)
_DEFAULTS = {s.name: s.default for s in SETTINGS}

_AUTH_MODES = ("managed_identity", "developer")
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
_GUID = re.compile(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")


@dataclass(frozen=True)
class Settings:
    auth_mode: str
    managed_identity_client_id: str | None
    tables_endpoint: str | None
    tables_connection_string: str | None
    graph_base_url: str
    graph_page_size: int
    graph_max_retries: int
    sync_time_budget_seconds: float
    waves: tuple[Wave, ...]
    nudge: NudgeSettings = field(default_factory=lambda: NudgeSettings())
    scope: ScopeSettings = field(default_factory=lambda: ScopeSettings())

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build settings from an environment mapping, reporting every problem at once."""
        problems: list[str] = []

        def get(name: str) -> str:
            if name not in _DEFAULTS:
                raise KeyError(f"{name} is not a declared setting")  # a programming error
            value = env.get(name)
            if value is None or value.strip() == "":
                return _DEFAULTS[name] or ""
            return value.strip()

        def integer(name: str, low: int, high: int) -> int:
            raw = get(name)
            try:
                value = int(raw)
            except ValueError:
                problems.append(f"{name} must be a whole number, got {raw!r}")
                return low
            if not low <= value <= high:
                problems.append(f"{name} must be between {low} and {high}, got {value}")
            return value

        auth_mode = get("AUTH_MODE")
        if auth_mode not in _AUTH_MODES:
            problems.append(f"AUTH_MODE must be one of {', '.join(_AUTH_MODES)}, got {auth_mode!r}")

        endpoint = get("TABLES_ENDPOINT") or None
        connection_string = get("TABLES_CONNECTION_STRING") or None
        if endpoint is None and connection_string is None:
            problems.append(
                "TABLES_ENDPOINT is required (https://<account>.table.core.windows.net); "
                "locally, TABLES_CONNECTION_STRING may point at Azurite instead"
            )
        if endpoint is not None:
            problems.extend(_check_url("TABLES_ENDPOINT", endpoint))

        graph_base_url = get("GRAPH_BASE_URL").rstrip("/")
        problems.extend(_check_url("GRAPH_BASE_URL", graph_base_url))

        client_id = get("AZURE_CLIENT_ID") or None
        if client_id is not None and not _GUID.fullmatch(client_id):
            problems.append(f"AZURE_CLIENT_ID must be a GUID (the identity's client id), got {client_id!r}")

        waves: tuple[Wave, ...] = ()
        try:
            waves = parse_waves(get("ENFORCEMENT_WAVES"))
        except WaveConfigError as exc:
            problems.append(str(exc))

        settings = cls(
            auth_mode=auth_mode,
            managed_identity_client_id=client_id,
            tables_endpoint=endpoint,
            tables_connection_string=connection_string,
            graph_base_url=graph_base_url,
            graph_page_size=integer("GRAPH_PAGE_SIZE", 1, 999),
            graph_max_retries=integer("GRAPH_MAX_RETRIES", 0, 10),
            sync_time_budget_seconds=float(integer("SYNC_TIME_BUDGET_SECONDS", 10, 7 * 24 * 3600)),
            waves=waves,
            nudge=_nudge_settings(get, integer, problems),
            scope=_scope_settings(get, integer, problems),
        )
        if problems:
            raise SettingsError("Invalid settings:\n- " + "\n- ".join(problems))
        return settings


def _check_url(name: str, url: str) -> list[str]:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return []
    if parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS:
        return []  # local simulator / Azurite only
    return [f"{name} must be an https URL (plain http only on 127.0.0.1/localhost), got {url!r}"]


# --- nudge emails --------------------------------------------------------------------------------

_ADDRESS = re.compile(r"[^@\s,;<>\"]+@[^@\s,;<>\"]+\.[^@\s,;<>\"]+")
_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


@dataclass(frozen=True)
class NudgeSettings:
    dry_run: bool = True
    acs_endpoint: str | None = None
    sender_address: str | None = None
    quota_per_minute: int = 5
    quota_per_hour: int = 10
    cadence: Cadence = field(default_factory=Cadence)
    contact: str = "your IT service desk"
    organization: str = ""
    digest_to: tuple[str, ...] = ()
    guest_trust: GuestTrust = GuestTrust.MESSAGE
    time_budget_seconds: float = 900.0


def _nudge_settings(
    get: Callable[[str], str], integer: Callable[[str, int, int], int], problems: list[str]
) -> NudgeSettings:
    dry_raw = get("NUDGE_DRY_RUN").lower()
    dry_run = _BOOLEANS.get(dry_raw, True)
    if dry_raw not in _BOOLEANS:
        problems.append(f"NUDGE_DRY_RUN must be true or false, got {dry_raw!r}")

    endpoint = get("ACS_ENDPOINT").rstrip("/") or None
    if endpoint is not None:
        parts = urlsplit(endpoint)
        if parts.scheme != "https" or not parts.hostname:
            # The SDK refuses to send the identity's token over plain http.
            problems.append(f"ACS_ENDPOINT must be an https URL, got {endpoint!r}")
    sender = get("EMAIL_SENDER_ADDRESS") or None
    if sender is not None and not _ADDRESS.fullmatch(sender):
        problems.append(f"EMAIL_SENDER_ADDRESS must be an email address, got {sender!r}")
    if not dry_run and (endpoint is None or sender is None):
        problems.append("NUDGE_DRY_RUN=false needs ACS_ENDPOINT and EMAIL_SENDER_ADDRESS")

    days_before = Cadence().days_before
    try:
        days_before = parse_days_before(get("NUDGE_CADENCE_DAYS"))
    except ValueError as exc:
        problems.append(f"NUDGE_CADENCE_DAYS: {exc}")
    cadence = Cadence(
        days_before=days_before,
        blocked_every_days=integer("NUDGE_BLOCKED_INTERVAL_DAYS", 1, 90),
        blocked_max=integer("NUDGE_BLOCKED_MAX", 0, 52),
    )

    digest_to = tuple(a.strip() for a in re.split(r"[,;]", get("NUDGE_DIGEST_TO")) if a.strip())
    for address in digest_to:
        if not _ADDRESS.fullmatch(address):
            problems.append(f"NUDGE_DIGEST_TO must be email addresses, got {address!r}")

    trust_raw = get("NUDGE_GUEST_TRUSTED").lower()
    trust = GuestTrust.MESSAGE
    if trust_raw in {t.value for t in GuestTrust}:
        trust = GuestTrust(trust_raw)
    else:
        problems.append(f"NUDGE_GUEST_TRUSTED must be message or skip, got {trust_raw!r}")

    contact, organization = get("NUDGE_CONTACT"), get("NUDGE_ORGANIZATION")
    for name, text in (("NUDGE_CONTACT", contact), ("NUDGE_ORGANIZATION", organization)):
        if len(text) > 300 or any(ord(c) < 32 for c in text):
            problems.append(f"{name} must be one line of at most 300 characters")

    return NudgeSettings(
        dry_run=dry_run,
        acs_endpoint=endpoint,
        sender_address=sender,
        quota_per_minute=integer("NUDGE_QUOTA_PER_MINUTE", 1, 10_000),
        quota_per_hour=integer("NUDGE_QUOTA_PER_HOUR", 1, 1_000_000),
        cadence=cadence,
        contact=contact,
        organization=organization,
        digest_to=digest_to,
        guest_trust=trust,
        time_budget_seconds=float(integer("NUDGE_TIME_BUDGET_SECONDS", 30, 1700)),
    )


# --- who is in scope ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ScopeSettings:
    policy: ScopePolicy = field(default_factory=ScopePolicy)
    non_interactive: bool = True
    include_arm_resource: bool = False
    azure_rbac: bool = False
    rbac_management_groups: tuple[str, ...] = ()
    arm_base_url: str = "https://management.azure.com"
    exclusion_group_id: str | None = None
    registration_fallback: bool = True
    concurrency: int = 8


def _scope_settings(
    get: Callable[[str], str], integer: Callable[[str, int, int], int], problems: list[str]
) -> ScopeSettings:
    def flag(name: str, raw: str) -> bool:
        value = _BOOLEANS.get(raw.lower())
        if value is None:
            problems.append(f"{name} must be true or false, got {raw!r}")
            return False
        return value

    lookback = integer("SIGNIN_LOOKBACK_DAYS", 1, 30)
    memory = integer("SCOPE_SIGNIN_MEMORY_DAYS", 1, 3650)
    if memory < lookback:
        problems.append(f"SCOPE_SIGNIN_MEMORY_DAYS must be at least SIGNIN_LOOKBACK_DAYS ({lookback}), got {memory}")

    filters_raw = get("SCOPE_FILTERS")
    names = {n.strip().lower() for n in filters_raw.split(",") if n.strip()}
    filters: set[Filter] = set()
    if names != {"none"}:
        known = {f.value for f in Filter}
        for name in sorted(names):
            if name in known:
                filters.add(Filter(name))
            else:
                problems.append(f"SCOPE_FILTERS: unknown filter {name!r} (expected {', '.join(sorted(known))} or none)")

    group = get("SCOPE_EXCLUSION_GROUP_ID") or None
    if group is not None and not _GUID.fullmatch(group):
        problems.append(f"SCOPE_EXCLUSION_GROUP_ID must be a group's object id (a GUID), got {group!r}")
    patterns = tuple(p.strip() for p in get("SCOPE_EXCLUDED_UPN_PATTERNS").split(",") if p.strip())
    for pattern in patterns:
        if len(pattern) > 256 or any(ord(c) < 32 for c in pattern):
            problems.append(f"SCOPE_EXCLUDED_UPN_PATTERNS: pattern {pattern[:40]!r} is not a plain UPN pattern")
    groups = tuple(g.strip() for g in get("AZURE_RBAC_MANAGEMENT_GROUPS").split(",") if g.strip())
    for mg in groups:
        if not re.fullmatch(r"[A-Za-z0-9_.()-]{1,90}", mg):
            problems.append(f"AZURE_RBAC_MANAGEMENT_GROUPS: {mg!r} is not a management group id")
    arm_url = get("ARM_BASE_URL").rstrip("/")
    problems.extend(_check_url("ARM_BASE_URL", arm_url))

    return ScopeSettings(
        policy=ScopePolicy(
            lookback_days=lookback,
            memory_days=memory,
            guests_in_scope=flag("SCOPE_GUESTS", get("SCOPE_GUESTS")),
            filters=frozenset(filters),
            upn_patterns=patterns,
        ),
        non_interactive=flag("SIGNIN_NON_INTERACTIVE", get("SIGNIN_NON_INTERACTIVE")),
        include_arm_resource=flag("SIGNIN_INCLUDE_ARM_RESOURCE", get("SIGNIN_INCLUDE_ARM_RESOURCE")),
        azure_rbac=flag("SCOPE_AZURE_RBAC", get("SCOPE_AZURE_RBAC")),
        rbac_management_groups=groups,
        arm_base_url=arm_url,
        exclusion_group_id=group.lower() if group else None,
        registration_fallback=flag("REGISTRATION_FALLBACK", get("REGISTRATION_FALLBACK")),
        concurrency=integer("GRAPH_CONCURRENCY", 1, 32),
    )
