// Azure Communication Services Email: an Email Communication Service with one domain (an Azure
// managed domain by default, or your own verified domain), linked to a Communication Services
// resource, and the role that lets the Function App's identity send through it. No keys are read:
// the app authenticates with its managed identity.

param emailServiceName string
param communicationServiceName string
param tags object = {}

@description('Where ACS stores email data at rest.')
@allowed([
  'Africa'
  'Asia Pacific'
  'Australia'
  'Brazil'
  'Canada'
  'Europe'
  'France'
  'Germany'
  'India'
  'Japan'
  'Korea'
  'Norway'
  'Switzerland'
  'UAE'
  'UK'
  'United States'
])
param dataLocation string = 'Europe'

@description('Empty: an Azure managed domain (xxxx.azurecomm.net, about 10 emails an hour). Otherwise your own domain, e.g. notify.contoso.com, which needs DNS verification (docs/deploy.md).')
param customDomainName string = ''

@description('Link the domain to the Communication Services resource. A custom domain must be verified first: deploy with false, verify, redeploy with true.')
param linkDomain bool = true

@description('The part before @ of the sender address. An Azure managed domain (and a custom domain on the default sending limits) only has DoNotReply.')
param senderUsername string = 'DoNotReply'

@description('Display name of the sender.')
param senderDisplayName string = 'MFA readiness'

@description('Principal id of the Function App\'s managed identity.')
param identityPrincipalId string

@description('custom: a role with only CommunicationServices Read and Write (least privilege). builtin: Communication and Email Service Owner, if your organisation does not allow custom roles.')
@allowed([
  'custom'
  'builtin'
])
param senderRoleKind string = 'custom'

var isCustomDomain = !empty(customDomainName)
var domainName = isCustomDomain ? customDomainName : 'AzureManagedDomain'
// Every domain has DoNotReply; other usernames exist only on custom domains with raised limits.
var createSenderUsername = isCustomDomain && toLower(senderUsername) != 'donotreply'
var communicationAndEmailServiceOwner = '09976791-48a7-449e-bb21-39d1a415f350' // Communication and Email Service Owner

resource emailService 'Microsoft.Communication/emailServices@2023-04-01' = {
  name: emailServiceName
  location: 'global'
  tags: tags
  properties: {
    dataLocation: dataLocation
  }
}

resource domain 'Microsoft.Communication/emailServices/domains@2023-04-01' = {
  parent: emailService
  name: domainName
  location: 'global'
  tags: tags
  properties: {
    domainManagement: isCustomDomain ? 'CustomerManaged' : 'AzureManaged'
    userEngagementTracking: 'Disabled'
  }
}

resource sender 'Microsoft.Communication/emailServices/domains/senderUsernames@2023-04-01' = if (createSenderUsername) {
  parent: domain
  name: toLower(senderUsername)
  properties: {
    username: senderUsername
    displayName: senderDisplayName
  }
}

resource communication 'Microsoft.Communication/communicationServices@2023-04-01' = {
  name: communicationServiceName
  location: 'global'
  tags: tags
  properties: {
    dataLocation: dataLocation
    linkedDomains: linkDomain ? [domain.id] : []
  }
}

// Sending with an Entra token needs Microsoft.Communication/CommunicationServices/Read and /Write on
// the Communication Services resource. The custom role grants exactly those, assignable only here.
var customRoleGuid = guid(resourceGroup().id, 'mfa-readiness-email-sender')

resource senderRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = if (senderRoleKind == 'custom') {
  name: customRoleGuid
  properties: {
    // Role names are unique per tenant: the resource group and subscription make it so.
    roleName: 'MFA readiness email sender (${resourceGroup().name}, ${take(subscription().subscriptionId, 8)})'
    description: 'Send email through Azure Communication Services: read and write on Communication Services resources, nothing else.'
    type: 'CustomRole'
    permissions: [
      {
        actions: [
          'Microsoft.Communication/CommunicationServices/Read'
          'Microsoft.Communication/CommunicationServices/Write'
        ]
        notActions: []
      }
    ]
    assignableScopes: [
      resourceGroup().id
    ]
  }
}

// Role definitions live at subscription level even when created from a resource group deployment.
var senderRoleGuid = senderRoleKind == 'custom' ? customRoleGuid : communicationAndEmailServiceOwner

resource identitySender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(communication.id, identityPrincipalId, senderRoleKind)
  scope: communication
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', senderRoleGuid)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
  dependsOn: [
    senderRole
  ]
}

// The nudge job's settings (issue 5) come from these two outputs.
output endpoint string = 'https://${communication.properties.hostName}'
output senderAddress string = '${senderUsername}@${domain.properties.mailFromSenderDomain}'
output domainName string = domain.name
// For a custom domain: the DNS records to publish before verification (docs/deploy.md).
output verificationRecords object = domain.properties.?verificationRecords ?? {}
