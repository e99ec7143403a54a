"""The model registry: versioned exports with lineage, a production pointer, an audit log and rollback.

    clf registry create --model-path runs/quickstart/export --version v1.0.0
    clf registry promote v1.0.0 --reason "first release"

`ModelRegistry` is storage: it stores, resolves, points, audits and rolls back model artifacts; it never loads a
model and never imports torch (`clf.inference` loads, `clf.evaluation` compares).
"""

from clf.registry.records import ArchiveMark, ChangeKind, ProductionChange, RegisteredVersion, RegistryState
from clf.registry.registry import (
    CorruptRegistryError,
    IncompleteExportError,
    MissingVersionFolderError,
    ModelRegistry,
    UnknownVersionError,
    VersionExistsError,
)
from clf.registry.versions import Bump, InvalidVersionError, RegistryError, Version, next_version

__all__ = [
    "ArchiveMark",
    "Bump",
    "ChangeKind",
    "CorruptRegistryError",
    "IncompleteExportError",
    "InvalidVersionError",
    "MissingVersionFolderError",
    "ModelRegistry",
    "ProductionChange",
    "RegisteredVersion",
    "RegistryError",
    "RegistryState",
    "UnknownVersionError",
    "Version",
    "VersionExistsError",
    "next_version",
]
