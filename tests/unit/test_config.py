"""Settings: one declared list, read from the environment once and validated."""

from __future__ import annotations

import pytest

from shared.config import SETTING_NAMES, SETTINGS, Settings, SettingsError
from shared.domain.waves import DEFAULT_WAVES_JSON, parse_waves

ENDPOINT = "https://monitorstate.table.core.windows.net"
AZURITE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
)
CLIENT_ID = "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9"


def problems_of(env: dict[str, str]) -> str:
    with pytest.raises(SettingsError) as info:
        Settings.from_env(env)
    return str(info.value)


def test_defaults() -> None:
    s = Settings.from_env({"TABLES_ENDPOINT": ENDPOINT})
    assert s == Settings(
        auth_mode="managed_identity",
        managed_identity_client_id=None,
        tables_endpoint=ENDPOINT,
        tables_connection_string=None,
        graph_base_url="https://graph.microsoft.com/v1.0",
        graph_page_size=999,
        graph_max_retries=5,
        sync_time_budget_seconds=1500.0,
        waves=parse_waves(DEFAULT_WAVES_JSON),
    )
    assert [(w.id, w.date.isoformat()) for w in s.waves] == [
        ("phase1", "2025-09-30"),
        ("phase2", "2026-07-01"),
    ]


def test_bad_waves_are_reported_with_the_other_problems() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(
            {
                "TABLES_ENDPOINT": ENDPOINT,
                "GRAPH_PAGE_SIZE": "0",
                "ENFORCEMENT_WAVES": '[{"id": "p1", "date": "2026-02-30", "phase": "phase1"},'
                ' {"id": "p1", "date": "2026-03-01", "phase": "phase3"}]',
            }
        )
    message = str(caught.value)
    assert "GRAPH_PAGE_SIZE" in message
    assert "date must be YYYY-MM-DD" in message
    assert "used twice" in message
    assert "phase must be one of" in message


def test_blank_values_mean_default() -> None:
    s = Settings.from_env(
        {"TABLES_ENDPOINT": ENDPOINT, "AUTH_MODE": "  ", "GRAPH_PAGE_SIZE": "", "AZURE_CLIENT_ID": " "}
    )
    assert s.auth_mode == "managed_identity"
    assert s.graph_page_size == 999
    assert s.managed_identity_client_id is None


def test_all_values_read_and_trimmed() -> None:
    s = Settings.from_env(
        {
            "AUTH_MODE": " developer ",
            "AZURE_CLIENT_ID": CLIENT_ID.upper(),
            "TABLES_CONNECTION_STRING": AZURITE,
            "GRAPH_BASE_URL": "http://127.0.0.1:8123/v1.0/",
            "GRAPH_PAGE_SIZE": " 50 ",
            "GRAPH_MAX_RETRIES": "0",
            "SYNC_TIME_BUDGET_SECONDS": "60",
            "UNRELATED": "ignored",
        }
    )
    assert s.auth_mode == "developer"
    assert s.managed_identity_client_id == CLIENT_ID.upper()
    assert s.tables_endpoint is None
    assert s.tables_connection_string == AZURITE
    assert s.graph_base_url == "http://127.0.0.1:8123/v1.0"  # trailing slash dropped
    assert s.graph_page_size == 50
    assert s.graph_max_retries == 0
    assert s.sync_time_budget_seconds == 60.0


def test_tables_endpoint_or_connection_string_required() -> None:
    message = problems_of({})
    assert "TABLES_ENDPOINT is required" in message
    assert "TABLES_CONNECTION_STRING" in message


def test_both_table_settings_accepted() -> None:
    s = Settings.from_env({"TABLES_ENDPOINT": ENDPOINT, "TABLES_CONNECTION_STRING": AZURITE})
    assert (s.tables_endpoint, s.tables_connection_string) == (ENDPOINT, AZURITE)


def test_every_problem_reported_at_once() -> None:
    message = problems_of(
        {
            "AUTH_MODE": "password",
            "AZURE_CLIENT_ID": "not-a-guid",
            "GRAPH_BASE_URL": "http://graph.microsoft.com/v1.0",
            "GRAPH_PAGE_SIZE": "1000",
            "GRAPH_MAX_RETRIES": "many",
            "SYNC_TIME_BUDGET_SECONDS": "5",
        }
    )
    assert message.startswith("Invalid settings:")
    lines = [line for line in message.splitlines() if line.startswith("- ")]
    assert len(lines) == 7
    for name in (
        "AUTH_MODE",
        "AZURE_CLIENT_ID",
        "TABLES_ENDPOINT",
        "GRAPH_BASE_URL",
        "GRAPH_PAGE_SIZE",
        "GRAPH_MAX_RETRIES",
        "SYNC_TIME_BUDGET_SECONDS",
    ):
        assert sum(line.startswith(f"- {name} ") for line in lines) == 1, name
    assert "'password'" in message
    assert "got 1000" in message
    assert "'many'" in message


def test_settings_error_is_a_value_error() -> None:
    assert issubclass(SettingsError, ValueError)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:10002/devstoreaccount1",
        "http://localhost:8080/v1.0",
        "http://[::1]:8080/v1.0",
        "https://graph.microsoft.com/v1.0",
        "HTTPS://graph.microsoft.com/v1.0",
        "https://127.0.0.1:8443/v1.0",
    ],
)
def test_urls_accepted(url: str) -> None:
    s = Settings.from_env({"TABLES_ENDPOINT": url, "GRAPH_BASE_URL": url})
    assert s.tables_endpoint == url
    assert s.graph_base_url == url


@pytest.mark.parametrize(
    "url",
    [
        "http://graph.microsoft.com/v1.0",
        "http://10.0.0.5/v1.0",
        "http://localhost.evil.example/v1.0",
        "http://127.0.0.1.evil.example/v1.0",
        "http://127.0.0.1@evil.example/v1.0",
        "ftp://127.0.0.1/v1.0",
        "graph.microsoft.com/v1.0",
        "https://",
        "https:///v1.0",
        "file:///etc/passwd",
    ],
)
def test_urls_refused(url: str) -> None:
    for name in ("TABLES_ENDPOINT", "GRAPH_BASE_URL"):
        env = {"TABLES_ENDPOINT": ENDPOINT, name: url}
        message = problems_of(env)
        assert f"{name} must be an https URL" in message
        shown = url.rstrip("/") if name == "GRAPH_BASE_URL" else url
        assert repr(shown) in message


@pytest.mark.parametrize(
    "client_id",
    [
        "not-a-guid",
        "0a1b2c3d4e5f60718293a4b5c6d7e8f9",  # no dashes
        "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f",  # one digit short
        "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9a",
        "{0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9}",
        "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8g9",
        "-" * 36,
        "0a1b2c3d4-e5f-6071-8293-a4b5c6d7e8f9",  # dashes in the wrong places
    ],
)
def test_bad_client_id(client_id: str) -> None:
    message = problems_of({"TABLES_ENDPOINT": ENDPOINT, "AZURE_CLIENT_ID": client_id})
    assert "AZURE_CLIENT_ID must be a GUID" in message
    assert repr(client_id) in message


@pytest.mark.parametrize(("raw", "ok"), [("0", False), ("1", True), ("999", True), ("1000", False), ("-5", False)])
def test_page_size_bounds(raw: str, ok: bool) -> None:
    env = {"TABLES_ENDPOINT": ENDPOINT, "GRAPH_PAGE_SIZE": raw}
    if ok:
        assert Settings.from_env(env).graph_page_size == int(raw)
    else:
        assert f"GRAPH_PAGE_SIZE must be between 1 and 999, got {int(raw)}" in problems_of(env)


@pytest.mark.parametrize("raw", ["ten", "1.5", "1e3", "0x10"])
def test_page_size_not_a_whole_number(raw: str) -> None:
    message = problems_of({"TABLES_ENDPOINT": ENDPOINT, "GRAPH_PAGE_SIZE": raw})
    assert f"GRAPH_PAGE_SIZE must be a whole number, got {raw!r}" in message


@pytest.mark.parametrize(
    ("name", "low", "high"),
    [("GRAPH_MAX_RETRIES", 0, 10), ("SYNC_TIME_BUDGET_SECONDS", 10, 7 * 24 * 3600)],
)
def test_integer_bounds(name: str, low: int, high: int) -> None:
    for good in (low, high):
        Settings.from_env({"TABLES_ENDPOINT": ENDPOINT, name: str(good)})
    for bad in (low - 1, high + 1):
        message = problems_of({"TABLES_ENDPOINT": ENDPOINT, name: str(bad)})
        assert f"{name} must be between {low} and {high}, got {bad}" in message


def test_every_setting_is_declared_once_with_a_doc() -> None:
    names = [s.name for s in SETTINGS]
    assert len(names) == len(set(names)) == len(SETTING_NAMES)
    for s in SETTINGS:
        assert s.doc.strip(), s.name
        assert len(s.doc) >= 20, s.name
        assert s.name.isupper() and " " not in s.name
        assert not (s.local_only and s.host_only), s.name


def test_declared_defaults() -> None:
    by_name = {s.name: s for s in SETTINGS}
    assert by_name["SYNC_SCHEDULE"].host_only
    assert by_name["SYNC_SCHEDULE"].default == "0 0 2 * * *"
    assert by_name["TABLES_CONNECTION_STRING"].local_only
    assert not by_name["TABLES_ENDPOINT"].local_only
    assert by_name["AUTH_MODE"].default == "managed_identity"


def test_every_default_is_valid() -> None:
    # The declared defaults alone (plus a table endpoint) must make valid settings.
    env = {s.name: s.default or "" for s in SETTINGS}
    env["TABLES_ENDPOINT"] = ENDPOINT
    assert Settings.from_env(env) == Settings.from_env({"TABLES_ENDPOINT": ENDPOINT})
