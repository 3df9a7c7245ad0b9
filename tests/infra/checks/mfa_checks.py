"""Custom checkov checks for what checkov's Bicep checks miss (loaded with --external-checks-dir).

Run by tests/infra/test_checkov.py in the iac venv; never imported by the app or its tests.
Each check fails when the property is absent, so a template cannot pass by leaving it out.
"""

from __future__ import annotations

from typing import Any

from checkov.bicep.checks.resource.base_resource_check import BaseResourceCheck
from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.common.util.data_structures_utils import find_in_dict


def _body(conf: dict[str, Any]) -> dict[str, Any]:
    """The resource body: checkov wraps conditional and looped resources as {condition|loop_type, config}."""
    while isinstance(conf.get("config"), dict) and ("condition" in conf or "loop_type" in conf):
        conf = conf["config"]
    return conf


class _ValueCheck(BaseResourceCheck):
    key: str
    expected: tuple[Any, ...]

    def __init__(self, check_id: str, name: str, resource: str, key: str, expected: tuple[Any, ...]) -> None:
        self.key = key
        self.expected = expected
        super().__init__(
            name=name,
            id=check_id,
            categories=(CheckCategories.GENERAL_SECURITY,),
            supported_resources=(resource,),
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        value = find_in_dict(_body(conf), self.key)
        if isinstance(value, str):
            value = value.lower()
        return CheckResult.PASSED if value in self.expected else CheckResult.FAILED

    def get_evaluated_keys(self) -> list[str]:
        return [self.key]


class _Inventory(BaseResourceCheck):
    """Passes for every resource: the list of what checkov parsed, which the tests compare with the
    resources tree-sitter finds, so a file checkov silently failed to read is caught."""

    def __init__(self) -> None:
        super().__init__(
            name="Resource was parsed by checkov (inventory)",
            id="CKV_MFA_0",
            categories=(CheckCategories.GENERAL_SECURITY,),
            supported_resources=("*",),
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        return CheckResult.PASSED


class _PresentCheck(_ValueCheck):
    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        value = find_in_dict(_body(conf), self.key)
        return CheckResult.PASSED if value not in (None, "") else CheckResult.FAILED


STORAGE = "Microsoft.Storage/storageAccounts"

checks = (
    _Inventory(),
    _ValueCheck(
        "CKV_MFA_1",
        "Storage account disallows public blob access (allowBlobPublicAccess is false)",
        STORAGE,
        "properties/allowBlobPublicAccess",
        (False,),
    ),
    _ValueCheck(
        "CKV_MFA_2",
        "Storage account disallows shared key (account key and SAS) access (allowSharedKeyAccess is false)",
        STORAGE,
        "properties/allowSharedKeyAccess",
        (False,),
    ),
    _ValueCheck(
        "CKV_MFA_3",
        "Storage account requires TLS 1.2 (minimumTlsVersion is TLS1_2)",
        STORAGE,
        "properties/minimumTlsVersion",
        ("tls1_2",),
    ),
    _ValueCheck(
        "CKV_MFA_4",
        "Application Insights accepts only Entra-authenticated telemetry (DisableLocalAuth is true)",
        "Microsoft.Insights/components",
        "properties/DisableLocalAuth",
        (True,),
    ),
    _ValueCheck(
        "CKV_MFA_5",
        "Log Analytics workspace has local (shared key) auth off (features.disableLocalAuth is true)",
        "Microsoft.OperationalInsights/workspaces",
        "properties/features/disableLocalAuth",
        (True,),
    ),
    _ValueCheck(
        "CKV_MFA_6",
        "Basic (FTP and SCM) publishing credentials are disabled",
        "Microsoft.Web/sites/basicPublishingCredentialsPolicies",
        "properties/allow",
        (False,),
    ),
    _ValueCheck(
        "CKV_MFA_7",
        "Flex Consumption deployment storage is reached with a managed identity, not a connection string",
        "Microsoft.Web/sites",
        "properties/functionAppConfig/deployment/storage/authentication/type",
        ("userassignedidentity", "systemassignedidentity"),
    ),
    _ValueCheck(
        "CKV_MFA_8",
        "Function App is HTTPS only",
        "Microsoft.Web/sites",
        "properties/httpsOnly",
        (True,),
    ),
    _ValueCheck(
        "CKV_MFA_9",
        "Function App has FTP(S) disabled",
        "Microsoft.Web/sites",
        "properties/siteConfig/ftpsState",
        ("disabled",),
    ),
    _PresentCheck(
        "CKV_MFA_10",
        "Role assignment names its principalType (avoids failures while a new identity replicates)",
        "Microsoft.Authorization/roleAssignments",
        "properties/principalType",
        (),
    ),
)
