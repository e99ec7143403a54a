"""Capacity of one `clf serve` replica: papers/s and latency against concurrency, the knee, and what overload does.

    python tools/bench/capacity.py --model-path runs/quickstart/export --levels 1,2,4,8,16,32,64,128,200 --seconds 8

One server, started as users start it (the device's defaults; --max-queue and --request-timeout as given), takes a
closed loop of clients at each concurrency level in turn, for --seconds each: every client posts one paper, waits
for the answer, and posts the next; a client told 429 waits what Retry-After says (at most --max-backoff-s) before
it tries again, as a well-behaved client does. For each level: papers/s answered, client latency p50/p95 of the
answered requests, the counts of 429 and 504, and the server's own queue-wait and model-latency p95 over the level.

The knee is the lowest level whose throughput reaches 95 % of the best level's: beyond it, more clients only wait
longer (or are shed). Writes tools/bench/results/capacity.json (--out) and prints one line per level. The clients run
on the same cores as the server: on a 2-core machine they take a share of the CPU the server would otherwise have,
so the figures are a lower bound of what the replica does with its cores to itself.
"""

from __future__ import annotations

import argparse
import json
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from service_load import SNAPSHOT, load_papers, machine, stop_server, wait_ready  # noqa: E402

from clf.registry import ModelRegistry  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent / "results" / "capacity.json"
KNEE_SHARE = 0.95


def start(registry: Path, args: argparse.Namespace, log: Path, extra: Sequence[str] = ()) -> tuple[Any, str]:
    """`clf serve` on a free loopback port with the flags under test (and `extra` flags)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "clf", "serve", "--port", str(port), "--registry", str(registry)]
    command += ["--limits.request_timeout", str(args.request_timeout)]
    command += ["--batching.max_queue", str(args.max_queue)] if args.max_queue else []
    command += ["--batching.max_batch_size", str(args.max_batch_size)] if args.max_batch_size else []
    command += list(extra)
    with log.open("w") as handle:
        process = subprocess.Popen(command, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT)
    return process, f"http://127.0.0.1:{port}"


def load_level(
    url: str, papers: list[dict[str, str]], clients: int, seconds: float, max_backoff_s: float, timeout: float
) -> dict[str, Any]:
    """`clients` closed-loop clients for `seconds`; returns what they saw."""
    answers: list[tuple[int | None, float]] = []
    lock = threading.Lock()
    counter = iter(range(10**9))
    deadline = time.monotonic() + seconds

    def client() -> None:
        with requests.Session() as session:
            while time.monotonic() < deadline:
                with lock:
                    index = next(counter)
                started = time.perf_counter()
                try:
                    answer = session.post(f"{url}/predict", json=papers[index % len(papers)], timeout=timeout + 30)
                    status, retry = answer.status_code, float(answer.headers.get("retry-after", 0) or 0)
                except requests.RequestException:
                    status, retry = None, 0.0
                answers.append((status, time.perf_counter() - started))
                if status == 429:
                    time.sleep(min(retry, max_backoff_s, max(0.0, deadline - time.monotonic())))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    ok = [seconds for status, seconds in answers if status == 200]
    p50, p95 = (np.percentile(ok, [50, 95]) * 1000).tolist() if ok else (None, None)
    return {
        "clients": clients,
        "seconds": round(wall, 2),
        "answered": len(ok),
        "papers_per_s": round(len(ok) / wall, 2),
        "shed_429": sum(status == 429 for status, _ in answers),
        "timeouts_504": sum(status == 504 for status, _ in answers),
        "other_errors": sum(status not in (200, 429, 504) for status, _ in answers),
        "latency_ms": {"p50": _round(p50), "p95": _round(p95), "max": _round(max(ok) * 1000 if ok else None)},
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def knee(levels: list[dict[str, Any]]) -> dict[str, Any]:
    """The lowest level whose papers/s reaches `KNEE_SHARE` of the best.

    Args:
        levels: the measured levels, in increasing concurrency.

    Returns:
        That level.
    """
    best = max(level["papers_per_s"] for level in levels)
    return next(level for level in levels if level["papers_per_s"] >= KNEE_SHARE * best)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs every level against one server, writes the JSON, prints a table; returns 1 when any answer was a 5xx
    other than 504 or none came back."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-path", type=Path, default=REPO / "runs" / "quickstart" / "export")
    parser.add_argument("--snapshot", type=Path, default=SNAPSHOT)
    parser.add_argument("--levels", default="1,2,4,8,16,32,64,128,200", help="client counts, comma-separated")
    parser.add_argument("--seconds", type=float, default=8.0, help="load per level")
    parser.add_argument("--max-queue", type=int, default=None, help="default: clf serve's (4 x max batch size)")
    parser.add_argument("--max-batch-size", type=int, default=None, help="default: clf serve's for the device")
    parser.add_argument("--request-timeout", type=float, default=30.0)
    parser.add_argument("--max-backoff-s", type=float, default=1.0, help="longest wait a client honours after 429")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    command = shlex.join(["python", "tools/bench/capacity.py", *(sys.argv[1:] if argv is None else argv)])
    counts = [int(level) for level in args.levels.split(",")]
    papers = load_papers(args.snapshot, limit=500)
    if not (args.model_path / "model.safetensors").is_file():
        raise SystemExit(f"{args.model_path} holds no export: run the quickstart, or pass --model-path")

    with tempfile.TemporaryDirectory() as tmp:
        registry = Path(tmp) / "registry"
        models = ModelRegistry(registry)
        models.create_version(args.model_path, "v1.0.0")
        models.promote_to_production("v1.0.0", reason="capacity benchmark")
        log = Path(tmp) / "server.log"
        process, url = start(registry, args, log)
        levels = []
        try:
            wait_ready(process, url, log)
            for _ in range(8):
                requests.post(f"{url}/predict", json=papers[0], timeout=60)
            for clients in counts:
                level = load_level(url, papers, clients, args.seconds, args.max_backoff_s, args.request_timeout)
                window = {"window_minutes": max(args.seconds, 1.0) / 60}
                server = requests.get(f"{url}/metrics", params=window, timeout=60).json()
                level["server"] = {
                    key: _round(server.get(key)) for key in ("queue_p95_ms", "model_latency_p95_ms", "shed", "timeouts")
                }
                levels.append(level)
                print(
                    f"{clients:>4} clients: {level['papers_per_s']:>7.1f} papers/s, p50/p95 "
                    f"{level['latency_ms']['p50']}/{level['latency_ms']['p95']} ms, 429 {level['shed_429']}, "
                    f"504 {level['timeouts_504']}; server queue p95 {level['server']['queue_p95_ms']} ms, model p95 "
                    f"{level['server']['model_latency_p95_ms']} ms",
                    flush=True,
                )
            versions = requests.get(f"{url}/versions", timeout=60).json()
        finally:
            stopped = stop_server(process) if process.poll() is None else {"exit_code": process.returncode}
    at_knee = knee(levels)
    failed = any(level["other_errors"] for level in levels) or not all(level["answered"] for level in levels)
    result = {
        "benchmark": "capacity",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "machine": machine(),
        "config": {
            "model_path": str(args.model_path),
            "seconds_per_level": args.seconds,
            "request_timeout_s": args.request_timeout,
            "max_backoff_s": args.max_backoff_s,
            "batching": versions["batching"]["v1.0.0"],
        },
        "levels": levels,
        "knee": {"clients": at_knee["clients"], "papers_per_s": at_knee["papers_per_s"], "share_of_best": KNEE_SHARE},
        "server": stopped,
        "ok": not failed,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"knee: {at_knee['clients']} clients, {at_knee['papers_per_s']} papers/s  ->  {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
