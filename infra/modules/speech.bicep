// Azure AI Speech for rendering `say:` prompts at deploy time (calling/flows/speech.py AzureSpeech; docs/flows.md,
// "Say prompts"). Identity only: local (key) auth is off, so every request carries a Microsoft Entra token, which
// Speech accepts only on a resource with a custom subdomain. The deploying user renders the prompts from the azd
// predeploy hook and holds Cognitive Services Speech User; the app itself never calls Speech.

param location string
param tags object
param name string

@description('Custom subdomain (<name>.cognitiveservices.azure.com), unique in Azure; needed for Entra auth and not changeable later.')
param customSubDomainName string

@description('Speech pricing tier: S0 (standard) or F0 (free, one per subscription, limited characters a month).')
@allowed([ 'S0', 'F0' ])
param skuName string = 'S0'

@description('Object id of the deploying user (renders the say prompts in the predeploy hook). Empty: none.')
param deployerPrincipalId string = ''

var roles = {
  // Cognitive Services Speech User: the speech-to-text and text-to-speech data plane, no keys, no management.
  speechUser: 'f2dc8367-1007-4938-bd23-fe263f013447'
}

resource account 'Microsoft.CognitiveServices/accounts@2024-10-01' = {
  //checkov:skip=CKV_AZURE_134: The deploying user renders the say prompts from their own machine (the azd predeploy hook), outside any virtual network, and this template has no private networking; every request needs an Entra token and the Speech User role (disableLocalAuth: true, no keys).
  name: name
  location: location
  tags: tags
  kind: 'SpeechServices'
  sku: {
    name: skuName
  }
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    customSubDomainName: customSubDomainName
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
    }
  }
}

resource deployerSpeechUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(deployerPrincipalId)) {
  name: guid(account.id, deployerPrincipalId, roles.speechUser)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.speechUser)
    principalId: deployerPrincipalId
  }
}

output name string = account.name
output id string = account.id
output location string = account.location
@description('The custom-domain endpoint, https://<customSubDomainName>.cognitiveservices.azure.com/.')
output endpoint string = account.properties.endpoint
