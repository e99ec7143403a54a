"""Draws the benchmark results in tools/bench/results/ as the PNG charts docs/RESULTS.md shows.

    python tools/bench/plot_results.py            # writes docs/img/train_throughput.png, docs/img/inference_latency.png

Only reads the JSON the benchmarks wrote; measures nothing. A chart whose JSON is missing is skipped with a note.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "tools" / "bench" / "results"


def plot_train_throughput(result: dict[str, Any], out: Path) -> Path:
    """A bar per training variant: samples/s, with its ratio to the max_length-512 Trainer recipe.

    Args:
        result: ``train_throughput.json``.
        out: the PNG to write.

    Returns:
        `out`.
    """
    variants = result["variants"]
    base = variants["trainer_fp32_pad512"]["samples_per_s"]
    names = list(variants)
    values = [variants[name]["samples_per_s"] for name in names]
    figure, axes = plt.subplots(figsize=(8, 3.6))
    bars = axes.barh(names, values, color=["#999999" if n.startswith("trainer") else "#3b75af" for n in names])
    for bar, value in zip(bars, values, strict=True):
        axes.text(
            bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {value:.2f}/s ({value / base:.2f}×)", va="center"
        )
    axes.invert_yaxis()
    axes.set_xlabel("training samples/s (DistilBERT-base, batch 16, 2 CPU cores)")
    axes.set_xlim(0, max(values) * 1.35)
    axes.set_title(f"clf fit vs the max_length-512 Trainer recipe ({result['date'][:10]})")
    figure.tight_layout()
    figure.savefig(out, dpi=120)
    plt.close(figure)
    return out


def plot_inference_latency(result: dict[str, Any], out: Path) -> Path:
    """One panel per model: p50 and p95 latency of one abstract for every variant, and its accuracy or agreement.

    Args:
        result: ``inference_latency.json``.
        out: the PNG to write.

    Returns:
        `out`.
    """
    models = result["models"]
    figure, panels = plt.subplots(1, len(models), figsize=(5.5 * len(models), 3.8), squeeze=False)
    for axes, model in zip(panels[0], models, strict=True):
        names = list(model["variants"])
        rows = [model["variants"][name] for name in names]
        positions = range(len(names))
        p50 = [row["latency_ms"]["p50"] for row in rows]
        p95 = [row["latency_ms"]["p95"] for row in rows]
        axes.bar([p - 0.2 for p in positions], p50, width=0.4, label="p50", color="#3b75af")
        axes.bar([p + 0.2 for p in positions], p95, width=0.4, label="p95", color="#e39c3a")
        ticks = []
        for name, row in zip(names, rows, strict=True):
            quality = row.get("accuracy", row["top1_agreement_with_torch_fp32"])
            ticks.append(f"{name}\n{'acc' if 'accuracy' in row else 'agree'} {quality:.3f}")
        axes.set_xticks(list(positions), ticks, fontsize=8)
        axes.set_ylabel("ms for one abstract")
        axes.set_ylim(0, max(p95) * 1.3)
        axes.set_title(model["model"])
        axes.legend(loc="upper center", ncols=2, fontsize=8)
    figure.suptitle(f"Inference latency, 2 CPU cores ({result['date'][:10]})")
    figure.tight_layout()
    figure.savefig(out, dpi=120)
    plt.close(figure)
    return out


def main() -> None:
    """Draws every chart whose results exist."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=ROOT / "docs" / "img")
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    charts = {
        "train_throughput": plot_train_throughput,
        "inference_latency": plot_inference_latency,
    }
    for name, draw in charts.items():
        source = RESULTS / f"{name}.json"
        if not source.is_file():
            print(f"skipped {name}: {source} is missing (run tools/bench/{name}.py)")
            continue
        print(f"wrote {draw(json.loads(source.read_text()), args.out_dir / f'{name}.png')}")


if __name__ == "__main__":
    main()
