"""The named outcomes of the retraining pipeline, each carrying the evidence it was decided on."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clf.data.paper import Paper

if TYPE_CHECKING:
    from clf.retrain.triggers import TriggerDecision


class RetrainingError(RuntimeError):
    """The retraining pipeline cannot go on; the message says what is missing and how to fix it."""


class RetrainingConfigError(ValueError):
    """A retraining setting is missing or out of range; the message names its flag."""


class RunStatus(StrEnum):
    """How a retraining run ended (the ``status`` of its ``retraining_runs`` row)."""

    RUNNING = "running"
    COMPLETED = "completed"
    SKIPPED = "skipped"
    FAILED = "failed"
    DRY_RUN = "dry_run"
    """A dry run: detection and decision only, recorded with its evidence; nothing trained, registered or sent."""


class RetrainDecision(StrEnum):
    """Whether enough new data arrived to retrain."""

    RETRAIN = "retrain"
    SKIP = "skip"


class PromotionDecision(StrEnum):
    """What became of a newly trained version."""

    PROMOTE = "promote"
    ARCHIVE = "archive"


class LastTrainingDateSource(StrEnum):
    """Where the last training date came from."""

    NEWEST_PUBLISHED = "newest_published"
    """The newest ``published`` date in the production version's training data: what the model has seen."""
    CREATED_AT = "created_at"
    """The production version's registration time, when its training data is gone."""


@dataclass(frozen=True)
class NewData:
    """What `RetrainingPipeline.check_for_new_data` found.

    Attributes:
        production_version: the version whose training data was compared against.
        last_training_date: papers published after this day (``YYYY-MM-DD``) count as new.
        date_source: where `last_training_date` came from.
        papers: the new papers (not already in the training data), sorted by arXiv id.
        by_category: category → number of new papers.
        current_dataset_size: samples in the production version's dataset.
    """

    production_version: str
    last_training_date: str
    date_source: LastTrainingDateSource
    papers: list[Paper]
    by_category: dict[str, int]
    current_dataset_size: int

    @property
    def count(self) -> int:
        """How many new papers."""
        return len(self.papers)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary (without the papers themselves).

        Returns:
            The production version, training cut-off date and its source, and the counts of new papers.
        """
        return {
            "production_version": self.production_version,
            "last_training_date": self.last_training_date,
            "date_source": self.date_source.value,
            "new_data_count": self.count,
            "by_category": self.by_category,
            "current_dataset_size": self.current_dataset_size,
        }


@dataclass(frozen=True)
class GrowthDecision:
    """`RetrainingPipeline.should_retrain`'s verdict.

    Attributes:
        decision: retrain or skip.
        new_data_count: new papers found.
        current_dataset_size: samples in the current dataset.
        growth_ratio: new / current (infinite for an empty current dataset).
        threshold: the configured growth threshold.
        reason: one sentence saying why.
    """

    decision: RetrainDecision
    new_data_count: int
    current_dataset_size: int
    growth_ratio: float
    threshold: float
    reason: str

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict.

        Returns:
            The decision's fields, with ``decision`` as text.
        """
        return {**asdict(self), "decision": self.decision.value}


@dataclass(frozen=True)
class AugmentedDataset:
    """The dataset `RetrainingPipeline.augment_dataset` wrote.

    Attributes:
        data_dir: its folder (``processed/dataset.json`` and ``splits/{train,val,test}.json``).
        num_samples: samples in all splits together.
        new_samples: new papers kept after preprocessing and deduplication.
        split_counts: split name → samples.
        previous_data_dir: the dataset it grew from.
    """

    data_dir: Path
    num_samples: int
    new_samples: int
    split_counts: dict[str, int]
    previous_data_dir: Path

    @property
    def test_path(self) -> Path:
        """The held-out test split both versions are compared on."""
        return self.data_dir / "splits" / "test.json"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict.

        Returns:
            The dataset's fields, with the folders as text.
        """
        return {**asdict(self), "data_dir": str(self.data_dir), "previous_data_dir": str(self.previous_data_dir)}


@dataclass(frozen=True)
class PromotionOutcome:
    """`RetrainingPipeline.promote_if_better`'s verdict.

    Attributes:
        decision: promote or archive.
        version: the new version.
        production_version: the version in production before the decision.
        metric: the metric compared.
        improvement: the new version's score minus production's on that metric.
        threshold: the configured promotion threshold.
        reason: one sentence saying why, as written to the registry.
    """

    decision: PromotionDecision
    version: str
    production_version: str
    metric: str
    improvement: float
    threshold: float
    reason: str

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict.

        Returns:
            The outcome's fields, with ``decision`` as text.
        """
        return {**asdict(self), "decision": self.decision.value}


@dataclass
class RetrainResult:
    """What one `RetrainingPipeline.run_pipeline` did; the ``retraining_runs`` row holds the same.

    Attributes:
        run_id: the row's id (a dry run records its decision too).
        status: how the run ended.
        new_data: the detection, once done.
        growth: the growth judgement, once made.
        triggers: the retrain decision on every trigger's evidence, once made.
        dataset: the augmented dataset, once written.
        version: the version trained, once registered.
        comparison: the comparison's JSON, once evaluated.
        promotion: the promotion decision, once made.
        error: the error a failed run ended with.
        notifications: channel → delivery result.
    """

    run_id: int | None
    status: RunStatus = RunStatus.RUNNING
    new_data: NewData | None = None
    growth: GrowthDecision | None = None
    triggers: TriggerDecision | None = None
    dataset: AugmentedDataset | None = None
    version: str | None = None
    comparison: dict[str, Any] | None = None
    promotion: PromotionOutcome | None = None
    error: str | None = None
    notifications: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict.

        Returns:
            The run's status and each stage's outcome (None for stages not reached), nested.
        """
        return {
            "run_id": self.run_id,
            "status": self.status.value,
            "new_data": self.new_data.to_json() if self.new_data else None,
            "growth": self.growth.to_json() if self.growth else None,
            "triggers": self.triggers.to_json() if self.triggers else None,
            "dataset": self.dataset.to_json() if self.dataset else None,
            "version": self.version,
            "comparison": self.comparison,
            "promotion": self.promotion.to_json() if self.promotion else None,
            "error": self.error,
            "notifications": self.notifications,
        }
