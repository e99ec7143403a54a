"""Automated retraining: detect new arXiv papers, retrain when the data has grown enough, compare with production
on held-out papers, promote or archive, and tell a person.

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

__all__ = [
    "AugmentedDataset",
    "DataSourceConfig",
    "EmailConfig",
    "GrowthDecision",
    "LastTrainingDateSource",
    "NewData",
    "PromotionDecision",
    "PromotionOutcome",
    "RetrainDecision",
    "RetrainingConfig",
    "RetrainingConfigError",
    "RetrainingError",
    "RetrainResult",
    "RunStatus",
    "SlackConfig",
]
