#!/usr/bin/env bash
# End to end: collect → preprocess → fit → test → registry → serve → traffic → v1.1.0 → validate → canary → status.
#
#   tools/e2e.sh [--config configs/quickstart.yaml] [--workdir runs/e2e-<timestamp>] [--port 8300]
#                [--out tools/bench/results/e2e_<config-stem>.json] [--stages "[25, 50, 100]"] [--stage-seconds 20]
#                [--requests 50] [--max-p95-latency-ms 200] [--deploy-interval-seconds 5]
#                [-- FIT_AND_TEST_OVERRIDES...]
#
# Runs the whole path of the config into a fresh work dir (data/, runs/, registry/, logs/; never the config's own
# data_dir or default_root_dir): clf collect and clf preprocess with the config's data options, clf fit, clf test on
# the best checkpoint, the export registered as v1.0.0 and promoted, clf serve on 127.0.0.1:PORT with that registry,
# traffic, the same export registered again as v1.1.0 (so the canary exercises the rollout, not a better model),
# clf deploy validate on the test split, clf deploy canary with short stages under a background traffic loop, and
# clf deploy status, which must show v1.1.0 in production. Arguments after `--` go to clf fit and clf test (and
# --data.* ones to collect and preprocess too). Each step's seconds and result go to the JSON file and a table;
# the first failed step stops the script (status 1) with its name and message, and the JSON so far is still written.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
config="configs/quickstart.yaml" workdir="" port=8300 out="" stages="[25, 50, 100]" stage_seconds=20 requests=50
max_p95_latency_ms=200 deploy_interval_seconds=5 overrides=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --config) config="$2"; shift 2 ;;
    --workdir) workdir="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --stages) stages="$2"; shift 2 ;;
    --stage-seconds) stage_seconds="$2"; shift 2 ;;
    --requests) requests="$2"; shift 2 ;;
    --max-p95-latency-ms) max_p95_latency_ms="$2"; shift 2 ;;
    --deploy-interval-seconds) deploy_interval_seconds="$2"; shift 2 ;;
    --) shift; overrides=("$@"); break ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "e2e.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
# Paths are taken relative to the caller's directory; the clf commands run from the repository root, where the
# configs' relative paths (../shared/data/...) point.
[[ -f "$config" ]] || { echo "e2e.sh: --config $config: no such file" >&2; exit 2; }
config=$(realpath "$config")
stem=$(basename "$config" .yaml)
workdir=$(realpath -m "${workdir:-$repo/runs/e2e-$(date +%Y%m%d-%H%M%S)}")
out=$(realpath -m "${out:-$repo/tools/bench/results/e2e_$stem.json}")
[[ "$port" =~ ^[0-9]+$ ]] || { echo "e2e.sh: --port must be a number, got $port" >&2; exit 2; }
[[ "$requests" =~ ^[1-9][0-9]*$ ]] || { echo "e2e.sh: --requests must be a positive number, got $requests" >&2; exit 2; }
if [[ -e "$workdir" && -n "$(ls -A "$workdir")" ]]; then
  echo "e2e.sh: --workdir $workdir is not empty; give a new or empty folder" >&2; exit 2
fi
cd "$repo"
python=${PYTHON:-python}
command_line="tools/e2e.sh --config ${config#"$repo/"} --port $port --stages \"$stages\" --stage-seconds $stage_seconds"
command_line+=" --requests $requests --max-p95-latency-ms $max_p95_latency_ms"
command_line+=" --deploy-interval-seconds $deploy_interval_seconds"
[[ ${#overrides[@]} -eq 0 ]] || { printf -v quoted ' %q' "${overrides[@]}"; command_line+=" --$quoted"; }

data="$workdir/data" runs="$workdir/runs" registry="$workdir/registry" logs="$workdir/logs"
helper=$(mktemp --suffix .py)
steps_file="$workdir/steps.jsonl"
url="http://127.0.0.1:$port"
total_steps=12 n=0 current="" log="" started="" server="" server_rc="" traffic="" partial="{}"

# Small Python helpers: option mapping, a traffic client, step details with their checks, and the report.
cat >"$helper" <<'PY'
import json, shlex, signal, sys, time, urllib.error, urllib.request
from pathlib import Path


def fail(message, partial=None):
    """Exits with the message; `partial` (the step's results so far) is printed for the record of the failure."""
    if partial is not None:
        print(json.dumps(partial))
    sys.exit(f"e2e.sh: {message}")


def options(config, workdir, *overrides):
    """Three shell-quoted lines: clf collect args, clf preprocess args, clf fit/test overrides."""
    import yaml

    fit_config = yaml.safe_load(Path(config).read_text()) or {}
    data = dict(fit_config.get("data") or {})
    args, i = list(overrides), 0
    while i < len(args):
        arg, i = args[i], i + 1
        name, eq, value = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
        name = name.replace("-", "_")
        if name in ("config", "data", "data.data_dir", "trainer.default_root_dir", "trainer.logger"):
            fail(f"--{name} cannot follow --: the script sets it (use --config / --workdir)")
        if name and not eq and i < len(args) and not args[i].startswith("--"):
            value, i = args[i], i + 1
        if name.startswith("data."):
            data[name[5:]] = yaml.safe_load(value)
    collect = {"source": "--source", "snapshot_path": "--snapshot-path", "num_papers": "--num-papers",
               "categories": "--categories", "api_url": "--api-url", "seed": "--seed"}
    preprocess = {"min_words": "--min-words", "categories": "--categories", "seed": "--seed"}

    def flags(mapping):
        out = []
        for key, flag in mapping.items():
            if data.get(key) is not None:
                value = data[key]
                out += [flag, json.dumps(list(value)) if isinstance(value, (list, tuple)) else str(value)]
        return out

    fit = ["--data.data_dir", f"{workdir}/data", "--trainer.default_root_dir", f"{workdir}/runs/{Path(config).stem}"]
    logger = (fit_config.get("trainer") or {}).get("logger")
    if isinstance(logger, list) or (isinstance(logger, dict) and "save_dir" not in (logger.get("init_args") or {})):
        fail(f"{config}: trainer.logger must be one logger with init_args.save_dir (or unset) to be redirected")
    if isinstance(logger, dict):
        fit += ["--trainer.logger.init_args.save_dir", f"{workdir}/runs"]
    for line in (flags(collect), flags(preprocess), fit):
        print(shlex.join(line))


def traffic(url, split_file, count, summary_file):
    """POSTs the split's papers one at a time (count of them, or until SIGTERM when 0); writes a summary."""
    samples = json.loads(Path(split_file).read_text())["samples"]
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    records, count, start = [], int(count), time.monotonic()
    while not stop and (count == 0 or len(records) < count):
        paper = samples[len(records) % len(samples)]
        body = {"title": paper["title"], "abstract": paper["abstract"], "user_id": f"e2e-{len(records)}"}
        request = urllib.request.Request(
            f"{url}/predict", json.dumps(body).encode(), {"content-type": "application/json"}
        )
        began = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, version = response.status, json.load(response).get("version")
        except urllib.error.HTTPError as err:
            status, version = err.code, None
        except OSError:
            status, version = None, None
        records.append((status, version, (time.perf_counter() - began) * 1000))
    seconds = time.monotonic() - start
    latencies = sorted(ms for status, _, ms in records if status == 200)
    by_version = {}
    for status, version, _ in records:
        if status == 200:
            by_version[version] = by_version.get(version, 0) + 1
    summary = {
        "sent": len(records),
        "answered": len(latencies),
        "failed": len(records) - len(latencies),
        "statuses": sorted({str(status) for status, _, _ in records}),
        "by_version": by_version,
        "requests_per_s": round(len(records) / seconds, 1) if seconds else None,
        "latency_ms": {
            "p50": round(latencies[len(latencies) // 2], 1) if latencies else None,
            "p95": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.95))], 1) if latencies else None,
        },
    }
    Path(summary_file).write_text(json.dumps(summary, indent=2))


def detail(step, *args):
    """Prints the step's key results as JSON with a one-line "summary"; exits with a message when a check fails."""
    load = lambda path: json.loads(Path(path).read_text())  # noqa: E731
    if step == "collect":
        manifest = load(args[0])
        result = {"papers": manifest["num_samples"], "per_category": manifest["counts"],
                  "source": manifest["source"]["kind"]}
        result["summary"] = f"{result['papers']} papers, {len(result['per_category'])} categories"
    elif step == "preprocess":
        result = {split: load(f"{args[0]}/{split}.json")["metadata"]["count"] for split in ("train", "val", "test")}
        result["summary"] = "train {train} / val {val} / test {test}".format(**result)
    elif step == "fit":
        metrics = load(f"{args[0]}/metrics.json")
        size = sum(f.stat().st_size for f in Path(args[0]).iterdir()) / 1e6
        result = {"monitor": metrics["monitor"], "best_score": round(metrics["best_score"], 4),
                  "epochs": metrics["epoch"], "global_step": metrics["global_step"], "export": args[0],
                  "export_mb": round(size, 1)}
        result["summary"] = (f"best {result['monitor']} {result['best_score']:.3f}, {result['epochs']} epochs, "
                             f"export {result['export_mb']} MB")
    elif step == "test":
        reports = sorted(Path(args[0]).rglob("test_report.json"), key=lambda p: p.stat().st_mtime)
        if not reports:
            fail(f"no test_report.json under {args[0]}")
        metrics = load(reports[-1])["metrics"]
        result = {"report": str(reports[-1]), **metrics}
        result["summary"] = "test/acc {:.3f}, f1_macro {:.3f}".format(metrics["test/acc"], metrics["test/f1_macro"])
    elif step == "register":
        created, production = load(args[0]), load(args[1])["to"] if args[1] else None
        if production and production != created["version"]:
            fail(f"registered {created['version']}, but production is {production}")
        result = {"version": created["version"], "production": production or None,
                  "model_size_mb": created.get("model_size_mb")}
        result["summary"] = created["version"] + (" in production" if production else " registered")
    elif step == "serve":
        health, versions = load(args[0]), load(args[1])
        if health.get("status") != "healthy" or versions.get("live_version") != args[2]:
            fail(f"/health/ml {health.get('status')}, live {versions.get('live_version')}, expected {args[2]}")
        result = {"url": args[3], "live_version": versions["live_version"], "health_ml": health["status"]}
        result["summary"] = f"{args[3]} serving {versions['live_version']}, healthy"
    elif step == "traffic":
        result, expected = load(args[0]), args[1]
        if result["failed"] or set(result["by_version"]) != {expected}:
            fail(f"{result['failed']} of {result['sent']} requests failed; answered by {result['by_version']}", result)
        result["summary"] = (f"{result['answered']}/{result['sent']} answered by {expected}, "
                             f"p95 {result['latency_ms']['p95']} ms")
    elif step == "validate":
        report = load(args[0])
        checks = {c["name"]: {"ok": c["ok"], "value": c["value"], "detail": c["detail"]} for c in report["checks"]}
        if not report["passed"]:
            failed = "; ".join(f"{k} ({v['detail']})" for k, v in checks.items() if not v["ok"])
            fail(f"validation failed: {failed}", {"passed": False, "checks": checks})
        result = {"passed": True, "num_samples": report["num_samples"], "checks": checks}
        result["summary"] = "passed: accuracy {:.1%} of {}, top class {:.0%}, p95 {} ms".format(
            checks["sample_accuracy"]["value"], report["num_samples"], checks["class_diversity"]["value"],
            checks["latency_p95_ms"]["value"])
    elif step == "canary":
        answer, status, traffic_summary, version = load(args[0]), load(args[1]), load(args[2]), args[3]
        decisions = [d for d in status["decisions"] if d["version"] == version]
        ends = [d for d in decisions if d["action"] in ("promoted", "rolled_back")]
        result = {"finished": answer.get("outcome", {}).get("finished"), "outcome": ends[-1]["action"] if ends else None,
                  "reason": ends[-1]["reason"] if ends else None, "requested": answer["requested"]["reason"],
                  "decisions": [f"{d['action']}" + (f" {d['stage']} %" if d.get("stage") else "") for d in decisions],
                  # Each judged stage's evidence: requests and p95 latency (ms) per version over the stage.
                  "evidence": [{"decision": d["action"], "stage": d.get("stage"),
                                **{v: [m.get("total"), m.get("latency_p95_ms") and round(m["latency_p95_ms"], 1)]
                                   for v, m in d["metrics"].items()}} for d in decisions if d.get("metrics")],
                  "traffic": traffic_summary}
        if result["outcome"] != "promoted":
            fail(f"canary of {version} not promoted: {result['outcome'] or 'no outcome'} ({result['reason']})", result)
        result["summary"] = "promoted; traffic {answered}/{sent} answered ({by})".format(
            by=", ".join(f"{k} {v}" for k, v in sorted(traffic_summary["by_version"].items())), **traffic_summary)
    elif step == "status":
        status, versions, version = load(args[0]), load(args[1]), args[2]
        phase = status["state"]["phase"]
        if status["production"] != version or phase != "idle" or versions["live_version"] != version:
            fail(f"production {status['production']}, phase {phase}, live {versions['live_version']}; "
                 f"expected {version}, idle")
        result = {"production": version, "phase": phase, "live_version": versions["live_version"]}
        result["summary"] = f"production {version}, idle, service live {version}"
    elif step == "stop":
        # uvicorn re-raises the SIGTERM once its graceful shutdown is done: 143 (128 + 15) is the normal status.
        lines = Path(args[1]).read_text().splitlines()
        graceful = any("Application shutdown complete" in line for line in lines)
        if args[0] not in ("0", "143") or not graceful:
            fail(f"clf serve did not shut down gracefully on SIGTERM: status {args[0]} (see {args[1]})")
        errors = [line for line in lines if " ERROR " in line or "Traceback" in line]
        result = {"exit_status": int(args[0]), "graceful_shutdown": True, "log_error_lines": len(errors)}
        result["summary"] = f"graceful shutdown on SIGTERM, {len(errors)} error lines in the serve log"
    else:
        fail(f"unknown step {step}")
    print(json.dumps(result))


def record(steps_file, name, result, start, end, detail_json):
    try:
        detail = json.loads(detail_json)
    except ValueError:
        detail = {"summary": detail_json}
    line = {"step": name, "result": result, "seconds": round(float(end) - float(start), 2), **detail}
    with open(steps_file, "a") as handle:
        handle.write(json.dumps(line) + "\n")


def report(steps_file, out, planned, *pairs):
    import os, platform
    from importlib.metadata import version

    steps = [json.loads(line) for line in Path(steps_file).read_text().splitlines()] if Path(steps_file).exists() else []
    failed = next((s for s in steps if s["result"] != "ok"), None)
    meta = dict(pair.split("=", 1) for pair in pairs)
    result = {
        "benchmark": "e2e",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
        "command": meta.pop("command"),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "python": platform.python_version(), "torch": version("torch")},
        "config": meta,
        "ok": failed is None and len(steps) == int(planned),
        "failed_step": failed["step"] if failed else None,
        "total_seconds": round(sum(s["seconds"] for s in steps), 1),
        "steps": steps,
    }
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out + ".tmp").write_text(json.dumps(result, indent=2) + "\n")
    Path(out + ".tmp").replace(out)
    print(f"\n{'step':<12} {'seconds':>8}  {'result':<7} summary")
    for s in steps:
        print(f"{s['step']:<12} {s['seconds']:>8.1f}  {s['result']:<7} {s.get('summary') or s.get('error', '')}")
    print(f"{'total':<12} {result['total_seconds']:>8.1f}  {'ok' if result['ok'] else 'FAILED':<7} {out}")


if __name__ == "__main__":
    {"options": options, "traffic": traffic, "detail": detail, "record": record, "report": report}[sys.argv[1]](
        *sys.argv[2:]
    )
PY

options=$($python "$helper" options "$config" "$workdir" "${overrides[@]}") || { rm -f "$helper"; exit 2; }
mkdir -p "$logs"

say() { echo "e2e.sh: $*" >&2; }
# begin NAME starts a timed step whose commands log to logs/NAME.log; ok KIND ARGS... checks its results (the
# helper's `detail`, which exits with a message when a check fails) and records it.
begin() {
  n=$((n + 1)) current="$1" log="$logs/$1.log" started=$EPOCHREALTIME
  say "[$n/$total_steps] $1"
}
ok() {
  local result
  result=$($python "$helper" detail "$@" 2>>"$log") || { partial=$result; exit 1; }
  $python "$helper" record "$steps_file" "$current" ok "$started" "$EPOCHREALTIME" "$result"
  current=""
}
fail() { echo "e2e.sh: $*" >>"$log"; exit 1; }
clf() { $python -m clf "$@" 2>>"$log"; }

stop_server() {
  [[ -n "$server" ]] || return 0
  kill -TERM "$server" 2>/dev/null || true
  for _ in $(seq 1 80); do kill -0 "$server" 2>/dev/null || break; sleep 0.5; done
  kill -KILL "$server" 2>/dev/null && say "clf serve did not stop in 40 s; killed"
  server_rc=0
  wait "$server" 2>/dev/null || server_rc=$?
  server=""
}

on_exit() {
  local rc=$?
  set +e
  [[ -n "$traffic" ]] && { kill -TERM "$traffic" 2>/dev/null; wait "$traffic" 2>/dev/null; }
  stop_server
  if [[ -n "$current" ]]; then
    local message
    message=$(grep -v '^[[:space:]]*$' "$log" 2>/dev/null | tail -n 1)
    message=${message:-exit status $rc}
    $python "$helper" record "$steps_file" "$current" failed "$started" "$EPOCHREALTIME" \
      "$($python -c 'import json, sys; print(json.dumps({"error": sys.argv[1], "log": sys.argv[2], **json.loads(sys.argv[3] or "{}")}))' \
        "$message" "$log" "$partial")"
  fi
  $python "$helper" report "$steps_file" "$out" "$total_steps" "command=$command_line" "config=${config#"$repo/"}" \
    "workdir=$workdir" "port=$port" "stages=$stages" "stage_seconds=$stage_seconds" \
    "deploy_interval_seconds=$deploy_interval_seconds" \
    "second_version=v1.1.0 is the v1.0.0 export registered again: the canary exercises the rollout, not a new model"
  rm -f "$helper"
  if [[ -n "$current" ]]; then
    say "step '$current' failed: $message"
    say "last lines of $log:"
    tail -n 15 "$log" >&2
    rc=1
  elif [[ $rc -eq 0 ]]; then
    say "all $total_steps steps ok; results in $out"
  fi
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "config ${config#"$repo/"}, work dir $workdir, service $url"
eval "collect_args=($(sed -n 1p <<<"$options"))"
eval "preprocess_args=($(sed -n 2p <<<"$options"))"
eval "fit_args=($(sed -n 3p <<<"$options") \"\${overrides[@]}\")"
export_dir="$runs/$stem/export"

begin collect
clf collect "${collect_args[@]}" --data-dir "$data" >>"$log"
ok collect "$data/raw/arxiv/manifest.json"

begin preprocess
clf preprocess "${preprocess_args[@]}" --data-dir "$data" >>"$log"
ok preprocess "$data/splits"

begin fit
clf fit --config "$config" "${fit_args[@]}" >>"$log"
ok fit "$export_dir"

begin test
clf test --config "$config" "${fit_args[@]}" --ckpt_path best >>"$log"
ok test "$runs"

begin register_v1
clf registry create --model-path "$export_dir" --version v1.0.0 --registry "$registry" >"$logs/register_v1.json"
clf registry promote v1.0.0 --reason "tools/e2e.sh" --registry "$registry" >"$logs/promote_v1.json"
ok register "$logs/register_v1.json" "$logs/promote_v1.json"

begin serve
curl -s -o /dev/null "$url/health" && fail "something already answers on $url; pick another --port"
log="$logs/serve.log"
$python -m clf serve --port "$port" --registry "$registry" \
  --fleet.deploy_interval_seconds "$deploy_interval_seconds" >"$log" 2>&1 &
server=$!
for _ in $(seq 1 600); do
  curl -fs "$url/health" >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || fail "clf serve exited before it answered /health"
  sleep 0.2
done
curl -fs "$url/health" >/dev/null || fail "clf serve did not answer /health within 120 s"
curl -s "$url/health/ml" >"$logs/health_ml.json"
curl -fs "$url/versions" >"$logs/versions_v1.json"
ok serve "$logs/health_ml.json" "$logs/versions_v1.json" v1.0.0 "$url"

begin traffic
$python "$helper" traffic "$url" "$data/splits/test.json" "$requests" "$logs/traffic.json" 2>>"$log"
ok traffic "$logs/traffic.json" v1.0.0

begin register_v2
clf registry create --model-path "$export_dir" --version v1.1.0 --registry "$registry" >"$logs/register_v2.json"
ok register "$logs/register_v2.json" ""

begin validate
# Validation runs while the service is up but idle, so its latency check measures the model, not the traffic.
clf deploy validate v1.1.0 --deployment.registry "$registry" --sample-data "$data/splits/test.json" \
  --max-p95-latency-ms "$max_p95_latency_ms" >"$logs/validate.json"
ok validate "$logs/validate.json"

begin canary
$python "$helper" traffic "$url" "$data/splits/test.json" 0 "$logs/canary_traffic.json" 2>>"$log" &
traffic=$!
num_stages=$(($(tr -cd ',' <<<"$stages" | wc -c) + 1))
wait_seconds=$(awk -v n="$num_stages" -v s="$stage_seconds" 'BEGIN { print int(3 * n * s + 120) }')
# Validated in the step before; --skip-validation keeps its latency check away from the traffic loop.
clf deploy canary v1.1.0 --deployment.registry "$registry" --skip-validation true --deployment.stages "$stages" \
  --deployment.stage_seconds "$stage_seconds" --wait-seconds "$wait_seconds" >"$logs/canary.json"
kill -TERM "$traffic"
wait "$traffic"
traffic=""
clf deploy status --deployment.registry "$registry" >"$logs/canary_status.json"
ok canary "$logs/canary.json" "$logs/canary_status.json" "$logs/canary_traffic.json" v1.1.0

begin status
clf deploy status --deployment.registry "$registry" >"$logs/status.json"
curl -fs "$url/versions" >"$logs/versions_v2.json"
ok status "$logs/status.json" "$logs/versions_v2.json" v1.1.0

begin stop
stop_server
ok stop "$server_rc" "$logs/serve.log"
