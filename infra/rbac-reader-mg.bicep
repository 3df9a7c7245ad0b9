// Reader on one management group for the app's managed identity (optional; for the planned Azure
// RBAC scope signal). A subscription deployment cannot deploy to a management group, so this is its
// own deployment, run once per management group:
//   az deployment mg create --management-group-id <mg> --location <region> \
//     --template-file infra/rbac-reader-mg.bicep --parameters principalId=<MANAGED_IDENTITY_PRINCIPAL_ID>
targetScope = 'managementGroup'

@description('Object (principal) id of the managed identity (output MANAGED_IDENTITY_PRINCIPAL_ID of main.bicep).')
param principalId string

var reader = 'acdd72a7-3385-48ef-bd42-f606fba81ae7' // Reader

resource readerAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(managementGroup().id, principalId, reader)
  properties: {
    roleDefinitionId: tenantResourceId('Microsoft.Authorization/roleDefinitions', reader)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
