// Reader on one subscription, for the planned Azure RBAC scope signal (who holds roles on Azure
// resources). main.bicep deploys it once per id in readerSubscriptionIds. For management groups use
// infra/rbac-reader-mg.bicep (a management group deployment; see docs/deploy.md).
targetScope = 'subscription'

@description('Object (principal) id of the managed identity.')
param principalId string

var reader = 'acdd72a7-3385-48ef-bd42-f606fba81ae7' // Reader

resource readerAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(subscription().id, principalId, reader)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', reader)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
