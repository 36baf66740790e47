#!/usr/bin/env sh
# shellcheck source-path=SCRIPTDIR
# azd preprovision, in azd's subscription (AZURE_SUBSCRIPTION_ID), before azd provisions main.bicep:
# - the resource groups of the templates and of the gallery (role assignments are made in them);
# - the Microsoft Entra app registration that callers get tokens for: rebuilder's app roles
#   (infra/app-roles.json); a delegated scope, user_impersonation, with the Azure CLI pre-authorised for
#   it, and v2 access tokens (infra/app-api.json). Bicep cannot create it; made once per environment,
#   then reused (AUTH_CLIENT_ID);
# - infra/access.bicep: the environment's resource group, its identities, the custom roles and their
#   assignments in the template and gallery resource groups, retried while Azure replicates the new
#   role definitions and identities (RoleDefinitionDoesNotExist, PrincipalNotFound), so that the first
#   `azd up` succeeds.
set -eu
# shellcheck source=common.sh
. "${0%/*}/common.sh"
infra=${0%/*}/..

select_subscription
[ -n "${AZURE_ENV_NAME:-}" ] || fail "AZURE_ENV_NAME is not set: run this hook through azd"
[ -n "${AZURE_LOCATION:-}" ] || fail "AZURE_LOCATION is not set: azd env set AZURE_LOCATION <region>"
template_group=${REBUILDER_TEMPLATE_RESOURCE_GROUP:-rg-image-templates}
gallery_group=${REBUILDER_GALLERY_RESOURCE_GROUP:-rg-golden-images}

for group in "$template_group" "$gallery_group"; do
  if [ "$(az group exists --name "$group")" != "true" ]; then
    echo "creating resource group $group in $AZURE_LOCATION"
    az group create --name "$group" --location "$AZURE_LOCATION" --output none
  fi
done

# Microsoft Graph of the cloud the Azure CLI is signed in to (graph.microsoft.com in the public cloud).
graph=$(az cloud show --query endpoints.microsoftGraphResourceId -o tsv)
graph=${graph%/}

# The app's API (infra/app-api.json): the scope first, with nobody pre-authorised, then as the file
# says. Graph refuses to pre-authorise a scope in the request that creates it.
configure_api() {
  url="$graph/v1.0/applications(appId='$1')"
  az rest --method PATCH --url "$url" --headers Content-Type=application/json --output none \
    --body "$(sed 's/^\( *"preAuthorizedApplications": \).*\],$/\1[],/' "$infra/app-api.json")"
  az rest --method PATCH --url "$url" --headers Content-Type=application/json --output none \
    --body "@$infra/app-api.json"
}

name="rebuilder-${AZURE_ENV_NAME}"
if [ -n "${AUTH_CLIENT_ID:-}" ]; then
  echo "app registration: reusing $AUTH_CLIENT_ID"
  scopes=$(az ad app show --id "$AUTH_CLIENT_ID" \
    --query "length(api.oauth2PermissionScopes[?value=='user_impersonation'])" -o tsv)
  if [ "$scopes" = "0" ]; then
    if [ "$(az ad app show --id "$AUTH_CLIENT_ID" --query displayName -o tsv)" = "$name" ]; then
      echo "adding the delegated scope user_impersonation (the Azure CLI pre-authorised) to $name"
      configure_api "$AUTH_CLIENT_ID"
    else
      echo "warning: the app registration $AUTH_CLIENT_ID exposes no user_impersonation scope, so nobody can get a user token for it; add the api of infra/app-api.json to it (README, Deploy to Azure)" >&2
    fi
  fi
else
  echo "creating the app registration $name with the roles Ledger.Read, Rebuild.Request, Rebuild.Admin and the scope user_impersonation"
  app_id=$(az ad app create --display-name "$name" --sign-in-audience AzureADMyOrg \
    --app-roles "@$infra/app-roles.json" --query appId -o tsv)
  az ad app update --id "$app_id" --identifier-uris "api://$app_id"
  configure_api "$app_id"
  az ad sp create --id "$app_id" >/dev/null 2>&1 || echo "service principal exists already"
  azd env set AUTH_CLIENT_ID "$app_id"
fi

echo "deploying infra/access.bicep as ${AZURE_ENV_NAME}-access: identities, custom roles, their assignments in $template_group and $gallery_group"
retry "Azure to replicate the new custom role definitions and identities (RoleDefinitionDoesNotExist / PrincipalNotFound)" \
  'RoleDefinitionDoesNotExist|PrincipalNotFound' \
  az deployment sub create \
  --name "${AZURE_ENV_NAME}-access" \
  --location "$AZURE_LOCATION" \
  --template-file "$infra/access.bicep" \
  --parameters \
  environmentName="$AZURE_ENV_NAME" \
  location="$AZURE_LOCATION" \
  templateResourceGroups="[\"$template_group\"]" \
  galleryResourceGroup="$gallery_group" \
  --output none
