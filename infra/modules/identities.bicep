// Two user-assigned identities: the Function App's (what rebuilder does in Azure) and Image Builder's
// (what AIB does while it builds and distributes). Kept apart so each holds only its own rights.

@description('Azure region of the identities.')
param location string

@description('Name prefix of every resource.')
param prefix string

param tags object = {}

resource app 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${prefix}-app-id'
  location: location
  tags: tags
}

resource aib 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${prefix}-aib-id'
  location: location
  tags: tags
}

output appIdentityId string = app.id
output appPrincipalId string = app.properties.principalId
output appClientId string = app.properties.clientId
output aibIdentityId string = aib.id
output aibIdentityName string = aib.name
output aibPrincipalId string = aib.properties.principalId
