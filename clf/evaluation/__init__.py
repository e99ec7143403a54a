"""Evaluation: scores of model versions on labelled papers through the one inference path, and comparisons.

from clf.evaluation import compare_versions
compare_versions(registry, "v1.0.0", "v1.1.0", "data/quickstart/splits/test.json").improvement
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

__all__ = [
    "Comparison",
    "Evaluation",
    "EvaluationError",
    "VersionScore",
    "compare_versions",
    "evaluate",
    "load_samples",
    "sample_texts",
    "score_version",
]
