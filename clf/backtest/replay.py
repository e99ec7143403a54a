"""The replay: period by period, each policy's live model answers the traffic, labels arrive, the policy decides.

For each period [start, end) and each policy, through the framework's own code:

1. **Serve.** The policy's live version (its registry's production) answers the period's papers through
   `ModelPredictor`; every answer is logged by `clf.experiments.QualityLog` (the listener `clf serve --quality.db`
   runs), at the paper's publication time on the replay's clock. A version promoted during the period answers from
   its promotion on.
2. **Labels arrive.** Every paper whose label day (publication + ``label_delay_days``) has come is labelled by arXiv
   id (`QualityLog.import_labels`, as ``clf labels import`` does), with that day as its arrival time.
3. **Decide.** At the period's end the policy's `RetrainingPipeline` judges its triggers (`should_retrain` on the
   papers labelled since the live model's cutoff, `decide` on `clf.retrain.quality.production_quality`: the drift
   test, estimated and measured accuracy of the newest answers); the decision and its evidence are a
   ``retraining_runs`` row.
4. **Retrain, validate, shadow, promote.** When it fires, the model of this moment (trained once for every policy by
   `clf.backtest.models.ModelCache`) is registered; `evaluate_improvement` scores it and the live version on its test
   papers published after the live model's cutoff (neither trained on them); a candidate clearly worse is archived
   (`promote_if_better`); else it shadows the live version for the next ``shadow_days`` of traffic, judged by
   `clf.monitoring.shadow.judge_shadow` (agreement, confidence, errors, accuracy where labels arrived), and is
   promoted (answering from then on) or archived with the verdict.

The frozen first model and TF-IDF (frozen, and retrained on the data of every period's start) answer the same papers.
The state after each period is saved (``state.json``); a killed replay resumes at the first unfinished period.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import numpy as np
import sqlalchemy as sa

from clf.backtest.config import BacktestConfig, PolicyConfig
from clf.backtest.models import ModelCache, TrainedModel, texts
from clf.backtest.report import write_report
from clf.backtest.world import Period, World, label_day, periods
from clf.data.paper import Paper
from clf.evaluation.metrics import accuracy, macro_f1
from clf.experiments.quality_log import QualityLog
from clf.experiments.tables import ServedPrediction
from clf.inference.prediction import Prediction
from clf.io import read_json, write_json_atomic
from clf.monitoring.shadow import ShadowObservations, judge_shadow
from clf.registry import Bump, ModelRegistry
from clf.retrain.augment import read_splits
from clf.retrain.config import RetrainingConfig
from clf.retrain.outcomes import RunStatus
from clf.retrain.pipeline import RetrainingPipeline
from clf.retrain.quality import production_quality
from clf.retrain.triggers import TriggersConfig
from clf.serving.routing import Route
from clf.serving.service import PredictionEvent

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
"""The replay's state after its last finished period (what a resumed run continues from)."""
FIRST_VERSION = "v1.0.0"
"""The first model's version in every policy's registry."""


@dataclass
class BacktestResult:
    """What a replay produced.

    Attributes:
        periods: per period, its papers and each policy's (and TF-IDF's) accuracy and macro-F1.
        decisions: every decision of every policy, with its evidence and what followed.
        summary: per policy, mean macro-F1 and accuracy over the periods, the difference to the frozen model and to
            TF-IDF retrained every period (period-stratified paired bootstrap intervals), retrains and CPU minutes.
        files: the written report files (JSON, Markdown, plot).
        complete: whether every period was replayed (False after `max_periods`).
    """

    periods: list[dict[str, Any]]
    decisions: list[dict[str, Any]]
    summary: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)
    complete: bool = True

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict.

        Returns:
            The fields.
        """
        return {
            "complete": self.complete,
            "summary": self.summary,
            "periods": self.periods,
            "decisions": self.decisions,
            "files": self.files,
        }


def run_backtest(config: BacktestConfig) -> BacktestResult:
    """Replays `config`'s periods (resuming after the last finished one) and writes the report.

    Args:
        config: the backtest's settings.

    Returns:
        The per-period results, the decisions and the summary.
    """
    return Replay(config).run()


class _Policy:
    """One policy's loop: its registry, its database, its pipeline and what it serves."""

    def __init__(self, policy: PolicyConfig, root: Path, config: BacktestConfig) -> None:
        self.policy = policy
        folder = root / "policies" / policy.name
        folder.mkdir(parents=True, exist_ok=True)
        self.settings = RetrainingConfig(
            registry=str(folder / "registry"),
            db=f"sqlite:///{(folder / 'experiments.db').resolve()}",
            work_dir=str(folder / "work"),
            runs_dir=str(folder / "runs"),
            growth_threshold=policy.growth_threshold,
            promotion_threshold=config.promotion_threshold,
            promotion_metric=config.promotion_metric,
            triggers=policy.triggers or TriggersConfig(),
        )
        self.registry = ModelRegistry(self.settings.registry)
        self.pipeline = RetrainingPipeline(
            self.settings, trigger_type="schedule", quality=production_quality(self.settings)
        )
        self.answers = QualityLog(self.settings.db, flush_interval_seconds=3600.0)

    @property
    def name(self) -> str:
        return self.policy.name

    def close(self) -> None:
        self.answers.close()


class Replay:
    """A backtest in progress (`run_backtest` runs one).

    Args:
        config: the backtest's settings.
    """

    def __init__(self, config: BacktestConfig) -> None:
        self.config = config
        self.root = Path(config.work_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        self.world = World(config.papers, _categories(config), self.root)
        self.cache = ModelCache(config, self.world)
        self.periods = periods(
            date.fromisoformat(config.start),
            date.fromisoformat(config.end),
            config.period_days if config.period == "days" else None,
        )
        self.delay = timedelta(days=config.label_delay_days)
        self.state = self._load_state()

    # ------------------------------------------------------------------------------------------------- the loop

    def run(self) -> BacktestResult:
        """Replays every unfinished period, saving the state after each, then writes the report.

        Returns:
            The result over the periods replayed so far.
        """
        started = time.perf_counter()
        first = self.cache.model_at(self.cutoff(self.periods[0].start))
        self.state.setdefault("models", {})[first.key] = first.to_json()
        policies = [_Policy(p, self.root, self.config) for p in self.config.policies]
        try:
            for loop in policies:
                self._begin(loop, first)
            done = self.state.setdefault("periods", [])
            todo = self.periods[len(done) :]
            if self.config.max_periods is not None:
                todo = todo[: max(0, self.config.max_periods - len(done))]
            for period in todo:
                t0 = time.perf_counter()
                record = self._period(period, policies)
                record["wall_seconds"] = round(time.perf_counter() - t0, 1)
                done.append(record)
                self.state["wall_seconds"] = round(self.state.get("wall_seconds", 0.0) + record["wall_seconds"], 1)
                self._save_state()
                log.info("Period %s replayed in %.0f s", period.name, record["wall_seconds"])
        finally:
            for loop in policies:
                loop.close()
        log.info("Replay finished in %.0f s (this run)", time.perf_counter() - started)
        complete = len(self.state["periods"]) == len(self.periods)
        summary, files = write_report(self.config, self.state, self.root, complete=complete)
        return BacktestResult(self.state["periods"], self.state.get("decisions", []), summary, files, complete)

    def cutoff(self, moment: date) -> date:
        """The newest publication day a model trained at `moment` learns from: its labels have all arrived.

        Args:
            moment: when the model is trained (a period's first day).

        Returns:
            `moment` minus the label delay, minus one day.
        """
        return moment - self.delay - timedelta(days=1)

    def _begin(self, loop: _Policy, first: TrainedModel) -> None:
        """Registers the first model in the policy's registry (once) and restores what the policy serves."""
        entry = self.state.setdefault("policies", {}).get(loop.name)
        if entry is None:
            if FIRST_VERSION not in loop.registry.list_versions():
                loop.registry.create_version(first.export_dir, FIRST_VERSION, metadata={"backtest": first.to_json()})
            loop.registry.promote_to_production(FIRST_VERSION, reason="backtest: the first model")
            entry = {"live": {"version": FIRST_VERSION, "model": first.key}, "switch": None, "retrains": [], "cpu": 0.0}
            self.state["policies"][loop.name] = entry
            return
        if loop.registry.production_version() != entry["live"]["version"]:  # a period was cut short after a promotion
            loop.registry.promote_to_production(entry["live"]["version"], reason="backtest resumed")

    # ----------------------------------------------------------------------------------------------- one period

    def _period(self, period: Period, policies: list[_Policy]) -> dict[str, Any]:
        papers = self.world.traffic(period.start, period.end)
        labels = sorted(self.cache.data["categories"])
        truth = np.array([labels.index(p.primary_category) for p in papers])
        record: dict[str, Any] = {"period": period.name, "start": period.start.isoformat(), "papers": len(papers)}
        scores: dict[str, Any] = {}
        for loop in policies:
            scores[loop.name] = self._serve(loop, period, papers, labels, truth)
        if self.config.tfidf:
            first_cutoff = self.cutoff(self.periods[0].start)
            for name, cutoff in (("tfidf_frozen", first_cutoff), ("tfidf_retrained", self.cutoff(period.start))):
                probabilities = self.cache.tfidf_probabilities(cutoff, papers, labels)
                _save_scores(self.root, name, period, probabilities, truth)
                scores[name] = {
                    **_scores(probabilities, truth),
                    "trained_on": cutoff.isoformat(),
                    "cpu_seconds": self.cache.tfidf_at(cutoff)[1] if name == "tfidf_retrained" else 0.0,
                }
        record["scores"] = scores
        last = period.index == len(self.periods) - 1
        arriving = self._arriving(period)
        for loop in policies:
            self._labels_arrive(loop, arriving)
            if not last:
                self._decide(loop, period)
        return record

    def _serve(
        self, loop: _Policy, period: Period, papers: list[Paper], labels: list[str], truth: np.ndarray
    ) -> dict[str, Any]:
        """The policy's live version (and, from its switch day, the version promoted for this period) answers."""
        entry = self.state["policies"][loop.name]
        switch = entry.get("switch")
        live = self._model(entry["live"]["model"])
        served: list[Prediction] = []
        versions: Counter[str] = Counter()
        if switch is not None:
            before = self._model(switch["from_model"])
            day = switch["day"]
            old, new = self.cache.answers(before, period, papers), self.cache.answers(live, period, papers)
            for paper, a, b in zip(papers, old, new, strict=True):
                use_new = paper.published[:10] >= day
                served.append(
                    replace(
                        b if use_new else a, version=entry["live"]["version"] if use_new else switch["from_version"]
                    )
                )
        else:
            served = [replace(p, version=entry["live"]["version"]) for p in self.cache.answers(live, period, papers)]
        versions.update(p.version or "" for p in served)
        self._log(loop, period, papers, served)
        probabilities = _probabilities(served, labels)
        _save_scores(self.root, loop.name, period, probabilities, truth)
        entry["switch"] = None
        return {**_scores(probabilities, truth), "versions": dict(versions)}

    def _log(self, loop: _Policy, period: Period, papers: list[Paper], served: list[Prediction]) -> None:
        """Logs the answers as the service's quality listener does, at the papers' times on the replay's clock."""
        table = cast(sa.Table, ServedPrediction.__table__)
        since = datetime.combine(period.start, datetime.min.time(), UTC)
        with loop.answers.engine.begin() as connection:  # a resumed period is logged again from scratch
            loop.answers.store.ensure_schema()
            connection.execute(sa.delete(table).where(table.c.created_at >= since))
        for i, (paper, prediction) in enumerate(zip(papers, served, strict=True)):
            when = datetime.fromisoformat(paper.published[:10]).replace(tzinfo=UTC) + timedelta(seconds=i % 86_400)
            record = replace(prediction, arm="production", prediction_id=f"{loop.name}:{paper.arxiv_id}")
            event = PredictionEvent(
                texts=texts([paper]),
                records=[record],
                route=Route(record.version or "", arm="production"),
                user_id=None,
                latency_ms=0.0,
                error=None,
                timestamp=when.timestamp(),
                arxiv_ids=(paper.arxiv_id,),
            )
            loop.answers.log_event(event)
        loop.answers.flush()

    def _arriving(self, period: Period) -> dict[date, list[tuple[str, str]]]:
        """The ``(arXiv id, true category)`` of every paper served so far whose label day falls in this period, by day
        (the same for every policy: they all answer the same traffic)."""
        arriving: dict[date, list[tuple[str, str]]] = {}
        for paper in self.world.traffic(self.periods[0].start, period.end):
            day = label_day(paper, self.config.label_delay_days)
            if period.start <= day < period.end:
                arriving.setdefault(day, []).append((paper.arxiv_id, paper.primary_category))
        return arriving

    def _labels_arrive(self, loop: _Policy, arriving: dict[date, list[tuple[str, str]]]) -> None:
        """Labels the policy's answers of the papers whose labels arrived, each on its day."""
        for day in sorted(arriving):
            loop.answers.import_labels(arriving[day], labelled_at=datetime.combine(day, datetime.min.time(), UTC))

    def _decide(self, loop: _Policy, period: Period) -> None:
        """The policy's decision at the period's end, and the retrain, validation, shadow and promotion it starts."""
        entry = self.state["policies"][loop.name]
        moment = period.end
        decision: dict[str, Any] = {"policy": loop.name, "period": period.name, "at": moment.isoformat()}
        self.state.setdefault("decisions", []).append(decision)
        live_model = self._model(entry["live"]["model"])
        live_version = entry["live"]["version"]
        if loop.policy.triggers is None:
            decision.update(fire=False, reason="never retrains (the frozen first model)")
            return
        cutoff = self.cutoff(moment)
        new = len(self.world.traffic(live_model.cutoff + timedelta(days=1), cutoff + timedelta(days=1)))
        growth = loop.pipeline.should_retrain(new, live_model.dataset_size)
        judged = loop.pipeline.decide(growth, live_version)
        run_id = loop.pipeline.runs.start(judged.trigger_type or "schedule")
        decision.update(
            fire=judged.fire, fired=judged.fired, reason=judged.evidence.get("reason"), evidence=judged.evidence
        )
        if not judged.fire:
            loop.pipeline.runs.finish(
                run_id,
                RunStatus.SKIPPED.value,
                new_data_count=new,
                dataset_size=live_model.dataset_size,
                evidence=judged.evidence,
            )
            return
        candidate = self.cache.model_at(cutoff)
        self.state["models"][candidate.key] = candidate.to_json()
        entry["retrains"].append(candidate.key)
        entry["cpu"] = round(entry["cpu"] + candidate.cpu_seconds, 1)
        version = loop.registry.next_version(Bump.MINOR)
        loop.registry.create_version(candidate.export_dir, version, metadata={"backtest": candidate.to_json()})
        decision.update(candidate=version, model=candidate.key)
        outcome = self._judge(loop, period, live_model, live_version, candidate, version, decision)
        loop.pipeline.runs.finish(
            run_id,
            RunStatus.COMPLETED.value,
            new_data_count=new,
            dataset_size=candidate.dataset_size,
            model_version=version,
            training_time_seconds=candidate.wall_seconds,
            evidence=judged.evidence,
            metrics={k: decision[k] for k in ("validation", "shadow", "outcome") if k in decision},
        )
        log.info("%s at %s: %s (%s)", loop.name, moment, outcome, decision.get("outcome_reason"))

    def _judge(
        self,
        loop: _Policy,
        period: Period,
        live_model: TrainedModel,
        live_version: str,
        candidate: TrainedModel,
        version: str,
        decision: dict[str, Any],
    ) -> str:
        """Validation on papers neither model trained on, then the shadow stage; promotes or archives `version`."""
        unseen = [
            s
            for s in read_splits(Path(candidate.data_dir))["test"]
            if str(s.get("published", ""))[:10] > live_model.key
        ]
        comparison = None
        if len(unseen) >= self.config.min_validation_papers:
            comparison = loop.pipeline.evaluate_improvement(version, live_version, unseen)
            improvement = float(comparison.improvement[self.config.promotion_metric])
            decision["validation"] = {
                "papers": len(unseen),
                "metric": self.config.promotion_metric,
                "improvement": round(improvement, 4),
                "threshold": self.config.promotion_threshold,
            }
            if improvement <= self.config.promotion_threshold:
                outcome = loop.pipeline.promote_if_better(version, comparison)
                decision.update(outcome="archived", outcome_reason=outcome.reason)
                return "archived"
        else:
            decision["validation"] = {
                "papers": len(unseen),
                "skipped": f"fewer than {self.config.min_validation_papers}",
            }
        switch_day = period.end + timedelta(days=self.config.shadow_days)
        if self.config.shadow_days:
            verdict = self._shadow(live_model, candidate, period.end, switch_day)
            decision["shadow"] = verdict.to_json()
            if not verdict.passed:
                reason = f"backtest shadow {verdict.status}: " + "; ".join(verdict.reasons)
                loop.registry.archive_version(version, reason=reason)
                decision.update(outcome="archived", outcome_reason=reason)
                return "archived"
        reason = "backtest: validation and shadow passed"
        if comparison is not None:
            outcome = loop.pipeline.promote_if_better(version, comparison)
            reason = outcome.reason
        else:
            loop.registry.promote_to_production(version, reason=reason)
        entry = self.state["policies"][loop.name]
        entry["switch"] = {
            "day": switch_day.isoformat(),
            "from_model": entry["live"]["model"],
            "from_version": entry["live"]["version"],
        }
        entry["live"] = {"version": version, "model": candidate.key}
        decision.update(outcome="promoted", outcome_reason=reason, switch_day=switch_day.isoformat())
        return "promoted"

    def _shadow(self, live: TrainedModel, candidate: TrainedModel, start: date, end: date) -> Any:
        """Both models answer the traffic of [start, end); the candidate's answers are judged, never served."""
        following = next((p for p in self.periods if p.start <= start < p.end), None)
        if following is None:
            return judge_shadow(ShadowObservations([], [], [], []), self.config.shadow)
        papers = self.world.traffic(following.start, following.end)
        production = self.cache.answers(live, following, papers)
        shadow = self.cache.answers(candidate, following, papers)
        window = [i for i, p in enumerate(papers) if start.isoformat() <= p.published[:10] < end.isoformat()]
        known = [
            papers[i].primary_category if label_day(papers[i], self.config.label_delay_days) < end else None
            for i in window
        ]
        observations = ShadowObservations(
            production_labels=[production[i].label or "" for i in window],
            candidate_labels=[shadow[i].label or "" for i in window],
            production_confidence=[production[i].probability or 0.0 for i in window],
            candidate_confidence=[shadow[i].probability or 0.0 for i in window],
            candidate_errors=sum(1 for i in window if shadow[i].error),
            mirrored=len(window),
            true_labels=known,
        )
        return judge_shadow(observations, self.config.shadow)

    # ------------------------------------------------------------------------------------------------- helpers

    def _model(self, key: str) -> TrainedModel:
        return TrainedModel(**self.state["models"][key])

    def _load_state(self) -> dict[str, Any]:
        path = self.root / STATE_FILE
        if not path.is_file():
            return {"config": _config_json(self.config)}
        state = read_json(path)
        if state.get("config") != _config_json(self.config):
            log.warning("%s was written with other settings; resuming with the new ones from its last period", path)
        return dict(state)

    def _save_state(self) -> None:
        write_json_atomic(self.root / STATE_FILE, self.state)


def _categories(config: BacktestConfig) -> list[str]:
    from clf.backtest.models import data_settings

    return list(data_settings(config)["categories"])


def _probabilities(predictions: list[Prediction], labels: list[str]) -> np.ndarray:
    """The ``(N, C)`` probabilities of answers ranked over every class (columns in `labels` order)."""
    column = {label: i for i, label in enumerate(labels)}
    out = np.zeros((len(predictions), len(labels)), dtype=np.float64)
    for row, prediction in enumerate(predictions):
        for entry in prediction.top_k or prediction.top3:
            out[row, column[entry.label]] = entry.probability
    return out


def _scores(probabilities: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    return {
        "accuracy": round(float(accuracy(probabilities, truth)), 4),
        "f1_macro": round(float(macro_f1(probabilities, truth)), 4),
    }


def _save_scores(root: Path, name: str, period: Period, probabilities: np.ndarray, truth: np.ndarray) -> None:
    """What the summary's bootstrap resamples: each answerer's probabilities and the truth, per period."""
    folder = root / "scores" / name
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f"{period.name}.partial.npz"
    np.savez_compressed(partial, probabilities=probabilities.astype(np.float32), truth=truth)
    partial.replace(folder / f"{period.name}.npz")


def _config_json(config: BacktestConfig) -> dict[str, Any]:
    """The settings as state.json stores them (through JSON, so they compare equal to themselves read back)."""
    from dataclasses import asdict

    return dict(json.loads(json.dumps(asdict(config))))
