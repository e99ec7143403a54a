"""The arithmetic of every prediction: length-sorted forward passes, probabilities, and `Prediction` records.

Every path that classifies papers — the service, ONNX parity, deployment validation, version comparison,
retraining's decision, ``clf predict`` — goes through these two functions, so what is measured or checked anywhere is
what the service computes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from clf.inference.prediction import LabelProbability, Prediction


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
    abstain_below: float | None = None,
    ranked: bool = False,
    out_of_scope: Sequence[bool] | None = None,
) -> list[Prediction]:
    """One `Prediction` per row of `probabilities`: its label, probability and top three.

    Args:
        probabilities: ``(N, num_labels)`` softmax (or sigmoid, in multi-label mode) outputs.
        id2label: class index → category.
        multi_label: also list every category above `threshold` (``labels``).
        threshold: the multi-label decision threshold.
        abstain_below: when set, each prediction says ``unsure`` when its top probability is below it.
        ranked: also give every category with its probability, most probable first (``top_k``).
        out_of_scope: each row's out-of-scope flag (`clf.inference.out_of_scope`); None leaves ``out_of_scope`` unset.

    Returns:
        One prediction per row, in order.
    """
    rows = probabilities.float().tolist()
    predictions = []
    for index, row in enumerate(rows):
        order = sorted(range(len(row)), key=lambda i: -row[i])
        every = tuple(LabelProbability(id2label[i], round(row[i], 6)) for i in order)
        predictions.append(
            Prediction(
                label=every[0].label,
                probability=every[0].probability,
                top3=every[:3],
                labels=tuple(id2label[i] for i, p in enumerate(row) if p >= threshold) if multi_label else None,
                unsure=row[order[0]] < abstain_below if abstain_below is not None else None,
                out_of_scope=bool(out_of_scope[index]) if out_of_scope is not None else None,
                top_k=every if ranked else None,
            )
        )
    return predictions
