// MFA enforcement readiness monitor: everything it needs, deployed once.
//   azd up                                   (azure.yaml; parameters from main.parameters.json)
//   az deployment sub create -l <region> -f infra/main.bicep -p environmentName=... location=... alertEmail=...
// docs/deploy.md explains the parameters, the permissions the deployer needs, costs and tear-down.
targetScope = 'subscription'

@minLength(1)
@maxLength(40)
@description('Short name of this deployment (e.g. mfa-prod); names the resource group and seeds unique resource names.')
param environmentName string

@minLength(1)
@description('Azure region for the resources; it must offer the Flex Consumption plan (az functionapp list-flexconsumption-locations).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Email address that receives the alerts (sync failed, no sync for 26 hours, sends failing).')
param alertEmail string

@description('Grant the Microsoft Graph application permissions to the managed identity in this deployment. Needs Privileged Role Administrator; false: an admin grants them with the commands in docs/deploy.md.')
param grantGraphPermissions bool = true

@description('Subscription ids on which the managed identity gets Reader (for the planned Azure RBAC scope signal). Empty: none.')
param readerSubscriptionIds array = []

@description('NCRONTAB schedule of the nightly sync, in UTC (Flex Consumption has no time zone setting).')
param syncSchedule string = '0 0 2 * * *'

@description('The tenant\'s enforcement waves as JSON (ENFORCEMENT_WAVES in shared/config.py): [{id, label, date, phase, appliesTo}]. Empty: the code\'s default, the latest postponement dates.')
param enforcementWaves string = ''

@description('Empty: send from an Azure managed domain. Otherwise your own email domain (needs DNS verification; docs/deploy.md).')
param emailCustomDomain string = ''

@description('Link the email domain to Communication Services. For a custom domain: false until its DNS records are verified.')
param emailLinkDomain bool = true

@description('The part before @ of the sender address; an Azure managed domain only has DoNotReply.')
param emailSenderUsername string = 'DoNotReply'

@description('Where Communication Services stores email data at rest.')
param emailDataLocation string = 'Europe'

@description('custom: least-privilege custom role for sending; builtin: Communication and Email Service Owner.')
@allowed([
  'custom'
  'builtin'
])
param emailSenderRoleKind string = 'custom'

@description('NCRONTAB schedule of the nudge job (reminder emails), in UTC; hourly by default.')
param nudgeSchedule string = '0 15 * * * *'

@description('true (default): the nudge job records who it would email and sends nothing. false: it sends. See docs/deploy.md, "Dry run".')
@allowed([
  'true'
  'false'
])
param nudgeDryRun string = 'true'

@description('Where the admin digest of each nudge run that emailed anyone goes (comma-separated addresses). Empty: no digest.')
param nudgeDigestTo string = ''

@description('Who people should contact with questions, as the reminder email says it (e.g. "the IT service desk, help@contoso.com"). Empty: the code\'s default.')
param nudgeContact string = ''

@description('Your organisation\'s name in the reminder emails. Empty: "your organisation".')
param nudgeOrganization string = ''

@description('Emails per minute and per hour the nudge job may send: about 5 and 10 on an Azure managed domain (the default), 30 and 100 to start on a custom domain.')
param nudgeQuotaPerMinute string = '5'
param nudgeQuotaPerHour string = '10'

@description('Storage replication; the history tables cannot be rebuilt, so geo-redundant by default.')
param storageSkuName string = 'Standard_GRS'

@description('Optional principal (an admin or group) given Storage Table Data Reader, to query the history with az storage entity query --auth-mode login.')
param tableReaderPrincipalId string = ''

@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param tableReaderPrincipalType string = 'User'

var abbrs = loadJsonContent('abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
  application: 'mfa-readiness-monitor'
}
var functionAppName = '${abbrs.webSitesFunctions}mfa-${resourceToken}'

// The tables the app uses: shared/adapters/table_schema.py ALL_TABLES (tests/infra keeps them equal).
var appTables = [
  'MfaUsers'
  'MfaChanges'
  'MfaRuns'
]

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}mfa-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    skuName: storageSkuName
    deploymentContainerName: 'app-package'
    tableNames: appTables
    identityPrincipalId: identity.outputs.principalId
    tableReaderPrincipalId: tableReaderPrincipalId
    tableReaderPrincipalType: tableReaderPrincipalType
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    applicationInsightsName: '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
    identityPrincipalId: identity.outputs.principalId
  }
}

module communication 'app/communication.bicep' = {
  name: 'communication'
  scope: rg
  params: {
    emailServiceName: '${abbrs.communicationEmailServices}${resourceToken}'
    communicationServiceName: '${abbrs.communicationServices}${resourceToken}'
    tags: tags
    dataLocation: emailDataLocation
    customDomainName: emailCustomDomain
    linkDomain: emailLinkDomain
    senderUsername: emailSenderUsername
    senderRoleKind: emailSenderRoleKind
    identityPrincipalId: identity.outputs.principalId
  }
}

// ==== APP SETTINGS: BEGIN ====
// One entry per setting in shared/config.py SETTINGS that is not local_only (host-only ones such as
// SYNC_SCHEDULE included: the Functions host reads them from app settings). tests/infra keeps this
// list equal to SETTINGS, and a literal value equal to the setting's default (or empty, which the
// code reads as its default). Platform settings
// (AzureWebJobsStorage__*, APPLICATIONINSIGHTS_*) are added in app/function.bicep.
// The nudge job's ACS endpoint and sender address come from app/communication.bicep's outputs.
var appSettings = {
  SYNC_SCHEDULE: syncSchedule
  AUTH_MODE: 'managed_identity'
  AZURE_CLIENT_ID: identity.outputs.clientId
  TABLES_ENDPOINT: storage.outputs.tableEndpoint
  GRAPH_BASE_URL: 'https://graph.microsoft.com/v1.0'
  GRAPH_PAGE_SIZE: '999'
  GRAPH_MAX_RETRIES: '5'
  ENFORCEMENT_WAVES: enforcementWaves
  SYNC_TIME_BUDGET_SECONDS: '1500'
  NUDGE_SCHEDULE: nudgeSchedule
  NUDGE_DRY_RUN: nudgeDryRun
  ACS_ENDPOINT: communication.outputs.endpoint
  EMAIL_SENDER_ADDRESS: communication.outputs.senderAddress
  NUDGE_QUOTA_PER_MINUTE: nudgeQuotaPerMinute
  NUDGE_QUOTA_PER_HOUR: nudgeQuotaPerHour
  NUDGE_CADENCE_DAYS: '30,14,7,3,1'
  NUDGE_BLOCKED_INTERVAL_DAYS: '7'
  NUDGE_BLOCKED_MAX: '4'
  NUDGE_CONTACT: nudgeContact
  NUDGE_ORGANIZATION: nudgeOrganization
  NUDGE_DIGEST_TO: nudgeDigestTo
  NUDGE_GUEST_TRUSTED: 'message'
  NUDGE_TIME_BUDGET_SECONDS: '900'
  SIGNIN_LOOKBACK_DAYS: '30'
  SIGNIN_NON_INTERACTIVE: 'true'
  SIGNIN_INCLUDE_ARM_RESOURCE: 'false'
  SCOPE_SIGNIN_MEMORY_DAYS: '180'
  SCOPE_GUESTS: 'true'
  SCOPE_FILTERS: 'disabled,never_signed_in,directory_sync,service_accounts'
  SCOPE_EXCLUSION_GROUP_ID: ''
  SCOPE_EXCLUDED_UPN_PATTERNS: ''
  // The Azure RBAC signal reads Resource Graph, which needs the Reader role this deployment grants.
  SCOPE_AZURE_RBAC: empty(readerSubscriptionIds) ? 'false' : 'true'
  AZURE_RBAC_MANAGEMENT_GROUPS: ''
  ARM_BASE_URL: 'https://management.azure.com'
  REGISTRATION_FALLBACK: 'true'
  GRAPH_CONCURRENCY: '8'
}
// ==== APP SETTINGS: END ====

module functionApp 'app/function.bicep' = {
  name: 'function'
  scope: rg
  params: {
    name: functionAppName
    planName: '${abbrs.webServerFarms}${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    storageBlobEndpoint: storage.outputs.blobEndpoint
    deploymentContainerName: storage.outputs.deploymentContainerName
    applicationInsightsConnectionString: monitoring.outputs.connectionString
    appSettings: appSettings
  }
}

module graphPermissions 'app/graph-permissions.bicep' = if (grantGraphPermissions) {
  name: 'graph-permissions'
  scope: rg
  params: {
    principalId: identity.outputs.principalId
  }
}

module readerOnSubscriptions 'app/rbac-reader.bicep' = [
  for subscriptionId in readerSubscriptionIds: {
    name: 'reader-${uniqueString(subscriptionId)}'
    scope: subscription(subscriptionId)
    params: {
      principalId: identity.outputs.principalId
    }
  }
]

module alerts 'app/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    location: location
    tags: tags
    actionGroupName: '${abbrs.insightsActionGroups}mfa-${resourceToken}'
    alertNamePrefix: '${abbrs.insightsScheduledQueryRules}mfa-${resourceToken}-'
    alertEmail: alertEmail
    applicationInsightsId: monitoring.outputs.applicationInsightsId
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output MANAGED_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output STORAGE_ACCOUNT_NAME string = storage.outputs.name
output TABLES_ENDPOINT string = storage.outputs.tableEndpoint
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
output ACS_ENDPOINT string = communication.outputs.endpoint
output EMAIL_SENDER_ADDRESS string = communication.outputs.senderAddress
output EMAIL_DOMAIN_VERIFICATION_RECORDS object = communication.outputs.verificationRecords
output GRAPH_PERMISSIONS_GRANTED bool = grantGraphPermissions
