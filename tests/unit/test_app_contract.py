"""The app as the Functions host sees it, and the settings contract.

The host indexes function_app.py (v2 model); Core Tools cannot run here, so the app object is
indexed with azure.functions itself. The settings the code reads, the ones declared in
shared.config.SETTINGS and the ones local.settings.sample.json sets must be the same set.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from shared.config import SETTING_NAMES, SETTINGS, Settings

ROOT = Path(__file__).resolve().parents[2]
HOST_SETTINGS = {"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage"}


@pytest.fixture(scope="module")
def bindings() -> dict[str, list[dict[str, object]]]:
    import function_app

    app = function_app.app
    app.functions_bindings = None  # get_functions() may be called only once per app object
    return {f.get_function_name(): [json.loads(b) for b in f.get_raw_bindings()] for f in app.get_functions()}


def test_nightly_sync_is_a_timer_on_the_schedule_setting(
    bindings: dict[str, list[dict[str, object]]],
) -> None:
    assert set(bindings) >= {"nightly_sync"}
    (timer,) = bindings["nightly_sync"]
    assert timer["type"] == "timerTrigger"
    assert timer["schedule"] == "%SYNC_SCHEDULE%"
    assert timer.get("runOnStartup") in (False, None)  # never in production
    assert timer.get("useMonitor") is True


def test_documented_default_schedule_is_two_in_the_morning_utc() -> None:
    (schedule,) = [s for s in SETTINGS if s.name == "SYNC_SCHEDULE"]
    assert schedule.default == "0 0 2 * * *"


def test_host_json_pins_the_bundle_and_a_timeout() -> None:
    host = json.loads((ROOT / "host.json").read_text())
    assert host["version"] == "2.0"
    assert host["extensionBundle"]["version"] == "[4.*, 5.0.0)"
    assert host["functionTimeout"] == "00:30:00"
    budget = int(next(s.default for s in SETTINGS if s.name == "SYNC_TIME_BUDGET_SECONDS") or 0)
    assert budget < 30 * 60, "the sync must give up before the host kills it"


def _names_read_by_config() -> set[str]:
    tree = ast.parse((ROOT / "shared" / "config.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("get", "integer")
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names.add(node.args[0].value)
    return names


def test_code_reads_exactly_the_declared_settings() -> None:
    host_only = {s.name for s in SETTINGS if s.host_only}
    assert _names_read_by_config() == SETTING_NAMES - host_only
    # and the function app's binding expressions name only declared host settings
    source = (ROOT / "function_app.py").read_text()
    for name in host_only:
        assert f"%{name}%" in source


def test_only_the_entry_points_read_the_environment() -> None:
    readers = sorted(
        str(p.relative_to(ROOT))
        for p in (ROOT / "shared").rglob("*.py")
        if "os.environ" in p.read_text() or "os.getenv" in p.read_text()
    )
    assert readers == ["shared/entrypoints.py"]


def test_sample_local_settings_set_every_setting_and_nothing_else() -> None:
    values = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    assert set(values) - HOST_SETTINGS == SETTING_NAMES
    # and they are valid as they stand
    Settings.from_env(values)
