// rebuilder on Azure: `azd up` deploys this (subscription scope: it creates its resource group).
//
// - a Function App on Flex Consumption (Python 3.11) with one user-assigned identity, behind App
//   Service Authentication (Microsoft Entra ID, the app registration's roles Ledger.Read,
//   Rebuild.Request, Rebuild.Admin);
// - storage with shared keys off: the host account (identity-based AzureWebJobsStorage__*) and the
//   ledger account (Table Data Contributor for the app alone);
// - Application Insights with identity-based ingestion;
// - custom roles with the exact actions needed, assigned where the resources are (modules/roles.bicep);
// - the subscription's Event Grid system topic (or the existing one), an optional outbound notices
//   topic; the event subscription to on_resource_event is made by the postdeploy hook.
//
// Every deployment name is the environment's (prefix): two azd environments in one subscription share
// the subscription's deployments and the template and gallery resource groups, and a fixed name would
// let the second overwrite the first's.
//
// Under azd, the role assignments in the template and gallery resource groups are made by the
// preprovision hook (infra/access.bicep, with the identities and the custom roles, retried until
// Azure has replicated the new role definitions), not here: `azd down` deletes every resource group
// this deployment holds a resource in, and those groups are yours (main.parameters.json sets
// assignInSharedGroups false). Deployed on its own (az deployment sub create), this file makes them.
targetScope = 'subscription'

@minLength(1)
@maxLength(20)
@description('azd environment name: names the resource group and prefixes every resource.')
param environmentName string

@description('Azure region of the app and its resources.')
param location string

@description('Resource groups (in this subscription) whose image templates rebuilder manages.')
param templateResourceGroups array

@description('Resource group of the Compute Gallery those templates distribute to.')
param galleryResourceGroup string

@description('Client id of the app registration callers get tokens for (created by the preprovision hook).')
param authClientId string

@description('Name of an existing Event Grid system topic for this subscription (one is allowed); empty: create one.')
param existingSystemTopicName string = ''

@description('Resource group of that existing system topic.')
param existingSystemTopicResourceGroup string = ''

@description('Create the outbound notices topic (CloudEvents out, Rebuilder.ImagePublished routed back).')
param createNoticesTopic bool = true

@description('Make the role assignments in the template and gallery resource groups here; false when the preprovision hook makes them (infra/access.bicep), so that azd down never deletes those groups.')
param assignInSharedGroups bool = true

@description('NCRONTAB (six fields) of the source watch.')
param watchSchedule string = '0 */15 * * * *'

@description('NCRONTAB (six fields) of the build reconciler.')
param reconcileSchedule string = '0 */5 * * * *'

@description('REBUILDER_CLOUD: the cloud this is deployed to, unless told otherwise.')
@allowed([
  'AzureCloud'
  'AzureUSGovernment'
  'AzureChinaCloud'
])
param cloud string = environment().name

param tablePrefix string = 'rebuilder'
param watchConcurrency int = 8
param maxConcurrentRuns int = 10
param maxRunAttempts int = 3
param retryBackoffSeconds int = 300
param runTimeoutMinutes int = 480
param repairLimit int = 2
param disableAfterFailures int = 3
param maxTemporaryRefusals int = 10
@description('Rebuild policies every managed template has unless its tags say otherwise (README "Rebuild policies"); empty = off')
param defaultPatchDay string = ''
param defaultMaxAgeDays string = ''
param defaultWindow string = ''
param defaultCooldownHours string = ''
param defaultMinReleaseAgeHours string = ''
param armRetryTotal int = 6
param armRetryBackoffSeconds int = 2
param armPollingIntervalSeconds int = 15
param armTimeoutSeconds int = 60
param readRole string = 'Ledger.Read'
param requestRole string = 'Rebuild.Request'
param adminRole string = 'Rebuild.Admin'

var prefix = toLower(environmentName)
var tags = {
  'azd-env-name': environmentName
  application: 'rebuilder'
}
var systemTopicName = empty(existingSystemTopicName) ? '${prefix}-subscription-events' : existingSystemTopicName

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${prefix}'
  location: location
  tags: tags
}

module identities 'modules/identities.bicep' = {
  name: '${prefix}-identities'
  scope: rg
  params: {
    location: location
    prefix: prefix
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: '${prefix}-storage'
  scope: rg
  params: {
    location: location
    prefix: prefix
    tags: tags
    appPrincipalId: identities.outputs.appPrincipalId
    tablePrefix: tablePrefix
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: '${prefix}-monitoring'
  scope: rg
  params: {
    location: location
    prefix: prefix
    tags: tags
    appPrincipalId: identities.outputs.appPrincipalId
  }
}

module notices 'modules/outbound-topic.bicep' = if (createNoticesTopic) {
  name: '${prefix}-notices'
  scope: rg
  params: {
    location: location
    prefix: prefix
    tags: tags
    appPrincipalId: identities.outputs.appPrincipalId
    hostAccountName: storage.outputs.hostAccountName
    deadLetterContainer: storage.outputs.deadLetterContainer
  }
}

module systemTopic 'modules/systemtopic.bicep' = {
  name: '${prefix}-system-topic'
  scope: rg
  params: {
    tags: tags
    name: systemTopicName
    create: empty(existingSystemTopicName)
    existingResourceGroup: empty(existingSystemTopicResourceGroup) ? rg.name : existingSystemTopicResourceGroup
    hostAccountName: storage.outputs.hostAccountName
    deadLetterContainer: storage.outputs.deadLetterContainer
  }
}

var scopes = [for group in templateResourceGroups: '/subscriptions/${subscription().subscriptionId}/resourceGroups/${group}']
var rebuilderSettings = {
  REBUILDER_SCOPES: join(scopes, ',')
  REBUILDER_LEDGER: storage.outputs.ledgerEndpoint
  REBUILDER_TABLE_PREFIX: tablePrefix
  REBUILDER_CLOUD: cloud
  REBUILDER_WATCH_SCHEDULE: watchSchedule
  REBUILDER_RECONCILE_SCHEDULE: reconcileSchedule
  REBUILDER_ARM_RETRY_TOTAL: string(armRetryTotal)
  REBUILDER_ARM_RETRY_BACKOFF_SECONDS: string(armRetryBackoffSeconds)
  REBUILDER_ARM_POLLING_INTERVAL_SECONDS: string(armPollingIntervalSeconds)
  REBUILDER_ARM_TIMEOUT_SECONDS: string(armTimeoutSeconds)
  REBUILDER_WATCH_CONCURRENCY: string(watchConcurrency)
  REBUILDER_MAX_CONCURRENT_RUNS: string(maxConcurrentRuns)
  REBUILDER_MAX_RUN_ATTEMPTS: string(maxRunAttempts)
  REBUILDER_RETRY_BACKOFF_SECONDS: string(retryBackoffSeconds)
  REBUILDER_RUN_TIMEOUT_MINUTES: string(runTimeoutMinutes)
  REBUILDER_REPAIR_LIMIT: string(repairLimit)
  REBUILDER_DISABLE_AFTER_FAILURES: string(disableAfterFailures)
  REBUILDER_MAX_TEMPORARY_REFUSALS: string(maxTemporaryRefusals)
  REBUILDER_DEFAULT_PATCH_DAY: defaultPatchDay
  REBUILDER_DEFAULT_MAX_AGE_DAYS: defaultMaxAgeDays
  REBUILDER_DEFAULT_WINDOW: defaultWindow
  REBUILDER_DEFAULT_COOLDOWN_HOURS: defaultCooldownHours
  REBUILDER_DEFAULT_MIN_RELEASE_AGE_HOURS: defaultMinReleaseAgeHours
  REBUILDER_EVENTS_TOPIC: createNoticesTopic ? notices.outputs.endpoint : ''
  REBUILDER_READ_ROLE: readRole
  REBUILDER_REQUEST_ROLE: requestRole
  REBUILDER_ADMIN_ROLE: adminRole
}

module app 'modules/functionapp.bicep' = {
  name: '${prefix}-functionapp'
  scope: rg
  params: {
    location: location
    prefix: prefix
    tags: tags
    appIdentityId: identities.outputs.appIdentityId
    appClientId: identities.outputs.appClientId
    hostBlobEndpoint: storage.outputs.hostBlobEndpoint
    hostQueueEndpoint: storage.outputs.hostQueueEndpoint
    hostTableEndpoint: storage.outputs.hostTableEndpoint
    deploymentContainer: storage.outputs.deploymentContainer
    insightsConnectionString: monitoring.outputs.connectionString
    rebuilderSettings: rebuilderSettings
    authClientId: authClientId
  }
}

module roles 'modules/roles.bicep' = {
  name: '${prefix}-roles'
  params: {
    prefix: prefix
    templateResourceGroups: templateResourceGroups
    galleryResourceGroup: galleryResourceGroup
    deploymentResourceGroup: rg.name
    appPrincipalId: identities.outputs.appPrincipalId
  }
}

// The assignments in the template and gallery resource groups (infra/access.bicep has the same three).
module templateOperator 'modules/assignment.bicep' = [for group in templateResourceGroups: if (assignInSharedGroups) {
  name: '${prefix}-template-operator-${uniqueString(group)}'
  scope: resourceGroup(group)
  params: {
    roleDefinitionId: roles.outputs.templateOperatorId
    principalId: identities.outputs.appPrincipalId
    description: 'rebuilder follows, runs and recreates the image templates here.'
  }
}]

module galleryReplicator 'modules/assignment.bicep' = if (assignInSharedGroups) {
  name: '${prefix}-gallery-replicator'
  scope: resourceGroup(galleryResourceGroup)
  params: {
    roleDefinitionId: roles.outputs.galleryReplicatorId
    principalId: identities.outputs.appPrincipalId
    description: 'rebuilder reads replication and repairs failed regions in this gallery.'
  }
}

module imageBuilder 'modules/assignment.bicep' = if (assignInSharedGroups) {
  name: '${prefix}-image-builder'
  scope: resourceGroup(galleryResourceGroup)
  params: {
    roleDefinitionId: roles.outputs.imageBuilderId
    principalId: identities.outputs.aibPrincipalId
    description: 'Azure VM Image Builder builds from and distributes into this gallery.'
  }
}

module identityAssigner 'modules/identity-assignment.bicep' = {
  name: '${prefix}-identity-assigner'
  scope: rg
  params: {
    aibIdentityName: identities.outputs.aibIdentityName
    roleDefinitionId: roles.outputs.identityAssignerId
    appPrincipalId: identities.outputs.appPrincipalId
  }
}

output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = app.outputs.appName
output AZURE_FUNCTION_APP_ID string = app.outputs.appId
output AZURE_FUNCTION_APP_URL string = 'https://${app.outputs.defaultHostName}'
output AIB_IDENTITY_ID string = identities.outputs.aibIdentityId
output SYSTEM_TOPIC_NAME string = systemTopic.outputs.name
output SYSTEM_TOPIC_RESOURCE_GROUP string = systemTopic.outputs.resourceGroup
output NOTICES_TOPIC_NAME string = createNoticesTopic ? notices.outputs.name : ''
output DEAD_LETTER_ACCOUNT_ID string = storage.outputs.hostAccountId
output DEAD_LETTER_CONTAINER string = storage.outputs.deadLetterContainer
output LEDGER_ACCOUNT_NAME string = storage.outputs.ledgerAccountName
output LEDGER_ENDPOINT string = storage.outputs.ledgerEndpoint
