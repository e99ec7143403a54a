"""Serving: loaded model versions, dynamic batching, traffic rules, and the ClassificationService over them.

The service, its errors and the predictor load torch; they are imported on first use, so that `clf --help` (which reads
`clf serve`'s option groups in `clf.serving.config`) stays fast.
"""

from typing import Any

_LAZY = {
    **dict.fromkeys(
        ["InvalidInputError", "ModelLoadError", "NoModelError", "ServiceClosedError", "ServingError"],
        "clf.serving.errors",
    ),
    **dict.fromkeys(["Route", "SingleVersion", "TrafficRule", "WeightedSplit", "stable_bucket"], "clf.serving.routing"),
    "BASE_VERSION": "clf.inference.predictor",
    "ModelPredictor": "clf.inference.predictor",
    "DynamicBatcher": "clf.serving.batching",
    "ClassificationService": "clf.serving.service",
    "PredictionEvent": "clf.serving.service",
    "PredictionListener": "clf.serving.service",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'clf.serving' has no attribute {name!r}")


__all__ = [
    "BASE_VERSION",
    "ClassificationService",
    "DynamicBatcher",
    "InvalidInputError",
    "ModelLoadError",
    "ModelPredictor",
    "NoModelError",
    "PredictionEvent",
    "PredictionListener",
    "Route",
    "ServiceClosedError",
    "ServingError",
    "SingleVersion",
    "TrafficRule",
    "WeightedSplit",
    "stable_bucket",
]
