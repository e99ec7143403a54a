"""Tests for clf/inference/prediction.py: the JSON of a prediction, as /predict and predictions.jsonl hold it."""

from __future__ import annotations

import json
from dataclasses import replace

import torch

from clf.inference.passes import prediction_records
from clf.inference.prediction import LabelProbability, Prediction

LABELS = {0: "cs.AI", 1: "cs.CL", 2: "cs.CV", 3: "cs.LG"}


def test_a_served_answer_has_the_keys_of_the_http_contract_in_order():
    (made,) = prediction_records(torch.tensor([[0.1, 0.6, 0.2, 0.1]]), LABELS, abstain_below=0.7, ranked=True)
    served = replace(made, version="v1.2.0", arm="canary", experiment_id="7", prediction_id="id-1")
    assert json.dumps(replace(served, top_k=served.top_k[:2]).to_json()) == json.dumps(
        {
            "label": "cs.CL",
            "probability": 0.6,
            "top3": [
                {"label": "cs.CL", "probability": 0.6},
                {"label": "cs.CV", "probability": 0.2},
                {"label": "cs.AI", "probability": 0.1},
            ],
            "unsure": True,
            "version": "v1.2.0",
            "arm": "canary",
            "experiment_id": "7",
            "prediction_id": "id-1",
            "top_k": [{"label": "cs.CL", "probability": 0.6}, {"label": "cs.CV", "probability": 0.2}],
        }
    )


def test_a_failed_paper_keeps_its_null_label_and_id_and_a_predictor_answer_has_no_serving_keys():
    failed = Prediction(None, None, (), error="inference failed: boom", version="v1.0.0", arm="live")
    assert list(failed.to_json().items()) == [
        ("label", None),
        ("probability", None),
        ("top3", []),
        ("error", "inference failed: boom"),
        ("version", "v1.0.0"),
        ("arm", "live"),
        ("prediction_id", None),
    ]
    (made,) = prediction_records(torch.tensor([[0.9, 0.7, 0.2, 0.4]]), LABELS, multi_label=True)
    assert list(made.to_json()) == ["label", "probability", "top3", "labels"]


def test_json_reads_back_to_the_same_prediction_ignoring_other_keys_and_keeping_the_arxiv_id():
    prediction = Prediction(
        "cs.CL",
        0.6,
        (LabelProbability("cs.CL", 0.6),),
        labels=("cs.CL",),
        unsure=False,
        version="v1.0.0",
        arm="live",
        prediction_id="x",
        top_k=(LabelProbability("cs.CL", 0.6), LabelProbability("cs.AI", 0.4)),
    )
    assert Prediction.from_json(json.loads(json.dumps(prediction.to_json()))) == prediction
    # A predictions.jsonl line: the paper's id (a Prediction field, echoed by /predict when sent) and its label.
    line = {"arxiv_id": "2401.00001", "true_label": "cs.CL", **json.loads(json.dumps(prediction.to_json()))}
    assert Prediction.from_json(line) == replace(prediction, arxiv_id="2401.00001")
    assert list(replace(prediction, arxiv_id="2401.00001").to_json())[-1] == "arxiv_id"
