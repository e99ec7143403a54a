"""Evaluation: honest protocols, metrics with intervals and calibration, the TF-IDF baseline, and comparisons.

    from clf.evaluation import build_protocol, evaluate_on_protocol
    protocol = build_protocol("temporal", categories=predictor.labels)   # train on papers, test on later papers
    result = evaluate_on_protocol(protocol, [predictor])                 # the model and the baseline, side by side
    result.candidates[0].report.intervals["accuracy"]

    from clf.evaluation import compare_versions
    compare_versions(registry, "v1.0.0", "v1.1.0", "data/quickstart/splits/test.json").improvement

`clf.evaluation.protocol` builds the standard, temporal and date-ordered protocols from the shared data;
`clf.evaluation.metrics` holds the metrics as pure functions over arrays and `ClassificationReport`;
`clf.evaluation.baseline` the TF-IDF + logistic-regression baseline; `clf.evaluation.suite` scores candidates
side by side; `clf.evaluation.plots` draws reliability diagrams and per-class F1; `clf.evaluation.compare` scores
and compares registered versions (what deployment and retraining decide on). Every model is scored through
`clf.inference.ModelPredictor`.
"""

from clf.evaluation.compare import (
    Comparison,
    Evaluation,
    EvaluationError,
    VersionScore,
    compare_versions,
    evaluate,
    load_samples,
    sample_texts,
    score_version,
)
from clf.evaluation.metrics import ClassificationReport, Interval, ReliabilityBin
from clf.evaluation.protocol import PROTOCOLS, Protocol, ProtocolError, build_protocol, split_protocol
from clf.evaluation.suite import ProtocolResult, ScoredCandidate, SeenPapers, evaluate_on_protocol, seen_papers

__all__ = [
    "PROTOCOLS",
    "ClassificationReport",
    "Comparison",
    "Evaluation",
    "EvaluationError",
    "Interval",
    "Protocol",
    "ProtocolError",
    "ProtocolResult",
    "ReliabilityBin",
    "ScoredCandidate",
    "SeenPapers",
    "VersionScore",
    "build_protocol",
    "compare_versions",
    "evaluate",
    "evaluate_on_protocol",
    "load_samples",
    "sample_texts",
    "score_version",
    "seen_papers",
    "split_protocol",
]
