"""What hostile or careless clients can do to a running `clf serve`: each attack replayed, its outcome recorded.

    python tools/bench/hostile_clients.py --model-path runs/quickstart/export
    python tools/bench/hostile_clients.py --model-path EXPORT --checkout ../clf-old --out before.json  # another tree

Each attack gets a fresh registry (v1.0.0 released, v1.1.0 promoted over it, so a rollback has somewhere to go) and
its own `clf serve` process with its default flags, started from --checkout (this repository by default; any other
checkout of clf, to measure before and after a change), then the attack, then --settle-s seconds for the
deployment controller to act (its default interval is 5 s):

* garbage: 60 requests, every third with a lone surrogate in its abstract; did production move?
* load: 16 concurrent clients, 400 requests; latency, and did the rollback monitor act on it?
* burst: 128 concurrent clients × 4 requests; the answers by status, latency of the answered ones;
* nesting: one body nested 5,000 arrays deep; the status and content type of the answer;
* feedback: a true label for a prediction of a running A/B experiment, sent without any token.

Writes tools/bench/results/hostile_clients.json (--out) and prints one line per attack.
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
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from service_load import SNAPSHOT, load_papers, machine, stop_server, wait_ready  # noqa: E402

from clf.deploy import DeploymentStore  # noqa: E402
from clf.registry import ModelRegistry  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent / "results" / "hostile_clients.json"
SURROGATE = b'{"title": "ab", "abstract": "c \\ud800 d"}'
JSON = {"content-type": "application/json"}


def released_twice(folder: Path, export: Path) -> ModelRegistry:
    """v1.0.0 in production, then v1.1.0 promoted over it."""
    registry = ModelRegistry(folder)
    for version in ("v1.0.0", "v1.1.0"):
        registry.create_version(export, version)
        registry.promote_to_production(version, reason="hostile_clients benchmark")
    return registry


class Server:
    """`clf serve --registry R --port P [extra]` run from `checkout`, logging to a file."""

    def __init__(self, checkout: Path, registry: Path, extra: Sequence[str], log: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        command = [sys.executable, "-m", "clf", "serve", "--port", str(port), "--registry", str(registry), *extra]
        with log.open("w") as handle:
            self.process = subprocess.Popen(command, cwd=checkout, stdout=handle, stderr=subprocess.STDOUT)
        self.url, self.log = f"http://127.0.0.1:{port}", log

    def __enter__(self) -> Server:
        wait_ready(self.process, self.url, self.log)
        return self

    def __exit__(self, *exc: object) -> None:
        stop_server(self.process)


def post(url: str, body: bytes, timeout: float = 60.0) -> tuple[int | None, float, str]:
    started = time.perf_counter()
    try:
        answer = requests.post(f"{url}/predict", data=body, headers=JSON, timeout=timeout)
        return answer.status_code, time.perf_counter() - started, answer.text[:200]
    except requests.RequestException as err:
        return None, time.perf_counter() - started, repr(err)


def concurrently(url: str, bodies: list[bytes], clients: int) -> list[tuple[int | None, float, str]]:
    """`clients` threads send `bodies` between them as fast as answers come."""
    results: list[tuple[int | None, float, str]] = []
    work = iter(bodies)
    lock = threading.Lock()

    def client() -> None:
        while True:
            with lock:
                body = next(work, None)
            if body is None:
                return
            results.append(post(url, body))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def outcome(results: list[tuple[int | None, float, str]]) -> dict[str, Any]:
    ok = [seconds * 1000 for status, seconds, _ in results if status == 200]
    p50, p95 = np.percentile(ok, [50, 95]).tolist() if ok else (None, None)
    return {
        "statuses": dict(sorted(Counter(str(status) for status, _, _ in results).items())),
        "answered_p50_ms": None if p50 is None else round(p50, 1),
        "answered_p95_ms": None if p95 is None else round(p95, 1),
        "samples": sorted({text for status, _, text in results if status != 200})[:3],
    }


def rollout(registry: ModelRegistry) -> dict[str, Any]:
    decisions = DeploymentStore(registry.base_dir).decisions()
    return {
        "production": registry.production_version(),
        "decisions": [f"{d['action']}: {d['reason']}" for d in decisions if d["action"] != "requested"],
    }


def garbage(url: str, papers: list[bytes], registry: ModelRegistry, settle_s: float) -> dict[str, Any]:
    results = [post(url, SURROGATE if n % 3 == 0 else papers[n % len(papers)]) for n in range(60)]
    time.sleep(settle_s)
    bad, good = results[::3], [r for n, r in enumerate(results) if n % 3]
    return {"surrogate_requests": outcome(bad), "good_requests": outcome(good), **rollout(registry)}


def load(url: str, papers: list[bytes], registry: ModelRegistry, settle_s: float) -> dict[str, Any]:
    started = time.perf_counter()
    results = concurrently(url, [papers[n % len(papers)] for n in range(400)], clients=16)
    seconds = time.perf_counter() - started
    time.sleep(settle_s)
    answered = sum(status == 200 for status, _, _ in results)
    return {**outcome(results), "requests_per_s": round(answered / seconds, 1), **rollout(registry)}


def burst(url: str, papers: list[bytes], registry: ModelRegistry, settle_s: float) -> dict[str, Any]:
    results = concurrently(url, [papers[n % len(papers)] for n in range(512)], clients=128)
    worst = max(seconds for _, seconds, _ in results)
    return {**outcome(results), "slowest_s": round(worst, 2)}


def nesting(url: str, papers: list[bytes], registry: ModelRegistry, settle_s: float) -> dict[str, Any]:
    answer = requests.post(f"{url}/predict", data=b"[" * 5000 + b"]" * 5000, headers=JSON, timeout=60)
    return {"status": answer.status_code, "content_type": answer.headers.get("content-type"), "body": answer.text[:160]}


def feedback(url: str, papers: list[bytes], registry: ModelRegistry, settle_s: float) -> dict[str, Any]:
    paper = {**json.loads(papers[0]), "user_id": "user-1"}
    prediction = requests.post(f"{url}/predict", json=paper, timeout=60).json()["predictions"][0]
    body = {"prediction_id": prediction["prediction_id"], "true_label": "cs.CV"}
    answer = requests.post(f"{url}/feedback", json=body, timeout=60)
    return {"experiment_arm": prediction.get("arm"), "status": answer.status_code, "body": answer.text[:200]}


ATTACKS: dict[str, Callable[[str, list[bytes], ModelRegistry, float], dict[str, Any]]] = {
    "garbage": garbage,
    "load": load,
    "burst": burst,
    "nesting": nesting,
    "feedback": feedback,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Replays every attack on its own server, writes the JSON, prints a line per attack; returns 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-path", type=Path, default=REPO / "runs" / "quickstart" / "export")
    parser.add_argument("--checkout", type=Path, default=REPO, help="the clf tree whose `clf serve` is attacked")
    parser.add_argument("--snapshot", type=Path, default=SNAPSHOT)
    parser.add_argument("--settle-s", type=float, default=7.0, help="wait after an attack for the controller to act")
    parser.add_argument("--attacks", default=",".join(ATTACKS), help="which, comma-separated")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    command = shlex.join(["python", "tools/bench/hostile_clients.py", *(sys.argv[1:] if argv is None else argv)])
    papers = [json.dumps(paper).encode() for paper in load_papers(args.snapshot, limit=64)]
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=args.checkout, capture_output=True, text=True, check=False
    ).stdout.strip()
    results: dict[str, Any] = {}
    for name in args.attacks.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            registry = released_twice(Path(tmp) / "registry", args.model_path)
            extra: list[str] = []
            if name == "feedback":
                extra = ["--feedback.experiments_db", f"sqlite:///{Path(tmp) / 'experiments.db'}"]
                from clf.experiments import ABTestingFramework

                framework = ABTestingFramework(extra[1], registry=registry)
                framework.create_experiment("hostile", "v1.1.0", "v1.0.0", traffic_split=0.5)
                framework.close()
            with Server(args.checkout, registry.base_dir, extra, Path(tmp) / "server.log") as server:
                results[name] = ATTACKS[name](server.url, papers, registry, args.settle_s)
        print(f"{name}: {json.dumps(results[name])[:400]}", flush=True)
    report = {
        "benchmark": "hostile_clients",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "checkout": {"path": str(args.checkout), "commit": commit},
        "machine": machine(),
        "model_path": str(args.model_path),
        "attacks": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
