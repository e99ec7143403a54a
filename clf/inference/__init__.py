"""The one inference path: a predictor over a model artifact, with PyTorch and onnxruntime backends.

    from clf.inference import ModelPredictor
    ModelPredictor("runs/quickstart/export", "base").predict_texts(["Attention is all you need. ..."])

`ModelPredictor` (`clf.inference.predictor`) loads an artifact and classifies texts in length-sorted passes
(`clf.inference.passes`) into `Prediction` records (`clf.inference.prediction`); `onnx_forward`
(`clf.inference.onnx_runtime`) runs its ONNX files. The service, ONNX
parity, deployment validation, version comparison and retraining's decision all go through it.
"""

from clf.inference.errors import ModelLoadError
from clf.inference.passes import prediction_records, probabilities_in_sorted_passes
from clf.inference.prediction import LabelProbability, Prediction
from clf.inference.predictor import BASE_VERSION, Backend, ModelPredictor

__all__ = [
    "BASE_VERSION",
    "Backend",
    "LabelProbability",
    "ModelLoadError",
    "ModelPredictor",
    "Prediction",
    "prediction_records",
    "probabilities_in_sorted_passes",
]
