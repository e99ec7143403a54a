"""What a registered version's metadata.json records: its artifact's labels, lineage and metrics, and who registered
it when. The lineage itself is the artifact's (`clf.artifact.Lineage`), recorded when the model was exported."""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Any

import yaml

from clf.artifact import ModelArtifact, collect_lineage
from clf.artifact.lineage import now

__all__ = ["collect_metadata", "now", "training_data_dir", "user"]


def collect_metadata(artifact: ModelArtifact) -> dict[str, Any]:
    """What a new version's metadata.json records about its artifact; the registry adds version and parent_version.

    Args:
        artifact: the opened export.

    Returns:
        created_at, model_name, labels, source, dataset (data_dir, content_hash, num_samples, splits),
        hyperparameters, metrics, model_size_mb, git_commit and packages.
    """
    run_config = _run_config(artifact)
    model_section, data_section = _init_args(run_config.get("model")), _init_args(run_config.get("data"))
    label_map = artifact.label_map
    hyperparameters: dict[str, Any] = {"model": model_section, "data": data_section} if run_config else {}
    if not hyperparameters:
        hyperparameters = {
            "multi_label": label_map.multi_label,
            "threshold": label_map.threshold,
            "max_length": label_map.max_length,
        }
    lineage = artifact.lineage
    if lineage.created_at is None:  # exported before artifacts recorded their lineage: read the data folder now
        lineage = collect_lineage(data_section.get("data_dir"))
    size = sum(f.stat().st_size for f in artifact.path.rglob("*") if f.is_file())
    return {
        "created_at": now(),
        "model_name": label_map.pretrained
        or model_section.get("pretrained")
        or artifact.model_config.get("_name_or_path"),
        "labels": label_map.to_json()["id2label"],
        "source": str(artifact.path.resolve()),
        "dataset": {
            "data_dir": lineage.data_dir,
            "content_hash": lineage.dataset_hash,
            "num_samples": lineage.num_samples,
            "splits": {name: split.sha256 for name, split in lineage.splits.items()},
        },
        "hyperparameters": hyperparameters,
        "metrics": artifact.metrics,
        "model_size_mb": round(size / 2**20, 3),
        "git_commit": lineage.git_commit,
        "packages": lineage.packages,
    }


def training_data_dir(export_dir: Path) -> str | None:
    """The data folder a run trained on: the artifact's lineage, or its run config's ``data.data_dir``.

    Args:
        export_dir: a run's export folder.

    Returns:
        The data folder, or None when neither records one.
    """
    artifact = ModelArtifact.open(export_dir, verify=False)
    if artifact.lineage.data_dir:
        return artifact.lineage.data_dir
    data_dir = _init_args(_run_config(artifact).get("data")).get("data_dir")
    return str(data_dir) if data_dir else None


def user() -> str:
    """The login name of whoever runs the command, recorded in audit entries.

    Returns:
        The login name, or the numeric user id where the system has no name for it (some containers).
    """
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in some containers
        return str(os.getuid())


def _run_config(artifact: ModelArtifact) -> dict[str, Any]:
    if artifact.run_config is None:
        return {}
    try:
        value = yaml.safe_load(artifact.run_config.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        return {}
    return value if isinstance(value, dict) else {}


def _init_args(section: Any) -> dict[str, Any]:
    """The arguments of a LightningCLI config section, flat or in ``class_path``/``init_args`` form."""
    if not isinstance(section, dict):
        return {}
    return dict(section.get("init_args", section)) if "class_path" in section else dict(section)
