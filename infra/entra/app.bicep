// The bot's Microsoft Entra app registration: the app, the federated credential that lets the Function App's
// managed identity sign in as it (no client secret anywhere), its service principal and the Microsoft Graph
// application permissions it needs, granted (an appRoleAssignedTo on Graph's service principal is the tenant-wide
// admin consent for that permission).
//
// A tenant admin runs this once, apart from `azd up`: creating the app needs Application.ReadWrite.All and
// granting Graph application permissions needs AppRoleAssignment.ReadWrite.All, in practice the Privileged Role
// Administrator or Global Administrator role. Order: `azd provision` (creates the managed identity), then this
// file, then `azd env set BOT_APP_ID <output>` and `azd up`. See docs/entra-portal.md for the same in
// the portal.
//
//   export FUNCTION_IDENTITY_PRINCIPAL_ID="$(azd env get-value FUNCTION_IDENTITY_PRINCIPAL_ID)"
//   export MEDIA_IDENTITY_PRINCIPAL_ID="$(azd env get-value MEDIA_IDENTITY_PRINCIPAL_ID)"   # with the media VM
//   az deployment group create -g "$(azd env get-value AZURE_RESOURCE_GROUP)" \
//     -f infra/entra/app.bicep -p infra/entra/app.bicepparam --query properties.outputs
//   azd env set BOT_APP_ID <BOT_APP_ID output>
//
// Needs a current Bicep (`az bicep upgrade`); bicepconfig.json next to this file pins the Microsoft Graph extension.
// Graph resources deploy in the public cloud only.
extension microsoftGraphV1

@description('Object (principal) id of the Function App\'s user-assigned managed identity: the azd output FUNCTION_IDENTITY_PRINCIPAL_ID. The app trusts the tokens this identity gets for api://AzureADTokenExchange.')
@minLength(36)
@maxLength(36)
param functionIdentityPrincipalId string

@description('Object (principal) id of the media VM\'s managed identity, when the media VM (compliance recording) is deployed; it signs in as the same app. Empty: no media VM credential.')
param mediaIdentityPrincipalId string = ''

@description('The Entra tenant the app lives in (the bot\'s BOT_TENANT_ID).')
param tenantId string = tenant().tenantId

@description('The app\'s unique name in the tenant: the key that makes redeploying this file update the same app.')
param appUniqueName string = 'teams-calling-bot'

@description('The app\'s display name in Entra ID and in the Teams admin center.')
param appDisplayName string = 'Teams calling bot'

@description('Grant the Graph permissions (admin consent). false: only declare them on the app, for an admin to grant with "Grant admin consent" in the portal.')
param grantAdminConsent bool = true

// The permission list shared with the azd hooks (they check what was granted) and docs/entra-portal.md.
var graph = loadJsonContent('../graph-permissions.json')

// A managed identity's token as a federated credential: issuer = the tenant's v2.0 authority, subject = the
// identity's object (principal) id, audience = Entra's token-exchange audience (public cloud).
var issuer = '${environment().authentication.loginEndpoint}${tenantId}/v2.0'
var tokenExchangeAudience = 'api://AzureADTokenExchange'
var functionIdentity = {
  name: 'function-identity'
  principalId: functionIdentityPrincipalId
  description: 'The Function App\'s user-assigned managed identity signs in as the bot.'
}
var mediaIdentity = {
  name: 'media-identity'
  principalId: mediaIdentityPrincipalId
  description: 'The media VM\'s managed identity signs in as the bot (app-hosted media, compliance recording).'
}
var trustedIdentities = empty(mediaIdentityPrincipalId) ? [functionIdentity] : [functionIdentity, mediaIdentity]

var permissionNames = [for role in graph.appRoles: role.value]

resource graphSp 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: graph.resourceAppId
}

resource app 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: appUniqueName
  displayName: appDisplayName
  signInAudience: 'AzureADMyOrg'
  notes: 'Microsoft Teams calling bot (Azure Functions). Signs in with the Function App\'s managed identity through a federated credential; it has no secret or certificate.'
  // Declared (the portal's "API permissions"); the grants below are the consent.
  requiredResourceAccess: [
    {
      resourceAppId: graph.resourceAppId
      resourceAccess: [for role in graph.appRoles: {
        id: role.id
        type: 'Role'
      }]
    }
  ]
}

// Top-level (name = '<app uniqueName>/<credential>') rather than nested in the app: the Bicep parser the
// offline checks use (pycep) reads a looped child only at the top level; the deployment is the same.
resource credentials 'Microsoft.Graph/applications/federatedIdentityCredentials@v1.0' = [for trusted in trustedIdentities: {
  name: '${app.uniqueName}/${trusted.name}'
  description: trusted.description
  issuer: issuer
  subject: trusted.principalId
  audiences: [tokenExchangeAudience]
}]

resource botSp 'Microsoft.Graph/servicePrincipals@v1.0' = {
  appId: app.appId
}

// Admin consent, one application permission each (none when grantAdminConsent is false).
resource graphGrants 'Microsoft.Graph/appRoleAssignedTo@v1.0' = [for role in (grantAdminConsent ? graph.appRoles : []): {
  appRoleId: role.id
  principalId: botSp.id
  resourceId: graphSp.id
}]

@description('The app (client) id: set it with `azd env set BOT_APP_ID <value>`.')
output BOT_APP_ID string = app.appId
output BOT_TENANT_ID string = tenantId
output BOT_SERVICE_PRINCIPAL_ID string = botSp.id
output GRANTED_GRAPH_PERMISSIONS array = grantAdminConsent ? permissionNames : []
