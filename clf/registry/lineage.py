"""What a registered version records about where it came from: data, config, code, packages and metrics."""

from __future__ import annotations

import getpass
import os
import subprocess
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

from clf.io import DataFileError, read_json

RECORDED_PACKAGES = ("torch", "transformers", "lightning", "clf")


def collect_metadata(source: Path) -> dict[str, Any]:
    """What a new version's metadata.json records about its export; the registry adds version and parent_version.

    Args:
        source: the export folder.

    Returns:
        created_at, model_name, labels, source, dataset (data_dir, content_hash, num_samples), hyperparameters,
        metrics, model_size_mb, git_commit and packages.
    """
    label_map = _read_optional_json(source / "label_map.json")
    model_config = _read_optional_json(source / "config.json")
    run_config = _read_optional_yaml(source / "config.yaml")
    model_section = _init_args(run_config.get("model"))
    data_section = _init_args(run_config.get("data"))
    hyperparameters = {"model": model_section, "data": data_section} if run_config else {}
    if not hyperparameters:
        hyperparameters = {k: label_map[k] for k in ("multi_label", "threshold", "max_length") if k in label_map}
    metrics = _read_optional_json(source / "metrics.json")
    size = sum(f.stat().st_size for f in source.rglob("*") if f.is_file())
    return {
        "created_at": now(),
        "model_name": label_map.get("pretrained")
        or model_section.get("pretrained")
        or model_config.get("_name_or_path"),
        "labels": label_map.get("id2label") or model_config.get("id2label"),
        "source": str(source.resolve()),
        "dataset": _dataset_lineage(data_section.get("data_dir")),
        "hyperparameters": hyperparameters,
        "metrics": metrics,
        "model_size_mb": round(size / 2**20, 3),
        "git_commit": _git_commit(),
        "packages": {name: _package_version(name) for name in RECORDED_PACKAGES},
    }


def training_data_dir(export_dir: Path) -> str | None:
    """The data folder a run trained on, as its ``config.yaml`` (copied into the export by `clf fit`) names it.

    Args:
        export_dir: a run's export folder.

    Returns:
        ``data.data_dir`` of the run config, or None without a readable run config.
    """
    import yaml

    try:
        data_dir = _init_args(_read_optional_yaml(export_dir / "config.yaml").get("data")).get("data_dir")
    except yaml.YAMLError:
        return None
    return str(data_dir) if data_dir else None


def now() -> str:
    """The current UTC time as ISO 8601, to the second (``2025-01-31T12:00:00+00:00``).

    Returns:
        The timestamp text recorded in lineage and audit entries.
    """
    return datetime.now(UTC).isoformat(timespec="seconds")


def user() -> str:
    """The login name of whoever runs the command, recorded in audit entries.

    Returns:
        The login name, or the numeric user id where the system has no name for it (some containers).
    """
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in some containers
        return str(os.getuid())


def _read_optional_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    value = read_json(path)
    return value if isinstance(value, dict) else {}


def _read_optional_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    import yaml

    value = yaml.safe_load(path.read_text(encoding="utf-8"))
    return value if isinstance(value, dict) else {}


def _init_args(section: Any) -> dict[str, Any]:
    """The arguments of a LightningCLI config section, flat or in ``class_path``/``init_args`` form."""
    if not isinstance(section, dict):
        return {}
    return dict(section.get("init_args", section)) if "class_path" in section else dict(section)


def _dataset_lineage(data_dir: Any) -> dict[str, Any] | None:
    if not data_dir:
        return None
    processed = Path(str(data_dir)) / "processed" / "dataset.json"
    if not processed.is_file():
        return {"data_dir": str(data_dir), "content_hash": None, "num_samples": None}
    try:
        meta = read_json(processed).get("metadata") or {}
    except (DataFileError, AttributeError):
        meta = {}
    return {"data_dir": str(data_dir), "content_hash": meta.get("content_hash"), "num_samples": meta.get("num_samples")}


def _git_commit() -> str | None:
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def _package_version(name: str) -> str | None:
    try:
        return package_version(name)
    except PackageNotFoundError:
        return None
