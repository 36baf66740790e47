// An example estate for rebuilder to manage (deployed on its own, into the gallery's resource group):
// a Compute Gallery with three image definitions; an Ubuntu 22.04 Gen2 baseline following `latest`,
// a Windows Server 2022 baseline pinned to one version (rebuilder recreates it with the next), both
// distributing to the gallery in three regions and tagged for rebuilder; and a child template built on
// the Ubuntu baseline's gallery image. Image Builder runs as the AIB identity from infra/main.bicep.
//
//   az deployment group create -g <gallery resource group> -f infra/examples/main.bicep \
//     -p aibIdentityId=<AIB_IDENTITY_ID output of azd> -p regions='["westeurope","northeurope","swedencentral"]'

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

resource gallery 'Microsoft.Compute/galleries@2024-03-03' = {
  name: galleryName
  location: location
  properties: {
    description: 'Golden images, rebuilt by rebuilder'
  }
}

resource ubuntuImage 'Microsoft.Compute/galleries/images@2024-03-03' = {
  parent: gallery
  name: 'ubuntu-22.04-gen2'
  location: location
  properties: {
    osType: 'Linux'
    osState: 'Generalized'
    hyperVGeneration: 'V2'
    identifier: {
      publisher: 'contoso'
      offer: 'golden-ubuntu'
      sku: '22.04-gen2'
    }
  }
}

resource windowsImage 'Microsoft.Compute/galleries/images@2024-03-03' = {
  parent: gallery
  name: 'winserver-2022'
  location: location
  properties: {
    osType: 'Windows'
    osState: 'Generalized'
    hyperVGeneration: 'V2'
    identifier: {
      publisher: 'contoso'
      offer: 'golden-windows'
      sku: '2022-azure-edition'
    }
  }
}

resource appImage 'Microsoft.Compute/galleries/images@2024-03-03' = {
  parent: gallery
  name: 'app-ubuntu-22.04'
  location: location
  properties: {
    osType: 'Linux'
    osState: 'Generalized'
    hyperVGeneration: 'V2'
    identifier: {
      publisher: 'contoso'
      offer: 'app-ubuntu'
      sku: '22.04-gen2'
    }
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
        galleryImageId: ubuntuImage.id
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
        galleryImageId: windowsImage.id
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
      imageVersionId: '${ubuntuImage.id}/versions/latest' // built on the Ubuntu baseline's newest image
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
        galleryImageId: appImage.id
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
