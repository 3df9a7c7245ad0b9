"""Fixtures for the offline Bicep checks: the iac venv, the parsed facts and one checkov report.

tree-sitter-bicep and checkov live in ``.venv-iac`` (``make test`` builds it from
requirements-iac.txt); these tests run in the app venv and call them as subprocesses. Each tool runs
once per session.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.infra.bicep_tools import shim_tree

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
HERE = Path(__file__).resolve().parent
TOOLS = HERE / "bicep_tools.py"
CHECKS = HERE / "checks"
FIXTURES = HERE / "fixtures"
IAC_VENV = ROOT / ".venv-iac"
IAC_PYTHON = IAC_VENV / "bin" / "python"
CHECKOV = IAC_VENV / "bin" / "checkov"


@pytest.fixture(scope="session")
def iac_python() -> Path:
    if not IAC_PYTHON.exists():
        pytest.fail(f"{IAC_VENV.name} is missing: run `make iac` (make test builds it) before these tests")
    return IAC_PYTHON


def run_facts(iac_python: Path, root: Path) -> dict[str, Any]:
    done = subprocess.run(
        [str(iac_python), str(TOOLS), "facts", str(root)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.fixture(scope="session")
def bicep_facts(iac_python: Path) -> dict[str, Any]:
    """Per .bicep file under infra/ (relative path): syntax errors, params, variables, resources."""
    return run_facts(iac_python, INFRA)


@pytest.fixture(scope="session")
def checkov_report(iac_python: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One checkov run over a shimmed copy of infra/ (under infra/) and the insecure fixture (under
    fixtures/), with the custom checks, offline."""
    root = tmp_path_factory.mktemp("checkov")
    shim_tree(INFRA, root / "infra")
    shim_tree(FIXTURES, root / "fixtures")
    env = {
        **os.environ,
        "BC_SKIP_MAPPING": "TRUE",  # no download of the check-id mapping
        "LOG_LEVEL": "WARNING",
        "PYTHONWARNINGS": "ignore",
    }
    done = subprocess.run(
        [
            str(CHECKOV),
            "--directory",
            str(root),
            "--framework",
            "bicep",
            "--skip-download",
            "--external-checks-dir",
            str(CHECKS),
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=root,
        env=env,
        check=False,
    )
    # checkov exits 1 when a check fails (the fixture makes sure some do); anything else is a crash.
    assert done.returncode in (0, 1), f"checkov exited {done.returncode}:\n{done.stderr[-3000:]}"
    report = json.loads(done.stdout)
    assert isinstance(report, dict), "expected one report (one framework, one directory)"
    report["_stderr"] = done.stderr
    return report


def checkov_results(report: dict[str, Any], kind: str, under: str) -> list[dict[str, Any]]:
    """Results of one kind (passed_checks, failed_checks, skipped_checks) for files under a folder."""
    prefix = f"/{under}/"
    return [r for r in report.get("results", {}).get(kind, []) if r["file_path"].startswith(prefix)]
