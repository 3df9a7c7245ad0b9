"""Parameters of the admin questions, validated once for the HTTP API and the command line. Pure.

Everything that reaches a table query passes through here first: a value that does not parse is a
``BadParameter`` (HTTP 400) with a message saying what was expected, never a query.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from urllib.parse import unquote

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000  # Table Storage's largest query page
MAX_UPN_LENGTH = 256  # Entra allows 113 characters before '@' plus a domain; #EXT# UPNs run longer
MAX_ID_LENGTH = 128

# Characters Table Storage forbids in keys, or that never occur in an object id (see normalize).
_BAD_ID = re.compile(r"[/\\#?|\x00-\x1f\x7f-\x9f\s]")
# A UPN: a local part of the characters Entra allows (letters, digits, ' . - _ ! # ^ ~; '#' makes a
# guest's #EXT#; a few more that synced directories carry), '@', a domain.
_UPN = re.compile(r"[A-Za-z0-9'.\-_!#^~+$&=]{1,200}@[A-Za-z0-9][A-Za-z0-9.\-]{0,250}")


class BadParameter(ValueError):
    """A request parameter is malformed; the message is safe to show to the caller."""


class OutputFormat(StrEnum):
    JSON = "json"
    CSV = "csv"


def parse_format(value: str | None, accept: str | None) -> OutputFormat:
    """``?format=`` wins; else ``Accept: text/csv`` asks for CSV; JSON by default."""
    if value:
        try:
            return OutputFormat(value.strip().lower())
        except ValueError:
            raise BadParameter(f"format must be json or csv, got {value!r}") from None
    if accept and "text/csv" in accept.lower():
        return OutputFormat.CSV
    return OutputFormat.JSON


def parse_date(value: str, name: str = "date") -> date:
    text = value.strip()
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise BadParameter(f"{name} must be a date like 2026-11-23, got {value!r}")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise BadParameter(f"{name} is not a real date: {value!r}") from None


def parse_optional_date(value: str | None, name: str) -> date | None:
    return None if value is None or value.strip() == "" else parse_date(value, name)


def parse_limit(value: str | None, default: int = DEFAULT_LIMIT) -> int:
    if value is None or value.strip() == "":
        return default
    text = value.strip()
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise BadParameter(f"limit must be a whole number from 1 to {MAX_LIMIT}, got {value!r}")
    return int(text)


@dataclass(frozen=True)
class UserRef:
    """How the caller named a user: an object id, or a UPN (matched case-insensitively)."""

    user_id: str | None = None
    upn: str | None = None


def parse_user_ref(value: str) -> UserRef:
    """An object id (GUID) or a UPN, e.g. ``ada@contoso.com`` or a guest's
    ``eve_fabrikam.com#EXT#@contoso.onmicrosoft.com``. A still percent-encoded value (``%23EXT%23``)
    is decoded: UPNs never contain '%' themselves."""
    text = unquote(value) if "%" in value else value
    text = unicodedata.normalize("NFC", text.strip())
    if not text:
        raise BadParameter("a user id or UPN is required")
    if "@" in text:
        if len(text) > MAX_UPN_LENGTH or not _UPN.fullmatch(text):
            raise BadParameter("not a valid user principal name (expected name@domain)")
        return UserRef(upn=text)
    if len(text) > MAX_ID_LENGTH or _BAD_ID.search(text):
        raise BadParameter("not a valid user object id or UPN")
    return UserRef(user_id=text.lower())
