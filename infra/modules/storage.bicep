// Storage, identity-based only: shared keys are off on both accounts, so nothing holds a key.
// - the host account: the Functions host (AzureWebJobsStorage__*: timers' leases), the Flex
//   Consumption deployment package, and the container Event Grid dead-letters undeliverable events to;
// - the ledger account: rebuilder's append-only ledger tables, writable by the app's identity alone.

param location string
param prefix string
param tags object = {}

@description('Principal id of the Function App identity.')
param appPrincipalId string

@description('Prefix of the ledger tables (REBUILDER_TABLE_PREFIX).')
param tablePrefix string = 'rebuilder'

// Storage names are global, 3-24 lowercase letters and digits: a short prefix, then the unique part whole.
var short = take(toLower(replace(prefix, '-', '')), 5)
var hostName = '${short}host${uniqueString(resourceGroup().id)}'
var ledgerName = '${short}ledger${uniqueString(resourceGroup().id)}'
var deploymentContainer = 'app-package'
var deadLetterContainer = 'eventgrid-deadletter'

resource host 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: Flex Consumption without network integration reaches storage over its public endpoint; every request is Entra ID-authenticated (shared keys off)
  // checkov:skip=CKV_AZURE_59: reached over the public endpoint, but never anonymously: allowBlobPublicAccess false and shared keys off
  // checkov:skip=CKV_AZURE_43: the name is computed: up to 5 prefix letters, a kind, then uniqueString(): at most 24 lowercase letters and digits
  // checkov:skip=CKV_AZURE_206: holds only the host's leases, the deployment package and dead letters, all rewritten by the next deploy: locally redundant is enough
  name: hostName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource blobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: host
  name: 'default'
}

resource package 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobs
  name: deploymentContainer
  properties: {
    publicAccess: 'None'
  }
}

resource deadLetters 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobs
  name: deadLetterContainer
  properties: {
    publicAccess: 'None'
  }
}

resource ledger 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: Flex Consumption without network integration reaches storage over its public endpoint; every request is Entra ID-authenticated (shared keys off)
  // checkov:skip=CKV_AZURE_59: reached over the public endpoint, but never anonymously: allowBlobPublicAccess false and shared keys off
  // checkov:skip=CKV_AZURE_43: the name is computed: up to 5 prefix letters, a kind, then uniqueString(): at most 24 lowercase letters and digits
  name: ledgerName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_GZRS' // the audit trail survives the loss of a zone, and of a region
  }
  properties: {
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

// The ledger's tables (rebuilder/adapters/ledger_entities.py has the key layout): builds spread over
// 16 tables by template key, the template rows, every source version seen, the history index.
var shards = [
  '0'
  '1'
  '2'
  '3'
  '4'
  '5'
  '6'
  '7'
  '8'
  '9'
  'a'
  'b'
  'c'
  'd'
  'e'
  'f'
]
var kinds = [
  'templates'
  'sources'
  'history'
]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: ledger
  name: 'default'
}

resource buildTables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [for shard in shards: {
  parent: tableService
  name: '${tablePrefix}builds${shard}'
}]

resource ledgerTablesByKind 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [for kind in kinds: {
  parent: tableService
  name: '${tablePrefix}${kind}'
}]

// Storage Blob Data Owner on the host account: the Functions host's leases and the deployment package.
resource hostBlobs 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(host.id, appPrincipalId, 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b')
  scope: host
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b')
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Storage Table Data Contributor on the ledger account, for the app alone (readers use the API).
resource ledgerTables 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(ledger.id, appPrincipalId, '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3')
  scope: ledger
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3')
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output hostAccountName string = host.name
output hostAccountId string = host.id
output hostBlobEndpoint string = host.properties.primaryEndpoints.blob
output hostQueueEndpoint string = host.properties.primaryEndpoints.queue
output hostTableEndpoint string = host.properties.primaryEndpoints.table
output deploymentContainer string = deploymentContainer
output deadLetterContainer string = deadLetterContainer
output ledgerEndpoint string = ledger.properties.primaryEndpoints.table
output ledgerAccountName string = ledger.name
