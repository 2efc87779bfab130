// An Azure Monitor workbook over the bot's telemetry: calls per hour, answer latency, outcomes, IVR drop-off
// by node, transfer outcomes, failures by Graph status/code and result code. The queries are in
// workbook-calls.json (event names and fields: docs/monitoring.md); tests/test_infra_bicep.py checks them.

param location string
param tags object
param applicationInsightsId string
param displayName string = 'Teams calling bot: calls'

var serialized = replace(loadTextContent('workbook-calls.json'), '__APPLICATION_INSIGHTS_ID__', applicationInsightsId)

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  // A workbook's name must be a GUID; stable per component so re-provisioning updates it in place.
  name: guid(applicationInsightsId, 'calls-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    sourceId: applicationInsightsId
    serializedData: serialized
    version: 'Notebook/1.0'
  }
}

output workbookId string = workbook.id
