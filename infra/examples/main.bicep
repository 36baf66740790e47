// An example estate for rebuilder to manage, deployed on its own into the templates' resource group
// (where rebuilder may run templates) with the gallery in the gallery's resource group (where AIB
// may publish): a Compute Gallery with three image definitions; an Ubuntu 22.04 Gen2 baseline following `latest`,
// a Windows Server 2022 baseline pinned to one version (rebuilder recreates it with the next), both
// distributing to the gallery in three regions and tagged for rebuilder; and a child template built on
// the Ubuntu baseline's gallery image. Image Builder runs as the AIB identity from infra/main.bicep.
//
//   az deployment group create -g <template resource group> -f infra/examples/main.bicep \
//     -p galleryResourceGroup=<gallery resource group> -p aibIdentityId=<AIB_IDENTITY_ID output of azd>

@description('Region of the gallery and the templates (a template builds in its own location).')
param location string = resourceGroup().location

@description('Regions every image is replicated to.')
@minLength(1)
param regions array = [
  'westeurope'
  'northeurope'
  'swedencentral'
]

@description('Resource id of the Image Builder identity (output AIB_IDENTITY_ID of the rebuilder deployment).')
param aibIdentityId string

@description('The Windows Server 2022 version the pinned baseline starts from.')
param windowsVersion string = '20348.2849.241106'

param galleryName string = 'acg_golden'

@description('Resource group of the gallery (REBUILDER_GALLERY_RESOURCE_GROUP of the rebuilder deployment).')
param galleryResourceGroup string

var tagged = {
  'golden-image-rebuild': 'auto'
}
var targets = [for region in regions: {
  name: region
  replicaCount: 1
  storageAccountType: 'Standard_ZRS'
}]
var identity = {
  type: 'UserAssigned'
  userAssignedIdentities: {
    '${aibIdentityId}': {}
  }
}

module images 'gallery.bicep' = {
  name: 'example-gallery'
  scope: resourceGroup(galleryResourceGroup)
  params: {
    location: location
    galleryName: galleryName
  }
}

resource ubuntu 'Microsoft.VirtualMachineImages/imageTemplates@2024-02-01' = {
  name: 'ubuntu2204-golden'
  location: location
  tags: tagged
  identity: identity
  properties: {
    buildTimeoutInMinutes: 120
    vmProfile: {
      vmSize: 'Standard_D2s_v5'
      osDiskSizeGB: 30
    }
    source: {
      type: 'PlatformImage'
      publisher: 'Canonical'
      offer: '0001-com-ubuntu-server-jammy'
      sku: '22_04-lts-gen2'
      version: 'latest'
    }
    customize: [
      {
        type: 'Shell'
        name: 'patch'
        inline: [
          'sudo apt-get update'
          'sudo DEBIAN_FRONTEND=noninteractive apt-get -y upgrade'
        ]
      }
    ]
    distribute: [
      {
        type: 'SharedImage'
        galleryImageId: images.outputs.ubuntuImageId
        runOutputName: 'ubuntu2204-golden'
        targetRegions: targets
      }
    ]
  }
}

resource windows 'Microsoft.VirtualMachineImages/imageTemplates@2024-02-01' = {
  name: 'winserver2022-golden'
  location: location
  tags: tagged
  identity: identity
  properties: {
    buildTimeoutInMinutes: 240
    vmProfile: {
      vmSize: 'Standard_D4s_v5'
      osDiskSizeGB: 127
    }
    source: {
      type: 'PlatformImage'
      publisher: 'MicrosoftWindowsServer'
      offer: 'WindowsServer'
      sku: '2022-datacenter-azure-edition'
      version: windowsVersion // pinned: rebuilder recreates the template with each new version
    }
    customize: [
      {
        type: 'WindowsUpdate'
        searchCriteria: 'IsInstalled=0'
        filters: [
          'exclude:$_.Title -like \'*Preview*\''
          'include:$true'
        ]
        updateLimit: 40
      }
    ]
    distribute: [
      {
        type: 'SharedImage'
        galleryImageId: images.outputs.windowsImageId
        runOutputName: 'winserver2022-golden'
        targetRegions: targets
      }
    ]
  }
}

resource child 'Microsoft.VirtualMachineImages/imageTemplates@2024-02-01' = {
  name: 'app-ubuntu2204'
  location: location
  tags: tagged
  identity: identity
  properties: {
    buildTimeoutInMinutes: 90
    vmProfile: {
      vmSize: 'Standard_D2s_v5'
    }
    source: {
      type: 'SharedImageVersion'
      imageVersionId: '${images.outputs.ubuntuImageId}/versions/latest' // built on the Ubuntu baseline's newest image
    }
    customize: [
      {
        type: 'Shell'
        name: 'app'
        inline: [
          'sudo apt-get update'
          'sudo DEBIAN_FRONTEND=noninteractive apt-get -y install nginx'
        ]
      }
    ]
    distribute: [
      {
        type: 'SharedImage'
        galleryImageId: images.outputs.appImageId
        runOutputName: 'app-ubuntu2204'
        targetRegions: targets
      }
    ]
  }
  dependsOn: [
    ubuntu
  ]
}

output templates array = [
  ubuntu.name
  windows.name
  child.name
]
