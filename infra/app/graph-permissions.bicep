// Grants the Microsoft Graph application permissions the app needs to its managed identity, with the
// Microsoft Graph Bicep extension (infra/bicepconfig.json). The deployer needs Privileged Role
// Administrator (or delegated AppRoleAssignment.ReadWrite.All + Application.Read.All); main.bicep
// deploys this module only when grantGraphPermissions is true. docs/deploy.md gives the manual
// commands for an admin who grants them separately.
extension microsoftGraphV1

@description('Object (principal) id of the managed identity\'s service principal.')
param principalId string

// ==== GRAPH PERMISSIONS: BEGIN ====
// Exactly the keys of shared/permissions.py GRAPH_PERMISSIONS (tests/infra keeps them equal).
// Add a permission there first, then here.
var graphPermissions = [
  'AuditLog.Read.All'
  'User.Read.All'
  'UserAuthenticationMethod.Read.All'
  'RoleManagement.Read.Directory'
  'GroupMember.Read.All'
  'Policy.Read.All'
  'CrossTenantInformation.ReadBasic.All'
]
// ==== GRAPH PERMISSIONS: END ====

// Microsoft Graph's service principal in this tenant (its appId is the same in every tenant).
resource graph 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: '00000003-0000-0000-c000-000000000000'
}

// Role ids are looked up by value among Graph's application roles, so no GUID is pinned here.
resource grants 'Microsoft.Graph/appRoleAssignedTo@v1.0' = [
  for permission in graphPermissions: {
    principalId: principalId
    resourceId: graph.id
    appRoleId: filter(graph.appRoles, role => role.value == permission && contains(role.allowedMemberTypes, 'Application'))[0].id
  }
]

output granted array = graphPermissions
