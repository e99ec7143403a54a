"""`RetrainingPipeline`: detect new papers, decide, retrain, compare with production, promote or archive, notify.

    pipeline = RetrainingPipeline(RetrainingConfig(registry="models/classification", growth_threshold=0.2))
    result = pipeline.run_pipeline()      # RetrainResult; its retraining_runs row ends completed, skipped or failed

The retrain decision is `clf.retrain.triggers.decide` over every enabled trigger (``--triggers.*``): growth of the
data, and, when the pipeline is given a `quality` source, drift and accuracy drops of the production version's
answers; the decision and its evidence are recorded (``retraining_runs.evidence``) and sent.

Each step is a public method so it can be run and tested on its own; `run_pipeline` chains them, retries the
augment-and-train step, and records everything in the ``retraining_runs`` table.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from clf.artifact import ModelArtifact
from clf.artifact.artifact import RUN_CONFIG_FILE
from clf.data.collector import ArxivCollector, EmptyCategoryError
from clf.data.paper import Paper, strip_version
from clf.evaluation import compare_versions
from clf.experiments.database import make_engine
from clf.experiments.runs import RetrainingRunStore
from clf.io import DataFileError, read_json
from clf.registry import Bump, ModelRegistry
from clf.retrain import augment
from clf.retrain.config import RetrainingConfig
from clf.retrain.notify import Notifier, summarize
from clf.retrain.outcomes import (
    AugmentedDataset,
    GrowthDecision,
    LastTrainingDateSource,
    NewData,
    PromotionDecision,
    PromotionOutcome,
    RetrainDecision,
    RetrainingError,
    RetrainResult,
    RunStatus,
)
from clf.retrain.triggers import QualitySnapshot, TriggerDecision, decide

log = logging.getLogger(__name__)


class RetrainingPipeline:
    """The retraining loop over one registry, one data source and one experiments database.

    Args:
        config: the settings (see `RetrainingConfig`).
        trigger_type: what started the run (``manual``, or ``schedule``, which makes the schedule trigger due);
            the run's ``trigger_type`` until triggers fire, when it becomes the fired ones joined by '+'.
        quality: production version → what its served answers say about it (drift, estimated and measured
            accuracy); None: no quality evidence, so only growth and schedule can fire.
        sleep: waits between retries (a seam for tests).
    """

    def __init__(
        self,
        config: RetrainingConfig,
        *,
        trigger_type: str = "manual",
        quality: Callable[[str], QualitySnapshot | None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.trigger_type = trigger_type
        self.quality = quality
        self.registry = ModelRegistry(config.registry)
        self.runs = RetrainingRunStore(make_engine(config.db))
        self.notifier = Notifier(config.email, config.slack)
        self._sleep = sleep
        self._run_id: int | None = None

    # ------------------------------------------------------------------------------------------------ detection

    def production(self) -> str:
        """The production version.

        Returns:
            The production version's name, e.g. ``v1.2.0``.

        Raises:
            RetrainingError: when nothing is in production yet.
        """
        version = self.registry.production_version()
        if version is None:
            raise RetrainingError(
                f"{self.registry.base_dir}: no version is in production, so there is nothing to retrain; train one "
                "with `clf fit`, then `clf registry create` and `clf registry promote` it"
            )
        return version

    def check_for_new_data(self) -> NewData:
        """Finds the papers published after the production version's last training date.

        The last training date is the newest ``published`` date among the production version's training papers:
        that is what the model has actually seen, whereas the registration time can be weeks after the data was
        collected and would hide the papers published in between. Only when that data is gone (or has no dates)
        does the version's ``created_at`` stand in. Papers already in the training data are not counted.

        Returns:
            The new papers and their statistics.

        Raises:
            RetrainingError: when nothing is in production.
            CollectionError: when the arXiv API still fails after the collector's retries.
        """
        production = self.production()
        metadata = self.registry.get_metadata(production)
        samples = self._training_samples(metadata)
        dates = [str(s.get("published") or "")[:10] for s in samples or []]
        dates = [d for d in dates if d]
        if dates:
            last, source = max(dates), LastTrainingDateSource.NEWEST_PUBLISHED
        else:
            last, source = str(metadata["created_at"])[:10], LastTrainingDateSource.CREATED_AT
            log.warning("%s: training data unavailable or undated; using its created_at %s", production, last)
        known = {strip_version(s["arxiv_id"]) for s in samples or []}
        start = (date.fromisoformat(last) + timedelta(days=1)).isoformat()

        cfg = self.config.data
        scan_dir = Path(self.config.work_dir) / "incoming" / f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        collector = ArxivCollector(
            data_dir=scan_dir,
            source=cfg.source,
            snapshot_path=cfg.snapshot_path,
            api_url=cfg.api_url,
            delay_seconds=cfg.api_delay_seconds,
            seed=cfg.seed,
        )
        papers: list[Paper] = []
        for category in cfg.categories:
            try:
                found = collector.collect_papers_by_category(category, cfg.max_papers_per_category, start_date=start)
            except EmptyCategoryError:
                found = []
            papers.extend(p for p in found if strip_version(p.arxiv_id) not in known)
        papers.sort(key=lambda p: p.arxiv_id)
        counts = Counter(p.primary_category for p in papers)
        by_category = {c: counts.get(c, 0) for c in cfg.categories}
        size = len(samples) if samples is not None else int((metadata.get("dataset") or {}).get("num_samples") or 0)
        new_data = NewData(production, last, source, papers, by_category, size)
        log.info(
            "New data since %s (%s of %s): %d papers from %s; by category %s; current dataset %d samples",
            last,
            source.value,
            production,
            new_data.count,
            cfg.source,
            by_category,
            size,
        )
        return new_data

    def should_retrain(self, new_data_count: int, current_dataset_size: int) -> GrowthDecision:
        """Retrain when the new papers grow the dataset by at least `growth_threshold`.

        Args:
            new_data_count: new papers found.
            current_dataset_size: samples in the production version's dataset.

        Returns:
            The decision with its evidence (also logged).
        """
        threshold = self.config.growth_threshold
        ratio = new_data_count / current_dataset_size if current_dataset_size else math.inf
        retrain = bool(new_data_count) and ratio >= threshold
        decision = RetrainDecision.RETRAIN if retrain else RetrainDecision.SKIP
        reason = (
            f"{new_data_count} new papers grow the dataset of {current_dataset_size} samples by {ratio:.1%}, "
            f"{'at least' if retrain else 'below'} the growth threshold {threshold:.1%}"
        )
        log.info("Growth trigger: %s (%s)", decision.value, reason)
        return GrowthDecision(decision, new_data_count, current_dataset_size, ratio, threshold, reason)

    def decide(self, growth: GrowthDecision, version: str) -> TriggerDecision:
        """Judges every enabled trigger on its evidence (`clf.retrain.triggers.decide`).

        A quality source that raises, or answers about another version, counts as missing evidence (named in the
        evidence's ``quality_error``): the growth and schedule triggers still judge.

        Args:
            growth: `should_retrain`'s judgement of the new papers.
            version: the production version, whose quality is asked for.

        Returns:
            The decision; its evidence also names the run's origin (``manual`` or ``schedule``).
        """
        quality, error = None, None
        if self.quality is not None:
            try:
                quality = self.quality(version)
            except Exception as err:  # noqa: BLE001 - a monitoring outage must not stop growth or schedule from judging
                log.exception("The quality evidence of %s is unavailable", version)
                error = f"{type(err).__name__}: {err}"
        if quality is not None and quality.version != version:
            error = f"the quality source answered for {quality.version}, not the production version {version}"
            quality = None
        decision = decide(
            self.config.triggers, growth=growth, quality=quality, schedule_due=self.trigger_type == "schedule"
        )
        evidence = {"origin": self.trigger_type, **decision.evidence}
        if error:
            evidence["quality_error"] = error
        log.info("Retraining decision: %s (%s)", "retrain" if decision.fire else "skip", decision.reason)
        return TriggerDecision(decision.fire, decision.fired, evidence)

    # ---------------------------------------------------------------------------------------- data and training

    def augment_dataset(self, existing: str | Path, new: Sequence[Paper]) -> AugmentedDataset:
        """Adds the new papers to the dataset in `existing`, writing ``<work_dir>/<next version>/``.

        Old papers keep their splits (old test papers never reach training); the new papers are preprocessed,
        deduplicated against the old ones and split stratified by label. See `clf.retrain.augment`.

        Args:
            existing: the production version's data folder.
            new: the new papers.

        Returns:
            The augmented dataset.

        Raises:
            RetrainingError: when the old splits are unreadable or no new paper is usable.
        """
        cfg = self.config.data
        out_dir = Path(self.config.work_dir) / self.registry.next_version(Bump.MINOR)
        return augment.augment_dataset(
            existing, new, out_dir, categories=cfg.categories, min_words=cfg.min_words, seed=cfg.seed
        )

    def train_new_version(self, dataset: AugmentedDataset, current_version: str) -> str:
        """Trains the next minor version with `current_version`'s config on `dataset` and registers it.

        The config is the version's ``config.yaml`` (the resolved fit config of its run), trained by
        `clf.training.fit` on the augmented data (its tokenized cache rebuilt) with `fit_overrides` applied, every
        output in ``<runs_dir>/<version>/``.

        Args:
            dataset: the augmented dataset.
            current_version: the version whose config is reused (production).

        Returns:
            The registered version. Called outside `run_pipeline`, it records a ``manual`` run of its own.

        Raises:
            RetrainingError: when the version has no config.yaml.
            Exception: whatever the fit raises; nothing is registered then.
        """
        from clf import training  # torch and Lightning load when a run trains, not for `clf retrain history`

        version = self.registry.next_version(Bump.MINOR)
        folder = self.registry.version_dir(current_version)
        source = ModelArtifact(folder, verify=False).run_config
        if source is None:
            raise RetrainingError(
                f"{folder / RUN_CONFIG_FILE} is missing: {current_version} was not registered from a `clf fit` "
                "export, so its training config is unknown; retrain it by hand with `clf fit --config ...`"
            )
        run_dir = Path(self.config.runs_dir) / version
        if run_dir.exists():
            shutil.rmtree(run_dir)  # left by a failed attempt: the version was never registered
        # The old cache holds the old splits' tokens.
        overrides = {**self.config.fit_overrides, "data.data_dir": str(dataset.data_dir), "data.cache_dir": None}

        log.info("Training %s from %s's config on %s into %s", version, current_version, dataset.data_dir, run_dir)
        started = time.perf_counter()
        run = training.fit(source, overrides, run_dir=run_dir)
        seconds = time.perf_counter() - started
        if run.export_dir is None:
            raise RetrainingError(
                f"training {version} exported no model into {run_dir / 'export'}; remove export.enabled: false from "
                "--fit_overrides"
            )
        metadata = {"retraining": {"run_id": self._run_id, "retrained_from": current_version, **dataset.to_json()}}
        self.registry.create_version(run.export_dir, version, metadata=metadata)
        training_metrics = self.registry.get_metadata(version).get("metrics") or {}
        self._record(
            standalone=True,
            model_version=version,
            dataset_size=dataset.num_samples,
            training_time_seconds=seconds,
            metrics={"training": training_metrics},
        )
        log.info("Registered %s after %.1f s of training", version, seconds)
        return version

    # ------------------------------------------------------------------------------------------ compare, promote

    def evaluate_improvement(self, new: str, production: str, test_data: str | Path | list[dict[str, Any]]) -> Any:
        """Scores both versions on the same held-out test samples.

        Args:
            new: the candidate version.
            production: the production version (the baseline).
            test_data: a split file or samples that neither version trained on.

        Returns:
            A `clf.evaluation.Comparison`; ``improvement["accuracy"]`` and ``["f1_macro"]`` are new minus
            production.
        """
        comparison = compare_versions(self.registry, production, new, test_data)
        log.info(
            "%s vs %s on %d samples: accuracy %.4f vs %.4f, macro-F1 %.4f vs %.4f",
            new,
            production,
            comparison.candidate.num_samples,
            comparison.candidate.accuracy,
            comparison.baseline.accuracy,
            comparison.candidate.f1_macro,
            comparison.baseline.f1_macro,
        )
        self._record(metrics={"comparison": comparison.to_json()})
        return comparison

    def promote_if_better(self, new: str, comparison: Any) -> PromotionOutcome:
        """Promotes `new` when its improvement in `promotion_metric` is above `promotion_threshold`, else archives it.

        Args:
            new: the candidate version.
            comparison: `evaluate_improvement`'s result (baseline = production).

        Returns:
            The decision with its evidence, also written to the registry (audit log or archive mark).
        """
        metric, threshold = self.config.promotion_metric, self.config.promotion_threshold
        improvement = float(comparison.improvement[metric])
        production = comparison.baseline.version
        others = ", ".join(f"{k} {v:+.4f}" for k, v in comparison.improvement.items() if k != metric)
        better = improvement > threshold
        decision = PromotionDecision.PROMOTE if better else PromotionDecision.ARCHIVE
        reason = (
            f"retraining: {metric} {improvement:+.4f} over {production} is "
            f"{'above' if better else 'not above'} the promotion threshold {threshold:+.4f} ({others})"
        )
        if better:
            self.registry.promote_to_production(new, reason=reason)
        else:
            self.registry.archive_version(new, reason=reason)
        outcome = PromotionOutcome(decision, new, production, metric, improvement, threshold, reason)
        log.info("Promotion decision for %s: %s (%s)", new, decision.value, reason)
        self._record(metrics={"promotion": outcome.to_json()})
        return outcome

    def send_notification(self, subject: str, message: str, level: str = "info") -> dict[str, str]:
        """Emails and posts to Slack, as configured; never raises.

        Args:
            subject: the email subject and Slack title.
            message: the body.
            level: ``info``, ``warning`` or ``critical``.

        Returns:
            Channel → delivery (``sent``, ``failed``, ``logged``, ``disabled``).
        """
        return self.notifier.send(subject, message, level)

    # ------------------------------------------------------------------------------------------------- the loop

    def run_pipeline(self, *, dry_run: bool = False) -> RetrainResult:
        """Runs the whole loop once; its record ends ``completed``, ``skipped``, ``failed`` (or ``dry_run``).

        Args:
            dry_run: detect and decide only: the decision is recorded with its evidence (status ``dry_run``), and
                nothing is trained, registered or sent.

        Returns:
            What happened. Errors do not propagate: a failed run is returned with its error (and recorded).
        """
        if dry_run:
            found = self.check_for_new_data()
            result = RetrainResult(run_id=None, new_data=found)
            result.growth = self.should_retrain(found.count, found.current_dataset_size)
            decision = result.triggers = self.decide(result.growth, found.production_version)
            result.status = RunStatus.DRY_RUN
            result.run_id = self.runs.start(decision.trigger_type or self.trigger_type, status=RunStatus.DRY_RUN.value)
            self.runs.finish(
                result.run_id,
                RunStatus.DRY_RUN.value,
                new_data_count=found.count,
                dataset_size=found.current_dataset_size,
                evidence=decision.evidence,
                metrics={"new_data": found.to_json(), "growth": result.growth.to_json()},
            )
            return result
        self._run_id = self.runs.start(self.trigger_type)
        result = RetrainResult(run_id=self._run_id)
        try:
            self._run(result)
        except Exception as err:  # noqa: BLE001 - any failure must end the record as failed, with its error
            log.exception("Retraining run %s failed", self._run_id)
            result.status = RunStatus.FAILED
            result.error = f"{type(err).__name__}: {err}"
            self._record(error_message=result.error)
        finally:
            self.runs.finish(self._run_id, result.status.value)
            self._run_id = None
        subject, message, level = summarize(result)
        result.notifications = self.send_notification(subject, message, level)
        return result

    def _run(self, result: RetrainResult) -> None:
        found = result.new_data = self.check_for_new_data()
        self._record(
            new_data_count=found.count, dataset_size=found.current_dataset_size, metrics={"new_data": found.to_json()}
        )
        growth = result.growth = self.should_retrain(found.count, found.current_dataset_size)
        self._record(metrics={"growth": growth.to_json()})
        decision = result.triggers = self.decide(growth, found.production_version)
        self._record(evidence=decision.evidence, trigger_type=decision.trigger_type or self.trigger_type)
        if not decision.fire:
            result.status = RunStatus.SKIPPED
            return
        production = found.production_version
        previous = (self.registry.get_metadata(production).get("dataset") or {}).get("data_dir")
        if not previous:
            raise RetrainingError(
                f"{production}'s metadata names no training data folder, so its old splits cannot be kept apart; "
                "register exports written by `clf fit` (their config.yaml names data.data_dir)"
            )
        attempts = self.config.max_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                result.dataset = dataset = self.augment_dataset(previous, found.papers)
                result.version = version = self.train_new_version(dataset, production)
                break
            except Exception as err:
                if attempt == attempts:
                    raise
                log.warning("Attempt %d/%d failed (%s: %s); retrying", attempt, attempts, type(err).__name__, err)
                self._record(metrics={f"attempt_{attempt}_error": f"{type(err).__name__}: {err}"})
                self._sleep(self.config.retry_delay_seconds)
        comparison = self.evaluate_improvement(version, production, dataset.test_path)
        result.comparison = comparison.to_json()
        result.promotion = self.promote_if_better(version, comparison)
        result.status = RunStatus.COMPLETED

    def _record(self, *, standalone: bool = False, **fields: Any) -> None:
        """Updates the current run's row; outside `run_pipeline`, a `standalone` step records a manual run of its own
        (the other steps' outcomes are in the registry already)."""
        if self._run_id is not None:
            self.runs.update(self._run_id, **fields)
            return
        if not standalone:
            return
        run_id = self.runs.start("manual")
        self.runs.finish(run_id, RunStatus.COMPLETED.value, **fields)

    def _training_samples(self, metadata: dict[str, Any]) -> list[dict[str, Any]] | None:
        data_dir = (metadata.get("dataset") or {}).get("data_dir")
        if not data_dir:
            return None
        try:
            splits = augment.read_splits(Path(data_dir))
        except RetrainingError:
            processed = Path(data_dir) / "processed" / "dataset.json"
            try:
                return read_json(processed)["samples"]
            except (DataFileError, FileNotFoundError, KeyError, TypeError):
                return None
        return [s for part in splits.values() for s in part]
