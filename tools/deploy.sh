#!/usr/bin/env bash
# Ship a registered version: validate → staging → smoke tests → production rollout.
#
#   tools/deploy.sh --version v1.3.0 [--environment staging|production] [--strategy canary|blue-green]
#                   [--registry models/classification] [--sample-data data/splits/test.json]
#                   [--staging-port 8100] [--stages "[5, 10, 25, 50, 100]"] [--stage-seconds 3600] [--wait-seconds 0]
#                   [--max-p95-latency-ms 200]
#
# staging: validates the version, serves it alone on a loopback staging port, checks /health/ml, /predict (the
# answer must come from that version) and /metrics, then stops the staging server.
# production: the same, then asks the running service (clf serve on the same --registry) for the rollout with
# `clf deploy canary|blue-green`; --wait-seconds waits for its outcome. Exits non-zero at the first failed step.
set -euo pipefail

version="" environment="production" strategy="canary" registry="models/classification" sample_data=""
staging_port=8100 stages="[5, 10, 25, 50, 100]" stage_seconds=3600 wait_seconds=0 max_p95_latency_ms=200
while [[ $# -gt 0 ]]; do
  case "$1" in
    --version) version="$2"; shift 2 ;;
    --environment) environment="$2"; shift 2 ;;
    --strategy) strategy="$2"; shift 2 ;;
    --registry) registry="$2"; shift 2 ;;
    --sample-data) sample_data="$2"; shift 2 ;;
    --staging-port) staging_port="$2"; shift 2 ;;
    --stages) stages="$2"; shift 2 ;;
    --stage-seconds) stage_seconds="$2"; shift 2 ;;
    --wait-seconds) wait_seconds="$2"; shift 2 ;;
    --max-p95-latency-ms) max_p95_latency_ms="$2"; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "deploy.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ -n "$version" ]] || { echo "deploy.sh: --version vX.Y.Z is required" >&2; exit 2; }
[[ "$environment" == staging || "$environment" == production ]] || {
  echo "deploy.sh: --environment must be staging or production, got $environment" >&2; exit 2; }
[[ "$strategy" == canary || "$strategy" == blue-green ]] || {
  echo "deploy.sh: --strategy must be canary or blue-green, got $strategy" >&2; exit 2; }
python=${PYTHON:-python}
step() { echo "deploy.sh: $*" >&2; }

step "1/4 validate $version"
sample_args=()
[[ -n "$sample_data" ]] && sample_args=(--sample-data "$sample_data")
$python -m clf deploy validate "$version" --deployment.registry "$registry" --max-p95-latency-ms "$max_p95_latency_ms" \
  "${sample_args[@]}" >/dev/null

step "2/4 staging: serving $version on 127.0.0.1:$staging_port"
log=$(mktemp)
$python -m clf serve --port "$staging_port" --registry "$registry" --service.version "$version" >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -f "$log"' EXIT
url="http://127.0.0.1:$staging_port"
for _ in $(seq 1 300); do
  curl -fs "$url/health" >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { cat "$log" >&2; step "staging server exited"; exit 1; }
  sleep 0.2
done

step "3/4 smoke tests against staging"
curl -fs "$url/health/ml" >/dev/null || { curl -s "$url/health/ml" >&2; step "staging is unhealthy"; exit 1; }
answer=$(curl -fs "$url/predict" -H 'content-type: application/json' \
  -d '{"title": "Deployment smoke test", "abstract": "We evaluate a convolutional network for image segmentation."}')
echo "$answer" | grep -q "\"version\":\"$version\"" || { step "staging answered: $answer"; exit 1; }
curl -fs "$url/metrics" >/dev/null
kill "$server"; wait "$server" 2>/dev/null || true
trap - EXIT
rm -f "$log"

if [[ "$environment" == staging ]]; then
  step "staging passed; production untouched"
  exit 0
fi
step "4/4 production: $strategy rollout of $version"
$python -m clf deploy "$strategy" "$version" --deployment.registry "$registry" --skip-validation true \
  --deployment.stages "$stages" --deployment.stage_seconds "$stage_seconds" --wait-seconds "$wait_seconds"
