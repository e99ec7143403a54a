"""`clf registry ACTION`: one function per action on the model registry; each prints JSON and returns it.

    clf registry promote v1.0.0 --reason "first release"

``clf registry compare`` scores models, so it lives with the evaluation (`clf.commands.compare.compare`).
"""

from __future__ import annotations

from typing import Any, Literal

from clf.io import print_json
from clf.registry.registry import ModelRegistry

DEFAULT_REGISTRY = "models/classification"


def create(
    *,
    model_path: str,
    version: str | None = None,
    bump: Literal["major", "minor", "patch"] = "minor",
    registry: str = DEFAULT_REGISTRY,
) -> Any:
    """Register a run's export folder as a new version.

    Args:
        model_path: the export folder of a run (runs/<name>/export).
        version: the version, vX.Y.Z; the next --bump version when left out.
        bump: without --version: which part of the highest version to increment (major, minor, patch).
        registry: the registry folder.

    Returns:
        What was printed, as JSON-ready Python objects.
    """
    models = ModelRegistry(registry)
    return print_json(models.get_metadata(models.create_version(model_path, version, bump=bump)))


def list_versions(registry: str = DEFAULT_REGISTRY) -> Any:
    """List every version, the production one flagged.

    Args:
        registry: the registry folder.

    Returns:
        What was printed, as JSON-ready Python objects.
    """
    models = ModelRegistry(registry)
    production = models.production_version()
    return print_json(
        [{**entry.to_json(), "production": entry.version == production} for entry in models.list_versions()]
    )


def show(version: str, registry: str = DEFAULT_REGISTRY) -> Any:
    """Show one version's metadata: data hash, metrics, git commit, parent version.

    Args:
        version: the version, vX.Y.Z or production.
        registry: the registry folder.

    Returns:
        What was printed, as JSON-ready Python objects.
    """
    return print_json(ModelRegistry(registry).get_metadata(version))


def promote(version: str, reason: str = "", registry: str = DEFAULT_REGISTRY) -> Any:
    """Make a version production (an atomic pointer switch, recorded in the audit log).

    Args:
        version: the version, vX.Y.Z.
        reason: why, recorded in the audit log.
        registry: the registry folder.

    Returns:
        What was printed, as JSON-ready Python objects.
    """
    return print_json(ModelRegistry(registry).promote_to_production(version, reason).to_json())


def rollback(reason: str = "", registry: str = DEFAULT_REGISTRY) -> Any:
    """Return production to the version before it.

    Args:
        reason: why, recorded in the audit log.
        registry: the registry folder.

    Returns:
        What was printed, as JSON-ready Python objects.
    """
    return print_json(ModelRegistry(registry).rollback(reason).to_json())


def history(registry: str = DEFAULT_REGISTRY) -> Any:
    """List every production change (promotions and rollbacks), who and why.

    Args:
        registry: the registry folder.

    Returns:
        What was printed, as JSON-ready Python objects.
    """
    return print_json([change.to_json() for change in ModelRegistry(registry).history()])
