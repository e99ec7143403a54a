"""Export a model folder to ONNX, optionally quantised to int8, and check it against the PyTorch model.

    clf export --version v1.2.0 --format onnx --quantize int8

The folder (a registry version or a run's ``export/``) gains ``onnx/``: ``model.onnx`` (float32, dynamic batch and
sequence axes), ``model.int8.onnx`` with ``--quantize int8`` (dynamic int8 quantisation of the weights by
onnxruntime; activations are quantised on the fly), and ``onnx_export.json`` with the files' sha256 and the parity
of each file with the PyTorch model on sample papers: top-1 agreement and the largest probability difference. An
export whose parity is out of bounds is refused and leaves the folder as it was.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from clf.artifact import ONNX_DIR, ONNX_FILES, ArtifactError, ModelArtifact
from clf.artifact import ONNX_REPORT_FILE as REPORT_FILE
from clf.artifact.artifact import describe
from clf.inference import ModelLoadError, ModelPredictor
from clf.inference.onnx_runtime import INPUT_NAMES, onnxruntime_module
from clf.io import write_json_atomic

log = logging.getLogger(__name__)

__all__ = ["ONNX_DIR", "ONNX_FILES", "REPORT_FILE", "OnnxExport", "OnnxExportError", "ParityReport", "export_onnx"]

MAX_FP32_DIFFERENCE = 1e-3
"""Largest probability difference tolerated between the float32 ONNX model and PyTorch: a numerical-noise bound."""

PARITY_BATCH_SIZE = 16
"""Texts per forward pass in the parity check (dynamic int8 scales depend on what shares a pass)."""

MIN_INT8_AGREEMENT = 0.97
"""Default least share of papers whose top-1 class the int8 model must keep."""


class OnnxExportError(RuntimeError):
    """The ONNX export failed, or its parity with the PyTorch model is out of bounds."""


@dataclass(frozen=True)
class ParityReport:
    """How closely one ONNX variant reproduces the PyTorch model on sample texts.

    Args:
        variant: ``fp32`` or ``int8``.
        samples: texts compared.
        top1_agreement: share of texts whose most probable class is the same.
        max_probability_difference: largest absolute difference of any class probability.
        mean_probability_difference: mean absolute difference over all texts and classes.
        passed: whether the variant is within its bounds.
        bound: the bound it was held to, in words.
    """

    variant: str
    samples: int
    top1_agreement: float
    max_probability_difference: float
    mean_probability_difference: float
    passed: bool
    bound: str

    def to_json(self) -> dict[str, Any]:
        """The report as a JSON-ready dict.

        Returns:
            The fields of the report.
        """
        return asdict(self)


@dataclass
class OnnxExport:
    """What `export_onnx` wrote.

    Args:
        directory: the ``onnx/`` folder.
        files: variant (``fp32``, ``int8``) → file.
        parity: one report per variant.
        seconds: wall-clock time of export, quantisation and parity checks.
    """

    directory: Path
    files: dict[str, Path] = field(default_factory=dict)
    parity: list[ParityReport] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The export as a JSON-ready dict.

        Returns:
            The folder, the files with their sizes, the parity reports and the time taken.
        """
        return {
            "directory": str(self.directory),
            "files": {name: {"path": str(path), "bytes": path.stat().st_size} for name, path in self.files.items()},
            "parity": [report.to_json() for report in self.parity],
            "seconds": round(self.seconds, 2),
        }


def export_onnx(
    model_dir: str | Path,
    parity_texts: Sequence[str],
    *,
    quantize: Literal["int8"] | None = None,
    opset: int = 18,
    min_int8_agreement: float = MIN_INT8_AGREEMENT,
) -> OnnxExport:
    """Exports `model_dir`'s model to ``model_dir/onnx/`` and checks each file against PyTorch on `parity_texts`.

    The float32 graph has dynamic batch and sequence axes; int8 is onnxruntime's dynamic quantisation of the
    (pre-processed) float32 graph. The new ``onnx/`` replaces an older one only when every variant passes.

    Args:
        model_dir: a registry version or a run's export folder (transformers format with ``label_map.json``).
        parity_texts: model inputs (cleaned title + abstract) to compare PyTorch and ONNX on; a few hundred
            real papers make a meaningful top-1 agreement.
        quantize: ``int8`` to also write the quantised model.
        opset: the ONNX opset to export with.
        min_int8_agreement: least top-1 agreement of the int8 model with PyTorch.

    Returns:
        The files written and their parity reports.

    Raises:
        OnnxExportError: when there are no parity texts, the export fails, or a variant is out of bounds (float32:
            probabilities differ by at most `MAX_FP32_DIFFERENCE`; int8: top-1 agreement at least
            `min_int8_agreement`).
    """
    import transformers

    if not parity_texts:
        raise OnnxExportError("no sample texts for the parity check; pass --sample-data with labelled papers")
    try:
        onnxruntime = onnxruntime_module()
        artifact = ModelArtifact.open(model_dir)
        reference_model = ModelPredictor(model_dir, "torch")
    except (ArtifactError, ModelLoadError) as err:
        raise OnnxExportError(str(err)) from err
    started = time.perf_counter()
    model_dir = artifact.path
    model, tokenizer = reference_model.model, reference_model.tokenizer
    max_length = artifact.max_length
    staging = model_dir / (ONNX_DIR + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        files = {"fp32": staging / ONNX_FILES["fp32"]}
        _export_fp32(model, tokenizer, files["fp32"], opset)
        if quantize == "int8":
            files["int8"] = staging / ONNX_FILES["int8"]
            _quantize_int8(files["fp32"], files["int8"])
        texts = list(parity_texts)

        def probabilities(predictor: ModelPredictor) -> Any:
            return predictor.predict_probabilities(texts, batch_size=PARITY_BATCH_SIZE).numpy()

        # Both sides are the service's own path (`ModelPredictor`): what is checked here is what `clf serve` runs.
        reference = probabilities(reference_model)
        reports = []
        for variant, path in files.items():
            try:
                candidate = ModelPredictor(model_dir, variant, backend="onnx", onnx_file=path)
            except ModelLoadError as err:
                raise OnnxExportError(str(err)) from err
            reports.append(_parity(variant, reference, probabilities(candidate), min_int8_agreement))
        failed = [report for report in reports if not report.passed]
        if failed:
            details = "; ".join(
                f"{r.variant}: top-1 agreement {r.top1_agreement:.4f}, max probability difference "
                f"{r.max_probability_difference:.2e} (bound: {r.bound})"
                for r in failed
            )
            raise OnnxExportError(f"{model_dir}: the ONNX export does not match the PyTorch model: {details}")
        write_json_atomic(
            staging / REPORT_FILE,
            {
                "opset": opset,
                "max_length": max_length,
                "files": {variant: describe(path) for variant, path in files.items()},
                "parity": [report.to_json() for report in reports],
                "versions": {
                    "torch": torch.__version__,
                    "transformers": transformers.__version__,
                    "onnxruntime": onnxruntime.__version__,
                },
                "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
        )
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    target = model_dir / ONNX_DIR
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    result = OnnxExport(
        target, {variant: target / path.name for variant, path in files.items()}, reports, time.perf_counter() - started
    )
    for report in reports:
        log.info(
            "ONNX %s: top-1 agreement %.4f, max probability difference %.2e on %d papers",
            report.variant,
            report.top1_agreement,
            report.max_probability_difference,
            report.samples,
        )
    return result


def _parity(variant: str, reference: Any, candidate: Any, min_int8_agreement: float) -> ParityReport:
    difference = np.abs(reference - candidate)
    agreement = float(np.mean(reference.argmax(axis=1) == candidate.argmax(axis=1)))
    max_difference = float(difference.max())
    if variant == "fp32":
        # Only the difference is bounded: a near-tie may flip the top-1 class on numerical noise alone.
        bound = f"max probability difference <= {MAX_FP32_DIFFERENCE:g}"
        passed = max_difference <= MAX_FP32_DIFFERENCE
    else:
        bound = f"top-1 agreement >= {min_int8_agreement:g}"
        passed = agreement >= min_int8_agreement
    return ParityReport(
        variant, len(reference), agreement, max_difference, float(difference.mean()), passed=passed, bound=bound
    )


class LogitsOnly(torch.nn.Module):
    """A sequence-classification model as a graph from ``(input_ids, attention_mask)`` to logits.

    Args:
        model: a transformers ``...ForSequenceClassification`` model.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The logits of a padded batch.

        Args:
            input_ids: token ids, shape ``(batch, sequence)``.
            attention_mask: 1 for tokens, 0 for padding, same shape.

        Returns:
            The logits, shape ``(batch, num_labels)``.
        """
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def _export_fp32(model: Any, tokenizer: Any, path: Path, opset: int) -> None:
    """torch.onnx (the dynamo exporter) with dynamic batch and sequence axes, saved as one self-contained file."""
    import onnx

    example = tokenizer(
        ["An example title. An example abstract of a paper.", "Another paper."], padding=True, return_tensors="pt"
    )
    axes = {0: torch.export.Dim("batch", min=1), 1: torch.export.Dim("sequence", min=1)}
    with tempfile.TemporaryDirectory(prefix="clf-onnx-") as scratch:
        raw = Path(scratch) / "model.onnx"
        exporter_log = logging.getLogger("torch.onnx")
        level = exporter_log.level
        try:
            # The exporter's deprecation chatter and its notes on absent torchvision ops are not the user's to act on.
            exporter_log.setLevel(logging.ERROR)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    LogitsOnly(model),
                    (example["input_ids"], example["attention_mask"]),
                    str(raw),
                    input_names=list(INPUT_NAMES),
                    output_names=["logits"],
                    opset_version=opset,
                    dynamo=True,
                    dynamic_shapes={"input_ids": axes, "attention_mask": axes},
                    verbose=False,
                )
        except Exception as err:  # the exporter raises many kinds (torch._dynamo, onnxscript, export errors)
            raise OnnxExportError(f"torch.onnx.export failed for {type(model).__name__}: {err}") from err
        finally:
            exporter_log.setLevel(level)
        # The exporter writes weights to a side file; one file is simpler to copy, hash and serve.
        onnx.save_model(onnx.load_model(str(raw)), str(path), save_as_external_data=False)


def _quantize_int8(source: Path, target: Path) -> None:
    """onnxruntime's dynamic int8 quantisation, after its pre-processing (graph optimisation, shape inference)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="clf-onnx-int8-") as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        # Symbolic shape inference cannot follow the exporter's min(512, sequence) position slice; ONNX's own
        # shape inference and the graph optimisation still run, and they are what make int8 fast.
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_dynamic(str(prepared), str(target), weight_type=QuantType.QInt8)
