// The Azure Bot resource for the bot's Entra app (single tenant) and its Microsoft Teams channel with
// calling enabled: Graph posts every call notification to the calling webhook, POST /api/calls.

param tags object
param name string
param displayName string

@description('The bot\'s Entra application (client) id.')
param botAppId string

@description('The Entra tenant of the bot\'s app.')
param botTenantId string

@description('Default host name of the Function App.')
param functionHost string

@allowed([ 'F0', 'S1' ])
param sku string = 'F0'

var callingWebhook = 'https://${functionHost}/api/calls'

resource bot 'Microsoft.BotService/botServices@2022-09-15' = {
  name: name
  location: 'global'
  tags: tags
  kind: 'azurebot'
  sku: {
    name: sku
  }
  properties: {
    displayName: displayName
    // The messaging endpoint is required by the resource; this bot handles calls only, so chat messages
    // to it get 404. The calling webhook below is what matters.
    endpoint: 'https://${functionHost}/api/messages'
    msaAppId: botAppId
    msaAppType: 'SingleTenant'
    msaAppTenantId: botTenantId
    publicNetworkAccess: 'Enabled'
  }
}

resource teams 'Microsoft.BotService/botServices/channels@2022-09-15' = {
  parent: bot
  name: 'MsTeamsChannel'
  location: 'global'
  properties: {
    channelName: 'MsTeamsChannel'
    properties: {
      isEnabled: true
      enableCalling: true
      callingWebhook: callingWebhook
      // 'graphPma' is the value the portal writes when calling goes to a webhook (the spec leaves it undocumented).
      incomingCallRoute: 'graphPma'
      deploymentEnvironment: 'CommercialDeployment'
      acceptedTerms: true
    }
  }
}

output name string = bot.name
output callingWebhook string = callingWebhook
