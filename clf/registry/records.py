"""The registry's records: what registry.json and audit.jsonl hold, each with ``to_json``/``from_json`` in the
on-disk form (a registry written before these types still loads)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class ChangeKind(StrEnum):
    """Why the production version changed."""

    PROMOTE = "promote"
    ROLLBACK = "rollback"


@dataclass(frozen=True)
class ArchiveMark:
    """Why a version was set aside: when, who and the reason."""

    when: str
    """ISO-8601 UTC time."""
    who: str
    """The user."""
    reason: str
    """The reason given."""


@dataclass(frozen=True)
class RegisteredVersion:
    """One version as registry.json lists it (its metadata.json holds the rest: lineage, labels, packages)."""

    version: str
    """``vX.Y.Z``."""
    path: str
    """Its folder, relative to the registry (``arxiv_vX.Y.Z``)."""
    created_at: str
    """ISO-8601 UTC time of registration."""
    parent: str | None
    """Production (else the highest version) when it was registered."""
    metrics: dict[str, Any]
    """The export's metrics."""
    archived: ArchiveMark | None = None
    """Set aside (e.g. it did not beat production): when, who and why; None otherwise."""

    def to_json(self) -> dict[str, Any]:
        """The registry.json entry (``archived`` only when set).

        Returns:
            JSON-ready fields.
        """
        record = asdict(self)
        if self.archived is None:
            del record["archived"]
        return record

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> RegisteredVersion:
        """Reads a registry.json entry.

        Args:
            record: what `to_json` wrote.

        Returns:
            The entry.
        """
        archived = record.get("archived")
        return cls(
            version=record["version"],
            path=record.get("path") or f"arxiv_{record['version']}",
            created_at=record.get("created_at", ""),
            parent=record.get("parent"),
            metrics=record.get("metrics") or {},
            archived=ArchiveMark(archived["when"], archived["who"], archived.get("reason", "")) if archived else None,
        )


@dataclass
class RegistryState:
    """registry.json: every version, the production version and the stack of earlier ones.

    Not frozen: it is the working copy that one transaction changes under the registry lock and writes back whole.
    """

    versions: dict[str, RegisteredVersion] = field(default_factory=dict)
    """Version → its entry."""
    production: str | None = None
    """The production version (the pointer follows it); None before the first promotion."""
    stack: list[str] = field(default_factory=list)
    """Production versions, oldest first, the last the current one: rollback pops it."""

    def to_json(self) -> dict[str, Any]:
        """The registry.json object.

        Returns:
            JSON-ready fields.
        """
        versions = {name: entry.to_json() for name, entry in self.versions.items()}
        return {"versions": versions, "production": self.production, "stack": list(self.stack)}

    @classmethod
    def from_json(cls, record: Any) -> RegistryState:
        """Reads registry.json (a file from before the stack existed starts it at its production version).

        Args:
            record: the parsed file.

        Returns:
            The state.

        Raises:
            ValueError: when it is not an object with a ``versions`` object of entries.
        """
        if not isinstance(record, dict) or not isinstance(record.get("versions"), dict):
            raise ValueError("expected an object with a 'versions' object")
        try:
            versions = {name: RegisteredVersion.from_json(entry) for name, entry in record["versions"].items()}
        except (KeyError, TypeError, AttributeError) as err:
            raise ValueError(f"a version entry is malformed ({type(err).__name__}: {err})") from err
        production = record.get("production")
        return cls(versions, production, list(record.get("stack", [production] if production else [])))


@dataclass(frozen=True)
class ProductionChange:
    """One change of the production version, as written to the audit log.

    Attributes:
        when: ISO-8601 UTC time of the change.
        who: the user that made it.
        action: promote or rollback.
        from_version: production before the change (None for the first promotion).
        to_version: production after it.
        reason: the reason given.
        metrics: the metrics of `to_version` at the time.
    """

    when: str
    who: str
    action: ChangeKind
    from_version: str | None
    to_version: str
    reason: str
    metrics: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The audit-log record.

        Returns:
            The change as JSON-ready fields, with ``from`` and ``to`` for the versions.
        """
        record = asdict(self)
        record["action"] = self.action.value
        record["from"] = record.pop("from_version")
        record["to"] = record.pop("to_version")
        return record

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> ProductionChange:
        """Reads an audit-log record.

        Args:
            record: a record `to_json` wrote.

        Returns:
            The change.
        """
        return cls(
            when=record["when"],
            who=record["who"],
            action=ChangeKind(record["action"]),
            from_version=record.get("from"),
            to_version=record["to"],
            reason=record.get("reason", ""),
            metrics=record.get("metrics") or {},
        )
