// Alerting: a nightly job that fails silently is the worst failure here. One action group (email)
// and log search alert rules over Application Insights. They read the one structured log line each
// run writes (shared/jobs/sync.py run_event):
//   mfa_sync_run {"event":"mfa_sync_run","runId":...,"night":...,"status":"completed"|"failed"|"skipped",...}
// and, from the nudge job (issue 5), the same contract:
//   mfa_nudge_run {"event":"mfa_nudge_run","runId":...,"status":"completed"|"failed"|"skipped","failed":<sends that failed>,...}
// In Application Insights these are rows of the traces table (AppTraces in the workspace).
// docs/deploy.md shows the same queries; a test keeps them identical.

param location string
param tags object = {}
param actionGroupName string
param alertNamePrefix string

@description('Where alerts are emailed.')
param alertEmail string

@description('Resource id of the Application Insights component the rules query.')
param applicationInsightsId string

// ==== ALERT QUERIES: BEGIN ====
var syncFailedQuery = '''
let runs = traces
| where message startswith "mfa_sync_run "
| extend run = parse_json(substring(message, strlen("mfa_sync_run ")))
| where tostring(run.status) == "failed"
| project timestamp, source = "sync run failed", runId = tostring(run.runId), detail = tostring(run.error);
let invocations = requests
| where operation_Name == "nightly_sync" and success == false
| project timestamp, source = "nightly_sync invocation failed", runId = "", detail = tostring(resultCode);
union runs, invocations
'''

var staleSyncQuery = '''
traces
| where timestamp > ago(26h)
| where message startswith "mfa_sync_run "
| extend run = parse_json(substring(message, strlen("mfa_sync_run ")))
| where tostring(run.status) == "completed"
| summarize completed = count()
| where completed == 0
'''

var nudgeFailedQuery = '''
traces
| where message startswith "mfa_nudge_run "
| extend run = parse_json(substring(message, strlen("mfa_nudge_run ")))
| where tostring(run.status) == "failed"
| project timestamp, runId = tostring(run.runId), detail = tostring(run.error)
'''

var sendsFailingQuery = '''
traces
| where message startswith "mfa_nudge_run "
| extend run = parse_json(substring(message, strlen("mfa_nudge_run ")))
| summarize failedSends = sum(toint(run.failed)), runsWithFailures = countif(toint(run.failed) > 0)
| where failedSends >= 5 or runsWithFailures >= 2
'''
// ==== ALERT QUERIES: END ====

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: actionGroupName
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'mfamonitor'
    enabled: true
    emailReceivers: [
      {
        name: 'admin'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

var rules = [
  {
    suffix: 'sync-failed'
    displayName: 'MFA monitor: a sync run failed'
    description: 'A nightly sync recorded a failed run (see its error), or the nightly_sync invocation failed before it could record one.'
    severity: 1
    frequency: 'PT15M'
    window: 'PT15M'
    query: syncFailedQuery
  }
  {
    suffix: 'sync-stale'
    displayName: 'MFA monitor: no completed sync for 26 hours'
    description: 'No mfa_sync_run event with status completed in the last 26 hours: the timer is not firing, every run fails or is skipped, or the app is down. Expect it once right after the first deployment, until the first night has run.'
    severity: 1
    frequency: 'PT1H'
    window: 'P2D' // the query narrows it to 26 hours
    query: staleSyncQuery
  }
  {
    suffix: 'nudge-failed'
    displayName: 'MFA monitor: a nudge run failed'
    description: 'A nudge (reminder email) run recorded a failed run.'
    severity: 2
    frequency: 'PT15M'
    window: 'PT15M'
    query: nudgeFailedQuery
  }
  {
    suffix: 'sends-failing'
    displayName: 'MFA monitor: reminder emails keep failing'
    description: 'At least 5 emails failed to send within a day, or two nudge runs in a day had failed sends.'
    severity: 2
    frequency: 'PT1H'
    window: 'P1D'
    query: sendsFailingQuery
  }
]

resource alertRules 'Microsoft.Insights/scheduledQueryRules@2022-06-15' = [
  for rule in rules: {
    name: '${alertNamePrefix}${rule.suffix}'
    location: location
    tags: tags
    kind: 'LogAlert'
    properties: {
      displayName: rule.displayName
      description: rule.description
      severity: rule.severity
      enabled: true
      scopes: [
        applicationInsightsId
      ]
      evaluationFrequency: rule.frequency
      windowSize: rule.window
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
      autoMitigate: true
      actions: {
        actionGroups: [
          actionGroup.id
        ]
      }
    }
  }
]

output actionGroupId string = actionGroup.id
output ruleNames array = [for (rule, i) in rules: alertRules[i].name]
