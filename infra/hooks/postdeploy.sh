#!/usr/bin/env sh
# azd postdeploy: the Event Grid subscription to on_resource_event. It can only be made once the
# function exists (Event Grid validates the endpoint), so it is not part of infra/main.bicep.
set -eu
: "${SYSTEM_TOPIC_NAME:?run azd provision first}"
echo "subscribing on_resource_event to gallery image version writes on $SYSTEM_TOPIC_NAME"
az deployment group create \
  --resource-group "$SYSTEM_TOPIC_RESOURCE_GROUP" \
  --name rebuilder-event-subscriptions \
  --template-file infra/eventgrid-subscription.bicep \
  --parameters \
    systemTopicName="$SYSTEM_TOPIC_NAME" \
    functionAppId="$AZURE_FUNCTION_APP_ID" \
    deadLetterAccountId="$DEAD_LETTER_ACCOUNT_ID" \
    deadLetterContainer="$DEAD_LETTER_CONTAINER" \
    noticesTopicName="${NOTICES_TOPIC_NAME:-}" \
    noticesTopicResourceGroup="$AZURE_RESOURCE_GROUP" \
  --output none
echo "done: $AZURE_FUNCTION_APP_URL/api/health"
