// The Function App: Flex Consumption, Python 3.11, one user-assigned identity for everything it
// does (storage, ledger, Application Insights, ARM, Event Grid). No keys or secrets in its settings.
// App Service Authentication (Microsoft Entra ID) fronts every route but health: the app trusts the
// caller's identity (X-MS-CLIENT-PRINCIPAL) and app roles only from it.

param location string
param prefix string
param tags object = {}

param appIdentityId string
param appClientId string

@description('The host storage account\'s service endpoints, from its primaryEndpoints: never a hard-coded suffix, so every cloud works.')
param hostBlobEndpoint string
param hostQueueEndpoint string
param hostTableEndpoint string
param deploymentContainer string
param insightsConnectionString string

@description('The rebuilder settings (REBUILDER_*), name → value.')
param rebuilderSettings object

@description('Client id of the app registration that callers get tokens for (its app roles: Ledger.Read, Rebuild.Request, Rebuild.Admin).')
param authClientId string

@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 10

// The host's storage by service URI (not __accountName, which implies the public cloud's
// core.windows.net), with the app's user-assigned identity.
var baseSettings = [
  {
    name: 'AzureWebJobsStorage__blobServiceUri'
    value: hostBlobEndpoint
  }
  {
    name: 'AzureWebJobsStorage__queueServiceUri'
    value: hostQueueEndpoint
  }
  {
    name: 'AzureWebJobsStorage__tableServiceUri'
    value: hostTableEndpoint
  }
  {
    name: 'AzureWebJobsStorage__credential'
    value: 'managedidentity'
  }
  {
    name: 'AzureWebJobsStorage__clientId'
    value: appClientId
  }
  {
    name: 'AZURE_CLIENT_ID' // DefaultAzureCredential: which user-assigned identity is the app's
    value: appClientId
  }
  {
    name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
    value: insightsConnectionString
  }
  {
    name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
    value: 'ClientId=${appClientId};Authorization=AAD'
  }
]
var rebuilder = [for setting in items(rebuilderSettings): {
  name: setting.key
  value: setting.value
}]

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: a Flex Consumption plan; zone redundancy is a regional option of Flex, left to the operator
  name: '${prefix}-plan'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222: Event Grid and on-call engineers call it over the public endpoint; App Service Authentication and function keys guard every route but health
  // checkov:skip=CKV_AZURE_17: callers authenticate with Microsoft Entra ID tokens (App Service Authentication), not client certificates
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales from zero per event; timers and events are retried, so no standing instance is needed
  // checkov:skip=CKV_AZURE_213: Flex Consumption has no App Service health check; monitors call the anonymous /api/health
  // checkov:skip=CKV_AZURE_78: Flex Consumption has no FTP or FTPS at all, and ARM refuses siteConfig.ftpsState on it (400, ExtendedCode 51021)
  name: '${prefix}-${uniqueString(resourceGroup().id)}' // global name: unique per deployment
  location: location
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${appIdentityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled'
    siteConfig: {
      // No ftpsState (nor any other property Flex Consumption deprecates): Flex has no FTP(S) and ARM
      // refuses the property (400, ExtendedCode 51021); tests/infra holds the site to Microsoft's list.
      minTlsVersion: '1.2'
      http20Enabled: true
      appSettings: concat(baseSettings, rebuilder)
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${hostBlobEndpoint}${deploymentContainer}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: appIdentityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: 2048
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// App Service Authentication: Microsoft Entra ID tokens for the app registration; every route but
// health needs one (the function key is checked too), and Event Grid's delivery endpoint is left to
// its system key. WEBSITE_AUTH_ENABLED then tells the app that the principal header is the platform's.
resource auth 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov:skip=CKV_AZURE_13: this is authsettingsV2 (platform.enabled: true, requireAuthentication: true); the check reads v1 authsettings' properties.enabled
  // checkov:skip=CKV_AZURE_63: HTTP logging is site configuration, not authentication settings; the app logs to Application Insights
  // checkov:skip=CKV_AZURE_65: detailed error pages are site configuration, not authentication settings; errors go to Application Insights
  // checkov:skip=CKV_AZURE_66: request tracing is site configuration, not authentication settings; traces go to Application Insights
  // checkov:skip=CKV_AZURE_80: a .NET Framework version is site configuration; this is a Python app's authentication settings
  // checkov:skip=CKV_AZURE_88: Azure Files is site configuration; Flex Consumption deploys from the blob container instead
  // checkov:skip=CKV_AZURE_222: public network access is the site's setting, justified on the site; these are authentication settings
  parent: app
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'Return401'
      excludedPaths: [
        '/api/health' // anonymous liveness: tells the status and nothing else
        // Event Grid delivers without an Entra token (the system key guards it), to
        // /runtime/webhooks/EventGrid: both casings, whichever way the path is matched
        '/runtime/webhooks/EventGrid'
        '/runtime/webhooks/eventgrid'
      ]
    }
    httpSettings: {
      requireHttps: true
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: authClientId
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
        }
        validation: {
          allowedAudiences: [
            'api://${authClientId}'
            authClientId
          ]
        }
      }
    }
    login: {
      tokenStore: {
        enabled: false
      }
    }
  }
}

output appName string = app.name
output appId string = app.id
output defaultHostName string = app.properties.defaultHostName
