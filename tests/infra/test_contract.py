"""The Bicep templates against the code's single sources of truth.

- app settings in infra/main.bicep == the non-local-only settings in shared/config.py SETTINGS
  (and == local.settings.sample.json less local-only and host plumbing);
- Graph permissions granted == shared/permissions.py GRAPH_PERMISSIONS;
- tables created == shared/adapters/table_schema.py ALL_TABLES;
- no keys or secrets anywhere; registry references pinned; role GUIDs named;
- the alert queries read the event the sync really logs, and docs/deploy.md shows them verbatim;
- the deploy guide documents what the issue asks (permissions, dry run, cost, tear-down).
Everything is read from the code at test time: adding a setting or a permission there without adding
it to the Bicep fails here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.table_schema import ALL_TABLES
from shared.config import SETTINGS
from shared.permissions import GRAPH_APP_ID, GRAPH_PERMISSIONS
from tests.infra.conftest import INFRA, ROOT

DEPLOY_DOC = ROOT / "docs" / "deploy.md"
# Host plumbing in local.settings.sample.json that Azure sets differently (Flex Consumption takes the
# runtime from functionAppConfig; AzureWebJobsStorage is identity-based there).
LOCAL_HOST_SETTINGS = {"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage"}
PLATFORM_SETTINGS = {
    "AzureWebJobsStorage__accountName",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
}
# Not allowed on Flex Consumption (the deployment fails) or replaced by functionAppConfig.
FLEX_DEPRECATED = {
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_EXTENSION_VERSION",
    "FUNCTIONS_WORKER_RUNTIME_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_CONTENTSHARE",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "SCM_DO_BUILD_DURING_DEPLOYMENT",
    "ENABLE_ORYX_BUILD",
}
# Built-in Azure role definition ids pinned in the templates, each checked against Microsoft's
# built-in roles list when it was pinned. A new GUID must be added here with its role name.
VERIFIED_ROLES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "76199698-9eea-4c19-bc75-cec21354c6b6": "Storage Table Data Reader",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
    "09976791-48a7-449e-bb21-39d1a415f350": "Communication and Email Service Owner",
    "acdd72a7-3385-48ef-bd42-f606fba81ae7": "Reader",
}
GUID = r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}"


def _strings(value: dict[str, Any]) -> list[str]:
    assert value["kind"] == "array", value
    items = value["items"]
    assert all(i["kind"] == "string" for i in items), items
    return [i["value"] for i in items]


def _object(value: dict[str, Any]) -> dict[str, Any]:
    assert value["kind"] == "object", value
    entries: dict[str, Any] = value["entries"]
    return entries


def _bicep_text() -> dict[str, str]:
    return {str(p.relative_to(INFRA)): p.read_text() for p in sorted(INFRA.rglob("*.bicep"))}


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


@pytest.fixture(scope="module")
def main(bicep_facts: dict[str, Any]) -> dict[str, Any]:
    facts: dict[str, Any] = bicep_facts["main.bicep"]
    return facts


@pytest.fixture(scope="module")
def app_settings(main: dict[str, Any]) -> dict[str, Any]:
    return _object(main["variables"]["appSettings"])


# --- app settings ----------------------------------------------------------------------------------


def test_app_settings_are_the_declared_settings_less_local_only(app_settings: dict[str, Any]) -> None:
    expected = {s.name for s in SETTINGS if not s.local_only}
    assert set(app_settings) == expected


def test_local_only_settings_are_nowhere_in_the_templates(app_settings: dict[str, Any]) -> None:
    local_only = {s.name for s in SETTINGS if s.local_only}
    assert "TABLES_CONNECTION_STRING" in local_only
    assert not local_only & set(app_settings)
    for name, text in _bicep_text().items():
        for setting in local_only:
            assert setting not in text, f"{setting} (local only) appears in {name}"


def test_app_settings_match_the_sample_local_settings(app_settings: dict[str, Any]) -> None:
    values = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    local_only = {s.name for s in SETTINGS if s.local_only}
    assert set(values) - LOCAL_HOST_SETTINGS - local_only == set(app_settings)


def test_literal_app_setting_values_are_the_code_defaults(app_settings: dict[str, Any], main: dict[str, Any]) -> None:
    defaults = {s.name: s.default for s in SETTINGS}
    for name, value in app_settings.items():
        if value["kind"] == "identifier" and value["name"] in main["params"]:
            value = main["params"][value["name"]]["default"] or value  # a parameter's default
        if value["kind"] == "string" and value["value"] != "":  # empty: the code uses its default
            assert value["value"] == defaults[name], f"{name}: Bicep says {value['value']!r}"
    assert app_settings["AUTH_MODE"] == {"kind": "string", "value": "managed_identity"}
    assert "identity.outputs.clientId" in app_settings["AZURE_CLIENT_ID"]["text"]
    assert "tableEndpoint" in app_settings["TABLES_ENDPOINT"]["text"]


def test_the_app_settings_block_is_the_marked_one(main: dict[str, Any]) -> None:
    lines = (INFRA / "main.bicep").read_text().splitlines()
    begin = [i for i, line in enumerate(lines, 1) if "APP SETTINGS: BEGIN" in line]
    end = [i for i, line in enumerate(lines, 1) if "APP SETTINGS: END" in line]
    assert len(begin) == len(end) == 1
    assert begin[0] < main["variable_lines"]["appSettings"] < end[0]
    # the one list: main passes it to the function module and nowhere else defines app settings
    assert sum("appSettings: appSettings" in line for line in lines) == 1


def test_platform_settings_use_the_identity(bicep_facts: dict[str, Any], app_settings: dict[str, Any]) -> None:
    function = bicep_facts["app/function.bicep"]
    platform = _object(function["variables"]["platformSettings"])
    assert set(platform) == PLATFORM_SETTINGS
    assert platform["AzureWebJobsStorage__credential"] == {"kind": "string", "value": "managedidentity"}
    assert platform["AzureWebJobsStorage__clientId"]["name"] == "identityClientId"
    auth = platform["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]["text"]
    assert "ClientId=${identityClientId}" in auth and "Authorization=AAD" in auth
    assert not set(platform) & set(app_settings)
    assert not (set(platform) | set(app_settings)) & FLEX_DEPRECATED
    assert "AzureWebJobsStorage" not in platform  # a connection string would carry a key


def test_function_app_is_flex_consumption_python_311() -> None:
    text = (INFRA / "app" / "function.bicep").read_text()
    assert re.search(r"name: 'FC1'\s+tier: 'FlexConsumption'", text)
    assert re.search(r"runtime: \{\s+name: 'python'\s+version: '3\.11'\s+\}", text)
    assert "kind: 'functionapp,linux'" in text
    assert "type: 'UserAssigned'" in text
    assert "type: 'UserAssignedIdentity'" in text  # deployment storage by identity
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'requires-python = ">=3.11,<3.12"' in pyproject


# --- Graph permissions -----------------------------------------------------------------------------


def test_graph_permissions_granted_are_the_declared_ones(bicep_facts: dict[str, Any]) -> None:
    graph = bicep_facts["app/graph-permissions.bicep"]
    granted = _strings(graph["variables"]["graphPermissions"])
    assert len(granted) == len(set(granted))
    assert set(granted) == set(GRAPH_PERMISSIONS)
    text = (INFRA / "app" / "graph-permissions.bicep").read_text()
    assert f"appId: '{GRAPH_APP_ID}'" in text
    assert "role.value == permission" in text  # role ids resolved by value, not pinned


def test_graph_extension_is_configured_and_pinned(bicep_facts: dict[str, Any]) -> None:
    config = json.loads((INFRA / "bicepconfig.json").read_text())
    extensions = config["extensions"]
    used = {alias for facts in bicep_facts.values() for alias in facts["extensions"]}
    assert used == {"microsoftGraphV1"}
    pinned = re.compile(r"br:mcr\.microsoft\.com/bicep/extensions/microsoftgraph/v1\.0:\d+\.\d+\.\d+")
    for alias in used:
        assert pinned.fullmatch(extensions[alias]), extensions[alias]
    assert bicep_facts["app/graph-permissions.bicep"]["extensions"] == ["microsoftGraphV1"]


def test_graph_permissions_module_is_behind_a_parameter(main: dict[str, Any]) -> None:
    assert main["params"]["grantGraphPermissions"]["type"] == "bool"
    text = (INFRA / "main.bicep").read_text()
    assert "module graphPermissions 'app/graph-permissions.bicep' = if (grantGraphPermissions) {" in text


# --- tables ----------------------------------------------------------------------------------------


def test_tables_created_are_the_tables_the_app_uses(main: dict[str, Any], bicep_facts: dict[str, Any]) -> None:
    assert _strings(main["variables"]["appTables"]) == list(ALL_TABLES)
    storage = bicep_facts["app/storage.bicep"]
    types = [r["type"] for r in storage["resources"]]
    assert any(t.startswith("Microsoft.Storage/storageAccounts/tableServices/tables@") for t in types)
    assert "tableNames: appTables" in (INFRA / "main.bicep").read_text()
    assert "for tableName in tableNames:" in (INFRA / "app" / "storage.bicep").read_text()


# --- no secrets ------------------------------------------------------------------------------------


def _deployment_files() -> list[Path]:
    files = [*INFRA.rglob("*.bicep"), *INFRA.rglob("*.json"), ROOT / "azure.yaml"]
    return sorted(p for p in files if p.is_file())


@pytest.mark.parametrize(
    "pattern",
    [
        r"\blist[A-Za-z]*\(",  # listKeys(), listSecrets(), listConnectionStrings()...
        r"AccountKey\s*=",
        r"SharedAccessKey|SharedAccessSignature|sig=",
        r"InstrumentationKey\s*=",
        r"@secure\(\)",
        r"(?i)password|client_?secret",
        r"StorageAccountConnectionString",
    ],
)
def test_no_keys_or_secrets_in_the_deployment(pattern: str) -> None:
    hits = [
        f"{p.relative_to(ROOT)}:{n}: {line.strip()}"
        for p in _deployment_files()
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if re.search(pattern, line)
    ]
    assert hits == []


def test_storage_and_telemetry_accept_entra_only() -> None:
    text = (INFRA / "app" / "storage.bicep").read_text()
    for setting in (
        "allowSharedKeyAccess: false",
        "allowBlobPublicAccess: false",
        "minimumTlsVersion: 'TLS1_2'",
        "supportsHttpsTrafficOnly: true",
    ):
        assert setting in text
    monitoring = (INFRA / "app" / "monitoring.bicep").read_text()
    assert "DisableLocalAuth: true" in monitoring and "disableLocalAuth: true" in monitoring


# --- references, modules and roles -----------------------------------------------------------------


def test_modules_are_local_or_pinned(bicep_facts: dict[str, Any]) -> None:
    for name, facts in bicep_facts.items():
        for module in facts["modules"]:
            path = module["path"]
            if path.startswith(("br:", "br/", "ts:", "ts/")):
                assert re.search(r":\d+\.\d+\.\d+$", path), f"{name}: {path} is not pinned to a version"
            else:
                assert (INFRA / Path(name).parent / path).is_file(), f"{name}: {path} does not exist"


def test_api_versions_are_pinned(bicep_facts: dict[str, Any]) -> None:
    for name, facts in bicep_facts.items():
        for resource in facts["resources"]:
            assert re.search(r"@(\d{4}-\d{2}-\d{2}(-preview)?|v1\.0)$", resource["type"]), (name, resource)


def test_pinned_role_guids_are_verified_and_named() -> None:
    for name, text in _bicep_text().items():
        for n, line in enumerate(text.splitlines(), 1):
            for guid in re.findall(GUID, line):
                if guid == GRAPH_APP_ID:
                    continue
                assert guid in VERIFIED_ROLES, f"{name}:{n}: unverified GUID {guid}"
                assert f"// {VERIFIED_ROLES[guid]}" in line, f"{name}:{n}: say which role {guid} is"


def test_role_assignments_are_deterministic_and_typed() -> None:
    for name, text in _bicep_text().items():
        lines = text.splitlines()
        starts = [i for i, line in enumerate(lines) if "'Microsoft.Authorization/roleAssignments@" in line]
        for start in starts:
            end = lines.index("}", start)
            block = "\n".join(lines[start:end])
            assert "name: guid(" in block, f"{name}:{start + 1}"
            assert "principalType:" in block, f"{name}:{start + 1}"


# --- alerts ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def alert_queries(bicep_facts: dict[str, Any]) -> dict[str, str]:
    variables = bicep_facts["app/alerts.bicep"]["variables"]
    queries = {k: v["value"] for k, v in variables.items() if k.endswith("Query")}
    assert set(queries) == {"syncFailedQuery", "staleSyncQuery", "nudgeFailedQuery", "sendsFailingQuery"}
    return queries


def test_alert_queries_read_the_event_the_sync_logs(alert_queries: dict[str, str]) -> None:
    source = (ROOT / "shared" / "jobs" / "sync.py").read_text()
    assert '"mfa_sync_run %s"' in source  # the message prefix the queries parse
    assert '"event": "mfa_sync_run"' in source
    for field in ('"status"', '"runId"', '"error"'):
        assert field in source
    assert "nightly_sync" in (ROOT / "function_app.py").read_text()  # the invocation name queried
    for name in ("syncFailedQuery", "staleSyncQuery"):
        assert 'startswith "mfa_sync_run "' in alert_queries[name]
        assert 'substring(message, strlen("mfa_sync_run "))' in alert_queries[name]
    assert 'operation_Name == "nightly_sync"' in alert_queries["syncFailedQuery"]
    assert "ago(26h)" in alert_queries["staleSyncQuery"]
    assert '"completed"' in alert_queries["staleSyncQuery"]
    for name in ("nudgeFailedQuery", "sendsFailingQuery"):
        assert 'startswith "mfa_nudge_run "' in alert_queries[name]
    assert "run.failed" in alert_queries["sendsFailingQuery"]


def test_deploy_doc_shows_the_alert_queries(alert_queries: dict[str, str]) -> None:
    doc = _squash(DEPLOY_DOC.read_text())
    for name, query in alert_queries.items():
        assert _squash(query) in doc, f"docs/deploy.md does not show {name} as deployed"


def test_alerts_mail_the_admin(main: dict[str, Any], bicep_facts: dict[str, Any]) -> None:
    assert main["params"]["alertEmail"]["type"] == "string"
    assert main["params"]["alertEmail"]["default"] is None  # required: alerts must reach someone
    types = {r["type"].split("@")[0] for r in bicep_facts["app/alerts.bicep"]["resources"]}
    assert types == {"Microsoft.Insights/actionGroups", "Microsoft.Insights/scheduledQueryRules"}


# --- azd, packaging, docs --------------------------------------------------------------------------


def test_azd_deploys_the_tagged_function_app() -> None:
    azure_yaml = (ROOT / "azure.yaml").read_text()
    service = re.search(r"^services:\n  (\w+):\n((?:    .*\n)+)", azure_yaml, re.M)
    assert service, azure_yaml
    name, body = service.group(1), service.group(2)
    assert "host: function" in body and "language: python" in body
    assert f"'azd-service-name': '{name}'" in (INFRA / "app" / "function.bicep").read_text()
    assert re.search(r"^  path: infra$", azure_yaml, re.M)
    params = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    main_params = re.findall(r"^param (\w+)", (INFRA / "main.bicep").read_text(), re.M)
    assert set(params) <= set(main_params)


def test_dev_and_infra_files_do_not_deploy() -> None:
    ignored = set((ROOT / ".funcignore").read_text().splitlines())
    for entry in ("infra/", "tests/", ".venv-iac/", "azure.yaml", "requirements-iac.txt", "docs/"):
        assert entry in ignored
    assert ".venv-iac/" in (ROOT / ".gitignore").read_text().splitlines()


def test_readme_points_to_the_deploy_guide() -> None:
    assert "docs/deploy.md" in (ROOT / "README.md").read_text()


def test_deploy_guide_covers_the_issue() -> None:
    doc = DEPLOY_DOC.read_text()
    for needle in (
        "az deployment sub create",
        "azd up",
        "Privileged Role Administrator",
        "New-MgServicePrincipalAppRoleAssignment",
        "az rest",
        "NUDGE_DRY_RUN",
        "az group delete",
        "10,000",
        "rbac-reader-mg.bicep",
    ):
        assert needle in doc, needle
    for permission in GRAPH_PERMISSIONS:
        assert permission in doc, f"the manual commands must grant {permission}"


def test_dry_run_is_on_by_default(app_settings: dict[str, Any], main: dict[str, Any]) -> None:
    doc = DEPLOY_DOC.read_text()
    assert re.search(r"NUDGE_DRY_RUN.{0,80}\btrue\b", doc, re.S), "say that dry run is on by default"
    assert re.search(r"NUDGE_DRY_RUN=false", doc), "say how to switch it off"
    if "NUDGE_DRY_RUN" in {s.name for s in SETTINGS}:  # once the nudge issue declares it
        value = app_settings["NUDGE_DRY_RUN"]
        if value["kind"] == "identifier":
            value = main["params"][value["name"]]["default"]
        assert value in ({"kind": "string", "value": "true"}, {"kind": "bool", "value": True})
