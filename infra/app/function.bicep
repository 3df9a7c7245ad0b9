// The Function App on the Flex Consumption plan (Linux, Python 3.11), running as the user-assigned
// managed identity. Host storage, the deployment package and telemetry all use that identity:
// no keys, no connection strings with secrets. HTTPS only, TLS 1.2+, FTP and basic publishing off.

param name string
param planName string
param location string
param tags object = {}

@description('Resource id of the user-assigned managed identity.')
param identityId string

@description('Client id of the user-assigned managed identity.')
param identityClientId string

param storageAccountName string
param storageBlobEndpoint string
param deploymentContainerName string

@description('Application Insights connection string (identifiers only; ingestion needs the identity\'s token).')
param applicationInsightsConnectionString string

@description('The app\'s own settings, from main.bicep (the list in shared/config.py). Platform settings are added here.')
param appSettings object

@description('Flex Consumption instance size. The sync holds about one Graph page and the remembered users in memory.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Upper bound on instances. The nightly timer runs as a singleton; this bounds HTTP scale-out and cost.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

// Read by the Functions host, not by the app. AzureWebJobsStorage is identity-based: the host uses
// the user-assigned identity (clientId) for blobs (timer schedule monitor, singleton locks).
var platformSettings = {
  AzureWebJobsStorage__accountName: storageAccountName
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225:A nightly batch job on a serverless plan; a missed night is caught by the 26-hour alert and the next run catches up, so zone redundancy is not worth its constraints.
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true // Linux
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222:Admins query the history over HTTPS (issue 4) from their own networks; every HTTP function requires authentication, the timer needs no inbound access.
  // checkov:skip=CKV_AZURE_17:Callers authenticate with Entra ID / function keys, not client certificates.
  // checkov:skip=CKV_AZURE_212:Flex Consumption scales to zero by design; a timer job needs no standing instances for failover.
  // checkov:skip=CKV_AZURE_213:Flex Consumption has no App Service health check; the alert rules watch every run instead.
  name: name
  location: location
  // azd deploys the code to the resource tagged with the service name in azure.yaml.
  tags: union(tags, { 'azd-service-name': 'monitor' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled'
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [
        for setting in items(union(platformSettings, appSettings)): {
          name: setting.key
          value: setting.value
        }
      ]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = functionApp.name
output id string = functionApp.id
output defaultHostName string = functionApp.properties.defaultHostName
