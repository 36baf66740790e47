// The custom roles, each the exact actions it needs (why, next to each action), and the one role
// assignment that must be at subscription scope: Marketplace versions are a subscription-level
// provider resource (Microsoft.Compute/locations/...), which no resource group contains.
// Every other assignment is made where the resources are: the template and gallery resource groups,
// the AIB identity itself.
targetScope = 'subscription'

param prefix string

@description('Resource groups where managed image templates live (the app runs and recreates them there).')
param templateResourceGroups array

@description('Resource group of the Compute Gallery the templates distribute to.')
param galleryResourceGroup string

@description('Resource group of this deployment (where the AIB identity lives).')
param deploymentResourceGroup string

@description('Principal id of the Function App identity.')
param appPrincipalId string

var templateScopes = [for rg in templateResourceGroups: '${subscription().id}/resourceGroups/${rg}']
var galleryScope = '${subscription().id}/resourceGroups/${galleryResourceGroup}'
var deploymentScope = '${subscription().id}/resourceGroups/${deploymentResourceGroup}'

resource templateOperator 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, prefix, 'rebuilder-template-operator')
  properties: {
    roleName: '${prefix} rebuilder template operator'
    description: 'Discover, follow, run, cancel and recreate Azure VM Image Builder templates.'
    type: 'CustomRole'
    assignableScopes: templateScopes
    permissions: [
      {
        actions: [
          'Microsoft.VirtualMachineImages/imageTemplates/read' // discover tagged templates, read lastRunStatus
          'Microsoft.VirtualMachineImages/imageTemplates/runOutputs/read' // the gallery versions a run published
          'Microsoft.VirtualMachineImages/imageTemplates/run/action' // start a rebuild
          'Microsoft.VirtualMachineImages/imageTemplates/cancel/action' // cancel a run that overran its timeout
          'Microsoft.VirtualMachineImages/imageTemplates/write' // recreate a pinned template with the new version
          'Microsoft.VirtualMachineImages/imageTemplates/delete' // templates are immutable: delete before recreating
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
  }
}

resource galleryReplicator 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, prefix, 'rebuilder-gallery-replicator')
  properties: {
    roleName: '${prefix} rebuilder gallery replicator'
    description: 'Read gallery images and their replication, and re-apply a version\'s target regions.'
    type: 'CustomRole'
    assignableScopes: [
      galleryScope
    ]
    permissions: [
      {
        actions: [
          'Microsoft.Compute/galleries/read' // the gallery a template distributes to
          'Microsoft.Compute/galleries/images/read' // image definitions: children's sources
          'Microsoft.Compute/galleries/images/versions/read' // versions and per-region replication status
          'Microsoft.Compute/galleries/images/versions/write' // repair: re-apply target regions, no rebuild
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
  }
}

resource marketplaceReader 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, prefix, 'rebuilder-marketplace-reader')
  properties: {
    roleName: '${prefix} rebuilder marketplace reader'
    description: 'List Marketplace image versions per location (a subscription-level resource).'
    type: 'CustomRole'
    assignableScopes: [
      subscription().id
    ]
    permissions: [
      {
        actions: [
          'Microsoft.Compute/locations/publishers/artifacttypes/offers/skus/versions/read' // new patched versions
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
  }
}

resource identityAssigner 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, prefix, 'rebuilder-identity-assigner')
  properties: {
    roleName: '${prefix} rebuilder AIB identity assigner'
    description: 'Assign the Image Builder identity to a template being recreated (and nothing else).'
    type: 'CustomRole'
    assignableScopes: [
      deploymentScope
    ]
    permissions: [
      {
        actions: [
          'Microsoft.ManagedIdentity/userAssignedIdentities/assign/action' // a recreated template names the AIB identity
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
  }
}

resource imageBuilder 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, prefix, 'rebuilder-image-builder')
  properties: {
    roleName: '${prefix} rebuilder image builder'
    description: 'What Azure VM Image Builder\'s identity needs to build from and distribute into the gallery.'
    type: 'CustomRole'
    assignableScopes: [
      galleryScope
    ]
    permissions: [
      {
        actions: [
          'Microsoft.Compute/galleries/read' // the distribution target
          'Microsoft.Compute/galleries/images/read' // the image definition it publishes to, or a child's source
          'Microsoft.Compute/galleries/images/versions/read' // a child builds from its parent's version
          'Microsoft.Compute/galleries/images/versions/write' // publish the new version to its target regions
          'Microsoft.Compute/images/read' // the intermediate managed image AIB captures before publishing
          'Microsoft.Compute/images/write' // create that intermediate image
          'Microsoft.Compute/images/delete' // and remove it after distribution
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
  }
}

// The one subscription-scope assignment (see above).
resource marketplace 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(subscription().id, appPrincipalId, 'rebuilder-marketplace-reader')
  properties: {
    roleDefinitionId: marketplaceReader.id
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Marketplace versions are listed at subscription level; no resource group holds them.'
  }
}

output templateOperatorId string = templateOperator.id
output galleryReplicatorId string = galleryReplicator.id
output identityAssignerId string = identityAssigner.id
output imageBuilderId string = imageBuilder.id
