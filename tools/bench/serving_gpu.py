"""The serving path on a GPU: `ClassificationService` with a DistilBERT-base-sized model on CUDA, and what dynamic
batching buys there, in one process.

    python tools/bench/serving_gpu.py --tokenizer DIR --papers data/splits/test.json --output gpu_serving.json

Builds a randomly initialised DistilBERT base (6 layers, width 768: weights do not change the timing) and exports
it as `clf fit` would, then (1) serves it through `ClassificationService(device="auto")`: a prediction, a hot swap
to a second copy, batch statistics; (2) times the same papers one at a time, in one pass, and in length-sorted
passes of 8 and 64, in float32 and bfloat16, with CUDA synchronised around each timing. Writes the JSON result.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer

from clf.data.cleaning import model_input_text
from clf.inference.predictor import ModelPredictor
from clf.io import read_json
from clf.model.export import export_model
from clf.model.module import ArxivClassifier
from clf.serving.service import ClassificationService

LABELS = {i: label for i, label in enumerate(["cs.AI", "cs.CL", "cs.CV", "cs.LG", "cs.RO"])}


def build_export(tokenizer_dir: str, out_dir: Path) -> Path:
    """A random DistilBERT-base classifier exported with the given tokenizer."""
    torch.manual_seed(0)
    module = ArxivClassifier(
        pretrained=tokenizer_dir,
        num_labels=len(LABELS),
        id2label=LABELS,
        random_init=True,
        config_overrides={"model_type": "distilbert", "vocab_size": 30522},
        max_length=256,
    )
    return export_model(module, AutoTokenizer.from_pretrained(tokenizer_dir), out_dir)


def timed(run: Callable[[], Any], repeats: int = 3) -> float:
    """Best wall-clock seconds of `repeats` runs after a warm-up, CUDA synchronised."""
    run()
    best = float("inf")
    for _ in range(repeats):
        torch.cuda.synchronize() if torch.cuda.is_available() else None
        start = time.perf_counter()
        run()
        torch.cuda.synchronize() if torch.cuda.is_available() else None
        best = min(best, time.perf_counter() - start)
    return best


def forward_costs(predictor: ModelPredictor, texts: list[str]) -> dict[str, float]:
    """Milliseconds per paper for each way of classifying `texts`."""
    variants = {
        "single": lambda: [predictor.predict_probabilities([t], 1) for t in texts],
        "sorted_passes_of_8": lambda: predictor.predict_probabilities(texts, 8),
        "sorted_passes_of_64": lambda: predictor.predict_probabilities(texts, 64),
        "one_pass": lambda: predictor.predict_probabilities(texts, len(texts)),
    }
    return {name: timed(run) / len(texts) * 1000 for name, run in variants.items()}


def main() -> None:
    """Runs the checks and the timings and writes the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--papers", type=Path, required=True, help="a split file with title/abstract samples")
    parser.add_argument("--count", type=int, default=256)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()

    samples = read_json(args.papers)["samples"][: args.count]
    texts = [model_input_text(s.get("title", ""), s.get("abstract", ""), s.get("text")) for s in samples]
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "papers": len(texts),
    }
    with tempfile.TemporaryDirectory() as root:
        from clf.registry import ModelRegistry

        export = build_export(args.tokenizer, Path(root) / "export")
        registry = ModelRegistry(Path(root) / "registry")
        for version in ("v1.0.0", "v1.1.0"):
            registry.create_version(export, version)
        registry.promote_to_production("v1.0.0")
        service = ClassificationService(registry)
        answer = service.predict(texts[:4])
        service.swap("v1.1.0")
        after = service.predict(texts[4:8])
        result["service"] = {
            "device": service.device,
            "max_batch_size": service.batching.max_batch_size,
            "forward_batch_size": service.batching.forward_batch_size,
            "first_answer": answer[0].to_json(),
            "versions_before_and_after_swap": [answer[0].version, after[0].version],
            "batch_stats": service.batch_stats(),
        }
        predictor = service.predictor()
        result["ms_per_paper"] = {"float32": forward_costs(predictor, texts)}
        predictor.model.to(torch.bfloat16)
        result["ms_per_paper"]["bfloat16"] = forward_costs(predictor, texts)
        service.close()
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
