"""The arithmetic of every prediction: length-sorted forward passes, probabilities, and prediction records.

Every path that classifies papers — the service, ONNX parity, deployment validation, version comparison,
retraining's decision, ``clf predict`` — goes through these two functions, so what is measured or checked anywhere is
what the service computes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def probabilities_in_sorted_passes(
    encoded: Any,
    pad: Callable[[list[dict[str, Any]]], Any],
    forward: Callable[[Any], Any],
    num_labels: int,
    *,
    multi_label: bool,
    batch_size: int,
) -> torch.Tensor:
    """Runs tokenized texts through `forward` shortest first, `batch_size` at a time, each pass padded to its longest.

    On a 2-core CPU, 32 abstracts in sorted passes of 8 cost 11 % less per paper than one at a time, and one pass of
    all 32 padded to the longest 56 % more (tools/bench/results/batch_forward.json).

    Args:
        encoded: the tokenizer's output for the texts (lists of token ids, not yet padded).
        pad: pads a list of per-text features into one batch (a ``DataCollatorWithPadding``).
        forward: padded batch → float logits, shape ``(batch, num_labels)``.
        num_labels: the number of classes.
        multi_label: sigmoid per class instead of softmax over the classes.
        batch_size: texts per pass.

    Returns:
        A ``(texts, num_labels)`` float32 CPU tensor of probabilities, rows in the order of `encoded`.
    """
    count = len(encoded["input_ids"])
    probabilities = torch.empty(count, num_labels)
    order = sorted(range(count), key=lambda i: len(encoded["input_ids"][i]))
    for start in range(0, count, batch_size):
        rows = order[start : start + batch_size]
        logits = forward(pad([{key: values[i] for key, values in encoded.items()} for i in rows]))
        probabilities[rows] = (logits.sigmoid() if multi_label else logits.softmax(dim=-1)).cpu()
    return probabilities


def prediction_records(
    probabilities: torch.Tensor,
    id2label: dict[int, str],
    *,
    multi_label: bool = False,
    threshold: float = 0.5,
    top_k: int = 3,
    abstain_below: float | None = None,
    ranked: bool = False,
) -> list[dict[str, Any]]:
    """One record per row of `probabilities`: ``label``, ``probability``, ``top3`` (and ``labels`` in multi-label).

    Args:
        probabilities: ``(N, num_labels)`` softmax (or sigmoid, in multi-label mode) outputs.
        id2label: class index → category.
        multi_label: also list every category above `threshold`.
        threshold: the multi-label decision threshold.
        top_k: how many ranked categories to give.
        abstain_below: when set, each record says ``unsure`` when its top probability is below it.
        ranked: also give ``ranked``, every category with its probability, most probable first.

    Returns:
        One dict per row, in order.
    """
    k = min(top_k, probabilities.shape[1])
    values, indices = probabilities.float().topk(k, dim=1)
    records = []
    for row, (top_values, top_indices) in enumerate(zip(values.tolist(), indices.tolist(), strict=True)):
        record: dict[str, Any] = {
            "label": id2label[top_indices[0]],
            "probability": round(top_values[0], 6),
            f"top{top_k}": [
                {"label": id2label[i], "probability": round(p, 6)} for i, p in zip(top_indices, top_values, strict=True)
            ],
        }
        if multi_label:
            record["labels"] = [id2label[i] for i, p in enumerate(probabilities[row].tolist()) if p >= threshold]
        if abstain_below is not None:
            record["unsure"] = top_values[0] < abstain_below
        if ranked:
            order = probabilities[row].float().argsort(descending=True).tolist()
            row_values = probabilities[row].tolist()
            record["ranked"] = [{"label": id2label[i], "probability": round(row_values[i], 6)} for i in order]
        records.append(record)
    return records
