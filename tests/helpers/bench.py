"""Loads a script of tools/bench/ as a module, for the tests of its functions."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from types import ModuleType

from tests.conftest import REPO


def loaded_bench_tool(name: str) -> Iterator[ModuleType]:
    """Yields ``tools/bench/<name>.py`` imported as the module `name`, and unregisters it afterwards.

    Use it in a fixture: ``yield from loaded_bench_tool("service_load")``. Registered in ``sys.modules`` while in
    use, because dataclasses and pickling look a module up by name.

    Args:
        name: the script's file name without ``.py``.

    Yields:
        The imported module.
    """
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(name, None)
