"""`BacktestConfig`: every setting of a backtest, as typed dataclass fields (each one a ``clf backtest`` option)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

from clf.monitoring.shadow import ShadowCriteria
from clf.retrain.triggers import TriggersConfig


class BacktestConfigError(ValueError):
    """A backtest setting is out of range; the message names the option and the fix."""


@dataclass
class PolicyConfig:
    """One retraining policy the backtest replays.

    Attributes:
        name: the policy's name in the tables and folders (letters, digits, ``-`` and ``_``).
        triggers: what starts a retraining run, as ``clf retrain run --triggers.*`` takes it; null: never retrain
            (the frozen first model).
        growth_threshold: the growth trigger's threshold (new labelled papers / the live model's dataset size).
    """

    name: str
    triggers: TriggersConfig | None = None
    growth_threshold: float = 0.10

    def __post_init__(self) -> None:
        if not self.name or not all(c.isalnum() or c in "-_" for c in self.name):
            raise BacktestConfigError(f"--policies: a policy name must be letters, digits, - or _, got {self.name!r}")
        if self.growth_threshold < 0:
            raise BacktestConfigError(f"--policies: {self.name}'s growth_threshold must be >= 0")


def _only(**on: Any) -> TriggersConfig:
    off: dict[str, Any] = {
        "growth": False,
        "drift": False,
        "estimated_accuracy_drop": None,
        "measured_accuracy_drop": None,
        "schedule": False,
    }
    return TriggersConfig(**{**off, **on})


def default_policies() -> list[PolicyConfig]:
    """The policies compared by default: never, every period, and each trigger of `clf retrain` alone and together.

    Returns:
        ``frozen``, ``schedule``, ``growth``, ``drift``, ``estimated_drop``, ``measured_drop`` and ``any`` (the
        triggers of configs/retraining.yaml: growth, drift and both accuracy drops, any one firing).
    """
    return [
        PolicyConfig("frozen"),
        PolicyConfig("schedule", _only(schedule=True)),
        PolicyConfig("growth", _only(growth=True)),
        PolicyConfig("drift", _only(drift=True)),
        PolicyConfig("estimated_drop", _only(estimated_accuracy_drop=0.03)),
        PolicyConfig("measured_drop", _only(measured_accuracy_drop=0.03)),
        PolicyConfig("any", TriggersConfig()),
    ]


@dataclass
class BacktestConfig:
    """A time-ordered replay of papers through the production loop (``clf backtest --config configs/backtest.yaml``).

    Attributes:
        papers: snapshot files (JSON Lines, gzip or not) holding every paper of the replay and its past; a paper in
            two files counts once (the first file's record).
        start: the first period's first day (``YYYY-MM-DD``); the first model trains on the papers before it.
        end: the day after the last period (exclusive).
        period: ``month`` (calendar months) or ``days`` (`period_days` each).
        period_days: the length of a period when `period` is ``days``.
        label_delay_days: a paper's true category reaches the loop this many days after it is published: the
            measured-accuracy trigger sees it then, and a model trained at time t learns from the papers published
            up to t minus this.
        shadow_days: a candidate is mirrored this many days of traffic beside the live model before it is promoted
            (judged by `clf.monitoring.shadow.judge_shadow` on `shadow`); 0 promotes on validation alone.
        shadow: the shadow stage's criteria (the ones `clf deploy shadow` takes).
        promotion_metric: what the validation before the shadow compares (on the candidate's test papers that
            neither model trained on).
        promotion_threshold: the candidate is promoted when that metric improves by more than this (negative: it
            may be that much worse; a newer model is kept unless it is clearly worse).
        min_validation_papers: fewest papers the validation needs; with fewer it is skipped (said in the evidence).
        fit_config: the fit config every model of the replay is trained with (the faster recipe).
        fit_overrides: dotted keys set on it, as ``clf fit`` flags would be.
        policies: the retraining policies replayed side by side (default: `default_policies`).
        tfidf: also score TF-IDF + logistic regression, frozen on the first model's data and retrained every period.
        batch_size: papers per predictor pass.
        bootstrap_resamples: resamples of the period-stratified paired bootstrap of the summary.
        seed: seed of the bootstrap.
        work_dir: every output: models, data folders, each policy's registry and database, state.json (resume),
            backtest.json, backtest.md, backtest.png.
        max_periods: stop after this many periods of the replay (a resumed run continues from there); None: all.
    """

    papers: list[str] = field(
        default_factory=lambda: ["../shared/data/arxiv/papers.jsonl.gz", "../shared/data/arxiv/new_papers.jsonl.gz"]
    )
    start: str = "2025-09-01"
    end: str = "2026-09-01"
    period: Literal["month", "days"] = "month"
    period_days: int = 30
    label_delay_days: int = 7
    shadow_days: int = 7
    shadow: ShadowCriteria = field(default_factory=ShadowCriteria)
    promotion_metric: Literal["accuracy", "f1_macro"] = "accuracy"
    promotion_threshold: float = -0.01
    min_validation_papers: int = 50
    fit_config: str = "configs/backtest_fit.yaml"
    fit_overrides: dict[str, Any] = field(default_factory=dict)
    policies: list[PolicyConfig] = field(default_factory=default_policies)
    tfidf: bool = True
    batch_size: int = 64
    bootstrap_resamples: int = 1000
    seed: int = 0
    work_dir: str = "runs/backtest"
    max_periods: int | None = None

    def __post_init__(self) -> None:
        try:
            start, end = date.fromisoformat(self.start), date.fromisoformat(self.end)
        except ValueError as err:
            raise BacktestConfigError(f"--start and --end must be YYYY-MM-DD days: {err}") from err
        if start >= end:
            raise BacktestConfigError(f"--start {self.start} must be before --end {self.end}")
        if not self.papers:
            raise BacktestConfigError("--papers names no snapshot file; give the papers to replay")
        if self.period not in ("month", "days"):
            raise BacktestConfigError(f"--period must be month or days, got {self.period!r}")
        for name in ("period_days",):
            if getattr(self, name) < 1:
                raise BacktestConfigError(f"--{name} must be >= 1")
        for name in ("label_delay_days", "shadow_days", "min_validation_papers"):
            if getattr(self, name) < 0:
                raise BacktestConfigError(f"--{name} must be >= 0")
        if self.batch_size < 1 or self.bootstrap_resamples < 1:
            raise BacktestConfigError("--batch_size and --bootstrap_resamples must be >= 1")
        if self.max_periods is not None and self.max_periods < 1:
            raise BacktestConfigError("--max_periods must be >= 1 or null (every period)")
        names = [p.name for p in self.policies]
        if not names or len(set(names)) != len(names):
            raise BacktestConfigError(f"--policies needs at least one policy and distinct names, got {names}")
