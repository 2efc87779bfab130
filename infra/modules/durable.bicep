// Durable Task Scheduler: the default Durable Functions backend. Work is pushed to the app over a gRPC
// stream, so an orchestration turn does not wait on queue polling (the Azure Storage backend's idle
// back-off), which matters for IVR latency. Identity only: the Function identity gets Durable Task Data
// Contributor; the deploying user gets it too, for the scheduler's dashboard.

param location string
param tags object
param schedulerName string
param taskHubName string

@allowed([ 'Consumption', 'Dedicated' ])
param skuName string = 'Consumption'

@description('Capacity units, Dedicated SKU only.')
@minValue(1)
param dedicatedCapacity int = 1

@description('Principal id of the Function App user-assigned identity.')
param functionPrincipalId string

@description('Object id of the deploying user (dashboard access). Empty: none.')
param deployerPrincipalId string = ''

var durableTaskDataContributor = '0ad04412-c4d5-4796-b79c-f76d14c8d402'

resource scheduler 'Microsoft.DurableTask/schedulers@2025-11-01' = {
  name: schedulerName
  location: location
  tags: tags
  properties: {
    // An empty allow list denies everything; access is controlled by RBAC (no keys exist).
    ipAllowlist: [ '0.0.0.0/0' ]
    sku: skuName == 'Dedicated' ? {
      name: 'Dedicated'
      capacity: dedicatedCapacity
    } : {
      name: 'Consumption'
    }
  }
}

resource taskHub 'Microsoft.DurableTask/schedulers/taskHubs@2025-11-01' = {
  parent: scheduler
  name: taskHubName
}

resource functionContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(scheduler.id, functionPrincipalId, durableTaskDataContributor)
  scope: scheduler
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', durableTaskDataContributor)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource deployerContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(deployerPrincipalId)) {
  name: guid(scheduler.id, deployerPrincipalId, durableTaskDataContributor)
  scope: scheduler
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', durableTaskDataContributor)
    principalId: deployerPrincipalId
  }
}

output schedulerName string = scheduler.name
output endpoint string = scheduler.properties.endpoint
output taskHubName string = taskHub.name
