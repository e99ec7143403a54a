"""`ModelPredictor`: the one way a model artifact classifies texts, with a PyTorch or an onnxruntime backend.

    predictor = ModelPredictor("runs/quickstart/export", "base")     # or .from_registry(registry, "production")
    predictor.predict_texts(["Attention is all you need. We propose ..."])  # [Prediction(label="cs.CL", ...)]
    predictor.predict_probabilities(texts)                            # (N, num_labels) tensor

The service, ONNX parity, deployment validation, version comparison and retraining's decision all call it: the
same tokenisation (truncated to the artifact's `max_length`), the same length-sorted passes, softmax or sigmoid by
the artifact's mode.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from clf.artifact import ArtifactError, ModelArtifact, OnnxVariant
from clf.inference.errors import ModelLoadError
from clf.inference.out_of_scope import OutOfScopeScorer
from clf.inference.passes import prediction_records, probabilities_in_sorted_passes
from clf.inference.prediction import Prediction
from clf.inference.scoring import Scorer

if TYPE_CHECKING:
    from clf.registry import ModelRegistry

log = logging.getLogger(__name__)

Backend = Literal["torch", "onnx"]
"""What runs the forward pass: PyTorch, or onnxruntime on the artifact's ``onnx/`` files (see `clf export`)."""

Dtype = Literal["auto", "float32", "bfloat16"]
"""The torch backend's weights: float32, bfloat16, or ``auto`` (bfloat16 where the hardware runs it natively)."""

BASE_VERSION = "base"
"""The version name a predictor loaded from a plain export folder (not from the registry) answers with."""


class ModelPredictor:
    """A model version ready to classify: ``predict_texts`` takes cleaned texts and returns one `Prediction` each.

    Args:
        model_dir: a model artifact: a registry version folder or a run's export folder.
        version: the version this model answers as (``v1.2.0``, or ``base`` for an unregistered export).
        device: the torch device to run on.
        backend: ``torch``, or ``onnx`` to run the artifact's ONNX model with onnxruntime (written by
            ``clf export --format onnx``); the weights in ``model.safetensors`` are then not loaded.
        onnx_variant: with the onnx backend: ``int8``, ``fp32``, or ``auto`` (int8 when the folder has it).
        onnx_file: with the onnx backend, this ONNX file instead of the artifact's (the export's parity check runs
            the files it is about to install).
        dtype: with the torch backend, the weights' type: ``float32``, ``bfloat16``, or ``auto`` — bfloat16 on a
            CUDA GPU that supports it and on a CPU with native bfloat16 instructions (AVX512-BF16 or AMX), float32
            elsewhere (see `resolve_dtype`). Probabilities are float32 either way.

    Raises:
        ModelLoadError: when the folder is not an intact artifact, its weights do not load, or the onnx backend is
            asked for a folder without ONNX files.
    """

    def __init__(
        self,
        model_dir: str | Path,
        version: str,
        device: str = "cpu",
        backend: Backend = "torch",
        onnx_variant: OnnxVariant = "auto",
        onnx_file: str | Path | None = None,
        dtype: Dtype = "float32",
    ) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a server's log wants lines, not progress bars

        if backend not in ("torch", "onnx"):
            raise ModelLoadError(f"unknown backend {backend!r}; use torch or onnx")
        try:
            self.artifact = ModelArtifact.open(model_dir)
        except ArtifactError as err:
            raise ModelLoadError(str(err)) from err
        self.model_dir = self.artifact.path
        self.version = version
        self.device = torch.device(device)
        self.model: Any = None
        self.dtype = "float32" if backend == "onnx" else resolve_dtype(dtype, str(self.device))
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
            if backend == "onnx":
                from clf.inference.onnx_runtime import onnx_forward

                path = Path(onnx_file) if onnx_file is not None else self.artifact.onnx_path(onnx_variant)
                self._forward = onnx_forward(path, device)
                self.backend = "onnx-int8" if path.name.endswith(".int8.onnx") else "onnx-fp32"
            else:
                self.model = AutoModelForSequenceClassification.from_pretrained(self.model_dir, use_safetensors=True)
                _own_weights(self.model)
                self.model.to(self.device, dtype=getattr(torch, self.dtype)).eval()
                self._forward, self.backend = self._torch_forward, "torch"
        except (ModelLoadError, ArtifactError) as err:
            raise ModelLoadError(str(err)) from err
        except Exception as err:  # safetensors, tokenizers and transformers each raise their own kinds
            raise ModelLoadError(f"{version} ({self.model_dir}) does not load: {err}") from err
        label_map = self.artifact.label_map
        self.id2label = dict(label_map.id2label)
        self.multi_label = label_map.multi_label
        self.threshold = label_map.threshold
        self.max_length = self.artifact.max_length
        try:
            self.scorer = Scorer(self.artifact.scoring, self.multi_label)
            reference = self.artifact.reference
            self.out_of_scope: OutOfScopeScorer | None = None
            if reference is not None and reference.out_of_scope is not None and not self.multi_label:
                self.out_of_scope = OutOfScopeScorer(reference.out_of_scope, self.scorer.companion)
        except (ArtifactError, ValueError) as err:
            raise ModelLoadError(f"{version} ({self.model_dir}): {err}") from err
        # Tokenizers' Rust backend refuses concurrent use of one instance ("Already borrowed").
        self._tokenizer_lock = threading.Lock()
        self._pad = DataCollatorWithPadding(self.tokenizer, return_tensors="pt")

    @classmethod
    def from_registry(
        cls,
        registry: ModelRegistry,
        version: str,
        device: str = "cpu",
        backend: Backend = "torch",
        dtype: Dtype = "float32",
    ) -> ModelPredictor:
        """Loads a registered version (``production`` names the production version).

        Args:
            registry: the model registry.
            version: ``vX.Y.Z`` or ``production``.
            device: the torch device to run on.
            backend: ``torch`` or ``onnx`` (see the class).
            dtype: the torch backend's weights (see the class).

        Returns:
            The loaded predictor, answering as the resolved version.

        Raises:
            RegistryError: for an unknown version or an empty production pointer.
            ModelLoadError: when its files do not load.
        """
        resolved, folder = registry.resolve(version)
        return cls(folder, resolved, device, backend, dtype=dtype)

    @property
    def labels(self) -> list[str]:
        """The classes, in index order."""
        return [self.id2label[i] for i in sorted(self.id2label)]

    def predict_texts(self, texts: list[str], batch_size: int = 8, ranked: bool = True) -> list[Prediction]:
        """Classifies `texts` in length-sorted forward passes of `batch_size` (see `predict_probabilities`).

        Args:
            texts: cleaned model inputs (see `clf.data.cleaning.model_input_text`).
            batch_size: texts per forward pass.
            ranked: also give every category ranked (``top_k``), which the HTTP answer trims to ``?top_k``.

        Returns:
            One prediction per text, in order; ``unsure`` says whether its top probability is below the artifact's
            abstention threshold (calibrated when the artifact is), ``out_of_scope`` whether the paper looks like none
            of the classes (when the artifact has a reference sample with an out-of-scope model).
        """
        if self.out_of_scope is None:
            probabilities = self.predict_probabilities(texts, batch_size)
            flags = None
        else:
            # The companion's TF-IDF features feed both the mixture and the out-of-scope score: computed once.
            companion = self.scorer.companion
            features = companion.features(texts) if companion is not None and texts else None
            probabilities = self.scorer(self.encoder_probabilities(texts, batch_size), texts, features)
            scores = self.out_of_scope.scores(texts, probabilities.double().numpy(), features)
            flags = self.out_of_scope.flags(scores).tolist()
        return prediction_records(
            probabilities,
            self.id2label,
            multi_label=self.multi_label,
            threshold=self.threshold,
            abstain_below=self.artifact.scoring.abstain_below,
            ranked=ranked,
            out_of_scope=flags,
        )

    def predict_probabilities(self, texts: list[str], batch_size: int = 8) -> Any:
        """The full ``(len(texts), num_labels)`` float32 CPU tensor of softmax (sigmoid in multi-label) outputs.

        Texts are ordered by token count and run `batch_size` at a time, each pass padded to its longest text, so
        little compute goes to padding; rows come back in the order of `texts`. The artifact's scoring then applies:
        its TF-IDF companion mixed in and its temperature, when it has them (`clf.inference.scoring`).

        Args:
            texts: cleaned model inputs.
            batch_size: texts per forward pass.

        Returns:
            A ``(len(texts), num_labels)`` float32 tensor, rows in the order of `texts`.
        """
        return self.scorer(self.encoder_probabilities(texts, batch_size), texts)

    def encoder_probabilities(self, texts: list[str], batch_size: int = 8) -> Any:
        """The model's own softmax (sigmoid) outputs, before the artifact's scoring: what its stages start from.

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


def resolve_dtype(dtype: Dtype, device: str) -> str:
    """The weights' type `dtype` stands for on `device`.

    ``auto`` is bfloat16 where it runs natively — a CUDA device that supports it, or a CPU with AVX512-BF16 or AMX
    (where it measured 1.6× the papers/s of float32 with 0.997 agreement of top-1 labels, docs/RESULTS.md) — and
    float32 elsewhere, where bfloat16 would be emulated and slower.

    Args:
        dtype: ``auto``, ``float32`` or ``bfloat16``.
        device: the torch device (``cpu``, ``cuda``, ``cuda:1``).

    Returns:
        ``float32`` or ``bfloat16``.

    Raises:
        ModelLoadError: for another value.
    """
    if dtype in ("float32", "bfloat16"):
        return dtype
    if dtype != "auto":
        raise ModelLoadError(f"unknown dtype {dtype!r}; use auto, float32 or bfloat16")
    import torch

    if device.startswith("cuda"):
        return "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32"
    return "bfloat16" if cpu_has_native_bfloat16() else "float32"


def cpu_has_native_bfloat16() -> bool:
    """Whether this CPU has bfloat16 instructions (the avx512_bf16 or amx_bf16 flags of /proc/cpuinfo; Linux).

    Returns:
        True when it does.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


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
