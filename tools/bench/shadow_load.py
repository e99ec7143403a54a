"""What a shadow at share 1.0 costs users: their p95 below the knee and their 429s above it, with and without it.

    python tools/bench/shadow_load.py --model-path runs/quickstart/export --below 2 --above 16 --seconds 20 --rounds 3

Each round starts two servers in turn (a fresh registry each, the same model registered as production and as the
candidate): no shadow, then ``clf deploy shadow v1.1.0 --share 1.0`` (a stage far longer than the run, so it stays
on). Each is driven by `capacity.py`'s closed loop of clients at two levels: `--below` clients (under the knee
`capacity.py` found: 4 on this 2-core machine) and `--above` (past it, where production sheds with 429). After each
level the shadow's counts are read from ``GET /shadow``: at share 1.0 every paper a user got an answer for is either
mirrored to the candidate or dropped by its bounded queue, and the run checks that they add up.

Targets (docs/DEPLOYMENT.md, Shadow): below the knee the users' p95 with the shadow within 10 % of without; above
it, no more 429s with the shadow than without (the shadow sheds first). Writes tools/bench/results/shadow_load.json
(--out).
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from capacity import load_level, start  # noqa: E402
from service_load import SNAPSHOT, load_papers, machine, stop_server, wait_ready  # noqa: E402

from clf.deploy import request_deployment  # noqa: E402
from clf.registry import ModelRegistry  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "shadow_load.json"
MODES = ("none", "shadow")
COUNTS = ("mirrored", "answered", "errors", "dropped")


def run_server(registry: Path, args: argparse.Namespace, papers: list[dict[str, str]], mode: str, log: Path) -> dict:
    """One server in one mode: both load levels, with the shadow's counts after each."""
    process, url = start(registry, args, log, ["--fleet.deploy_interval_seconds", "0.5"])
    levels = {}
    try:
        wait_ready(process, url, log)
        if mode == "shadow":
            models = ModelRegistry(registry)
            request_deployment(models, "shadow", "v1.1.0", share=1.0, stage_seconds=10**9)
            deadline = time.monotonic() + 120
            while requests.get(f"{url}/shadow", timeout=30).status_code != 200:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the shadow did not start; see {log}")
                time.sleep(0.2)
        for paper in papers[:8]:
            requests.post(f"{url}/predict", json=paper, timeout=60)
        time.sleep(1.0)  # the warm-up's mirrors answered before counting starts
        before = _shadow_counts(url)
        for name, clients in (("below", args.below), ("above", args.above)):
            level = load_level(url, papers, clients, args.seconds, args.max_backoff_s, args.request_timeout)
            time.sleep(1.0)  # the mirrors queued at the end of the level are answered or dropped
            after = _shadow_counts(url)
            level["shadow"] = {key: after[key] - before[key] for key in COUNTS} if after else None
            if after:
                counted = level["shadow"]["mirrored"] + level["shadow"]["dropped"]
                level["shadow"]["every_answer_counted"] = counted == level["answered"]
            before = after
            levels[name] = level
    finally:
        stop_server(process) if process.poll() is None else None
    return levels


def _shadow_counts(url: str) -> dict[str, int] | None:
    answer = requests.get(f"{url}/shadow", timeout=30)
    return {key: int(answer.json()[key]) for key in COUNTS} if answer.status_code == 200 else None


def main(argv: list[str] | None = None) -> int:
    """Runs the rounds, writes the JSON, prints one line per run; returns 1 when a run answered nothing."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-path", type=Path, default=Path("runs/quickstart/export"))
    parser.add_argument("--snapshot", type=Path, default=SNAPSHOT)
    parser.add_argument("--below", type=int, default=2, help="clients below the knee")
    parser.add_argument("--above", type=int, default=16, help="clients above the knee")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.max_queue = args.max_batch_size = None
    args.request_timeout, args.max_backoff_s = 30.0, 1.0
    command = shlex.join(["python", "tools/bench/shadow_load.py", *(sys.argv[1:] if argv is None else argv)])
    papers = load_papers(args.snapshot, limit=1000)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for mode in MODES:
                registry = Path(tmp) / f"registry-{round_}-{mode}"
                models = ModelRegistry(registry)
                for version in ("v1.0.0", "v1.1.0"):
                    models.create_version(args.model_path, version)
                models.promote_to_production("v1.0.0", reason="shadow load benchmark")
                levels = run_server(registry, args, papers, mode, Path(tmp) / f"server-{round_}-{mode}.log")
                runs.append({"round": round_, "mode": mode, **levels})
                below, above = levels["below"], levels["above"]
                print(
                    f"round {round_} {mode}: below p95 {below['latency_ms']['p95']} ms, above 429s "
                    f"{above['shed_429']}, shadow {below['shadow']} / {above['shadow']}",
                    flush=True,
                )
    p95 = {m: statistics.median(r["below"]["latency_ms"]["p95"] for r in runs if r["mode"] == m) for m in MODES}
    shed = {m: statistics.median(r["above"]["shed_429"] for r in runs if r["mode"] == m) for m in MODES}
    shadowed = [r[level]["shadow"] for r in runs if r["mode"] == "shadow" for level in ("below", "above")]
    result = {
        "benchmark": "shadow_load",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "machine": machine(),
        "config": {
            "model_path": str(args.model_path),
            "below": args.below,
            "above": args.above,
            "seconds": args.seconds,
        },
        "runs": runs,
        "median_below_p95_ms": p95,
        "below_p95_shadow_over_none": round(p95["shadow"] / p95["none"], 4),
        "median_above_429": shed,
        "every_answer_counted": all(s and s["every_answer_counted"] for s in shadowed),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"below the knee p95 shadow / none: {result['below_p95_shadow_over_none']:.3f}; above it 429s {shed}; "
        f"every answer counted: {result['every_answer_counted']} -> {args.out}"
    )
    answered = all(r[level]["answered"] for r in runs for level in ("below", "above"))
    return 0 if answered and result["every_answer_counted"] else 1


if __name__ == "__main__":
    sys.exit(main())
