#!/usr/bin/env bash
# Deploy one image to one environment whose infrastructure is applied, in the order a
# first run needs: the migrations, the access bootstrap (the rotator's login, the API's
# first credential, the access policy; a no-op once all work), the sample data where
# there is a sample job (dev, pre; it loads only into an empty database), then the API
# revision and every scheduled job: rotation, audit, access expiry, the daily access
# alert and the restore drill (its app container, `compare`; the other runs the Azure
# CLI image). Each started job runs on the new image and must succeed before the next
# starts. Used by .github/workflows/deploy.yml; the names come from the app-infra outputs.
set -euo pipefail
: "${IMAGE:?}" "${RESOURCE_GROUP:?}" "${API:?}" "${ROTATION_JOB:?}" "${MIGRATION_JOB:?}" "${ACCESS_JOB:?}"
: "${AUDIT_JOB:?}" "${EXPIRY_JOB:?}" "${ACCESS_ALERT_JOB:?}" "${DRILL_JOB:?}"
SAMPLE_JOB=${SAMPLE_JOB:-}
POLLS=${POLLS:-90}
POLL_SECONDS=${POLL_SECONDS:-10}

run_job() {
  local job=$1 execution status=""
  az containerapp job update --name "$job" --resource-group "$RESOURCE_GROUP" --image "$IMAGE" --output none
  execution=$(az containerapp job start --name "$job" --resource-group "$RESOURCE_GROUP" --query name --output tsv)
  for _ in $(seq 1 "$POLLS"); do
    status=$(az containerapp job execution show --name "$job" --resource-group "$RESOURCE_GROUP" \
      --job-execution-name "$execution" --query properties.status --output tsv)
    case "$status" in
      Succeeded) echo "$job $execution: Succeeded"; return 0 ;;
      Failed|Stopped|Degraded) echo "$job $execution: $status" >&2; return 1 ;;
    esac
    sleep "$POLL_SECONDS"
  done
  echo "$job $execution did not finish (last status: ${status:-none})" >&2
  return 1
}

run_job "$MIGRATION_JOB"
run_job "$ACCESS_JOB"
if [ -n "$SAMPLE_JOB" ]; then
  run_job "$SAMPLE_JOB"
fi

az containerapp update --name "$API" --resource-group "$RESOURCE_GROUP" --image "$IMAGE" --output none
for job in "$ROTATION_JOB" "$AUDIT_JOB" "$EXPIRY_JOB" "$ACCESS_ALERT_JOB"; do
  az containerapp job update --name "$job" --resource-group "$RESOURCE_GROUP" --image "$IMAGE" --output none
done
az containerapp job update --name "$DRILL_JOB" --resource-group "$RESOURCE_GROUP" --container-name compare \
  --image "$IMAGE" --output none
revision=$(az containerapp show --name "$API" --resource-group "$RESOURCE_GROUP" --query properties.latestRevisionName --output tsv)
for _ in $(seq 1 "$POLLS"); do
  state=$(az containerapp revision show --name "$API" --resource-group "$RESOURCE_GROUP" --revision "$revision" \
    --query properties.healthState --output tsv)
  if [ "$state" = Healthy ]; then
    echo "revision $revision: Healthy"
    exit 0
  fi
  sleep "$POLL_SECONDS"
done
echo "revision $revision is not healthy" >&2
exit 1
