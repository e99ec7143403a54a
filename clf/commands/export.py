"""`clf export`: write a registered version (or an export folder) as ONNX, optionally int8, beside its weights.

clf export --version v1.2.0 --format onnx --quantize int8
clf serve --service.backend onnx
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Literal

from clf.artifact import ArtifactError, ModelArtifact
from clf.registry import ModelRegistry, RegistryError
from clf.registry.lineage import training_data_dir

log = logging.getLogger(__name__)


def export(
    version: str | None = None,
    format: Literal["onnx"] = "onnx",  # noqa: A002 - the option is spelt --format on the command line
    quantize: Literal["int8"] | None = None,
    registry: str = "models/classification",
    model_path: str | None = None,
    sample_data: str | None = None,
    max_samples: int = 500,
    min_int8_agreement: float = 0.97,
) -> dict[str, Any]:
    """Export a model version to ONNX (dynamic batch and sequence axes), optionally quantised to int8.

    Writes ``onnx/model.onnx`` (and ``onnx/model.int8.onnx``) beside the version's weights, checks each against
    the PyTorch model on sample papers (top-1 agreement, largest probability difference), and records the files
    and the parity in the version's metadata. `clf serve --service.backend onnx` then serves them. Prints JSON.

    Args:
        version: the registered version, vX.Y.Z (or production).
        format: the export format; onnx is the one there is.
        quantize: int8 to also write a dynamically quantised model (int8 weights, activations quantised at run
            time) for faster CPU inference.
        registry: the registry folder.
        model_path: export this folder (a run's export/) instead of a registered version.
        sample_data: labelled papers for the parity check (a split file or JSON Lines); by default the test split
            of the model's training data.
        max_samples: most sample papers compared, taken evenly from every category.
        min_int8_agreement: least share of papers whose top-1 class the int8 model must keep; below it the export
            is refused and nothing is written.

    Returns:
        The export: files, sizes, parity of each variant, seconds.

    Raises:
        RegistryError: when neither or both of --version and --model-path are given, or the version is unknown.
        OnnxExportError: when the export fails or its parity with PyTorch is out of bounds.
        ValueError: when --max-samples is below 1.
    """
    # Imported here: `clf collect` and the other light commands should not load torch and onnxruntime.
    from clf.deploy.validation import balanced_sample, load_validation_samples
    from clf.model.onnx_export import OnnxExportError, export_onnx

    if format != "onnx":
        raise OnnxExportError(f"--format {format}: only onnx is supported")
    if (version is None) == (model_path is None):
        raise RegistryError("clf export needs exactly one of --version vX.Y.Z and --model-path EXPORT_DIR")
    if max_samples < 1:
        raise ValueError(f"--max-samples must be at least 1, got {max_samples}")
    models = None
    if version is not None:
        models = ModelRegistry(registry)
        version, folder = models.resolve(version)
        metadata = models.get_metadata(version)
    else:
        folder = Path(str(model_path))
        try:
            ModelArtifact.open(folder, verify=False)
        except ArtifactError as err:
            raise OnnxExportError(f"--model-path {folder}: {err}") from err
        metadata = {"version": str(folder), "dataset": {"data_dir": training_data_dir(folder)}}
    labels = ModelArtifact.open(folder, verify=False).label_map.labels
    papers = load_validation_samples(Path(sample_data) if sample_data else None, metadata)
    per_class = max(1, max_samples // len(labels))
    texts = [text for text, _ in balanced_sample(papers, labels, per_class)][:max_samples]
    result = export_onnx(folder, texts, quantize=quantize, min_int8_agreement=min_int8_agreement)
    summary = result.to_json()
    if models is not None and version is not None:
        models.update_metadata(version, {"onnx": ModelArtifact(folder, verify=False).onnx_report})
        summary["version"] = version
    print(json.dumps(summary, indent=2))
    return summary
