#!/usr/bin/env bash
# Deploy one image to one environment: migrations first (a Container Apps job on the
# new image), then the API revision and the rotation job. Used by .github/workflows/deploy.yml.
set -euo pipefail
: "${IMAGE:?}" "${RESOURCE_GROUP:?}" "${API:?}" "${ROTATION_JOB:?}" "${MIGRATION_JOB:?}"

az containerapp job update --name "$MIGRATION_JOB" --resource-group "$RESOURCE_GROUP" --image "$IMAGE" --output none
execution=$(az containerapp job start --name "$MIGRATION_JOB" --resource-group "$RESOURCE_GROUP" --query name --output tsv)
for _ in $(seq 1 60); do
  status=$(az containerapp job execution show --name "$MIGRATION_JOB" --resource-group "$RESOURCE_GROUP" \
    --job-execution-name "$execution" --query properties.status --output tsv)
  case "$status" in
    Succeeded) break ;;
    Failed|Stopped|Degraded) echo "migration $execution: $status" >&2; exit 1 ;;
  esac
  sleep 10
done
[ "$status" = Succeeded ] || { echo "migration $execution did not finish" >&2; exit 1; }

az containerapp update --name "$API" --resource-group "$RESOURCE_GROUP" --image "$IMAGE" --output none
az containerapp job update --name "$ROTATION_JOB" --resource-group "$RESOURCE_GROUP" --image "$IMAGE" --output none
revision=$(az containerapp show --name "$API" --resource-group "$RESOURCE_GROUP" --query properties.latestRevisionName --output tsv)
for _ in $(seq 1 60); do
  state=$(az containerapp revision show --name "$API" --resource-group "$RESOURCE_GROUP" --revision "$revision" \
    --query properties.healthState --output tsv)
  [ "$state" = Healthy ] && exit 0
  sleep 10
done
echo "revision $revision is not healthy" >&2
exit 1
