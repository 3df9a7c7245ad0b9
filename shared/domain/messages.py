"""What a reminder email and the admin digest say: facts in, subject + plain text + HTML out. Pure.

The wording lives in jinja2 templates under ``shared/templates/`` (they deploy with the package).
HTML templates are autoescaped: a display name like ``<script>`` arrives as text, never as markup.
Subjects are one line of plain text: control characters (a newline smuggled into a display name)
are replaced, and they say what is needed and when.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from shared.domain.nudges import DueReminder, MessageKind, NotEmailed
from shared.domain.scope import Phase

REGISTER_URL = "https://aka.ms/mysecurityinfo"
ABOUT_URL = "https://learn.microsoft.com/entra/identity/authentication/concept-mandatory-multifactor-authentication"

# Management apps the scope signals record (ScopeFacts.tools), as a person knows them.
TOOL_NAMES = {
    "azure_portal": "the Azure portal",
    "entra_admin_center": "the Microsoft Entra admin center",
    "intune_admin_center": "the Intune admin center",
    "m365_admin_center": "the Microsoft 365 admin center",
    "azure_cli": "Azure CLI",
    "azure_powershell": "Azure PowerShell",
    "azure_mobile_app": "the Azure mobile app",
    "arm": "Azure Resource Manager (REST, SDKs, Terraform, Bicep)",
    "azure_resource_manager": "Azure Resource Manager (REST, SDKs, Terraform, Bicep)",
}

# What stops working when a phase is enforced, for someone without MFA.
CONSEQUENCES = {
    Phase.PORTALS: (
        "you will have to complete multifactor authentication to sign in to the Azure portal, the "
        "Microsoft Entra admin center and the Intune admin center; without a registered method you "
        "cannot use them"
    ),
    Phase.ARM: (
        "Azure CLI, Azure PowerShell, the Azure mobile app and infrastructure-as-code tools (Terraform, "
        "Bicep, Ansible...) will need multifactor authentication to create, change or delete Azure "
        "resources; without a registered method those changes fail"
    ),
}

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")


def one_line(text: str, limit: int = 200) -> str:
    """Plain single-line text for subjects and display names (no CR/LF header tricks)."""
    cleaned = " ".join(_CONTROL.sub(" ", text).split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


@dataclass(frozen=True)
class Email:
    subject: str
    plain_text: str
    html: str


@dataclass(frozen=True)
class Sender:
    """Who the email comes from, as the recipient should understand it (from settings)."""

    organization: str = ""  # e.g. "Contoso IT"; empty: "your organisation"
    contact: str = "your IT service desk"  # who to ask for help (text, may include an address)


def _initial(text: str) -> str:
    """Capitalise the first letter only ("contoso IT" -> "Contoso IT"; jinja's capitalize lowers the rest)."""
    return text[:1].upper() + text[1:]


@cache
def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("shared", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False, default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["initial"] = _initial
    return env


def _render(template: str, **context: Any) -> str:
    return _environment().get_template(template).render(**context)


def _long_date(day: date) -> str:
    return f"{day.day} {day.strftime('%B %Y')}"


def _tools(tools: Sequence[str]) -> list[str]:
    return [TOOL_NAMES.get(t, t.replace("_", " ")) for t in tools]


def _first_name(display_name: str, upn: str) -> str:
    name = one_line(display_name, 80)
    if name:
        return name
    local = upn.split("#EXT#")[0].split("@")[0]
    return local or "there"


def reminder_subject(reminder: DueReminder) -> str:
    wave, left = reminder.wave, reminder.days_left
    when = _long_date(wave.date)
    if reminder.kind is MessageKind.UPCOMING:
        days = "tomorrow" if left == 1 else f"in {left} days"
        subject = f"Action needed: set up MFA before {when} ({days}) for {wave.label}"
    elif reminder.kind is MessageKind.NOW_REQUIRED:
        subject = f"MFA is now required for {wave.label}: set it up before your next sign-in"
    else:
        subject = f"Reminder: without MFA you are blocked from {wave.label} (since {when})"
    return one_line(subject, 250)


def render_reminder(reminder: DueReminder, today: date, sender: Sender) -> Email:
    """The email for one due reminder: personal, kind, and specific about what and when."""
    user = reminder.user
    scope = user.scope
    guest = user.is_guest
    context = {
        "name": _first_name(user.display_name, user.upn),
        "kind": reminder.kind.value,
        "warned": reminder.warned,
        "wave_label": reminder.wave.label,
        "wave_date": _long_date(reminder.wave.date),
        "days_left": reminder.days_left,
        "days_ago": -reminder.days_left,
        "consequence": CONSEQUENCES[reminder.wave.phase],
        "tools": _tools(scope.tools),
        "guest": guest,
        "home_mfa_trusted": bool(guest and scope.home_mfa_trusted),
        "register_url": REGISTER_URL,
        "about_url": ABOUT_URL,
        "organization": sender.organization or "your organisation",
        "organization_name": sender.organization,
        "contact": sender.contact,
        "today": _long_date(today),
    }
    return Email(
        subject=reminder_subject(reminder),
        plain_text=_render("reminder.txt", **context),
        html=_render("reminder.html", **context),
    )


# --- the admin digest --------------------------------------------------------------------------


@dataclass(frozen=True)
class DigestLine:
    name: str
    address: str
    what: str  # the wave and step, or why it failed / was cancelled


@dataclass(frozen=True)
class Digest:
    run_id: str
    day: date
    dry_run: bool
    sent: Sequence[DigestLine] = ()
    failed: Sequence[DigestLine] = ()
    cancelled: Sequence[DigestLine] = ()
    not_emailed: Sequence[NotEmailed] = ()
    carried_over: int = 0
    eligible: int = 0
    warnings: Sequence[str] = ()
    counts: dict[str, int] = field(default_factory=dict)


DIGEST_LIST_LIMIT = 50


def render_digest(digest: Digest, sender: Sender) -> Email:
    verb = "would have emailed" if digest.dry_run else "emailed"
    subject = f"MFA reminders {_long_date(digest.day)}: {verb} {len(digest.sent)}, {len(digest.failed)} failed"
    if digest.warnings:
        subject += " - quota warning"
    groups: dict[str, list[NotEmailed]] = {}
    for person in digest.not_emailed:
        groups.setdefault(person.reason.value, []).append(person)
    context = {
        "d": digest,
        "verb": verb,
        "limit": DIGEST_LIST_LIMIT,
        "groups": groups,
        "organization": sender.organization or "your organisation",
    }
    return Email(
        subject=one_line(subject, 250),
        plain_text=_render("digest.txt", **context),
        html=_render("digest.html", **context),
    )
