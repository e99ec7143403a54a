"""The models of a replay, each trained once: by cutoff day, on every paper published up to it.

A model the loop trains at time t learns from the papers whose labels have arrived by then, so two policies that
retrain at the same moment get the same model: the cache trains it once (through `clf.training.fit`, on a data
folder built by `clf.data.building.build_splits`, as `clf fit` collects and splits) and each policy registers its
own copy. Answers are cached per model and period, so a model serving several policies answers each paper once.

    cache = ModelCache(config, world)
    model = cache.model_at(date(2025, 8, 24))        # TrainedModel: export, data folder, dataset size, CPU seconds
    answers = cache.answers(model, period, papers)   # list[Prediction], through ModelPredictor
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from clf import DEFAULT_CATEGORIES
from clf.backtest.config import BacktestConfig
from clf.backtest.world import Period, World
from clf.data.building import build_splits
from clf.data.cleaning import model_input_text
from clf.data.paper import Paper
from clf.evaluation.baseline import TfidfBaseline, fit_tfidf_baseline
from clf.inference import ModelPredictor
from clf.inference.prediction import Prediction
from clf.io import read_json, read_jsonl, write_json_atomic, write_jsonl_atomic
from clf.retrain.augment import read_splits

log = logging.getLogger(__name__)

DONE_FILE = "backtest_model.json"
"""Written in a model's run folder once it is trained and exported: what the cache reads back on resume."""
PREDICTOR_SLOTS = 3
"""Predictors kept loaded at once (a replay moves forward, so only the newest few are asked again)."""


@dataclass(frozen=True)
class TrainedModel:
    """One model of the replay.

    Attributes:
        key: its cutoff day (``YYYY-MM-DD``): the newest publication day it trained on.
        export_dir: the export (`clf.artifact.ModelArtifact` folder).
        data_dir: its data folder (``splits/``).
        dataset_size: papers in its splits (train, val and test).
        cpu_seconds: the process CPU time its data and fit took (every thread).
        wall_seconds: their wall time.
    """

    key: str
    export_dir: str
    data_dir: str
    dataset_size: int
    cpu_seconds: float
    wall_seconds: float

    @property
    def cutoff(self) -> date:
        """The newest publication day in its training data."""
        return date.fromisoformat(self.key)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict.

        Returns:
            The fields.
        """
        return asdict(self)


def data_settings(config: BacktestConfig) -> dict[str, Any]:
    """The data options of the replay's fit config (``data:`` with its dotted overrides), for `build_splits`.

    Args:
        config: the backtest's settings.

    Returns:
        categories, num_papers, min_words, out_of_scope_papers and seed, with the DataModule's defaults.
    """
    fit = yaml.safe_load(Path(config.fit_config).read_text()) or {}
    data = dict(fit.get("data") or {})
    data.update({k.split(".", 1)[1]: v for k, v in config.fit_overrides.items() if k.startswith("data.")})
    return {
        "categories": list(data.get("categories") or DEFAULT_CATEGORIES),
        "num_papers": int(data.get("num_papers", 5000)),
        "min_words": int(data.get("min_words", 50)),
        "out_of_scope_papers": int(data.get("out_of_scope_papers", 2000)),
        "seed": int(data.get("seed", 42)),
    }


class ModelCache:
    """Trains, remembers and runs the replay's models.

    Args:
        config: the backtest's settings (fit config and overrides, work folder, batch size).
        world: the replay's papers.
    """

    def __init__(self, config: BacktestConfig, world: World) -> None:
        self.config = config
        self.world = world
        self.root = Path(config.work_dir)
        self.data = data_settings(config)
        self._predictors: OrderedDict[str, ModelPredictor] = OrderedDict()
        self._tfidf: dict[str, tuple[TfidfBaseline, float]] = {}

    def data_at(self, cutoff: date) -> Path:
        """The data folder of the papers published up to `cutoff`, built when missing.

        Args:
            cutoff: the newest publication day included.

        Returns:
            The folder, with ``splits/``.
        """
        folder = self.root / "data" / cutoff.isoformat()
        if not (folder / "splits" / "test.json").is_file():
            build_splits(
                folder,
                categories=self.data["categories"],
                source="snapshot",
                snapshot_path=self.world.snapshot,
                num_papers=self.data["num_papers"],
                min_words=self.data["min_words"],
                out_of_scope_papers=self.data["out_of_scope_papers"],
                seed=self.data["seed"],
                end_date=cutoff.isoformat(),
            )
        return folder

    def model_at(self, cutoff: date) -> TrainedModel:
        """The model trained on the papers published up to `cutoff`: read back if trained before, else trained now.

        Args:
            cutoff: the newest publication day of its training data.

        Returns:
            The model.

        Raises:
            RuntimeError: when the recipe exports no model (``export.enabled: false``).
            Exception: whatever the fit raises (nothing is remembered then, so a resumed run trains it again).
        """
        run_dir = self.root / "models" / cutoff.isoformat()
        done = run_dir / DONE_FILE
        if done.is_file():
            return TrainedModel(**read_json(done))
        from clf import training  # torch and Lightning load when the replay trains

        cpu, wall = time.process_time(), time.perf_counter()
        data_dir = self.data_at(cutoff)
        overrides = {**self.config.fit_overrides, "data.data_dir": str(data_dir), "data.snapshot_path": None}
        log.info("Training the model of %s into %s", cutoff, run_dir)
        result = training.fit(self.config.fit_config, overrides, run_dir=run_dir)
        if result.export_dir is None:
            raise RuntimeError(f"the fit of {cutoff} exported no model; remove export.enabled: false from the recipe")
        splits = read_splits(data_dir)
        model = TrainedModel(
            key=cutoff.isoformat(),
            export_dir=str(result.export_dir),
            data_dir=str(data_dir),
            dataset_size=sum(len(s) for s in splits.values()),
            cpu_seconds=round(time.process_time() - cpu, 1),
            wall_seconds=round(time.perf_counter() - wall, 1),
        )
        write_json_atomic(done, model.to_json())
        log.info("Trained %s: %.0f s wall, %.0f s CPU", cutoff, model.wall_seconds, model.cpu_seconds)
        return model

    def answers(self, model: TrainedModel, period: Period, papers: Sequence[Paper]) -> list[Prediction]:
        """`model`'s answers for `papers` of `period` (every class ranked), computed once and cached on disk.

        Args:
            model: the model.
            period: the period the papers belong to (the cache's key with the model).
            papers: the period's traffic, in order.

        Returns:
            One prediction per paper, in order.
        """
        path = self.root / "answers" / model.key / f"{period.name}.jsonl"
        if path.is_file():
            rows = [record for _, record in read_jsonl(path)]
            if [r.get("arxiv_id") for r in rows] == [p.arxiv_id for p in papers]:
                return [Prediction.from_json(r) for r in rows]
        predictor = self._predictor(model)
        started = time.perf_counter()
        predictions = predictor.predict_texts(texts(papers), batch_size=self.config.batch_size)
        predictions = [_with_id(p, paper.arxiv_id) for p, paper in zip(predictions, papers, strict=True)]
        log.info(
            "%s answered %d papers of %s in %.1f s", model.key, len(papers), period.name, time.perf_counter() - started
        )
        write_jsonl_atomic(path, [p.to_json() for p in predictions])
        return predictions

    def tfidf_at(self, cutoff: date) -> tuple[TfidfBaseline, float]:
        """TF-IDF + logistic regression trained on the data folder of `cutoff` (C chosen on its val split).

        Args:
            cutoff: the newest publication day of its training data.

        Returns:
            The baseline and the CPU seconds its fit took.
        """
        key = cutoff.isoformat()
        if key not in self._tfidf:
            splits = read_splits(self.data_at(cutoff))
            cpu = time.process_time()
            baseline = fit_tfidf_baseline(
                [s["text"] for s in splits["train"]],
                [s["label"] for s in splits["train"]],
                [s["text"] for s in splits["val"]],
                [s["label"] for s in splits["val"]],
                seed=self.data["seed"],
            )
            self._tfidf[key] = (baseline, round(time.process_time() - cpu, 1))
        return self._tfidf[key]

    def tfidf_probabilities(self, cutoff: date, papers: Sequence[Paper], labels: Sequence[str]) -> np.ndarray:
        """The TF-IDF baseline of `cutoff` on `papers`.

        Args:
            cutoff: which baseline.
            papers: the papers.
            labels: the class order of the columns.

        Returns:
            ``(N, C)`` probabilities.
        """
        baseline, _ = self.tfidf_at(cutoff)
        return baseline.predict_proba(texts(papers), labels=labels)

    def _predictor(self, model: TrainedModel) -> ModelPredictor:
        if model.key in self._predictors:
            self._predictors.move_to_end(model.key)
            return self._predictors[model.key]
        predictor = ModelPredictor(model.export_dir, version=model.key)
        self._predictors[model.key] = predictor
        while len(self._predictors) > PREDICTOR_SLOTS:
            self._predictors.popitem(last=False)
        return predictor


def texts(papers: Sequence[Paper]) -> list[str]:
    """Each paper's model input, built as the service builds it (`clf.data.cleaning.model_input_text`).

    Args:
        papers: the papers.

    Returns:
        One text per paper.
    """
    return [model_input_text(p.title, p.abstract) for p in papers]


def _with_id(prediction: Prediction, arxiv_id: str) -> Prediction:
    return replace(prediction, arxiv_id=arxiv_id)
