#!/usr/bin/env sh
# azd preprovision: the Microsoft Entra app registration that callers get tokens for, with rebuilder's
# app roles (infra/app-roles.json). Bicep cannot create it; made once per environment, then reused.
set -eu
if [ -n "${AUTH_CLIENT_ID:-}" ]; then
  echo "app registration: reusing $AUTH_CLIENT_ID"
  exit 0
fi
name="rebuilder-${AZURE_ENV_NAME}"
echo "creating the app registration $name with the roles Ledger.Read, Rebuild.Request, Rebuild.Admin"
app_id=$(az ad app create --display-name "$name" --sign-in-audience AzureADMyOrg \
  --app-roles @infra/app-roles.json --query appId -o tsv)
az ad app update --id "$app_id" --identifier-uris "api://$app_id"
az ad sp create --id "$app_id" >/dev/null 2>&1 || echo "service principal exists already"
azd env set AUTH_CLIENT_ID "$app_id"
