"""What the quality watch costs one `clf serve` replica: papers/s at a fixed concurrency with the monitors off and on.

    python tools/bench/quality_overhead.py --model-path runs/quickstart/export --clients 4 --seconds 20 --rounds 3

Each round starts three servers in turn on the same registry and papers: monitors off (``--quality.enabled false``);
the quality watch alone (its defaults: windows of 300 answers tested against the artifact's reference sample, 1,000
permutations); and on (the watch, and every answer logged to a SQLite labels database, ``--quality.db``). Each is
driven by the same closed loop of clients as `capacity.py` (at the knee it found: 4 clients on this 2-core machine).
Alternating the modes within each round spreads slow drifts of the machine over all three. Reports each run's
papers/s, the medians' ratios, the ratio within each round, and what the watch did (windows tested, answers flagged
out of scope). Writes tools/bench/results/quality_overhead.json (--out).
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from capacity import load_level, start  # noqa: E402
from service_load import SNAPSHOT, load_papers, machine, stop_server, wait_ready  # noqa: E402

from clf.registry import ModelRegistry  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "quality_overhead.json"
MODES = ("off", "watch", "on")
"""Monitors off; the quality watch alone (no labels database); the watch and every answer logged for late labels."""
WATCH_KEYS = ("papers", "out_of_scope", "windows", "alarms", "dropped_windows")


def main(argv: list[str] | None = None) -> int:
    """Runs the rounds, writes the JSON, prints one line per run; returns 1 when a run answered nothing."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-path", type=Path, default=Path("runs/quickstart/export"))
    parser.add_argument("--snapshot", type=Path, default=SNAPSHOT)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.max_queue = args.max_batch_size = None
    args.request_timeout, args.max_backoff_s = 30.0, 1.0
    command = shlex.join(["python", "tools/bench/quality_overhead.py", *(sys.argv[1:] if argv is None else argv)])
    papers = load_papers(args.snapshot, limit=1000)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        registry = Path(tmp) / "registry"
        models = ModelRegistry(registry)
        models.create_version(args.model_path, "v1.0.0")
        models.promote_to_production("v1.0.0", reason="quality overhead benchmark")
        for round_ in range(args.rounds):
            for monitors in MODES:
                extra = {
                    "off": ["--quality.enabled", "false"],
                    "watch": [],
                    "on": ["--quality.db", f"sqlite:///{tmp}/labels-{round_}.db"],
                }[monitors]
                log = Path(tmp) / f"server-{round_}-{monitors}.log"
                process, url = start(registry, args, log, extra)
                try:
                    wait_ready(process, url, log)
                    for paper in papers[:8]:
                        requests.post(f"{url}/predict", json=paper, timeout=60)
                    level = load_level(url, papers, args.clients, args.seconds, args.max_backoff_s, 30.0)
                    quality = requests.get(f"{url}/quality", timeout=60)
                    watched = quality.json()["versions"].get("v1.0.0", {}) if quality.ok else None
                finally:
                    stop_server(process) if process.poll() is None else None
                run = {
                    "round": round_,
                    "monitors": monitors,
                    "papers_per_s": level["papers_per_s"],
                    "answered": level["answered"],
                    "latency_ms": level["latency_ms"],
                    "watch": None if watched is None else {k: watched.get(k) for k in WATCH_KEYS},
                }
                runs.append(run)
                print(f"round {round_} monitors {monitors}: {run['papers_per_s']} papers/s, {run['watch']}", flush=True)
    median = {mode: statistics.median(r["papers_per_s"] for r in runs if r["monitors"] == mode) for mode in MODES}
    result = {
        "benchmark": "quality_overhead",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "machine": machine(),
        "config": {"model_path": str(args.model_path), "clients": args.clients, "seconds": args.seconds},
        "runs": runs,
        "median_papers_per_s": median,
        "watch_over_off": round(median["watch"] / median["off"], 4),
        "on_over_off": round(median["on"] / median["off"], 4),
        "paired_on_over_off": [
            round(on["papers_per_s"] / off["papers_per_s"], 4) for off, on in zip(runs[0::3], runs[2::3], strict=True)
        ],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"monitors on / off: {result['on_over_off']:.3f} ({median['on']} / {median['off']} papers/s) -> {args.out}")
    return 0 if all(r["answered"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
