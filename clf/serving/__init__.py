"""Serving: loaded model versions, dynamic batching, traffic rules, and the ClassificationService over them."""

from clf.inference.predictor import BASE_VERSION, ModelPredictor
from clf.serving.batching import DynamicBatcher
from clf.serving.errors import (
    InvalidInputError,
    ModelLoadError,
    NoModelError,
    ServiceClosedError,
    ServingError,
)
from clf.serving.routing import Route, SingleVersion, TrafficRule, WeightedSplit, stable_bucket
from clf.serving.service import ClassificationService, PredictionEvent, PredictionListener

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
