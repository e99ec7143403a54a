"""Throughput of 1, 2 and 3 `clf serve` replicas behind nginx, what nginx adds, and one replica against its ceiling.

    python tools/bench/fleet_throughput.py --model-path runs/quickstart/export --replicas 1,2,3 --levels 1,2,4,8,16

1. **Ceiling**: the bare predictor (`ModelPredictor`, the path the service runs) on the same machine, for each
   dtype the hardware runs natively (float32, and bfloat16 where `cpu_has_native_bfloat16`): papers/s in requests
   of 32 (length-sorted passes of 8, as the service runs them) and one paper at a time, on the first
   --ceiling-papers of new_papers.jsonl.gz (published after every training paper) whose primary category the model
   knows; the accuracy of each dtype there, and the share of top-1 labels bfloat16 agrees with float32 on.
2. **Fleet**: for each replica count, that many `clf serve` processes on one registry (their defaults: `--service.dtype
   auto`, `--workers 1`) behind a real nginx (tests/helpers/nginx.py's configuration), a closed loop of clients
   through nginx at each concurrency level for --seconds (tools/bench/capacity.py's `load_level`): papers/s,
   latency p50/p95, the knee (the lowest level within 95 % of the best).
3. **nginx's cost**: one replica, one client, the same papers sent straight to the replica and through nginx.

Writes tools/bench/results/fleet_throughput.json (--out). Every process — replicas, nginx and the client threads —
shares this machine's cores: on 2 cores, replicas beyond the second add no CPU, only contention, so the figures say
what a fleet on one small machine does, not what replicas on their own machines would.
"""

from __future__ import annotations

import argparse
import json
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from capacity import knee, load_level  # noqa: E402
from service_load import SNAPSHOT, load_papers, machine, stop_server, wait_ready  # noqa: E402

from clf.inference.predictor import ModelPredictor, cpu_has_native_bfloat16  # noqa: E402
from clf.io import read_jsonl  # noqa: E402
from clf.registry import ModelRegistry  # noqa: E402
from clf.serving.inputs import paper_texts  # noqa: E402
from tests.helpers.nginx import NginxServer  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent / "results" / "fleet_throughput.json"
NEW_PAPERS = SNAPSHOT.parent / "new_papers.jsonl.gz"


def ceiling(model_path: Path, texts: list[str], truth: list[str], dtype: str) -> dict[str, Any]:
    """The bare predictor's papers/s in requests of 32 and one at a time, its accuracy, and its top-1 labels."""
    predictor = ModelPredictor(model_path, "bench", dtype=dtype)  # type: ignore[arg-type]
    predictor.predict_texts(texts[:8])
    started = time.perf_counter()
    labels = []
    for start in range(0, len(texts), 32):
        labels += [record.label for record in predictor.predict_texts(texts[start : start + 32], batch_size=8)]
    batched = len(texts) / (time.perf_counter() - started)
    single = texts[:100]
    started = time.perf_counter()
    for text in single:
        predictor.predict_texts([text], batch_size=1)
    one_at_a_time = len(single) / (time.perf_counter() - started)
    accuracy = float(np.mean([label == true for label, true in zip(labels, truth, strict=True)]))
    return {
        "dtype": dtype,
        "papers_per_s_requests_of_32": round(batched, 1),
        "papers_per_s_one_at_a_time": round(one_at_a_time, 1),
        "accuracy": round(accuracy, 4),
        "papers": len(texts),
        "labels": labels,
    }


def start_replicas(registry: Path, count: int, folder: Path) -> list[tuple[subprocess.Popen, str, Path]]:
    """`count` replicas of `clf serve` on free loopback ports; returns (process, url, log) each, ready."""
    started = []
    for index in range(count):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        log = folder / f"replica-{count}-{index}.log"
        command = [
            sys.executable, "-m", "clf", "serve", "--registry", str(registry), "--port", str(port),
            "--fleet.replica_id", f"r{index}", "--alerts.interval_seconds", "3600",
        ]  # fmt: skip
        with log.open("w") as handle:
            process = subprocess.Popen(command, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT)
        started.append((process, f"http://127.0.0.1:{port}", log))
    for process, url, log in started:
        wait_ready(process, url, log)
    return started


def latency_ms(url: str, papers: list[dict[str, str]]) -> list[float]:
    """One client, one paper at a time: each request's latency."""
    seconds = []
    with requests.Session() as session:
        for paper in papers:
            began = time.perf_counter()
            assert session.post(f"{url}/predict", json=paper, timeout=60).status_code == 200
            seconds.append((time.perf_counter() - began) * 1000)
    return seconds


def _serving_line(log: Path) -> str | None:
    """The replica's "serving v1.0.0 on ... (cpu, bfloat16; ...)" start-up line: which device and dtype it picked."""
    lines = [line for line in log.read_text(errors="replace").splitlines() if "serving v1.0.0 on" in line]
    return lines[-1].split("clf.serving.http: ")[-1] if lines else None


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ceiling, the fleets and the nginx comparison; writes the JSON; returns 1 when a request failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-path", type=Path, default=REPO / "runs" / "quickstart" / "export")
    parser.add_argument("--snapshot", type=Path, default=SNAPSHOT)
    parser.add_argument("--replicas", default="1,2,3")
    parser.add_argument("--levels", default="1,2,4,8,16")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--ceiling-papers", type=int, default=320)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    command = shlex.join(["python", "tools/bench/fleet_throughput.py", *(sys.argv[1:] if argv is None else argv)])
    if not (args.model_path / "model.safetensors").is_file():
        raise SystemExit(f"{args.model_path} holds no export: run the quickstart, or pass --model-path")
    papers = load_papers(args.snapshot, limit=500)
    known = set(ModelPredictor(args.model_path, "labels").labels)
    unseen = [record for _, record in read_jsonl(NEW_PAPERS) if record["primary"] in known][: args.ceiling_papers]
    bodies = [{"title": record["title"], "abstract": record["abstract"]} for record in unseen]
    texts = paper_texts(bodies, max_inputs=len(bodies), max_text_chars=20_000)
    truth = [record["primary"] for record in unseen]

    dtypes = ["float32", "bfloat16"] if cpu_has_native_bfloat16() else ["float32"]
    ceilings = [ceiling(args.model_path, texts, truth, dtype) for dtype in dtypes]
    if len(ceilings) == 2:
        agree = np.mean([a == b for a, b in zip(ceilings[0]["labels"], ceilings[1]["labels"], strict=True)])
        ceilings[1]["top1_agreement_with_float32"] = round(float(agree), 4)
    for entry in ceilings:
        entry.pop("labels")
        print(f"ceiling {entry}", flush=True)

    fleets, failed = [], False
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        registry = folder / "registry"
        models = ModelRegistry(registry)
        models.create_version(args.model_path, "v1.0.0")
        models.promote_to_production("v1.0.0", reason="fleet benchmark")
        nginx_cost: dict[str, Any] = {}
        for count in [int(n) for n in args.replicas.split(",")]:
            replicas = start_replicas(registry, count, folder)
            try:
                with NginxServer([url.removeprefix("http://") for _, url, _ in replicas]) as nginx:
                    for _ in range(8):
                        requests.post(f"{nginx.url}/predict", json=papers[0], timeout=60)
                    if count == 1:
                        direct = latency_ms(replicas[0][1], papers[:150])
                        proxied = latency_ms(nginx.url, papers[:150])
                        nginx_cost = {
                            "requests": 150,
                            "direct_p50_ms": round(float(np.median(direct)), 2),
                            "nginx_p50_ms": round(float(np.median(proxied)), 2),
                            "added_p50_ms": round(float(np.median(proxied) - np.median(direct)), 2),
                            "direct_p95_ms": round(float(np.percentile(direct, 95)), 2),
                            "nginx_p95_ms": round(float(np.percentile(proxied, 95)), 2),
                        }
                        print(f"nginx: {nginx_cost}", flush=True)
                    levels = []
                    for clients in [int(level) for level in args.levels.split(",")]:
                        level = load_level(nginx.url, papers, clients, args.seconds, 1.0, 30.0)
                        failed |= bool(level["other_errors"]) or not level["answered"]
                        levels.append(level)
                        print(
                            f"{count} replicas, {clients:>3} clients: {level['papers_per_s']:>6.1f} papers/s, p50/p95 "
                            f"{level['latency_ms']['p50']}/{level['latency_ms']['p95']} ms, 429 {level['shed_429']}",
                            flush=True,
                        )
                at_knee = knee(levels)
                fleets.append(
                    {
                        "replicas": count,
                        "levels": levels,
                        "knee": {"clients": at_knee["clients"], "papers_per_s": at_knee["papers_per_s"]},
                        "best_papers_per_s": max(level["papers_per_s"] for level in levels),
                        "start_up_log": _serving_line(replicas[0][2]),
                    }
                )
            finally:
                for process, _, _ in replicas:
                    stop_server(process)
            time.sleep(1.0)

    result = {
        "benchmark": "fleet_throughput",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "machine": machine(),
        "model_path": str(args.model_path),
        "seconds_per_level": args.seconds,
        "ceiling": ceilings,
        "nginx": nginx_cost,
        "fleets": fleets,
        "ok": not failed,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for fleet in fleets:
        print(f"{fleet['replicas']} replicas: best {fleet['best_papers_per_s']} papers/s, knee {fleet['knee']}")
    print(f"-> {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
