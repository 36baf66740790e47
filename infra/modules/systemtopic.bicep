// The Event Grid system topic on the subscription (Azure allows one per subscription and topic type:
// main.bicep reuses an existing one when told to). Its system identity may write dead letters into
// the one container meant for them.

param location string = 'global'
param tags object = {}

@description('Name of the topic to create (when reuse is off).')
param name string

@description('True: create the topic here; false: reuse `name` in `existingResourceGroup`.')
param create bool = true

@description('Resource group of the topic being reused.')
param existingResourceGroup string = resourceGroup().name

param hostAccountName string
param deadLetterContainer string

resource created 'Microsoft.EventGrid/systemTopics@2025-02-15' = if (create) {
  name: name
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: subscription().id
    topicType: 'Microsoft.Resources.Subscriptions'
  }
}

resource reused 'Microsoft.EventGrid/systemTopics@2025-02-15' existing = if (!create) {
  name: name
  scope: resourceGroup(existingResourceGroup)
}

resource host 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: hostAccountName
}

resource blobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: host
  name: 'default'
}

resource container 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobs
  name: deadLetterContainer
}

// Storage Blob Data Contributor on the dead-letter container only: undeliverable events land there.
resource deadLetterWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(container.id, name, 'ba92f5b4-2d11-453d-a403-e96b0029c9fe')
  scope: container
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'ba92f5b4-2d11-453d-a403-e96b0029c9fe')
    principalId: create ? created.identity.principalId : reused.identity.principalId
    principalType: 'ServicePrincipal'
    description: 'Event Grid dead-letters events the function could not take.'
  }
}

output name string = name
output resourceGroup string = create ? resourceGroup().name : existingResourceGroup
