"""End-to-end tests of clf/retrain/pipeline.py: real tiny fits and registry, SQLite, SMTP and Slack on loopback."""

from __future__ import annotations

import gzip
import json
import shutil
from collections import Counter
from datetime import UTC, datetime

import pytest

from clf.experiments.runs import RUN_FIELDS
from clf.io import read_json
from clf.retrain import (
    LastTrainingDateSource,
    PromotionDecision,
    RetrainDecision,
    RetrainingError,
    RunStatus,
)
from clf.retrain.pipeline import RetrainingPipeline
from tests.conftest import load_shared_papers
from tests.helpers.arxiv_server import ArxivTestServer
from tests.retrain.conftest import NEW_PAPERS, notifying, result_record

CRITICAL_ICON = ":rotating_light:"  # AlertManager's icon for level critical


def split_ids(data_dir, name):
    return {s["arxiv_id"] for s in read_json(data_dir / "splits" / f"{name}.json")["samples"]}


@pytest.mark.parametrize(
    ("threshold", "decision", "production_after"),
    [(-1.0, PromotionDecision.PROMOTE, "v1.1.0"), (1.0, PromotionDecision.ARCHIVE, "v1.0.0")],
)
def test_new_papers_are_detected_trained_on_compared_and_promoted_or_archived(
    registry, make_config, smtp, webhook, production_run, threshold, decision, production_after
):
    sink, _ = smtp
    config = notifying(make_config, smtp, webhook, promotion_threshold=threshold)

    result = RetrainingPipeline(config, trigger_type="schedule").run_pipeline()

    assert result.status is RunStatus.COMPLETED, result.error
    # Detection: the newest published date of v1.0.0's papers, and new_papers.jsonl.gz's 15 per class after it.
    old_dates = [
        s["published"]
        for n in ("train", "val", "test")
        for s in read_json(production_run["data_dir"] / "splits" / f"{n}.json")["samples"]
    ]
    assert result.new_data.last_training_date == max(old_dates) < "2026-06-01"
    assert result.new_data.date_source is LastTrainingDateSource.NEWEST_PUBLISHED
    assert result.new_data.count == 150 and set(result.new_data.by_category.values()) == {15}
    assert all(p.published >= "2026-06-01" for p in result.new_data.papers)
    assert result.growth.decision is RetrainDecision.RETRAIN and result.growth.growth_ratio > 0.1

    # The augmented data: old papers keep their splits, new ones are spread over all three.
    old_dir, new_dir = production_run["data_dir"], result.dataset.data_dir
    for name in ("train", "val", "test"):
        assert split_ids(old_dir, name) <= split_ids(new_dir, name)
    new_ids = {p.arxiv_id for p in result.new_data.papers}
    assert all(split_ids(new_dir, name) & new_ids for name in ("train", "val", "test"))
    assert not split_ids(new_dir, "train") & split_ids(new_dir, "test")

    # The new version: the next minor, trained with v1.0.0's config on the augmented data, in its own run folder.
    assert result.version == "v1.1.0"
    models = registry
    metadata = models.get_metadata("v1.1.0")
    assert metadata["parent_version"] == "v1.0.0"
    assert metadata["dataset"]["data_dir"] == str(new_dir)
    assert metadata["dataset"]["num_samples"] == result.dataset.num_samples
    assert metadata["hyperparameters"]["model"] == models.get_metadata("v1.0.0")["hyperparameters"]["model"]
    assert (models.version_dir("v1.1.0") / "config.yaml").read_text().count(str(new_dir)) == 1

    # Comparison on the same held-out test split, and the decision the threshold asks for.
    comparison = result.comparison
    assert comparison["baseline"]["version"] == "v1.0.0" and comparison["candidate"]["version"] == "v1.1.0"
    assert (
        comparison["baseline"]["num_samples"]
        == comparison["candidate"]["num_samples"]
        == len(split_ids(new_dir, "test"))
    )
    assert result.promotion.decision is decision
    assert result.promotion.improvement == pytest.approx(comparison["improvement"]["accuracy"])
    assert models.production_version() == production_after
    listed = {v.version: v for v in models.list_versions()}
    if decision is PromotionDecision.PROMOTE:
        assert models.history()[-1].reason == result.promotion.reason and listed["v1.1.0"].archived is None
    else:
        assert listed["v1.1.0"].archived.reason == result.promotion.reason
        assert [c.to_version for c in models.history()] == ["v1.0.0"]

    # The run record: every field filled.
    record = result_record(config, result.run_id)
    assert set(record) == set(RUN_FIELDS)
    assert {k: v for k, v in record.items() if v is None} == {"error_message": None}
    assert record["status"] == "completed" and record["trigger_type"] == "growth"
    assert record["evidence"] == result.triggers.evidence and record["evidence"]["origin"] == "schedule"
    assert record["evidence"]["fired"] == ["growth"] and record["evidence"]["triggers"]["growth"]["fired"] is True
    assert record["model_version"] == "v1.1.0" and record["new_data_count"] == 150
    assert record["dataset_size"] == result.dataset.num_samples
    assert record["training_time_seconds"] > 0
    assert record["started_at"] <= record["completed_at"] <= datetime.now(UTC).isoformat()
    assert record["metrics"]["promotion"]["decision"] == decision.value
    assert record["metrics"]["comparison"]["improvement"] == comparison["improvement"]
    assert record["metrics"]["training"]["monitor"] == "val/acc"

    # A person is told: an email through the loopback SMTP server, and a Slack post.
    (mail,) = sink.wait_for(1)
    verb = "promoted" if decision is PromotionDecision.PROMOTE else "archived"
    assert mail["Subject"] == f"Retraining (growth): v1.1.0 {verb}"
    assert mail["To"] == "ml-team@example.org"
    body = mail.get_payload(decode=True).decode()
    assert f"Dataset: {result.dataset.num_samples} samples" in body
    assert f"v1.1.0: accuracy {comparison['candidate']['accuracy']:.4f}" in body
    assert result.promotion.reason in body
    (text,) = webhook.texts
    assert f"Retraining (growth): v1.1.0 {verb}" in text and result.promotion.reason in text
    assert f"Trigger growth: fired: {result.growth.reason}" in body and "Decision: retrain: growth fired" in body
    assert result.notifications == {"email": "sent", "slack": "sent"}


def test_below_the_growth_threshold_nothing_is_trained_and_the_run_is_skipped(
    registry, make_config, smtp, webhook, tmp_path
):
    sink, _ = smtp
    config = notifying(make_config, smtp, webhook, growth_threshold=0.6)  # 150 new / 297 is about 0.5

    result = RetrainingPipeline(config).run_pipeline()

    assert result.status is RunStatus.SKIPPED
    assert result.growth.decision is RetrainDecision.SKIP and "below the growth threshold 60.0%" in result.growth.reason
    assert result.version is None and not (tmp_path / "runs").exists()
    assert [v.version for v in registry.list_versions()] == ["v1.0.0"]
    record = result_record(config, result.run_id)
    assert record["status"] == "skipped" and record["completed_at"] and record["model_version"] is None
    assert record["new_data_count"] == 150 and record["metrics"]["growth"]["decision"] == "skip"
    assert record["trigger_type"] == "manual" and record["evidence"]["fired"] == []
    assert record["evidence"]["triggers"]["growth"] == {
        **result.triggers.evidence["triggers"]["growth"],
        "fired": False,
    }
    (mail,) = sink.wait_for(1)
    reason = "no trigger fired (enabled: growth, drift, estimated_drop, measured_drop)"
    assert mail["Subject"] == "Retraining skipped: no trigger fired"
    body = mail.get_payload(decode=True).decode()
    assert f"Decision: skip: {reason}" in body and f"Trigger growth: silent: {result.growth.reason}" in body
    assert "Trigger drift: silent: no evidence: no quality snapshot" in body


def test_a_fit_that_fails_mid_training_leaves_production_alone_and_the_run_failed(
    registry, make_config, smtp, webhook, tmp_path
):
    sink, _ = smtp
    sleeps = []
    config = notifying(
        make_config,
        smtp,
        webhook,
        max_retries=1,
        retry_delay_seconds=7.0,
        fit_overrides={
            "trainer.callbacks": [{"class_path": "tests.helpers.faults.InjectNaNLoss", "init_args": {"at_step": 1}}]
        },
    )
    production_before = registry.production_version()

    result = RetrainingPipeline(config, sleep=sleeps.append).run_pipeline()

    assert result.status is RunStatus.FAILED
    assert result.error.startswith("TrainingDivergenceError: training diverged at step 1")
    assert sleeps == [7.0], "one retry, after the configured delay"
    assert registry.production_version() == production_before == "v1.0.0"
    assert [v.version for v in registry.list_versions()] == ["v1.0.0"], "nothing half-trained is registered"
    record = result_record(config, result.run_id)
    assert record["status"] == "failed" and record["completed_at"]
    assert record["error_message"] == result.error
    assert record["metrics"]["attempt_1_error"].startswith("TrainingDivergenceError")
    mail = sink.wait_for(1)[0]
    assert mail["Subject"].startswith("Retraining failed: TrainingDivergenceError")
    (text,) = webhook.texts
    assert text.startswith(CRITICAL_ICON) and result.error in text


def test_the_last_training_date_falls_back_to_created_at_when_the_data_is_gone(registry, make_config, tmp_path):
    # A registry whose production data folder was deleted: copy the version's metadata to point at a missing folder.
    metadata_path = registry.version_dir("v1.0.0") / "metadata.json"
    metadata = json.loads(metadata_path.read_text())
    metadata["dataset"]["data_dir"] = str(tmp_path / "gone")
    metadata_path.write_text(json.dumps(metadata))

    found = RetrainingPipeline(make_config()).check_for_new_data()

    assert found.date_source is LastTrainingDateSource.CREATED_AT
    assert found.last_training_date == metadata["created_at"][:10]
    # The papers in new_papers.jsonl.gz predate today, so none counts as new: the date is conservative.
    assert found.count == 0 and found.current_dataset_size == metadata["dataset"]["num_samples"]


def test_should_retrain_names_its_decision_and_evidence(registry, make_config):
    pipeline = RetrainingPipeline(make_config(growth_threshold=0.1))
    at = pipeline.should_retrain(100, 1000)
    below = pipeline.should_retrain(99, 1000)
    assert at.decision is RetrainDecision.RETRAIN and at.growth_ratio == pytest.approx(0.1)
    assert below.decision is RetrainDecision.SKIP and "below the growth threshold 10.0%" in below.reason
    assert pipeline.should_retrain(0, 0).decision is RetrainDecision.SKIP
    assert pipeline.should_retrain(5, 0).decision is RetrainDecision.RETRAIN


def test_no_production_version_is_a_failed_run_that_says_what_to_do(tmp_path, make_config):
    config = make_config(registry=str(tmp_path / "empty_registry"))
    result = RetrainingPipeline(config).run_pipeline()
    assert result.status is RunStatus.FAILED
    assert "no version is in production" in result.error and "clf registry promote" in result.error
    with pytest.raises(RetrainingError, match="no version is in production"):
        RetrainingPipeline(config).check_for_new_data()


def test_a_dataset_folder_left_by_a_failed_run_is_replaced(registry, make_config, production_run):
    pipeline = RetrainingPipeline(make_config())
    found = pipeline.check_for_new_data()
    leftover = pipeline.augment_dataset(production_run["data_dir"], found.papers[:40])
    again = pipeline.augment_dataset(production_run["data_dir"], found.papers)
    assert again.data_dir == leftover.data_dir
    assert again.new_samples == 150 and again.num_samples == found.current_dataset_size + 150
    shutil.rmtree(again.data_dir)


def test_new_papers_can_come_from_the_arxiv_api(registry, make_config):
    with gzip.open(NEW_PAPERS, "rt", encoding="utf-8") as lines:
        new = [json.loads(line) for line in lines]
    wanted = [p for p in new if p["primary"] in ("cs.DB", "cs.RO")]
    # The API also lists older papers (and other classes): only the new ones in the categories count.
    old = load_shared_papers(categories={"cs.DB", "cs.RO", "cs.AI"}, limit=600)
    with ArxivTestServer(papers=[*old, *new]) as server:
        config = make_config(
            data={
                "source": "api",
                "api_url": server.url,
                "api_delay_seconds": 0.0,
                "categories": ["cs.DB", "cs.RO"],
                "max_papers_per_category": 1000,
            }
        )
        found = RetrainingPipeline(config).check_for_new_data()
        queries = [r.params.get("search_query", "") for r in server.requests]
    assert found.by_category == dict(Counter(p["primary"] for p in wanted))
    assert sorted(p.arxiv_id for p in found.papers) == sorted(p["id"] for p in wanted)
    assert all("submittedDate:[" in q for q in queries), "the date filter is sent to the API"


def test_the_steps_run_one_by_one_and_training_alone_records_a_manual_run(registry, make_config, production_run):
    pipeline = RetrainingPipeline(make_config())
    found = pipeline.check_for_new_data()
    dataset = pipeline.augment_dataset(production_run["data_dir"], found.papers)
    version = pipeline.train_new_version(dataset, "v1.0.0")
    comparison = pipeline.evaluate_improvement(version, "v1.0.0", dataset.test_path)
    outcome = pipeline.promote_if_better(version, comparison)

    assert version == "v1.1.0" and comparison.candidate.num_samples == len(split_ids(dataset.data_dir, "test"))
    assert outcome.decision is (
        PromotionDecision.PROMOTE if comparison.improvement["accuracy"] > 0.02 else PromotionDecision.ARCHIVE
    )
    (record,) = pipeline.runs.list()
    assert (record["trigger_type"], record["status"], record["model_version"]) == ("manual", "completed", "v1.1.0")
    assert record["dataset_size"] == dataset.num_samples and record["training_time_seconds"] > 0
