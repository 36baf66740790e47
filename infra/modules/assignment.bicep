// One role assignment on a resource group (deployed with that resource group as its scope).

param roleDefinitionId string
param principalId string
param description string

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, principalId, roleDefinitionId)
  properties: {
    roleDefinitionId: roleDefinitionId
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: description
  }
}
