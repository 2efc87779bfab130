// The storage account: Functions host storage (blobs: keys, leases), the Flex deployment package, prompts,
// voicemails, compliance recordings, outbound requests' Idempotency-Keys, the media VM's setup artifacts, and, with
// durableBackend = 'storage', the Durable task hub (queues and tables). Identity only: shared keys are off,
// so nothing anywhere holds an account key.

param location string
param tags object
param name string

@description('Storage redundancy. ZRS keeps the app up through a zone outage where the region has zones.')
@allowed([ 'Standard_LRS', 'Standard_ZRS', 'Standard_GRS', 'Standard_GZRS' ])
param skuName string = 'Standard_ZRS'

@description('Container of the Flex Consumption deployment package.')
param deploymentContainerName string

param promptsContainerName string = 'prompts'
@description('Container of the voicemails (written by the Function identity).')
param recordingsContainerName string = 'recordings'

@description('Container of the compliance recordings (written by the media VM identity), kept apart from the voicemails so each has its own retention.')
param complianceRecordingsContainerName string = 'compliance-recordings'

@description('Container of the Idempotency-Key records of the outbound call endpoints (one small JSON blob per key).')
param idempotencyContainerName string = 'idempotency'

@description('Container the media VM setup script and service package are uploaded to (by the azd hooks).')
param mediaArtifactsContainerName string = 'media-artifacts'

@description('Recordings (voicemails) are deleted this many days after they were written.')
@minValue(1)
param recordingRetentionDays int

@description('Compliance recordings are deleted this many days after they were last written.')
@minValue(1)
@maxValue(36500)
param complianceRetentionDays int

@description('Durable Functions backend: with "storage" the Function identity also needs queue and table data roles.')
@allowed([ 'dts', 'storage' ])
param durableBackend string

@description('Principal id of the Function App user-assigned identity.')
param functionPrincipalId string

@description('Principal id of the media VM user-assigned identity.')
param mediaPrincipalId string

@description('Object id of the deploying user (azd AZURE_PRINCIPAL_ID), given blob write access for the hooks (prompt and media artifact uploads). Empty: none.')
param deployerPrincipalId string = ''

var roles = {
  blobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  blobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  blobDataReader: '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
  queueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  tableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
}

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  //checkov:skip=CKV_AZURE_35: Graph fetches prompts from this account (user-delegation SAS URLs) from Microsoft's network, and the Flex app has no virtual network here, so the network default must allow; shared keys are off, so every request needs Entra auth or a user-delegation SAS.
  //checkov:skip=CKV_AZURE_59: Same reason as CKV_AZURE_35: public network access stays on for Graph's prompt fetches and the Flex host; anonymous blob access is off (allowBlobPublicAccess false) and shared keys are off.
  //checkov:skip=CKV_AZURE_206: ZRS by default (survives a zone outage). Geo-replication costs double for data that is reproducible (prompts come from the repository, host state is transient) or short-lived (voicemails have a retention policy); compliance recordings are kept for years, so set storageSkuName Standard_GZRS when your policy asks for a copy in a second region.
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    isLocalUserEnabled: false
    isSftpEnabled: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      services: {
        blob: {
          enabled: true
        }
        file: {
          enabled: true
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource promptsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: promptsContainerName
  properties: {
    // Graph fetches prompts through a user-delegation SAS the Function identity mints; no public read.
    publicAccess: 'None'
  }
}

// Voicemails: written by the Function identity (its Blob Data Owner role below).
resource recordingsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: recordingsContainerName
  properties: {
    publicAccess: 'None'
  }
}

// Compliance recordings: written by the media VM identity (mediaComplianceRecordingsWriter below). No
// immutability policy or legal hold is set here: that is the operator's to add if their regulation asks for WORM.
resource complianceRecordingsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: complianceRecordingsContainerName
  properties: {
    publicAccess: 'None'
  }
}

// Outbound requests' Idempotency-Keys: written by the Function identity (its Blob Data Owner role below).
resource idempotencyContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: idempotencyContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource mediaArtifactsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: mediaArtifactsContainerName
  properties: {
    publicAccess: 'None'
  }
}

// Recordings are personal data: delete voicemails after recordingRetentionDays and compliance recordings after
// complianceRetentionDays (blob soft delete keeps either 7 more). Each rule's prefix is its container's name and
// a slash, so neither reaches the other container.
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'delete-recordings'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [ 'blockBlob' ]
              prefixMatch: [ '${recordingsContainerName}/' ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: recordingRetentionDays
                }
              }
            }
          }
        }
        {
          // Modification, not creation: a recording's blob is last written when its call ends.
          name: 'delete-compliance-recordings'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [ 'blockBlob' ]
              prefixMatch: [ '${complianceRecordingsContainerName}/' ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: complianceRetentionDays
                }
              }
            }
          }
        }
        {
          // An expired key's record is ignored by the app and replaced on the key's next use; this tidies up,
          // 8 days after the last write: past the longest key lifetime the app accepts (7 days,
          // IDEMPOTENCY_KEY_TTL_HOURS), so no key is forgotten early.
          name: 'delete-idempotency-keys'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [ 'blockBlob' ]
              prefixMatch: [ '${idempotencyContainerName}/' ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: 8
                }
              }
            }
          }
        }
      ]
    }
  }
}

// The Functions host keeps keys and leases in blobs and the Flex deployment reads the package: Blob Data
// Owner on the account (what the Functions docs ask for identity-based AzureWebJobsStorage). It also covers
// prompts, voicemails, Idempotency-Key records and the user-delegation key for prompt SAS URLs. Being
// account-wide it also reaches the compliance recordings container, which the app never reads or writes.
resource functionBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, functionPrincipalId, roles.blobDataOwner)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.blobDataOwner)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The Azure Storage Durable backend keeps its task hub in queues and tables.
resource functionQueueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (durableBackend == 'storage') {
  name: guid(account.id, functionPrincipalId, roles.queueDataContributor)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.queueDataContributor)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource functionTableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (durableBackend == 'storage') {
  name: guid(account.id, functionPrincipalId, roles.tableDataContributor)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.tableDataContributor)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The media VM writes (and lists, for its sweep of unfinished recordings) compliance recordings in their own
// container and reads its setup artifacts; nothing else (no access to the voicemails).
resource mediaComplianceRecordingsWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(complianceRecordingsContainer.id, mediaPrincipalId, roles.blobDataContributor)
  scope: complianceRecordingsContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.blobDataContributor)
    principalId: mediaPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource mediaArtifactsReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(mediaArtifactsContainer.id, mediaPrincipalId, roles.blobDataReader)
  scope: mediaArtifactsContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.blobDataReader)
    principalId: mediaPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource deployerBlobContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(deployerPrincipalId)) {
  name: guid(account.id, deployerPrincipalId, roles.blobDataContributor)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.blobDataContributor)
    principalId: deployerPrincipalId
  }
}

output name string = account.name
output id string = account.id
output blobEndpoint string = account.properties.primaryEndpoints.blob
output deploymentContainerName string = deploymentContainer.name
output promptsContainerName string = promptsContainer.name
output recordingsContainerName string = recordingsContainer.name
output complianceRecordingsContainerName string = complianceRecordingsContainer.name
output idempotencyContainerName string = idempotencyContainer.name
output mediaArtifactsContainerName string = mediaArtifactsContainer.name
