"""Where the collection of one category stands, saved beside its papers so an interrupted run can resume."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clf.io import DataFileError, read_json, write_json_atomic


@dataclass(frozen=True)
class CollectionState:
    """The resume point of one category, written atomically after each saved page.

    Attributes:
        signature: the settings that decide which papers the query returns (category, source, dates, …); a resume
            under other settings would mix two collections in one file.
        next_start: offset of the next API page to fetch; pages before it are saved.
        kept: papers saved so far.
        exhausted: the query has no further results.
        updated_at: when this state was written (UTC, ISO 8601).
    """

    signature: dict[str, Any]
    next_start: int = 0
    kept: int = 0
    exhausted: bool = False
    updated_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @classmethod
    def load(cls, path: Path) -> CollectionState | None:
        """Reads a saved state; None when there is none.

        Args:
            path: the state file (``<category>.state.json``).

        Returns:
            The saved state, or None when `path` does not exist.

        Raises:
            DataFileError: naming the file when it is not a state this version wrote.
        """
        if not path.is_file():
            return None
        data = read_json(path)
        try:
            return cls(**data)
        except TypeError as err:
            raise DataFileError(
                f"{path}: not a collection state ({err}). Delete it and the .jsonl beside it to collect that "
                "category again."
            ) from err

    def save(self, path: Path) -> None:
        """Writes the state atomically (write to a temporary file, then rename).

        Args:
            path: the state file to write; its folder is created when missing.
        """
        write_json_atomic(path, asdict(self))

    def differences(self, signature: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
        """Setting → (saved value, requested value) for every setting that differs from `signature`.

        Args:
            signature: the settings of the run being started (source, dates, page size...).

        Returns:
            The settings that changed since the state was saved, each with its saved and its requested value; empty when
            the run may resume.
        """
        keys = sorted(set(signature) | set(self.signature))
        return {k: (self.signature.get(k), signature.get(k)) for k in keys if self.signature.get(k) != signature.get(k)}
