"""Where serving time goes: the same papers classified one at a time, in one padded batch, and in length-sorted
sub-batches, in float32 and bfloat16, by one `ModelPredictor` in one process.

    python tools/bench/batch_forward.py --model-path runs/quickstart/export --papers 32

This is what dynamic batching can win or lose on a machine: if one padded batch of N papers takes longer than N
single papers, gathering concurrent requests into one forward pass cannot raise requests/s there. Each variant is
timed --repeats times after a warm-up; the best time is kept (the least disturbed by other work). Writes
tools/bench/results/batch_forward.json (--out).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from clf.data.cleaning import model_input_text
from clf.inference.predictor import ModelPredictor
from clf.io import open_text

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SNAPSHOT = ROOT.parent / "shared" / "data" / "arxiv" / "papers.jsonl.gz"


def load_texts(snapshot: Path, count: int) -> list[str]:
    """The first `count` papers of the snapshot as model inputs."""
    texts = []
    with open_text(snapshot) as handle:
        for line in handle:
            paper = json.loads(line)
            texts.append(model_input_text(paper["title"], paper["abstract"]))
            if len(texts) == count:
                break
    return texts


def best_seconds(run: Callable[[], Any], repeats: int) -> float:
    """The fastest of `repeats` timed runs, after one untimed warm-up."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(predictor: ModelPredictor, texts: list[str], sub_batch: int, repeats: int) -> dict[str, float]:
    """Seconds per paper for each way of classifying `texts`."""
    ordered = sorted(texts, key=len)
    variants = {
        "single": lambda: [predictor.predict_texts([text]) for text in texts],
        "one_batch": lambda: predictor.predict_texts(texts, batch_size=len(texts)),
        f"sorted_batches_of_{sub_batch}": lambda: predictor.predict_texts(ordered, batch_size=sub_batch),
    }
    return {name: best_seconds(run, repeats) / len(texts) * 1000 for name, run in variants.items()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the comparison and writes the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-path", type=Path, default=ROOT / "runs" / "quickstart" / "export")
    parser.add_argument("--snapshot", type=Path, default=DEFAULT_SNAPSHOT)
    parser.add_argument("--papers", type=int, default=32)
    parser.add_argument("--sub-batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "tools" / "bench" / "results" / "batch_forward.json")
    args = parser.parse_args(argv)
    if not (args.model_path / "label_map.json").is_file():
        raise SystemExit(f"{args.model_path}: no export there; train one first (python -m clf fit --config ...)")

    predictor = ModelPredictor(args.model_path, "bench")
    texts = load_texts(args.snapshot, args.papers)
    tokens = [len(predictor.tokenizer(t, truncation=True, max_length=predictor.max_length)["input_ids"]) for t in texts]
    results: dict[str, Any] = {"float32": measure(predictor, texts, args.sub_batch, args.repeats)}
    predictor.model.to(torch.bfloat16)
    results["bfloat16"] = measure(predictor, texts, args.sub_batch, args.repeats)
    report = {
        "benchmark": "batch_forward",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": torch.get_num_threads(),
            "torch": torch.__version__,
        },
        "model": str(args.model_path),
        "papers": len(texts),
        "tokens_mean": sum(tokens) / len(tokens),
        "tokens_max": max(tokens),
        "ms_per_paper": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for dtype, variants in results.items():
        line = ", ".join(f"{name} {ms:.1f}" for name, ms in variants.items())
        print(f"{dtype:9} ms per paper: {line}")
    print(f"{len(texts)} papers, {report['tokens_mean']:.0f} tokens on average (max {max(tokens)}) → {args.out}")
    return report


if __name__ == "__main__":
    main()
