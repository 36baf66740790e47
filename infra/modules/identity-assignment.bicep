// The app may assign the AIB identity — this one identity, not every identity in the resource group.

param aibIdentityName string
param roleDefinitionId string
param appPrincipalId string

resource aib 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' existing = {
  name: aibIdentityName
}

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(aib.id, appPrincipalId, roleDefinitionId)
  scope: aib
  properties: {
    roleDefinitionId: roleDefinitionId
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Recreating a pinned template names the AIB identity: the caller must be allowed to assign it.'
  }
}
