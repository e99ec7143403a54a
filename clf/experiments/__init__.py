"""A/B experiments on SQL tables: sticky routing, batched prediction logs, significance tests, winner promotion.

    clf db upgrade --db sqlite:///models/experiments.db
    clf ab create --name bigger-lr --treatment v1.1.0 --traffic-split 0.5
    clf ab analyze 1
    clf ab promote 1

See docs/EXPERIMENTS.md. Importing this package loads SQLAlchemy and Alembic, not torch.
"""

from clf.experiments.analysis import ArmSummary, DecisionRule, ExperimentAnalysis, Recommendation
from clf.experiments.database import DEFAULT_DB_URL, current_revision, head_revision, make_engine, upgrade
from clf.experiments.errors import (
    DatabaseUnavailableError,
    ExperimentConflictError,
    ExperimentError,
    ExperimentNotFoundError,
    ExperimentStateError,
    InvalidExperimentError,
    UnknownPredictionError,
)
from clf.experiments.framework import ABTestingFramework
from clf.experiments.logbuffer import FlushResult, PredictionLogBuffer
from clf.experiments.quality_log import LabelImport, QualityLog, QualityWindow, ServedSample
from clf.experiments.records import Experiment, ExperimentDecision, ExperimentOutcome
from clf.experiments.serving import ExperimentSync, SyncOutcome
from clf.experiments.stats import ProportionTest, sample_size_two_proportions, two_proportion_z_test
from clf.experiments.tables import ABTestExperiment, ExperimentStatus, PredictionLog, RetrainingRun, ServedPrediction
from clf.monitoring.estimates import wilson_interval

__all__ = [
    "ABTestExperiment",
    "ABTestingFramework",
    "ArmSummary",
    "DEFAULT_DB_URL",
    "DatabaseUnavailableError",
    "DecisionRule",
    "Experiment",
    "ExperimentAnalysis",
    "ExperimentConflictError",
    "ExperimentError",
    "ExperimentNotFoundError",
    "ExperimentStateError",
    "ExperimentStatus",
    "ExperimentSync",
    "FlushResult",
    "InvalidExperimentError",
    "LabelImport",
    "PredictionLog",
    "PredictionLogBuffer",
    "ExperimentDecision",
    "ExperimentOutcome",
    "ProportionTest",
    "QualityLog",
    "QualityWindow",
    "Recommendation",
    "RetrainingRun",
    "ServedPrediction",
    "ServedSample",
    "SyncOutcome",
    "UnknownPredictionError",
    "current_revision",
    "head_revision",
    "make_engine",
    "sample_size_two_proportions",
    "two_proportion_z_test",
    "upgrade",
    "wilson_interval",
]
