"""Loopback load test of `clf serve`: requests/s and latency with dynamic batching on, then off, in one run.

    python tools/bench/service_load.py --model-path runs/quickstart/export --concurrency 16 --requests 400

For each mode it starts `python -m clf serve` on a free 127.0.0.1 port, waits for /health and /health/ml, sends a
few warm-up requests, then runs a closed loop: --concurrency client threads, each on its own keep-alive
connection, send single-paper POST /predict requests (real papers from the shared snapshot, in turn) until
--requests have been sent or --max-seconds have passed. It then reads the server's /metrics (whose percentiles
include the warm-up requests) and stops the server with SIGTERM. Without --registry, a temporary registry is built
from --model-path, holding it as v1.0.0 in production.

Writes tools/bench/results/service_load.json (--out) with the machine and the command, and prints one line per
mode and the on/off ratio. Exits 1 when any request got a 5xx or went unanswered, so the run doubles as a check.
The clients and the server share the machine's cores: compare the two modes of one run, not separate runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import signal
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
import torch

from clf.io import open_text
from clf.registry import ModelRegistry

REPO = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent / "results" / "service_load.json"
SNAPSHOT = REPO.parent / "shared" / "data" / "arxiv" / "papers.jsonl.gz"
WARMUP_REQUESTS = 8
REQUEST_TIMEOUT_S = 60.0
STARTUP_TIMEOUT_S = 180.0
SERVER_COUNTS = ("total", "requests_total", "errors_total", "error_rate")


def machine() -> dict[str, Any]:
    """The hardware and software the numbers were taken on."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if "model name" in line]
        cpu = names[0] if names else cpu
    return {
        "platform": platform.platform(),
        "cpu_model": cpu,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def load_papers(path: Path, limit: int) -> list[dict[str, str]]:
    """The first `limit` papers of the snapshot, as /predict bodies."""
    papers = []
    with open_text(path) as handle:
        for line in handle:
            record = json.loads(line)
            papers.append({"title": record["title"], "abstract": record["abstract"]})
            if len(papers) >= limit:
                break
    return papers


def start_server(
    registry: Path, version: str | None, batching: bool, args: argparse.Namespace, log: Path
) -> tuple[subprocess.Popen, str]:
    """Starts `python -m clf serve` on a free loopback port; returns (process, base url)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "clf", "serve", "--port", str(port), "--registry", str(registry)]
    command += ["--batching.max_wait_ms", str(args.max_wait_ms)]
    if args.max_batch_size is not None:  # else the server's default for its device
        command += ["--batching.max_batch_size", str(args.max_batch_size)]
    command += ["--batching.enabled", "true" if batching else "false"]
    command += ["--service.version", version] if version else []
    with log.open("w") as handle:
        process = subprocess.Popen(command, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT)
    return process, f"http://127.0.0.1:{port}"


def wait_ready(process: subprocess.Popen, url: str, log: Path) -> dict[str, Any]:
    """Polls /health, then /health/ml, until both answer 200; returns the health report.

    Raises:
        SystemExit: when the server exits or is not healthy within STARTUP_TIMEOUT_S, with its log's tail.
    """
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    last = "no answer"
    for path in ("/health", "/health/ml"):
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
                raise SystemExit(f"the server at {url} never got healthy (last {path}: {last}); its log:\n{tail}")
            try:
                response = requests.get(url + path, timeout=30)
                if response.status_code == 200:
                    break
                last = f"{response.status_code} {response.text[:300]}"
            except requests.RequestException as err:
                last = type(err).__name__
            time.sleep(0.2)
    return response.json()


def stop_server(process: subprocess.Popen) -> dict[str, Any]:
    """SIGTERM, then waits for the graceful exit (kills after 60 s); returns the exit code and the time taken.

    uvicorn re-raises the SIGTERM once its graceful shutdown is done, so -15 is the normal exit code here.
    """
    started = time.perf_counter()
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        code = f"killed after 60 s (exit {process.wait()})"
    return {"exit_code": code, "stop_s": round(time.perf_counter() - started, 3)}


def send(session: requests.Session, url: str, paper: dict[str, str]) -> dict[str, Any]:
    """One POST /predict: its status (None on a connection error), latency, and whether predictions came back."""
    started = time.perf_counter()
    try:
        response = session.post(url + "/predict", json=paper, timeout=REQUEST_TIMEOUT_S)
    except requests.RequestException as err:
        return {
            "status": None,
            "latency_ms": (time.perf_counter() - started) * 1000,
            "answered": False,
            "error": repr(err),
        }
    latency_ms = (time.perf_counter() - started) * 1000
    try:
        predictions = response.json().get("predictions") if response.ok else None
    except ValueError:
        predictions = None
    answered = bool(predictions) and all("label" in record for record in predictions)
    error = None if answered else f"{response.status_code}: {response.text[:200]}"
    return {"status": response.status_code, "latency_ms": latency_ms, "answered": answered, "error": error}


def closed_loop(
    url: str, papers: list[dict[str, str]], concurrency: int, total: int, max_seconds: float
) -> tuple[list[dict[str, Any]], float, bool]:
    """`concurrency` threads, one keep-alive session each, send requests back to back until `total` are sent.

    Returns:
        (one record per request sent, wall seconds of the loop, whether the time limit cut it short).
    """
    records: list[dict[str, Any]] = []
    lock = threading.Lock()
    sent = 0
    deadline = time.monotonic() + max_seconds

    def client() -> None:
        nonlocal sent
        with requests.Session() as session:
            while time.monotonic() < deadline:
                with lock:
                    if sent >= total:
                        return
                    index, sent = sent, sent + 1
                records.append(send(session, url, papers[index % len(papers)]))

    threads = [threading.Thread(target=client, name=f"client-{i}") for i in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return records, time.perf_counter() - started, sent < total


def summarise(records: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """Counts by outcome, client latency percentiles of the answered requests (numpy linear) and requests/s."""
    statuses = [record["status"] for record in records]
    answered = [record["latency_ms"] for record in records if record["answered"]]
    p50, p95, p99 = np.percentile(answered, [50, 95, 99]).tolist() if answered else (None, None, None)
    return {
        "sent": len(records),
        "answered": len(answered),
        "status_4xx": sum(status is not None and 400 <= status < 500 for status in statuses),
        "status_5xx": sum(status is not None and status >= 500 for status in statuses),
        "connection_errors": statuses.count(None),
        "seconds": round(seconds, 3),
        "requests_per_s": round(len(answered) / seconds, 2) if seconds > 0 else None,
        "latency_ms": {
            key: None if v is None else round(v, 2) for key, v in (("p50", p50), ("p95", p95), ("p99", p99))
        },
        "error_samples": sorted({record["error"] for record in records if record["error"]})[:5],
    }


def run_mode(registry: Path, batching: bool, papers: list[dict[str, str]], args: argparse.Namespace) -> dict[str, Any]:
    """Starts a server in one mode, warms it up, loads it, reads its /metrics and stops it."""
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "server.log"
        process, url = start_server(registry, args.version, batching, args, log)
        try:
            started = time.perf_counter()
            health = wait_ready(process, url, log)
            startup_s = time.perf_counter() - started
            with requests.Session() as session:
                warmup = [send(session, url, papers[i % len(papers)]) for i in range(WARMUP_REQUESTS)]
            records, seconds, cut_short = closed_loop(url, papers, args.concurrency, args.requests, args.max_seconds)
            window = min(60.0, (time.perf_counter() - started) / 60 + 1)
            metrics = requests.get(f"{url}/metrics", params={"window_minutes": window}, timeout=30).json()
        finally:
            stopped = stop_server(process) if process.poll() is None else {"exit_code": process.returncode}
        lines = log.read_text(errors="replace").splitlines()
    server_metrics = {k: v for k, v in metrics.items() if k in SERVER_COUNTS or k.startswith("latency_")}
    return {
        "batching": batching,
        "client": {**summarise(records, seconds), "stopped_by_time_limit": cut_short},
        "warmup": {"sent": len(warmup), "answered": sum(record["answered"] for record in warmup)},
        "server_metrics": {key: round(v, 2) if isinstance(v, float) else v for key, v in server_metrics.items()},
        "server": {
            "version": health.get("live_version"),
            "startup_s": round(startup_s, 3),
            **stopped,
            "graceful_shutdown": any("Application shutdown complete" in line for line in lines),
            "log_error_lines": [line[:300] for line in lines if "ERROR" in line or "Traceback" in line][:10],
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Runs both modes, writes the JSON, prints a summary; returns 1 when any request failed, else 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", type=Path, default=None, help="default: a temporary one from --model-path")
    parser.add_argument("--model-path", type=Path, default=REPO / "runs" / "quickstart" / "export")
    parser.add_argument("--version", default=None, help="default: the registry's production version")
    parser.add_argument("--snapshot", type=Path, default=SNAPSHOT)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--max-batch-size", type=int, default=None, help="default: clf serve's for the device")
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--max-seconds", type=float, default=300.0, help="each load phase's limit, checked per request")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    command = shlex.join(["python", "tools/bench/service_load.py", *(sys.argv[1:] if argv is None else argv)])
    papers = load_papers(args.snapshot, limit=max(args.requests, WARMUP_REQUESTS))

    with tempfile.TemporaryDirectory() as tmp:
        registry = args.registry
        if registry is None:
            if not (args.model_path / "model.safetensors").is_file():
                raise SystemExit(f"{args.model_path} holds no export: run the quickstart, or pass --registry DIR")
            registry = Path(tmp) / "registry"
            models = ModelRegistry(registry)
            models.create_version(args.model_path, "v1.0.0")
            models.promote_to_production("v1.0.0", reason="service_load benchmark")
        modes = {f"batching_{'on' if on else 'off'}": run_mode(registry, on, papers, args) for on in (True, False)}

    on, off = modes["batching_on"]["client"], modes["batching_off"]["client"]
    failed = any(
        mode["client"]["status_5xx"]
        or mode["client"]["answered"] < mode["client"]["sent"]
        or mode["warmup"]["answered"] < mode["warmup"]["sent"]
        for mode in modes.values()
    )
    result = {
        "benchmark": "service_load",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "machine": machine(),
        "config": {
            "registry": str(args.registry) if args.registry else f"temporary, from {args.model_path} as v1.0.0",
            "version": modes["batching_on"]["server"]["version"],
            **{key: getattr(args, key) for key in ("concurrency", "requests", "max_batch_size", "max_wait_ms")},
            "max_seconds": args.max_seconds,
            "warmup_requests": WARMUP_REQUESTS,
            "snapshot": str(args.snapshot),
            "distinct_papers": len(papers),
        },
        "modes": modes,
        "ratio": {
            "requests_per_s_on_over_off": round(on["requests_per_s"] / off["requests_per_s"], 3)
            if on["requests_per_s"] and off["requests_per_s"]
            else None,
            "p95_ms_on": on["latency_ms"]["p95"],
            "p95_ms_off": off["latency_ms"]["p95"],
        },
        "ok": not failed,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for name, mode in modes.items():
        c, s = mode["client"], mode["server_metrics"]
        print(
            f"{name:<13} {c['answered']}/{c['sent']} answered, 4xx {c['status_4xx']}, 5xx {c['status_5xx']}, "
            f"conn errors {c['connection_errors']}; {c['requests_per_s']} req/s; client p50/p95/p99 "
            f"{c['latency_ms']['p50']}/{c['latency_ms']['p95']}/{c['latency_ms']['p99']} ms; "
            f"server p50/p95 {s['latency_p50_ms']}/{s['latency_p95_ms']} ms"
        )
    ratio = result["ratio"]
    print(
        f"batching on/off: {ratio['requests_per_s_on_over_off']}x requests/s; "
        f"p95 {ratio['p95_ms_on']} ms on vs {ratio['p95_ms_off']} ms off  →  {args.out}"
    )
    if any(mode["client"]["stopped_by_time_limit"] for mode in modes.values()):
        print(f"note: --max-seconds {args.max_seconds:g} cut a load phase short of {args.requests} requests")
    if failed:
        print("FAILED: some requests got a 5xx or no predictions (see error_samples in the JSON)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
