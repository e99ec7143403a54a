#!/usr/bin/env bash
# Roll production back: previous version → switch → verify health.
#
#   tools/rollback.sh [--environment production|staging] [--version vX.Y.Z] [--registry models/classification]
#                     [--service-url http://127.0.0.1:8000] [--reason "..."] [--timeout-seconds 120]
#
# Withdraws a rollout in progress, or moves the registry's production pointer back to the previous version
# (--version names the version expected after the rollback, as a check). The running service follows on its next
# step; the script waits until its live version is that one, then checks /health/ml. --environment picks the
# default service URL: production http://127.0.0.1:8000, staging http://127.0.0.1:8100.
set -euo pipefail

environment="production" version="" registry="models/classification" service_url="" reason="tools/rollback.sh"
timeout_seconds=120
while [[ $# -gt 0 ]]; do
  case "$1" in
    --environment) environment="$2"; shift 2 ;;
    --version) version="$2"; shift 2 ;;
    --registry) registry="$2"; shift 2 ;;
    --service-url) service_url="$2"; shift 2 ;;
    --reason) reason="$2"; shift 2 ;;
    --timeout-seconds) timeout_seconds="$2"; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "rollback.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$environment" in
  production) service_url=${service_url:-http://127.0.0.1:8000} ;;
  staging) service_url=${service_url:-http://127.0.0.1:8100} ;;
  *) echo "rollback.sh: --environment must be production or staging, got $environment" >&2; exit 2 ;;
esac
python=${PYTHON:-python}
step() { echo "rollback.sh: $*" >&2; }

step "1/3 rollback in $registry"
$python -m clf deploy rollback --deployment.registry "$registry" --reason "$reason" >/dev/null
target=$($python -m clf registry list --registry "$registry" |
  $python -c 'import json, sys; print(next((v["version"] for v in json.load(sys.stdin) if v["production"]), ""))')
if [[ -n "$version" && "$target" != "$version" ]]; then
  step "production is now $target, not the expected $version"; exit 1
fi

step "2/3 waiting for $service_url to serve $target"
deadline=$((SECONDS + timeout_seconds))
until curl -fs "$service_url/versions" | grep -q "\"live_version\":\"$target\""; do
  (( SECONDS < deadline )) || { step "the service did not switch to $target in ${timeout_seconds}s"; exit 1; }
  sleep 0.5
done

step "3/3 health of $target"
curl -fs "$service_url/health/ml" >/dev/null || { curl -s "$service_url/health/ml" >&2; step "unhealthy"; exit 1; }
step "serving $target, healthy"
