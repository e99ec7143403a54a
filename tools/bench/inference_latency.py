"""Inference latency and throughput of one model served four ways — PyTorch eager (float32 and bfloat16), ONNX
float32 and ONNX int8 (onnxruntime) — with the accuracy of each on the same test split, in one process.

    python tools/bench/inference_latency.py --model-path runs/real/export --test-split data/real/splits/test.json
    python tools/bench/inference_latency.py --distilbert      # also a DistilBERT-base-sized model (random weights)

Every variant goes through `ModelPredictor`, the path `clf serve` runs: tokenisation, length-sorted padded passes,
softmax. Latency: one abstract per call, --latency-papers test papers after a warm-up, p50/p95/p99. Throughput:
the test papers in requests of 32, run in length-sorted passes of 8 (the CPU default of `clf serve`), papers/s.
Accuracy: every test paper, against its label. The random-weight DistilBERT has no meaningful accuracy: its rows
report latency and the top-1 agreement of each variant with float32 PyTorch instead. The ONNX files are exported
(`clf.model.onnx_export.export_onnx`) into a scratch copy of the model folder. Writes
tools/bench/results/inference_latency.json (--out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clf.data.cleaning import model_input_text
from clf.inference.predictor import ModelPredictor
from clf.io import read_json
from clf.model.onnx_export import export_onnx

ROOT = Path(__file__).resolve().parents[2]
VARIANTS = ("torch-fp32", "torch-bf16", "onnx-fp32", "onnx-int8")
"""The ways each model is served, in the order they are measured."""


def load_test_split(path: Path) -> tuple[list[str], list[str]]:
    """The model inputs and labels of a split file.

    Args:
        path: a split file written by `clf preprocess` (``{"samples": [...]}``).

    Returns:
        The texts and their labels, in file order.
    """
    samples = read_json(path)["samples"]
    texts = [sample.get("text") or model_input_text(sample["title"], sample["abstract"]) for sample in samples]
    return texts, [sample["label"] for sample in samples]


def build_distilbert_export(out_dir: Path, labels: list[str], tokenizer_dir: Path) -> Path:
    """A DistilBERT-base-sized classifier (6 layers, 768 wide) with random weights, saved as an export folder.

    Args:
        out_dir: where to write it.
        labels: its classes.
        tokenizer_dir: a folder with the uncased WordPiece tokenizer (DistilBERT's vocabulary).

    Returns:
        The export folder.
    """
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertForSequenceClassification

    torch.manual_seed(0)
    config = DistilBertConfig(num_labels=len(labels), id2label=dict(enumerate(labels)))
    DistilBertForSequenceClassification(config).save_pretrained(out_dir, safe_serialization=True)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(out_dir)
    label_map = {
        "id2label": {str(i): label for i, label in enumerate(labels)},
        "label2id": {label: i for i, label in enumerate(labels)},
        "multi_label": False,
        "max_length": 512,
    }
    (out_dir / "label_map.json").write_text(json.dumps(label_map))
    return out_dir


def load_variant(model_dir: Path, variant: str) -> ModelPredictor:
    """A predictor of `model_dir` for one of `VARIANTS`.

    Args:
        model_dir: an export folder with its ``onnx/`` files.
        variant: ``torch-fp32``, ``torch-bf16``, ``onnx-fp32`` or ``onnx-int8``.

    Returns:
        The predictor.
    """
    if variant.startswith("onnx"):
        return ModelPredictor(model_dir, "bench", backend="onnx", onnx_variant=variant.removeprefix("onnx-"))
    predictor = ModelPredictor(model_dir, "bench")
    if variant == "torch-bf16":
        predictor.model.to(torch.bfloat16)
    return predictor


def latency_ms(predictor: ModelPredictor, texts: list[str]) -> dict[str, float]:
    """Milliseconds to classify one abstract, over `texts` one at a time, after five warm-up calls.

    Args:
        predictor: the model.
        texts: the abstracts, each its own call.

    Returns:
        p50, p95, p99 and mean.
    """
    for text in texts[:5]:
        predictor.predict_probabilities([text])
    times = []
    for text in texts:
        start = time.perf_counter()
        predictor.predict_probabilities([text])
        times.append((time.perf_counter() - start) * 1000)
    p50, p95, p99 = np.percentile(times, [50, 95, 99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99), "mean": statistics.fmean(times)}


def classify_all(predictor: ModelPredictor, texts: list[str], request: int = 32, forward: int = 8) -> tuple[Any, float]:
    """Probabilities of every text, sent in requests of `request` texts run in sorted passes of `forward`.

    Args:
        predictor: the model.
        texts: the texts.
        request: texts per request.
        forward: texts per forward pass within a request.

    Returns:
        The ``(len(texts), num_labels)`` probabilities and the papers classified per second.
    """
    predictor.predict_probabilities(texts[:request], forward)
    start = time.perf_counter()
    parts = [predictor.predict_probabilities(texts[i : i + request], forward) for i in range(0, len(texts), request)]
    seconds = time.perf_counter() - start
    return torch.cat(parts).numpy(), len(texts) / seconds


def bench_model(
    name: str, model_dir: Path, texts: list[str], labels: list[str] | None, latency_papers: int
) -> dict[str, Any]:
    """Exports `model_dir` to ONNX (float32 and int8) and measures every variant on the same texts.

    Args:
        name: how the model is called in the results.
        model_dir: a scratch export folder (its ``onnx/`` is written).
        texts: test papers' model inputs.
        labels: their labels; None when accuracy is meaningless (random weights).
        latency_papers: how many papers the one-abstract latency is measured on.

    Returns:
        Per variant: latency, throughput, accuracy (or agreement with float32 PyTorch), and the export's parity.
    """
    started = time.perf_counter()
    export = export_onnx(model_dir, texts, quantize="int8")
    results: dict[str, Any] = {
        "model": name,
        "export_seconds": round(time.perf_counter() - started, 1),
        "onnx_bytes": {variant: path.stat().st_size for variant, path in export.files.items()},
        "weights_bytes": (model_dir / "model.safetensors").stat().st_size,
        "parity": [report.to_json() for report in export.parity],
        "variants": {},
    }
    reference = None
    for variant in VARIANTS:
        predictor = load_variant(model_dir, variant)
        probabilities, papers_per_second = classify_all(predictor, texts)
        predicted = probabilities.argmax(axis=1)
        row: dict[str, Any] = {
            "latency_ms": latency_ms(predictor, texts[:latency_papers]),
            "papers_per_second_batch32": papers_per_second,
        }
        if reference is None:
            reference = predicted
        row["top1_agreement_with_torch_fp32"] = float(np.mean(predicted == reference))
        if labels is not None:
            names = [predictor.id2label[int(i)] for i in predicted]
            row["accuracy"] = float(np.mean([p == t for p, t in zip(names, labels, strict=True)]))
        results["variants"][variant] = row
        latency = row["latency_ms"]
        print(
            f"{name:<10} {variant:<11} p50 {latency['p50']:7.1f} ms  p95 {latency['p95']:7.1f} ms  "
            f"p99 {latency['p99']:7.1f} ms  {papers_per_second:6.1f} papers/s  "
            + (
                f"accuracy {row['accuracy']:.4f}"
                if "accuracy" in row
                else f"agreement {row['top1_agreement_with_torch_fp32']:.4f}"
            ),
            flush=True,
        )
        del predictor
    return results


def machine() -> dict[str, Any]:
    """The CPU, core count and library versions the numbers were measured with.

    Returns:
        The machine description.
    """
    import onnxruntime

    cpuinfo = Path("/proc/cpuinfo")
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if "model name" in line), ""
    )
    return {
        "platform": platform.platform(),
        "cpu": model,
        "cpu_count": len(os.sched_getaffinity(0)),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def main() -> None:
    """Parses the options, runs the benchmark and writes the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-path", type=Path, default=ROOT / "runs" / "real" / "export")
    parser.add_argument("--test-split", type=Path, default=ROOT / "data" / "real" / "splits" / "test.json")
    parser.add_argument("--distilbert", action="store_true", help="also a DistilBERT-base-sized random model")
    parser.add_argument("--distilbert-papers", type=int, default=256, help="test papers for the DistilBERT rows")
    parser.add_argument("--papers", type=int, default=None, help="use only the first N test papers")
    parser.add_argument("--latency-papers", type=int, default=200)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--out", type=Path, default=ROOT / "tools" / "bench" / "results" / "inference_latency.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    texts, labels = load_test_split(args.test_split)
    texts, labels = texts[: args.papers], labels[: args.papers]
    results: dict[str, Any] = {
        "benchmark": "inference_latency",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine": machine(),
        "test_split": str(args.test_split),
        "test_papers": len(texts),
        "models": [],
    }
    with tempfile.TemporaryDirectory(prefix="clf-bench-") as scratch:
        minilm = Path(scratch) / "minilm"
        shutil.copytree(args.model_path, minilm, ignore=shutil.ignore_patterns("onnx", "onnx.tmp"))
        results["models"].append(bench_model("minilm", minilm, texts, labels, args.latency_papers))
        if args.distilbert:
            label_names = sorted(set(labels))
            distilbert = build_distilbert_export(Path(scratch) / "distilbert", label_names, args.model_path)
            subset = texts[: args.distilbert_papers]
            results["models"].append(bench_model("distilbert", distilbert, subset, None, args.latency_papers))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
