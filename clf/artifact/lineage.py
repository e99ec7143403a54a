"""`Lineage`: where a model came from — its data (with the hash of every split), config, code and packages.

Recorded in the artifact when it is exported (``lineage.json``), copied into the registry's metadata when the artifact
is registered, and checked by ``clf reproduce`` before a version's training is run again.
"""

from __future__ import annotations

import subprocess
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

from clf.io import DataFileError, read_json, sha256_of_file

FILE = "lineage.json"
"""The file name inside an artifact."""

RECORDED_PACKAGES = ("torch", "transformers", "lightning", "clf")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SplitRecord:
    """One split file a model was trained or evaluated on.

    Attributes:
        file: its path as the run saw it.
        sha256: the file's hash: any change to it, even of one byte, changes this.
        ids_hash: the hash of its paper ids, as the preprocessor recorded it.
        count: its samples.
    """

    file: str
    sha256: str
    ids_hash: str | None = None
    count: int | None = None


@dataclass(frozen=True)
class Lineage:
    """Everything needed to say, and to check, what a model was trained on and with.

    Attributes:
        data_dir: the run's data folder.
        dataset_hash: the processed dataset's content hash.
        num_samples: papers in the processed dataset.
        splits: split name → its `SplitRecord`.
        git_commit: the commit of the code that trained it (None outside a repository).
        packages: the versions of the packages that matter.
        created_at: when the artifact was written (ISO 8601, UTC).
    """

    data_dir: str | None = None
    dataset_hash: str | None = None
    num_samples: int | None = None
    splits: dict[str, SplitRecord] = field(default_factory=dict)
    git_commit: str | None = None
    packages: dict[str, str | None] = field(default_factory=dict)
    created_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The lineage.json document.

        Returns:
            The fields as JSON-ready values.
        """
        return asdict(self)

    @classmethod
    def from_json(cls, document: Any) -> Lineage:
        """Reads a lineage.json document (an absent or empty one gives an empty lineage).

        Args:
            document: the parsed JSON.

        Returns:
            The lineage.
        """
        if not isinstance(document, dict):
            return cls()
        splits = {name: SplitRecord(**record) for name, record in (document.get("splits") or {}).items()}
        known = {key: document.get(key) for key in ("data_dir", "dataset_hash", "num_samples", "git_commit")}
        return cls(
            **known, splits=splits, packages=dict(document.get("packages") or {}), created_at=document.get("created_at")
        )


def collect_lineage(data_dir: str | Path | None) -> Lineage:
    """The lineage of a model trained now on `data_dir`: dataset and split hashes, the git commit, package versions.

    Args:
        data_dir: the run's data folder (``processed/dataset.json``, ``splits/{train,val,test}.json``); None when
            the run did not name one.

    Returns:
        The lineage; fields that cannot be read (a missing file, no git) are None.
    """
    dataset: dict[str, Any] = {}
    splits: dict[str, SplitRecord] = {}
    if data_dir is not None:
        folder = Path(data_dir)
        dataset = _metadata(folder / "processed" / "dataset.json")
        for name in SPLITS:
            path = folder / "splits" / f"{name}.json"
            if path.is_file():
                meta = _metadata(path)
                splits[name] = SplitRecord(str(path), sha256_of_file(path), meta.get("ids_hash"), meta.get("count"))
    return Lineage(
        data_dir=None if data_dir is None else str(data_dir),
        dataset_hash=dataset.get("content_hash"),
        num_samples=dataset.get("num_samples"),
        splits=splits,
        git_commit=git_commit(),
        packages={name: _package_version(name) for name in RECORDED_PACKAGES},
        created_at=now(),
    )


def now() -> str:
    """The current UTC time as ISO 8601, to the second (``2025-01-31T12:00:00+00:00``).

    Returns:
        The timestamp text recorded in lineage and audit entries.
    """
    return datetime.now(UTC).isoformat(timespec="seconds")


def git_commit() -> str | None:
    """The commit checked out in the working directory.

    Returns:
        The full hash, or None outside a git repository (or without git).
    """
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def _metadata(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        meta = read_json(path).get("metadata") or {}
    except (DataFileError, AttributeError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _package_version(name: str) -> str | None:
    try:
        return package_version(name)
    except PackageNotFoundError:
        return None
