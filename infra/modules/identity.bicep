// User-assigned managed identities: one for the Function App, one for the media VM scale set.
// User-assigned (not system-assigned) so role assignments, the bot app's federated credential and the
// Durable Task Scheduler connection exist before the app does, and survive re-creating it.

param location string
param tags object
param functionIdentityName string
param mediaIdentityName string

resource functionIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: functionIdentityName
  location: location
  tags: tags
}

resource mediaIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: mediaIdentityName
  location: location
  tags: tags
}

output functionIdentityId string = functionIdentity.id
output functionIdentityName string = functionIdentity.name
output functionClientId string = functionIdentity.properties.clientId
output functionPrincipalId string = functionIdentity.properties.principalId
output mediaIdentityId string = mediaIdentity.id
output mediaIdentityName string = mediaIdentity.name
output mediaClientId string = mediaIdentity.properties.clientId
output mediaPrincipalId string = mediaIdentity.properties.principalId
