"""A stream of real papers replayed through a real `clf serve`: does production know whether its answers are right?

The served model is the pretrained MiniLM with a head fitted on 180 real cv/db/ro papers, a TF-IDF companion, and a
reference sample built on 180 other held-out papers of those classes, its out-of-scope model fitted against 200
papers of other categories. The stream: two windows of in-scope papers the model never saw, then a window in which
half the papers belong to none of its classes (papers of other categories, none of them used in fitting). Labels
arrive afterwards from a file, as `clf labels import` reads a collection run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from clf.artifact import record_scoring
from clf.artifact.scoring import Scoring
from clf.data.cleaning import model_input_text
from clf.inference import ModelPredictor
from clf.training.finishing import fit_companion
from clf.training.reference import build_reference
from tests.conftest import REPO, load_shared_papers
from tests.helpers.exports import LABELS, build_registry
from tests.helpers.serve_process import ServeProcess
from tests.helpers.webhook import WebhookReceiver

WINDOW = 60
CLASSES = set(LABELS.values())


def _sample(paper: dict) -> dict:
    return {"text": model_input_text(paper["title"], paper["abstract"]), "label": paper["primary"], "id": paper["id"]}


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory, trained_export: Path) -> dict:
    """The registry serving the model (v1.0.0), and the papers: in-scope windows and the mixed window."""
    papers = load_shared_papers()
    by_label: dict[str, list[dict]] = {}
    for paper in papers:
        by_label.setdefault(paper["primary"], []).append(paper)
    others = [paper for paper in papers if paper["primary"] not in CLASSES]
    train = [_sample(p) for label in sorted(CLASSES) for p in by_label[label][:60]]  # what the head was fitted on
    held_out = [_sample(p) for label in sorted(CLASSES) for p in by_label[label][60:120]]
    export = tmp_path_factory.mktemp("quality") / "export"
    shutil.copytree(trained_export, export)
    companion = fit_companion(train, [LABELS[i] for i in sorted(LABELS)])
    record_scoring(export, Scoring(encoder_weight=0.5, companion=companion, mixture="log_linear"))
    build_reference(export, held_out, train, [_sample(p) for p in others[:200]])
    in_scope = [p for i in range(40) for label in sorted(CLASSES) for p in [by_label[label][120 + i]]]
    mixed_in = [p for i in range(10) for label in sorted(CLASSES) for p in [by_label[label][160 + i]]]
    mixed = [p for pair in zip(mixed_in, others[200 : 200 + len(mixed_in)], strict=True) for p in pair]
    registry = build_registry(export.parent / "registry", {"v1.0.0": export}, production="v1.0.0")
    return {"registry": registry.base_dir, "export": export, "in_scope": in_scope, "mixed": mixed}


def _post(url: str, papers: list[dict]) -> list[dict]:
    answers = []
    for start in range(0, len(papers), 10):
        body = [
            {"title": p["title"], "abstract": p["abstract"], "arxiv_id": p["id"]} for p in papers[start : start + 10]
        ]
        response = requests.post(f"{url}/predict", json=body, timeout=120)
        assert response.status_code == 200, response.text
        answers += response.json()["predictions"]
    return answers


def _windows_tested(url: str, count: int, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        version = requests.get(f"{url}/quality", timeout=30).json()["versions"]["v1.0.0"]
        if version["windows"] >= count:
            return version
        time.sleep(0.2)
    raise AssertionError(f"{count} windows not tested within {timeout} s: {version}")


def _clf(*args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "clf", *args], cwd=REPO, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def test_a_replayed_stream_alarms_on_out_of_scope_papers_and_late_labels_measure_the_answers(stream, tmp_path):
    db = f"sqlite:///{tmp_path / 'answers.db'}"
    flags = ["--quality.window_papers", str(WINDOW), "--quality.check_interval_seconds", "0.2", "--quality.db", db]
    with WebhookReceiver() as hook, ServeProcess(stream["registry"], [*flags, "--alerts.slack_webhook", hook.url]) as s:
        calm = _post(s.url, stream["in_scope"])
        after_calm = _windows_tested(s.url, 2)
        mixed = _post(s.url, stream["mixed"])
        after_mixed = _windows_tested(s.url, 3)
        hook.wait_for(1)
        metrics = requests.get(f"{s.url}/metrics?format=prometheus", timeout=30).text

    # In-scope windows raise no alarm; the window that is half out of scope does, and says why.
    assert after_calm["alarms"] == 0 and not after_calm["last_window"]["alarm"], after_calm["last_window"]
    last = after_mixed["last_window"]
    assert last["alarm"] and "out_of_scope" in last["reasons"], last
    assert last["out_of_scope"]["share"] > 3 * last["out_of_scope"]["reference_share"]
    (alert,) = hook.texts
    assert "Drift on v1.0.0" in alert and "out_of_scope" in alert
    assert 'clf_drift_alarm{version="v1.0.0"} 1.0' in metrics

    # The answers mark papers of no class: most of the other categories' papers, few of the in-scope ones.
    pairs = zip(stream["mixed"], mixed, strict=True)
    others = [answer["out_of_scope"] for paper, answer in pairs if paper["primary"] not in CLASSES]
    in_scope = [answer["out_of_scope"] for answer in calm]
    assert sum(others) / len(others) >= 0.5 and sum(in_scope) / len(in_scope) <= 0.2, (sum(others), sum(in_scope))
    assert all(answer["arxiv_id"] for answer in calm + mixed)

    # Labels imported later give the accuracy an offline evaluation of the same papers gives.
    served = stream["in_scope"] + stream["mixed"]
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps({"id": p["id"], "primary": p["primary"]}) + "\n" for p in served))
    imported = _clf("labels", "import", str(labels), "--db", db)
    assert imported["matched"] == len(served), imported
    (window,) = _clf("labels", "report", "--db", db, "--version", "v1.0.0", "--window_hours", "10000")
    offline = ModelPredictor(stream["export"], "offline").predict_texts(
        [model_input_text(p["title"], p["abstract"]) for p in served]
    )
    right = sum(answer.label == paper["primary"] for answer, paper in zip(offline, served, strict=True))
    assert window["labelled"] == window["papers"] == len(served)
    assert window["measured"]["n"] == len(served)
    assert abs(window["measured"]["accuracy"]["value"] * len(served) - right) <= 1  # a near tie may fall either way

    # A retraining dry run on the same database fires on drift and records the evidence (it trains nothing: the
    # snapshot brings no paper the version has not seen).
    snapshot = tmp_path / "new_papers.jsonl"
    snapshot.write_text("".join(json.dumps(p) + "\n" for p in served))
    result = _clf(
        "retrain", "run", "--dry_run", "true", "--registry", str(stream["registry"]), "--db", db,
        "--triggers.growth", "false", "--triggers.window_papers", str(WINDOW),
        "--triggers.estimated_accuracy_drop", "null", "--triggers.measured_accuracy_drop", "null",
        "--data.snapshot_path", str(snapshot),
    )  # fmt: skip
    assert result["triggers"]["fired"] == ["drift"], json.dumps(result["triggers"])
    assert "out_of_scope" in result["triggers"]["evidence"]["triggers"]["drift"]["reasons"]
    (run,) = _clf("retrain", "history", "--db", db)
    assert run["status"] == "dry_run" and run["trigger_type"] == "drift"
    assert run["evidence"]["triggers"]["drift"]["fired"] is True
