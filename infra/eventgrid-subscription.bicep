// Deployed by the azd postdeploy hook (infra/hooks/postdeploy.sh), once the function exists: Event
// Grid validates an Azure Function endpoint when the subscription is created, so it cannot be part of
// the main deployment. Deployed into the system topic's resource group.
//
// Gallery image version writes reach on_resource_event (filtered on the operation, so nothing else
// is delivered), retried for a day, and dead-lettered to a storage container when they cannot be.
// With the outbound notices topic, rebuilder's own Rebuilder.ImagePublished comes back too, so a
// parent's new image re-plans its children at once.
//
// The names are the environment's: the system topic is the subscription's one and may be shared by
// several azd environments, each with its own subscription on it.

@minLength(1)
@maxLength(20)
@description('azd environment name (AZURE_ENV_NAME): names the event subscriptions and the nested deployment.')
param environmentName string

@description('The subscription\'s Event Grid system topic (its resource group is this deployment\'s).')
param systemTopicName string

@description('Resource id of the Function App.')
param functionAppId string

@description('Resource id of the storage account holding the dead-letter container.')
param deadLetterAccountId string

param deadLetterContainer string = 'eventgrid-deadletter'

@description('The outbound notices topic, or empty.')
param noticesTopicName string = ''

@description('Resource group of the notices topic.')
param noticesTopicResourceGroup string = resourceGroup().name

var prefix = toLower(environmentName)
var functionId = '${functionAppId}/functions/on_resource_event'
var retry = {
  maxDeliveryAttempts: 30
  eventTimeToLiveInMinutes: 1440
}
var deadLetter = {
  identity: {
    type: 'SystemAssigned'
  }
  deadLetterDestination: {
    endpointType: 'StorageBlob'
    properties: {
      resourceId: deadLetterAccountId
      blobContainerName: deadLetterContainer
    }
  }
}

resource topic 'Microsoft.EventGrid/systemTopics@2025-02-15' existing = {
  name: systemTopicName
}

resource galleryWrites 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15' = {
  parent: topic
  name: '${prefix}-gallery-version-writes'
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: functionId
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: [
        'Microsoft.Resources.ResourceWriteSuccess'
      ]
      advancedFilters: [
        {
          operatorType: 'StringIn'
          key: 'data.operationName'
          values: [
            'Microsoft.Compute/galleries/images/versions/write'
          ]
        }
      ]
    }
    retryPolicy: retry
    deadLetterWithResourceIdentity: deadLetter
  }
}

resource notices 'Microsoft.EventGrid/topics@2025-02-15' existing = if (!empty(noticesTopicName)) {
  name: empty(noticesTopicName) ? 'none' : noticesTopicName
  scope: resourceGroup(noticesTopicResourceGroup)
}

module published 'modules/notices-subscription.bicep' = if (!empty(noticesTopicName)) {
  name: '${prefix}-image-published'
  scope: resourceGroup(noticesTopicResourceGroup)
  params: {
    name: '${prefix}-image-published'
    topicName: noticesTopicName
    functionId: functionId
    deadLetterAccountId: deadLetterAccountId
    deadLetterContainer: deadLetterContainer
  }
}

output galleryWritesSubscription string = galleryWrites.name
output noticesTopic string = empty(noticesTopicName) ? '' : notices.name
