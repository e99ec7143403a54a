"""One loaded model version: tokenizer, weights and label map, classifying batches of texts.

predictor = ModelPredictor.from_registry(ModelRegistry("models/classification"), "production")
predictor.predict_texts(["Attention is all you need. We propose ..."])
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from clf.io import read_json
from clf.serving.errors import ModelLoadError

if TYPE_CHECKING:
    from clf.registry import ModelRegistry

log = logging.getLogger(__name__)

Backend = Literal["torch", "onnx"]
"""What runs the forward pass: PyTorch, or onnxruntime on the version's ``onnx/`` files (see `clf export`)."""

BASE_VERSION = "base"
"""The version name a predictor loaded from a plain export folder (not from the registry) answers with."""


class ModelPredictor:
    """A model version ready to classify: ``predict_texts`` takes cleaned texts and returns one record each.

    Each record is ``{"label", "probability", "top3": [{"label", "probability"}, ...]}`` (plus ``labels`` for a
    multi-label model), the same shape ``clf predict`` writes.

    Args:
        model_dir: a registry version folder or an export folder (``model.safetensors``, ``config.json``,
            tokenizer files, ``label_map.json``).
        version: the version this model answers as (``v1.2.0``, or ``base`` for an unregistered export).
        device: the torch device to run on.
        backend: ``torch``, or ``onnx`` to run the folder's ONNX model with onnxruntime (written by
            ``clf export --format onnx``); the weights in ``model.safetensors`` are then not loaded.
        onnx_variant: with the onnx backend: ``int8``, ``fp32``, or ``auto`` (int8 when the folder has it).

    Raises:
        ModelLoadError: when the folder is missing, incomplete, its weights do not load, or the onnx backend is
            asked for a folder without ONNX files.
    """

    def __init__(
        self,
        model_dir: str | Path,
        version: str,
        device: str = "cpu",
        backend: Backend = "torch",
        onnx_variant: Literal["auto", "fp32", "int8"] = "auto",
    ) -> None:
        import torch
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a server's log wants lines, not progress bars

        self.model_dir = Path(model_dir)
        self.version = version
        self.device = torch.device(device)
        if not (self.model_dir / "label_map.json").is_file():
            raise ModelLoadError(
                f"{self.model_dir}: no label_map.json; point at a registry version or a run's export/ folder"
            )
        if backend not in ("torch", "onnx"):
            raise ModelLoadError(f"unknown backend {backend!r}; use torch or onnx")
        self.model: Any = None
        try:
            label_map = read_json(self.model_dir / "label_map.json")
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
            if backend == "onnx":
                config = AutoConfig.from_pretrained(self.model_dir)
                self._forward, self.backend = _onnx_backend(self.model_dir, device, onnx_variant)
            else:
                self.model = AutoModelForSequenceClassification.from_pretrained(self.model_dir, use_safetensors=True)
                config = self.model.config
                _own_weights(self.model)
                self.model.to(self.device).eval()
                self._forward, self.backend = self._torch_forward, "torch"
        except ModelLoadError:
            raise
        except Exception as err:  # safetensors, tokenizers and transformers each raise their own kinds
            raise ModelLoadError(f"{version} ({self.model_dir}) does not load: {err}") from err
        self.id2label = {int(i): str(label) for i, label in label_map["id2label"].items()}
        self.multi_label = bool(label_map.get("multi_label", False))
        self.threshold = float(label_map.get("threshold", 0.5))
        positions = getattr(config, "max_position_embeddings", 512)
        self.max_length = min(int(label_map.get("max_length") or 512), positions)
        # Tokenizers' Rust backend refuses concurrent use of one instance ("Already borrowed").
        self._tokenizer_lock = threading.Lock()
        self._pad = DataCollatorWithPadding(self.tokenizer, return_tensors="pt")

    @classmethod
    def from_registry(
        cls, registry: ModelRegistry, version: str, device: str = "cpu", backend: Backend = "torch"
    ) -> ModelPredictor:
        """Loads a registered version (``production`` names the production version).

        Args:
            registry: the model registry.
            version: ``vX.Y.Z`` or ``production``.
            device: the torch device to run on.
            backend: ``torch`` or ``onnx`` (see the class).

        Returns:
            The loaded predictor, answering as the resolved version.

        Raises:
            RegistryError: for an unknown version or an empty production pointer.
            ModelLoadError: when its files do not load.
        """
        from clf.registry import RegistryError, Version

        if version == "production":
            current = registry.production_version()
            if current is None:
                raise RegistryError(f"{registry.base_dir}: no version is in production yet; promote one first")
            version = current
        registry.get_metadata(version)  # the registry's own errors for an unknown version or a deleted folder
        return cls(registry.version_dir(version), str(Version.parse(version)), device, backend)

    @property
    def labels(self) -> list[str]:
        """The classes, in index order."""
        return [self.id2label[i] for i in sorted(self.id2label)]

    def predict_texts(self, texts: list[str], batch_size: int = 8) -> list[dict[str, Any]]:
        """Classifies `texts` in length-sorted forward passes of `batch_size` (see `predict_probabilities`).

        Args:
            texts: cleaned model inputs (see `clf.data.cleaning.model_input_text`).
            batch_size: texts per forward pass.

        Returns:
            One prediction record per text, in order.
        """
        from clf.model.predictions import prediction_records

        return prediction_records(
            self.predict_probabilities(texts, batch_size),
            self.id2label,
            multi_label=self.multi_label,
            threshold=self.threshold,
        )

    def predict_probabilities(self, texts: list[str], batch_size: int = 8) -> Any:
        """The full ``(len(texts), num_labels)`` float32 CPU tensor of softmax (sigmoid in multi-label) outputs.

        Texts are ordered by token count and run `batch_size` at a time, each pass padded to its longest text, so
        little compute goes to padding; rows come back in the order of `texts`. On a 2-core CPU, 32 abstracts in
        sorted passes of 8 cost 11 % less per paper than one at a time, and one pass of all 32 padded to the
        longest 56 % more (tools/bench/results/batch_forward.json).

        Args:
            texts: cleaned model inputs.
            batch_size: texts per forward pass.

        Returns:
            A ``(len(texts), num_labels)`` float32 tensor, rows in the order of `texts`.
        """
        import torch

        if not texts:
            return torch.empty(0, len(self.id2label))
        with self._tokenizer_lock:
            encoded = self.tokenizer(texts, truncation=True, max_length=self.max_length)
        return probabilities_in_sorted_passes(
            encoded, self._pad, self._forward, len(self.id2label), multi_label=self.multi_label, batch_size=batch_size
        )

    def _torch_forward(self, inputs: Any) -> Any:
        import torch

        with torch.inference_mode():
            return self.model(**inputs.to(self.device)).logits.float()


def probabilities_in_sorted_passes(
    encoded: Any,
    pad: Callable[[list[dict[str, Any]]], Any],
    forward: Callable[[Any], Any],
    num_labels: int,
    *,
    multi_label: bool,
    batch_size: int,
) -> Any:
    """Runs tokenized texts through `forward` shortest first, `batch_size` at a time, each pass padded to its longest.

    The path every prediction takes, so that what is measured or checked elsewhere (the ONNX parity check) is what
    the service computes.

    Args:
        encoded: the tokenizer's output for the texts (lists of token ids, not yet padded).
        pad: pads a list of per-text features into one batch (a ``DataCollatorWithPadding``).
        forward: padded batch → float logits, shape ``(batch, num_labels)``.
        num_labels: the number of classes.
        multi_label: sigmoid per class instead of softmax over the classes.
        batch_size: texts per pass.

    Returns:
        A ``(texts, num_labels)`` float32 CPU tensor of probabilities, rows in the order of `encoded`.
    """
    import torch

    count = len(encoded["input_ids"])
    probabilities = torch.empty(count, num_labels)
    order = sorted(range(count), key=lambda i: len(encoded["input_ids"][i]))
    for start in range(0, count, batch_size):
        rows = order[start : start + batch_size]
        logits = forward(pad([{key: values[i] for key, values in encoded.items()} for i in rows]))
        probabilities[rows] = (logits.sigmoid() if multi_label else logits.softmax(dim=-1)).cpu()
    return probabilities


def _onnx_backend(model_dir: Path, device: str, variant: Literal["auto", "fp32", "int8"]) -> tuple[Any, str]:
    """The onnxruntime forward function of the folder's ONNX model, and the backend's name (``onnx-int8``)."""
    from clf.model.onnx_export import OnnxExportError, onnx_forward, onnx_model_path

    try:
        path = onnx_model_path(model_dir, variant)
        name = "onnx-int8" if path.name.endswith(".int8.onnx") else "onnx-fp32"
        return onnx_forward(path, device), name
    except OnnxExportError as err:
        raise ModelLoadError(str(err)) from err


def _own_weights(model: Any) -> None:
    """Copies every weight out of the memory-mapped safetensors file into memory the process owns.

    The weights are otherwise read through the mapping for as long as the model lives: a file replaced in place
    would silently change a running model's weights, and a truncated one crashes the process (SIGBUS) on the next
    forward pass. With a copy, a damaged file shows up in the health check instead.
    """
    import torch

    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            tensor.data = tensor.data.clone()
