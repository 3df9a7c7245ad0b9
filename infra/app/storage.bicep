// One storage account for the app: the Functions host storage (AzureWebJobsStorage), the Flex
// Consumption deployment container, and the app's history tables. Entra ID only: shared keys are off,
// so no connection string with a key exists anywhere.

@description('Storage account name (3-24 lowercase letters and digits).')
@minLength(3)
@maxLength(24)
param name string

param location string
param tags object = {}

@description('Replication. The tables hold the MFA history, which cannot be rebuilt: geo-redundant by default.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
  'Standard_RAGRS'
  'Standard_RAGZRS'
])
param skuName string = 'Standard_GRS'

@description('Blob container the Flex Consumption app deploys its package to.')
param deploymentContainerName string

@description('The tables the app uses (shared/adapters/table_schema.py ALL_TABLES).')
param tableNames array

@description('Principal id of the Function App\'s managed identity.')
param identityPrincipalId string

@description('Optional: an Entra principal (an admin or group) that may read the history tables with az storage entity query --auth-mode login. Empty: nobody.')
param tableReaderPrincipalId string = ''

@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param tableReaderPrincipalType string = 'User'

// Built-in role definitions (ids verified against Microsoft's built-in roles list).
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b' // Storage Blob Data Owner
var storageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3' // Storage Table Data Contributor
var storageTableDataReader = '76199698-9eea-4c19-bc75-cec21354c6b6' // Storage Table Data Reader

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35:The Flex Consumption app reaches storage over its public endpoint (no VNet integration, to stay serverless); shared keys are off, so every request needs an Entra token and a data role.
  // checkov:skip=CKV_AZURE_59:Same as CKV_AZURE_35: public network access without VNet integration, Entra ID only.
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource tables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [
  for tableName in tableNames: {
    parent: tableService
    name: tableName
  }
]

// Host storage and the deployment container: the Functions host needs to read and write blobs and
// create containers (Storage Blob Data Owner is the documented minimum for identity-based
// AzureWebJobsStorage). A timer-only app needs no queue role.
resource identityBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identityPrincipalId, storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The app's tables, and the host's diagnostic events table. Account scope rather than per table:
// the sync calls create_table on start (idempotent), which a table-scoped role would refuse.
resource identityTableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identityPrincipalId, storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributor)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource readerTableAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(tableReaderPrincipalId)) {
  name: guid(storage.id, tableReaderPrincipalId, storageTableDataReader)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataReader)
    principalId: tableReaderPrincipalId
    principalType: tableReaderPrincipalType
  }
}

output name string = storage.name
output id string = storage.id
output blobEndpoint string = storage.properties.primaryEndpoints.blob
// https://<account>.table.core.windows.net (no trailing slash): the TABLES_ENDPOINT setting.
output tableEndpoint string = 'https://${storage.name}.table.${environment().suffixes.storage}'
output deploymentContainerName string = deploymentContainer.name
output tableNames array = [for (tableName, i) in tableNames: tables[i].name]
