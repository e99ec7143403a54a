"""`clf registry compare`: two registered versions scored on the same labelled papers."""

from __future__ import annotations

from typing import Any

from clf.evaluation.compare import compare_versions
from clf.io import print_json
from clf.registry import ModelRegistry


def compare(version: str, other: str, *, test_data: str, registry: str = "models/classification") -> Any:
    """Compare two versions on labelled papers: accuracy, macro-F1, latency (`clf registry compare`).

    Args:
        version: the baseline version, vX.Y.Z or production.
        other: the candidate version compared with it.
        test_data: a split file such as data/quickstart/splits/test.json, or JSON Lines of labelled papers.
        registry: the registry folder.

    Returns:
        What was printed, as JSON-ready Python objects.
    """
    return print_json(compare_versions(ModelRegistry(registry), version, other, test_data).to_json())
