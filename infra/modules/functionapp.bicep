// The Function App on Flex Consumption (Python), running as its user-assigned identity, and every app
// setting the code reads (calling/config.py Settings.from_env; tests/test_infra_settings.py keeps the two in
// step). No secrets: host storage, telemetry, the Durable backend and Graph all authenticate with the identity.

param location string
param tags object
param planName string
param appName string

@description('azd service name (azure.yaml services.<name>); azd finds the app to deploy by this tag.')
param serviceName string = 'api'

@description('Resource id of the Function App user-assigned identity.')
param identityId string

@description('Client id of the Function App user-assigned identity.')
param identityClientId string

param storageAccountName string

@description('Blob endpoint of the storage account, with its trailing slash.')
param storageBlobEndpoint string

param deploymentContainerName string
param promptsContainerName string
param recordingsContainerName string
param idempotencyContainerName string
param applicationInsightsName string

@allowed([ '3.11', '3.12' ])
param pythonVersion string = '3.11'

@allowed([ 512, 2048, 4096 ])
param instanceMemoryMB int = 2048

@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Always-ready instances for the HTTP triggers (the calling webhook). A cold start can take tens of seconds; Graph drops an incoming call not answered within 15 s.')
@minValue(0)
param alwaysReadyHttpInstances int = 1

@description('Always-ready instances for the Durable triggers (orchestrations and activities), as the Durable Functions docs recommend on Flex.')
@minValue(0)
param alwaysReadyDurableInstances int = 1

@allowed([ 'dts', 'storage' ])
param durableBackend string

@description('Durable Task Scheduler endpoint (durableBackend dts).')
param dtsEndpoint string = ''

@description('Durable task hub name (DTS task hub, or the Azure Storage task hub prefix).')
param taskHubName string

param botAppId string
param botTenantId string

@description('Comma-separated tenant ids whose notifications are accepted. Empty: the bot tenant only.')
param botAllowedTenants string = ''

@description('Object id of the bot\'s resource account (application instance) outbound calls come from. Empty: none.')
param botInstanceId string = ''

param defaultFlow string = 'main-menu'
param flowsDir string = 'flows'

@description('Routing policy file, relative to the app root (for example routing.yaml). Empty: every call gets DEFAULT_FLOW.')
param routingPolicyPath string = ''

@description('Where hand-off decisions go: servicebus (the media VMs take them from the queue) or none (such calls are rejected busy).')
@allowed([ 'none', 'servicebus' ])
param handoffTransport string = 'none'

@description('Fully qualified host name of the Service Bus namespace holding the hand-off queue (<name>.servicebus.windows.net).')
param serviceBusNamespace string

@description('Name of the session-enabled hand-off queue.')
param handoffQueue string

@description('The say: prompt renderer the predeploy hook renders with (calling/flows/speech.py): it is part of the rendered files\' names, so the app must run with the same one.')
@allowed([ 'espeak-ng', 'azure-speech' ])
param sayRenderer string = 'espeak-ng'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  //checkov:skip=CKV_AZURE_225: Zone redundancy on Flex Consumption exists only in some regions and raises the always-ready floor; a zone outage only moves new instances to the other zones. Set zoneRedundant here where the region supports it.
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  //checkov:skip=CKV_AZURE_222: Graph posts call notifications to the webhook from the internet and Microsoft publishes no source ranges for them, so the app must be publicly reachable; the webhook authenticates every POST (RS256 token of the calling platform) and the other routes need function keys.
  //checkov:skip=CKV_AZURE_17: Graph presents no TLS client certificate; requiring one would refuse every call notification. Requests are authenticated by the platform's bearer token instead.
  //checkov:skip=CKV_AZURE_212: numberOfWorkers is a dedicated-plan setting; on Flex Consumption the instance floor is the always-ready count (http and durable groups, 1 each by default).
  //checkov:skip=CKV_AZURE_213: Flex Consumption has no fixed instance pool for a health-check path to take instances out of: instances come and go with load and the platform replaces failed ones. The alert rules watch webhook 5xx and answer failures instead.
  name: appName
  location: location
  tags: union(tags, { 'azd-service-name': serviceName })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled'
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        alwaysReady: [
          {
            name: 'http'
            instanceCount: alwaysReadyHttpInstances
          }
          {
            name: 'durable'
            instanceCount: alwaysReadyDurableInstances
          }
        ]
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }
}

// azd deploys with Entra tokens; nothing needs FTP or SCM basic-auth publishing credentials.
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

// Platform settings: identity-based host storage and telemetry.
var platformSettings = {
  AzureWebJobsStorage__accountName: storage.name
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
  // Local auth is off on the component: the host and the app's exporter sign in with the identity.
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  AzureFunctionsJobHost__extensions__durableTask__hubName: taskHubName
}

// The bot's settings (docs/configuration.md). Graph tokens: the identity signs a federated assertion for
// the bot's Entra app (GRAPH_CREDENTIAL managed_identity); the app needs a federated identity credential
// trusting this identity (issuer https://login.microsoftonline.com/<tenant>/v2.0, subject = its principal id).
var botSettings = {
  BOT_APP_ID: botAppId
  BOT_TENANT_ID: botTenantId
  BOT_ALLOWED_TENANTS: botAllowedTenants
  BOT_INSTANCE_ID: botInstanceId
  BOT_PUBLIC_URL: 'https://${site.properties.defaultHostName}'
  GRAPH_CREDENTIAL: 'managed_identity'
  BOT_MANAGED_IDENTITY_CLIENT_ID: identityClientId
  DEFAULT_FLOW: defaultFlow
  FLOWS_DIR: flowsDir
  ROUTING_POLICY_PATH: routingPolicyPath
  // Hand-offs go to the Service Bus queue (the identity holds Azure Service Bus Data Sender on it) when media
  // VMs are deployed to take them; without them `none` rejects such calls busy at once instead of ringing.
  MEDIA_HANDOFF_TRANSPORT: handoffTransport
  SERVICEBUS_NAMESPACE: serviceBusNamespace
  MEDIA_HANDOFF_QUEUE: handoffQueue
  PROMPTS_CONTAINER_URL: '${storageBlobEndpoint}${promptsContainerName}'
  RECORDINGS_CONTAINER_URL: '${storageBlobEndpoint}${recordingsContainerName}'
  // Outbound requests' Idempotency-Keys, shared by every instance (docs/flows.md, "Retrying safely").
  IDEMPOTENCY_CONTAINER_URL: '${storageBlobEndpoint}${idempotencyContainerName}'
  // Names the rendered say prompts (.rendered/say-<digest>.wav): the renderer the predeploy hook used.
  SAY_RENDERER: sayRenderer
}

// Durable Task Scheduler: host.json names no storage provider (a plain `func start` uses Azurite), so the
// provider, its connection and the task hub are set here, overriding host.json (AzureFunctionsJobHost__...).
var dtsSettings = {
  DURABLE_TASK_SCHEDULER_CONNECTION_STRING: 'Endpoint=${dtsEndpoint};Authentication=ManagedIdentity;ClientID=${identityClientId}'
  TASKHUB_NAME: taskHubName
  AzureFunctionsJobHost__extensions__durableTask__storageProvider__type: 'azureManaged'
  AzureFunctionsJobHost__extensions__durableTask__storageProvider__connectionStringName: 'DURABLE_TASK_SCHEDULER_CONNECTION_STRING'
}

// Azure Storage backend: idle queue polling backs off to 30 s by default, which would stall an IVR turn
// after a quiet spell; poll at most every second (more storage transactions, bounded latency).
var storageBackendSettings = {
  AzureFunctionsJobHost__extensions__durableTask__storageProvider__maxQueuePollingInterval: '00:00:01'
}

resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  //checkov:skip=CKV_AZURE_13: checkov reads every Microsoft.Web/sites/config resource as the site's web config; this one is the appsettings config (name 'appsettings'), which holds no such property. The site's own settings are checked on the site resource.
  //checkov:skip=CKV_AZURE_63: checkov reads every Microsoft.Web/sites/config resource as the site's web config; this one is the appsettings config (name 'appsettings'), which holds no such property. The site's own settings are checked on the site resource.
  //checkov:skip=CKV_AZURE_65: checkov reads every Microsoft.Web/sites/config resource as the site's web config; this one is the appsettings config (name 'appsettings'), which holds no such property. The site's own settings are checked on the site resource.
  //checkov:skip=CKV_AZURE_66: checkov reads every Microsoft.Web/sites/config resource as the site's web config; this one is the appsettings config (name 'appsettings'), which holds no such property. The site's own settings are checked on the site resource.
  //checkov:skip=CKV_AZURE_80: checkov reads every Microsoft.Web/sites/config resource as the site's web config; this one is the appsettings config (name 'appsettings'), which holds no such property. The site's own settings are checked on the site resource.
  //checkov:skip=CKV_AZURE_88: checkov reads every Microsoft.Web/sites/config resource as the site's web config; this one is the appsettings config (name 'appsettings'), which holds no such property. The site's own settings are checked on the site resource.
  //checkov:skip=CKV_AZURE_222: checkov reads every Microsoft.Web/sites/config resource as the site's web config; this one is the appsettings config (name 'appsettings'), which holds no such property. The site's own settings are checked on the site resource.
  parent: site
  name: 'appsettings'
  properties: union(platformSettings, botSettings, durableBackend == 'dts' ? dtsSettings : storageBackendSettings)
}

output name string = site.name
output id string = site.id
output defaultHostName string = site.properties.defaultHostName
