#!/usr/bin/env sh
# azd preprovision: what the deployment needs to exist first.
# - the resource groups of the templates and of the gallery (role assignments are made in them);
# - the Microsoft Entra app registration that callers get tokens for, with rebuilder's app roles
#   (infra/app-roles.json) and v2 access tokens (App Service Authentication checks the v2 issuer).
#   Bicep cannot create it; made once per environment, then reused.
set -eu
for group in "${REBUILDER_TEMPLATE_RESOURCE_GROUP:-rg-image-templates}" "${REBUILDER_GALLERY_RESOURCE_GROUP:-rg-golden-images}"; do
  if [ "$(az group exists --name "$group")" != "true" ]; then
    echo "creating resource group $group in $AZURE_LOCATION"
    az group create --name "$group" --location "$AZURE_LOCATION" --output none
  fi
done
if [ -n "${AUTH_CLIENT_ID:-}" ]; then
  echo "app registration: reusing $AUTH_CLIENT_ID"
  exit 0
fi
name="rebuilder-${AZURE_ENV_NAME}"
echo "creating the app registration $name with the roles Ledger.Read, Rebuild.Request, Rebuild.Admin"
app_id=$(az ad app create --display-name "$name" --sign-in-audience AzureADMyOrg \
  --app-roles @infra/app-roles.json --query appId -o tsv)
az ad app update --id "$app_id" --identifier-uris "api://$app_id" --set api.requestedAccessTokenVersion=2
az ad sp create --id "$app_id" >/dev/null 2>&1 || echo "service principal exists already"
azd env set AUTH_CLIENT_ID "$app_id"
