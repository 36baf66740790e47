// Deployed by the azd preprovision hook (infra/hooks/preprovision.sh), before azd provisions
// infra/main.bicep: the environment's resource group, the two identities, the custom roles and the
// role assignments in the template and gallery resource groups.
//
// - First run: Azure replicates a new role definition (and a new identity) with a lag, and an
//   assignment made at once can fail (RoleDefinitionDoesNotExist, PrincipalNotFound). The hook retries
//   this deployment until it succeeds, so the roles exist everywhere before main.bicep assigns the
//   rest; main.bicep then finds every definition and identity as it is here (the same names).
// - `azd down` deletes every resource group azd's deployment holds a resource in. The template and
//   gallery resource groups are yours, so azd's deployment holds nothing in them: these assignments are
//   made here, outside it (main.bicep's assignInSharedGroups is false under azd).
//
// Each declaration is main.bicep's, word for word (tests/infra holds them to it).
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

var prefix = toLower(environmentName)
var tags = {
  'azd-env-name': environmentName
  application: 'rebuilder'
}

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

module templateOperator 'modules/assignment.bicep' = [for group in templateResourceGroups: {
  name: '${prefix}-template-operator-${uniqueString(group)}'
  scope: resourceGroup(group)
  params: {
    roleDefinitionId: roles.outputs.templateOperatorId
    principalId: identities.outputs.appPrincipalId
    description: 'rebuilder follows, runs and recreates the image templates here.'
  }
}]

module galleryReplicator 'modules/assignment.bicep' = {
  name: '${prefix}-gallery-replicator'
  scope: resourceGroup(galleryResourceGroup)
  params: {
    roleDefinitionId: roles.outputs.galleryReplicatorId
    principalId: identities.outputs.appPrincipalId
    description: 'rebuilder reads replication and repairs failed regions in this gallery.'
  }
}

module imageBuilder 'modules/assignment.bicep' = {
  name: '${prefix}-image-builder'
  scope: resourceGroup(galleryResourceGroup)
  params: {
    roleDefinitionId: roles.outputs.imageBuilderId
    principalId: identities.outputs.aibPrincipalId
    description: 'Azure VM Image Builder builds from and distributes into this gallery.'
  }
}

output AZURE_RESOURCE_GROUP string = rg.name
