"""`ModelRegistry`: versioned copies of training exports, a production pointer, an audit log and rollback.

    registry = ModelRegistry("models/classification")
    registry.create_version("runs/quickstart/export", "v1.0.0")
    registry.promote_to_production("v1.0.0", reason="first release")
    version, folder = registry.resolve("production")       # ("v1.0.0", Path(".../arxiv_v1.0.0"))

The registry is storage: it checks, copies, names, points, audits and rolls back model artifacts (`clf.artifact`),
and never loads a model (`clf.inference.ModelPredictor.from_registry` does).

On disk::

    models/classification/
      registry.json        every version, the production stack and its changes (written atomically, under a lock)
      registry.json.bak    the last good copy of registry.json
      registry.lock        the file lock that serialises writers
      audit.jsonl          one line per production change: when, who, from, to, reason, metrics
      production           symlink to the production folder (production.txt where symlinks are not allowed)
      arxiv_vX.Y.Z/        the export's files plus metadata.json
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from filelock import FileLock

from clf.artifact import REQUIRED_FILES, ArtifactError, ModelArtifact
from clf.io import DataFileError, append_jsonl, read_json, read_jsonl, write_json_atomic, write_text_atomic
from clf.registry.lineage import collect_metadata, now, user
from clf.registry.records import ArchiveMark, ChangeKind, ProductionChange, RegisteredVersion, RegistryState
from clf.registry.versions import Bump, RegistryError, Version, next_version

log = logging.getLogger(__name__)

FOLDER_PREFIX = "arxiv_"
POINTER = "production"
POINTER_FILE = "production.txt"


class VersionExistsError(RegistryError):
    """The version is already registered (or its folder already exists)."""


class UnknownVersionError(RegistryError):
    """The version is not registered; the message lists the known ones."""


class MissingVersionFolderError(RegistryError):
    """A registered version whose folder is gone (deleted by hand)."""


class IncompleteExportError(RegistryError):
    """The folder given to `create_version` is not a complete export."""


class CorruptRegistryError(RegistryError):
    """registry.json cannot be read; the message points to the last good copy."""


class ModelRegistry:
    """Stores exports as semantic versions and tracks which one is in production.

    Every read-modify-write of registry.json happens under ``registry.lock`` and ends in an atomic rename, so
    concurrent processes never lose each other's updates.

    Args:
        base_dir: the registry folder (created when missing).
        lock_timeout: seconds to wait for another process's lock before giving up.
        on_pointer_staged: test seam, called with the staged pointer just before it replaces the old one.

    Raises:
        RegistryError: when `base_dir` exists and is not a folder.
    """

    def __init__(
        self,
        base_dir: str | Path = "models/classification",
        *,
        lock_timeout: float = 120.0,
        on_pointer_staged: Callable[[Path], None] | None = None,
    ) -> None:
        self.base_dir = Path(base_dir)
        if self.base_dir.exists() and not self.base_dir.is_dir():
            raise RegistryError(f"--registry {self.base_dir} is a file, not a folder")
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.registry_path = self.base_dir / "registry.json"
        self.backup_path = self.base_dir / "registry.json.bak"
        self.audit_path = self.base_dir / "audit.jsonl"
        self._lock = FileLock(str(self.base_dir / "registry.lock"), timeout=lock_timeout)
        self._on_pointer_staged = on_pointer_staged

    # ----------------------------------------------------------------------------------------------- versions

    def create_version(
        self,
        model_path: str | Path,
        version: str | None = None,
        metadata: dict[str, Any] | None = None,
        *,
        bump: Bump | str = Bump.MINOR,
    ) -> str:
        """Copies an export into ``arxiv_<version>/`` with its metadata.json and registers it.

        Args:
            model_path: the export folder of a training run (``runs/<name>/export``).
            version: ``vX.Y.Z``; when None, `next_version(bump)` is taken under the lock.
            metadata: extra fields merged into metadata.json (they win over the collected ones).
            bump: the increment used when `version` is None.

        Returns:
            The registered version.

        Raises:
            InvalidVersionError: when `version` is not ``vX.Y.Z``.
            IncompleteExportError: listing the files the export lacks.
            VersionExistsError: when the version is already registered.
        """
        if version is not None:
            version = str(Version.parse(version))
        source = Path(model_path)
        if not source.is_dir():
            raise IncompleteExportError(f"--model-path {source}: not a folder. Pass a run's export/ folder.")
        missing = [name for name in REQUIRED_FILES if not (source / name).is_file()]
        if missing:
            raise IncompleteExportError(
                f"--model-path {source}: not a complete export, missing {', '.join(missing)}. "
                "Re-export the run (clf fit writes runs/<name>/export/)."
            )
        try:
            artifact = ModelArtifact.open(source)
        except ArtifactError as err:
            raise IncompleteExportError(f"--model-path {source}: {err}") from err
        # The copy and the lineage (which reads the dataset and asks git) happen before the lock is taken, so other
        # processes are not kept waiting for them; only naming and registering the version need the lock.
        staging = self.base_dir / f".incoming.{os.getpid()}.{uuid.uuid4().hex}.tmp"
        shutil.copytree(source, staging)
        record = collect_metadata(artifact)
        try:
            with self._transaction() as state:
                versions = state.versions
                if version is None:
                    version = next_version(list(versions), bump)
                folder = self.version_dir(version)
                if version in versions or folder.exists():
                    raise VersionExistsError(
                        f"{version} already exists in {self.base_dir}; choose another --version "
                        f"(next minor: {next_version(list(versions), Bump.MINOR)})"
                    )
                parent = state.production or (max(versions, key=Version.parse) if versions else None)
                record = {"version": version, **record, "parent_version": parent, **(metadata or {})}
                write_json_atomic(staging / "metadata.json", record)
                staging.rename(folder)
                metrics = record.get("metrics") or {}
                versions[version] = RegisteredVersion(version, folder.name, record["created_at"], parent, metrics)
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # gone already when the rename succeeded
        log.info("Registered %s in %s", version, folder)
        return version

    def next_version(self, bump: Bump | str = Bump.MINOR) -> str:
        """The version after the highest registered one (``v1.0.0`` for an empty registry).

        Args:
            bump: ``major``, ``minor`` or ``patch``.

        Returns:
            The next version name.
        """
        return next_version(list(self._read().versions), bump)

    def list_versions(self) -> list[RegisteredVersion]:
        """Every registered version, oldest first, with its creation time, parent and metrics (`production_version`
        says which one is in production).

        Returns:
            One entry per version.
        """
        versions = self._read().versions
        return [versions[v] for v in sorted(versions, key=Version.parse)]

    def version_dir(self, version: str) -> Path:
        """The folder of `version` (which need not exist).

        Args:
            version: ``vX.Y.Z``.

        Returns:
            ``<registry>/arxiv_vX.Y.Z``.
        """
        return self.base_dir / f"{FOLDER_PREFIX}{Version.parse(version)}"

    def get_metadata(self, version: str) -> dict[str, Any]:
        """The metadata.json of a registered version.

        Args:
            version: a registered ``vX.Y.Z``.

        Returns:
            The metadata: lineage, metrics, parent version, and the ONNX files once `clf export` added them.

        Raises:
            UnknownVersionError: listing the known versions.
            MissingVersionFolderError: when the version's folder was deleted.
        """
        return read_json(self._existing_dir(version) / "metadata.json")

    def update_metadata(self, version: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Merges `fields` into a version's metadata.json, under the registry lock (e.g. the ONNX files that
        ``clf export`` wrote beside the weights). The model files themselves are never changed.

        Args:
            version: a registered ``vX.Y.Z``.
            fields: top-level fields to set; they replace fields of the same name.

        Returns:
            The updated metadata.

        Raises:
            UnknownVersionError: listing the known versions.
            MissingVersionFolderError: when the version's folder was deleted.
        """
        with self._lock:
            folder = self._existing_dir(version)
            record = {**read_json(folder / "metadata.json"), **fields}
            write_json_atomic(folder / "metadata.json", record)
        return record

    def resolve(self, version: str) -> tuple[str, Path]:
        """The version a name stands for and its folder: ``production`` → the production version.

        Args:
            version: ``vX.Y.Z`` or ``production``.

        Returns:
            ``(version, folder)``.

        Raises:
            RegistryError: for ``production`` when no version is in production yet, or a name that is not
                ``vX.Y.Z``.
            UnknownVersionError: listing the known versions.
            MissingVersionFolderError: when the version's folder was deleted.
        """
        if version == POINTER:
            current = self.production_version()
            if current is None:
                raise RegistryError(f"{self.base_dir}: no version is in production yet; promote one first")
            version = current
        version = str(Version.parse(version))
        return version, self._existing_dir(version)

    def archive_version(self, version: str, reason: str = "") -> ArchiveMark:
        """Marks a version as archived: kept on disk with its metadata, but set aside (e.g. it failed to beat
        production). The mark (when, who, reason) is stored with the version in registry.json and shown by
        `list_versions` under ``archived``.

        Args:
            version: a registered ``vX.Y.Z`` that is not in production.
            reason: why, recorded with the mark.

        Returns:
            The archive mark.

        Raises:
            UnknownVersionError: listing the known versions.
            RegistryError: when `version` is the production version (promote or roll back to another one first).
        """
        version = str(Version.parse(version))
        with self._transaction() as state:
            self._existing_dir(version, state)
            if state.production == version:
                raise RegistryError(
                    f"{version} is in production in {self.base_dir}; promote or roll back to another version before "
                    "archiving it"
                )
            mark = ArchiveMark(now(), user(), reason)
            state.versions[version] = replace(state.versions[version], archived=mark)
        log.info("Archived %s (%s)", version, reason)
        return mark

    # --------------------------------------------------------------------------------------------- production

    def production_version(self) -> str | None:
        """The version the production pointer names, or None before the first promotion.

        Staged pointers left by an interrupted promotion are ignored: the pointer is the old or the new one.

        Returns:
            ``vX.Y.Z``, or None.
        """
        link = self.base_dir / POINTER
        if link.is_symlink():
            name = os.readlink(link)
        elif (self.base_dir / POINTER_FILE).is_file():
            name = (self.base_dir / POINTER_FILE).read_text(encoding="utf-8").strip()
        else:
            return None
        return str(Version.parse(Path(name).name.removeprefix(FOLDER_PREFIX)))

    def promote_to_production(self, version: str, reason: str = "") -> ProductionChange:
        """Makes `version` the production version, swaps the pointer atomically and appends to the audit log.

        Args:
            version: a registered ``vX.Y.Z``.
            reason: why, recorded in the audit log.

        Returns:
            The change, as logged.

        Raises:
            UnknownVersionError: listing the known versions.
            MissingVersionFolderError: when the version's folder was deleted.
        """
        version = str(Version.parse(version))
        with self._lock:
            state = self._locked_state()
            self._existing_dir(version, state)
            return self._change(state, ChangeKind.PROMOTE, version, reason)

    def rollback(self, reason: str = "") -> ProductionChange:
        """Returns production to the version before the current one, in one step.

        Repeated rollbacks walk further back through earlier promotions.

        Args:
            reason: why, recorded in the audit log.

        Returns:
            The change, as logged.

        Raises:
            RegistryError: when there is no earlier production version.
            MissingVersionFolderError: when the earlier version's folder was deleted.
        """
        with self._lock:
            state = self._locked_state()
            stack = state.stack
            if len(stack) < 2:
                raise RegistryError(
                    f"{self.base_dir}: nothing to roll back to (production history: {stack or 'empty'})"
                )
            target = stack[-2]
            self._existing_dir(target, state)
            return self._change(state, ChangeKind.ROLLBACK, target, reason or f"rollback from {stack[-1]}")

    def history(self) -> list[ProductionChange]:
        """Every production change, oldest first, from the audit log.

        Returns:
            The changes.
        """
        if not self.audit_path.is_file():
            return []
        return [ProductionChange.from_json(r) for _, r in read_jsonl(self.audit_path, skip_partial_last_line=True)]

    # ------------------------------------------------------------------------------------------------ helpers

    def _change(self, state: RegistryState, action: ChangeKind, version: str, reason: str) -> ProductionChange:
        change = ProductionChange(
            when=now(),
            who=user(),
            action=action,
            from_version=state.production,
            to_version=version,
            reason=reason,
            metrics=state.versions[version].metrics,
        )
        if action is ChangeKind.ROLLBACK:
            state.stack.pop()
        else:
            state.stack.append(version)
        state.production = version
        # registry.json is written before the pointer moves; a process killed in between
        # leaves the old pointer, which the next transaction re-points (see _repair_pointer).
        self._write(state)
        self._swap_pointer(version)
        append_jsonl(self.audit_path, [change.to_json()])
        log.info("Production: %s -> %s (%s)", change.from_version, version, action.value)
        return change

    def _swap_pointer(self, version: str) -> None:
        target = self.version_dir(version).name
        staged = self.base_dir / f".{POINTER}.{os.getpid()}.tmp"
        staged.unlink(missing_ok=True)
        try:
            os.symlink(target, staged)
        except (OSError, NotImplementedError):
            if self._on_pointer_staged is not None:
                self._on_pointer_staged(self.base_dir / POINTER_FILE)
            write_text_atomic(self.base_dir / POINTER_FILE, target + "\n")
            return
        if self._on_pointer_staged is not None:
            self._on_pointer_staged(staged)
        os.replace(staged, self.base_dir / POINTER)

    def _repair_pointer(self, state: RegistryState) -> None:
        for stale in self.base_dir.glob(f".{POINTER}.*.tmp"):
            stale.unlink(missing_ok=True)
        if state.production and self.production_version() != state.production:
            log.warning("Completing an interrupted change: pointing production at %s", state.production)
            self._swap_pointer(state.production)

    def _existing_dir(self, version: str, state: RegistryState | None = None) -> Path:
        version = str(Version.parse(version))
        state = state if state is not None else self._read()
        if version not in state.versions:
            known = ", ".join(sorted(state.versions, key=Version.parse)) or "none yet"
            raise UnknownVersionError(f"{version} is not in {self.base_dir}; known versions: {known}")
        folder = self.version_dir(version)
        if not (folder / "config.json").is_file():
            raise MissingVersionFolderError(
                f"{version} is registered but {folder} is missing or incomplete (deleted by hand?). "
                f"Restore the folder, or register the export again under a new version."
            )
        return folder

    def _read(self) -> RegistryState:
        if not self.registry_path.exists():
            return RegistryState()
        try:
            return RegistryState.from_json(read_json(self.registry_path))
        except (DataFileError, ValueError) as err:
            hint = (
                f"the last good copy is {self.backup_path}: inspect it and copy it over {self.registry_path}"
                if self.backup_path.is_file()
                else "no backup copy exists"
            )
            raise CorruptRegistryError(f"{self.registry_path} is corrupt ({err}); {hint}.") from err

    def _write(self, state: RegistryState) -> None:
        if self.registry_path.is_file():
            # _read parsed the current file before this write, so it is a good copy to keep.
            shutil.copyfile(self.registry_path, self.backup_path)
        write_json_atomic(self.registry_path, state.to_json())

    def _locked_state(self) -> RegistryState:
        """Reads registry.json once the lock is held, finishing a change a killed process left half done."""
        state = self._read()
        self._repair_pointer(state)
        return state

    @contextmanager
    def _transaction(self) -> Iterator[RegistryState]:
        with self._lock:
            state = self._locked_state()
            before = state.to_json()
            yield state
            if state.to_json() != before:
                self._write(state)
