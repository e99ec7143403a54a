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
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from clf.io import read_json, write_json_atomic
from clf.model.export import describe_file

log = logging.getLogger(__name__)

ONNX_DIR = "onnx"
"""The subfolder of a model folder that holds its ONNX files."""

ONNX_FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}
"""The file of each ONNX variant inside `ONNX_DIR`."""

REPORT_FILE = "onnx_export.json"
"""The export report inside `ONNX_DIR`: files, sha256, parity, opset, versions."""

INPUT_NAMES = ("input_ids", "attention_mask")
"""The ONNX graph's inputs, int64 tensors of shape (batch, sequence)."""

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


def _onnxruntime() -> Any:
    """The onnxruntime module, or an error that says how to install it."""
    try:
        import onnxruntime
    except ImportError as err:
        raise OnnxExportError(
            "ONNX export and serving need onnx, onnxruntime and onnxscript: pip install 'clf[onnx]'"
        ) from err
    return onnxruntime


def onnx_model_path(model_dir: str | Path, variant: Literal["auto", "fp32", "int8"] = "auto") -> Path:
    """The ONNX file of a model folder: the int8 one for ``auto`` when it exists, else float32.

    Args:
        model_dir: a registry version or export folder that went through `export_onnx`.
        variant: ``fp32``, ``int8``, or ``auto``.

    Returns:
        The path of the ONNX file.

    Raises:
        OnnxExportError: when the folder has no such ONNX file, naming the command that makes it.
    """
    folder = Path(model_dir) / ONNX_DIR
    if variant == "auto":
        variant = "int8" if (folder / ONNX_FILES["int8"]).is_file() else "fp32"
    path = folder / ONNX_FILES[variant]
    if not path.is_file():
        quantize = " --quantize int8" if variant == "int8" else ""
        raise OnnxExportError(
            f"{Path(model_dir)} has no {variant} ONNX model ({path} is missing). Export it first: clf export "
            f"--version vX.Y.Z --format onnx{quantize} (or --model-path {Path(model_dir)} for an export folder)."
        )
    return path


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
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

    from clf.serving.predictor import probabilities_in_sorted_passes

    onnxruntime = _onnxruntime()
    started = time.perf_counter()
    model_dir = Path(model_dir)
    if not parity_texts:
        raise OnnxExportError("no sample texts for the parity check; pass --sample-data with labelled papers")
    label_map = read_json(model_dir / "label_map.json")
    multi_label = bool(label_map.get("multi_label", False))
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, use_safetensors=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    positions = getattr(model.config, "max_position_embeddings", 512)
    max_length = min(int(label_map.get("max_length") or 512), positions)
    staging = model_dir / (ONNX_DIR + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        files = {"fp32": staging / ONNX_FILES["fp32"]}
        _export_fp32(model, tokenizer, files["fp32"], opset)
        if quantize == "int8":
            files["int8"] = staging / ONNX_FILES["int8"]
            _quantize_int8(files["fp32"], files["int8"])
        encoded = tokenizer(list(parity_texts), truncation=True, max_length=max_length)
        pad = DataCollatorWithPadding(tokenizer, return_tensors="pt")
        num_labels = len(label_map["id2label"])

        def probabilities(forward: Callable[[Any], Any]) -> Any:
            return probabilities_in_sorted_passes(
                encoded, pad, forward, num_labels, multi_label=multi_label, batch_size=PARITY_BATCH_SIZE
            ).numpy()

        reference = probabilities(_torch_forward(model))
        reports = [
            _parity(variant, reference, probabilities(onnx_forward(path)), min_int8_agreement)
            for variant, path in files.items()
        ]
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
                "files": {variant: describe_file(path) for variant, path in files.items()},
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


def onnx_forward(path: str | Path, device: str = "cpu", threads: int | None = None) -> Callable[[Any], Any]:
    """An onnxruntime session on `path` as a function from padded tokenizer output to logits.

    Args:
        path: the ONNX file.
        device: ``cpu``, or ``cuda``/``cuda:N`` to use onnxruntime's CUDA provider where it is installed.
        threads: intra-op threads; by default torch's thread count, so both backends use the same cores.

    Returns:
        A function taking a mapping with ``input_ids`` and ``attention_mask`` (torch tensors or arrays) and
        returning float32 logits as a torch tensor.

    Raises:
        OnnxExportError: when `path` does not load as an ONNX model.
    """
    onnxruntime = _onnxruntime()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    # Idle intra-op threads would otherwise spin for work: with two versions loaded (a canary, blue-green) each
    # session's spinning threads take the cores the other needs.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda") and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        index = int(device.partition(":")[2] or 0)
        providers.insert(0, ("CUDAExecutionProvider", {"device_id": index}))
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=providers)
    except Exception as err:  # onnxruntime raises its own Fail/InvalidProtobuf/NoSuchFile kinds
        raise OnnxExportError(f"{path} does not load as an ONNX model: {err}") from err

    def forward(inputs: Any) -> Any:
        feed = {name: np.asarray(_to_numpy(inputs[name]), dtype=np.int64) for name in INPUT_NAMES}
        return torch.from_numpy(session.run(None, feed)[0]).float()

    return forward


def _to_numpy(value: Any) -> Any:
    return value.cpu().numpy() if hasattr(value, "cpu") else value


def _torch_forward(model: Any) -> Callable[[Any], Any]:

    def forward(inputs: Any) -> Any:
        with torch.inference_mode():
            return model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits.float()

    return forward


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
