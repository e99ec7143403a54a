"""No two public classes of clf and the HTTP app share a name: an import of one must never be mistaken for the other."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections import defaultdict

import clf
import lightning_app


def public_classes() -> dict[str, set[str]]:
    """Class name → the modules that define a public class of that name."""
    defined: dict[str, set[str]] = defaultdict(set)
    for package in (clf, lightning_app):
        for module_info in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}."):
            if "migrations" in module_info.name:
                continue
            module = importlib.import_module(module_info.name)
            for name, value in vars(module).items():
                if inspect.isclass(value) and value.__module__ == module.__name__ and not name.startswith("_"):
                    defined[name].add(module.__name__)
    return defined


def test_no_two_public_classes_share_a_name():
    shared = {name: sorted(modules) for name, modules in public_classes().items() if len(modules) > 1}
    assert not shared, f"public classes defined in more than one module: {shared}"
