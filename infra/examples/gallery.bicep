// The example estate's Compute Gallery and image definitions (examples/main.bicep deploys it into the
// gallery's resource group).

param location string
param galleryName string

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

output ubuntuImageId string = ubuntuImage.id
output windowsImageId string = windowsImage.id
output appImageId string = appImage.id
