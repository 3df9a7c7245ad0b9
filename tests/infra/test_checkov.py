"""checkov over infra/, offline, with custom checks for what it misses.

The suite fails on any failed check, on a skip without a written reason, on parsing errors (checkov
exits 0 on those), and if checkov did not see every resource tree-sitter finds (a file it could not
read would otherwise pass silently). The custom checks are shown to fail on a deliberately insecure
fixture, so a check that passes everything is caught too.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from tests.infra.conftest import checkov_results

CUSTOM = {f"CKV_MFA_{n}" for n in range(1, 11)}


def test_checkov_parsed_everything(checkov_report: dict[str, Any]) -> None:
    summary = checkov_report["summary"]
    assert summary["parsing_errors"] == 0, checkov_report["_stderr"][-3000:]
    assert "Parsing errors" not in checkov_report["_stderr"]
    assert summary["resource_count"] > 0
    assert len(checkov_results(checkov_report, "passed_checks", "infra")) > 20


def test_checkov_saw_every_resource_tree_sitter_found(
    checkov_report: dict[str, Any], bicep_facts: dict[str, Any]
) -> None:
    seen = {
        (r["file_path"].removeprefix("/infra/"), r["resource"].rsplit(".", 1)[1])
        for r in checkov_results(checkov_report, "passed_checks", "infra")
        if r["check_id"] == "CKV_MFA_0"
    }
    declared = {
        (name, resource["symbol"])
        for name, facts in bicep_facts.items()
        for resource in facts["resources"]
        if not resource["existing"]
    }
    assert declared, "tree-sitter found no resources"
    assert declared - seen == set(), "resources checkov did not parse"


def test_no_check_fails(checkov_report: dict[str, Any]) -> None:
    failed = [
        f"{r['check_id']} {r['check_name']} - {r['resource']} ({r['file_path']}:{r['file_line_range'][0]})"
        for r in checkov_results(checkov_report, "failed_checks", "infra")
    ]
    assert failed == []


def test_every_skip_has_a_written_reason(checkov_report: dict[str, Any]) -> None:
    for r in checkov_results(checkov_report, "skipped_checks", "infra"):
        reason = (r["check_result"].get("suppress_comment") or "").strip()
        where = f"{r['check_id']} on {r['resource']} ({r['file_path']})"
        assert reason and reason != "No comment provided", f"{where} is skipped without a reason"
        assert len(reason.split()) >= 5, f"{where}: say why in a sentence, not {reason!r}"


def test_custom_checks_pass_on_infra(checkov_report: dict[str, Any]) -> None:
    passed = {r["check_id"] for r in checkov_results(checkov_report, "passed_checks", "infra")}
    assert passed >= CUSTOM
    storage_checks = defaultdict(set)
    for r in checkov_results(checkov_report, "passed_checks", "infra"):
        if r["resource"].startswith("Microsoft.Storage/storageAccounts."):
            storage_checks[r["resource"]].add(r["check_id"])
    assert storage_checks, "no storage account found"
    for resource, ids in storage_checks.items():
        assert {"CKV_MFA_1", "CKV_MFA_2", "CKV_MFA_3"} <= ids, resource


def test_custom_checks_fail_on_the_insecure_fixture(checkov_report: dict[str, Any]) -> None:
    failed = defaultdict(set)
    for r in checkov_results(checkov_report, "failed_checks", "fixtures"):
        failed[r["check_id"]].add(r["resource"].rsplit(".", 1)[1])
    assert set(failed) >= CUSTOM
    # including a conditional resource, which checkov wraps differently
    assert {"publicStorage", "conditionalStorage"} <= failed["CKV_MFA_1"]
    assert {"publicStorage", "conditionalStorage"} <= failed["CKV_MFA_2"]
