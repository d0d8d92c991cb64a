#!/usr/bin/env bash
# The scheduled restore drill in Azure (a Container Apps job, weekly): restore the
# environment's PostgreSQL server to a scratch server at a point in time, run the same
# checks as `make dr-drill` (rates_platform.drdrill compare: /rates answers, the audit
# chain against the live one, nothing after the target time), then delete the scratch
# server whatever happened. README "Disaster recovery" lists the job's identity and roles.
#
# Needs: az, and python3 with rates-platform installed. Environment:
#   RESOURCE_GROUP          the environment's resource group (source and scratch server)
#   SOURCE_SERVER           the live Flexible Server's name
#   DRILL_LOGIN             the job identity's PostgreSQL (Entra) role name
#   AZURE_CLIENT_ID         the job's user-assigned managed identity (az login --identity)
#   DATABASE                default rates
#   DRILL_TARGET_AGE_MIN    how far back the restore point is, default 15 (minutes)
# Exit codes: those of `python -m rates_platform.drdrill compare` (0 whole, 1 a check
# failed, 3 inconclusive: data was loaded after the target time), or 2 if the restore
# itself could not be made.
set -euo pipefail

: "${RESOURCE_GROUP:?}" "${SOURCE_SERVER:?}" "${DRILL_LOGIN:?}" "${AZURE_CLIENT_ID:?}"
database=${DATABASE:-rates}
age=${DRILL_TARGET_AGE_MIN:-15}
stamp=$(date -u +%Y%m%d%H%M)
scratch="${SOURCE_SERVER}-drill-${stamp}"
# Epoch arithmetic: GNU and busybox date both read -d @SECONDS.
target=$(date -u -d "@$(($(date +%s) - age * 60))" +%Y-%m-%dT%H:%M:%S+00:00)

log() { printf '%s dr-drill: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

az login --identity --client-id "$AZURE_CLIENT_ID" --output none

# shellcheck disable=SC2329  # run by the EXIT trap
cleanup() {
  log "deleting the scratch server $scratch"
  az postgres flexible-server delete --resource-group "$RESOURCE_GROUP" --name "$scratch" \
    --yes --output none || log "could not delete $scratch: delete it by hand"
}
trap cleanup EXIT

log "restoring $SOURCE_SERVER as of $target into $scratch (same network, private access)"
if ! az postgres flexible-server restore --resource-group "$RESOURCE_GROUP" --name "$scratch" \
  --source-server "$SOURCE_SERVER" --restore-time "$target" --output none; then
  log "the restore itself failed"
  exit 2
fi

host_of() {
  az postgres flexible-server show --resource-group "$RESOURCE_GROUP" --name "$1" \
    --query fullyQualifiedDomainName --output tsv
}
source_host=$(host_of "$SOURCE_SERVER")
scratch_host=$(host_of "$scratch")

# Entra ID token as the password (libpq reads PGPASSWORD); never printed or stored.
PGPASSWORD=$(az account get-access-token --resource-type oss-rdbms --query accessToken \
  --output tsv)
export PGPASSWORD
conninfo() {
  printf 'host=%s port=5432 dbname=%s user=%s sslmode=verify-full sslrootcert=system' \
    "$1" "$database" "$DRILL_LOGIN"
}

log "comparing $source_host with $scratch_host"
status=0
python3 -m rates_platform.drdrill compare --source "$(conninfo "$source_host")" \
  --restored "$(conninfo "$scratch_host")" --target-time "$target" || status=$?
exit "$status"
