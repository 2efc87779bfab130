// The Teams calling bot's Azure infrastructure, for `azd up` (azure.yaml: infra path infra, module main).
//
// Subscription scope, as azd templates do: the deployment creates the environment's resource group itself,
// so `azd up` on an empty subscription works and `azd down` removes everything with the group.
// Modules in infra/modules/ are written here (no registry modules), so everything can be checked offline
// (tests/test_infra_bicep.py: pycep parse, checkov). infra/README.md describes the layout.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name; names the resource group and seeds unique resource names.')
param environmentName string

@minLength(1)
@description('Region of every resource (Flex Consumption and the Durable Task Scheduler must be available in it).')
@metadata({ azd: { type: 'location' } })
param location string

@description('Object id of the deploying user (azd sets AZURE_PRINCIPAL_ID): blob upload, certificate import and DTS dashboard access for the hooks. Empty: no user roles.')
param principalId string = ''

@description('The bot\'s Entra application (client) id. Empty on the first provision (the app is created afterwards with infra/entra/app.bicep, which needs this deployment\'s Function identity): the Azure Bot is then skipped and the webhook answers 503 until BOT_APP_ID is set and provisioned again.')
param botAppId string = ''

@description('Entra tenant of the bot\'s app. Empty: the deploying tenant.')
param botTenantId string = tenant().tenantId

@description('Object id of the bot\'s resource account (application instance) outbound calls come from. Optional.')
param botInstanceId string = ''

@description('Comma-separated tenant ids whose call notifications are accepted. Empty: the bot tenant only.')
param botAllowedTenants string = ''

@description('Display name of the Azure Bot resource.')
param botDisplayName string = 'Teams calling bot'

@description('Flow every call gets when no routing policy rule matches (flows/<name>.yaml).')
param defaultFlow string = 'main-menu'

@description('Routing policy file relative to the app root (for example routing.yaml). Empty: the default policy.')
param routingPolicyPath string = ''

@description('Durable Functions backend: the Durable Task Scheduler (pushes work, lowest latency) or Azure Storage (queues polled at most every second).')
@allowed([ 'dts', 'storage' ])
param durableBackend string = 'dts'

@description('Durable Task Scheduler SKU (durableBackend dts).')
@allowed([ 'Consumption', 'Dedicated' ])
param dtsSkuName string = 'Consumption'

@description('Durable task hub name.')
param taskHubName string = 'calls'

@description('Always-ready instances for the HTTP group (the webhook must answer within Graph\'s 15 s deadline; a cold start cannot be absorbed).')
@minValue(0)
param alwaysReadyHttpInstances int = 1

@description('Always-ready instances for the Durable group (orchestrations, activities).')
@minValue(0)
param alwaysReadyDurableInstances int = 1

@description('Flex Consumption instance memory (MB).')
@allowed([ 512, 2048, 4096 ])
param instanceMemoryMB int = 2048

@description('Flex Consumption scale-out limit.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Days voicemails are kept in the recordings container before the lifecycle policy deletes them.')
@minValue(1)
param recordingRetentionDays int = 30

@description('Days compliance recordings (written by the media VMs) are kept in their own container before the lifecycle policy deletes them. 2557 (7 years) by default: set it to your retention policy.')
@minValue(1)
@maxValue(36500)
param complianceRetentionDays int = 2557

@description('Storage redundancy.')
@allowed([ 'Standard_LRS', 'Standard_ZRS', 'Standard_GRS', 'Standard_GZRS' ])
param storageSkuName string = 'Standard_ZRS'

@description('Email address for alert notifications. Empty: alerts show in Azure Monitor only.')
param alertEmail string = ''

@description('Deploy the media VM scale set (app-hosted media, compliance recording). Needs the media certificate in Key Vault and the media artifacts uploaded first (the azd hooks do both), so enable it after a first `azd up`.')
param deployMediaVm bool = false

@description('Media VM instances.')
@minValue(0)
@maxValue(100)
param mediaVmInstanceCount int = 1

@description('Media VM size.')
param mediaVmSize string = 'Standard_D4s_v5'

@description('Media VM local administrator name.')
param mediaVmAdminUsername string = 'mediaadmin'

@secure()
@description('Media VM local administrator password (needed with deployMediaVm). No RDP port is open.')
param mediaVmAdminPassword string = ''

@description('Name of the media TLS certificate in the Key Vault.')
param mediaCertificateName string = 'media-tls'

@description('Path of the media VM setup script in the repository; the hooks upload mediavm/ to the media artifacts container under the same paths.')
param mediaVmSetupScript string = 'mediavm/setup/setup.ps1'

@description('Give each media instance its own public IP (ILPIP, which Microsoft requires for application-hosted media) as well as its NAT ports. false: no UDP media reaches the instances.')
param mediaVmInstancePublicIp bool = true

@description('Public DNS name the media service advertises (its certificate\'s name), a CNAME to the media load balancer\'s FQDN (MEDIA_VM_FQDN). Empty: that FQDN itself.')
param mediaServiceFqdn string = ''

@description('Autoscale the media VMs on their load (live calls as a share of MEDIA_WORKER_CAPACITY); false: mediaVmInstanceCount stays.')
param mediaAutoscaleEnabled bool = true

@description('Media autoscale: fewest instances.')
@minValue(0)
@maxValue(100)
param mediaAutoscaleMinInstances int = 1

@description('Media autoscale: most instances.')
@minValue(1)
@maxValue(100)
param mediaAutoscaleMaxInstances int = 4

@description('Media autoscale: add an instance when the average load over 10 minutes is above this percentage.')
@minValue(1)
@maxValue(100)
param mediaScaleOutLoadPercent int = 70

@description('Media autoscale: remove an instance (after its drain) when the average load over 30 minutes is below this percentage.')
@minValue(0)
@maxValue(99)
param mediaScaleInLoadPercent int = 25

@description('Deploy an Azure AI Speech resource (Entra auth only) and render the say: prompts with it at deploy time (SAY_RENDERER azure-speech, in the predeploy hook and the app). false: espeak-ng renders them.')
param deploySpeech bool = false

@description('Speech pricing tier (deploySpeech): S0, or F0 (free, one per subscription).')
@allowed([ 'S0', 'F0' ])
param speechSkuName string = 'S0'

@description('Resource tags added to every resource.')
param extraTags object = {}

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = union(extraTags, { 'azd-env-name': environmentName })
var tenantId = empty(botTenantId) ? tenant().tenantId : botTenantId
var deploymentContainerName = 'app-package-${take(resourceToken, 7)}'
var mediaArtifactsContainerName = 'media-artifacts'
var handoffQueueName = 'media-handoff'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    location: location
    tags: tags
    functionIdentityName: 'id-func-${resourceToken}'
    mediaIdentityName: 'id-media-${resourceToken}'
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    location: location
    tags: tags
    logAnalyticsName: 'log-${resourceToken}'
    applicationInsightsName: 'appi-${resourceToken}'
    functionPrincipalId: identity.outputs.functionPrincipalId
  }
}

module workbook 'modules/workbook.bicep' = {
  name: 'workbook'
  scope: rg
  params: {
    location: location
    tags: tags
    applicationInsightsId: monitoring.outputs.applicationInsightsId
  }
}

module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    location: location
    tags: tags
    namePrefix: 'alert-${resourceToken}'
    applicationInsightsId: monitoring.outputs.applicationInsightsId
    alertEmail: alertEmail
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    location: location
    tags: tags
    name: 'st${resourceToken}'
    skuName: storageSkuName
    deploymentContainerName: deploymentContainerName
    mediaArtifactsContainerName: mediaArtifactsContainerName
    recordingRetentionDays: recordingRetentionDays
    complianceRetentionDays: complianceRetentionDays
    durableBackend: durableBackend
    functionPrincipalId: identity.outputs.functionPrincipalId
    mediaPrincipalId: identity.outputs.mediaPrincipalId
    deployerPrincipalId: principalId
  }
}

module durable 'modules/durable.bicep' = if (durableBackend == 'dts') {
  name: 'durable'
  scope: rg
  params: {
    location: location
    tags: tags
    schedulerName: 'dts-${resourceToken}'
    taskHubName: taskHubName
    skuName: dtsSkuName
    functionPrincipalId: identity.outputs.functionPrincipalId
    deployerPrincipalId: principalId
  }
}

module serviceBus 'modules/servicebus.bicep' = {
  name: 'servicebus'
  scope: rg
  params: {
    location: location
    tags: tags
    namespaceName: 'sb-${resourceToken}'
    queueName: handoffQueueName
    functionPrincipalId: identity.outputs.functionPrincipalId
    mediaPrincipalId: identity.outputs.mediaPrincipalId
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    location: location
    tags: tags
    name: 'kv-${resourceToken}'
    mediaPrincipalId: identity.outputs.mediaPrincipalId
    deployerPrincipalId: principalId
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  scope: rg
  params: {
    location: location
    tags: tags
    planName: 'plan-${resourceToken}'
    appName: 'func-${resourceToken}'
    serviceName: 'api'
    identityId: identity.outputs.functionIdentityId
    identityClientId: identity.outputs.functionClientId
    storageAccountName: storage.outputs.name
    storageBlobEndpoint: storage.outputs.blobEndpoint
    deploymentContainerName: storage.outputs.deploymentContainerName
    promptsContainerName: storage.outputs.promptsContainerName
    recordingsContainerName: storage.outputs.recordingsContainerName
    idempotencyContainerName: storage.outputs.idempotencyContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    alwaysReadyHttpInstances: alwaysReadyHttpInstances
    alwaysReadyDurableInstances: alwaysReadyDurableInstances
    durableBackend: durableBackend
    dtsEndpoint: durableBackend == 'dts' ? durable.outputs.endpoint : ''
    taskHubName: taskHubName
    botAppId: botAppId
    botTenantId: tenantId
    botAllowedTenants: botAllowedTenants
    botInstanceId: botInstanceId
    defaultFlow: defaultFlow
    routingPolicyPath: routingPolicyPath
    handoffTransport: deployMediaVm ? 'servicebus' : 'none'
    serviceBusNamespace: serviceBus.outputs.fullyQualifiedNamespace
    handoffQueue: serviceBus.outputs.queueName
    // The renderer names the rendered say prompts (calling/flows/speech.py renderer_name()), so the app runs
    // with the one the predeploy hook renders with: azure-speech when this deployment has a Speech resource.
    sayRenderer: deploySpeech ? 'azure-speech' : 'espeak-ng'
  }
}

module speech 'modules/speech.bicep' = if (deploySpeech) {
  name: 'speech'
  scope: rg
  params: {
    location: location
    tags: tags
    name: 'spch-${resourceToken}'
    customSubDomainName: 'spch-${resourceToken}'
    skuName: speechSkuName
    deployerPrincipalId: principalId
  }
}

module bot 'modules/bot.bicep' = if (!empty(botAppId)) {
  name: 'bot'
  scope: rg
  params: {
    tags: tags
    name: 'bot-${resourceToken}'
    displayName: botDisplayName
    botAppId: botAppId
    botTenantId: tenantId
    functionHost: functionApp.outputs.defaultHostName
  }
}

module mediaVm 'modules/mediavm.bicep' = if (deployMediaVm) {
  name: 'mediavm'
  scope: rg
  params: {
    location: location
    tags: tags
    namePrefix: 'media-${resourceToken}'
    identityId: identity.outputs.mediaIdentityId
    identityClientId: identity.outputs.mediaClientId
    identityPrincipalId: identity.outputs.mediaPrincipalId
    instanceCount: mediaVmInstanceCount
    vmSize: mediaVmSize
    adminUsername: mediaVmAdminUsername
    adminPassword: mediaVmAdminPassword
    keyVaultName: keyVault.outputs.name
    certificateName: mediaCertificateName
    setupScriptUrl: '${storage.outputs.blobEndpoint}${mediaArtifactsContainerName}/${mediaVmSetupScript}'
    dnsLabel: 'media-${resourceToken}'
    instancePublicIp: mediaVmInstancePublicIp
    serviceConfig: {
      botAppId: botAppId
      botTenantId: tenantId
      serviceBusNamespace: serviceBus.outputs.fullyQualifiedNamespace
      handoffQueue: serviceBus.outputs.queueName
      // The worker writes its compliance recordings to this container (RECORDINGS_CONTAINER_URL on the VM).
      recordingsContainerUrl: '${storage.outputs.blobEndpoint}${storage.outputs.complianceRecordingsContainerName}'
      mediaArtifactsContainerUrl: '${storage.outputs.blobEndpoint}${mediaArtifactsContainerName}'
      applicationInsightsName: monitoring.outputs.applicationInsightsName
      // The worker's BOT_PUBLIC_URL (recording joiners beyond its capacity are sent back to the webhook) and
      // BOT_ALLOWED_TENANTS, as the Function App has them; serviceFqdn: mediaServiceFqdn (empty: the LB's FQDN).
      botPublicUrl: 'https://${functionApp.outputs.defaultHostName}'
      botAllowedTenants: botAllowedTenants
      serviceFqdn: mediaServiceFqdn
    }
  }
}

// Operating the media VMs: autoscale on the workers' load, the media workbook, the media alerts (docs/media.md).
module mediaOps 'modules/mediaops.bicep' = if (deployMediaVm) {
  name: 'mediaops'
  scope: rg
  params: {
    location: location
    tags: tags
    namePrefix: 'media-${resourceToken}'
    scaleSetName: mediaVm.outputs.scaleSetName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    mediaPrincipalId: identity.outputs.mediaPrincipalId
    autoscaleEnabled: mediaAutoscaleEnabled
    minInstances: mediaAutoscaleMinInstances
    maxInstances: mediaAutoscaleMaxInstances
    defaultInstances: mediaVmInstanceCount
    scaleOutPercent: mediaScaleOutLoadPercent
    scaleInPercent: mediaScaleInLoadPercent
    alertEmail: alertEmail
  }
}

// Read by azd (service discovery, AZURE_RESOURCE_GROUP) and by the hooks in infra/hooks/.
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_FUNCTION_HOST string = functionApp.outputs.defaultHostName
output BOT_WEBHOOK_URL string = 'https://${functionApp.outputs.defaultHostName}/api/calls'
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output PROMPTS_CONTAINER_NAME string = storage.outputs.promptsContainerName
output RECORDINGS_CONTAINER_NAME string = storage.outputs.recordingsContainerName
output COMPLIANCE_RECORDINGS_CONTAINER_NAME string = storage.outputs.complianceRecordingsContainerName
output MEDIA_ARTIFACTS_CONTAINER_NAME string = storage.outputs.mediaArtifactsContainerName
output BOT_APP_ID string = botAppId
output BOT_TENANT_ID string = tenantId
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output MEDIA_CERTIFICATE_NAME string = mediaCertificateName
output SERVICEBUS_NAMESPACE string = serviceBus.outputs.namespaceName
output SERVICEBUS_FULLY_QUALIFIED_NAMESPACE string = serviceBus.outputs.fullyQualifiedNamespace
output MEDIA_HANDOFF_QUEUE string = serviceBus.outputs.queueName
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
output FUNCTION_IDENTITY_CLIENT_ID string = identity.outputs.functionClientId
output FUNCTION_IDENTITY_PRINCIPAL_ID string = identity.outputs.functionPrincipalId
output MEDIA_IDENTITY_CLIENT_ID string = identity.outputs.mediaClientId
output MEDIA_IDENTITY_PRINCIPAL_ID string = identity.outputs.mediaPrincipalId
output DURABLE_BACKEND string = durableBackend
output AZURE_BOT_NAME string = empty(botAppId) ? '' : bot.outputs.name
output MEDIA_VM_FQDN string = deployMediaVm ? mediaVm.outputs.publicFqdn : ''
output AZURE_SPEECH_ENDPOINT string = deploySpeech ? speech.outputs.endpoint : ''
output AZURE_SPEECH_RESOURCE_ID string = deploySpeech ? speech.outputs.id : ''
output AZURE_SPEECH_REGION string = deploySpeech ? speech.outputs.location : ''
