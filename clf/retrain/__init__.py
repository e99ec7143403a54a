"""Automated retraining: detect new arXiv papers, retrain on evidence (data growth, drift, accuracy drops, a
schedule), compare with production on held-out papers, promote or archive, and tell a person.

    clf retrain run --config configs/retraining.yaml

See docs/RETRAINING.md.
"""

from clf.retrain.config import DataSourceConfig, EmailConfig, RetrainingConfig, RetrainingConfigError, SlackConfig
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
from clf.retrain.triggers import QualitySnapshot, TriggerDecision, TriggersConfig

__all__ = [
    "AugmentedDataset",
    "DataSourceConfig",
    "EmailConfig",
    "GrowthDecision",
    "LastTrainingDateSource",
    "NewData",
    "PromotionDecision",
    "PromotionOutcome",
    "QualitySnapshot",
    "RetrainDecision",
    "RetrainingConfig",
    "RetrainingConfigError",
    "RetrainingError",
    "RetrainResult",
    "RunStatus",
    "SlackConfig",
    "TriggerDecision",
    "TriggersConfig",
]
