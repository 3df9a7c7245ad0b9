"""The app's settings: one declared list, read from the environment once and validated.

Every setting the code reads is declared in ``SETTINGS`` below, with its default and what it is for.
That list is the contract that ``local.settings.sample.json`` and the Bicep app settings are tested
against, so adding a setting here without adding it there fails the suite.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

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
