"""Writing an artifact: the files that make a folder of model weights and tokenizer a model package.

The training side writes the weights and the tokenizer (transformers' ``save_pretrained``) into a staging folder;
`complete` adds the label map, metrics, lineage, run config and model card and seals it with the manifest, then the
folder is opened as a `ModelArtifact` to check it. `record_test_metrics` adds a test run's metrics afterwards and
seals it again. Nothing here imports torch.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from clf.artifact import model_card
from clf.artifact.artifact import MANIFEST_FILE, METRICS_FILE, RUN_CONFIG_FILE, ModelArtifact, describe
from clf.artifact.label_map import FILE as LABEL_MAP_FILE
from clf.artifact.label_map import LabelMap
from clf.artifact.lineage import FILE as LINEAGE_FILE
from clf.artifact.lineage import Lineage
from clf.artifact.reference import ReferenceSample, write_reference
from clf.artifact.scoring import Scoring, write_scoring
from clf.io import write_json_atomic, write_text_atomic

UNSEALED_FILES = ("metadata.json",)
"""Files a registry version folder holds beside the artifact and updates in place (``clf export``, ``clf reference
build``): a seal of a registered version listed them, and the next update broke the version's manifest check."""


def complete(
    folder: str | Path,
    label_map: LabelMap,
    *,
    metrics: Mapping[str, Any] | None = None,
    lineage: Lineage | None = None,
    run_config: str | Path | None = None,
    name: str = "clf",
) -> ModelArtifact:
    """Writes the package files beside the weights and tokenizer already in `folder`, then opens it to check it.

    Args:
        folder: a folder holding ``config.json``, ``model.safetensors`` and the tokenizer files.
        label_map: the model's classes and mode.
        metrics: the run's metrics for ``metrics.json``.
        lineage: where the model came from, for ``lineage.json`` and the card.
        run_config: the run's resolved config file, copied as ``config.yaml``.
        name: the model's name on its card.

    Returns:
        The artifact.

    Raises:
        ArtifactError: when the result is not a complete artifact (a required file missing).
    """
    folder = Path(folder)
    write_json_atomic(folder / LABEL_MAP_FILE, label_map.to_json())
    write_json_atomic(folder / METRICS_FILE, dict(metrics or {}))
    write_json_atomic(folder / LINEAGE_FILE, (lineage or Lineage()).to_json())
    if run_config is not None and Path(run_config).is_file():
        shutil.copyfile(run_config, folder / RUN_CONFIG_FILE)
    write_text_atomic(folder / model_card.FILE, model_card.render(label_map, metrics or {}, lineage or Lineage(), name))
    seal(folder)
    return ModelArtifact.open(folder)


def record_test_metrics(folder: str | Path, metrics: Mapping[str, float]) -> ModelArtifact:
    """Adds a test run's metrics to an artifact (``metrics.json`` under ``test``, and its card), and seals it again.

    Args:
        folder: the artifact folder.
        metrics: the scalar test metrics (``test/acc``, ``test/f1_macro``, ...).

    Returns:
        The artifact with its new metrics.

    Raises:
        ArtifactError: when `folder` is not an intact artifact.
    """
    artifact = ModelArtifact.open(folder)
    recorded = {**artifact.metrics, "test": {key: float(value) for key, value in metrics.items()}}
    write_json_atomic(artifact.path / METRICS_FILE, recorded)
    return _rewrite_card(artifact.path)


def record_scoring(folder: str | Path, scoring: Scoring) -> ModelArtifact:
    """Stores how the artifact's outputs become answers (`clf.artifact.scoring`), updates its card, seals it again.

    Args:
        folder: the artifact folder.
        scoring: the fitted companion, temperature and abstention threshold.

    Returns:
        The artifact with its scoring.

    Raises:
        ArtifactError: when `folder` is not an intact artifact.
    """
    artifact = ModelArtifact.open(folder)
    write_scoring(artifact.path, scoring)
    return _rewrite_card(artifact.path)


def record_reference(folder: str | Path, sample: ReferenceSample) -> ModelArtifact:
    """Stores the artifact's reference sample (`clf.artifact.reference`) and seals it again.

    Args:
        folder: the artifact folder.
        sample: the reference sample fitted on held-out papers.

    Returns:
        The artifact with its reference.

    Raises:
        ArtifactError: when `folder` is not an intact artifact.
    """
    artifact = ModelArtifact.open(folder)
    write_reference(artifact.path, sample)
    seal(artifact.path)
    return ModelArtifact.open(artifact.path)


def _rewrite_card(folder: Path) -> ModelArtifact:
    artifact = ModelArtifact.open(folder, verify=False)
    card = model_card.render(
        artifact.label_map, artifact.metrics, artifact.lineage, _card_name(folder), artifact.scoring
    )
    write_text_atomic(folder / model_card.FILE, card)
    seal(folder)
    return ModelArtifact.open(folder)


def seal(folder: str | Path) -> None:
    """Writes ``manifest.json``: every file of the folder (not of its subfolders) with its size and sha256, but the
    registry's own record of a version (`UNSEALED_FILES`), which changes after registration.

    Args:
        folder: the artifact folder.
    """
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name not in (MANIFEST_FILE, *UNSEALED_FILES))
    write_json_atomic(folder / MANIFEST_FILE, {"files": [describe(path) for path in files]})


def _card_name(folder: Path) -> str:
    try:
        header = model_card.read_header((folder / model_card.FILE).read_text(encoding="utf-8"))
        return str(header["model-index"][0]["name"])
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return "clf"
