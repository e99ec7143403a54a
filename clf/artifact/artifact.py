"""`ModelArtifact`: the exported model package, the contract between research and production — opened, checked, read.

    artifact = ModelArtifact.open("runs/quickstart/export")     # required files, label map, manifest hashes
    artifact.label_map.labels, artifact.max_length, artifact.metrics["best_score"], artifact.lineage.splits

An artifact is a folder::

    config.json, model.safetensors     the transformers model (weights only, safetensors)
    tokenizer.json, tokenizer_config.json, ...
    label_map.json                     classes, single- or multi-label, threshold, max_length (`LabelMap`)
    metrics.json                       the run's best score, last epoch's metrics, test metrics once tested
    lineage.json                       data and split hashes, commit, packages (`Lineage`)
    config.yaml                        the run's resolved config
    scoring.json, tfidf.*              optional: a TF-IDF companion mixed in, a temperature (`Scoring`)
    reference.json, .safetensors       optional: answers on held-out papers, the out-of-scope model (`ReferenceSample`)
    README.md                          the model card, with Hugging Face metadata
    manifest.json                      every file above with its size and sha256
    onnx/                              model.onnx, model.int8.onnx, onnx_export.json (after clf export)

Nothing here imports torch: the registry, deployment checks and health checks read artifacts without loading a model.
Writing one is `clf.artifact.writer`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from clf.artifact.label_map import FILE as LABEL_MAP_FILE
from clf.artifact.label_map import LabelMap, LabelMapError
from clf.artifact.lineage import FILE as LINEAGE_FILE
from clf.artifact.lineage import Lineage
from clf.artifact.reference import ReferenceError, ReferenceSample, read_reference
from clf.artifact.scoring import Scoring, ScoringError, read_scoring
from clf.io import DataFileError, read_json, sha256_of_file

REQUIRED_FILES = ("config.json", "model.safetensors", LABEL_MAP_FILE, "tokenizer_config.json")
"""Files without which a folder is not a model artifact."""
MANIFEST_FILE = "manifest.json"
METRICS_FILE = "metrics.json"
RUN_CONFIG_FILE = "config.yaml"
ONNX_DIR = "onnx"
ONNX_FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}
ONNX_REPORT_FILE = "onnx_export.json"

OnnxVariant = Literal["auto", "fp32", "int8"]

_digests: dict[tuple[str, int, int], str] = {}


class ArtifactError(ValueError):
    """A folder that is not a complete, intact model artifact; the message names the file and the fix."""


@dataclass(frozen=True)
class ManifestEntry:
    """One file of the manifest.

    Attributes:
        name: its name inside the artifact.
        bytes: its size.
        sha256: its hash.
    """

    name: str
    bytes: int
    sha256: str


class ModelArtifact:
    """An exported model folder, checked.

    Use `open`; the constructor does the same.

    Args:
        path: the folder (a run's ``export/`` or a registry version).
        verify: also check every file against the sha256 in ``manifest.json`` (cached while a file is unchanged).

    Raises:
        ArtifactError: for a missing folder or required file, an unreadable label map or manifest, or a file whose
            hash differs from the manifest's.
    """

    def __init__(self, path: str | Path, *, verify: bool = True) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise ArtifactError(f"{self.path}: no such folder; point at a run's export/ folder or a registry version")
        missing = [name for name in REQUIRED_FILES if not (self.path / name).is_file()]
        if missing:
            raise ArtifactError(f"{self.path}: not a model artifact, missing {', '.join(missing)}")
        try:
            self.label_map = LabelMap.from_json(read_json(self.path / LABEL_MAP_FILE))
        except (DataFileError, LabelMapError) as err:
            raise ArtifactError(f"{self.path / LABEL_MAP_FILE}: {err}") from None
        self.model_config: dict[str, Any] = _optional_json(self.path / "config.json")
        self.metrics: dict[str, Any] = _optional_json(self.path / METRICS_FILE)
        self.lineage = Lineage.from_json(_optional_json(self.path / LINEAGE_FILE))
        self.manifest = self._read_manifest()
        if verify:
            self.verify()

    @classmethod
    def open(cls, path: str | Path, *, verify: bool = True) -> ModelArtifact:
        """Opens and checks an artifact folder.

        Args:
            path: the folder.
            verify: also check the manifest's hashes.

        Returns:
            The artifact.

        Raises:
            ArtifactError: see the class.
        """
        return cls(path, verify=verify)

    @property
    def max_length(self) -> int:
        """Tokens per input: the trained ``max_length``, never more than the model's position embeddings."""
        positions = int(self.model_config.get("max_position_embeddings") or self.label_map.max_length)
        return min(self.label_map.max_length, positions)

    @property
    def scoring(self) -> Scoring:
        """How raw outputs become answers: companion mixture, temperature, abstention threshold (read once)."""
        if not hasattr(self, "_scoring"):
            try:
                self._scoring = read_scoring(self.path)
            except ScoringError as err:
                raise ArtifactError(str(err)) from None
        return self._scoring

    @property
    def reference(self) -> ReferenceSample | None:
        """The reference sample production's drift and out-of-scope checks compare with; None without one."""
        if not hasattr(self, "_reference"):
            try:
                self._reference = read_reference(self.path)
            except ReferenceError as err:
                raise ArtifactError(str(err)) from None
        return self._reference

    @property
    def run_config(self) -> Path | None:
        """The run's resolved config (``config.yaml``), when the export carries one."""
        path = self.path / RUN_CONFIG_FILE
        return path if path.is_file() else None

    @property
    def onnx_report(self) -> dict[str, Any]:
        """What `clf export` recorded with the ONNX files (``onnx/onnx_export.json``: parity, versions); {} without."""
        return _optional_json(self.path / ONNX_DIR / ONNX_REPORT_FILE)

    def verify(self) -> None:
        """Checks every file the manifest lists against its sha256; the weights must be listed.

        Raises:
            ArtifactError: naming the missing or changed file (or a manifest without the weights).
        """
        if self.manifest is None:
            return  # older exports without a manifest: the required files were checked
        listed = {entry.name: entry for entry in self.manifest}
        if "model.safetensors" not in listed:
            raise ArtifactError(f"{self.path / MANIFEST_FILE}: no checksum for model.safetensors")
        for entry in self.manifest:
            path = self.path / entry.name
            if not path.is_file():
                raise ArtifactError(f"{path}: listed in the manifest but missing")
            if digest(path) != entry.sha256:
                raise ArtifactError(f"{path}: sha256 differs from the manifest's; the file changed after export")

    def onnx_path(self, variant: OnnxVariant = "auto") -> Path:
        """The ONNX model file of `variant` (``auto``: int8 when there is one, else float32).

        Args:
            variant: ``fp32``, ``int8`` or ``auto``.

        Returns:
            The file.

        Raises:
            ArtifactError: when that file was not exported, with the command that writes it.
        """
        folder = self.path / ONNX_DIR
        if variant == "auto":
            variant = "int8" if (folder / ONNX_FILES["int8"]).is_file() else "fp32"
        path = folder / ONNX_FILES[variant]
        if not path.is_file():
            quantize = " --quantize int8" if variant == "int8" else ""
            raise ArtifactError(
                f"{self.path} has no {ONNX_DIR}/{ONNX_FILES[variant]}; write it with clf export --version VERSION "
                f"--format onnx{quantize} (or --model-path {self.path})"
            )
        return path

    def _read_manifest(self) -> list[ManifestEntry] | None:
        path = self.path / MANIFEST_FILE
        if not path.is_file():
            return None
        try:
            return [ManifestEntry(e["name"], int(e["bytes"]), str(e["sha256"])) for e in read_json(path)["files"]]
        except (DataFileError, KeyError, TypeError, ValueError) as err:
            raise ArtifactError(f"{path}: unreadable manifest ({err}); export the model again") from None


def digest(path: Path) -> str:
    """The sha256 of `path`, computed again only when its size or modification time changed.

    Args:
        path: a file.

    Returns:
        The hex digest.
    """
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _digests:
        if len(_digests) > 256:
            _digests.clear()
        _digests[key] = sha256_of_file(path)
    return _digests[key]


def _optional_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        value = read_json(path)
    except DataFileError as err:
        raise ArtifactError(str(err)) from None
    return value if isinstance(value, dict) else {}


def describe(path: Path) -> dict[str, Any]:
    """A file's manifest entry.

    Args:
        path: the file.

    Returns:
        ``{"name", "bytes", "sha256"}``.
    """
    return {"name": path.name, "bytes": path.stat().st_size, "sha256": digest(path)}


def is_artifact(path: str | Path) -> bool:
    """Whether `path` holds the required files of an artifact (nothing is checked further).

    Args:
        path: a folder.

    Returns:
        True when every required file is there.
    """
    return all((Path(path) / name).is_file() for name in REQUIRED_FILES)
