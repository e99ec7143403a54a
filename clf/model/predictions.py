"""Write predictions as JSON Lines: the label, its probability, the top three, every category ranked (``top_k``) and
whether the model is unsure, for each paper."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from clf.inference.passes import prediction_records
from clf.io import write_jsonl_atomic


def write_predictions(
    path: Path,
    papers: Sequence[dict[str, Any]],
    probabilities: torch.Tensor,
    id2label: dict[int, str],
    multi_label: bool = False,
    threshold: float = 0.5,
    abstain_below: float | None = None,
) -> Path:
    """Writes one JSON line per paper: what identifies it (`papers[i]`) followed by its prediction.

    Args:
        path: the JSON Lines file to (over)write.
        papers: one dict per predicted paper (its id, title...), in the order of `probabilities`.
        probabilities: ``(N, num_labels)`` softmax (or sigmoid, in multi-label mode) outputs.
        id2label: class index → category.
        multi_label: also list every category above `threshold`.
        threshold: the multi-label decision threshold.
        abstain_below: when set, each line says ``unsure`` when its top probability is below it.

    Returns:
        `path`.

    Raises:
        ValueError: when `papers` and `probabilities` have different lengths.
    """
    if len(papers) != len(probabilities):
        raise ValueError(f"{len(papers)} papers but {len(probabilities)} predictions")
    predictions = prediction_records(
        probabilities, id2label, multi_label=multi_label, threshold=threshold, abstain_below=abstain_below, ranked=True
    )
    write_jsonl_atomic(
        path, ({**paper, **prediction.to_json()} for paper, prediction in zip(papers, predictions, strict=True))
    )
    return path
