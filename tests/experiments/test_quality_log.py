"""Tests for clf/experiments/quality_log.py on SQLite and PostgreSQL: every answer logged, labels joined late by
prediction id and by arXiv id, and the per-window report."""

from __future__ import annotations

import gzip
import itertools
import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import sqlalchemy as sa

from clf.experiments.errors import InvalidExperimentError, UnknownPredictionError
from clf.experiments.framework import ABTestingFramework
from clf.experiments.quality_log import QualityLog
from clf.experiments.tables import ServedPrediction
from clf.inference.prediction import LabelProbability, Prediction
from clf.monitoring.estimates import estimated_accuracy, measured_scores
from clf.serving.routing import Route
from clf.serving.service import PredictionEvent
from tests.conftest import SHARED_DATA

CLASSES = ("cs.CL", "cs.CV", "cs.LG")
T0 = datetime(2026, 6, 1, tzinfo=UTC)
_ids = itertools.count()


@pytest.fixture
def quality(db_url):
    with QualityLog(db_url, flush_interval_seconds=60) as log:
        yield log


def answer(label: str, probability: float, version: str = "v1.0.0", arxiv_id: str | None = None) -> Prediction:
    rest = (1 - probability) / (len(CLASSES) - 1)
    ranked = tuple(
        sorted(
            (LabelProbability(c, probability if c == label else rest) for c in CLASSES),
            key=lambda entry: -entry.probability,
        )
    )
    return Prediction(
        label, probability, ranked[:3], version=version, arm="live", prediction_id=f"p{next(_ids)}",
        top_k=ranked, arxiv_id=arxiv_id,
    )  # fmt: skip


def served(
    quality: QualityLog,
    answers: list[Prediction],
    at: datetime = T0,
    arxiv_ids: tuple[str | None, ...] = (),
    experiment: str | None = None,
) -> list[str]:
    """Sends one request's answers through the listener, as the service would; returns their prediction ids."""
    route = Route(answers[0].version, "live", experiment)
    texts = ["x" * (100 + index) for index in range(len(answers))]
    quality.log_event(PredictionEvent(texts, answers, route, None, 5.0, None, at.timestamp(), arxiv_ids=arxiv_ids))
    return [a.prediction_id for a in answers]


def rows(quality: QualityLog) -> dict[str, ServedPrediction]:
    quality.flush()
    with sa.orm.Session(quality.engine) as session:
        return {row.prediction_id: row for row in session.scalars(sa.select(ServedPrediction))}


def test_every_answered_paper_is_stored_with_its_probabilities_and_no_text(quality):
    ids = served(quality, [answer("cs.CL", 0.8), answer("cs.CV", 0.6)], arxiv_ids=("2401.01234v2", None))
    failed = PredictionEvent(["y"], [], Route("v1.0.0", "live"), None, 1.0, "RuntimeError: boom", T0.timestamp())
    quality.log_event(failed)

    stored = rows(quality)

    assert set(stored) == set(ids)
    first = stored[ids[0]]
    assert (first.arxiv_id, first.model_version, first.arm, first.label, first.text_chars) == (
        "2401.01234", "v1.0.0", "live", "cs.CL", 100,
    )  # fmt: skip
    assert first.probabilities == pytest.approx({"cs.CL": 0.8, "cs.CV": 0.1, "cs.LG": 0.1})
    assert first.created_at == T0 and first.true_label is None and first.out_of_scope is None
    assert stored[ids[1]].arxiv_id is None


def test_feedback_by_prediction_id_is_stored_and_an_unknown_id_reports_false(quality):
    (pid,) = served(quality, [answer("cs.CL", 0.8)])

    assert quality.record_label(pid, " cs.CV ") is True
    assert quality.record_label("nobody", "cs.CV") is False

    row = rows(quality)[pid]
    assert (row.true_label, row.label_source) == ("cs.CV", "feedback") and row.labelled_at is not None
    with pytest.raises(InvalidExperimentError, match="true_label"):
        quality.record_label(pid, "  ")
    with pytest.raises(InvalidExperimentError, match="source"):
        quality.record_label(pid, "cs.CL", source="guess")


def test_import_by_arxiv_id_ignores_versions_labels_every_answer_and_is_idempotent(quality):
    twice = served(quality, [answer("cs.CL", 0.9)], arxiv_ids=("2401.00001v1",))
    twice += served(quality, [answer("cs.CV", 0.7)], arxiv_ids=("2401.00001v3",), at=T0 + timedelta(hours=1))
    (old_style,) = served(quality, [answer("cs.LG", 0.6)], arxiv_ids=("hep-th/9901001",))
    (unlabelled,) = served(quality, [answer("cs.LG", 0.6)], arxiv_ids=("2401.00003",))
    labelled_at = T0 + timedelta(days=2)

    first = quality.import_labels(
        [("2401.00001", "cs.CL"), ("hep-th/9901001v2", "hep-th"), ("2499.99999", "cs.CL")], labelled_at
    )
    again = quality.import_labels([("2401.00001v2", "cs.CL"), ("hep-th/9901001", "hep-th")], labelled_at + timedelta(1))

    assert first.to_json() == {"papers": 3, "matched": 2, "updated": 3, "unmatched": 1}
    assert again.to_json() == {"papers": 2, "matched": 2, "updated": 0, "unmatched": 0}
    stored = rows(quality)
    assert [stored[pid].true_label for pid in twice] == ["cs.CL", "cs.CL"]
    assert stored[old_style].true_label == "hep-th"  # out of the model's classes: kept, and counts as wrong
    assert all(stored[pid].labelled_at == labelled_at for pid in [*twice, old_style])  # the first arrival's time
    assert stored[twice[0]].label_source == "import" and stored[unlabelled].true_label is None
    with pytest.raises(InvalidExperimentError, match="arXiv id"):
        quality.import_labels([("", "cs.CL")])


def test_true_labels_by_arxiv_id_answer_the_ids_as_asked_and_leave_out_papers_without_one(quality, monkeypatch):
    served(quality, [answer("cs.CL", 0.9), answer("cs.LG", 0.6)], arxiv_ids=("2401.00001v1", "2401.00002"))
    (corrected,) = served(quality, [answer("cs.CV", 0.7)], arxiv_ids=("hep-th/9901001",))
    served(quality, [answer("cs.CV", 0.7)], arxiv_ids=("hep-th/9901001v2",), at=T0 + timedelta(hours=1))
    served(quality, [answer("cs.CV", 0.7)], arxiv_ids=("2401.00003",))  # answered, never labelled
    assert quality.true_labels(["2401.00001", "2401.00002"]) == {}  # answered, no label yet
    quality.import_labels([("2401.00001v3", "cs.CL"), ("2401.00002", "cs.CV"), ("hep-th/9901001", "hep-th")])
    quality.record_label(corrected, "cs.CV")  # feedback on one of its two answers after the import: the newer wins

    asked = ["2401.00001v2", "2401.00001", "2401.00002", "hep-th/9901001v1", "2401.00003", "2499.99999"]
    monkeypatch.setattr("clf.experiments.quality_log._CHUNK", 2)  # several chunks, one answer
    assert quality.true_labels(asked) == {
        "2401.00001v2": "cs.CL",
        "2401.00001": "cs.CL",
        "2401.00002": "cs.CV",
        "hep-th/9901001v1": "cs.CV",
    }
    assert quality.true_labels([]) == {}


def test_windows_report_coverage_measured_and_estimated_accuracy_and_label_delay(quality):
    # Window 1 (day 0): four answers, three labelled (two right, one out of scope); window 2 (day 1): one answer.
    day0 = [answer("cs.CL", 0.9), answer("cs.CV", 0.8), answer("cs.LG", 0.7), answer("cs.CL", 0.5)]
    ids = served(quality, day0, at=T0 + timedelta(hours=1), arxiv_ids=("2401.00001", "2401.00002", "2401.00003", None))
    (later,) = served(quality, [answer("cs.CV", 0.6)], at=T0 + timedelta(days=1, hours=2))
    served(quality, [answer("cs.CL", 0.99, version="v2.0.0")], at=T0 + timedelta(hours=3))
    quality.import_labels([("2401.00001", "cs.CL"), ("2401.00003", "math.AG")], T0 + timedelta(hours=7))
    quality.record_label(ids[1], "cs.CV")

    windows = quality.windows("v1.0.0", window_hours=24)

    assert [(w.start, w.end, w.papers, w.labelled) for w in windows] == [
        (T0, T0 + timedelta(days=1), 4, 3),
        (T0 + timedelta(days=1), T0 + timedelta(days=2), 1, 0),
    ]
    first = windows[0]
    assert first.coverage == 0.75
    expected = measured_scores(["cs.CL", "cs.CV", "math.AG"], ["cs.CL", "cs.CV", "cs.LG"], CLASSES)
    assert first.measured == expected and first.measured.accuracy.value == pytest.approx(2 / 3)
    assert first.estimated == estimated_accuracy([0.9, 0.8, 0.7, 0.5])
    assert first.estimated_labelled == estimated_accuracy([0.9, 0.8, 0.7])
    assert first.median_label_delay_hours == pytest.approx(6.0)  # the feedback came "now", long after: median of 3
    assert first.out_of_scope_share is None
    assert windows[1].measured is None and windows[1].median_label_delay_hours is None
    assert windows[1].estimated.value == pytest.approx(0.6)
    json.dumps([w.to_json() for w in windows])
    assert first.to_json()["start"] == "2026-06-01T00:00:00+00:00"
    assert {w.version for w in quality.windows()} == {"v1.0.0", "v2.0.0"}
    assert [w.papers for w in quality.windows(since=T0 + timedelta(hours=2), until=T0 + timedelta(days=1))] == [1]
    assert len(quality.windows("v1.0.0", window_hours=72)) == 1
    assert later in rows(quality)
    with pytest.raises(ValueError, match="window_hours"):
        quality.windows(window_hours=0)


def test_recent_gives_the_newest_answers_oldest_first_in_the_callers_class_order(quality):
    for hour in range(5):
        served(quality, [answer(CLASSES[hour % 3], 0.5 + hour / 10)], at=T0 + timedelta(hours=hour))
    served(quality, [answer("cs.CL", 0.9, version="v2.0.0")], at=T0 + timedelta(hours=9))

    sample = quality.recent("v1.0.0", papers=3, labels=("cs.LG", "cs.CL", "cs.CV"))

    assert len(sample) == 3 and sample.labels == ("cs.LG", "cs.CL", "cs.CV")
    assert sample.created_at == tuple(T0 + timedelta(hours=h) for h in (2, 3, 4))
    assert sample.predicted == ("cs.LG", "cs.CL", "cs.CV")
    assert sample.probabilities.shape == (3, 3) and sample.probabilities.dtype == np.float32
    assert sample.probabilities[0] == pytest.approx([0.7, 0.15, 0.15])
    assert sample.probabilities[2] == pytest.approx([0.05, 0.05, 0.9])
    assert sample.text_chars.tolist() == [100, 100, 100]
    assert sample.out_of_scope is None and sample.true_labels == (None, None, None)
    assert quality.recent("v1.0.0", papers=50).labels == tuple(sorted(CLASSES))
    assert len(quality.recent("v9.9.9", papers=5)) == 0


def test_recent_labelled_reads_the_newest_answers_whose_labels_arrived(quality):
    # Labels arrive late: the newest answers have none yet, so the measured accuracy reads the newest labelled ones.
    for day in range(6):
        served(quality, [answer("cs.CL", 0.8)], at=T0 + timedelta(days=day), arxiv_ids=(f"2606.0000{day}",))
    quality.import_labels([(f"2606.0000{day}", "cs.CL" if day % 2 else "cs.CV") for day in range(3)])

    newest = quality.recent("v1.0.0", papers=2)
    labelled = quality.recent("v1.0.0", papers=2, labelled=True)

    assert newest.true_labels == (None, None)
    assert labelled.created_at == (T0 + timedelta(days=1), T0 + timedelta(days=2))
    assert labelled.true_labels == ("cs.CL", "cs.CV")


def test_feedback_through_the_framework_reaches_predictions_outside_experiments(db_url, shared_registry):
    with (
        QualityLog(db_url, flush_interval_seconds=60) as quality,
        ABTestingFramework(db_url, registry=shared_registry, flush_interval_seconds=60, quality=quality) as framework,
    ):
        experiment = framework.create_experiment("exp", "v1.0.0", "v1.1.0")
        inside = answer("cs.CL", 0.8, version="v1.1.0")
        event = PredictionEvent(
            ["paper"], [inside], Route("v1.1.0", "live", str(experiment.id)), "u", 5.0, None, T0.timestamp()
        )
        framework.log_event(event)
        quality.log_event(event)
        (outside,) = served(quality, [answer("cs.CV", 0.7)])
        checked = []

        framework.record_feedback(outside, "cs.LG", verify=lambda *route: checked.append(route))
        framework.record_feedback(inside.prediction_id, "cs.CL")

        assert checked == [(outside, "v1.0.0", "live")]  # the signature is checked against the logged route
        stored = rows(quality)
        assert (stored[outside].true_label, stored[inside.prediction_id].true_label) == ("cs.LG", "cs.CL")
        assert framework.analyze_experiment(experiment.id).treatment.with_feedback == 1
        with pytest.raises(UnknownPredictionError, match="no served prediction"):
            framework.record_feedback("never-answered", "cs.CL")
    with ABTestingFramework(db_url, registry=shared_registry) as alone, pytest.raises(UnknownPredictionError):
        alone.record_feedback(outside, "cs.LG")  # without a quality log, only experiments' predictions


def test_labels_imported_from_real_new_papers_give_the_measured_accuracy_of_the_same_papers(quality):
    """A few hundred real papers of ../shared/data/arxiv/new_papers.jsonl.gz, 'answered' by a fixed rule, then
    labelled by importing the file itself: the report's accuracy is the offline one of the same papers."""
    from clf.experiments.label_files import read_labels

    path = SHARED_DATA / "arxiv" / "new_papers.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        papers = [json.loads(line) for line in itertools.islice(handle, 300)]
    guesses = [("cs.CL" if "language" in p["abstract"].lower() else "cs.LG") for p in papers]
    for offset in range(0, len(papers), 50):
        chunk = papers[offset : offset + 50]
        answers = [answer(guess, 0.7) for guess in guesses[offset : offset + 50]]
        served(quality, answers, at=T0 + timedelta(minutes=offset), arxiv_ids=tuple(p["id"] + "v1" for p in chunk))

    result = quality.import_labels(read_labels(path))

    assert result.matched == result.updated == 300 and result.unmatched == result.papers - 300
    (window,) = quality.windows("v1.0.0", window_hours=24)
    offline = measured_scores([p["primary"] for p in papers], guesses, CLASSES)
    assert window.coverage == 1.0 and window.measured == offline
    assert 0.0 < offline.accuracy.value < 1.0
