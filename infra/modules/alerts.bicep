// Log alert rules over the bot's Application Insights data (classic table names: the rules are scoped to
// the component). Each fires when its query returns a row in the window; with alertEmail set they notify an
// action group, otherwise they only show in Azure Monitor.

param location string
param tags object
param namePrefix string
param applicationInsightsId string

@description('Email address for alert notifications. Empty: no action group, the alerts show in Azure Monitor only.')
param alertEmail string = ''

@description('Answers slower than this (p95 over the window, ms) raise an alert: Graph drops calls not answered within 15 s.')
param answerLatencyThresholdMs int = 8000

var rules = [
  {
    name: 'answer-failures'
    displayName: 'Calls: answer failed'
    description: 'Graph refused or failed an answer of an incoming call (call.action_failed, action answer); the caller heard nothing.'
    severity: 1
    query: 'customEvents | where name == "call.action_failed" and tostring(customDimensions.action) == "answer"'
  }
  {
    name: 'webhook-5xx'
    displayName: 'Calls: webhook 5xx'
    description: 'POST /api/calls answered 5xx (503 not_configured: settings are wrong; 500: a bug). Graph retries, then drops the call.'
    severity: 1
    query: 'requests | where (name == "calls" or url endswith "/api/calls") and toint(resultCode) >= 500'
  }
  {
    name: 'orchestration-failures'
    displayName: 'Calls: call_session orchestration failed'
    description: 'A Durable orchestration ended Failed: that call stopped following its flow.'
    severity: 2
    query: 'traces | where tostring(customDimensions.Category) startswith "Host.Triggers.DurableTask" and tostring(customDimensions.prop__state) == "Failed" and tostring(customDimensions.prop__functionType) == "Orchestrator"'
  }
  {
    name: 'flow-unavailable'
    displayName: 'Calls: flow missing or invalid'
    description: 'A call was rejected busy because its flow file is missing or invalid (call.flow_unavailable).'
    severity: 1
    query: 'customEvents | where name == "call.flow_unavailable"'
  }
  {
    name: 'calls-not-ended'
    displayName: 'Calls: Graph kept a call the bot let go of'
    description: 'A call never became established (call.not_established), or Graph refused to hang it up (call.hangup_failed): the bot gave up on it after bounded waits.'
    severity: 2
    query: 'customEvents | where name in ("call.not_established", "call.hangup_failed")'
  }
  {
    name: 'answer-latency'
    displayName: 'Calls: slow answers'
    description: 'p95 answer latency is close to Graph\'s 15 s deadline (cold start, slow Graph, Durable backend latency).'
    severity: 2
    query: 'customEvents | where name == "call.answered" | summarize p95 = percentile(todouble(customDimensions.latency_ms), 95) | where p95 > ${answerLatencyThresholdMs}'
  }
]

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: '${namePrefix}-ag'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'callsbot'
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
    scopes: [ applicationInsightsId ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: rule.query
          timeAggregation: 'Count'
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

output alertRuleNames array = [for (rule, i) in rules: alertRules[i].name]
