// Service Bus Standard namespace with the media hand-off queue. Standard is the cheapest tier with sessions
// and duplicate detection (Premium adds private endpoints and fixed hourly cost, not needed here).
// Local (SAS key) auth is off: the Function identity sends, the media VM identity receives.

param location string
param tags object
param namespaceName string
param queueName string = 'media-handoff'

@description('Principal id of the Function App user-assigned identity (sends hand-offs).')
param functionPrincipalId string

@description('Principal id of the media VM user-assigned identity (receives hand-offs).')
param mediaPrincipalId string

var roles = {
  dataSender: '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
  dataReceiver: '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'
}

resource namespace 'Microsoft.ServiceBus/namespaces@2022-10-01-preview' = {
  name: namespaceName
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Standard'
  }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
  }
}

resource queue 'Microsoft.ServiceBus/namespaces/queues@2022-10-01-preview' = {
  parent: namespace
  name: queueName
  properties: {
    // Session id = the call id (or the target VM instance): one receiver per session, messages in order.
    requiresSession: true
    // Graph retries a notification the webhook did not acknowledge in time; the same hand-off (same
    // MessageId) must not reach the VM twice.
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: 'PT10M'
    // A hand-off is useless after Graph's answer deadline (15 s; 5 s for policy recording): expire it
    // quickly and keep it in the dead-letter queue for diagnosis instead of answering a call that is gone.
    defaultMessageTimeToLive: 'PT1M'
    deadLetteringOnMessageExpiration: true
    lockDuration: 'PT30S'
    maxDeliveryCount: 3
    enablePartitioning: false
  }
}

resource functionSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(queue.id, functionPrincipalId, roles.dataSender)
  scope: queue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.dataSender)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource mediaReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(queue.id, mediaPrincipalId, roles.dataReceiver)
  scope: queue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.dataReceiver)
    principalId: mediaPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output namespaceName string = namespace.name
// serviceBusEndpoint is https://<name>.servicebus.<cloud suffix>:443/; the client libraries want the host.
output fullyQualifiedNamespace string = replace(replace(namespace.properties.serviceBusEndpoint, 'https://', ''), ':443/', '')
output queueName string = queue.name
