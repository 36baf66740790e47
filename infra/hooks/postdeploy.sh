#!/usr/bin/env sh
# shellcheck source-path=SCRIPTDIR
# azd postdeploy, in azd's subscription (AZURE_SUBSCRIPTION_ID):
# 1. the Event Grid subscriptions to on_resource_event (infra/eventgrid-subscription.bicep). They can
#    only be made once the function exists: Event Grid validates the endpoint, and right after a
#    deployment it may not find it yet ("Destination endpoint not found"). Retried while it says so,
#    with a bounded backoff (infra/hooks/common.sh).
# 2. the doctor, GET /api/doctor (app role Rebuild.Admin), as the deploying user: its table is
#    printed, and a failed check fails the hook, with what to do. A 403 (the user lacks Rebuild.Admin)
#    or no token does not: the doctor was not run, and the hook says how to run it.
set -eu
# shellcheck source=common.sh
. "${0%/*}/common.sh"
infra=${0%/*}/..

select_subscription
[ -n "${SYSTEM_TOPIC_NAME:-}" ] || fail "SYSTEM_TOPIC_NAME is not set: run azd provision first"
[ -n "${AZURE_ENV_NAME:-}" ] || fail "AZURE_ENV_NAME is not set: run this hook through azd"

echo "subscribing on_resource_event to gallery image version writes on $SYSTEM_TOPIC_NAME"
retry "Event Grid to find the function on_resource_event (Destination endpoint not found: the deployed app is still starting)" \
  'Destination endpoint not found' \
  az deployment group create \
  --resource-group "$SYSTEM_TOPIC_RESOURCE_GROUP" \
  --name "${AZURE_ENV_NAME}-event-subscriptions" \
  --template-file "$infra/eventgrid-subscription.bicep" \
  --parameters \
  environmentName="$AZURE_ENV_NAME" \
  systemTopicName="$SYSTEM_TOPIC_NAME" \
  functionAppId="$AZURE_FUNCTION_APP_ID" \
  deadLetterAccountId="$DEAD_LETTER_ACCOUNT_ID" \
  deadLetterContainer="$DEAD_LETTER_CONTAINER" \
  noticesTopicName="${NOTICES_TOPIC_NAME:-}" \
  noticesTopicResourceGroup="$AZURE_RESOURCE_GROUP" \
  --output none

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
url="${AZURE_FUNCTION_APP_URL%/}/api/doctor"
admin_role=Rebuild.Admin

# The doctor's answer as a table, one check a line; exit status 1 when a check failed.
table() {
  if ! command -v python3 >/dev/null 2>&1; then
    cat "$1"
    echo
    grep -q '"failed": 0[,}]' "$1"
    return
  fi
  python3 - "$1" <<'PY'
import json
import sys

sys.stdout.reconfigure(errors="replace")
with open(sys.argv[1], encoding="utf-8") as answer:
    text = answer.read()
try:
    doc = json.loads(text)
    checks = [(c["ok"], f"{c['check']} {c['subject']}: {c['detail']}", c.get("fix")) for c in doc["checks"]]
except (ValueError, KeyError, TypeError):
    print("not the doctor's answer:", text[:500])
    sys.exit(1)
for ok, line, fix in checks:
    print(("✅ " if ok else "❌ ") + line + ("" if ok or not fix else f"\n     fix: {fix}"))
print(f"{doc['passed']} passed, {doc['failed']} failed")
sys.exit(1 if doc["failed"] else 0)
PY
}

not_admin() {
  who=$(az account show --query user.name -o tsv 2>/dev/null || true)
  [ -n "$who" ] || who="the signed-in identity"
  sp=$(az ad sp show --id "$AUTH_CLIENT_ID" --query id -o tsv 2>/dev/null || echo "<service principal id>")
  role=$(az ad sp show --id "$AUTH_CLIENT_ID" --query "appRoles[?value=='$admin_role'].id | [0]" -o tsv 2>/dev/null ||
    echo "<id of $admin_role in infra/app-roles.json>")
  me=$(az ad signed-in-user show --query id -o tsv 2>/dev/null || echo "<your object id>")
  graph=$(az cloud show --query endpoints.microsoftGraphResourceId -o tsv 2>/dev/null || echo "<Microsoft Graph endpoint: az cloud show>/")
  echo "doctor not run: GET /api/doctor needs the app role $admin_role, which $who does not have (HTTP 403)."
  echo "Nothing is wrong with the deployment. Assign the role (README, Deploy to Azure: Grant the API's roles):"
  echo "  az rest -m POST -u '${graph%/}/v1.0/servicePrincipals/$sp/appRoleAssignedTo' -b '{\"principalId\": \"$me\", \"resourceId\": \"$sp\", \"appRoleId\": \"$role\"}'"
  echo "then sign in again (az login: the role is in new tokens only) and run the doctor: azd hooks run postdeploy"
}

echo "asking the doctor (GET /api/doctor) as you"
if ! token=$(az account get-access-token --resource "api://$AUTH_CLIENT_ID" --query accessToken -o tsv 2>"$work/err"); then
  echo "warning: doctor not run: no token for api://$AUTH_CLIENT_ID: $(cat "$work/err")" >&2
  echo "  the app registration must expose user_impersonation with the Azure CLI pre-authorised (infra/app-api.json); then run azd hooks run postdeploy" >&2
  exit 0
fi
attempt=1
max=$(attempts)
while :; do
  status=000
  if key=$(az functionapp keys list --resource-group "$AZURE_RESOURCE_GROUP" --name "$AZURE_FUNCTION_APP_NAME" \
    --query functionKeys.default -o tsv 2>"$work/err") && [ -n "$key" ]; then
    (
      umask 077
      printf 'x-functions-key: %s\nAuthorization: Bearer %s\n' "$key" "$token" >"$work/headers"
    )
    status=$(curl -sS -o "$work/body" -w '%{http_code}' -H "@$work/headers" "$url" 2>"$work/err") || status=000
  fi
  case $status in
  200)
    if table "$work/body"; then
      echo "doctor: every check passes"
      exit 0
    fi
    fail "the doctor found failed checks (or did not answer as the doctor): do what each ❌ line's fix says, then run azd hooks run postdeploy again"
    ;;
  403)
    # rebuilder's own 403 names the app role; any other (the platform's) is a failure
    grep -q "app role" "$work/body" ||
      fail "GET $url answered HTTP 403, not from rebuilder: $(head -n 5 "$work/body")"
    not_admin
    exit 0
    ;;
  401)
    fail "App Service Authentication refused the token for api://$AUTH_CLIENT_ID (HTTP 401): the app's authsettingsV2 must name this app registration (authClientId) and accept its v2 tokens"
    ;;
  esac
  # 000 (no answer, or no function key yet), 404 (functions not indexed yet), 5xx: still starting
  if [ "$attempt" -ge "$max" ]; then
    fail "the app did not answer GET $url after $max attempts (last: HTTP $status $(cat "$work/err" "$work/body" 2>/dev/null | head -n 5)); see its logs in Application Insights"
  fi
  delay=$(backoff "$attempt")
  echo "waiting ${delay}s for the app to answer GET /api/doctor (HTTP $status: still starting; attempt $attempt of $max)"
  sleep "$delay"
  attempt=$((attempt + 1))
done
