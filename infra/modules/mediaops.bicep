// Operating the media VM scale set (deployed with it, deployMediaVm = true): autoscale on the workers' load,
// the media workbook, and log alerts for an instance that stops taking calls, unanswered hand-offs,
// recording failures and drains at risk. docs/media.md ("Operating the media VMs") explains each.
//
// The metrics come from the worker (mediavm/metrics.py): OpenTelemetry gauges the Azure Monitor exporter sends
// to Application Insights as custom metrics, every minute per instance. Autoscale reads their pre-aggregated
// copy in the `azure.applicationinsights` namespace (custom metrics of an Application Insights resource;
// "Autoscale a web app by using custom metrics"); the workbook and the alerts query `customMetrics` and
// `customEvents` (classic table names: the alerts are scoped to the component). Event names and fields are
// those the code emits (docs/monitoring.md); tests/test_media_ops_infra.py checks every query against the code.

param location string
param tags object

@description('Base name of the autoscale setting, alert rules and action group.')
param namePrefix string

@description('Name of the media VM scale set (mediavm.bicep output scaleSetName).')
param scaleSetName string

@description('Name of the Application Insights component the workers report to.')
param applicationInsightsName string

@description('Principal id of the media VM identity: it publishes the workers\' telemetry (Monitoring Metrics Publisher).')
param mediaPrincipalId string

@description('Autoscale on (false: the scale set keeps the instance count it is deployed with).')
param autoscaleEnabled bool = true

@description('Fewest instances autoscale keeps.')
@minValue(0)
@maxValue(100)
param minInstances int = 1

@description('Most instances autoscale adds.')
@minValue(1)
@maxValue(100)
param maxInstances int = 4

@description('Instances when the load metric is missing (no worker reporting); kept between the two above.')
@minValue(0)
@maxValue(100)
param defaultInstances int = 1

@description('Add an instance when the instances\' average load (media.load_percent: live calls as a percentage of MEDIA_WORKER_CAPACITY) over the last 10 minutes is above this.')
@minValue(1)
@maxValue(100)
param scaleOutPercent int = 70

@description('Remove an instance (it drains first: Terminate notification) when the average load over the last 30 minutes is below this. Keep it well under scaleOutPercent x (n-1)/n, or autoscale defers every scale-in (flapping).')
@minValue(0)
@maxValue(99)
param scaleInPercent int = 25

@description('After a scale-out, wait this long before scaling again (a new Windows instance takes minutes to boot, set up and report).')
param scaleOutCooldown string = 'PT10M'

@description('After a scale-in, wait this long (the removed instance drains for up to 15 minutes).')
param scaleInCooldown string = 'PT30M'

@description('An instance that has not taken calls for this many minutes (or stopped reporting without draining) raises the not-taking alert.')
@minValue(5)
@maxValue(55)
param quietMinutes int = 10

@description('Hand-offs no worker answered in a 15-minute window that raise the unanswered alert (and, with an idle instance, the not-taking alert).')
@minValue(1)
param unansweredThreshold int = 3

@description('Email address for alert and scale notifications. Empty: they show in Azure Monitor only.')
param alertEmail string = ''

// The metric autoscale reads, and the one gauge with an attribute (mediavm/metrics.py).
var loadMetric = 'media.load_percent'
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'
var unansweredWhy = 'no media worker answered it in time'

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource vmss 'Microsoft.Compute/virtualMachineScaleSets@2024-07-01' existing = {
  name: scaleSetName
}

// The workers export with the media identity (APPLICATIONINSIGHTS_AUTHENTICATION_STRING on the VM): the component
// takes Entra-authenticated telemetry only (monitoring.bicep: local auth off).
resource mediaPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, mediaPrincipalId, monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: mediaPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource autoscale 'Microsoft.Insights/autoscalesettings@2022-10-01' = {
  name: '${namePrefix}-autoscale'
  location: location
  tags: tags
  properties: {
    enabled: autoscaleEnabled
    targetResourceUri: vmss.id
    profiles: [
      {
        name: 'load'
        capacity: {
          minimum: string(minInstances)
          maximum: string(max(minInstances, maxInstances))
          default: string(min(max(minInstances, maxInstances), max(minInstances, defaultInstances)))
        }
        rules: [
          {
            // The gauge is already per instance (each reports its own load): averaged over the instances, not
            // divided by their count.
            metricTrigger: {
              metricName: loadMetric
              metricNamespace: 'azure.applicationinsights'
              metricResourceUri: appInsights.id
              timeGrain: 'PT1M'
              statistic: 'Average'
              timeWindow: 'PT10M'
              timeAggregation: 'Average'
              operator: 'GreaterThan'
              threshold: scaleOutPercent
              dividePerInstance: false
            }
            scaleAction: {
              direction: 'Increase'
              type: 'ChangeCount'
              value: '1'
              cooldown: scaleOutCooldown
            }
          }
          {
            metricTrigger: {
              metricName: loadMetric
              metricNamespace: 'azure.applicationinsights'
              metricResourceUri: appInsights.id
              timeGrain: 'PT1M'
              statistic: 'Average'
              timeWindow: 'PT30M'
              timeAggregation: 'Average'
              operator: 'LessThan'
              threshold: scaleInPercent
              dividePerInstance: false
            }
            scaleAction: {
              direction: 'Decrease'
              type: 'ChangeCount'
              value: '1'
              cooldown: scaleInCooldown
            }
          }
        ]
      }
    ]
    notifications: empty(alertEmail) ? [] : [
      {
        operation: 'Scale'
        email: {
          sendToSubscriptionAdministrator: false
          sendToSubscriptionCoAdministrators: false
          customEmails: [ alertEmail ]
        }
      }
    ]
  }
}

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  // A workbook's name must be a GUID; stable per component so re-provisioning updates it in place.
  name: guid(appInsights.id, 'media-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'Teams calling bot: media VMs'
    category: 'workbook'
    sourceId: appInsights.id
    serializedData: replace(loadTextContent('workbook-media.json'), '__APPLICATION_INSIGHTS_ID__', appInsights.id)
    version: 'Notebook/1.0'
  }
}

// Each rule fires when its query returns rows (one alert per value of its dimensions). The not-taking rule
// looks back an hour (to see an instance that went quiet) and judges the last quietMinutes.
var rules = [
  {
    name: 'not-taking'
    displayName: 'Media: an instance stopped taking calls'
    description: 'A media VM instance has not been able to take hand-offs for ${quietMinutes} minutes (the hand-off queue unreachable), stopped reporting without draining (crash, hang, VM gone), or took no hand-off while it had room and hand-offs went unanswered.'
    severity: 1
    windowSize: 'PT1H'
    dimensions: [
      {
        name: 'instance'
        operator: 'Include'
        values: [ '*' ]
      }
    ]
    query: 'let quiet = ${quietMinutes}m; let beats = customMetrics | where timestamp > ago(1h) and name == "media.taking" | extend state = tostring(customDimensions.state), instance = cloud_RoleInstance; let unreachable = beats | where timestamp > ago(quiet) | summarize n = count(), stuck = countif(state == "queue_unreachable") by instance | where n > 0 and stuck == n | extend why = strcat("the hand-off queue unreachable for ", quiet); let silent = beats | summarize arg_max(timestamp, state) by instance | where timestamp < ago(quiet) and state !in ("draining", "stopped") | extend why = strcat("no heartbeat since ", tostring(timestamp), ", last state ", state); let unanswered = toscalar(customEvents | where timestamp > ago(quiet) and name == "call.handoff_unanswered" and tostring(customDimensions.why) == "${unansweredWhy}" | count); let took = customEvents | where timestamp > ago(quiet) and name in ("media.answered", "media.answer_failed", "media.handoff_unsupported") | summarize by instance = cloud_RoleInstance; let idle = beats | where timestamp > ago(quiet) | summarize n = count(), free = countif(state == "taking") by instance | where unanswered >= ${unansweredThreshold} and n > 0 and free == n | join kind=leftanti took on instance | extend why = strcat(unanswered, " hand-offs unanswered while it had room and took none"); union unreachable, silent, idle | project instance, why'
  }
  {
    name: 'handoffs-unanswered'
    displayName: 'Media: hand-offs unanswered'
    description: 'At least ${unansweredThreshold} handed-off calls in 15 minutes were taken back by the webhook (rejected busy, or answered by the fallback flow): no worker, all full, autoscale at its maximum, or the queue failing.'
    severity: 2
    windowSize: 'PT15M'
    dimensions: [
      {
        name: 'why'
        operator: 'Include'
        values: [ '*' ]
      }
    ]
    query: 'customEvents | where name == "call.handoff_unanswered" | summarize unanswered = count() by why = tostring(customDimensions.why) | where unanswered >= ${unansweredThreshold}'
  }
  {
    name: 'recording-failures'
    displayName: 'Media: recording failed'
    description: 'A compliance recording broke while its call was up (why media: the media stopped; recorder: storage failed) and the worker told Graph the recording failed.'
    severity: 1
    windowSize: 'PT15M'
    dimensions: [
      {
        name: 'why'
        operator: 'Include'
        values: [ '*' ]
      }
      {
        name: 'instance'
        operator: 'Include'
        values: [ '*' ]
      }
    ]
    query: 'customEvents | where name == "media.recording_failed" | summarize failures = count() by why = tostring(customDimensions.why), instance = cloud_RoleInstance'
  }
  {
    name: 'drain-at-risk'
    displayName: 'Media: scale-in drains at risk'
    description: 'An instance cannot read its scheduled events (IMDS unreachable: a scale-in would delete it without a drain), or could not approve the event it drained for.'
    severity: 3
    windowSize: 'PT15M'
    dimensions: [
      {
        name: 'instance'
        operator: 'Include'
        values: [ '*' ]
      }
    ]
    query: 'customEvents | where name == "media.scheduled_events_unavailable" or (name == "media.scheduled_event_not_approved" and tostring(customDimensions.why) == "failed") | summarize events = count() by instance = cloud_RoleInstance, name'
  }
]

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: '${namePrefix}-ag'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'mediavms'
    enabled: true
    emailReceivers: [
      {
        name: 'operator'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

resource alertRules 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [for rule in rules: {
  name: '${namePrefix}-${rule.name}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: rule.displayName
    description: rule.description
    severity: rule.severity
    enabled: true
    scopes: [ appInsights.id ]
    evaluationFrequency: 'PT5M'
    windowSize: rule.windowSize
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: rule.query
          timeAggregation: 'Count'
          // One alert per value (instance, why): each instance's trouble is its own alert.
          dimensions: rule.dimensions
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: empty(alertEmail) ? [] : [ actionGroup.id ]
    }
  }
}]

output autoscaleName string = autoscale.name
output workbookId string = workbook.id
output alertRuleNames array = [for (rule, i) in rules: alertRules[i].name]
