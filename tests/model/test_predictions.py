"""Tests for clf/model/predictions.py."""

from __future__ import annotations

import json

import pytest
import torch

from clf.inference.passes import prediction_records
from clf.model.predictions import write_predictions

LABELS = {0: "cs.AI", 1: "cs.CL", 2: "cs.CV", 3: "cs.LG"}


def test_records_rank_the_top_three():
    probabilities = torch.tensor([[0.15, 0.6, 0.2, 0.05], [0.05, 0.05, 0.1, 0.8]])
    first, second = prediction_records(probabilities, LABELS)
    assert first.label == "cs.CL" and first.probability == pytest.approx(0.6)
    assert [e.label for e in first.top3] == ["cs.CL", "cs.CV", "cs.AI"]
    assert second.label == "cs.LG" and second.labels is None


def test_multi_label_records_list_every_category_over_the_threshold():
    (record,) = prediction_records(torch.tensor([[0.9, 0.7, 0.2, 0.4]]), LABELS, multi_label=True, threshold=0.5)
    assert record.labels == ("cs.AI", "cs.CL")


def test_file_has_one_line_per_paper_and_refuses_a_mismatch(tmp_path):
    path = write_predictions(tmp_path / "p.jsonl", [{"arxiv_id": "x"}], torch.tensor([[0.7, 0.1, 0.1, 0.1]]), LABELS)
    (line,) = [json.loads(row) for row in path.read_text().splitlines()]
    assert line["arxiv_id"] == "x" and line["label"] == "cs.AI"
    with pytest.raises(ValueError, match="2 papers but 1 predictions"):
        write_predictions(tmp_path / "q.jsonl", [{}, {}], torch.tensor([[1.0, 0, 0, 0]]), LABELS)
